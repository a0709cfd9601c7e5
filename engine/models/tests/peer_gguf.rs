//! GGUF files of every decoder architecture ardpipe reads (`general.architecture` llama — also
//! for Mistral —, qwen2, qwen3, gemma, gemma2, gemma3) give transformers' logits. The peer
//! (engine/models/tests/peer/gguf_families.py) makes tiny random models with transformers,
//! converts them with the `gguf` package's GGUFWriter following llama.cpp's converter (names,
//! Q/K permutation, Gemma norms stored as w + 1, `rope_freqs` for Llama 3 scaling), and checks
//! that transformers' own GGUF loader gives the saved model's logits where it reads the
//! architecture. Needs the Python peer venv that `scripts/setup.sh` creates.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ardpipe_models::arch::config::{DecoderFamily, LayerType, RopeScaling};
use ardpipe_models::gguf::writer::GgufWriter;
use ardpipe_models::gguf::{GgmlType, GgufFile, Value, decoder_config};
use ardpipe_models::{LoadOptions, load_causal_lm};
use tch::Tensor;

mod support;
use support::{matrix, peer_command, run_peer};

fn scratch(name: &str) -> PathBuf {
    support::scratch("gguf", name)
}

/// One peer run for the whole binary.
fn fixture() -> &'static (PathBuf, serde_json::Value) {
    static F: OnceLock<(PathBuf, serde_json::Value)> = OnceLock::new();
    F.get_or_init(|| {
        let dir = scratch("families");
        run_peer(peer_command("gguf_families.py").arg(&dir));
        let expected =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        (dir, expected)
    })
}

/// ardpipe's logits for the case's GGUF against the saved model's; returns max |Δ|.
fn check_case(case: &str, family: DecoderFamily) -> f64 {
    let (dir, expected) = fixture();
    let e = &expected[case];
    let path = dir.join(format!("{case}.gguf"));
    let g = GgufFile::open(&path).unwrap();
    assert_eq!(
        g.get("general.architecture").and_then(Value::as_str),
        e["arch"].as_str()
    );
    let cfg = decoder_config(&g).unwrap();
    assert_eq!(cfg.family, family, "{case}");
    let lm = load_causal_lm(&path, &LoadOptions::default())
        .unwrap_or_else(|err| panic!("{case}: {err}"));
    let ids: Vec<i64> = serde_json::from_value(e["ids"].clone()).unwrap();
    let got = tch::no_grad(|| {
        lm.model
            .forward(&Tensor::from_slice(&ids).unsqueeze(0), None, false)
    })
    .unwrap()
    .get(0);
    let want = matrix(&e["logits"]);
    let diff = (&got - &want).abs().max().double_value(&[]);
    let spread = want.abs().max().double_value(&[]);
    let tf = match e.get("transformers_gguf_max_diff") {
        Some(d) if !d.is_null() => format!("transformers' own GGUF load: max |Δ| {d}"),
        _ => e["transformers_gguf_note"].as_str().unwrap().to_string(),
    };
    eprintln!("{case}: max |Δlogit| {diff:.2e} (logits up to {spread:.2}); {tf}");
    assert!(
        diff < 1e-4,
        "{case}: ardpipe's logits from the GGUF differ from transformers' by {diff}"
    );
    diff
}

#[test]
fn llama_gguf_unpermutes_q_and_k() {
    check_case("llama", DecoderFamily::Llama);
}

#[test]
fn llama_gguf_rope_freqs_is_llama3_scaling() {
    check_case("llama3_rope", DecoderFamily::Llama);
    let (dir, _) = fixture();
    let cfg = decoder_config(&GgufFile::open(dir.join("llama3_rope.gguf")).unwrap()).unwrap();
    assert!(cfg.rope_scaling.is_some());
}

#[test]
fn mistral_gguf_says_llama() {
    check_case("mistral", DecoderFamily::Llama);
}

#[test]
fn qwen2_gguf_keeps_q_k_v_biases_unpermuted() {
    check_case("qwen2", DecoderFamily::Qwen2);
}

#[test]
fn qwen3_gguf_has_q_k_norms_and_its_own_head_size() {
    check_case("qwen3", DecoderFamily::Qwen3);
}

#[test]
fn gemma_gguf_norms_stored_plus_one() {
    check_case("gemma", DecoderFamily::Gemma);
}

#[test]
fn gemma2_gguf_softcaps_and_slides() {
    check_case("gemma2", DecoderFamily::Gemma2);
    let (dir, _) = fixture();
    let cfg = decoder_config(&GgufFile::open(dir.join("gemma2.gguf")).unwrap()).unwrap();
    assert_eq!(cfg.attn_logit_softcapping, Some(50.0));
    assert_eq!(cfg.final_logit_softcapping, Some(30.0));
    assert_eq!(cfg.sliding_window, Some(4));
    assert_eq!(cfg.layer_types[0], LayerType::SlidingAttention);
}

