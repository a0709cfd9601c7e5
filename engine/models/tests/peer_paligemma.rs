//! PaliGemma-2 against transformers: a tiny random model (SigLIP tower, projector, Gemma 2
//! decoder with attention and final soft-capping and a sliding window shorter than the
//! sequence) that the current transformers makes and saves (engine/models/tests/peer/
//! paligemma.py), fed two real easy-VQA images. Each side preprocesses the images itself
//! (ardpipe's SigLIP processor, transformers' SiglipImageProcessor); the logits over every real
//! token, the suffix-only loss and the parameter count must agree, in transformers 5's saved
//! layout, in transformers 4's, and with an image token id past the vocabulary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ardpipe_data::image::{ImageProcessor, Resample};
use ardpipe_models::arch::ArchConfig;
use ardpipe_models::assets::asset_file;
use ardpipe_models::{LoadOptions, describe, load_causal_lm, load_vision_lm};
use serde_json::Value;
use tch::{Kind, Reduction, Tensor};

mod support;
use support::{json, peer_command, run_peer, scratch, tensor_i64};

fn images() -> [PathBuf; 2] {
    ["test/images/0.png", "test/images/7.png"]
        .map(|f| asset_file("easyvqa", f).unwrap_or_else(|e| panic!("easy-VQA image {f}: {e}")))
}

fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("paligemma", "fixtures");
        let [a, b] = images();
        run_peer(peer_command("paligemma.py").arg(&d).arg(a).arg(b));
        d
    })
}

fn tensor_f32(v: &Value) -> Tensor {
    fn flat(v: &Value, out: &mut Vec<f32>, shape: &mut Vec<i64>, depth: usize) {
        match v {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len() as i64);
                }
                for i in items {
                    flat(i, out, shape, depth + 1);
                }
            }
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    let (mut out, mut shape) = (vec![], vec![]);
    flat(v, &mut out, &mut shape, 0);
    Tensor::from_slice(&out).reshape(shape)
}

/// ardpipe's pixel values for the two images, as the tower's processor makes them.
fn our_pixels(size: usize) -> Tensor {
    let p = ImageProcessor {
        resample: Resample::Bicubic,
        ..ImageProcessor::siglip(size)
    };
    let rows: Vec<Tensor> = images()
        .iter()
        .map(|i| {
            let (v, [c, h, w]) = p.load(i).unwrap();
            Tensor::from_slice(&v).reshape([c as i64, h as i64, w as i64])
        })
        .collect();
    Tensor::stack(&rows, 0)
}

/// Checks one saved case; returns (max |Δlogit|, |Δloss|, max |Δpixel|).
fn case_matches(case: &str) -> (f64, f64, f64) {
    let dir = fixtures().join(case);
    let r = json(&dir.join("reference.json"));
    let lm = load_vision_lm(&dir, &LoadOptions::default()).unwrap();
    let size = lm.model.config.vision.image_size;
    let pixels = our_pixels(size);
    let dpix = (&pixels - tensor_f32(&r["pixel_values"]))
        .abs()
        .max()
        .double_value(&[]);
    let ids = tensor_i64(&r["ids"]);
    let mask = tensor_i64(&r["mask"]);
    let types = tensor_i64(&r["token_type_ids"]);
    // The prefix is every token of type 0 (image, BOS, prompt): contiguous at the start.
    let prefix = types.eq(0).sum_dim_intlist(1, false, Kind::Int64);
    let got =
        tch::no_grad(|| lm.model.forward(&ids, &pixels, Some(&mask), &prefix, false)).unwrap();
    let want = tensor_f32(&r["logits"]);
    assert_eq!(got.size(), want.size(), "{case}: logits shape");
    let real = mask.to_kind(Kind::Bool).unsqueeze(-1);
    let dlogit = (&got - &want)
        .abs()
        .masked_fill(&real.logical_not(), 0.0)
        .max()
        .double_value(&[]);
    // The loss on the suffix: position j predicts token j + 1 where that token is labelled.
    let labels = tensor_i64(&r["labels"]);
    let (b, t) = labels.size2().unwrap();
    let v = got.size()[2];
    let loss = got
        .narrow(1, 0, t - 1)
        .reshape([-1, v])
        .cross_entropy_loss::<Tensor>(
            &labels.narrow(1, 1, t - 1).reshape([-1]),
            None,
            Reduction::Mean,
            -100,
            0.0,
        )
        .double_value(&[]);
    let dloss = (loss - r["loss"].as_f64().unwrap()).abs();
    assert!(b == 2 && t > 0);
    (dlogit, dloss, dpix)
}

