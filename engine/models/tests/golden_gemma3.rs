//! Golden values of the real Gemma 3 270M (Q4_K_M GGUF: Q5_0, Q4_K, Q6_K and Q8_0 tensors,
//! dequantised to f32), installed by `scripts/setup.py` as the `gemma3` asset. The reference is
//! transformers 5.24 loading the same GGUF with the `gguf` package in f32: "The capital of France
//! is" (BOS added) → next-token top 3 and a greedy continuation " the capital of the country of
//! France. It is the largest". Ids are given directly (the GGUF's SentencePiece tokenizer is
//! tested with the tokenizers).

use std::time::Instant;

use ardpipe_models::arch::KvCache;
use ardpipe_models::arch::config::{DecoderFamily, LayerType};
use ardpipe_models::assets::asset_file;
use ardpipe_models::generate::{Sampling, StopReason, generate};
use ardpipe_models::gguf::{GgufFile, decoder_config};
use ardpipe_models::{LoadOptions, load_causal_lm};
use tch::Tensor;

const GGUF: &str = "gemma-3-270m-q4_k_m.gguf";
/// "The capital of France is", BOS first.
const IDS: [i64; 6] = [2, 818, 5279, 529, 7001, 563];

#[test]
fn gemma3_270m_config_from_gguf_metadata() {
    let path = asset_file("gemma3", GGUF).unwrap_or_else(|e| panic!("{e}"));
    let cfg = decoder_config(&GgufFile::open(&path).unwrap()).unwrap();
    assert_eq!(cfg.family, DecoderFamily::Gemma3Text);
    assert_eq!(
        (
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.num_attention_heads
        ),
        (18, 640, 4)
    );
    assert_eq!((cfg.num_key_value_heads, cfg.head_dim), (1, 256));
    assert_eq!(cfg.sliding_window, Some(512));
    assert_eq!((cfg.rope_theta, cfg.rope_local_theta), (1e6, Some(1e4)));
    assert_eq!(cfg.query_pre_attn_scalar, Some(256.0));
    let full: Vec<usize> = (0..18)
        .filter(|&i| cfg.layer_types[i] == LayerType::FullAttention)
        .collect();
    assert_eq!(full, [5, 11, 17]);
    assert!(cfg.tie_word_embeddings && cfg.qk_norm && cfg.norm_unit_offset);
}

#[test]
fn gemma3_270m_gguf_golden_logits_and_greedy_text() {
    let path = asset_file("gemma3", GGUF).unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let lm = load_causal_lm(&path, &LoadOptions::default()).unwrap();
    eprintln!(
        "loaded {} parameters ({} tensors) in {:.2} s",
        lm.model.config.parameter_count(),
        lm.report.applied,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(lm.report.applied, 236);
    let ids = Tensor::from_slice(&IDS).unsqueeze(0);
    let logits = tch::no_grad(|| lm.model.forward(&ids, None, false)).unwrap();
    let last = logits.get(0).get(5);
    let (v, i) = last.topk(3, -1, true, true);
    let top: Vec<(i64, f64)> = (0..3)
        .map(|k| (i.int64_value(&[k]), v.double_value(&[k])))
        .collect();
    eprintln!("top 3: {top:?}");
    assert_eq!(
        top.iter().map(|t| t.0).collect::<Vec<_>>(),
        [506, 496, 9079],
        "{top:?}"
    );
    // The reference's logits to 3 decimals; both sides dequantise the same bytes to the same f32.
    for ((_, got), want) in top.iter().zip([19.091, 18.548, 18.269]) {
        assert!((got - want).abs() < 0.01, "{top:?} vs {want}");
    }

    // The KV cache reproduces the full forward.
    let mut cache = KvCache::default();
    let _ = lm
        .model
        .forward_cached(&Tensor::from_slice(&IDS[..5]).unsqueeze(0), &mut cache)
        .unwrap();
    let step = lm
        .model
        .forward_cached(&Tensor::from_slice(&IDS[5..]).unsqueeze(0), &mut cache)
        .unwrap();
    let diff = (step.get(0).get(0) - &last).abs().max().double_value(&[]);
    assert!(diff < 1e-3, "cached step differs by {diff}");

    let s = Sampling {
        max_tokens: 12,
        ..Default::default()
    };
    let (out, why) = generate(&lm.model, &IDS, &[1], &s, |_| Ok(())).unwrap();
    assert_eq!(why, StopReason::MaxTokens);
    assert_eq!(
        out,
        [
            506, 5279, 529, 506, 2891, 529, 7001, 236761, 1030, 563, 506, 7488
        ]
    );
}
