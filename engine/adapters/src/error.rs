//! Errors of the adapter side: each says where (module or tensor), why, and how to fix it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum AdapterError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid adapter setting `{field}`: {why} (fix: {fix})")]
    Config {
        field: String,
        why: String,
        fix: String,
    },
    /// The linear an adapter is attached to does not have the structure the method needs.
    #[error("cannot adapt `{module}`: {why} (fix: {fix})")]
    Module {
        module: String,
        why: String,
        fix: String,
    },
    /// Saved state (checkpoint tensors) does not fit what is being restored.
    #[error("cannot restore `{name}`: {why}")]
    State { name: String, why: String },
    /// The method does not support the requested operation.
    #[error("`{module}`: {what} is not supported by the {method} adapter")]
    Unsupported {
        module: String,
        method: String,
        what: String,
    },
    #[error("libtorch error in `{context}`: {source}")]
    Torch {
        context: String,
        #[source]
        source: tch::TchError,
    },
}

pub type Result<T> = std::result::Result<T, AdapterError>;

pub(crate) fn config_err(
    field: &str,
    why: impl Into<String>,
    fix: impl Into<String>,
) -> AdapterError {
    AdapterError::Config {
        field: field.to_string(),
        why: why.into(),
        fix: fix.into(),
    }
}

pub(crate) fn module_err(
    module: &str,
    why: impl Into<String>,
    fix: impl Into<String>,
) -> AdapterError {
    AdapterError::Module {
        module: module.to_string(),
        why: why.into(),
        fix: fix.into(),
    }
}

pub(crate) fn state_err(name: &str, why: impl Into<String>) -> AdapterError {
    AdapterError::State {
        name: name.to_string(),
        why: why.into(),
    }
}
