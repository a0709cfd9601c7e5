//! GGUF decoders as Hugging Face checkpoints, per `general.architecture`: the config from the
//! metadata (`<arch>.*` keys), tensors under their HF names, and the converter's changes undone.
//!
//! The conventions are llama.cpp's (its converter `convert_hf_to_gguf.py` writes the files, its
//! `llama-model.cpp` reads them), for the architectures ardpipe builds:
//!
//! | `general.architecture` | HF family | Q/K rows | norms stored | extra |
//! |---|---|---|---|---|
//! | `llama` (Mistral too) | Llama | interleaved | w | `rope_freqs` (Llama 3.1 scaling) |
//! | `qwen2` | Qwen2 | as HF | w | q/k/v bias |
//! | `qwen3` | Qwen3 | as HF | w | `attn_q_norm`/`attn_k_norm` |
//! | `gemma` | Gemma | as HF | w + 1 | GeGLU, embeddings · √d, tied head |
//! | `gemma2` | Gemma 2 | as HF | w + 1 | sandwich norms, soft-capping, sliding window on even layers |
//! | `gemma3` | Gemma 3 text | as HF | w + 1 | + q/k norms, 5 of 6 layers sliding with RoPE base 10⁴ |
//!
//! Facts the files leave out are llama.cpp's fixed values: Gemma 2 without
//! `gemma2.attn_logit_softcapping`/`final_logit_softcapping`/`attention.sliding_window` uses
//! 50, 30 and 4096; the attention scale of Gemma 2/3 is `head_dim^-0.5` except for the 27B models
//! (46 and 62 blocks), where it is `(hidden/heads)^-0.5`; Gemma 3's sliding layers use RoPE base
//! 10,000 without scaling. Metadata that would change the maths and that ardpipe cannot honour
//! (another RoPE scaling, partial rotary dimensions, experts, …) is refused, naming the key.

use tch::{Device, Kind, Tensor};

use super::container::{GgufFile, Value};
use crate::arch::config::{
    Activation, DecoderFamily, LayerType, LlamaConfig, RopeScaling, check_dims, limits,
};
use crate::error::{ModelError, Result};
use crate::weights::TensorSource;

/// The GGUF architectures ardpipe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufArch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma,
    Gemma2,
    Gemma3,
}

impl GgufArch {
    pub const ALL: [GgufArch; 6] = [
        GgufArch::Llama,
        GgufArch::Qwen2,
        GgufArch::Qwen3,
        GgufArch::Gemma,
        GgufArch::Gemma2,
        GgufArch::Gemma3,
    ];

