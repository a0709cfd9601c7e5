//! Validated architecture configurations and the facts the planner needs from them: the
//! adaptable linears with shapes and head layouts, and parameter counts — no tensor data.

use ardpipe_adapters::{HeadAxis, HeadLayout};
use serde::Serialize;

/// Ceilings on a config's dimensions, generous beyond every released model (the largest have
/// about 130 layers, hidden sizes near 25k, vocabularies near 260k and contexts of 10M), yet low
/// enough that a corrupt or hostile value (`num_hidden_layers = 1000000000`) is refused before
/// anything is sized from it, and that the shape arithmetic of the planner cannot overflow.
pub mod limits {
    pub const LAYERS: usize = 1024;
    pub const HIDDEN: usize = 1 << 17;
    pub const INTERMEDIATE: usize = 1 << 20;
    pub const HEADS: usize = 4096;
    pub const HEAD_DIM: usize = 8192;
    pub const VOCAB: usize = 1 << 23;
    pub const POSITIONS: usize = 1 << 24;
    pub const TYPE_VOCAB: usize = 1 << 16;
}

/// Check `(key, value, ceiling)` triples; the error names the key as the file spells it.
pub fn check_dims(dims: &[(&str, usize, usize)]) -> Result<(), String> {
    for &(key, value, max) in dims {
        if value > max {
            return Err(format!(
                "{key} = {value} is beyond any real model (ardpipe's limit is {max}): \
                 the file is damaged or was edited; restore the original"
            ));
        }
    }
    Ok(())
}

/// Check that a float hyper-parameter is finite and inside `lo..hi` (`lo` included when
/// `lo_inclusive`), so that a corrupt value cannot turn every output into NaN.
fn check_float(key: &str, v: f64, lo: f64, lo_inclusive: bool, hi: f64) -> Result<(), String> {
    let above = if lo_inclusive { v >= lo } else { v > lo };
    if v.is_finite() && above && v < hi {
        Ok(())
    } else {
        let open = if lo_inclusive { '[' } else { '(' };
        Err(format!(
            "{key} = {v} is outside {open}{lo}, {hi}): the file is damaged or was edited"
        ))
    }
}

/// A decoder-only causal LM of the Llama lineage: Llama (SmolLM2, TinyLlama, …), Qwen2/2.5,
/// Mistral, Qwen3, Gemma, Gemma 2 and Gemma 3 text, told apart by `family` and the feature
/// fields. `Default` gives a plain Llama with zero dimensions, for struct-update syntax
/// (`LlamaConfig { vocab_size, .., ..Default::default() }`); `validate` refuses it as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// RoPE frequency scaling; `None` is plain RoPE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: Option<i64>,
    pub eos_token_ids: Vec<i64>,
    /// Which Hugging Face family (`model_type`) this decoder is; the per-feature fields below
    /// carry the maths, the family names the config.json and class transformers needs.
    pub family: DecoderFamily,
    /// Bias on q/k/v only, none on o_proj (Qwen2), when `attention_bias` is on.
    pub qkv_bias_only: bool,
    /// Per-head RMSNorm of queries and keys before RoPE (`self_attn.q_norm`/`k_norm`: Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// RMSNorm scales by `1 + weight` (the Gemma families) instead of `weight`.
    pub norm_unit_offset: bool,
    /// The MLP's gate activation.
    pub hidden_act: Activation,
    /// Token embeddings are multiplied by sqrt(hidden_size), rounded to the embedding dtype (Gemma).
    pub scale_embeddings: bool,
    /// Norms after attention and around the MLP (Gemma 2/3): `post_attention_layernorm` on the
    /// attention output, `pre_feedforward_layernorm`, `post_feedforward_layernorm`.
    pub sandwich_norms: bool,
    /// Attention scale is `query_pre_attn_scalar^-0.5` instead of `head_dim^-0.5` (Gemma 2/3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f64>,
    /// `cap·tanh(score/cap)` on the attention scores (Gemma 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f64>,
    /// `cap·tanh(logit/cap)` on the output logits (Gemma 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
    /// A query sees this many keys at most, itself included, in the layers `layer_types` marks
    /// sliding (transformers' `kv_idx > q_idx - sliding_window`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
    /// Attention kind per layer; empty means every layer attends fully.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layer_types: Vec<LayerType>,
    /// RoPE base of the sliding layers when it differs from the full layers' (Gemma 3's local base).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_local_theta: Option<f64>,
    /// RoPE scaling of the sliding layers (only read with `rope_local_theta`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_local_scaling: Option<RopeScaling>,
}

