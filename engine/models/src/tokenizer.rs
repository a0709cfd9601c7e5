//! The tokenizer that belongs to a model: `tokenizer.json` of a Hugging Face folder, or the one
//! rebuilt from a GGUF file's metadata (byte-level BPE or SentencePiece); plus the model's own
//! chat template (rendered by `ardpipe_data::chat`).

use std::collections::BTreeMap;
use std::path::Path;

pub use ardpipe_data::chat::{ChatMessage, ChatParts, ChatTemplate};
use ardpipe_data::{BpeSpec, SpmFlavour, SpmSpec, TextTokenizer};

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::gguf::llama::{GgufTokenizerMeta, tokenizer_meta};
use crate::model::ModelLocation;

/// A model's tokenizer and its chat template (when it has one).
pub struct ModelTokenizer {
    pub tokenizer: TextTokenizer,
    pub chat: Option<ChatTemplate>,
}

impl ModelTokenizer {
    /// Render chats with the Jinja `text` (read from `source`) instead of the model's own
    /// template. It sees the special tokens the model's template saw, else the tokenizer's
    /// `bos_token`, `eos_token` and `pad_token`.
    pub fn set_chat_template(&mut self, text: String, source: String) -> Result<()> {
        let special = match &self.chat {
            Some(t) => t.special_tokens().clone(),
            None => {
                let t = &self.tokenizer;
                [
                    ("bos_token", t.bos_id()),
                    ("eos_token", t.eos_id()),
                    ("pad_token", t.pad_id()),
                ]
                .into_iter()
                .filter_map(|(k, id)| Some((k.to_string(), t.id_to_token(id?)?)))
                .collect()
            }
        };
        self.chat = Some(ChatTemplate::new(text, source, special).map_err(tok_err)?);
        Ok(())
    }
}

fn tok_err(e: ardpipe_data::DataError) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// The SentencePiece flavours transformers builds, by `general.architecture`.
const GEMMA_ARCHES: &[&str] = &["gemma", "gemma2", "gemma3"];
/// Architectures whose SentencePiece vocabulary transformers builds another way (ardpipe does
/// not rebuild those).
const OTHER_SPM_ARCHES: &[&str] = &["phi3", "gemma4", "gemma3n", "t5", "t5encoder"];

pub fn load_tokenizer(location: &ModelLocation) -> Result<ModelTokenizer> {
    match location {
        ModelLocation::Gguf(p) => {
            let g = GgufFile::open(p)?;
            let m = tokenizer_meta(&g)?;
            gguf_tokenizer(p, m)
        }
        ModelLocation::HfFolder(dir) => {
            let tokenizer =
                TextTokenizer::from_file(&dir.join("tokenizer.json")).map_err(tok_err)?;
            let chat = hf_chat_template(dir)?;
            Ok(ModelTokenizer { tokenizer, chat })
        }
    }
}

