//! `ardpipe run --log-format json`: stdout carries only the run's events, one JSON object per
//! line, and the `step` and `eval` events are the records of metrics.jsonl; the human log,
//! the plain progress lines (with the ETA and the next evaluation) and the summary go to
//! stderr. The run here is shared with tests/cli/tensorboard.rs and tests/cli/report.rs.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

// The tiny BERT and data of the resume tests.
use crate::resume::tiny;

pub struct TinyRun {
    /// The run directory.
    pub run: PathBuf,
    pub stdout: String,
    pub stderr: String,
}

/// One ARD-LoRA run of the tiny BERT (8 steps; a log every 2, an evaluation every 4, a
/// checkpoint every 2), with `--log-format json`, without `-q` (so stderr has the progress
/// lines), made once for every test that reads it.
pub fn tiny_run() -> &'static TinyRun {
    static RUN: OnceLock<TinyRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ardpipe-follow");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let (model, data, out) = (root.join("model"), root.join("data.csv"), root.join("run"));
        tiny::write_tiny_bert(&model);
        tiny::write_data(&data);
        let file = root.join("tiny.ard");
        std::fs::write(&file, tiny::pipeline("ard_lora", &model, &data, &out, 8)).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_ardpipe"))
            .args(["run", file.to_str().unwrap(), "--threads", "1"])
            .args(["--log-format", "json", "--set", "train.log_every=2 steps"])
            .env("ARDPIPE_COLOR", "never")
            .env("COLUMNS", "1000")
            .env_remove("ARDPIPE_TEST_PAUSE")
            .output()
            .unwrap();
        let (stdout, stderr) = (crate::stdout(&o), crate::stderr(&o));
        assert!(o.status.success(), "{stdout}\n{stderr}");
        TinyRun {
            run: out,
            stdout,
            stderr,
        }
    })
}

pub fn jsonl(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn json_log_format_puts_every_run_event_on_stdout_and_the_human_log_on_stderr() {
    let r = tiny_run();
    let events: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", r.stdout))
        })
        .collect();
    let kind = |e: &Value| e["event"].as_str().unwrap().to_string();
    let kinds: Vec<String> = events.iter().map(kind).collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("start"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("end"), "{kinds:?}");
    let start = &events[0];
    assert_eq!(start["run_dir"], r.run.to_str().unwrap());
    assert_eq!(start["total_steps"], 8);
    assert_eq!(start["adapters"][0]["method"], "ard_lora");
    let end = events.last().unwrap();
    assert_eq!(end["status"], "completed", "{end}");
    assert_eq!(end["steps"], 8);
    assert!(end["final_eval"]["accuracy"].is_number(), "{end}");

    // The step and eval events are metrics.jsonl's records, in order.
    let strip = |e: &Value| {
        let mut e = e.clone();
        e.as_object_mut().unwrap().remove("event");
        e
    };
    let metrics = jsonl(&r.run.join("metrics.jsonl"));
    let logged: Vec<Value> = events
        .iter()
        .filter(|e| matches!(e["event"].as_str(), Some("step" | "eval")))
        .map(strip)
        .collect();
    assert_eq!(logged, metrics);
    let steps: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [2, 4, 6, 8]);
    for e in events.iter().filter(|e| e["event"] == "eval") {
        assert_eq!(e["split"], "eval");
        assert!(e["accuracy"].is_number(), "{e}");
    }

    let checkpoints: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "checkpoint")
        .map(|e| {
            let step = e["step"].as_u64().unwrap();
            let name = format!("checkpoints/step-{step:07}");
            assert_eq!(e["path"], r.run.join(name).to_str().unwrap());
            step
        })
        .collect();
    assert_eq!(checkpoints, [2, 4, 6, 8]);
    // Older checkpoints are pruned; the last one stays.
    assert!(r.run.join("checkpoints/step-0000008").is_dir());
    let export = events.iter().find(|e| e["event"] == "export").unwrap();
    assert_eq!(export["paths"][0], r.run.join("adapter").to_str().unwrap());
    let report = events.iter().find(|e| e["event"] == "report").unwrap();
    assert_eq!(
        report["path"],
        r.run.join("report/index.html").to_str().unwrap()
    );

    // The person's side: the summary and the plain progress lines, on stderr.
    assert!(r.stderr.contains("\nrun        "), "{}", r.stderr);
    for line in [
        "step 2/8: loss ",
        "next eval at step 4, eta 0:00:",
        "step 6/8: ",
        "next eval at step 8, eta ",
    ] {
        assert!(r.stderr.contains(line), "{line:?} not in\n{}", r.stderr);
    }
}