/// The decoder families ardpipe builds with [`LlamaConfig`], by Hugging Face `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderFamily {
    #[default]
    Llama,
    Qwen2,
    Mistral,
    Qwen3,
    Gemma,
    Gemma2,
    #[serde(rename = "gemma3_text")]
    Gemma3Text,
}

impl DecoderFamily {
    pub const ALL: [DecoderFamily; 7] = [
        DecoderFamily::Llama,
        DecoderFamily::Qwen2,
        DecoderFamily::Mistral,
        DecoderFamily::Qwen3,
        DecoderFamily::Gemma,
        DecoderFamily::Gemma2,
        DecoderFamily::Gemma3Text,
    ];

    /// config.json's `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            DecoderFamily::Llama => "llama",
            DecoderFamily::Qwen2 => "qwen2",
            DecoderFamily::Mistral => "mistral",
            DecoderFamily::Qwen3 => "qwen3",
            DecoderFamily::Gemma => "gemma",
            DecoderFamily::Gemma2 => "gemma2",
            DecoderFamily::Gemma3Text => "gemma3_text",
        }
    }

    pub fn from_model_type(t: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.model_type() == t)
    }

    /// transformers' causal-LM class.
    pub fn causal_lm_class(self) -> &'static str {
        match self {
            DecoderFamily::Llama => "LlamaForCausalLM",
            DecoderFamily::Qwen2 => "Qwen2ForCausalLM",
            DecoderFamily::Mistral => "MistralForCausalLM",
            DecoderFamily::Qwen3 => "Qwen3ForCausalLM",
            DecoderFamily::Gemma => "GemmaForCausalLM",
            DecoderFamily::Gemma2 => "Gemma2ForCausalLM",
            DecoderFamily::Gemma3Text => "Gemma3ForCausalLM",
        }
    }
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Silu,
    /// GELU with the tanh approximation (transformers' `gelu_pytorch_tanh`).
    GeluPytorchTanh,
}

impl Activation {
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
            Activation::GeluPytorchTanh => "gelu_pytorch_tanh",
        }
    }
}

/// A layer's attention kind, as transformers' `layer_types` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    FullAttention,
    SlidingAttention,
}

impl LayerType {
    pub fn hf_name(self) -> &'static str {
        match self {
            LayerType::FullAttention => "full_attention",
            LayerType::SlidingAttention => "sliding_attention",
        }
    }
}

/// RoPE frequency scaling, as transformers' `rope_type` names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Llama 3.1's: long wavelengths slowed by `factor`, short ones kept, a smooth ramp between
    /// `original_max_position_embeddings / high_freq_factor` and `/ low_freq_factor`.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Positions divided by `factor` (every inverse frequency divided by it).
    Linear { factor: f64 },
    /// YaRN (Qwen2.5/Qwen3's long-context recipe): low frequencies interpolated by `factor`,
    /// high ones kept, a linear ramp between the dimensions that complete `beta_fast` and
    /// `beta_slow` rotations over `original_max_position_embeddings`; cos and sin scaled by
    /// `attention_factor` (transformers' `_compute_yarn_parameters`).
    Yarn {
        factor: f64,
        original_max_position_embeddings: f64,
        beta_fast: f64,
        beta_slow: f64,
        /// Resolved at read time from `attention_factor`, or `mscale`/`mscale_all_dim`, or
        /// `0.1·ln(factor) + 1`.
        attention_factor: f64,
        truncate: bool,
    },
}

