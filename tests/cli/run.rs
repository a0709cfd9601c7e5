//! `ardpipe run` end to end on the real MiniLM and health tweets: a short ARD-LoRA run exports
//! a PEFT adapter that Python PEFT loads to the same logits, and a run killed (SIGKILL) after a
//! checkpoint resumes to the same adapter.
//!
//! The runs here use `--threads 1`: libtorch's two-thread CPU kernels are not bitwise
//! reproducible from process to process (on the 2-core dev machine 4 of 70 identical runs
//! differed by about 1e-8; 0 of 40 single-threaded ones did), and the resume check is about
//! ardpipe's state, not libtorch's rounding.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ardpipe;

fn quickstart_command(out: &Path, extra: &[&str]) -> Command {
    let mut args: Vec<String> = vec![
        "run".into(),
        "pipelines/quickstart.ard".into(),
        "-q".into(),
        "--threads".into(),
        "1".into(),
    ];
    for s in [
        "train.steps=6",
        // A high constant rate: six steps must move the LoRA weights well past the PEFT
        // comparison's tolerance, or that comparison would prove nothing.
        "train.lr=2e-2",
        "train.batch_size=8",
        "train.eval_every=3 steps",
        "train.checkpoint_every=3 steps",
        "dataset.tweets.split.validation=1%",
        "evaluate.batch_size=32",
    ] {
        args.push("--set".into());
        args.push(s.into());
    }
    args.push("--set".into());
    args.push(format!("output.dir=\"{}/{{name}}\"", out.display()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ardpipe"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/..")
        .args(&args)
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000");
    cmd
}

fn run_quickstart(out: &Path, extra: &[&str]) -> std::process::Output {
    quickstart_command(out, extra)
        .output()
        .expect("ardpipe runs")
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn short_ard_lora_run_exports_a_peft_adapter_and_resumes_exactly() {
    let full = fresh_dir("full");
    let out = run_quickstart(&full, &[]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("accuracy"), "{text}");
    assert!(text.contains("rank map"), "{text}");
    let run = full.join("quickstart");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("adapter/adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "SEQ_CLS");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "completed", "{manifest}");
    assert!(manifest["ended_at"].is_string(), "{manifest}");
    let shown = ardpipe(&["inspect", "run", run.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    for want in [
        "status     completed",
        "latest checkpoint step-0000006",
        "last eval  step 6",
        "adapter    ",
    ] {
        assert!(shown.contains(want), "missing {want:?} in\n{shown}");
    }
    let not_a_run = ardpipe(&["inspect", "run", std::env::temp_dir().to_str().unwrap()]);
    assert_eq!(not_a_run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_a_run.stderr).contains("is not a run directory"));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().count() >= 3, "{metrics}");
    peft_loads_the_export_and_agrees(&run);
    // The report: summary and pictures of the rank maps, α and loss curves.
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    for pic in [
        "ranks-bert-encoder-layer---attention-self-query.svg",
        "ranks-bert-encoder-layer---attention-self-value.svg",
        "loss.svg",
        "alpha.svg",
    ] {
        assert!(md.contains(&format!("]({pic})")), "{pic} not in\n{md}");
        let svg = std::fs::read_to_string(run.join("report").join(pic)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{pic}"
        );
    }
    assert!(md.contains("majority-class accuracy"), "{md}");

    // Kill -9 once the step-3 checkpoint is there (mid-run: three steps and the export are
    // still to come), then resume in a new process: the adapter must be identical.
    let split = fresh_dir("split");
    let mut child = quickstart_command(&split, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
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
            t0.elapsed().as_secs() < 600,
            "no checkpoint after 10 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    assert!(
        !split
            .join("quickstart/adapter/adapter_model.safetensors")
            .exists()
    );
    let dir = split.join("quickstart");
    let resumed = ardpipe(&[
        "run",
        "-q",
        "--threads",
        "1",
        "--resume",
        dir.to_str().unwrap(),
    ]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "completed", "{m}");
    assert_eq!(m["resumptions"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["resumptions"][0]["from_step"], 3, "{m}");
    let a = std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap();
    let b = std::fs::read(dir.join("adapter/adapter_model.safetensors")).unwrap();
    assert!(
        a == b,
        "the resumed run's adapter differs from the uninterrupted run's"
    );
    let _ = std::fs::remove_dir_all(&full);
    let _ = std::fs::remove_dir_all(&split);
}

/// The baselines export like LoRA: a short DoRA run and a short AdaLoRA run (pruning included)
/// of the study pipeline each give a PEFT folder that Python PEFT loads to ardpipe's logits.
#[test]
fn dora_and_adalora_exports_load_in_peft_with_matching_logits() {
    let root = fresh_dir("baselines");
    for variant in ["dora_r8", "adalora_r8"] {
        let dir = root.join(variant);
        let out = Command::new(env!("CARGO_BIN_EXE_ardpipe"))
            .current_dir(repo())
            .args(["run", "pipelines/study/classification.ard", "-q"])
            .args(["--threads", "1", "--variant", variant])
            .args(["--set", "train.steps=8", "--set", "train.batch_size=8"])
            // A high rate, so that eight steps move the adapter well past the tolerance.
            .args(["--set", "train.lr=2e-2"])
            .args(["--set", "dataset.tweets.split.test=1%"])
            .args(["--set", &format!("output.dir=\"{}\"", dir.display())])
            .env("ARDPIPE_COLOR", "never")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{variant}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("adapter/adapter_config.json")).unwrap(),
        )
        .unwrap();
        if variant == "dora_r8" {
            assert_eq!(cfg["peft_type"], "LORA");
            assert_eq!(cfg["use_dora"], true);
        } else {
            assert_eq!(cfg["peft_type"], "ADALORA");
            assert_eq!(cfg["init_r"], 12);
            // The budget schedule pruned: some modules keep fewer than their 12 triplets.
            let kept: Vec<usize> = cfg["rank_pattern"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_array().unwrap().iter().filter(|b| **b == true).count())
                .collect();
            assert_eq!(kept.len(), 12, "{cfg}");
            assert!(kept.iter().any(|&k| k < 12), "nothing was pruned: {kept:?}");
        }
        peft_loads_the_export_and_agrees(&dir);
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_selector_that_matches_nothing_is_a_clear_error() {
    let d = fresh_dir("bad");
    let out = run_quickstart(&d, &["--set", "adapter.qv.modules=[q_proj]"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("q_proj") && err.contains("matches no module"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real peer: Hugging Face PEFT loads the run's adapter onto the same MiniLM and must
/// produce the logits `ardpipe classify --adapter` produces, within 1e-3.
fn peft_loads_the_export_and_agrees(run: &Path) {
    let texts = [
        "New study links sleep to heart health http://bit.ly/x",
        "Ebola outbreak spreads in West Africa",
        "Five tips to keep your kids active this summer",
        "FDA approves a new drug for migraines",
    ];
    let minilm = repo().join(".ardpipe/assets/minilm");
    let mut args = vec![
        "classify",
        "--model",
        minilm.to_str().unwrap(),
        "--adapter",
        run.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend(texts);
    let out = ardpipe(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("merged 12 modules") && err.contains("4 head tensors"),
        "{err}"
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let labels: Vec<String> =
        serde_json::from_slice(&std::fs::read(run.join("labels.json")).unwrap()).unwrap();
    let probs = rows[0]["probabilities"].as_array().unwrap();
    assert_eq!(
        probs.len(),
        labels.len(),
        "classify names the run's classes"
    );
    assert_eq!(probs[0][0].as_str().unwrap(), labels[0]);
    // The same adapter on a different model is refused, naming why.
    let smollm2 = repo().join(".ardpipe/assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let wrong = ardpipe(&[
        "generate",
        "--model",
        smollm2.to_str().unwrap(),
        "--prompt",
        "hi",
        "--adapter",
        run.to_str().unwrap(),
    ]);
    let werr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{werr}");
    assert!(werr.contains("trained on another model"), "{werr}");
    let ours = run.join("classify.json");
    std::fs::write(&ours, &out.stdout).unwrap();

    let python = crate::peer_python();
    let peer = Command::new(&python)
        .arg(repo().join("tests/peer/peft_classify.py"))
        .arg(&minilm)
        .arg(run.join("adapter"))
        .arg(&ours)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap();
    let perr = String::from_utf8_lossy(&peer.stderr);
    assert!(peer.status.success(), "the PEFT peer failed:\n{perr}");
    let stdout = String::from_utf8_lossy(&peer.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let diff = v["max_abs_diff"].as_f64().unwrap();
    let effect = v["lora_effect"].as_f64().unwrap();
    println!(
        "PEFT round trip: max |Δlogits| {diff:.2e}, LoRA's own effect on the logits {effect:.2e}"
    );
    assert!(diff < 1e-3, "PEFT's logits differ from ardpipe's by {diff}");
    assert!(
        effect > 1e-2,
        "the LoRA weights barely matter ({effect}): the comparison would not catch a wrong export"
    );
}

/// `method = head_only`, the linear-probe baseline: three steps on MiniLM train the
/// classification head (pooler and classifier) and nothing else. The plan adapts no module and
/// counts the head, the summary exports exactly the head, and the merged export (the default:
/// PEFT cannot load an adapter without a module) carries every base weight bit for bit.
#[test]
fn head_only_trains_the_head_and_leaves_the_base_bit_for_bit() {
    let dir = fresh_dir("head-only");
    std::fs::create_dir_all(&dir).unwrap();
    let minilm = crate::asset("minilm");
    let file = dir.join("probe.ard");
    std::fs::write(
        &file,
        format!(
            r#"pipeline {{
    name = "probe"
    seed = 5
}}

dataset tweets {{
    format = csv
    path = "{csv}"
    text = "text"
    label = "source_id"
    label_regex = '^(.*)-[^-]*$'
    on_bad_row = skip
    max_bad_rows = 100
    split {{
        validation = 1%
        seed = 7
    }}
    preprocess {{
        max_length = 32
    }}
}}

model {{
    path = "{minilm}"
    head = sequence_classification
    classes = auto
    device = cpu
}}

adapter probe {{
    method = head_only
}}

train {{
    optimizer = adamw(weight_decay = 0.0)
    lr = 1e-2
    batch_size = 8
    steps = 3
    precision = f32
}}

evaluate {{
    split = validation
    batch_size = 32
    metrics = [accuracy]
}}

output {{
    dir = "{out}"
    report = false
}}
"#,
            csv = crate::asset("healthtweets/healthtweets.csv").display(),
            minilm = minilm.display(),
            out = dir.join("run").display(),
        ),
    )
    .unwrap();

    let out = ardpipe(&["plan", file.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plan = &v["runs"][0]["plan"];
    assert_eq!(plan["adapters"][0]["method"], "head_only", "{plan}");
    assert_eq!(
        plan["adapters"][0]["modules"],
        serde_json::json!([]),
        "{plan}"
    );
    let classes = plan["data"]["classes"].as_array().unwrap().len();
    // bert.pooler.dense (384 × 384 + 384) and classifier (classes × 384 + classes).
    let head = 384 * 384 + 384 + classes * 384 + classes;
    assert_eq!(plan["head_parameters"], head, "{plan}");
    assert_eq!(plan["trainable_initial"], head, "{plan}");
    let text = crate::stdout(&ardpipe(&["plan", file.to_str().unwrap()]));
    assert!(
        text.contains("adapter    probe (head_only): 0 modules")
            && text.contains("only the task head trains"),
        "{text}"
    );

    let out = ardpipe(&["run", file.to_str().unwrap(), "-q", "--threads", "1"]);
    assert!(
        out.status.success(),
        "{}{}",
        crate::stdout(&out),
        crate::stderr(&out)
    );
    let run = dir.join("run");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 3, "{summary}");
    assert_eq!(summary["exported_parameters"], head, "{summary}");
    assert!(
        !run.join("adapter").exists(),
        "no PEFT folder for head_only"
    );

    let base_bytes = std::fs::read(minilm.join("model.safetensors")).unwrap();
    let base = safetensors::SafeTensors::deserialize(&base_bytes).unwrap();
    let merged_bytes = std::fs::read(run.join("merged/model.safetensors")).unwrap();
    let merged = safetensors::SafeTensors::deserialize(&merged_bytes).unwrap();
    let (mut same, mut moved) = (0, 0);
    for (name, t) in base.tensors() {
        if name == "embeddings.position_ids" {
            continue;
        }
        let m = merged.tensor(&format!("bert.{name}")).unwrap();
        assert_eq!(m.dtype(), t.dtype(), "{name}");
        if name.starts_with("pooler.") {
            // The pooler is part of the head: it trained.
            moved += usize::from(m.data() != t.data());
        } else {
            assert!(m.data() == t.data(), "base weight {name} changed");
            same += 1;
        }
    }
    assert!(same > 90, "only {same} base tensors compared");
    assert_eq!(moved, 2, "the pooler's weight and bias trained");
    assert!(merged.tensor("classifier.weight").is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