    /// `general.architecture`, also the prefix of its metadata keys.
    pub fn name(self) -> &'static str {
        match self {
            GgufArch::Llama => "llama",
            GgufArch::Qwen2 => "qwen2",
            GgufArch::Qwen3 => "qwen3",
            GgufArch::Gemma => "gemma",
            GgufArch::Gemma2 => "gemma2",
            GgufArch::Gemma3 => "gemma3",
        }
    }

    /// The architecture a decoder family's GGUF files carry (Mistral's converter writes `llama`).
    pub fn of_family(f: DecoderFamily) -> Self {
        match f {
            DecoderFamily::Llama | DecoderFamily::Mistral => GgufArch::Llama,
            DecoderFamily::Qwen2 => GgufArch::Qwen2,
            DecoderFamily::Qwen3 => GgufArch::Qwen3,
            DecoderFamily::Gemma => GgufArch::Gemma,
            DecoderFamily::Gemma2 => GgufArch::Gemma2,
            DecoderFamily::Gemma3Text => GgufArch::Gemma3,
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The file's architecture, or an error naming what it is and what ardpipe reads.
    pub fn of(g: &GgufFile) -> Result<Self> {
        let arch = match g.get("general.architecture") {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(ModelError::config(
                    &g.path,
                    format!(
                        "GGUF metadata `general.architecture` is a {}, not a string",
                        other.type_name()
                    ),
                ));
            }
            None => {
                return Err(ModelError::config(
                    &g.path,
                    "GGUF metadata `general.architecture` is missing: not a model file",
                ));
            }
        };
        Self::from_name(arch).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|a| a.name()).collect();
            ModelError::config(
                &g.path,
                format!(
                    "GGUF architecture `{arch}` is not supported: ardpipe reads the decoders {} \
                     (general.architecture); use a Hugging Face folder for other models",
                    names.join(", ")
                ),
            )
        })
    }

    /// llama.cpp's converter interleaves the Q/K rows of these (its `LlamaModel.permute`).
    pub fn permutes_qk(self) -> bool {
        self == GgufArch::Llama
    }

    /// llama.cpp's converter stores every RMSNorm weight of these as `w + 1` (the Gemma norms
    /// scale by `1 + w`, llama.cpp's by the stored value).
    pub fn norms_plus_one(self) -> bool {
        matches!(self, GgufArch::Gemma | GgufArch::Gemma2 | GgufArch::Gemma3)
    }

    fn sandwich(self) -> bool {
        matches!(self, GgufArch::Gemma2 | GgufArch::Gemma3)
    }

    /// GGUF block tensor name → HF suffix under `model.layers.N.`.
    fn block_name(self, gguf: &str) -> Option<&'static str> {
        Some(match gguf {
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "attn_q_norm" => "self_attn.q_norm",
            "attn_k_norm" => "self_attn.k_norm",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            "attn_norm" => "input_layernorm",
            // Gemma 2/3: the norm after attention, and `ffn_norm` is the one before the MLP.
            "post_attention_norm" if self.sandwich() => "post_attention_layernorm",
            "ffn_norm" if self.sandwich() => "pre_feedforward_layernorm",
            "post_ffw_norm" if self.sandwich() => "post_feedforward_layernorm",
            "ffn_norm" => "post_attention_layernorm",
            _ => return None,
        })
    }

    /// Map a GGUF tensor name to its Hugging Face name (None for names ardpipe does not know).
    pub fn hf_name(self, gguf: &str) -> Option<String> {
        match gguf {
            "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
            "output_norm.weight" => return Some("model.norm.weight".into()),
            "output.weight" => return Some("lm_head.weight".into()),
            _ => {}
        }
        let rest = gguf.strip_prefix("blk.")?;
        let (layer, rest) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (base, param) = rest.rsplit_once('.')?;
        let hf = self.block_name(base)?;
        Some(format!("model.layers.{layer}.{hf}.{param}"))
    }
}

/// [`GgufArch::hf_name`] for a llama file.
pub fn hf_name_llama(gguf: &str) -> Option<String> {
    GgufArch::Llama.hf_name(gguf)
}

/// Undo the GGUF converter's interleaving of Q/K rows (without it the model still babbles
/// fluently, but SmolLM2's perplexity goes from about 3 to 13): view `[out, in]` as
/// `(n_heads, head_dim/2, 2, in)`, swap axes 1 and 2, back to `[out, in]`. After this the
/// rotate-half RoPE of the HF implementation applies.
pub fn unpermute(w: &Tensor, n_heads: i64) -> Tensor {
    let (out, inp) = w.size2().expect("q/k weights are 2-D");
    w.reshape([n_heads, out / n_heads / 2, 2, inp])
        .transpose(1, 2)
        .reshape([out, inp])
}

pub(crate) fn meta_u64(g: &GgufFile, key: &str) -> Result<usize> {
    g.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| {
            ModelError::config(
                &g.path,
                format!("GGUF metadata `{key}` is missing or not an integer"),
            )
        })
}

/// An optional integer key: absent is `None`, but present with another type (a string, a float,
/// a negative number) is an error, never a silent fall-back to the default.
pub(crate) fn opt_u64(g: &GgufFile, key: &str) -> Result<Option<u64>> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ModelError::config(
                &g.path,
                format!(
                    "GGUF metadata `{key}` is {v:?}, not a non-negative integer; the file was \
                     damaged or badly edited (re-convert it)"
                ),
            )
        }),
    }
}

/// An optional number key, with the same rule as [`opt_u64`].
pub(crate) fn opt_f64(g: &GgufFile, key: &str) -> Result<Option<f64>> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            ModelError::config(
                &g.path,
                format!(
                    "GGUF metadata `{key}` is {v:?}, not a number; the file was damaged or badly \
                     edited (re-convert it)"
                ),
            )
        }),
    }
}

fn opt_str<'a>(g: &'a GgufFile, key: &str) -> Result<Option<&'a str>> {
    match g.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ModelError::config(
            &g.path,
            format!("GGUF metadata `{key}` is {v:?}, not a string"),
        )),
    }
}

/// A token id key: an integer that fits a u32 (ids are indices into the vocabulary).
pub(crate) fn opt_token_id(g: &GgufFile, key: &str) -> Result<Option<u32>> {
    opt_u64(g, key)?
        .map(|v| {
            u32::try_from(v).map_err(|_| {
                ModelError::config(
                    &g.path,
                    format!("GGUF metadata `{key}` = {v} is not a token id (too large)"),
                )
            })
        })
        .transpose()
}

