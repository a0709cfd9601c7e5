use crate::{ardpipe, stderr, stdout};

/// Every pipeline file shipped in `pipelines/` (the examples, their shared parts and the study),
/// so a new one cannot be left out of the checks.
pub(crate) fn shipped_pipelines() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let mut files = vec![];
    for dir in [root.clone(), root.join("shared"), root.join("study")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "ard") {
                files.push(p.display().to_string());
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    files
}

fn repo_file(p: &str) -> String {
    format!("{}/../{p}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_pipelines_check() {
    // The shared parts are imported, not pipelines of their own.
    let files: Vec<String> = shipped_pipelines()
        .into_iter()
        .filter(|f| !f.contains("/shared/"))
        .collect();
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = ardpipe(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).matches("ok: ").count(), files.len());
}

/// `check` reads a pipeline alone; `plan` resolves it against its model and data too (module
/// selectors, heads, budgets), which is where a shipped example went stale unseen before.
#[test]
fn shipped_pipelines_plan_against_their_models() {
    for f in shipped_pipelines()
        .into_iter()
        .filter(|f| !f.contains("/shared/"))
    {
        let out = ardpipe(&["-q", "plan", &f]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "ardpipe plan {f} (set-up installs every asset the examples use: run scripts/setup.sh \
             if one is missing):\n{}",
            stderr(&out)
        );
    }
}

#[test]
fn bad_pipeline_reports_every_problem_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("ardpipe-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.ard");
    std::fs::write(&bad, "model {\n    path = \"m\"\n    hed = causal_lm\n}\n\ntrain {\n    lr = 1e-3\n    steps = 10 epochs\n}\n").unwrap();
    let out = ardpipe(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("ardpipe::dsl::unknown_key") && err.contains("did you mean `head`?"),
        "{err}"
    );
    assert!(err.contains("ardpipe::dsl::bad_unit"), "{err}");
    assert!(err.contains("bad.ard:3:5"), "{err}");

    let out = ardpipe(&["check", "--format", "json", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(v["ok"], false);
    let problems = v["files"][0]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["code"] == "ardpipe::dsl::unknown_key" && p["line"] == 3)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn overrides_are_checked_and_point_at_the_override() {
    let q = repo_file("pipelines/quickstart.ard");
    let out = ardpipe(&[
        "check",
        &q,
        "--set",
        "train.steps=500",
        "--set",
        "adapter.qv.r0=four",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("--set #2"), "{err}");
    let out = ardpipe(&["check", &q, "--set", "train.steps=500"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A relative path given with `--set` is relative to the pipeline file, as `--help` says and as
/// a path written in the file is — not to the directory ardpipe runs in.
#[test]
fn relative_set_paths_start_at_the_pipeline_file() {
    let dir = std::env::temp_dir().join(format!("ardpipe-set-path-{}", std::process::id()));
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let file = dir.join("p.ard");
    std::fs::copy(repo_file("pipelines/quickstart.ard"), &file).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .current_dir(&elsewhere)
        .args([
            "plan",
            "--resolved",
            "--format",
            "json",
            "--set",
            "model.path=\"m\"",
        ])
        .arg(&file)
        .env("ARDPIPE_COLOR", "never")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let canonical = dir.canonicalize().unwrap();
    let path = std::path::PathBuf::from(v["model"]["path"].as_str().unwrap());
    assert!(
        path == dir.join("m") || path == canonical.join("m"),
        "model.path resolved to {} (the pipeline is in {})",
        path.display(),
        dir.display()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Preprocessing keys the model's head never reads are refused, not parsed and ignored:
/// a classifier cuts examples at `max_length`, a causal LM packs text into `block_size` blocks.
#[test]
fn preprocessing_keys_the_head_does_not_use_are_refused() {
    for (file, set, want) in [
        (
            "pipelines/quickstart.ard",
            "dataset.tweets.preprocess.block_size=32",
            "`block_size` has no effect with `head = sequence_classification`",
        ),
        (
            "pipelines/causal_lm.ard",
            "dataset.shakespeare.preprocess.max_length=32",
            "`max_length` has no effect with `head = causal_lm`",
        ),
        (
            "pipelines/causal_lm.ard",
            "dataset.shakespeare.preprocess.truncation=left",
            "`truncation` has no effect with `head = causal_lm`",
        ),
    ] {
        let out = ardpipe(&["check", &repo_file(file), "--set", set]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{set} was accepted: {err}");
        assert!(
            err.contains("ardpipe::dsl::contradiction") && err.contains(want),
            "{err}"
        );
    }
}
