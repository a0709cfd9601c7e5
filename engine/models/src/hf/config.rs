//! config.json → a validated [`ArchConfig`]. Serde mirrors of the Hugging Face fields, with
//! transformers' defaults where a field may be absent.

use std::path::Path;

use serde::Deserialize;

use crate::arch::config::{
    Activation, ArchConfig, BertConfig, DecoderFamily, EncoderFamily, LayerType, LlamaConfig,
    RopeScaling,
};
use crate::arch::paligemma::PaliGemmaConfig;
use crate::arch::siglip::SiglipVisionConfig;
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
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<i64>,
    eos_token_id: Option<OneOrMany>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers 5 layout: `rope_parameters: {rope_theta, rope_type, ...}` (Gemma 3: one
    /// such object per attention kind).
    rope_parameters: Option<serde_json::Value>,
}

type Map = serde_json::Map<String, serde_json::Value>;

/// Typed reads of optional config keys that keep "absent" (the family's default) apart from
/// `null` (explicitly off), as transformers' config classes do.
struct Keys<'a>(&'a Map);

impl Keys<'_> {
    fn present(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }
    /// Absent → `default`; `null` → `None`.
    fn f64_or(&self, key: &str, default: Option<f64>) -> std::result::Result<Option<f64>, String> {
        match self.0.get(key) {
            None => Ok(default),
            Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("{key} must be a number, got {v}")),
        }
    }
    fn usize_or(
        &self,
        key: &str,
        default: Option<usize>,
    ) -> std::result::Result<Option<usize>, String> {
        match self.0.get(key) {
            None => Ok(default),
            Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("{key} must be a non-negative integer, got {v}")),
        }
    }
    /// Absent or `null` → `default`.
    fn bool_or(&self, key: &str, default: bool) -> std::result::Result<bool, String> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| format!("{key} must be true or false, got {v}")),
        }
    }
    fn str_or<'s>(&'s self, key: &str, default: &'s str) -> std::result::Result<&'s str, String> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v
                .as_str()
                .ok_or_else(|| format!("{key} must be a string, got {v}")),
        }
    }
    /// transformers 5's `layer_types`, if given.
    fn layer_types(&self) -> std::result::Result<Option<Vec<LayerType>>, String> {
        let Some(v) = self.0.get("layer_types").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let list = v
            .as_array()
            .ok_or_else(|| format!("layer_types must be a list, got {v}"))?;
        list.iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(LayerType::FullAttention),
                Some("sliding_attention") => Ok(LayerType::SlidingAttention),
                _ => Err(format!(
                    "layer_types has {t}, an attention kind ardpipe does not implement (it has \
                     full_attention and sliding_attention)"
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// One RoPE object (`rope_scaling`, `rope_parameters`, or one of Gemma 3's per-kind entries
/// in `rope_parameters`): the base it names, if any, and its scaling. A scaling type or key
/// this reader does not implement changes the maths, so it is refused rather than read as
/// plain RoPE. `max_positions`: the config's context, YaRN's default original context.
fn rope_entry(
    key: &str,
    v: &serde_json::Value,
    max_positions: usize,
) -> std::result::Result<(Option<f64>, Option<RopeScaling>), String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Kind {
        Plain,
        Llama3,
        Linear,
        Yarn,
    }
    let Some(map) = v.as_object() else {
        return Err(format!("{key} must be an object, got {v}"));
    };
    let kind = match map
        .get("rope_type")
        .or_else(|| map.get("type"))
        .map(|k| k.as_str())
    {
        None | Some(Some("default")) => Kind::Plain,
        Some(Some("llama3")) => Kind::Llama3,
        Some(Some("linear")) => Kind::Linear,
        Some(Some("yarn")) => Kind::Yarn,
        Some(Some("dynamic")) => {
            return Err(format!(
                "{key} {v}: dynamic NTK scaling recomputes RoPE from each batch's length, which \
                 ardpipe does not do (it has plain RoPE, `linear`, `llama3` and `yarn`); use the \
                 checkpoint without rope_scaling (the same model up to its original context)"
            ));
        }
        _ => {
            return Err(format!(
                "{key} {v} asks for a RoPE scaling ardpipe does not implement (it has plain \
                 RoPE, `linear`, `llama3` and `yarn`); use a checkpoint without it"
            ));
        }
    };
    let name = match kind {
        Kind::Plain => "default",
        Kind::Llama3 => "llama3",
        Kind::Linear => "linear",
        Kind::Yarn => "yarn",
    };
    let optional = |k: &str| -> std::result::Result<Option<f64>, String> {
        match map.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("{key}.{k} must be a number, got {x}")),
        }
    };
    let number = |k: &str| -> std::result::Result<f64, String> {
        optional(k)?.ok_or_else(|| format!("{key} has rope_type {name} but no `{k}`"))
    };
    let mut theta = None;
    for (k, x) in map {
        match (k.as_str(), kind) {
            ("rope_type" | "type", _) => {}
            (
                "factor"
                | "low_freq_factor"
                | "high_freq_factor"
                | "original_max_position_embeddings",
                Kind::Llama3,
            ) => {}
            ("factor", Kind::Linear) => {}
            (
                "factor"
                | "original_max_position_embeddings"
                | "beta_fast"
                | "beta_slow"
                | "attention_factor"
                | "mscale"
                | "mscale_all_dim"
                | "truncate",
                Kind::Yarn,
            ) => {}
            ("rope_theta", _) => {
                theta = Some(
                    x.as_f64()
                        .ok_or_else(|| format!("{key}.rope_theta must be a number, got {x}"))?,
                );
            }
            (other, _) => {
                return Err(format!(
                    "{key}.{other} = {x} changes RoPE and is not supported yet"
                ));
            }
        }
    }
    let scaling = match kind {
        Kind::Plain => None,
        Kind::Linear => Some(RopeScaling::Linear {
            factor: number("factor")?,
        }),
        Kind::Llama3 => Some(RopeScaling::Llama3 {
            factor: number("factor")?,
            low_freq_factor: number("low_freq_factor")?,
            high_freq_factor: number("high_freq_factor")?,
            original_max_position_embeddings: number("original_max_position_embeddings")?,
        }),
        Kind::Yarn => {
            // transformers' `_compute_yarn_parameters` and `standardize_rope_params`: the
            // original context defaults to the config's, beta_fast/beta_slow to 32/1 (also when
            // 0), the attention factor to mscale ratios or 0.1·ln(factor) + 1.
            let factor = number("factor")?;
            let mscale = optional("mscale")?.filter(|m| *m != 0.0);
            let mscale_all_dim = optional("mscale_all_dim")?.filter(|m| *m != 0.0);
            let attention_factor = match (optional("attention_factor")?, mscale, mscale_all_dim) {
                (Some(a), _, _) => a,
                (None, Some(m), Some(all)) => {
                    RopeScaling::yarn_mscale(factor, m) / RopeScaling::yarn_mscale(factor, all)
                }
                _ => RopeScaling::yarn_mscale(factor, 1.0),
            };
            let truncate = match map.get("truncate") {
                None | Some(serde_json::Value::Null) => true,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(x) => return Err(format!("{key}.truncate must be true or false, got {x}")),
            };
            Some(RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: optional("original_max_position_embeddings")?
                    .unwrap_or(max_positions as f64),
                beta_fast: optional("beta_fast")?.filter(|b| *b != 0.0).unwrap_or(32.0),
                beta_slow: optional("beta_slow")?.filter(|b| *b != 0.0).unwrap_or(1.0),
                attention_factor,
                truncate,
            })
        }
    };
    Ok((theta, scaling))
}

