//! The decoder families beyond Llama — Qwen2/2.5, Mistral, Qwen3, Gemma, Gemma 2 and Gemma 3
//! text — read from the folders the current transformers saves (one Python process,
//! engine/models/tests/peer/decoders.py, makes every family's tiny random model with its
//! features switched on) and checked against transformers' own numbers: logits on a
//! right-padded batch of two within 1e-4, 32 tokens of greedy generation through the KV cache,
//! the parameter count, and the config.json ardpipe would write. The same models with their
//! config in transformers 4's layout give the same logits; fields ardpipe does not implement
//! are refused.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ardpipe_models::arch::config::{ArchConfig, DecoderFamily, LayerType};
use ardpipe_models::generate::{Sampling, generate};
use ardpipe_models::hf::config::parse_config;
use ardpipe_models::{LoadOptions, describe, load_causal_lm};
use serde_json::Value;
use tch::{Kind, Tensor};

mod support;
use support::{json, peer_command, run_peer, tensor_i64};

/// Every family's folder, made once per test binary.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ardpipe-decoders-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        run_peer(peer_command("decoders.py").arg(&d));
        d
    })
}

/// ardpipe's logits for the folder's model on the reference batch, against transformers',
/// over the real tokens: the largest |difference|.
fn logits_diff(dir: &Path) -> f64 {
    let reference = json(&dir.join("reference.json"));
    let ids = tensor_i64(&reference["ids"]);
    let mask = tensor_i64(&reference["mask"]);
    let (b, t) = ids.size2().unwrap();
    let rows: Vec<Vec<Vec<f32>>> = serde_json::from_value(reference["logits"].clone()).unwrap();
    let want = Tensor::from_slice(&rows.concat().concat()).reshape([b, t, -1]);
    let lm = load_causal_lm(dir, &LoadOptions::default()).unwrap();
    let got = tch::no_grad(|| lm.model.forward(&ids, Some(&mask), false)).unwrap();
    assert_eq!(got.size(), want.size());
    let real = mask.to_kind(Kind::Bool).unsqueeze(-1);
    (&got - &want)
        .abs()
        .masked_fill(&real.logical_not(), 0.0)
        .max()
        .double_value(&[])
}