impl RopeScaling {
    fn validate(&self) -> Result<(), String> {
        match *self {
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                check_float("rope factor", factor, 0.0, false, 1e6)?;
                check_float("low_freq_factor", low_freq_factor, 0.0, false, 1e6)?;
                check_float("high_freq_factor", high_freq_factor, 0.0, false, 1e6)?;
                check_float(
                    "original_max_position_embeddings",
                    original_max_position_embeddings,
                    0.0,
                    false,
                    1e12,
                )?;
                if high_freq_factor <= low_freq_factor {
                    return Err(format!(
                        "high_freq_factor ({high_freq_factor}) must be greater than low_freq_factor ({low_freq_factor})"
                    ));
                }
                Ok(())
            }
            RopeScaling::Linear { factor } => check_float("rope factor", factor, 0.0, false, 1e6),
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                truncate: _,
            } => {
                check_float("rope factor", factor, 0.0, false, 1e6)?;
                check_float(
                    "original_max_position_embeddings",
                    original_max_position_embeddings,
                    0.0,
                    false,
                    1e12,
                )?;
                check_float("beta_fast", beta_fast, 0.0, false, 1e6)?;
                check_float("beta_slow", beta_slow, 0.0, false, 1e6)?;
                check_float("attention_factor", attention_factor, 0.0, false, 1e6)
            }
        }
    }

    /// The factor cos and sin are multiplied by (1 but for YaRN).
    pub fn attention_factor(&self) -> f64 {
        match *self {
            RopeScaling::Yarn {
                attention_factor, ..
            } => attention_factor,
            _ => 1.0,
        }
    }

    /// YaRN's default attention factor (transformers' `get_mscale`).
    pub fn yarn_mscale(factor: f64, mscale: f64) -> f64 {
        if factor <= 1.0 {
            1.0
        } else {
            0.1 * mscale * factor.ln() + 1.0
        }
    }

    /// Adjust plain RoPE's inverse frequencies (`inv_freq[i] = theta^(-2i/dim)`), as
    /// transformers' `_compute_llama3_parameters` / `_compute_yarn_parameters` do.
    pub fn apply(&self, inv_freq: &[f64], theta: f64) -> Vec<f64> {
        match *self {
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_len,
            } => {
                let low_freq_wavelen = old_len / low_freq_factor;
                let high_freq_wavelen = old_len / high_freq_factor;
                inv_freq
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_len / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
            RopeScaling::Linear { factor } => inv_freq.iter().map(|f| f / factor).collect(),
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: old_len,
                beta_fast,
                beta_slow,
                truncate,
                ..
            } => {
                let dim = (inv_freq.len() * 2) as f64;
                // The dimension that completes `rotations` turns over the original context.
                let correction = |rotations: f64| {
                    dim * (old_len / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * theta.ln())
                };
                let (mut low, mut high) = (correction(beta_fast), correction(beta_slow));
                if truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let mut high = high.min(dim - 1.0);
                if low == high {
                    high += 0.001; // as transformers: no division by zero
                }
                inv_freq
                    .iter()
                    .enumerate()
                    .map(|(i, &f)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let extrapolation = 1.0 - ramp;
                        (f / factor) * (1.0 - extrapolation) + f * extrapolation
                    })
                    .collect()
            }
        }
    }
}

/// A BERT-family encoder (BERT, MiniLM, …): post-LN, absolute positions, GELU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    /// Dropout before the classifier (`classifier_dropout`, else `hidden_dropout_prob`).
    pub classifier_dropout: f64,
    /// Std of the normal init of new heads (transformers' `initializer_range`).
    pub initializer_range: f64,
    pub pad_token_id: i64,
    /// BERT or RoBERTa lineage (`model_type`): positions, checkpoint prefix and head differ.
    pub family: EncoderFamily,
}

/// The encoder families ardpipe builds with [`BertConfig`], by Hugging Face `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderFamily {
    /// `bert`: positions 0.., pooler + `classifier` head, module prefix `bert.`.
    #[default]
    Bert,
    /// `roberta`: positions from `pad_token_id + 1` skipping padding, `classifier.dense` →
    /// tanh → `classifier.out_proj` head, module prefix `roberta.`.
    Roberta,
    /// `xlm-roberta`: RoBERTa's maths under its own `model_type` (prefix `roberta.` too).
    #[serde(rename = "xlm-roberta")]
    XlmRoberta,
}

