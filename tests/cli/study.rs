//! `ardpipe study --quick` end to end: every method of both study pipelines trains, evaluates
//! and exports on the real models and data, the report aggregates them, and a study whose run
//! was lost runs only that one again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn study(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .current_dir(repo())
        .args(["study", "--quick", "--out", out.to_str().unwrap()])
        .args(extra)
        .env("ARDPIPE_COLOR", "never")
        .output()
        .unwrap()
}

const METHODS: &[&str] = &[
    "ard_lora",
    "ard_lora_r2",
    "lora_r4",
    "lora_r8",
    "lora_r16",
    "dora",
    "adalora",
    "full",
];

#[test]
fn quick_study_runs_every_method_and_reports_them() {
    let out = std::env::temp_dir().join(format!("ardpipe-study-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let first = study(&out, &[]);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    assert!(err.contains("16 runs (1 seed(s) each), quick"), "{err}");
    let md = std::fs::read_to_string(out.join("RESULTS.md")).unwrap();
    for pipeline in ["study_classification", "study_causal_lm"] {
        assert!(md.contains(&format!("## {pipeline}")), "{md}");
        for m in METHODS {
            let dir = out.join(pipeline).join(m).join("seed-1");
            assert!(dir.join("summary.json").is_file(), "{}", dir.display());
        }
    }
    for m in METHODS {
        // One finished run per method and pipeline: `| method | 1 | …`.
        assert_eq!(
            md.matches(&format!("| {m} | 1 |")).count(),
            2,
            "{m} in\n{md}"
        );
    }
    for want in [
        "| method | runs | loss | accuracy | macro_f1 |",
        "| method | runs | loss | perplexity |",
        "Before training (the base model): loss",
        "**Where ARD-LoRA stands** (on accuracy, higher is better",
        "**Where ARD-LoRA stands** (on perplexity, lower is better",
        "Rank map `ard_lora` learned",
        "| full | 1 |",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    assert!(!md.contains("Runs that failed"), "{md}");

    // A lost run (no summary) runs again; the others are kept.
    let lost = out.join("study_classification/dora/seed-1");
    std::fs::remove_file(lost.join("summary.json")).unwrap();
    let again = study(&out, &["pipelines/study/classification.ard"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert_eq!(err.matches("(finished earlier)").count(), 7, "{err}");
    assert!(lost.join("summary.json").is_file());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_study_of_a_file_that_does_not_check_runs_nothing() {
    let dir = std::env::temp_dir().join(format!("ardpipe-study-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.ard");
    std::fs::write(&bad, "pipeline { name = \"x\" }\ntrain { stpes = 3 }\n").unwrap();
    let o = study(&dir.join("out"), &[bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("does not check: nothing was run"), "{err}");
    assert!(!dir.join("out").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
