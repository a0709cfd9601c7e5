//! `ardpipe study --quick` end to end: every variant of both study pipelines trains, evaluates
//! and exports on the real models and data, the report aggregates them (paired comparisons,
//! matched budgets, the Pareto frontier and its figure), a study whose run was lost runs only
//! that one again, and a learning-rate grid runs each factor and chooses one on validation.

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

/// A pipeline's variants as ardpipe resolves them (`ardpipe plan FILE --resolved`), sorted.
fn variants_of(file: &str) -> Vec<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .current_dir(repo())
        .args(["plan", file, "--resolved", "--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut v: Vec<String> = p["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The variants a study ran for a pipeline: its run directories that finished.
fn finished_variants(out: &Path, pipeline: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join(pipeline))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("seed-1/summary.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The adapter method of a finished run, from the plan it wrote.
fn method_of(run: &Path) -> String {
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
    plan["adapters"][0]["method"].as_str().unwrap().to_string()
}

/// The report's section of one pipeline.
fn section<'a>(md: &'a str, pipeline: &str) -> &'a str {
    let start = md
        .find(&format!("## {pipeline}\n"))
        .unwrap_or_else(|| panic!("no section {pipeline} in\n{md}"));
    let rest = &md[start + 3..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn quick_study_runs_every_method_and_reports_them() {
    let out = std::env::temp_dir().join(format!("ardpipe-study-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let files = [
        ("study_classification", "pipelines/study/classification.ard"),
        ("study_causal_lm", "pipelines/study/causal_lm.ard"),
    ];
    let expected: Vec<Vec<String>> = files.iter().map(|(_, f)| variants_of(f)).collect();
    let first = study(&out, &[]);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    let md = std::fs::read_to_string(out.join("RESULTS.md")).unwrap();
    let mut total = 0;
    for ((pipeline, _), expected) in files.iter().zip(&expected) {
        let variants = finished_variants(&out, pipeline);
        assert_eq!(&variants, expected, "{pipeline}");
        // Whatever the variants are, there is full fine-tuning, ARD-LoRA and a baseline.
        let method = |v: &String| method_of(&out.join(pipeline).join(v).join("seed-1"));
        let ard: Vec<&String> = variants
            .iter()
            .filter(|v| method(v) == "ard_lora")
            .collect();
        assert!(variants.iter().any(|v| v == "full"), "{variants:?}");
        assert!(
            !ard.is_empty(),
            "{pipeline}: no ARD-LoRA variant in {variants:?}"
        );
        assert!(ard.len() < variants.len() - 1, "{pipeline}: no baseline");
        total += variants.len();
        let section = section(&md, pipeline);
        // One finished run per variant: its row `| variant | 1 | …` in the results table (the
        // rows up to the first blank line after its header; the λ table has rows of that shape
        // too when λ is 1).
        let results: Vec<&str> = section
            .lines()
            .skip_while(|l| !l.starts_with("| method | runs |"))
            .take_while(|l| !l.is_empty())
            .collect();
        for v in &variants {
            let row = format!("| {v} | 1 |");
            assert_eq!(
                results.iter().filter(|l| l.starts_with(&row)).count(),
                1,
                "{v} in\n{section}"
            );
        }
        // The figure beside the report: one marker per variant.
        let svg = std::fs::read_to_string(out.join(format!("{pipeline}_pareto.svg"))).unwrap();
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches(r#"class="point""#).count(),
            variants.len(),
            "{svg}"
        );
        assert!(
            section.contains(&format!("]({pipeline}_pareto.svg)")),
            "{section}"
        );
        // Every ARD-LoRA variant: paired with each baseline (one seed: no interval), at a
        // matched budget, and its rank map.
        for a in &ard {
            let paired = format!("| {a} | ");
            assert_eq!(
                section
                    .lines()
                    .filter(|l| l.starts_with(&paired) && l.contains("| 1 |"))
                    .filter(|l| l.contains("| one seed: no interval |"))
                    .count(),
                variants.len() - ard.len(),
                "{a} in\n{section}"
            );
            assert!(
                section.contains(&format!("\n- `{a}` (")),
                "{a} in\n{section}"
            );
            assert!(
                section.contains(&format!("Rank map `{a}` learned")),
                "{a} in\n{section}"
            );
        }
        if *pipeline == "study_classification" {
            // It tests on `test`: its runs also scored validation, shown per variant.
            for v in &variants {
                let row = format!("| {v} | ×1 (the only one) | ");
                assert!(section.contains(&row), "{row} in\n{section}");
            }
        }
    }
    assert!(
        err.contains(&format!("{total} runs (1 seed(s) each), quick")),
        "{err}"
    );
    for want in [
        "| method | runs | loss | accuracy | macro_f1 | % of full | exported params | peak params \
         | adaptation memory, peak → end | peak RSS |",
        "| method | runs | loss | perplexity | % of full |",
        "| full | 1 |",
        "100.0% |",
        "Before training (the base model): loss",
        "; scores are on its `test` split",
        "**Paired comparisons** (on accuracy, higher is better",
        "**Paired comparisons** (on perplexity, lower is better",
        "**λ → rank** (ARD-LoRA",
        "**At a matched budget**",
        "**Pareto frontier**",
        "**exported params**: what export writes",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    assert!(!md.contains("within noise"), "{md}");
    assert!(!md.contains("Runs that failed"), "{md}");

    // A lost run (no summary) runs again; the others are kept.
    let lost = out
        .join("study_classification")
        .join(&expected[0][0])
        .join("seed-1");
    std::fs::remove_file(lost.join("summary.json")).unwrap();
    let again = study(&out, &["pipelines/study/classification.ard"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    let classification = finished_variants(&out, "study_classification").len();
    assert_eq!(
        err.matches("(finished earlier)").count(),
        classification - 1,
        "{err}"
    );
    assert!(lost.join("summary.json").is_file());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn quick_study_with_a_learning_rate_grid_chooses_a_factor_per_variant() {
    let out = std::env::temp_dir().join(format!("ardpipe-study-grid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = study(
        &out,
        &[
            "pipelines/study/classification.ard",
            "--variant",
            "full",
            "--lr-grid",
            "0.5,2",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("2 runs (1 seed(s) × 2 learning-rate factors each), quick"),
        "{err}"
    );
    for f in ["0.5", "2"] {
        let dir = out.join(format!("study_classification/full/lr-{f}/seed-1"));
        assert!(dir.join("summary.json").is_file(), "{}", dir.display());
        // The factor reached the run's resolved pipeline.
        let resolved = std::fs::read_to_string(dir.join("pipeline.resolved.json")).unwrap();
        assert!(resolved.contains("lr_scale"), "{resolved}");
    }
    let md = std::fs::read_to_string(out.join("RESULTS.md")).unwrap();
    for want in [
        "each variant ran at the pipeline's schedule × 0.5, 2",
        "| method | chosen factor | ×0.5 | ×2 |",
        "| full | 1 |",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    assert!(
        md.contains("| full | ×0.5 |") || md.contains("| full | ×2 |"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_learning_rate_grid_must_name_positive_factors_once() {
    let out = std::env::temp_dir().join(format!("ardpipe-study-badgrid-{}", std::process::id()));
    for (grid, why) in [
        ("0.5,0", "0 is not a positive number"),
        ("1,1", "1 is named twice"),
    ] {
        let o = study(
            &out,
            &["pipelines/study/classification.ard", "--lr-grid", grid],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(why), "{err}");
        assert!(!out.exists());
    }
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