impl EncoderFamily {
    pub const ALL: [EncoderFamily; 3] = [
        EncoderFamily::Bert,
        EncoderFamily::Roberta,
        EncoderFamily::XlmRoberta,
    ];

    /// transformers' `base_model_prefix` for this family's task models (with the dot).
    pub fn prefix(self) -> &'static str {
        match self {
            EncoderFamily::Bert => "bert.",
            EncoderFamily::Roberta | EncoderFamily::XlmRoberta => "roberta.",
        }
    }

    /// Positions start after the padding id and skip padding (RoBERTa's
    /// `create_position_ids_from_input_ids`).
    pub fn roberta_positions(self) -> bool {
        !matches!(self, EncoderFamily::Bert)
    }

    pub fn model_type(self) -> &'static str {
        match self {
            EncoderFamily::Bert => "bert",
            EncoderFamily::Roberta => "roberta",
            EncoderFamily::XlmRoberta => "xlm-roberta",
        }
    }
}

/// One per loaded or described model, so the decoder variant's larger size costs nothing
/// worth a box at every construction and match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "architecture", rename_all = "snake_case")]
pub enum ArchConfig {
    Llama(LlamaConfig),
    Bert(BertConfig),
    /// A vision-language model: SigLIP tower, projector, decoder.
    PaliGemma(Box<super::paligemma::PaliGemmaConfig>),
}

/// One linear an adapter may target, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleSpec {
    /// Hugging Face module path, e.g. `model.layers.3.self_attn.q_proj`.
    pub path: String,
    /// The last path component (`q_proj`, `query`, …): what selectors usually name.
    pub name: String,
    pub layer: usize,
    pub d_out: usize,
    pub d_in: usize,
    pub bias: bool,
    pub heads: HeadLayout,
}