#[test]
fn gemma3_gguf_slides_five_of_six_layers_with_a_local_rope() {
    check_case("gemma3", DecoderFamily::Gemma3Text);
    let (dir, _) = fixture();
    let cfg = decoder_config(&GgufFile::open(dir.join("gemma3.gguf")).unwrap()).unwrap();
    assert_eq!(cfg.layer_types[5], LayerType::FullAttention);
    assert_eq!(cfg.rope_local_theta, Some(10000.0));
    assert_eq!(cfg.rope_theta, 1e6);
}

#[test]
fn gemma3_gguf_linear_rope_scaling_on_full_layers_only() {
    check_case("gemma3_linear", DecoderFamily::Gemma3Text);
    let (dir, _) = fixture();
    let cfg = decoder_config(&GgufFile::open(dir.join("gemma3_linear.gguf")).unwrap()).unwrap();
    assert_eq!(cfg.rope_scaling, Some(RopeScaling::Linear { factor: 8.0 }));
    assert_eq!(cfg.rope_local_scaling, None);
}

/// A tiny one-layer file of `arch` with `extra` metadata, for the refusals.
fn tiny(dir: &Path, name: &str, arch: &str, extra: &[(&str, Value)]) -> PathBuf {
    let mut g = GgufWriter::new();
    let k = |s: &str| format!("{arch}.{s}");
    g.meta("general.architecture", Value::String(arch.into()))
        .meta(&k("block_count"), Value::U32(1))
        .meta(&k("embedding_length"), Value::U32(32))
        .meta(&k("feed_forward_length"), Value::U32(64))
        .meta(&k("attention.head_count"), Value::U32(4))
        .meta(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6))
        .meta(&k("vocab_size"), Value::U32(8));
    for (key, v) in extra {
        g.meta(key, v.clone());
    }
    g.tensor("token_embd.weight", &[8, 32], &[0.5; 256], GgmlType::F32);
    let p = dir.join(format!("{name}.gguf"));
    g.write(&p).unwrap();
    p
}

fn config_error(p: &Path) -> String {
    match decoder_config(&GgufFile::open(p).unwrap()) {
        Ok(c) => panic!("{} was read: {c:?}", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn metadata_that_changes_the_maths_is_refused_naming_the_key() {
    let dir = scratch("refusals");
    for (name, arch, extra, needle) in [
        (
            "yarn",
            "qwen2",
            vec![("qwen2.rope.scaling.type", Value::String("yarn".into()))],
            "`qwen2.rope.scaling.type` = yarn",
        ),
        (
            "experts",
            "llama",
            vec![("llama.expert_count", Value::U32(8))],
            "`llama.expert_count`",
        ),
        (
            "partial",
            "llama",
            vec![("llama.rope.dimension_count", Value::U32(4))],
            "partial rotary",
        ),
        (
            "softcap",
            "llama",
            vec![("llama.final_logit_softcapping", Value::F32(30.0))],
            "`llama.final_logit_softcapping`",
        ),
        (
            "value",
            "gemma3",
            vec![
                ("gemma3.attention.key_length", Value::U32(8)),
                ("gemma3.attention.value_length", Value::U32(16)),
            ],
            "`gemma3.attention.value_length` = 16",
        ),
        (
            "swa_base",
            "gemma3",
            vec![("gemma3.rope.freq_base_swa", Value::F32(5e4))],
            "`gemma3.rope.freq_base_swa`",
        ),
        (
            "phi",
            "phi3",
            vec![],
            "architecture `phi3` is not supported",
        ),
    ] {
        let p = tiny(&dir, name, arch, &extra);
        let e = config_error(&p);
        assert!(e.contains(needle), "{name}: {e}");
    }
    // rope_freqs that are not Llama 3's scaling.
    let mut g = GgufWriter::new();
    g.meta("general.architecture", Value::String("llama".into()))
        .meta("llama.block_count", Value::U32(1))
        .meta("llama.embedding_length", Value::U32(32))
        .meta("llama.feed_forward_length", Value::U32(64))
        .meta("llama.attention.head_count", Value::U32(4))
        .meta("llama.vocab_size", Value::U32(8));
    g.tensor("token_embd.weight", &[8, 32], &[0.5; 256], GgmlType::F32)
        .tensor(
            "rope_freqs.weight",
            &[4],
            &[1.0, 3.0, 2.0, 8.0],
            GgmlType::F32,
        );
    let p = dir.join("freqs.gguf");
    g.write(&p).unwrap();
    let e = config_error(&p);
    assert!(
        e.contains("rope_freqs.weight") && e.contains("not Llama 3"),
        "{e}"
    );
}
