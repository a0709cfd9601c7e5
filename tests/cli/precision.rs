//! `precision = f16` on the real trainer (libtorch's CPU autocast to f16 on MiniLM): dynamic loss
//! scaling logs its scale and skipped steps, keeps its state in checkpoints, and a run killed
//! after a checkpoint resumes to the same adapter, byte for byte. The same run checks what
//! `export = [merged]` writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn f16_quickstart(out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ardpipe"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/..")
        .args(["run", "pipelines/quickstart.ard", "-q", "--threads", "1"])
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000");
    for s in [
        "train.precision=f16",
        "train.steps=4",
        "train.lr=2e-2",
        // Small: f16 matmuls are emulated on most CPUs (about 4× slower than f32).
        "train.batch_size=4",
        "train.log_every=1 steps",
        "train.eval_every=4 steps",
        "train.checkpoint_every=2 steps",
        "dataset.tweets.split.validation=0.2%",
        "dataset.tweets.preprocess.max_length=32",
        "evaluate.batch_size=32",
        "output.export=[peft, merged]",
    ] {
        cmd.args(["--set", s]);
    }
    cmd.args([
        "--set",
        &format!("output.dir=\"{}/{{name}}\"", out.display()),
    ]);
    cmd
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-f16-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn f16_scales_the_loss_logs_it_checkpoints_it_and_resumes_exactly() {
    let full = fresh_dir("full");
    let out = f16_quickstart(&full).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let run = full.join("quickstart");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let train: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["split"] == "train")
        .collect();
    assert_eq!(train.len(), 4, "{metrics}");
    for v in &train {
        // No growth within 2000 steps: the scale is 2^16 halved once per skipped step.
        let skipped = v["skipped_steps"].as_u64().unwrap_or_else(|| panic!("{v}"));
        let scale = v["loss_scale"].as_f64().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(scale, 65536.0 / 2f64.powi(skipped as i32), "{v}");
        assert!(skipped < 4, "every step overflowed: {metrics}");
        assert!(v["loss"].as_f64().unwrap().is_finite(), "{v}");
    }
    println!(
        "f16 on CPU: loss scale after 4 steps {}, {} step(s) skipped",
        train[3]["loss_scale"], train[3]["skipped_steps"]
    );
    let state = std::fs::read_to_string(run.join("checkpoints/step-0000002/state.json")).unwrap();
    assert!(state.contains("\"loss_scale\""), "{state}");
    let adapter = std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap();
    // `export = [merged]` is what docs/LANGUAGE.md says: the whole model with its adapters
    // folded in and the head, as a Hugging Face folder in the base's dtype (MiniLM's f32).
    assert!(
        text(&out).contains("(a complete Hugging Face model folder)"),
        "{}",
        text(&out)
    );
    let merged = std::fs::read(run.join("merged/model.safetensors")).unwrap();
    let merged = safetensors::SafeTensors::deserialize(&merged).unwrap();
    let mut names: Vec<String> = merged.names().into_iter().map(String::from).collect();
    names.sort();
    // 6 layers × (6 linears (q, k, v, attention output, intermediate, output) and 2 LayerNorms),
    // weight and bias; 3 embeddings and their LayerNorm; the pooler and the classifier.
    assert_eq!(names.len(), 6 * 8 * 2 + 3 + 2 + 4, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("bert.") || n.starts_with("classifier.")),
        "{names:?}"
    );
    assert!(
        merged
            .tensors()
            .iter()
            .all(|(_, t)| t.dtype() == safetensors::Dtype::F32)
    );
    assert!(run.join("merged/config.json").is_file());

    // Killed once the step-2 checkpoint is there, then resumed: the same adapter.
    let split = fresh_dir("split");
    let mut child = f16_quickstart(&split)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let latest = split.join("quickstart/checkpoints/latest");
    let t0 = std::time::Instant::now();
    while !latest.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(
            t0.elapsed().as_secs() < 300,
            "no checkpoint after 5 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let resumed = Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .args(["run", "-q", "--threads", "1", "--resume"])
        .arg(split.join("quickstart"))
        .env("ARDPIPE_COLOR", "never")
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    let again = std::fs::read(split.join("quickstart/adapter/adapter_model.safetensors")).unwrap();
    assert!(
        again == adapter,
        "the resumed f16 run differs from the uninterrupted one"
    );
    let _ = std::fs::remove_dir_all(&full);
    let _ = std::fs::remove_dir_all(&split);
}
