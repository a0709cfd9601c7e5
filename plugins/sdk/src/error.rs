//! The error a plugin returns: a message for the user, and the option key when an option is at fault.

use std::fmt;

/// Returned by a plugin's `open`, `next_batch`, `create`, `update` or `finish`; the host shows it
/// with the plugin's name (and, for option errors, against the pipeline's span of that key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub message: String,
    /// The option at fault, e.g. `path`; `None` for errors about data or state.
    pub key: Option<String>,
}

impl PluginError {
    pub fn new(message: impl Into<String>) -> Self {
        PluginError {
            message: message.into(),
            key: None,
        }
    }

    /// An error about one option; say what is wrong and how to fix it in `message`.
    pub fn option(key: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError {
            message: message.into(),
            key: Some(key.into()),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "option `{key}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PluginError {}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        PluginError::new(e.to_string())
    }
}
