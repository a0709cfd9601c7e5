//! config.json → a validated [`ArchConfig`]. Serde mirrors of the Hugging Face fields, with
//! transformers' defaults where a field may be absent.

use std::path::Path;

use serde::Deserialize;

use crate::arch::config::{ArchConfig, BertConfig, LlamaConfig, RopeScaling};
use crate::error::{ModelError, Result};

#[derive(Deserialize)]
struct Head {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(i64),
    Many(Vec<i64>),
}

#[derive(Deserialize)]
struct HfLlama {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    /// transformers 4 layout: `rope_theta` and `rope_scaling` at the top level.
    rope_theta: Option<f64>,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    bos_token_id: Option<i64>,
    eos_token_id: Option<OneOrMany>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers 5 layout: `rope_parameters: {rope_theta, rope_type, ...}`.
    rope_parameters: Option<serde_json::Value>,
    hidden_act: Option<String>,
}

/// RoPE's base and scaling from either config layout (transformers 4: `rope_theta` and
/// `rope_scaling`; transformers 5: `rope_parameters`). A scaling type or key this reader does
/// not implement changes the maths, so it is refused rather than read as plain RoPE.
fn llama_rope(c: &HfLlama) -> std::result::Result<(f64, Option<RopeScaling>), String> {
    let mut theta = c.rope_theta;
    let mut scaling = None;
    for (key, value) in [
        ("rope_scaling", &c.rope_scaling),
        ("rope_parameters", &c.rope_parameters),
    ] {
        let Some(v) = value.as_ref().filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(map) = v.as_object() else {
            return Err(format!("{key} must be an object, got {v}"));
        };
        let kind = map.get("rope_type").or_else(|| map.get("type"));
        let llama3 = match kind.map(|k| k.as_str()) {
            None | Some(Some("default")) => false,
            Some(Some("llama3")) => true,
            _ => {
                return Err(format!(
                    "{key} {v} asks for a RoPE scaling ardpipe does not implement (it has plain \
                     RoPE and `llama3`); use a checkpoint without it"
                ));
            }
        };
        let number = |k: &str| -> std::result::Result<f64, String> {
            let x = map
                .get(k)
                .ok_or_else(|| format!("{key} has rope_type llama3 but no `{k}`"))?;
            x.as_f64()
                .ok_or_else(|| format!("{key}.{k} must be a number, got {x}"))
        };
        for (k, x) in map {
            match k.as_str() {
                "rope_type" | "type" => {}
                "factor"
                | "low_freq_factor"
                | "high_freq_factor"
                | "original_max_position_embeddings"
                    if llama3 => {}
                "rope_theta" => {
                    let t = x
                        .as_f64()
                        .ok_or_else(|| format!("{key}.rope_theta must be a number, got {x}"))?;
                    if let Some(top) = theta.filter(|top| *top != t) {
                        return Err(format!(
                            "rope_theta is {top} at the top level but {t} in {key}: the file contradicts itself"
                        ));
                    }
                    theta = Some(t);
                }
                other => {
                    return Err(format!(
                        "{key}.{other} = {x} changes RoPE and is not supported yet"
                    ));
                }
            }
        }
        if llama3 {
            let s = RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max_position_embeddings: number("original_max_position_embeddings")?,
            };
            if scaling.as_ref().is_some_and(|old| *old != s) {
                return Err(
                    "rope_scaling and rope_parameters give different RoPE scalings: the file contradicts itself"
                        .into(),
                );
            }
            scaling = Some(s);
        }
    }
    Ok((theta.unwrap_or_else(default_rope_theta), scaling))
}

#[derive(Deserialize)]
struct HfBert {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_bert_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_ln_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f64,
    classifier_dropout: Option<f64>,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
    #[serde(default)]
    pad_token_id: i64,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_positions() -> usize {
    2048
}
fn default_bert_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_ln_eps() -> f64 {
    1e-12
}
fn default_init_range() -> f64 {
    0.02
}
fn default_dropout() -> f64 {
    0.1
}

const LLAMA_TYPES: &[&str] = &["llama"];
const BERT_TYPES: &[&str] = &["bert"];

/// Read and validate a folder's config.json.
pub fn read_config(path: &Path) -> Result<ArchConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    parse_config(path, &text)
}

pub fn parse_config(path: &Path, text: &str) -> Result<ArchConfig> {
    let bad = |what: String| ModelError::config(path, what);
    let head: Head =
        serde_json::from_str(text).map_err(|e| bad(format!("not a valid config.json: {e}")))?;
    let ty = head.model_type.clone().unwrap_or_default();
    let cfg = if LLAMA_TYPES.contains(&ty.as_str()) {
        let c: HfLlama =
            serde_json::from_str(text).map_err(|e| bad(format!("incomplete Llama config: {e}")))?;
        if let Some(act) = c.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(bad(format!(
                "hidden_act `{act}` is not supported (Llama uses silu)"
            )));
        }
        let (rope_theta, rope_scaling) = llama_rope(&c).map_err(bad)?;
        let heads = c.num_attention_heads;
        ArchConfig::Llama(LlamaConfig {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: c.num_key_value_heads.unwrap_or(heads),
            head_dim: c
                .head_dim
                .unwrap_or(c.hidden_size.checked_div(heads).unwrap_or(0)),
            rms_norm_eps: c.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings,
            attention_bias: c.attention_bias,
            mlp_bias: c.mlp_bias,
            bos_token_id: c.bos_token_id,
            eos_token_ids: match c.eos_token_id {
                None => vec![],
                Some(OneOrMany::One(i)) => vec![i],
                Some(OneOrMany::Many(v)) => v,
            },
            ..Default::default()
        })
    } else if BERT_TYPES.contains(&ty.as_str()) {
        let c: HfBert =
            serde_json::from_str(text).map_err(|e| bad(format!("incomplete BERT config: {e}")))?;
        if let Some(act) = c.hidden_act.as_deref().filter(|a| *a != "gelu") {
            return Err(bad(format!(
                "hidden_act `{act}` is not supported (ardpipe's BERT uses exact gelu)"
            )));
        }
        if let Some(p) = c
            .position_embedding_type
            .as_deref()
            .filter(|p| *p != "absolute")
        {
            return Err(bad(format!(
                "position_embedding_type `{p}` is not supported (only absolute)"
            )));
        }
        ArchConfig::Bert(BertConfig {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            intermediate_size: c.intermediate_size,
            max_position_embeddings: c.max_position_embeddings,
            type_vocab_size: c.type_vocab_size,
            layer_norm_eps: c.layer_norm_eps,
            hidden_dropout_prob: c.hidden_dropout_prob,
            attention_probs_dropout_prob: c.attention_probs_dropout_prob,
            classifier_dropout: c.classifier_dropout.unwrap_or(c.hidden_dropout_prob),
            initializer_range: c.initializer_range,
            pad_token_id: c.pad_token_id,
        })
    } else {
        return Err(bad(format!(
            "model_type `{ty}` (architectures {:?}) is not supported: ardpipe builds the Llama family \
             (model_type {LLAMA_TYPES:?}) and the BERT family ({BERT_TYPES:?})",
            head.architectures
        )));
    };
    cfg.validate().map_err(bad)?;
    Ok(cfg)
}
