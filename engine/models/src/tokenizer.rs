//! The tokenizer that belongs to a model: `tokenizer.json` of a Hugging Face folder, or the
//! byte-level BPE rebuilt from a GGUF file's metadata; plus the chat template.

use ardpipe_data::{BpeSpec, TextTokenizer};

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::gguf::llama::tokenizer_meta;
use crate::model::ModelLocation;

/// How a conversation turns into a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n`, then `<|im_start|>assistant\n` (SmolLM2, Qwen…).
    ChatMl,
}

impl ChatTemplate {
    /// Recognise a Jinja chat template by the markers it emits. ardpipe does not run Jinja; it
    /// knows the few templates its example models use.
    pub fn recognise(jinja: &str) -> Option<Self> {
        (jinja.contains("<|im_start|>") && jinja.contains("<|im_end|>")).then_some(Self::ChatMl)
    }

    /// A single user turn, ready for the assistant's reply.
    pub fn user_prompt(self, user: &str) -> String {
        match self {
            Self::ChatMl => format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"),
        }
    }

    /// The token text that ends the assistant's turn.
    pub fn end_of_turn(self) -> &'static str {
        match self {
            Self::ChatMl => "<|im_end|>",
        }
    }
}

/// A model's tokenizer and chat template (when it has one ardpipe knows).
pub struct ModelTokenizer {
    pub tokenizer: TextTokenizer,
    pub chat: Option<ChatTemplate>,
}

fn tok_err(e: ardpipe_data::DataError) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

pub fn load_tokenizer(location: &ModelLocation) -> Result<ModelTokenizer> {
    match location {
        ModelLocation::Gguf(p) => {
            let g = GgufFile::open(p)?;
            let m = tokenizer_meta(&g)?;
            if m.model != "gpt2" {
                return Err(ModelError::config(
                    p,
                    format!(
                        "tokenizer.ggml.model is `{}`: ardpipe rebuilds byte-level BPE (`gpt2`) tokenizers \
                         from GGUF; use the model's Hugging Face folder with its tokenizer.json instead",
                        m.model
                    ),
                ));
            }
            let chat = m.chat_template.as_deref().and_then(ChatTemplate::recognise);
            let tokenizer = TextTokenizer::from_bpe(BpeSpec {
                tokens: m.tokens,
                merges: m.merges,
                token_types: m.token_types,
                bos: m.bos,
                eos: m.eos,
                unk: m.unk,
                pad: m.pad,
                pre: m.pre.unwrap_or_else(|| "gpt2".into()),
                add_bos: m.add_bos,
            })
            .map_err(tok_err)?;
            Ok(ModelTokenizer { tokenizer, chat })
        }
        ModelLocation::HfFolder(dir) => {
            let tokenizer =
                TextTokenizer::from_file(&dir.join("tokenizer.json")).map_err(tok_err)?;
            let chat = std::fs::read_to_string(dir.join("tokenizer_config.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|v| {
                    v.get("chat_template")
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                })
                .as_deref()
                .and_then(ChatTemplate::recognise);
            Ok(ModelTokenizer { tokenizer, chat })
        }
    }
}
