//! `ardpipe runs` and `ardpipe compare` on real runs of the tiny BERT (engine/core/tests/support/
//! tiny.rs), made once and reused: an ARD-LoRA run of a committed pipeline file, a LoRA run of
//! the same file edited and not yet committed (then renamed and committed), and a run that
//! failed at start (its model's weights cut short). The manifests' Git fields are checked on the
//! way: the file's blob id, its path in the repository and whether it differed from HEAD.

use std::path::Path;
use std::process::Output;

use crate::{Scratch, ardpipe_in, git, text};

// One copy of the tiny model writer for the whole test binary (resume.rs includes it).
use crate::resume::tiny;

const STEPS: u64 = 4;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn train(repo: &Path, file: &str, out: &Path) -> Output {
    ardpipe_in(
        repo,
        &[
            "run",
            "-q",
            "--threads",
            "1",
            file,
            "--set",
            &format!("output.dir={:?}", out.display().to_string()),
        ],
    )
}

#[test]
fn runs_lists_status_and_versions_and_compare_puts_runs_side_by_side() {
    let root = std::env::temp_dir().join(format!("ardpipe-runs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let _cleanup = Scratch(root.clone());
    let repo = root.join("repo");
    let runs = root.join("runs");
    std::fs::create_dir_all(&repo).unwrap();
    let (model, data) = (root.join("model"), root.join("data.csv"));
    tiny::write_tiny_bert(&model);
    tiny::write_data(&data);
    git(&repo, &["init", "-q"]);

    // A: the committed ARD-LoRA pipeline.
    let v1 = tiny::pipeline("ard_lora", &model, &data, &runs.join("x"), STEPS);
    std::fs::write(repo.join("p.ard"), &v1).unwrap();
    git(&repo, &["add", "p.ard"]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let o = train(&repo, "p.ard", &runs.join("a"));
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&runs.join("a/manifest.json"));
    let blob_v1 = git(&repo, &["hash-object", "p.ard"]);
    assert_eq!(m["pipeline_blob"], blob_v1.as_str(), "{m}");
    assert_eq!(m["git"]["file"]["path"], "p.ard", "{m}");
    assert_eq!(m["git"]["file"]["dirty"], false, "{m}");
    assert_eq!(m["git"]["file"]["tracked"], true, "{m}");

    // B: the same file switched to LoRA, not committed: the manifest says the file is dirty.
    let v2 = tiny::pipeline("lora", &model, &data, &runs.join("x"), STEPS);
    std::fs::write(repo.join("p.ard"), &v2).unwrap();
    let o = train(&repo, "p.ard", &runs.join("b"));
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&runs.join("b/manifest.json"));
    assert_eq!(m["git"]["file"]["dirty"], true, "{m}");
    assert_ne!(m["pipeline_blob"], blob_v1.as_str());

    // C: another file, outside Git, whose model is broken: the run fails at start.
    let broken = root.join("broken");
    tiny::write_tiny_bert(&broken);
    let w = std::fs::read(broken.join("model.safetensors")).unwrap();
    std::fs::write(broken.join("model.safetensors"), &w[..w.len() / 2]).unwrap();
    std::fs::write(
        root.join("other.ard"),
        tiny::pipeline("lora", &broken, &data, &runs.join("x"), STEPS),
    )
    .unwrap();
    let o = train(&root, "other.ard", &runs.join("c"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let m = json(&runs.join("c/manifest.json"));
    assert!(m["git"].is_null(), "{m}");
    assert_eq!(m["no_git"], "not_a_work_tree", "{m}");

    // D: a manifest that says "running": believed only while a process holds run.lock.
    std::fs::create_dir_all(runs.join("d")).unwrap();
    let mut md = json(&runs.join("a/manifest.json"));
    md["status"] = "running".into();
    md["ended_at"] = serde_json::Value::Null;
    std::fs::write(runs.join("d/manifest.json"), md.to_string()).unwrap();
    let lock = std::fs::File::create(runs.join("d/run.lock")).unwrap();

    let status_of = |rows: &serde_json::Value, name: &str| -> String {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map_or("(not listed)".into(), |r| {
                r["status"].as_str().unwrap().to_string()
            })
    };
    let list = |args: &[&str]| -> serde_json::Value {
        let o = ardpipe_in(&root, args);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let rows = list(&["runs", "runs", "--format", "json"]);
    assert_eq!(
        ["a", "b", "c", "d"].map(|n| status_of(&rows, n)),
        ["finished", "finished", "failed", "interrupted"],
        "{rows:#}"
    );
    lock.lock().unwrap();
    let rows = list(&["runs", "runs", "--format", "json"]);
    assert_eq!(status_of(&rows, "d"), "running", "{rows:#}");
    drop(lock);

    let a = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "a")
        .unwrap();
    let summary = json(&runs.join("a/summary.json"));
    assert_eq!(a["method"], "ard_lora");
    assert_eq!(
        (a["steps_done"].as_u64(), a["steps_planned"].as_u64()),
        (Some(STEPS), Some(STEPS))
    );
    assert_eq!(a["exported_parameters"], summary["exported_parameters"]);
    assert_eq!(a["best_eval"]["metric"], "accuracy", "{a}");
    assert!(a["wall_seconds"].as_f64().unwrap() > 0.0);

    // The text table has a line per run.
    let o = ardpipe_in(&root, &["runs", "runs"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("RUN") && t.contains("BEST EVAL"), "{t}");
    let line_a = t.lines().find(|l| l.starts_with("a ")).unwrap_or_default();
    assert!(
        line_a.contains("finished")
            && line_a.contains("ard_lora")
            && line_a.contains("4/4")
            && line_a.contains("accuracy"),
        "{t}"
    );

    // Commit version 2 under a new name: both runs are runs of q.ard, through the rename; C is
    // of another file, D's blob is A's.
    git(&repo, &["mv", "p.ard", "q.ard"]);
    git(&repo, &["add", "q.ard"]);
    git(&repo, &["commit", "-q", "-m", "v2, renamed"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    let rows = list(&[
        "runs",
        "runs",
        "--pipeline",
        "repo/q.ard",
        "--format",
        "json",
    ]);
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{rows:#}");
    for n in ["a", "b", "d"] {
        assert!(names.contains(&n), "{n} missing: {rows:#}");
    }
    let version = |n: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap()["version"]
            .clone()
    };
    assert_eq!(version("a"), first.as_str(), "{rows:#}");
    assert_eq!(version("b"), second.as_str());
    // An edit not committed yet: its runs are the working copy's.
    std::fs::write(repo.join("q.ard"), v2.replace("lr = 2e-2", "lr = 3e-2")).unwrap();
    let rows = list(&[
        "runs",
        "runs",
        "--pipeline",
        "repo/q.ard",
        "--format",
        "json",
    ]);
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows:#}");
    // A manifest from before blob ids were recorded: matched by the file's path.
    std::fs::create_dir_all(runs.join("e")).unwrap();
    let mut me = json(&runs.join("b/manifest.json"));
    me.as_object_mut().unwrap().remove("pipeline_blob");
    me["pipeline_file"] = repo.join("q.ard").display().to_string().into();
    std::fs::write(runs.join("e/manifest.json"), me.to_string()).unwrap();
    let rows = list(&[
        "runs",
        "runs",
        "--pipeline",
        "repo/q.ard",
        "--format",
        "json",
    ]);
    let e = rows.as_array().unwrap().iter().find(|r| r["name"] == "e");
    assert_eq!(
        e.map(|e| e["version"].clone()),
        Some("unknown (no blob id recorded)".into()),
        "{rows:#}"
    );
    std::fs::remove_dir_all(runs.join("e")).unwrap();

    // compare: metrics, parameters, differing settings and rank maps side by side.
    let o = ardpipe_in(&root, &["compare", "runs/a", "runs/b", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let plan_a = json(&runs.join("a/plan.json"));
    assert_eq!(
        c["runs"][0]["trainable_initial"],
        plan_a["trainable_initial"]
    );
    assert_eq!(c["runs"][1]["method"], "lora");
    assert!(c["runs"][0]["train_loss"].as_f64().is_some(), "{c:#}");
    let finals = c["runs"][0]["final_eval"].as_array().unwrap();
    assert_eq!(finals[0][0], "loss");
    let keys: Vec<&str> = c["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"adapters[0].method.method"), "{keys:?}");
    assert!(
        !keys
            .iter()
            .any(|k| k.starts_with("output.dir") || *k == "name"),
        "{keys:?}"
    );
    let ranks = c["ranks"].as_array().unwrap();
    assert!(!ranks.is_empty(), "{c:#}");
    let a_rank = &ranks[0]["layers"][0]["mean_rank"][0];
    assert!(a_rank.as_f64().is_some_and(|r| r >= 0.0), "{ranks:?}");

    let o = ardpipe_in(&root, &["compare", "runs/a", "runs/b"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in [
        "final eval accuracy",
        "trainable (initial)",
        "exported parameters",
        "settings that differ",
        "mean effective rank per layer",
        "layer 0",
    ] {
        assert!(t.contains(want), "no `{want}` in:\n{t}");
    }
    let o = ardpipe_in(&root, &["compare", "runs/a", "repo"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is not a run directory"), "{}", text(&o));
}
