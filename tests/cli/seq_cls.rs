//! Sequence classification beyond BERT, end to end through the CLI: short ARD-LoRA runs on a
//! tiny Llama (transformers' `score` head on the last non-padding token) and a tiny RoBERTa
//! (`classifier.dense` → tanh → `classifier.out_proj`), both saved by the peer's transformers
//! with a real tokenizer.json; each run's PEFT export, loaded by Hugging Face PEFT onto
//! `AutoModelForSequenceClassification`, reproduces the logits `ardpipe classify --adapter`
//! prints. One peer process makes the models, one checks both exports.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{ardpipe, stderr, stdout};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the peer's python with `args` (a script and its arguments), offline and quiet; its
/// stdout. A failing peer fails the test with its stderr.
pub(crate) fn peer(args: &[&Path]) -> String {
    let out = Command::new(crate::peer_python())
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the peer failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const ROWS: &[(&str, &str)] = &[
    ("New study links sleep to heart health", "health"),
    ("A daily walk lowers blood pressure", "health"),
    ("Vaccines save millions of lives", "health"),
    ("Doctors warn about the flu season", "health"),
    ("Hospital waiting times rise again", "health"),
    ("Researchers say sleep helps the heart", "health"),
    ("Stocks fell sharply today", "money"),
    ("The bank raised its rates", "money"),
    ("Markets rally after the report", "money"),
    ("Investors sell shares of the bank", "money"),
    ("The price of oil rises", "money"),
    ("Rates and prices fall this winter", "money"),
    ("The team won the final", "sport"),
    ("A new record in the marathon", "sport"),
    ("Kids play football every summer", "sport"),
    ("The coach praised his players", "sport"),
    ("Fans cheer as the team wins", "sport"),
    ("She runs every morning for the race", "sport"),
];

pub(crate) const TEXTS: &[&str] = &[
    "Doctors approve a walk for kids every winter",
    "Flu",
    "The bank and the team",
];

pub(crate) fn pipeline(dir: &Path, model: &Path, modules: &str) -> PathBuf {
    let csv = dir.join("data.csv");
    let mut text = String::from("text,label\n");
    for (t, l) in ROWS {
        text.push_str(&format!("{t},{l}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let file = dir.join("seq_cls.ard");
    std::fs::write(
        &file,
        format!(
            r#"pipeline {{
    name = "seq_cls"
    seed = 3
}}

dataset news {{
    format = csv
    path = "{csv}"
    text = "text"
    label = "label"
    split {{
        validation = 20%
        seed = 1
    }}
    preprocess {{
        max_length = 32
    }}
}}

model {{
    path = "{model}"
    head = sequence_classification
    classes = auto
    device = cpu
}}

adapter attn {{
    method = ard_lora
    modules = {modules}
    layers = all
    heads = all
    r0 = 4
    scale = 8
    dropout = 0.0
    alpha {{
        init = 1
        min = 0
        max = 2
    }}
    regularize {{
        lambda = 1e-3
        beta = 1
        gamma = 0.5
        tv = depth
    }}
}}

train {{
    dataset = news
    optimizer = adamw(weight_decay = 0.0)
    lr = 3e-2
    alpha_lr = 1e-2
    batch_size = 4
    steps = 6
    precision = f32
    eval_every = 3 steps
}}

evaluate {{
    split = validation
    metrics = [loss, accuracy, macro_f1]
}}

output {{
    dir = "{out}"
    export = [peft]
    report = false
}}
"#,
            csv = csv.display(),
            model = model.display(),
            out = dir.join("run").display(),
        ),
    )
    .unwrap();
    file
}

/// Train, check the export's shape, and classify the texts with the adapter; returns the run
/// folder and the file with ardpipe's logits.
fn train_and_classify(
    dir: &Path,
    model: &Path,
    modules: &str,
    plan_check: (&str, u64),
    head: &[&str],
) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let file = pipeline(dir, model, modules);
    // The plan addresses the modules as transformers' task model names them and counts the head.
    let out = ardpipe(&["plan", file.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plan = &v["runs"][0]["plan"];
    let first = plan["adapters"][0]["modules"][0]["path"].as_str().unwrap();
    assert_eq!(first, plan_check.0, "{plan}");
    assert_eq!(plan["head_parameters"], plan_check.1, "{plan}");
    let out = ardpipe(&["run", file.to_str().unwrap(), "-q", "--threads", "1"]);
    let text = stdout(&out) + &stderr(&out);
    assert!(out.status.success(), "{text}");
    let run = dir.join("run");
    // The classifier is evaluated on the validation split during and after training.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(
        metrics.contains("\"accuracy\"") && metrics.contains("\"macro_f1\""),
        "no evaluation in {metrics}"
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("adapter/adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["task_type"], "SEQ_CLS", "{cfg}");
    let saved: Vec<String> = serde_json::from_value(cfg["modules_to_save"].clone()).unwrap();
    assert_eq!(saved, head, "{cfg}");
    let mut args = vec![
        "classify",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        run.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend(TEXTS);
    let out = ardpipe(&args);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("head tensors"),
        "the trained head is merged: {err}"
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probs = rows[0]["probabilities"].as_array().unwrap();
    assert_eq!(probs.len(), 3, "classify names the run's three classes");
    assert_eq!(probs[0][0], "health");
    let ours = dir.join("classify.json");
    std::fs::write(&ours, &out.stdout).unwrap();
    (run, ours)
}

#[test]
fn decoder_and_roberta_classifiers_train_and_their_peft_exports_reproduce_ardpipe() {
    let root = std::env::temp_dir().join(format!("ardpipe-seq-cls-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let models = root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    peer(&[&repo().join("engine/models/tests/peer/seq_cls.py"), &models]);

    let llama = models.join("llama");
    let (llama_run, llama_json) = train_and_classify(
        &root.join("llama"),
        &llama,
        "[q_proj, v_proj]",
        // score: 3 classes × hidden 32, no bias.
        ("model.layers.0.self_attn.q_proj", 3 * 32),
        &["score"],
    );
    let roberta = models.join("roberta");
    let (roberta_run, roberta_json) = train_and_classify(
        &root.join("roberta"),
        &roberta,
        "[query, value]",
        // classifier.dense (32 × 32 + 32) and classifier.out_proj (3 × 32 + 3).
        (
            "roberta.encoder.layer.0.attention.self.query",
            32 * 32 + 32 + 3 * 32 + 3,
        ),
        &["classifier"],
    );

    let report = peer(&[
        &repo().join("tests/peer/peft_seq_cls.py"),
        Path::new("llama"),
        &llama,
        &llama_run.join("adapter"),
        &llama_json,
        Path::new("roberta"),
        &roberta,
        &roberta_run.join("adapter"),
        &roberta_json,
    ]);
    let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    for name in ["llama", "roberta"] {
        let r = &v[name];
        let diff = r["max_abs_diff"].as_f64().unwrap();
        let lora = r["lora_effect"].as_f64().unwrap();
        let head = r["head_effect"].as_f64().unwrap();
        eprintln!(
            "{name}: max |Δlogit| PEFT vs ardpipe {diff:.2e}, LoRA effect {lora:.2e}, adapter+head effect {head:.2e}"
        );
        assert_eq!(r["rows"], 3, "{v}");
        assert!(
            diff < 1e-4,
            "{name}: PEFT's logits differ from ardpipe's by {diff}: {v}"
        );
        // The comparison means something only if the adapters and the head moved the logits
        // well past the tolerance.
        assert!(
            lora > 1e-3,
            "{name}: the LoRA deltas barely change the logits ({lora}): {v}"
        );
        assert!(
            head > 1e-3,
            "{name}: the export barely changes the logits ({head}): {v}"
        );
    }

    // A model fine-tuned for another problem than one-of-N is refused, not given softmax scores.
    let multi = models.join("roberta-multi");
    std::fs::create_dir_all(&multi).unwrap();
    for f in std::fs::read_dir(&roberta).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, multi.join(f.file_name().unwrap())).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(multi.join("config.json")).unwrap()).unwrap();
    cfg["problem_type"] = "multi_label_classification".into();
    std::fs::write(multi.join("config.json"), cfg.to_string()).unwrap();
    let out = ardpipe(&["classify", "--model", multi.to_str().unwrap(), "a text"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("multi_label_classification"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
