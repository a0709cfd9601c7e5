//! The unit every loader produces: one example's text fields, its label and where it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::DataError;

/// Where a record came from, for error messages and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Shared between all records of a file, so a big dataset does not copy the path per row.
    pub file: Arc<Path>,
    /// 1-based line where the record starts.
    pub line: u64,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What a supervised (instruction or chat) example holds. Such a record's `text` is empty: the
/// model reads the rendering of these turns, and the loss covers only the answers (unless the
/// dataset says `train_on = all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turns {
    /// `prompt` then `completion`, joined as they are (TRL's prompt/completion format).
    PromptCompletion { prompt: String, completion: String },
    /// A conversation (`messages: [{role, content}]`, the TRL and OpenAI fine-tuning format),
    /// rendered with the model's chat template; every assistant turn is an answer.
    Chat(Vec<crate::chat::ChatMessage>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The text of a plain record; empty for a supervised one (see `turns`).
    pub text: String,
    /// The second text of a pair task (e.g. NLI hypothesis).
    pub text_pair: Option<String>,
    /// The label as written in the data; ids come from a [`crate::LabelVocab`].
    pub label: Option<String>,
    /// Further mapped fields, kept for plugins and reports.
    pub extra: BTreeMap<String, String>,
    /// Supervised content (prompt/completion or chat), when the dataset maps such fields.
    pub turns: Option<Turns>,
    /// The image the record is about (a question about it, or its class), resolved from the
    /// data file's folder. Read and decoded only when the record is encoded
    /// ([`crate::vision::VisionEncoder`]).
    pub image: Option<PathBuf>,
    pub origin: Origin,
}

impl Record {
    pub fn new(text: impl Into<String>, origin: Origin) -> Self {
        Self {
            text: text.into(),
            text_pair: None,
            label: None,
            extra: BTreeMap::new(),
            turns: None,
            image: None,
            origin,
        }
    }

    /// A row-level error located at this record.
    pub fn error(&self, err: DataError) -> DataError {
        err.at(&self.origin.file, self.origin.line)
    }
}

/// A stream of records. Built-in loaders implement it, and so does anything else that yields
/// records (a plugin loader adapted by the plugin host, a `Vec` in a test): the preprocessing and
/// error policy of [`crate::DatasetReader`] then apply to it alike.
pub trait RecordSource: Iterator<Item = Result<Record, DataError>> {}

impl<T: Iterator<Item = Result<Record, DataError>>> RecordSource for T {}
