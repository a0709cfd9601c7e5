//! `inspect model`, `generate`, `classify`, `embed` and `bench models` on the real assets.

use crate::{ardpipe, stderr, stdout};

fn asset(rel: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ardpipe/assets");
    let p = root.join(rel);
    assert!(
        p.exists(),
        "example asset {} is missing: run `python3 scripts/setup.py`",
        p.display()
    );
    p.display().to_string()
}

fn smollm2() -> String {
    asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn inspect_model_shows_architecture_parameters_and_modules() {
    let out = ardpipe(&["inspect", "model", &smollm2()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for s in [
        "architecture  llama",
        "30 layers, hidden 576, FFN 1536, 9 heads (3 KV heads) × 64",
        "134,515,008",
        "Q4_1 ×210",
        "model.layers.{0-29}.self_attn.k_proj",
        "3 heads × 64 rows (output axis)",
        "9 heads × 64 columns (input axis)",
        "no heads (MLP)",
    ] {
        assert!(text.contains(s), "`{s}` missing from:\n{text}");
    }

    let out = ardpipe(&["inspect", "model", &asset("minilm"), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["config"]["architecture"], "bert");
    assert_eq!(v["parameters"], 22_713_216);
    let modules = v["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 36);
    assert_eq!(modules[0]["path"], "encoder.layer.0.attention.self.query");
    assert_eq!(modules[0]["heads"]["n_heads"], 12);
}

#[test]
fn inspect_model_errors_say_what_is_wrong() {
    let out = ardpipe(&["inspect", "model", "/nonexistent/model.gguf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/model.gguf"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn generate_greedy_chat_streams_the_reply() {
    let out = ardpipe(&[
        "generate",
        "--model",
        &smollm2(),
        "--chat",
        "--prompt",
        "What is the capital of France?",
        "--max-tokens",
        "16",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "The capital of France is Paris.\n");

    // Sampling is seeded: the same seed gives the same text, and max-tokens is respected.
    let args = |seed: &str| {
        ardpipe(&[
            "generate",
            "--model",
            &smollm2(),
            "--prompt",
            "Once upon a time",
            "--max-tokens",
            "6",
            "--temperature",
            "0.8",
            "--top-k",
            "40",
            "--top-p",
            "0.95",
            "--seed",
            seed,
        ])
    };
    let (a, b) = (args("1"), args("1"));
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(stdout(&a), stdout(&b));
    assert!(!stdout(&a).trim().is_empty());

    let out = ardpipe(&[
        "generate",
        "--model",
        &smollm2(),
        "--prompt",
        "x",
        "--top-k",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("temperature"), "{}", stderr(&out));
    let out = ardpipe(&[
        "generate",
        "--model",
        &smollm2(),
        "--prompt",
        "x",
        "--adapter",
        "/tmp",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no adapter_config.json here or in adapter/"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn embed_gives_the_golden_cosines() {
    let out = ardpipe(&[
        "embed",
        "--model",
        &asset("minilm"),
        "A man is playing a guitar.",
        "Someone plays an instrument.",
        "The stock market fell sharply today.",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text.contains("[0] dim 384 [0.0216"), "{text}");
    assert!(text.contains(" 0.667"), "{text}");
    assert!(text.contains("-0.05"), "{text}");
}

#[test]
fn classify_attaches_a_new_head_and_says_so() {
    let out = ardpipe(&[
        "classify",
        "--model",
        &asset("minilm"),
        "--num-labels",
        "3",
        "--format",
        "json",
        "flu season is here",
        "new study on sleep",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("labels are arbitrary until the model is fine-tuned"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let p: f64 = rows[0]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[1].as_f64().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-4);

    let out = ardpipe(&["classify", "--model", &asset("minilm"), "hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--num-labels"), "{}", stderr(&out));
    // A decoder (here from GGUF) gets transformers' `score` head on its last non-pad token.
    let out = ardpipe(&[
        "classify",
        "--model",
        &smollm2(),
        "--num-labels",
        "2",
        "--format",
        "json",
        "hi",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("labels are arbitrary until the model is fine-tuned"),
        "{}",
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["logits"].as_array().unwrap().len(), 2, "{v}");
}

fn bench_json(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "-q", "bench", "models", "--model", "minilm", "--steps", "1", "--warmup", "0", "--json",
    ];
    args.extend_from_slice(extra);
    let out = ardpipe(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

#[test]
fn bench_models_trains_lora_and_compacts_ard_lora() {
    // LoRA r 8 on query and value of 6 layers (8 × (384 + 384) each) plus the head that trains
    // with it: pooler.dense (384 × 384 + 384) and the 16-class classifier (16 × 384 + 16).
    let v = bench_json(&["--method", "lora"]);
    assert!(v["loss"].as_f64().unwrap().is_finite(), "{v}");
    assert!(v["median_step_s"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["modules"], 12);
    assert_eq!(v["rank_total"], 12 * 8);
    let lora = 12 * 8 * (384 + 384);
    let head = 384 * 384 + 384 + 16 * 384 + 16;
    assert_eq!(v["trainable_params"], lora + head);

    // ARD-LoRA at r0 8 per head (12 heads) stores 96 rows per module; the compaction pattern
    // (ranks 2, 3, 4, one margin row) leaves 5 per head, and mean effective rank 3.
    let v = bench_json(&["--method", "ard_lora", "--compacted"]);
    assert!(v["loss"].as_f64().unwrap().is_finite(), "{v}");
    assert_eq!(v["rank_total"], 12 * 12 * 5);
    assert_eq!(v["mean_effective_rank"], 3.0);
    let alpha = 12 * 12;
    assert_eq!(
        v["trainable_params"],
        12 * 12 * 5 * (384 + 32) + alpha + head
    );

    let out = ardpipe(&["bench", "models", "--method", "lora", "--compacted"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--compacted applies to --method ard_lora only"));
}

/// `classify` and `embed` with `--format yaml` print YAML (they printed JSON), with the same
/// content as `--format json`.
#[test]
fn classify_and_embed_yaml_is_yaml() {
    for args in [&["classify", "--num-labels", "2"][..], &["embed"][..]] {
        let with = |format: &str| {
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a.extend([
                "--model".into(),
                asset("minilm"),
                "--format".into(),
                format.into(),
            ]);
            a.extend(["flu season is here".into(), "new study on sleep".into()]);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let out = ardpipe(&a);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            stdout(&out)
        };
        let yaml = with("yaml");
        assert!(
            yaml.starts_with("- text: "),
            "{args:?}: not block YAML:\n{yaml}"
        );
        let from_yaml: serde_json::Value = serde_yaml::from_str(&yaml).expect("YAML");
        let from_json: serde_json::Value = serde_json::from_str(&with("json")).expect("JSON");
        assert_eq!(from_yaml, from_json, "{args:?}");
    }
}

/// `generate --image`: a PaliGemma folder composed from the SmolLM2 GGUF (a 1-layer SigLIP tower,
/// 32×32 px, 4 image tokens) answers about a real easy-VQA image, greedy (with and without a
/// PEFT adapter, as transformers does: tests/peer/paligemma_generate.py) and sampled; it is
/// refused without --image, and --image is refused for a text-only model, each saying what to
/// do; a bad image file is a clear error.
#[test]
fn generate_with_an_image_on_a_vision_language_model() {
    let dir = std::env::temp_dir().join(format!("ardpipe-generate-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The folder is ~550 MB: removed however the test ends.
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(dir.clone());
    let model = dir.join("pg");
    let model = model.to_str().unwrap();
    let out = ardpipe(&[
        "compose",
        "--decoder",
        &smollm2(),
        "--out",
        model,
        "--image-size",
        "32",
        "--patch-size",
        "16",
        "--hidden-size",
        "32",
        "--intermediate-size",
        "64",
        "--layers",
        "1",
        "--heads",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let image = asset("easyvqa/test/images/0.png");
    let ask = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            model,
            "--prompt",
            "What shape is in the image?",
        ];
        args.extend_from_slice(extra);
        ardpipe(&args)
    };

    // Greedy, without and with a PEFT LoRA adapter (on both towers and the projector), as
    // transformers' PaliGemmaForConditionalGeneration.generate answers on the same folder.
    let adapter = dir.join("adapter");
    let peer = std::process::Command::new(crate::peer_python())
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/peer/paligemma_generate.py"),
        )
        .args([model, &image, "What shape is in the image?", "12"])
        .arg(&adapter)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap();
    assert!(
        peer.status.success(),
        "the peer failed: {}",
        String::from_utf8_lossy(&peer.stderr)
    );
    let want: serde_json::Value = serde_json::from_slice(&peer.stdout).unwrap();
    let out = ask(&["--image", &image, "--max-tokens", "12"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}\n", want["base"].as_str().unwrap())
    );
    assert!(
        stderr(&out).contains(&format!(
            "{} prompt tokens (4 of the image), 12 generated",
            want["prompt_tokens"]
        )),
        "{}",
        stderr(&out)
    );
    let out = ask(&[
        "--image",
        &image,
        "--max-tokens",
        "12",
        "--adapter",
        adapter.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = want["adapter"].as_str().unwrap();
    assert!(!text.trim().is_empty(), "the adapter's answer is blank");
    assert_eq!(stdout(&out), format!("{text}\n"));
    // Sampled, seeded: some text, the same twice.
    let sampled = || {
        ask(&[
            "--image",
            &image,
            "--max-tokens",
            "8",
            "--temperature",
            "0.8",
            "--top-k",
            "40",
            "--seed",
            "3",
        ])
    };
    let (a, b) = (sampled(), sampled());
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert!(!stdout(&a).trim().is_empty(), "no text: {:?}", stdout(&a));
    assert_eq!(stdout(&a), stdout(&b));

    // No image for a vision-language model.
    let out = ask(&[]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("is a vision-language model (PaliGemma)") && e.contains("--image FILE"),
        "{e}"
    );
    // An image for a text-only model.
    let out = ardpipe(&[
        "generate",
        "--model",
        &smollm2(),
        "--image",
        &image,
        "--prompt",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("is a text-only llama model: it reads no image") && e.contains("drop --image"),
        "{e}"
    );
    // Bad image files: missing, not an image, cut short.
    let cut = dir.join("cut.png");
    std::fs::write(&cut, &std::fs::read(&image).unwrap()[..100]).unwrap();
    let missing = dir.join("missing.png");
    for (file, says) in [
        (missing.to_str().unwrap(), "does not exist"),
        (model, "is not a file"),
        (&format!("{model}/config.json"), "cannot decode the image"),
        (cut.to_str().unwrap(), "cannot decode the image"),
    ] {
        let out = ask(&["--image", file]);
        assert_eq!(out.status.code(), Some(1), "{file}");
        let e = stderr(&out);
        assert!(e.contains(says) && e.contains("PNG or JPEG"), "{file}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}
