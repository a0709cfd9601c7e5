//! A Llama-family GGUF as a Hugging Face checkpoint: config from the metadata, tensors under
//! their HF names, Q/K rows un-permuted, and the tokenizer's vocabulary from the metadata.

use std::path::Path;

use tch::{Kind, Tensor};

use super::container::{GgufFile, Value};
use crate::arch::config::{LlamaConfig, check_dims, limits};
use crate::error::{ModelError, Result};
use crate::weights::TensorSource;

/// GGUF block tensor name → HF suffix under `model.layers.N.`.
const BLOCK_NAMES: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// Map a GGUF tensor name to its Hugging Face name (None for names ardpipe does not know).
pub fn hf_name(gguf: &str) -> Option<String> {
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
    let hf = BLOCK_NAMES.iter().find(|(g, _)| *g == base)?.1;
    Some(format!("model.layers.{layer}.{hf}.{param}"))
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

fn meta_u64(g: &GgufFile, key: &str) -> Result<usize> {
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
fn opt_u64(g: &GgufFile, key: &str) -> Result<Option<u64>> {
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
fn opt_f64(g: &GgufFile, key: &str) -> Result<Option<f64>> {
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

/// A token id key: an integer that fits a u32 (ids are indices into the vocabulary).
fn opt_token_id(g: &GgufFile, key: &str) -> Result<Option<u32>> {
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

/// The architecture facts from GGUF metadata (no tensor data is read).
pub fn llama_config(g: &GgufFile) -> Result<LlamaConfig> {
    let arch = g
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("");
    if arch != "llama" {
        return Err(ModelError::config(
            &g.path,
            format!(
                "GGUF architecture `{arch}` is not supported: ardpipe reads Llama-family GGUF files \
                 (general.architecture = llama); use a Hugging Face folder for other models"
            ),
        ));
    }
    let k = |s: &str| format!("llama.{s}");
    let heads = meta_u64(g, &k("attention.head_count"))?;
    let hidden = meta_u64(g, &k("embedding_length"))?;
    let kv = opt_u64(g, &k("attention.head_count_kv"))?
        .map(|v| v as usize)
        .unwrap_or(heads);
    let vocab = match g.get("tokenizer.ggml.tokens").and_then(Value::as_array) {
        Some(t) => t.len(),
        None => meta_u64(g, &k("vocab_size"))?,
    };
    let head_dim = opt_u64(g, &k("rope.dimension_count"))?
        .map(|v| v as usize)
        .unwrap_or(hidden.checked_div(heads).unwrap_or(0));
    let eos = opt_token_id(g, "tokenizer.ggml.eos_token_id")?
        .map(|v| vec![v as i64])
        .unwrap_or_default();
    let cfg = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: meta_u64(g, &k("feed_forward_length"))?,
        num_hidden_layers: meta_u64(g, &k("block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        head_dim,
        rms_norm_eps: opt_f64(g, &k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        rope_theta: opt_f64(g, &k("rope.freq_base"))?.unwrap_or(10000.0),
        rope_scaling: None,
        max_position_embeddings: opt_u64(g, &k("context_length"))?.unwrap_or(2048) as usize,
        // Without `output.weight` the LM head is the token embedding.
        tie_word_embeddings: g.tensor("output.weight").is_none(),
        attention_bias: g.tensor("blk.0.attn_q.bias").is_some(),
        mlp_bias: g.tensor("blk.0.ffn_up.bias").is_some(),
        bos_token_id: opt_token_id(g, "tokenizer.ggml.bos_token_id")?.map(|v| v as i64),
        eos_token_ids: eos,
        ..Default::default()
    };
    // Name the GGUF keys in errors; validate() then repeats the checks under the HF names.
    let gguf_keys = [
        "llama.block_count",
        "llama.embedding_length",
        "llama.feed_forward_length",
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.rope.dimension_count",
        "tokenizer.ggml.tokens (its length) or llama.vocab_size",
    ];
    let mut dims: Vec<(&str, usize, usize)> = cfg
        .dims()
        .iter()
        .zip(gguf_keys)
        .map(|(&(_, v, max), key)| (key, v, max))
        .collect();
    dims.push((
        "llama.context_length",
        cfg.max_position_embeddings,
        limits::POSITIONS,
    ));
    check_dims(&dims)
        .and_then(|()| cfg.validate())
        .map_err(|e| ModelError::config(&g.path, e))?;
    Ok(cfg)
}

/// A GGUF file seen as a [`TensorSource`] with Hugging Face names.
pub struct GgufSource {
    file: GgufFile,
    heads: i64,
    kv_heads: i64,
    /// (HF name, index into `file.tensors`); unknown GGUF names keep their own name.
    names: Vec<(String, usize)>,
}

impl GgufSource {
    pub fn new(file: GgufFile, cfg: &LlamaConfig) -> Self {
        let names = file
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (hf_name(&t.name).unwrap_or_else(|| t.name.clone()), i))
            .collect();
        Self {
            file,
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
        let values = self.file.dequantise(info)?;
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::from_slice(&values).reshape(&shape);
        Ok(if name.ends_with("self_attn.q_proj.weight") {
            unpermute(&t, self.heads)
        } else if name.ends_with("self_attn.k_proj.weight") {
            unpermute(&t, self.kv_heads)
        } else if name.ends_with("self_attn.q_proj.bias") || name.ends_with("self_attn.k_proj.bias")
        {
            let n = if name.contains("q_proj") {
                self.heads
            } else {
                self.kv_heads
            };
            unpermute(&t.unsqueeze(1), n).squeeze_dim(1)
        } else {
            t.to_kind(Kind::Float)
        })
    }
}

/// The tokenizer as the GGUF metadata describes it (`tokenizer.ggml.*`).
#[derive(Debug, Clone)]
pub struct GgufTokenizerMeta {
    /// `gpt2` (byte-level BPE) is what ardpipe rebuilds.
    pub model: String,
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub merges: Vec<String>,
    pub token_types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
    /// `general.architecture` (picks the SentencePiece flavour, e.g. Gemma's).
    pub architecture: String,
    /// `tokenizer.ggml.scores` (SentencePiece vocabularies); empty when absent.
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.add_bos_token` as written (None when absent); `add_bos` reads absent as false.
    pub add_bos_written: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: bool,
    /// `tokenizer.ggml.add_space_prefix` (None when absent).
    pub add_space_prefix: Option<bool>,
}

pub fn tokenizer_meta(g: &GgufFile) -> Result<GgufTokenizerMeta> {
    let path: &Path = &g.path;
    let strings = |key: &str| -> Result<Vec<String>> {
        let arr = g.get(key).and_then(Value::as_array).ok_or_else(|| {
            ModelError::config(
                path,
                format!("GGUF metadata `{key}` is missing: no tokenizer inside"),
            )
        })?;
        arr.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ModelError::config(path, format!("`{key}` holds a non-string")))
            })
            .collect()
    };
    let id = |key: &str| opt_token_id(g, key);
    let flag = |key: &str| match g.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    };
    let model = g
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = if g.get("tokenizer.ggml.merges").is_some() {
        strings("tokenizer.ggml.merges")?
    } else {
        vec![]
    };
    let token_types = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .map(|v| match v {
                Value::I32(x) => *x,
                other => other.as_u64().map(|x| x as i32).unwrap_or(1),
            })
            .collect(),
        None => vec![1; tokens.len()],
    };
    Ok(GgufTokenizerMeta {
        model,
        pre: g
            .get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .map(str::to_string),
        tokens,
        merges,
        token_types,
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        pad: id("tokenizer.ggml.padding_token_id")?,
        add_bos: matches!(
            g.get("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(true))
        ),
        chat_template: g
            .get("tokenizer.chat_template")
            .and_then(Value::as_str)
            .map(str::to_string),
        architecture: g
            .get("general.architecture")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        scores: match g.get("tokenizer.ggml.scores") {
            None => vec![],
            Some(v) => v
                .as_array()
                .ok_or_else(|| ModelError::config(path, "`tokenizer.ggml.scores` is not an array"))?
                .iter()
                .map(|x| {
                    x.as_f64().map(|f| f as f32).ok_or_else(|| {
                        ModelError::config(path, "`tokenizer.ggml.scores` holds a non-number")
                    })
                })
                .collect::<Result<_>>()?,
        },
        add_bos_written: flag("tokenizer.ggml.add_bos_token"),
        add_eos: flag("tokenizer.ggml.add_eos_token") == Some(true),
        add_space_prefix: flag("tokenizer.ggml.add_space_prefix"),
    })
}