/// A family's checks: logits, greedy generation, parameter count, the config ardpipe would
/// write; returns the folder.
fn family_matches_transformers(case: &str, family: DecoderFamily) -> PathBuf {
    let dir = fixtures().join(case);
    let reference = json(&dir.join("reference.json"));
    let diff = logits_diff(&dir);
    println!("{case}: max |Δlogit| against transformers {diff:.2e}");
    assert!(
        diff < 1e-4,
        "{case}: logits differ from transformers' by {diff}"
    );
    if let Some(effect) = reference.get("window_effect").and_then(Value::as_f64) {
        println!("{case}: lifting the sliding window moves transformers' logits by {effect:.2e}");
        assert!(
            effect > 1e-2,
            "{case}: the sliding window barely matters here ({effect}): the check would not catch a missing window"
        );
    }

    // Greedy generation through the KV cache, 32 tokens past the windows.
    let lm = load_causal_lm(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(lm.model.config.family, family);
    let prompt: Vec<i64> = serde_json::from_value(reference["prompt"].clone()).unwrap();
    let want: Vec<i64> = serde_json::from_value(reference["generated"].clone()).unwrap();
    assert_eq!(want.len(), 32, "{case}: transformers stopped early");
    let s = Sampling {
        max_tokens: 32,
        ..Default::default()
    };
    let (got, _) = generate(&lm.model, &prompt, &[], &s, |_| Ok(())).unwrap();
    assert_eq!(
        got, want,
        "{case}: greedy generation differs from transformers'"
    );
    println!("{case}: 32 greedy tokens equal transformers'");

    // The planner's parameter count includes every norm and bias.
    let desc = describe(&dir).unwrap();
    let n = reference["parameters"].as_u64().unwrap() as usize;
    assert_eq!(desc.parameters, n, "{case}: parameter count");

    // The config.json ardpipe writes says what transformers wrote, and reads back the same.
    let saved = json(&dir.join("config.json"));
    let ours = lm.model.config.hf_config_json();
    for (k, v) in ours.as_object().unwrap() {
        // Qwen2's config class has no head_dim field (its attention reads one if present).
        if k == "head_dim" && saved.get(k).is_none() {
            continue;
        }
        let theirs = &saved[k.as_str()];
        let same = match (v.as_f64(), theirs.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => v == theirs,
        };
        assert!(
            same,
            "{case}: hf_config_json {k} = {v}, transformers wrote {theirs}"
        );
    }
    let back = parse_config(Path::new("hf_config_json"), &ours.to_string()).unwrap();
    assert_eq!(back, ArchConfig::Llama(lm.model.config.clone()), "{case}");

    // The same model with its config in transformers 4's layout reads the same.
    let v4 = fixtures().join(format!("{case}_v4"));
    if v4.exists() {
        let diff = logits_diff(&v4);
        println!("{case} (transformers 4 layout): max |Δlogit| {diff:.2e}");
        assert!(
            diff < 1e-4,
            "{case}, transformers 4 layout: logits differ by {diff}"
        );
        let old = load_causal_lm(&v4, &LoadOptions::default()).unwrap();
        assert_eq!(
            old.model.config, lm.model.config,
            "{case}: the two layouts differ"
        );
    }
    dir
}

fn load_error(dir: &Path) -> String {
    match load_causal_lm(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// The config of `case` edited by `edit`, in a scratch folder beside it (weights linked).
fn edited(case: &str, tag: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let src = fixtures().join(case);
    let dir = fixtures().join(format!("{case}-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = json(&src.join("config.json"));
    edit(&mut c);
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    let _ = std::fs::remove_file(dir.join("model.safetensors"));
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    dir
}

#[test]
fn llama_with_padding_and_biases_matches_transformers() {
    family_matches_transformers("llama", DecoderFamily::Llama);
}

#[test]
fn qwen2_matches_transformers() {
    family_matches_transformers("qwen2", DecoderFamily::Qwen2);
    let c = describe(&fixtures().join("qwen2")).unwrap();
    let m = c.modules.iter().find(|m| m.name == "o_proj").unwrap();
    assert!(!m.bias, "Qwen2's o_proj has no bias");
    // A layer marked sliding with the window switched off contradicts itself.
    let dir = edited("qwen2", "off", |c| c["use_sliding_window"] = false.into());
    let e = load_error(&dir);
    assert!(e.contains("use_sliding_window"), "{e}");
}

#[test]
fn mistral_matches_transformers() {
    family_matches_transformers("mistral", DecoderFamily::Mistral);
    // Without a window (null) Mistral attends fully; layer_types (Ministral) is refused.
    let dir = edited("mistral", "types", |c| {
        c["layer_types"] = serde_json::json!(vec!["full_attention"; 4])
    });
    let e = load_error(&dir);
    assert!(e.contains("layer_types") && e.contains("Ministral"), "{e}");
    let dir = edited("mistral", "huge", |c| {
        c["sliding_window"] = serde_json::json!(1u64 << 40)
    });
    let e = load_error(&dir);
    assert!(e.contains("sliding_window = 1099511627776"), "{e}");
    let dir = edited("mistral", "null", |c| c["sliding_window"] = Value::Null);
    let lm = load_causal_lm(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(lm.model.config.sliding_window, None);
    assert!(lm.model.config.layer_types.is_empty());
}

#[test]
fn qwen3_matches_transformers() {
    family_matches_transformers("qwen3", DecoderFamily::Qwen3);
}

#[test]
fn gemma_matches_transformers() {
    family_matches_transformers("gemma", DecoderFamily::Gemma);
    let dir = edited("gemma", "bidi", |c| {
        c["use_bidirectional_attention"] = true.into()
    });
    let e = load_error(&dir);
    assert!(e.contains("use_bidirectional_attention"), "{e}");
}

#[test]
fn gemma2_matches_transformers_in_both_layouts() {
    family_matches_transformers("gemma2", DecoderFamily::Gemma2);
    // transformers 4's layout has no layer_types: even layers slide.
    let lm = load_causal_lm(&fixtures().join("gemma2_v4"), &LoadOptions::default()).unwrap();
    assert_eq!(lm.model.config.layer_types[0], LayerType::SlidingAttention);
    assert_eq!(lm.model.config.layer_types[1], LayerType::FullAttention);
    let dir = edited("gemma2", "act", |c| c["hidden_activation"] = "gelu".into());
    let e = load_error(&dir);
    assert!(e.contains("hidden_activation `gelu`"), "{e}");
}

#[test]
fn gemma3_text_matches_transformers_in_both_layouts() {
    let dir = family_matches_transformers("gemma3", DecoderFamily::Gemma3Text);
    let a = load_causal_lm(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(a.model.config.rope_local_theta, Some(300.0));

    // Refusals: a RoPE the sliding layers would need that ardpipe lacks, a flat
    // rope_parameters, a contradicting base, the multimodal model, an unknown family.
    let e = load_error(&edited("gemma3", "longrope", |c| {
        c["rope_parameters"]["sliding_attention"] =
            serde_json::json!({"rope_type": "longrope", "rope_theta": 300.0, "factor": 2.0})
    }));
    assert!(
        e.contains("rope_parameters.sliding_attention") && e.contains("does not implement"),
        "{e}"
    );
    let e = load_error(&edited("gemma3", "flat", |c| {
        c["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1e4})
    }));
    assert!(e.contains("one entry per attention kind"), "{e}");
    let e = load_error(&edited("gemma3_v4", "contra", |c| {
        c["rope_parameters"] = serde_json::json!({
            "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6}})
    }));
    assert!(e.contains("contradicts itself"), "{e}");
    let e = load_error(&edited("gemma3", "partial", |c| {
        c["rope_parameters"]["full_attention"]["partial_rotary_factor"] = 0.5.into()
    }));
    assert!(e.contains("partial_rotary_factor"), "{e}");
    let e = load_error(&edited("gemma3", "cap", |c| {
        c["attn_logit_softcapping"] = 50.0.into()
    }));
    assert!(e.contains("attn_logit_softcapping = 50"), "{e}");
    let e = load_error(&edited("gemma3", "mm", |c| {
        c["model_type"] = "gemma3".into()
    }));
    assert!(e.contains("gemma3_text"), "{e}");
    let e = load_error(&edited("gemma3", "phi", |c| {
        c["model_type"] = "phi3".into()
    }));
    assert!(
        e.contains("phi3") && e.contains("qwen2") && e.contains("gemma3_text"),
        "{e}"
    );
}

#[test]
fn bf16_sharded_checkpoint_matches_transformers() {
    // Released checkpoints are bf16 and sharded (model.safetensors.index.json): the same
    // logits as transformers reading that folder in f32.
    let dir = fixtures().join("qwen2_bf16_sharded");
    let shards: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    assert!(shards.len() > 1, "{shards:?}");
    assert!(dir.join("model.safetensors.index.json").exists());
    let bytes = std::fs::read(dir.join(&shards[0])).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(
        st.tensors()
            .iter()
            .all(|(_, t)| t.dtype() == safetensors::Dtype::BF16),
        "the peer did not write bf16"
    );
    let diff = logits_diff(&dir);
    println!(
        "qwen2, bf16 in {} shards: max |Δlogit| {diff:.2e}",
        shards.len()
    );
    assert!(diff < 1e-4, "logits differ from transformers' by {diff}");
}