/// `<arch>.` keys ardpipe reads (or that describe nothing the forward pass computes).
const KNOWN_KEYS: &[&str] = &[
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "vocab_size",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.layer_norm_rms_epsilon",
    "attention.sliding_window",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "rope.dimension_count",
    "rope.freq_base",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scaling.original_context_length",
    // Whether the model was fine-tuned at the scaled length: no effect on the maths.
    "rope.scaling.finetuned",
];

/// `<arch>.` keys that change the maths of a decoder ardpipe builds without them; a file with
/// one of these set (other than to its neutral value) is refused, naming it.
fn refuse_unknown_keys(g: &GgufFile, arch: GgufArch) -> Result<()> {
    let prefix = format!("{}.", arch.name());
    for (key, v) in &g.metadata {
        let Some(rest) = key.strip_prefix(&prefix) else {
            continue;
        };
        if KNOWN_KEYS.contains(&rest) {
            continue;
        }
        // Mixture-of-experts counts of 0 describe a dense model.
        if matches!(rest, "expert_count" | "expert_used_count") && v.as_u64() == Some(0) {
            continue;
        }
        return Err(ModelError::config(
            &g.path,
            format!(
                "GGUF metadata `{key}` = {v:?} is not supported: it changes the {} model's maths \
                 and ardpipe does not implement it (refusing rather than ignoring it)",
                arch.name()
            ),
        ));
    }
    Ok(())
}

