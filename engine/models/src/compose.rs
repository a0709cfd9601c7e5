//! A vision-language model composed LLaVA-style from a pretrained decoder and a new SigLIP
//! tower and projector: the PaliGemma layout (config.json with `model_type = paligemma`, the
//! decoder under `model.language_model.`, the tower under `model.vision_tower.`, the projector
//! `model.multi_modal_projector.linear`), so that ardpipe and transformers'
//! `PaliGemmaForConditionalGeneration` both load it, and a pipeline written for it runs on real
//! PaliGemma weights too.
//!
//! The decoder keeps its weights and tokenizer. The tower and projector start from random
//! weights (seeded), initialised as transformers' SigLIP initialises them: LeCun-normal patch
//! embedding, normal(0, 1/√hidden) positions, Xavier attention and MLP weights, zero biases,
//! unit LayerNorms; the projector normal(0, 1/√(tower hidden)), zero bias. The image token is
//! one past the decoder's vocabulary (transformers reads embedding 0 for it and replaces it with
//! the image features), so the decoder's vocabulary is untouched.

use std::path::Path;

use serde_json::{Value, json};
use tch::Tensor;

use crate::arch::layers::seeded_normal;
use crate::arch::paligemma::{DECODER_PREFIX, PROJECTOR, VISION_PREFIX};
use crate::arch::siglip::SiglipVisionConfig;
use crate::error::{ModelError, Result};
use crate::model::{LoadOptions, load_causal_lm};

/// The composed model's files: config.json, preprocessor_config.json and the tensors, under
/// transformers 5's module-tree names.
pub struct ComposedVisionLm {
    pub config: Value,
    pub preprocessor: Value,
    pub tensors: Vec<(String, Tensor)>,
}

/// Compose `decoder` (any causal LM ardpipe loads, GGUF or Hugging Face folder) with a new
/// tower of shape `vision`, its weights drawn from `seed`.
pub fn compose_vision_lm(
    decoder: &Path,
    vision: &SiglipVisionConfig,
    seed: u64,
) -> Result<ComposedVisionLm> {
    let v = vision;
    let lm = load_causal_lm(decoder, &LoadOptions::default())?.model;
    let text = lm.config.clone();
    let probe = crate::arch::PaliGemmaConfig {
        vision: v.clone(),
        text: text.clone(),
        image_token_id: text.vocab_size as u64,
    };
    probe
        .validate()
        .map_err(|e| ModelError::config(decoder, e))?;
    let mut tensors: Vec<(String, Tensor)> = lm
        .base_parameters()
        .into_iter()
        .map(|(n, t)| match n.strip_prefix("model.") {
            Some(rest) => (format!("{DECODER_PREFIX}{rest}"), t),
            None => (n, t),
        })
        .collect();
    let (d, f, c, p) = (
        v.hidden_size as i64,
        v.intermediate_size as i64,
        v.num_channels as i64,
        v.patch_size as i64,
    );
    // One stream per tensor, so a tensor's values do not depend on the ones drawn before it.
    let mut k = 0u64;
    let mut normal = |shape: &[i64], std: f64| {
        k += 1;
        seeded_normal(shape, std, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k)
    };
    let xavier = |fan_out: i64, fan_in: i64| (2.0 / (fan_in + fan_out) as f64).sqrt();
    let mut add = |name: String, t: Tensor| tensors.push((name, t));
    add(
        format!("{VISION_PREFIX}embeddings.patch_embedding.weight"),
        normal(&[d, c, p, p], (1.0 / (c * p * p) as f64).sqrt()),
    );
    add(
        format!("{VISION_PREFIX}embeddings.patch_embedding.bias"),
        Tensor::zeros([d], tch::kind::FLOAT_CPU),
    );
    add(
        format!("{VISION_PREFIX}embeddings.position_embedding.weight"),
        normal(&[v.num_patches() as i64, d], (1.0 / d as f64).sqrt()),
    );
    for l in 0..v.num_hidden_layers {
        let at = format!("{VISION_PREFIX}encoder.layers.{l}");
        for ln in ["layer_norm1", "layer_norm2"] {
            add(
                format!("{at}.{ln}.weight"),
                Tensor::ones([d], tch::kind::FLOAT_CPU),
            );
            add(
                format!("{at}.{ln}.bias"),
                Tensor::zeros([d], tch::kind::FLOAT_CPU),
            );
        }
        for (name, o, i) in [
            ("self_attn.q_proj", d, d),
            ("self_attn.k_proj", d, d),
            ("self_attn.v_proj", d, d),
            ("self_attn.out_proj", d, d),
            ("mlp.fc1", f, d),
            ("mlp.fc2", d, f),
        ] {
            add(format!("{at}.{name}.weight"), normal(&[o, i], xavier(o, i)));
            add(
                format!("{at}.{name}.bias"),
                Tensor::zeros([o], tch::kind::FLOAT_CPU),
            );
        }
    }
    add(
        format!("{VISION_PREFIX}post_layernorm.weight"),
        Tensor::ones([d], tch::kind::FLOAT_CPU),
    );
    add(
        format!("{VISION_PREFIX}post_layernorm.bias"),
        Tensor::zeros([d], tch::kind::FLOAT_CPU),
    );
    let hidden = text.hidden_size as i64;
    add(
        format!("{PROJECTOR}.weight"),
        normal(&[hidden, d], (1.0 / d as f64).sqrt()),
    );
    add(
        format!("{PROJECTOR}.bias"),
        Tensor::zeros([hidden], tch::kind::FLOAT_CPU),
    );

    let mut text_config = text.hf_config_json();
    text_config["num_image_tokens"] = json!(v.num_patches());
    // transformers' PaliGemmaConfig reads this from every text config (and sets it on Gemma's);
    // inside PaliGemma it means the image-and-prompt prefix attends both ways.
    text_config["use_bidirectional_attention"] = json!(true);
    let config = json!({
        "architectures": ["PaliGemmaForConditionalGeneration"],
        "model_type": "paligemma",
        "image_token_index": text.vocab_size,
        "projection_dim": text.hidden_size,
        "hidden_size": text.hidden_size,
        "vocab_size": text.vocab_size,
        "tie_word_embeddings": text.tie_word_embeddings,
        "text_config": text_config,
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads,
            "num_channels": v.num_channels,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "layer_norm_eps": v.layer_norm_eps,
            "hidden_act": "gelu_pytorch_tanh",
            "attention_dropout": 0.0,
            "projection_dim": text.hidden_size,
            "vision_use_head": false,
        },
    });
    let preprocessor = json!({
        "image_processor_type": "SiglipImageProcessor",
        "processor_class": "PaliGemmaProcessor",
        "do_resize": true,
        "size": {"height": v.image_size, "width": v.image_size},
        "resample": 3,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "image_seq_length": v.num_patches(),
    });
    Ok(ComposedVisionLm {
        config,
        preprocessor,
        tensors,
    })
}