impl LlamaConfig {
    /// The dimensions with their config.json keys and ceilings.
    pub fn dims(&self) -> [(&'static str, usize, usize); 7] {
        use limits::*;
        [
            ("num_hidden_layers", self.num_hidden_layers, LAYERS),
            ("hidden_size", self.hidden_size, HIDDEN),
            ("intermediate_size", self.intermediate_size, INTERMEDIATE),
            ("num_attention_heads", self.num_attention_heads, HEADS),
            ("num_key_value_heads", self.num_key_value_heads, HEADS),
            ("head_dim", self.head_dim, HEAD_DIM),
            ("vocab_size", self.vocab_size, VOCAB),
        ]
    }

    pub fn validate(&self) -> Result<(), String> {
        check_dims(&self.dims())?;
        check_dims(&[(
            "max_position_embeddings",
            self.max_position_embeddings,
            limits::POSITIONS,
        )])?;
        check_float("rms_norm_eps", self.rms_norm_eps, 0.0, false, 1.0)?;
        check_float("rope_theta", self.rope_theta, 0.0, false, f64::INFINITY)?;
        if let Some(scaling) = &self.rope_scaling {
            scaling.validate()?;
        }
        let h = self.num_attention_heads;
        let kv = self.num_key_value_heads;
        if h == 0 || kv == 0 || !h.is_multiple_of(kv) {
            return Err(format!(
                "{h} attention heads cannot be shared by {kv} key/value heads (heads must be a multiple of KV heads)"
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} must be even for RoPE", self.head_dim));
        }
        for (key, v) in [
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
            ("rope_local_base_freq", self.rope_local_theta),
        ] {
            if let Some(v) = v {
                check_float(key, v, 0.0, false, f64::INFINITY)?;
            }
        }
        if let Some(scaling) = &self.rope_local_scaling {
            scaling.validate()?;
        }
        if !self.layer_types.is_empty() && self.layer_types.len() != self.num_hidden_layers {
            return Err(format!(
                "layer_types lists {} layers but num_hidden_layers is {}",
                self.layer_types.len(),
                self.num_hidden_layers
            ));
        }
        let sliding = self.layer_types.contains(&LayerType::SlidingAttention);
        if let Some(w) = self.sliding_window {
            check_dims(&[("sliding_window", w, limits::POSITIONS)])?;
        }
        match self.sliding_window {
            Some(0) => return Err("sliding_window must be at least 1".into()),
            None if sliding => {
                return Err(
                    "layer_types has sliding_attention layers but sliding_window is not set".into(),
                );
            }
            _ => {}
        }
        if self.hidden_size == 0
            || self.num_hidden_layers == 0
            || self.vocab_size == 0
            || self.intermediate_size == 0
        {
            return Err(
                "hidden_size, num_hidden_layers, vocab_size and intermediate_size must be positive"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn modules(&self) -> Vec<ModuleSpec> {
        self.modules_at("model.")
    }

    /// [`LlamaConfig::modules`] with paths under `prefix` instead of `model.` (a
    /// vision-language model's decoder is `model.language_model.`).
    pub fn modules_at(&self, prefix: &str) -> Vec<ModuleSpec> {
        let (h, kv, hd, d, f) = (
            self.num_attention_heads,
            self.num_key_value_heads,
            self.head_dim,
            self.hidden_size,
            self.intermediate_size,
        );
        let out = |n, dim| HeadLayout {
            axis: HeadAxis::Output,
            n_heads: n,
            head_dim: dim,
        };
        let mut v = Vec::new();
        for l in 0..self.num_hidden_layers {
            let m = |name: &str, sub: &str, d_out, d_in, bias, heads| ModuleSpec {
                path: format!("{prefix}layers.{l}.{sub}.{name}"),
                name: name.into(),
                layer: l,
                d_out,
                d_in,
                bias,
                heads,
            };
            let ab = self.attention_bias;
            v.push(m("q_proj", "self_attn", h * hd, d, ab, out(h, hd)));
            v.push(m("k_proj", "self_attn", kv * hd, d, ab, out(kv, hd)));
            v.push(m("v_proj", "self_attn", kv * hd, d, ab, out(kv, hd)));
            v.push(m(
                "o_proj",
                "self_attn",
                d,
                h * hd,
                ab && !self.qkv_bias_only,
                HeadLayout {
                    axis: HeadAxis::Input,
                    n_heads: h,
                    head_dim: hd,
                },
            ));
            let mb = self.mlp_bias;
            v.push(m("gate_proj", "mlp", f, d, mb, HeadLayout::headless(f)));
            v.push(m("up_proj", "mlp", f, d, mb, HeadLayout::headless(f)));
            v.push(m("down_proj", "mlp", d, f, mb, HeadLayout::headless(d)));
        }
        v
    }

    /// The config.json transformers needs to build this model (`model_type`, `architectures`
    /// and every field that changes the maths), in the layout transformers 5 writes: RoPE in
    /// `rope_parameters` (one entry per attention kind for Gemma 3), `layer_types` spelled out.
    pub fn hf_config_json(&self) -> serde_json::Value {
        use serde_json::{Value, json};
        let fam = self.family;
        let rope = |theta: f64, scaling: Option<&RopeScaling>| -> Value {
            let mut r = match scaling {
                Some(s) => serde_json::to_value(s).expect("RoPE scaling serialises"),
                None => json!({"rope_type": "default"}),
            };
            r["rope_theta"] = json!(theta);
            r
        };
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let mut j = json!({
            "architectures": [fam.causal_lm_class()],
            "model_type": fam.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "dtype": "float32",
        });
        let o = j.as_object_mut().expect("an object");
        let layer_types: Vec<&str> = (0..self.num_hidden_layers)
            .map(|l| self.layer_type(l).hf_name())
            .collect();
        let act = self.hidden_act.hf_name();
        match fam {
            DecoderFamily::Gemma3Text => {
                let local = rope(
                    self.rope_local_theta.unwrap_or(self.rope_theta),
                    if self.rope_local_theta.is_some() {
                        self.rope_local_scaling.as_ref()
                    } else {
                        self.rope_scaling.as_ref()
                    },
                );
                o.insert(
                    "rope_parameters".into(),
                    json!({
                        "full_attention": rope(self.rope_theta, self.rope_scaling.as_ref()),
                        "sliding_attention": local,
                    }),
                );
            }
            _ => {
                o.insert(
                    "rope_parameters".into(),
                    rope(self.rope_theta, self.rope_scaling.as_ref()),
                );
            }
        }
        match fam {
            DecoderFamily::Llama => {
                o.insert("hidden_act".into(), json!(act));
                o.insert("attention_bias".into(), json!(self.attention_bias));
                o.insert("mlp_bias".into(), json!(self.mlp_bias));
            }
            DecoderFamily::Qwen2 | DecoderFamily::Qwen3 => {
                o.insert("hidden_act".into(), json!(act));
                if fam == DecoderFamily::Qwen3 {
                    o.insert("attention_bias".into(), json!(self.attention_bias));
                }
                let first_sliding = (0..self.num_hidden_layers)
                    .find(|&l| self.layer_type(l) == LayerType::SlidingAttention);
                o.insert("use_sliding_window".into(), json!(first_sliding.is_some()));
                o.insert(
                    "sliding_window".into(),
                    json!(first_sliding.and(self.sliding_window)),
                );
                o.insert(
                    "max_window_layers".into(),
                    json!(first_sliding.unwrap_or(self.num_hidden_layers)),
                );
                o.insert("layer_types".into(), json!(layer_types));
            }
            DecoderFamily::Mistral => {
                o.insert("hidden_act".into(), json!(act));
                o.insert("sliding_window".into(), json!(self.sliding_window));
            }
            DecoderFamily::Gemma => {
                o.insert("hidden_act".into(), json!(act));
                o.insert("attention_bias".into(), json!(self.attention_bias));
            }
            DecoderFamily::Gemma2 | DecoderFamily::Gemma3Text => {
                o.insert("hidden_activation".into(), json!(act));
                o.insert("attention_bias".into(), json!(self.attention_bias));
                // transformers types it as an int.
                let scalar = self.query_pre_attn_scalar.unwrap_or(self.head_dim as f64);
                o.insert(
                    "query_pre_attn_scalar".into(),
                    if scalar.fract() == 0.0 && scalar < 1e15 {
                        json!(scalar as u64)
                    } else {
                        json!(scalar)
                    },
                );
                o.insert("sliding_window".into(), json!(self.sliding_window));
                o.insert("layer_types".into(), json!(layer_types));
                o.insert(
                    "attn_logit_softcapping".into(),
                    json!(self.attn_logit_softcapping),
                );
                o.insert(
                    "final_logit_softcapping".into(),
                    json!(self.final_logit_softcapping),
                );
            }
        }
        j
    }

    /// Layer `l`'s attention kind (full when `layer_types` is empty).
    pub fn layer_type(&self, l: usize) -> LayerType {
        self.layer_types
            .get(l)
            .copied()
            .unwrap_or(LayerType::FullAttention)
    }

    /// The window layer `l` attends within, `None` for full attention.
    pub fn layer_window(&self, l: usize) -> Option<usize> {
        match self.layer_type(l) {
            LayerType::SlidingAttention => self.sliding_window,
            LayerType::FullAttention => None,
        }
    }

    /// The attention scale: `query_pre_attn_scalar^-0.5`, else `head_dim^-0.5`.
    pub fn attention_scale(&self) -> f64 {
        self.query_pre_attn_scalar
            .unwrap_or(self.head_dim as f64)
            .powf(-0.5)
    }

    pub fn parameter_count(&self) -> usize {
        let linears: usize = self
            .modules()
            .iter()
            .map(|m| m.d_out * m.d_in + if m.bias { m.d_out } else { 0 })
            .sum();
        let per_layer_norms = if self.sandwich_norms { 4 } else { 2 };
        let qk_norms = if self.qk_norm { 2 * self.head_dim } else { 0 };
        let norms = (per_layer_norms * self.num_hidden_layers + 1) * self.hidden_size
            + self.num_hidden_layers * qk_norms;
        let embed = self.vocab_size * self.hidden_size;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        linears + norms + embed + head
    }
}

impl BertConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn validate(&self) -> Result<(), String> {
        use limits::*;
        check_dims(&[
            ("num_hidden_layers", self.num_hidden_layers, LAYERS),
            ("hidden_size", self.hidden_size, HIDDEN),
            ("intermediate_size", self.intermediate_size, INTERMEDIATE),
            ("num_attention_heads", self.num_attention_heads, HEADS),
            ("vocab_size", self.vocab_size, VOCAB),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                POSITIONS,
            ),
            ("type_vocab_size", self.type_vocab_size, TYPE_VOCAB),
        ])?;
        check_float("layer_norm_eps", self.layer_norm_eps, 0.0, false, 1.0)?;
        check_float(
            "hidden_dropout_prob",
            self.hidden_dropout_prob,
            0.0,
            true,
            1.0,
        )?;
        check_float(
            "attention_probs_dropout_prob",
            self.attention_probs_dropout_prob,
            0.0,
            true,
            1.0,
        )?;
        check_float(
            "classifier_dropout",
            self.classifier_dropout,
            0.0,
            true,
            1.0,
        )?;
        check_float("initializer_range", self.initializer_range, 0.0, true, 1e3)?;
        if self.hidden_size == 0 {
            return Err("hidden_size must be positive".into());
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden size {} is not divisible by {} attention heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_hidden_layers == 0
            || self.vocab_size == 0
            || self.max_position_embeddings == 0
            || self.intermediate_size == 0
            || self.type_vocab_size == 0
        {
            return Err("num_hidden_layers, vocab_size, max_position_embeddings, \
                 intermediate_size and type_vocab_size must be positive"
                .into());
        }
        Ok(())
    }

    /// Module paths under `prefix` (`bert.` inside a classification model, empty for the bare encoder).
    pub fn modules(&self, prefix: &str) -> Vec<ModuleSpec> {
        let (d, f, h, hd) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_attention_heads,
            self.head_dim(),
        );
        let mut v = Vec::new();
        for l in 0..self.num_hidden_layers {
            let m = |sub: &str, name: &str, d_out, d_in, heads| ModuleSpec {
                path: format!("{prefix}encoder.layer.{l}.{sub}"),
                name: name.into(),
                layer: l,
                d_out,
                d_in,
                bias: true,
                heads,
            };
            let q = HeadLayout {
                axis: HeadAxis::Output,
                n_heads: h,
                head_dim: hd,
            };
            v.push(m("attention.self.query", "query", d, d, q));
            v.push(m("attention.self.key", "key", d, d, q));
            v.push(m("attention.self.value", "value", d, d, q));
            v.push(m(
                "attention.output.dense",
                "attention.output.dense",
                d,
                d,
                HeadLayout {
                    axis: HeadAxis::Input,
                    n_heads: h,
                    head_dim: hd,
                },
            ));
            v.push(m(
                "intermediate.dense",
                "intermediate.dense",
                f,
                d,
                HeadLayout::headless(f),
            ));
            v.push(m(
                "output.dense",
                "output.dense",
                d,
                f,
                HeadLayout::headless(d),
            ));
        }
        v
    }

    /// Encoder + pooler parameters (what the checkpoint holds).
    pub fn parameter_count(&self) -> usize {
        let d = self.hidden_size;
        let linears: usize = self
            .modules("")
            .iter()
            .map(|m| m.d_out * m.d_in + m.d_out)
            .sum();
        let norms = (2 * self.num_hidden_layers + 1) * 2 * d;
        let embed = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * d;
        let pooler = d * d + d;
        linears + norms + embed + pooler
    }
}

impl ArchConfig {
    /// The family as config.json's `model_type` names it (`qwen2`, `gemma3_text`, `roberta`, …).
    pub fn name(&self) -> &'static str {
        match self {
            ArchConfig::Llama(c) => c.family.model_type(),
            ArchConfig::Bert(c) => c.family.model_type(),
            ArchConfig::PaliGemma(_) => "paligemma",
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            ArchConfig::Llama(c) => c.validate(),
            ArchConfig::Bert(c) => c.validate(),
            ArchConfig::PaliGemma(c) => c.validate(),
        }
    }

    pub fn parameter_count(&self) -> usize {
        match self {
            ArchConfig::Llama(c) => c.parameter_count(),
            ArchConfig::Bert(c) => c.parameter_count(),
            ArchConfig::PaliGemma(c) => c.parameter_count(),
        }
    }
}
