//! `ardpipe plan`'s memory estimate against what runs measure, and what it says of models this
//! machine cannot hold: LLaMA-3.1-8B and -70B on named GPUs.

use std::path::{Path, PathBuf};

use crate::{ardpipe, asset, stderr, stdout};

fn causal_lm() -> String {
    format!("{}/../pipelines/causal_lm.ard", env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    crate::fresh_dir(&format!("memory-{name}"))
}

/// A short SmolLM2 run (2 steps of 4 × 128 tokens, ARD-LoRA on attention and half the MLPs,
/// then an evaluation of 4 blocks) with `sets` on top.
fn short_run(out: &Path, sets: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        // The first 2,000 lines are enough blocks, and reading them is quick.
        "dataset.shakespeare.max_rows=2000",
        "train.steps=2",
        "train.grad_accum=1",
        "train.eval_every=2 steps",
        "evaluate.batch_size=2",
        "evaluate.max_examples=4",
        "output.export=[]",
    ]
    .iter()
    .chain(sets)
    .flat_map(|s| ["--set".to_string(), s.to_string()])
    .collect();
    args.extend(["--set".into(), format!("output.dir=\"{}\"", out.display())]);
    args
}

fn with<'a>(head: &[&'a str], rest: &'a [String]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(rest.iter().map(String::as_str))
        .collect()
}

fn planned_total(args: &[String]) -> (u64, serde_json::Value) {
    let p = causal_lm();
    let out = ardpipe(&with(&["plan", &p, "--format", "json"], args));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let memory = v["runs"][0]["plan"]["memory"].clone();
    (memory["total"].as_u64().unwrap(), memory)
}

/// The estimate lands within 15% of the measured peak resident memory (summary.json's VmHWM) in
/// three ways of holding the base: f32 with every activation kept, bf16 with checkpointed
/// layers, int8 under bf16 autocast. And the cheaper forms are measured to be cheaper.
#[test]
fn the_plan_estimates_the_peak_a_run_measures() {
    let mut measured = Vec::new();
    for (name, sets) in [
        ("f32", &["model.dtype=f32", "train.precision=f32"][..]),
        (
            "bf16-checkpointed",
            &["model.dtype=auto", "train.checkpointing=layers"][..],
        ),
        ("int8", &["model.dtype=auto", "model.quantize=int8"][..]),
    ] {
        let dir = scratch(name);
        let args = short_run(&dir.join("run"), sets);
        let (planned, memory) = planned_total(&args);
        let p = causal_lm();
        let out = ardpipe(&with(&["run", &p, "-q"], &args));
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
                .unwrap();
        let peak = summary["peak_rss_mb"].as_f64().unwrap() * (1u64 << 20) as f64;
        let ratio = planned as f64 / peak;
        eprintln!(
            "{name}: planned {:.0} MiB, measured {:.0} MiB ({ratio:.3}); {memory}",
            planned as f64 / (1u64 << 20) as f64,
            peak / (1u64 << 20) as f64
        );
        assert!((0.85..=1.15).contains(&ratio), "{name}: {ratio:.3}");
        measured.push(peak);
        let _ = std::fs::remove_dir_all(&dir);
    }
    // bf16 storage with checkpointing, and int8, each hold less than the f32 base does.
    assert!(measured[1] < 0.7 * measured[0], "{measured:?}");
    assert!(measured[2] < 0.8 * measured[0], "{measured:?}");
}

/// A config-only folder beside a stand-in tokenizer (the plan tokenizes the data to count it;
/// no weights are read).
fn config_folder(name: &str) -> PathBuf {
    let dir = scratch(name);
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/models/tests/fixtures/real_configs")
        .join(name);
    std::fs::copy(fixtures.join("config.json"), dir.join("config.json")).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(asset(&format!("vqa-smollm2-siglip/{f}")), dir.join(f)).unwrap();
    }
    dir
}