/// The architecture facts from GGUF metadata (no tensor data is read, except the small
/// `rope_freqs` vector of Llama 3.1 files).
pub fn decoder_config(g: &GgufFile) -> Result<LlamaConfig> {
    let arch = GgufArch::of(g)?;
    refuse_unknown_keys(g, arch)?;
    let a = arch.name();
    let k = |s: &str| format!("{a}.{s}");
    let err = |msg: String| ModelError::config(&g.path, msg);
    let heads = meta_u64(g, &k("attention.head_count"))?;
    let hidden = meta_u64(g, &k("embedding_length"))?;
    let layers = meta_u64(g, &k("block_count"))?;
    let kv = opt_u64(g, &k("attention.head_count_kv"))?
        .map(|v| v as usize)
        .unwrap_or(heads);
    let vocab = match g.get("tokenizer.ggml.tokens").and_then(Value::as_array) {
        Some(t) => t.len(),
        None => meta_u64(g, &k("vocab_size"))?,
    };
    // head_dim: attention.key_length (Gemma, Qwen3), else hidden/heads, as llama.cpp; the
    // rotated dimensions (rope.dimension_count) must be the whole head.
    let key_len = opt_u64(g, &k("attention.key_length"))?.map(|v| v as usize);
    let value_len = opt_u64(g, &k("attention.value_length"))?.map(|v| v as usize);
    let rope_dims = opt_u64(g, &k("rope.dimension_count"))?.map(|v| v as usize);
    let head_dim = key_len.unwrap_or(hidden.checked_div(heads).unwrap_or(0));
    if let Some(v) = value_len.filter(|&v| v != head_dim) {
        return Err(err(format!(
            "GGUF metadata `{}` = {v} differs from the key length {head_dim}: ardpipe's attention \
             needs equal query/key and value head sizes",
            k("attention.value_length")
        )));
    }
    if let Some(r) = rope_dims.filter(|&r| r != head_dim) {
        return Err(err(format!(
            "GGUF metadata `{}` = {r} rotates part of each {head_dim}-wide head (partial rotary \
             embedding), which ardpipe does not implement",
            k("rope.dimension_count")
        )));
    }
    let eps = match (arch, opt_f64(g, &k("attention.layer_norm_rms_epsilon"))?) {
        (_, Some(e)) => e,
        // ardpipe's Llama reader has always taken llama.cpp's Llama default.
        (GgufArch::Llama, None) => 1e-5,
        (_, None) => {
            return Err(err(format!(
                "GGUF metadata `{}` is missing (llama.cpp requires it too; re-convert the model)",
                k("attention.layer_norm_rms_epsilon")
            )));
        }
    };
    let eos = opt_token_id(g, "tokenizer.ggml.eos_token_id")?
        .map(|v| vec![v as i64])
        .unwrap_or_default();
    let has = |name: &str| g.tensor(name).is_some();
    let mut cfg = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: meta_u64(g, &k("feed_forward_length"))?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        head_dim,
        rms_norm_eps: eps,
        // llama.cpp's default base when the key is absent.
        rope_theta: opt_f64(g, &k("rope.freq_base"))?.unwrap_or(10000.0),
        rope_scaling: rope_scaling(g, arch, head_dim)?,
        max_position_embeddings: opt_u64(g, &k("context_length"))?.unwrap_or(2048) as usize,
        // Without `output.weight` the LM head is the token embedding.
        tie_word_embeddings: !has("output.weight"),
        attention_bias: has("blk.0.attn_q.bias"),
        mlp_bias: has("blk.0.ffn_up.bias"),
        bos_token_id: opt_token_id(g, "tokenizer.ggml.bos_token_id")?.map(|v| v as i64),
        eos_token_ids: eos,
        ..Default::default()
    };
    let attn_softcap = opt_f64(g, &k("attn_logit_softcapping"))?;
    let final_softcap = opt_f64(g, &k("final_logit_softcapping"))?;
    let window = opt_u64(g, &k("attention.sliding_window"))?.map(|v| v as usize);
    // The attention scale of Gemma 2/3 (llama.cpp: head_dim^-0.5, but (hidden/heads)^-0.5 for
    // the 27B models, told apart by their block count).
    let gemma_scalar = |big_layers: usize| {
        if layers == big_layers {
            (hidden / heads.max(1)) as f64
        } else {
            head_dim as f64
        }
    };
    match arch {
        GgufArch::Llama => {
            // Mistral GGUFs say llama too: the same maths (llama.cpp keeps no sliding window).
            cfg.family = DecoderFamily::Llama;
        }
        GgufArch::Qwen2 => {
            cfg.family = DecoderFamily::Qwen2;
            cfg.qkv_bias_only = true;
        }
        GgufArch::Qwen3 => {
            cfg.family = DecoderFamily::Qwen3;
            cfg.qk_norm = true;
        }
        GgufArch::Gemma | GgufArch::Gemma2 | GgufArch::Gemma3 => {
            cfg.norm_unit_offset = true;
            cfg.hidden_act = Activation::GeluPytorchTanh;
            cfg.scale_embeddings = true;
            match arch {
                GgufArch::Gemma => cfg.family = DecoderFamily::Gemma,
                GgufArch::Gemma2 => {
                    cfg.family = DecoderFamily::Gemma2;
                    cfg.sandwich_norms = true;
                    cfg.query_pre_attn_scalar = Some(gemma_scalar(46));
                    cfg.attn_logit_softcapping = Some(attn_softcap.unwrap_or(50.0));
                    cfg.final_logit_softcapping = Some(final_softcap.unwrap_or(30.0));
                    cfg.sliding_window = Some(window.unwrap_or(4096));
                    // Even layers slide (llama.cpp's pattern 2, transformers' layer_types).
                    cfg.layer_types = (0..layers)
                        .map(|i| {
                            if i % 2 == 0 {
                                LayerType::SlidingAttention
                            } else {
                                LayerType::FullAttention
                            }
                        })
                        .collect();
                }
                _ => {
                    cfg.family = DecoderFamily::Gemma3Text;
                    cfg.sandwich_norms = true;
                    cfg.qk_norm = true;
                    cfg.query_pre_attn_scalar = Some(gemma_scalar(62));
                    cfg.attn_logit_softcapping = attn_softcap;
                    cfg.final_logit_softcapping = final_softcap;
                    // Without a window every layer attends fully (the converter leaves the key
                    // out when no layer slides).
                    if let Some(w) = window {
                        cfg.sliding_window = Some(w);
                        // Every sixth layer attends fully (llama.cpp's pattern 6).
                        cfg.layer_types = (0..layers)
                            .map(|i| {
                                if (i + 1) % 6 == 0 {
                                    LayerType::FullAttention
                                } else {
                                    LayerType::SlidingAttention
                                }
                            })
                            .collect();
                        // The sliding layers' RoPE: base 10,000, never scaled.
                        cfg.rope_local_theta = Some(10000.0);
                    }
                }
            }
        }
    }
    if !matches!(arch, GgufArch::Gemma2 | GgufArch::Gemma3) {
        for (key, v) in [
            ("attn_logit_softcapping", attn_softcap.is_some()),
            ("final_logit_softcapping", final_softcap.is_some()),
            ("attention.sliding_window", window.is_some()),
        ] {
            if v {
                return Err(err(format!(
                    "GGUF metadata `{}` is set, but llama.cpp's {a} models do not use it and \
                     ardpipe will not guess what it means for them",
                    k(key)
                )));
            }
        }
    }
    if arch == GgufArch::Qwen2 && has("blk.0.attn_output.bias") {
        return Err(err(
            "`blk.0.attn_output.bias` is present, but Qwen2 has biases on q/k/v only".into(),
        ));
    }
    // Name the GGUF keys in errors; validate() then repeats the checks under the HF names.
    let gguf_keys = [
        k("block_count"),
        k("embedding_length"),
        k("feed_forward_length"),
        k("attention.head_count"),
        k("attention.head_count_kv"),
        if key_len.is_some() {
            k("attention.key_length")
        } else {
            format!("{} / {}", k("embedding_length"), k("attention.head_count"))
        },
        format!("tokenizer.ggml.tokens (its length) or {}", k("vocab_size")),
    ];
    let mut dims: Vec<(&str, usize, usize)> = cfg
        .dims()
        .iter()
        .zip(&gguf_keys)
        .map(|(&(_, v, max), key)| (key.as_str(), v, max))
        .collect();
    let ctx = k("context_length");
    dims.push((&ctx, cfg.max_position_embeddings, limits::POSITIONS));
    check_dims(&dims)
        .and_then(|()| cfg.validate())
        .map_err(|e| ModelError::config(&g.path, e))?;
    Ok(cfg)
}

