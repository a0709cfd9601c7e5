//! Golden values of SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to f32; from an independent
//! reference forward pass, in the assertions below): a few forward passes.

use ardpipe_models::arch::KvCache;
use ardpipe_models::assets::asset_file;
use ardpipe_models::generate::{Sampling, StopReason, generate};
use ardpipe_models::tokenizer::load_tokenizer;
use ardpipe_models::{LoadOptions, ModelLocation, Precision, load_causal_lm};
use tch::{Kind, Tensor};

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// "The capital of France is"
const IDS: [i64; 5] = [504, 3575, 282, 4649, 314];

fn top3(logits: &Tensor) -> Vec<(i64, f64)> {
    let (v, i) = logits.topk(3, -1, true, true);
    (0..3)
        .map(|k| (i.int64_value(&[k]), v.double_value(&[k])))
        .collect()
}

#[test]
fn smollm2_gguf_next_token_is_paris() {
    let path = asset_file("smollm2", GGUF).unwrap_or_else(|e| panic!("{e}"));
    let lm = load_causal_lm(&path, &LoadOptions::default()).unwrap();
    assert_eq!(lm.report.applied, 272);
    assert_eq!(lm.model.config.parameter_count(), 134_515_008);
    let ids = Tensor::from_slice(&IDS).unsqueeze(0);
    let logits = tch::no_grad(|| lm.model.forward(&ids, None, false)).unwrap();
    assert_eq!(logits.size(), [1, 5, 49152]);
    let last = logits.get(0).get(4);
    let top = top3(&last);
    assert_eq!(
        top.iter().map(|t| t.0).collect::<Vec<_>>(),
        [7042, 260, 4528],
        "{top:?}"
    );
    assert!((top[0].1 - 17.37).abs() < 0.05, "Paris logit {}", top[0].1);
    assert!((top[1].1 - 14.89).abs() < 0.05, "the logit {}", top[1].1);
    assert!((top[2].1 - 13.24).abs() < 0.05, "London logit {}", top[2].1);

    // The KV cache reproduces the full forward: prefix, then the last token on its own.
    let mut cache = KvCache::default();
    let prefix = Tensor::from_slice(&IDS[..4]).unsqueeze(0);
    let _ = lm.model.forward_cached(&prefix, &mut cache).unwrap();
    let step = lm
        .model
        .forward_cached(&Tensor::from_slice(&IDS[4..]).unsqueeze(0), &mut cache)
        .unwrap();
    let diff = (step.get(0).get(0) - &last).abs().max().double_value(&[]);
    assert!(diff < 1e-3, "cached step differs by {diff}");

    // A right-padded batch gives the unpadded logits at the real positions.
    let padded = Tensor::from_slice(&[504i64, 3575, 282, 4649, 314, 0, 0]).unsqueeze(0);
    let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 0, 0]).unsqueeze(0);
    let pl = tch::no_grad(|| lm.model.forward(&padded, Some(&mask), false)).unwrap();
    let diff = (pl.get(0).get(4) - &last).abs().max().double_value(&[]);
    assert!(diff < 1e-3, "padded batch differs by {diff}");
}

#[test]
fn smollm2_bf16_agrees_on_the_top_token() {
    let path = asset_file("smollm2", GGUF).unwrap_or_else(|e| panic!("{e}"));
    let opts = LoadOptions {
        precision: Precision::BF16,
        ..Default::default()
    };
    let lm = load_causal_lm(&path, &opts).unwrap();
    assert_eq!(lm.model.embed_tokens.kind(), Kind::BFloat16);
    let ids = Tensor::from_slice(&IDS).unsqueeze(0);
    let logits = tch::no_grad(|| lm.model.forward(&ids, None, false)).unwrap();
    assert_eq!(logits.kind(), Kind::Float);
    let top = top3(&logits.get(0).get(4));
    assert_eq!(top[0].0, 7042, "{top:?}");
    assert!(
        (top[0].1 - 17.37).abs() < 0.6,
        "bf16 Paris logit {}",
        top[0].1
    );
    assert!(
        !ardpipe_models::precision::cpu_autocast_enabled(),
        "autocast left on after forward"
    );
}

#[test]
fn smollm2_gguf_tokenizer_and_greedy_chat_reply() {
    let path = asset_file("smollm2", GGUF).unwrap_or_else(|e| panic!("{e}"));
    let tok = load_tokenizer(&ModelLocation::Gguf(path.clone())).unwrap();
    let enc = tok
        .tokenizer
        .encode("The capital of France is", true)
        .unwrap();
    assert_eq!(enc.ids, IDS.map(|i| i as u32));
    // The GGUF's own template (ChatML with SmolLM2's default system prompt), rendered.
    let chat = tok.chat.as_ref().expect("the GGUF carries a chat template");

    let lm = load_causal_lm(&path, &LoadOptions::default()).unwrap();
    let prompt = chat.user_prompt("What is the capital of France?").unwrap();
    assert!(
        prompt.ends_with(
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        ),
        "{prompt:?}"
    );
    let ids: Vec<i64> = tok
        .tokenizer
        .encode(&prompt, false)
        .unwrap()
        .ids
        .iter()
        .map(|&i| i as i64)
        .collect();
    let end = chat.end_of_turn_ids(&tok.tokenizer).unwrap();
    assert_eq!(end, [tok.tokenizer.token_to_id("<|im_end|>").unwrap()]);
    let end = end[0] as i64;
    let s = Sampling {
        max_tokens: 16,
        ..Default::default()
    };
    let (out, why) = generate(&lm.model, &ids, &[end], &s, |_| Ok(())).unwrap();
    let out: Vec<u32> = out.iter().map(|&i| i as u32).collect();
    assert_eq!(
        tok.tokenizer.decode(&out, false).unwrap(),
        "The capital of France is Paris."
    );
    assert_eq!(why, StopReason::EndOfSequence);
}
