//! Errors of model loading and running: each says where (file, tensor), why, and how to fix it.

use std::path::PathBuf;

use crate::report::LoadReport;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not what its name or location says (bad magic, truncated, inconsistent).
    #[error("{path}: {what}")]
    Format { path: PathBuf, what: String },
    /// A tensor type ardpipe cannot dequantise.
    #[error(
        "{path}: tensor `{tensor}` has GGUF type {ty} ({name}), which ardpipe cannot dequantise \
         (supported: F32, F16, Q8_0, Q4_1); re-quantise the model to one of those, e.g. with \
         llama.cpp's `llama-quantize --allow-requantize IN OUT Q8_0`"
    )]
    UnsupportedTensorType {
        path: PathBuf,
        tensor: String,
        ty: u32,
        name: &'static str,
    },
    /// config.json or GGUF metadata that does not describe a model ardpipe can build.
    #[error("{path}: {what}")]
    Config { path: PathBuf, what: String },
    /// Weights that do not fit the architecture.
    #[error("{0}")]
    Report(Box<LoadReport>),
    #[error("{0}")]
    Tokenizer(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A request the loaded model cannot serve (wrong head, bad input).
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            what: what.into(),
        }
    }
    pub(crate) fn config(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            what: what.into(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