/// RoPE scaling from `<arch>.rope.scaling.*` and, for Llama 3.1-style files, the `rope_freqs`
/// tensor (one divisor per frequency, written by llama.cpp's converter from the Llama 3
/// scaling parameters).
fn rope_scaling(g: &GgufFile, arch: GgufArch, head_dim: usize) -> Result<Option<RopeScaling>> {
    let a = arch.name();
    let ty_key = format!("{a}.rope.scaling.type");
    let factor_key = format!("{a}.rope.scaling.factor");
    let ty = opt_str(g, &ty_key)?;
    let factor = opt_f64(g, &factor_key)?;
    let scaling = match (ty, factor) {
        (Some("none"), _) | (None, None) => None,
        // llama.cpp reads a factor without a type as linear scaling; 0 and 1 mean none.
        (Some("linear") | None, Some(f)) if f == 0.0 || f == 1.0 => None,
        (Some("linear") | None, Some(f)) => Some(RopeScaling::Linear { factor: f }),
        (Some("linear"), None) => {
            return Err(ModelError::config(
                &g.path,
                format!("GGUF metadata `{ty_key}` is linear but `{factor_key}` is missing"),
            ));
        }
        (Some(other), _) => {
            return Err(ModelError::config(
                &g.path,
                format!(
                    "GGUF metadata `{ty_key}` = {other}: this RoPE scaling is not supported \
                     from GGUF (ardpipe reads linear scaling and Llama 3's rope_freqs here; YaRN \
                     from a Hugging Face folder's config.json)"
                ),
            ));
        }
    };
    let Some(t) = g.tensor("rope_freqs.weight") else {
        return Ok(scaling);
    };
    if arch != GgufArch::Llama || scaling.is_some() {
        return Err(ModelError::config(
            &g.path,
            format!(
                "tensor `rope_freqs.weight` in a {a} file{}: ardpipe reads it only as Llama 3's \
                 frequency scaling of a llama file",
                if scaling.is_some() {
                    " with another RoPE scaling"
                } else {
                    ""
                }
            ),
        ));
    }
    let divisors = g.dequantise(t)?;
    if divisors.len() != head_dim / 2 {
        return Err(ModelError::config(
            &g.path,
            format!(
                "tensor `rope_freqs.weight` has {} values, but a {head_dim}-wide head has {} \
                 frequencies",
                divisors.len(),
                head_dim / 2
            ),
        ));
    }
    llama3_from_divisors(g, &divisors, head_dim).map(Some)
}

