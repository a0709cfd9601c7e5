//! The TensorBoard event files `ardpipe run` writes in `RUN/tensorboard/`, read back by
//! TensorBoard's own reader (`EventAccumulator`, in the peer venv): every scalar of
//! metrics.jsonl under `SPLIT/FIELD` at its step and value, the mean effective rank of each
//! ARD-LoRA module and the histogram of its heads' α at every ranks.jsonl step; and a run
//! killed after a checkpoint and resumed reads back as its logs, without the steps the killed
//! process logged after the checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::log_json::{jsonl, tiny_run};
use crate::resume::tiny;

/// TensorBoard's reading of a folder of event files: `{"scalars": {tag: [[step, value]]},
/// "histograms": {tag: [[step, num, min, max, sum]]}}`.
fn read_events(dir: &Path) -> Value {
    const SCRIPT: &str = r#"
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
acc.Reload()
tags = acc.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "histograms": {t: [[e.step, h.num, h.min, h.max, h.sum]
                       for e in acc.Histograms(t) for h in [e.histogram_value]]
                   for t in tags["histograms"]},
}))
"#;
    let o = Command::new(crate::peer_python())
        .args(["-c", SCRIPT, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "TensorBoard's reader failed (is tensorboard in the peer venv? `python3 scripts/setup.py`):\n{}",
        crate::stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

type Scalars = BTreeMap<String, Vec<(u64, f64)>>;

/// What metrics.jsonl says TensorBoard should show: each numeric field as `SPLIT/FIELD`, at
/// the float32 precision of an event's `simple_value`.
fn expected_scalars(metrics: &[Value]) -> Scalars {
    let mut out = Scalars::new();
    for r in metrics {
        let step = r["step"].as_u64().unwrap();
        let split = r["split"].as_str().unwrap();
        for (k, v) in r.as_object().unwrap() {
            if let (true, Some(v)) = (k != "step", v.as_f64()) {
                out.entry(format!("{split}/{k}"))
                    .or_default()
                    .push((step, v as f32 as f64));
            }
        }
    }
    out
}

/// The scalars TensorBoard read, but those whose tag starts with `except`.
fn scalars(events: &Value, except: &str) -> Scalars {
    events["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(t, _)| !t.starts_with(except))
        .map(|(t, v)| {
            let points = v
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            (t.clone(), points)
        })
        .collect()
}

fn tb_dir(run: &Path) -> PathBuf {
    run.join("tensorboard")
}

#[test]
fn tensorboard_reads_the_run_as_metrics_and_ranks_jsonl_have_it() {
    let run = &tiny_run().run;
    let files: Vec<String> = std::fs::read_dir(tb_dir(run))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("events.out.tfevents."), "{files:?}");
    let events = read_events(&tb_dir(run));
    let metrics = jsonl(&run.join("metrics.jsonl"));
    let want = expected_scalars(&metrics);
    for tag in [
        "train/loss",
        "train/lr",
        "train/regularizer",
        "train/tokens_per_second",
        "train/mean_effective_rank",
        "eval/loss",
        "eval/accuracy",
    ] {
        assert!(want.contains_key(tag), "{tag} not in metrics.jsonl");
    }
    assert_eq!(scalars(&events, "rank/"), want);

    // Per module: the mean effective rank over its heads, and its heads' α as a histogram.
    // The record flagged `final` repeats the last step's: TensorBoard gets it once.
    let ranks: Vec<Value> = jsonl(&run.join("ranks.jsonl"))
        .into_iter()
        .filter(|r| r.get("final").is_none())
        .collect();
    assert_eq!(ranks.len(), 4, "a rank record per log step");
    // Per module: (step, its heads' effective ranks, their α) at each rank record.
    type Heads = (u64, Vec<f64>, Vec<f64>);
    let mut modules: BTreeMap<String, Vec<Heads>> = BTreeMap::new();
    for r in &ranks {
        let step = r["step"].as_u64().unwrap();
        let mut per: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for u in r["units"].as_array().unwrap() {
            let e = per
                .entry(u["module"].as_str().unwrap().to_string())
                .or_default();
            e.0.push(u["effective_rank"].as_f64().unwrap());
            e.1.push(u["alpha"].as_f64().unwrap());
        }
        for (m, (rk, al)) in per {
            modules.entry(m).or_default().push((step, rk, al));
        }
    }
    assert_eq!(modules.len(), 4, "query and value of two layers");
    for (m, steps) in &modules {
        let got = &events["scalars"][format!("rank/{m}")];
        let want: Vec<Value> = steps
            .iter()
            .map(|(s, rk, _)| {
                let mean = rk.iter().sum::<f64>() / rk.len() as f64;
                serde_json::json!([s, mean as f32 as f64])
            })
            .collect();
        assert_eq!(got.as_array().unwrap(), &want, "rank/{m}");
        let hist = events["histograms"][format!("alpha/{m}")]
            .as_array()
            .unwrap();
        assert_eq!(hist.len(), steps.len(), "alpha/{m}");
        for (h, (s, _, al)) in hist.iter().zip(steps) {
            let min = al.iter().copied().fold(f64::INFINITY, f64::min);
            let max = al.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = al.iter().sum();
            assert_eq!(h[0].as_u64(), Some(*s));
            assert_eq!(h[1].as_f64(), Some(al.len() as f64), "{h}");
            assert_eq!(
                (h[2].as_f64(), h[3].as_f64()),
                (Some(min), Some(max)),
                "{h}"
            );
            assert!((h[4].as_f64().unwrap() - sum).abs() < 1e-12, "{h}");
        }
    }
}

#[test]
fn a_resumed_run_reads_back_without_what_the_killed_process_logged_after_its_checkpoint() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ardpipe-tb-resume");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let (model, data, run) = (root.join("model"), root.join("data.csv"), root.join("run"));
    tiny::write_tiny_bert(&model);
    tiny::write_data(&data);
    let file = root.join("tiny.ard");
    std::fs::write(&file, tiny::pipeline("ard_lora", &model, &data, &run, 8)).unwrap();
    let cmd = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ardpipe"));
        c.args(["run", "-q", "--threads", "1"])
            .args(extra)
            .env("ARDPIPE_COLOR", "never")
            .env_remove("ARDPIPE_TEST_PAUSE");
        c
    };
    // A checkpoint at step 4, logs at 2, 4, 6: killed at step 6, after its log.
    let marker = root.join("paused");
    let mut child = cmd(&[file.to_str().unwrap()])
        .args(["--set", "train.log_every=2 steps"])
        .args(["--set", "train.checkpoint_every=4 steps"])
        .env("ARDPIPE_TEST_PAUSE", "step@6")
        .env("ARDPIPE_TEST_PAUSE_MARKER", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !marker.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before step 6"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "step 6 not reached"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let _ = child.wait();
    // The report of the run so far, written at its checkpoint (tests/cli/report.rs renders
    // the final one).
    let page = std::fs::read_to_string(run.join("report/index.html")).unwrap();
    assert!(page.contains("4 of 8 (training"), "no report of step 4");
    let before = read_events(&tb_dir(&run));
    assert_eq!(before["scalars"]["train/loss"].as_array().unwrap().len(), 3);

    let o = cmd(&["--resume", run.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert_eq!(std::fs::read_dir(tb_dir(&run)).unwrap().count(), 2);
    let events = read_events(&tb_dir(&run));
    let metrics = jsonl(&run.join("metrics.jsonl"));
    assert_eq!(scalars(&events, "rank/"), expected_scalars(&metrics));
    let steps = |tag: &str| -> Vec<u64> {
        events["scalars"][tag]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_u64().unwrap())
            .collect()
    };
    assert_eq!(steps("train/loss"), [2, 4, 6, 8]);
    // The server's data server drops, per tag, the points from a step on when that step is
    // written again: the same reading.
    let (served, _) = serve(&run, "tensorboard");
    assert_eq!(served, expected_scalars(&metrics)["train/loss"]);
    assert_eq!(steps("eval/loss"), [4, 8]);
    let alpha = events["histograms"].as_object().unwrap();
    for (tag, h) in alpha {
        let s: Vec<u64> = h
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[0].as_u64().unwrap())
            .collect();
        assert_eq!(s, [2, 4, 6, 8], "{tag}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// A raw HTTP GET to the local server (the tests have no HTTP client); the body, on 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// `tensorboard --logdir LOGDIR` (its default data server) asked for RUN's `train/loss`
/// points (step, value) and its histogram tags.
fn serve(logdir: &Path, run_name: &str) -> (Vec<(u64, f64)>, Value) {
    // A free port: bound, then released for the server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tensorboard = crate::peer_python().with_file_name("tensorboard");
    let mut server = Command::new(&tensorboard)
        .arg(format!("--logdir={}", logdir.display()))
        .args(["--host=127.0.0.1", &format!("--port={port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", tensorboard.display()));
    let query = format!("/data/plugin/scalars/scalars?run={run_name}&tag=train/loss");
    let t0 = Instant::now();
    // The server reads the files in the background: ask until the points are there.
    let body = loop {
        if let Some(b) = http_get(port, &query) {
            break b;
        }
        if t0.elapsed() > Duration::from_secs(60) || server.try_wait().unwrap().is_some() {
            let _ = server.kill();
            panic!("the TensorBoard server gave no train/loss in 60 s");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let histograms = http_get(port, "/data/plugin/histograms/tags");
    let _ = server.kill();
    let _ = server.wait();
    // [[wall_time, step, value]]
    let points = serde_json::from_str::<Vec<Value>>(&body)
        .unwrap()
        .iter()
        .map(|p| (p[1].as_u64().unwrap(), p[2].as_f64().unwrap()))
        .collect();
    let histograms: Value = serde_json::from_str(&histograms.expect("histogram tags")).unwrap();
    (points, histograms[run_name].clone())
}

#[test]
fn the_tensorboard_server_shows_the_runs_scalars_and_histograms() {
    let run = &tiny_run().run;
    let (points, histograms) = serve(run.parent().unwrap(), "run/tensorboard");
    let want = expected_scalars(&jsonl(&run.join("metrics.jsonl")));
    assert_eq!(points, want["train/loss"]);
    assert_eq!(histograms.as_object().unwrap().len(), 4, "{histograms}");
}