#[test]
fn paligemma2_matches_transformers_on_real_images() {
    for case in ["v5", "v4", "outside"] {
        let (dlogit, dloss, dpix) = case_matches(case);
        println!("{case}: max |Δlogit| {dlogit:.2e}, |Δloss| {dloss:.2e}, max |Δpixel| {dpix:.2e}");
        assert!(dpix < 1e-2, "{case}: pixel values differ by {dpix}");
        assert!(
            dlogit < 1e-4,
            "{case}: logits differ from transformers' by {dlogit}"
        );
        assert!(dloss < 1e-4, "{case}: suffix loss differs by {dloss}");
    }
    // The checks bite: a causal prefix would move transformers' logits this much.
    let r = json(&fixtures().join("v5/reference.json"));
    let effect = r["prefix_effect"].as_f64().unwrap();
    println!("a causal prefix moves transformers' logits by {effect:.2e}");
    assert!(
        effect > 1e-2,
        "the bidirectional prefix barely matters ({effect})"
    );
}

#[test]
fn paligemma_is_described_and_refused_where_it_does_not_fit() {
    let dir = fixtures().join("v5");
    let r = json(&dir.join("reference.json"));
    let d = describe(&dir).unwrap();
    assert_eq!(d.parameters as u64, r["parameters"].as_u64().unwrap());
    let ArchConfig::PaliGemma(c) = &d.config else {
        panic!("described as {}", d.config.name())
    };
    assert_eq!(
        c.num_image_tokens() as u64,
        r["image_tokens"].as_u64().unwrap()
    );
    // Both towers' modules, with heads, and the projector.
    let paths: Vec<&str> = d.modules.iter().map(|m| m.path.as_str()).collect();
    for p in [
        "model.vision_tower.encoder.layers.1.self_attn.q_proj",
        "model.vision_tower.encoder.layers.0.mlp.fc2",
        "model.multi_modal_projector.linear",
        "model.language_model.layers.3.self_attn.o_proj",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    let q = d
        .modules
        .iter()
        .find(|m| m.path == "model.vision_tower.encoder.layers.0.self_attn.q_proj")
        .unwrap();
    assert_eq!((q.heads.n_heads, q.heads.head_dim), (4, 8));
    // A causal-LM load says what the model is.
    let e = load_causal_lm(&dir, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("vision-language"), "{e}");
}

/// Greedy generation with a KV cache against transformers' `generate` (12 new tokens, no EOS
/// stop) from row 0's prompt (image tokens, BOS, the prefix tokens) and its image: the same
/// tokens, and the same logits at every step (the prefill over the bidirectional prompt, then
/// one cached step per token), which a causal prefill would move by `prefix_effect`.
#[test]
fn paligemma_greedy_generation_matches_transformers() {
    use ardpipe_models::arch::KvCache;
    use ardpipe_models::generate::{Sampling, StopReason, generate_vision};

    let dir = fixtures().join("v5");
    let r = json(&dir.join("reference.json"));
    let g = &r["generation"];
    let prompt: Vec<i64> = serde_json::from_value(g["prompt"].clone()).unwrap();
    let want: Vec<i64> = serde_json::from_value(g["tokens"].clone()).unwrap();
    let lm = load_vision_lm(&dir, &LoadOptions::default()).unwrap();
    let pixels = our_pixels(lm.model.config.vision.image_size).narrow(0, 0, 1);
    let s = Sampling {
        max_tokens: want.len(),
        ..Default::default()
    };
    let mut streamed = vec![];
    let (got, why) = generate_vision(&lm.model, &prompt, &pixels, &[], &s, |t| {
        streamed.push(t);
        Ok(())
    })
    .unwrap();
    println!("transformers {want:?}\nardpipe      {got:?}");
    assert_eq!(got, want, "greedy tokens differ from transformers'");
    assert_eq!(streamed, got);
    assert_eq!(why, StopReason::MaxTokens);
    // Stopping: the first token as a stop id ends generation before it.
    let (none, why) =
        generate_vision(&lm.model, &prompt, &pixels, &[want[0]], &s, |_| Ok(())).unwrap();
    assert!(none.is_empty() && why == StopReason::EndOfSequence);

    // Step by step, as generation runs: the prefill, then each reference token cached.
    let want_logits = tensor_f32(&g["logits"]);
    let mut cache = KvCache::default();
    let ids = Tensor::from_slice(&prompt).unsqueeze(0);
    let mut steps = vec![lm.model.prefill(&ids, &pixels, &mut cache).unwrap()];
    assert_eq!(cache.len(), prompt.len() as i64);
    for &t in &want[..want.len() - 1] {
        let next = Tensor::from_slice(&[t]).unsqueeze(0);
        steps.push(lm.model.decoder.forward_cached(&next, &mut cache).unwrap());
    }
    let got_logits = Tensor::cat(&steps, 1).squeeze_dim(0);
    assert_eq!(got_logits.size(), want_logits.size());
    let d = (&got_logits - &want_logits).abs().max().double_value(&[]);
    let effect = g["prefix_effect"].as_f64().unwrap();
    println!(
        "generation: max |Δlogit| over {} steps {d:.2e}; a causal prompt moves the first step's by {effect:.2e}",
        want.len()
    );
    assert!(d < 1e-4, "step logits differ from transformers' by {d}");
    assert!(
        effect > 1e-2,
        "the bidirectional prompt barely matters ({effect})"
    );
    // A prefill needs an empty cache and one row.
    assert!(lm.model.prefill(&ids, &pixels, &mut cache).is_err());
}