/// Merge RoPE objects that describe the same rotation (transformers 4's top-level
/// `rope_theta` + `rope_scaling`, transformers 5's `rope_parameters`): a base or scaling given
/// twice must agree.
fn merge_rope(
    top_key: &str,
    top_theta: Option<f64>,
    entries: &[(&str, &serde_json::Value)],
    max_positions: usize,
) -> std::result::Result<(Option<f64>, Option<RopeScaling>), String> {
    let mut theta = top_theta;
    let mut scaling: Option<RopeScaling> = None;
    let mut scaling_from = "";
    for &(key, v) in entries {
        if v.is_null() {
            continue;
        }
        let (t, s) = rope_entry(key, v, max_positions)?;
        if let Some(t) = t {
            if let Some(top) = theta.filter(|top| *top != t) {
                return Err(format!(
                    "{top_key} is {top} at the top level but {t} in {key}: the file contradicts itself"
                ));
            }
            theta = Some(t);
        }
        if let Some(s) = s {
            if scaling.as_ref().is_some_and(|old| *old != s) {
                return Err(format!(
                    "{scaling_from} and {key} give different RoPE scalings: the file contradicts itself"
                ));
            }
            scaling = Some(s);
            scaling_from = key;
        }
    }
    Ok((theta, scaling))
}