fn fit(model: &Path, device: &str, nproc: u32, sets: &[&str]) -> serde_json::Value {
    let p = causal_lm();
    let mut args: Vec<String> = vec![
        "plan".into(),
        p,
        "--format".into(),
        "json".into(),
        "--fit".into(),
        device.into(),
        "--nproc".into(),
        nproc.to_string(),
        "--set".into(),
        format!("model.path=\"{}\"", model.display()),
        "--set".into(),
        "model.format=hf_folder".into(),
        "--set".into(),
        "model.dtype=auto".into(),
        // Sequences of 2,048 tokens, 2 per micro-batch, evaluated 2 at a time (evaluation
        // holds a batch's full-vocabulary logits: 2 × 2048 × 128,256 f32).
        "--set".into(),
        "dataset.shakespeare.preprocess.block_size=2048".into(),
        "--set".into(),
        "train.batch_size=2".into(),
        "--set".into(),
        "evaluate.batch_size=2".into(),
    ];
    for s in sets {
        args.extend(["--set".into(), s.to_string()]);
    }
    let out = ardpipe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["runs"][0]["fit"].clone()
}

fn gib(v: &serde_json::Value) -> f64 {
    v["memory"]["total"].as_u64().unwrap() as f64 / (1u64 << 30) as f64
}

/// LLaMA-3.1-70B, the paper's model: its bf16 base alone (141 GB) overflows an 80 GB GPU, and
/// data parallelism does not help (every process holds the whole model); an int4 base with
/// checkpointed layers fits one H100. 8B in bf16 fits one.
#[test]
fn the_plan_says_what_fits_a_gpu_for_llama_3_1() {
    let b70 = config_folder("llama-3.1-70b");
    let bf16 = fit(&b70, "h100", 1, &[]);
    assert_eq!(bf16["fits"], false, "{bf16}");
    assert!(gib(&bf16) > 130.0, "{bf16}");
    let eight = fit(&b70, "h100", 8, &[]);
    assert_eq!(eight["fits"], false, "{eight}");
    assert_eq!(eight["processes"], 8);
    assert!(
        gib(&eight) < gib(&bf16),
        "each of 8 processes takes half the batch of 2"
    );
    let int4 = fit(
        &b70,
        "h100",
        1,
        &["model.quantize=int4", "train.checkpointing=layers"],
    );
    assert_eq!(int4["fits"], true, "{int4}");
    assert_eq!(int4["memory"]["base_storage"], "int4 (groups of 32)");
    let base = int4["memory"]["weights"].as_u64().unwrap() as f64 / 1e9;
    // 68.4 B linear weights at 5 bits (4-bit codes, an f16 step and minimum per 32) and the
    // embedding and untied head, 2 × 1.05 B weights in bf16: 42.8 + 4.2 GB.
    assert!((45.0..49.0).contains(&base), "{base} GB");
    eprintln!(
        "70B: bf16 {:.1} GiB, bf16 on 8 GPUs {:.1} GiB each, int4 + checkpointing {:.1} GiB",
        gib(&bf16),
        gib(&eight),
        gib(&int4)
    );
    let text_out = ardpipe(&[
        "plan",
        &causal_lm(),
        "--fit",
        "h100",
        "--set",
        &format!("model.path=\"{}\"", b70.display()),
        "--set",
        "model.format=hf_folder",
        "--set",
        "model.quantize=int4",
    ]);
    let text = stdout(&text_out);
    assert!(
        text.contains("fit        fits NVIDIA H100 80GB")
            || text.contains("fit        does not fit"),
        "{text}"
    );

    let b8 = config_folder("llama-3.1-8b");
    let eight_b = fit(&b8, "h100", 1, &[]);
    assert_eq!(eight_b["fits"], true, "{eight_b}");
    let small = fit(&b8, "l4", 1, &[]);
    assert_eq!(
        small["fits"], false,
        "8B in bf16 with every activation kept: {small}"
    );
    let _ = std::fs::remove_dir_all(b70);
    let _ = std::fs::remove_dir_all(b8);
}

#[test]
fn an_unknown_device_is_named_with_the_known_ones() {
    let out = ardpipe(&["plan", &causal_lm(), "--fit", "h1000"]);
    assert_ne!(out.status.code(), Some(0));
    let e = stderr(&out);
    assert!(
        e.contains("unknown device `h1000`") && e.contains("h100"),
        "{e}"
    );
}
