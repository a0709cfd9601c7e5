//! `ardpipe new`: a pipeline for each task and its example model that `check`, `fmt --check` and
//! `plan` accept as written, one that runs, and the refusals (an existing file, a task the model
//! cannot do).

use std::path::{Path, PathBuf};

use crate::{ardpipe, asset, stderr, stdout};

fn scratch(name: &str) -> PathBuf {
    crate::fresh_dir(&format!("new-{name}"))
}

fn smollm2() -> PathBuf {
    asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// `new`, then `check` and `plan` of what it wrote; returns the pipeline's text.
fn new_checks_and_plans(file: &Path, model: &Path, task: Option<&str>) -> String {
    let mut args = vec![
        "new",
        file.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ];
    if let Some(t) = task {
        args.extend(["--task", t]);
    }
    let out = ardpipe(&args);
    assert_eq!(out.status.code(), Some(0), "new: {}", stderr(&out));
    assert!(stdout(&out).contains("wrote"), "{}", stdout(&out));
    let text = std::fs::read_to_string(file).unwrap();
    let f = file.to_str().unwrap();
    let out = ardpipe(&["check", f]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check: {}\n{text}",
        stderr(&out)
    );
    let out = ardpipe(&["fmt", "--check", f]);
    assert_eq!(out.status.code(), Some(0), "fmt: {}\n{text}", stderr(&out));
    let out = ardpipe(&["plan", f, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "plan: {}\n{text}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        plan["runs"][0]["plan"].is_object(),
        "plan has no run: {plan}"
    );
    text
}

#[test]
fn new_writes_a_pipeline_per_task_that_checks_and_plans() {
    let dir = scratch("tasks");
    // The default task comes from the model: a decoder does causal_lm.
    let text = new_checks_and_plans(&dir.join("lm.ard"), &smollm2(), None);
    assert!(text.contains("head = causal_lm"), "{text}");
    assert!(text.contains("${assets}/shakespeare/*.txt"), "{text}");
    assert!(
        text.contains("path = \"${assets}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\""),
        "{text}"
    );
    // Module names from the model, the ARD-LoRA defaults of docs/LANGUAGE.md.
    assert!(
        text.contains("modules = [q_proj, k_proj, v_proj, o_proj]"),
        "{text}"
    );
    for knob in [
        "method = ard_lora",
        "r0 = 8",
        "scale = 16",
        "max = 4",
        "tv = depth",
    ] {
        assert!(text.contains(knob), "{knob} missing:\n{text}");
    }

    let text = new_checks_and_plans(&dir.join("chat.ard"), &smollm2(), Some("instruct"));
    assert!(text.contains("messages = \"messages\""), "{text}");

    // An encoder's default is classification; its heads live under `bert.` there, and the
    // attention output's `dense` shares its name with the MLP's, so it is named by a glob.
    let text = new_checks_and_plans(&dir.join("cls.ard"), &asset("minilm"), None);
    assert!(text.contains("head = sequence_classification"), "{text}");
    assert!(
        text.contains(
            "modules = [query, key, value, \"bert.encoder.layer.*.attention.output.dense\"]"
        ),
        "{text}"
    );

    // The composed vision-language model set-up makes (scripts/vqa_model.sh): one adapter per
    // tower and the projector in full.
    let text = new_checks_and_plans(
        &dir.join("vqa.ard"),
        &asset("vqa-smollm2-siglip"),
        Some("vqa"),
    );
    for block in [
        "adapter vision_tower",
        "adapter language_model",
        "adapter projector",
        "image = \"image\"",
    ] {
        assert!(text.contains(block), "{block} missing:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_pipeline_runs_as_written() {
    let dir = scratch("run");
    let file = dir.join("tweets.ard");
    let out = ardpipe(&[
        "new",
        file.to_str().unwrap(),
        "--model",
        asset("minilm").to_str().unwrap(),
        "--task",
        "classification",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ardpipe(&[
        "run",
        file.to_str().unwrap(),
        "-q",
        "--set",
        "train.steps=2",
        "--set",
        "evaluate.max_examples=32",
        "--set",
        &format!("output.dir=\"{}\"", dir.join("run").display()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = std::fs::read_to_string(dir.join("run/summary.json"))
        .unwrap_or_else(|e| panic!("no summary.json: {e}\n{}", stderr(&out)));
    assert!(summary.contains("accuracy"), "{summary}");
    assert!(dir.join("run/adapter/adapter_config.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn new_refuses_an_existing_file_and_a_task_the_model_cannot_do() {
    let dir = scratch("refuse");
    let file = dir.join("p.ard");
    std::fs::write(&file, "# mine\n").unwrap();
    let minilm = asset("minilm");
    let args = |task: &str, model: &Path| {
        ardpipe(&[
            "new",
            file.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--task",
            task,
        ])
    };
    let out = args("classification", &minilm);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");

    std::fs::remove_file(&file).unwrap();
    let out = args("causal_lm", &minilm);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is an encoder"), "{}", stderr(&out));
    let out = args("vqa", &smollm2());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("vqa needs a vision-language model"),
        "{}",
        stderr(&out)
    );
    let out = args("instruct", &asset("vqa-smollm2-siglip"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("use --task vqa"), "{}", stderr(&out));
    assert!(!file.exists(), "a refused pipeline was written");

    // --force replaces a file, whole.
    std::fs::write(&file, "# mine\n").unwrap();
    let out = ardpipe(&[
        "new",
        file.to_str().unwrap(),
        "--model",
        minilm.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("adapter attention")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