/// RoPE's base and scaling from either config layout (transformers 4: `rope_theta` and
/// `rope_scaling`; transformers 5: `rope_parameters`).
fn llama_rope(
    c: &HfLlama,
    max_positions: usize,
) -> std::result::Result<(f64, Option<RopeScaling>), String> {
    let null = serde_json::Value::Null;
    let (theta, scaling) = merge_rope(
        "rope_theta",
        c.rope_theta,
        &[
            ("rope_scaling", c.rope_scaling.as_ref().unwrap_or(&null)),
            (
                "rope_parameters",
                c.rope_parameters.as_ref().unwrap_or(&null),
            ),
        ],
        max_positions,
    )?;
    Ok((theta.unwrap_or_else(default_rope_theta), scaling))
}

/// Gemma 3's two rotations: the full-attention layers' (base `rope_theta`, default 1e6, and
/// `rope_scaling`, e.g. linear) and the sliding layers' (base `rope_local_base_freq`, default
/// 1e4) in transformers 4's layout; transformers 5 writes `rope_parameters: {full_attention:
/// {...}, sliding_attention: {...}}` (transformers' `Gemma3TextConfig.convert_rope_params_to_dict`).
type TwoRopes = ((f64, Option<RopeScaling>), (f64, Option<RopeScaling>));
fn gemma3_rope(
    c: &HfLlama,
    k: &Keys<'_>,
    max_positions: usize,
) -> std::result::Result<TwoRopes, String> {
    let null = serde_json::Value::Null;
    let (mut full, mut local) = (&null, &null);
    if let Some(p) = c.rope_parameters.as_ref().filter(|p| !p.is_null()) {
        let map = p
            .as_object()
            .ok_or_else(|| format!("rope_parameters must be an object, got {p}"))?;
        for (kind, v) in map {
            match kind.as_str() {
                "full_attention" => full = v,
                "sliding_attention" => local = v,
                other => {
                    return Err(format!(
                        "rope_parameters.{other}: gemma3_text's rope_parameters has one entry per \
                         attention kind (full_attention, sliding_attention)"
                    ));
                }
            }
        }
    }
    let (full_theta, full_scaling) = merge_rope(
        "rope_theta",
        c.rope_theta,
        &[
            ("rope_scaling", c.rope_scaling.as_ref().unwrap_or(&null)),
            ("rope_parameters.full_attention", full),
        ],
        max_positions,
    )?;
    let (local_theta, local_scaling) = merge_rope(
        "rope_local_base_freq",
        k.f64_or("rope_local_base_freq", None)?,
        &[("rope_parameters.sliding_attention", local)],
        max_positions,
    )?;
    Ok((
        (full_theta.unwrap_or(1_000_000.0), full_scaling),
        (local_theta.unwrap_or(10_000.0), local_scaling),
    ))
}