/// Llama 3's scaling parameters behind a `rope_freqs` vector. The converter writes
/// `1 / ((1 − s)/factor + s)` per frequency from `factor`, `low_freq_factor`,
/// `high_freq_factor` and `original_max_position_embeddings`, which the file does not keep: the
/// factor is the largest divisor, and the others are every Llama 3.x release's (1, 4, 8192, or
/// `rope.scaling.original_context_length`). The candidate is accepted only when it reproduces
/// every divisor; anything else is refused rather than approximated.
fn llama3_from_divisors(g: &GgufFile, divisors: &[f32], head_dim: usize) -> Result<RopeScaling> {
    let theta = opt_f64(g, "llama.rope.freq_base")?.unwrap_or(10000.0);
    let old_len = opt_f64(g, "llama.rope.scaling.original_context_length")?.unwrap_or(8192.0);
    let factor = divisors.iter().copied().fold(1f32, f32::max) as f64;
    let candidate = RopeScaling::Llama3 {
        factor,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: old_len,
    };
    let inv_freq: Vec<f64> = (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
        .collect();
    let scaled = candidate.apply(&inv_freq, theta);
    let worst = inv_freq
        .iter()
        .zip(&scaled)
        .zip(divisors)
        .map(|((f, s), &d)| ((f / s) / d as f64 - 1.0).abs())
        .fold(0.0, f64::max);
    // The divisors are stored as f32: a relative error of a few f32 roundings is the same vector.
    if worst > 1e-5 {
        return Err(ModelError::config(
            &g.path,
            format!(
                "tensor `rope_freqs.weight` is not Llama 3's RoPE scaling with factor {factor}, \
                 low/high frequency factors 1 and 4 and an original context of {old_len} (off by \
                 {worst:.2e} relative): ardpipe does not implement other per-frequency scalings"
            ),
        ));
    }
    Ok(candidate)
}

/// A GGUF file seen as a [`TensorSource`] with Hugging Face names, the converter's changes
/// undone: Q/K rows un-permuted (llama), norm weights `w + 1` back to `w` (Gemma).
pub struct GgufSource {
    file: GgufFile,
    arch: GgufArch,
    heads: i64,
    kv_heads: i64,
    /// (HF name, index into `file.tensors`); unknown GGUF names keep their own name.
    names: Vec<(String, usize)>,
}

impl GgufSource {
    /// `cfg` is the file's [`decoder_config`]: its family names the GGUF architecture.
    pub fn new(file: GgufFile, cfg: &LlamaConfig) -> Self {
        let arch = GgufArch::of_family(cfg.family);
        let names = file
            .tensors
            .iter()
            .enumerate()
            // rope_freqs is read into the config's RoPE scaling.
            .filter(|(_, t)| t.name != "rope_freqs.weight")
            .map(|(i, t)| (arch.hf_name(&t.name).unwrap_or_else(|| t.name.clone()), i))
            .collect();
        Self {
            file,
            arch,
            heads: cfg.num_attention_heads as i64,
            kv_heads: cfg.num_key_value_heads as i64,
            names,
        }
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, i)| *i)
    }
}

impl TensorSource for GgufSource {
    fn describe(&self) -> String {
        self.file.path.display().to_string()
    }

    fn names(&self) -> Vec<String> {
        self.names.iter().map(|(n, _)| n.clone()).collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<i64>> {
        self.index(name).map(|i| {
            self.file.tensors[i]
                .shape
                .iter()
                .map(|&d| d as i64)
                .collect()
        })
    }

    fn read(&self, name: &str) -> Result<Tensor> {
        let i = self.index(name).ok_or_else(|| {
            ModelError::Usage(format!("no tensor `{name}` in {}", self.describe()))
        })?;
        let info = &self.file.tensors[i];
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        // Dequantised straight into the tensor's storage: no second copy of the values.
        let t = Tensor::empty(&shape, (Kind::Float, Device::Cpu));
        let n = info.numel().unwrap_or(0);
        assert_eq!(t.numel(), n, "a fresh tensor holds the file's dims");
        // SAFETY: `t` is a new, contiguous CPU f32 tensor of exactly `n` values that nothing
        // else references while the slice lives.
        let out = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) };
        self.file.dequantise_into(info, out)?;
        let q_or_k = |suffix: &str| {
            if name.ends_with(&format!("self_attn.q_proj.{suffix}")) {
                Some(self.heads)
            } else if name.ends_with(&format!("self_attn.k_proj.{suffix}")) {
                Some(self.kv_heads)
            } else {
                None
            }
        };
        if self.arch.permutes_qk() {
            if let Some(n) = q_or_k("weight") {
                return Ok(unpermute(&t, n));
            }
            if let Some(n) = q_or_k("bias") {
                return Ok(unpermute(&t.unsqueeze(1), n).squeeze_dim(1));
            }
        }
        if self.arch.norms_plus_one() && name.ends_with("norm.weight") {
            return Ok(t - 1.0);
        }
        Ok(t.to_kind(Kind::Float))
    }
}
