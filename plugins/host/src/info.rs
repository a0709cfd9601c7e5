//! What a plugin says about itself, copied out of its descriptor into owned Rust values.

use std::fmt;
use std::path::PathBuf;

/// The two kinds of plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Loader,
    Metric,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Loader => "loader",
            Kind::Metric => "metric",
        })
    }
}

/// One option the plugin accepts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OptionInfo {
    pub key: String,
    pub kind: String,
    pub required: bool,
    pub default: Option<String>,
    pub help: String,
}

/// Name, version, ABI, kind, capabilities and options of a loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub abi_version: u32,
    pub kind: Kind,
    pub capabilities: Vec<String>,
    pub options: Vec<OptionInfo>,
    /// The canonical path of the library that was loaded.
    pub path: PathBuf,
}

impl PluginInfo {
    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}