/// A decoder config.json of `family`, with the defaults transformers' config class of that
/// family has (`models/<family>/configuration_<family>.py`); every key that changes the maths
/// is read or refused.
fn decoder_config(family: DecoderFamily, text: &str) -> std::result::Result<LlamaConfig, String> {
    use DecoderFamily as F;
    let ty = family.model_type();
    let c: HfLlama =
        serde_json::from_str(text).map_err(|e| format!("incomplete {ty} config: {e}"))?;
    let raw: Map = serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let k = Keys(&raw);
    let gemma = matches!(family, F::Gemma | F::Gemma2 | F::Gemma3Text);
    let sandwich = matches!(family, F::Gemma2 | F::Gemma3Text);

    // The MLP's activation: Gemma 2/3 read `hidden_activation`, the others `hidden_act`.
    let act_key = if sandwich {
        "hidden_activation"
    } else {
        "hidden_act"
    };
    let default_act = if gemma { "gelu_pytorch_tanh" } else { "silu" };
    let hidden_act = match k.str_or(act_key, default_act)? {
        "silu" if !gemma => Activation::Silu,
        "gelu_pytorch_tanh" if gemma => Activation::GeluPytorchTanh,
        // transformers' GemmaConfig reads the legacy `gelu` of the first releases as the tanh form.
        "gelu" if family == F::Gemma => Activation::GeluPytorchTanh,
        other => {
            return Err(format!(
                "{act_key} `{other}` is not supported ({ty} uses {default_act} in ardpipe)"
            ));
        }
    };
    if gemma && k.bool_or("use_bidirectional_attention", false)? {
        return Err(format!(
            "use_bidirectional_attention is on: this {ty} attends both ways (an embedding model), \
             and ardpipe builds it only as a causal LM"
        ));
    }

    let heads = c.num_attention_heads;
    let head_dim = c.head_dim.unwrap_or(match family {
        F::Qwen3 => 128,
        F::Gemma | F::Gemma2 | F::Gemma3Text => 256,
        _ => c.hidden_size.checked_div(heads).unwrap_or(0),
    });
    let (attention_bias, mlp_bias) = match family {
        F::Llama => (
            k.bool_or("attention_bias", false)?,
            k.bool_or("mlp_bias", false)?,
        ),
        // Qwen2's q/k/v always have a bias (o_proj none); Mistral's projections never do.
        F::Qwen2 => (true, false),
        F::Mistral => (false, false),
        F::Qwen3 | F::Gemma | F::Gemma2 | F::Gemma3Text => {
            (k.bool_or("attention_bias", false)?, false)
        }
    };

    // Sliding windows and which layers use them.
    let n = c.num_hidden_layers;
    let (sliding_window, layer_types) = match family {
        F::Llama | F::Gemma => (None, vec![]),
        F::Mistral => {
            if k.present("layer_types").is_some_and(|v| !v.is_null()) {
                return Err(
                    "layer_types is set, but transformers' Mistral ignores it (every layer uses \
                     sliding_window): this looks like a Ministral checkpoint, which ardpipe does \
                     not build"
                        .into(),
                );
            }
            let w = k.usize_or("sliding_window", Some(4096))?;
            let kinds = match w {
                Some(_) => vec![LayerType::SlidingAttention; n],
                None => vec![],
            };
            (w, kinds)
        }
        F::Qwen2 | F::Qwen3 => {
            let on = k.bool_or("use_sliding_window", false)?;
            let w = k.usize_or("sliding_window", Some(4096))?.filter(|_| on);
            let from = k.usize_or("max_window_layers", Some(28))?.unwrap_or(n);
            let kinds = match k.layer_types()? {
                Some(kinds) => kinds,
                None => (0..n)
                    .map(|l| {
                        if w.is_some() && l >= from {
                            LayerType::SlidingAttention
                        } else {
                            LayerType::FullAttention
                        }
                    })
                    .collect(),
            };
            if w.is_none() && kinds.contains(&LayerType::SlidingAttention) {
                return Err(
                    "layer_types has sliding_attention layers, but use_sliding_window is off or \
                     sliding_window is null: the file contradicts itself"
                        .into(),
                );
            }
            (w, kinds)
        }
        F::Gemma2 | F::Gemma3Text => {
            let w = k.usize_or("sliding_window", Some(4096))?;
            let kinds = match k.layer_types()? {
                Some(kinds) => kinds,
                None => {
                    // transformers 4's layout: Gemma 2 slides on even layers, Gemma 3 on all
                    // but every `sliding_window_pattern`-th.
                    let every = if family == F::Gemma2 {
                        2
                    } else {
                        match k.usize_or("sliding_window_pattern", Some(6))? {
                            Some(p) if p > 0 => p,
                            _ => {
                                return Err(
                                    "sliding_window_pattern must be a positive integer".into()
                                );
                            }
                        }
                    };
                    (0..n)
                        .map(|l| {
                            if (l + 1) % every != 0 {
                                LayerType::SlidingAttention
                            } else {
                                LayerType::FullAttention
                            }
                        })
                        .collect()
                }
            };
            (w, kinds)
        }
    };

    let max_positions = c.max_position_embeddings.unwrap_or(match family {
        F::Llama => default_positions(),
        F::Qwen2 | F::Qwen3 => 32768,
        F::Mistral | F::Gemma3Text => 131_072,
        F::Gemma | F::Gemma2 => 8192,
    });
    let ((rope_theta, rope_scaling), local) = if family == F::Gemma3Text {
        let (full, local) = gemma3_rope(&c, &k, max_positions)?;
        (full, Some(local))
    } else {
        (llama_rope(&c, max_positions)?, None)
    };
    let (attn_cap, final_cap, scalar) = match family {
        F::Gemma2 => (Some(50.0), Some(30.0), true),
        F::Gemma3Text => (None, None, true),
        _ => (None, None, false),
    };
    let query_pre_attn_scalar = if scalar {
        Some(
            k.f64_or("query_pre_attn_scalar", Some(256.0))?
                .ok_or("query_pre_attn_scalar must be a number, got null")?,
        )
    } else {
        None
    };
    if family == F::Gemma3Text
        && let Some(cap) = k.f64_or("attn_logit_softcapping", None)?
    {
        return Err(format!(
            "attn_logit_softcapping = {cap}: transformers' Gemma 3 keeps this field but never \
             applies it (models/gemma3/modeling_gemma3.py passes no softcap to attention), so \
             what this checkpoint means is unclear; set it to null (as released Gemma 3 configs do)"
        ));
    }
    let (attn_logit_softcapping, final_logit_softcapping) = if sandwich {
        (
            k.f64_or("attn_logit_softcapping", attn_cap)?,
            k.f64_or("final_logit_softcapping", final_cap)?,
        )
    } else {
        (None, None)
    };
    Ok(LlamaConfig {
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        intermediate_size: c.intermediate_size,
        num_hidden_layers: n,
        num_attention_heads: heads,
        num_key_value_heads: c.num_key_value_heads.unwrap_or(heads),
        head_dim,
        rms_norm_eps: c.rms_norm_eps,
        rope_theta,
        rope_scaling,
        max_position_embeddings: max_positions,
        tie_word_embeddings: c.tie_word_embeddings.unwrap_or(gemma),
        attention_bias,
        mlp_bias,
        bos_token_id: c.bos_token_id,
        eos_token_ids: match c.eos_token_id {
            None => vec![],
            Some(OneOrMany::One(i)) => vec![i],
            Some(OneOrMany::Many(v)) => v,
        },
        family,
        qkv_bias_only: family == F::Qwen2,
        qk_norm: matches!(family, F::Qwen3 | F::Gemma3Text),
        norm_unit_offset: gemma,
        hidden_act,
        scale_embeddings: gemma,
        sandwich_norms: sandwich,
        query_pre_attn_scalar,
        attn_logit_softcapping,
        final_logit_softcapping,
        sliding_window,
        layer_types,
        rope_local_theta: local.as_ref().map(|l| l.0),
        rope_local_scaling: local.and_then(|l| l.1),
    })
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
    /// Absent: the family's default (BERT 0, RoBERTa 1); `null` is kept apart from absent
    /// because RoBERTa's positions cannot be computed without it.
    #[serde(default, deserialize_with = "present")]
    pad_token_id: Option<Option<i64>>,
    hidden_act: Option<String>,
    /// transformers 4 only (`relative_key`, … change attention); transformers 5 dropped it.
    position_embedding_type: Option<String>,
    /// A causal (decoder) BERT/RoBERTa masks attention differently.
    #[serde(default)]
    is_decoder: bool,
    #[serde(default)]
    add_cross_attention: bool,
}