fn gguf_tokenizer(p: &Path, m: GgufTokenizerMeta) -> Result<ModelTokenizer> {
    let name_of = |id: Option<u32>| id.and_then(|i| m.tokens.get(i as usize)).cloned();
    let mut special = BTreeMap::new();
    for (key, id) in [
        ("bos_token", m.bos),
        ("eos_token", m.eos),
        ("unk_token", m.unk),
        ("pad_token", m.pad),
    ] {
        if let Some(t) = name_of(id) {
            special.insert(key.to_string(), t);
        }
    }
    let add_bos = m.adds_bos();
    let tokenizer = match m.model.as_str() {
        "gpt2" => TextTokenizer::from_bpe(BpeSpec {
            pre: m.pre.clone().unwrap_or_else(|| "gpt2".into()),
            tokens: m.tokens,
            merges: m.merges,
            token_types: m.token_types,
            bos: m.bos,
            eos: m.eos,
            unk: m.unk,
            pad: m.pad,
            add_bos,
            add_eos: m.add_eos,
        }),
        "llama" => {
            let arch = m.architecture.as_str();
            if OTHER_SPM_ARCHES.contains(&arch) {
                return Err(ModelError::config(
                    p,
                    format!(
                        "a SentencePiece tokenizer of architecture `{arch}` is not rebuilt from \
                         GGUF by ardpipe (supported: the Llama flavour, e.g. llama or mistral, and \
                         {}); use the model's Hugging Face folder with its tokenizer.json",
                        GEMMA_ARCHES.join(", ")
                    ),
                ));
            }
            let flavour = if GEMMA_ARCHES.contains(&arch) {
                if m.add_space_prefix == Some(true) {
                    return Err(ModelError::config(
                        p,
                        "tokenizer.ggml.add_space_prefix is true in a Gemma file: Gemma's \
                         tokenizer adds no dummy prefix and ardpipe will not guess which is meant; \
                         re-convert the model",
                    ));
                }
                SpmFlavour::Gemma
            } else {
                if m.add_space_prefix == Some(false) {
                    return Err(ModelError::config(
                        p,
                        "tokenizer.ggml.add_space_prefix is false: ardpipe rebuilds SentencePiece \
                         vocabularies of the Llama flavour with the dummy prefix (a `▁` before the \
                         text), as transformers does; use the model's Hugging Face folder with its \
                         tokenizer.json",
                    ));
                }
                SpmFlavour::Llama
            };
            TextTokenizer::from_spm(SpmSpec {
                tokens: m.tokens,
                scores: m.scores,
                merges: m.merges,
                token_types: m.token_types,
                bos: m.bos,
                eos: m.eos,
                unk: m.unk,
                pad: m.pad,
                add_bos,
                add_eos: m.add_eos,
                flavour,
            })
        }
        other => {
            return Err(ModelError::config(
                p,
                format!(
                    "tokenizer.ggml.model is `{other}`: ardpipe rebuilds byte-level BPE (`gpt2`) \
                     and SentencePiece (`llama`) tokenizers from GGUF; use the model's Hugging \
                     Face folder with its tokenizer.json instead"
                ),
            ));
        }
    }
    .map_err(|e| ModelError::config(p, format!("tokenizer: {e}")))?;
    let chat = match m.chat_template {
        Some(t) => Some(
            ChatTemplate::new(
                t,
                format!("GGUF `tokenizer.chat_template` of {}", p.display()),
                special,
            )
            .map_err(tok_err)?,
        ),
        None => None,
    };
    Ok(ModelTokenizer { tokenizer, chat })
}

/// The chat template of a Hugging Face folder: `chat_template.jinja` (what transformers 5 saves),
/// else `tokenizer_config.json`'s `chat_template`, a string or a list of named templates (the one
/// named `default`). Its special tokens come from `tokenizer_config.json`.
fn hf_chat_template(dir: &Path) -> Result<Option<ChatTemplate>> {
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg: Option<serde_json::Value> = match std::fs::read_to_string(&cfg_path) {
        Ok(s) => Some(
            serde_json::from_str(&s)
                .map_err(|e| ModelError::format(&cfg_path, format!("not valid JSON: {e}")))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ModelError::io(&cfg_path, e)),
    };
    let mut special = BTreeMap::new();
    if let Some(cfg) = &cfg {
        for key in [
            "bos_token",
            "eos_token",
            "unk_token",
            "sep_token",
            "pad_token",
            "cls_token",
            "mask_token",
        ] {
            let v = cfg.get(key);
            if let Some(s) = v.and_then(|v| {
                v.as_str()
                    .or_else(|| v.get("content").and_then(|c| c.as_str()))
            }) {
                special.insert(key.to_string(), s.to_string());
            }
        }
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|e| ModelError::io(&jinja, e))?;
        return ChatTemplate::new(text, jinja.display().to_string(), special)
            .map(Some)
            .map_err(tok_err);
    }
    let Some(t) = cfg.as_ref().and_then(|c| c.get("chat_template")) else {
        return Ok(None);
    };
    let source = format!("`chat_template` of {}", cfg_path.display());
    let text = match t {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(list) => {
            let named: Vec<(&str, &str)> = list
                .iter()
                .filter_map(|e| Some((e.get("name")?.as_str()?, e.get("template")?.as_str()?)))
                .collect();
            match named.iter().find(|(n, _)| *n == "default") {
                Some((_, t)) => t.to_string(),
                None => {
                    return Err(ModelError::config(
                        &cfg_path,
                        format!(
                            "chat_template lists templates named {:?} but none named `default`, \
                             the one a plain chat uses",
                            named.iter().map(|(n, _)| *n).collect::<Vec<_>>()
                        ),
                    ));
                }
            }
        }
        serde_json::Value::Null => return Ok(None),
        _ => {
            return Err(ModelError::config(
                &cfg_path,
                "chat_template is neither a string nor a list of {name, template}",
            ));
        }
    };
    ChatTemplate::new(text, source, special)
        .map(Some)
        .map_err(tok_err)
}
