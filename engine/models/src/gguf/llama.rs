//! The tokenizer a GGUF file carries (`tokenizer.ggml.*`). The model itself (config and
//! tensors) is mapped per architecture in [`super::arch`].

use std::path::Path;

use super::arch::opt_token_id;
use super::container::{GgufFile, Value};
use crate::error::{ModelError, Result};

/// The decoder mapping, under the names model.rs has always imported from here.
pub use super::arch::{
    GgufSource, decoder_config as llama_config, hf_name_llama as hf_name, unpermute,
};

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
    pub chat_template: Option<String>,
    /// `general.architecture` (picks the SentencePiece flavour, e.g. Gemma's).
    pub architecture: String,
    /// `tokenizer.ggml.scores` (SentencePiece vocabularies); empty when absent.
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.add_bos_token` as written (None when absent); [`Self::adds_bos`] applies
    /// the default.
    pub add_bos_written: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: bool,
    /// `tokenizer.ggml.add_space_prefix` (None when absent).
    pub add_space_prefix: Option<bool>,
}

impl GgufTokenizerMeta {
    /// Whether encoding puts BOS first: the file's `tokenizer.ggml.add_bos_token`, else the
    /// default of its tokenizer model (SentencePiece files add BOS, as llama.cpp and
    /// transformers read them; byte-level BPE files do not).
    pub fn adds_bos(&self) -> bool {
        self.add_bos_written.unwrap_or(self.model == "llama")
    }
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