/// Distinguishes a key given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
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

const LLAMA_TYPES: &[&str] = &[
    "llama",
    "qwen2",
    "mistral",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
];
const BERT_TYPES: &[&str] = &["bert", "roberta", "xlm-roberta"];

/// A PaliGemma config.json (`PaliGemmaForConditionalGeneration`): `vision_config` (SigLIP),
/// `text_config` (any decoder family ardpipe builds; PaliGemma-2's is Gemma 2), the projector
/// width and the image token. Absent vision keys take transformers' `SiglipVisionConfig`
/// defaults, as transformers reads them.
fn paligemma_config(text: &str) -> std::result::Result<PaliGemmaConfig, String> {
    let raw: Map = serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let k = Keys(&raw);
    let sub = |key: &str| -> std::result::Result<Map, String> {
        match raw.get(key) {
            Some(serde_json::Value::Object(m)) => Ok(m.clone()),
            other => Err(format!(
                "paligemma: `{key}` must be an object (the {} model's config), got {}",
                if key == "vision_config" {
                    "SigLIP vision"
                } else {
                    "text decoder"
                },
                other.map_or("nothing".to_string(), |v| v.to_string())
            )),
        }
    };
    let vision = sub("vision_config")?;
    let v = Keys(&vision);
    match v.str_or("model_type", "siglip_vision_model")? {
        "siglip_vision_model" => {}
        other => {
            return Err(format!(
                "vision_config.model_type `{other}`: ardpipe builds the SigLIP vision tower \
                 (siglip_vision_model) only"
            ));
        }
    }
    let act = v.str_or("hidden_act", "gelu_pytorch_tanh")?;
    if act != "gelu_pytorch_tanh" {
        return Err(format!(
            "vision_config.hidden_act `{act}` is not supported (SigLIP uses gelu_pytorch_tanh)"
        ));
    }
    if v.f64_or("attention_dropout", Some(0.0))?.unwrap_or(0.0) != 0.0 {
        return Err(
            "vision_config.attention_dropout is not 0: ardpipe's SigLIP has no attention dropout"
                .into(),
        );
    }
    let need = |k: &Keys<'_>, key: &str, default: usize| -> std::result::Result<usize, String> {
        k.usize_or(key, Some(default))?
            .ok_or_else(|| format!("vision_config.{key} must be a number, got null"))
    };
    let vision = SiglipVisionConfig {
        hidden_size: need(&v, "hidden_size", 768)?,
        intermediate_size: need(&v, "intermediate_size", 3072)?,
        num_hidden_layers: need(&v, "num_hidden_layers", 12)?,
        num_attention_heads: need(&v, "num_attention_heads", 12)?,
        num_channels: need(&v, "num_channels", 3)?,
        image_size: need(&v, "image_size", 224)?,
        patch_size: need(&v, "patch_size", 16)?,
        layer_norm_eps: v.f64_or("layer_norm_eps", Some(1e-6))?.unwrap_or(1e-6),
    };
    let mut text_config = sub("text_config")?;
    let ty = text_config
        .get("model_type")
        .and_then(|t| t.as_str())
        .unwrap_or("gemma")
        .to_string();
    let family = DecoderFamily::from_model_type(&ty).ok_or_else(|| {
        format!("text_config.model_type `{ty}` is not a decoder ardpipe builds ({LLAMA_TYPES:?})")
    })?;
    // transformers' PaliGemmaConfig switches this on for its decoder; inside PaliGemma it means
    // the image-and-prompt prefix attends both ways, which the model's own mask does (the
    // decoder's attention is never unmasked).
    text_config.remove("use_bidirectional_attention");
    // A saved PaliGemmaConfig writes its text_config as a diff, so the released PaliGemma-2
    // files leave out what equals the decoder class's defaults (num_attention_heads,
    // head_dim); transformers fills those from the Gemma config class, and so does ardpipe.
    let class_defaults: &[(&str, u64)] = match family {
        DecoderFamily::Gemma => &[
            ("vocab_size", 256_000),
            ("hidden_size", 3072),
            ("intermediate_size", 24_576),
            ("num_hidden_layers", 28),
            ("num_attention_heads", 16),
            ("num_key_value_heads", 16),
        ],
        DecoderFamily::Gemma2 | DecoderFamily::Gemma3Text => &[
            (
                "vocab_size",
                if family == DecoderFamily::Gemma2 {
                    256_000
                } else {
                    262_208
                },
            ),
            ("hidden_size", 2304),
            ("intermediate_size", 9216),
            ("num_hidden_layers", 26),
            ("num_attention_heads", 8),
            ("num_key_value_heads", 4),
        ],
        _ => &[],
    };
    for (key, value) in class_defaults {
        text_config
            .entry(*key)
            .or_insert_with(|| serde_json::Value::from(*value));
    }
    let num_image_tokens = text_config.remove("num_image_tokens");
    // The top level decides whether the LM head is the embedding (transformers ties
    // `lm_head` to `model.language_model.embed_tokens` from the top-level flag).
    if let Some(tie) = raw.get("tie_word_embeddings") {
        text_config.insert("tie_word_embeddings".into(), tie.clone());
    } else {
        text_config.insert("tie_word_embeddings".into(), true.into());
    }
    let text = decoder_config(family, &serde_json::Value::Object(text_config).to_string())
        .map_err(|e| format!("text_config: {e}"))?;
    if let Some(n) = num_image_tokens.as_ref().and_then(|n| n.as_u64())
        && n as usize != vision.num_patches()
    {
        return Err(format!(
            "text_config.num_image_tokens = {n}, but the vision tower makes {} tokens \
             ((image_size {} / patch_size {})²)",
            vision.num_patches(),
            vision.image_size,
            vision.patch_size
        ));
    }
    let image_token_id = match (raw.get("image_token_index"), raw.get("image_token_id")) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "image_token_index {a} and image_token_id {b} disagree (one is the other's old name)"
            ));
        }
        (Some(v), _) | (None, Some(v)) => v
            .as_u64()
            .ok_or_else(|| format!("image_token_index must be a token id, got {v}"))?,
        (None, None) => 256_000,
    };
    let projection_dim = k.usize_or("projection_dim", Some(2048))?.unwrap_or(2048);
    if projection_dim != text.hidden_size {
        return Err(format!(
            "projection_dim {projection_dim} differs from the decoder's hidden_size {}: the \
             projector writes image features into the decoder's embedding space",
            text.hidden_size
        ));
    }
    Ok(PaliGemmaConfig {
        vision,
        text,
        image_token_id,
    })
}

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
    let cfg = if let Some(family) = DecoderFamily::from_model_type(&ty) {
        ArchConfig::Llama(decoder_config(family, text).map_err(bad)?)
    } else if ty == "paligemma" {
        ArchConfig::PaliGemma(Box::new(paligemma_config(text).map_err(bad)?))
    } else if ty == "gemma3" {
        return Err(bad(
            "model_type `gemma3` is Gemma 3's image-and-text model (Gemma3ForConditionalGeneration);              ardpipe builds Gemma 3's text decoder only, from a `gemma3_text` folder              (Gemma3ForCausalLM, e.g. gemma-3-1b): use such a checkpoint"
                .into(),
        ));
    } else if BERT_TYPES.contains(&ty.as_str()) {
        let family = match ty.as_str() {
            "roberta" => EncoderFamily::Roberta,
            "xlm-roberta" => EncoderFamily::XlmRoberta,
            _ => EncoderFamily::Bert,
        };
        let c: HfBert =
            serde_json::from_str(text).map_err(|e| bad(format!("incomplete {ty} config: {e}")))?;
        if let Some(act) = c.hidden_act.as_deref().filter(|a| *a != "gelu") {
            return Err(bad(format!(
                "hidden_act `{act}` is not supported (ardpipe's {ty} encoder uses exact gelu)"
            )));
        }
        if c.is_decoder || c.add_cross_attention {
            return Err(bad(format!(
                "is_decoder / add_cross_attention are set: this {ty} is a (cross-attending) \
                 decoder with causal attention, and ardpipe builds {ty} only as a bidirectional encoder"
            )));
        }
        let pad_token_id = match (c.pad_token_id, family) {
            (Some(Some(id)), _) => id,
            (None, EncoderFamily::Bert) => 0,
            (None, _) => 1,
            // BERT's maths never use the padding id (only the attention mask does).
            (Some(None), EncoderFamily::Bert) => 0,
            (Some(None), _) => {
                return Err(bad(format!(
                    "pad_token_id is null, but {ty} numbers positions from pad_token_id + 1: \
                     set it to the tokenizer's padding id (1 in RoBERTa checkpoints)"
                )));
            }
        };
        if family.roberta_positions() {
            // Positions run from pad_token_id + 1, so the table needs room past the padding id.
            let first = pad_token_id.checked_add(1).filter(|f| *f >= 1);
            if first.is_none_or(|f| f as u64 >= c.max_position_embeddings as u64) {
                return Err(bad(format!(
                    "pad_token_id {pad_token_id} leaves no positions: {ty} numbers tokens from \
                     pad_token_id + 1, which must be inside max_position_embeddings ({})",
                    c.max_position_embeddings
                )));
            }
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
            pad_token_id,
            family,
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
