//! Every way a plugin can fail, each naming the plugin and the fix.

use std::fmt;
use std::path::PathBuf;

use crate::info::Kind;

/// A plugin failure, as a value the CLI renders (and, when `key` is set, points at the pipeline's
/// span of that option).
#[derive(Debug, Clone)]
pub struct PluginError {
    /// The plugin's own name when it got far enough to say it, else the file name.
    pub plugin: String,
    pub path: PathBuf,
    pub kind: ErrorKind,
    /// The option at fault, when the plugin named one.
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// No file at the path.
    NotFound,
    /// Looked up by name, found in no directory of the search path.
    NotInSearchPath { searched: Vec<PathBuf> },
    /// The file is not a shared library at all (a text file, a directory, …).
    NotSharedLibrary { detail: String },
    /// A shared library the dynamic loader refused (missing dependency, wrong architecture, …).
    LoadFailed { detail: String },
    /// A shared library without the entry symbol: not an ardpipe plugin, or built by an SDK older than ABI 1.
    NoEntrySymbol,
    /// The plugin speaks another ABI version than this ardpipe.
    AbiMismatch { plugin_abi: u32, host_abi: u32 },
    /// The descriptor breaks the ABI's rules (null, too small, bad strings, missing functions).
    BadDescriptor { detail: String },
    /// A loader where a metric was expected, or the reverse.
    WrongKind { expected: Kind, found: Kind },
    /// The plugin returned an error from `during` (e.g. `open`).
    Failed {
        during: &'static str,
        message: String,
    },
    /// ardpipe refused an option (the error's `key`) before calling `during`: not one the plugin
    /// declares, a required one missing, or a value not of the declared kind.
    BadOption {
        during: &'static str,
        /// What is wrong, then the declared options (`key (kind, required, default …)`).
        detail: String,
    },
    /// The plugin panicked in `during`; the SDK caught it. The handle is not used again.
    Panicked {
        during: &'static str,
        message: String,
    },
    /// The plugin returned data that breaks the ABI (non-UTF-8 text, null pointers, …).
    BadOutput {
        during: &'static str,
        detail: String,
    },
    /// ardpipe itself passed inconsistent input (a shape that does not match its buffer).
    InvalidInput {
        during: &'static str,
        detail: String,
    },
    /// Used again after an earlier panic or failure made it unusable.
    Unusable { during: &'static str },
}

impl PluginError {
    pub(crate) fn new(
        plugin: impl Into<String>,
        path: impl Into<PathBuf>,
        kind: ErrorKind,
    ) -> Self {
        PluginError {
            plugin: plugin.into(),
            path: path.into(),
            kind,
            key: None,
        }
    }

    /// A stable code per kind (`ardpipe::plugin::abi_mismatch`, …) for docs and tests.
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::NotFound => "ardpipe::plugin::not_found",
            ErrorKind::NotInSearchPath { .. } => "ardpipe::plugin::not_in_search_path",
            ErrorKind::NotSharedLibrary { .. } => "ardpipe::plugin::not_a_library",
            ErrorKind::LoadFailed { .. } => "ardpipe::plugin::load_failed",
            ErrorKind::NoEntrySymbol => "ardpipe::plugin::no_entry_symbol",
            ErrorKind::AbiMismatch { .. } => "ardpipe::plugin::abi_mismatch",
            ErrorKind::BadDescriptor { .. } => "ardpipe::plugin::bad_descriptor",
            ErrorKind::WrongKind { .. } => "ardpipe::plugin::wrong_kind",
            ErrorKind::Failed { .. } => "ardpipe::plugin::error",
            ErrorKind::BadOption { .. } => "ardpipe::plugin::bad_option",
            ErrorKind::Panicked { .. } => "ardpipe::plugin::panic",
            ErrorKind::BadOutput { .. } => "ardpipe::plugin::bad_output",
            ErrorKind::InvalidInput { .. } => "ardpipe::plugin::invalid_input",
            ErrorKind::Unusable { .. } => "ardpipe::plugin::unusable",
        }
    }

    /// How to fix it.
    pub fn help(&self) -> String {
        let path = self.path.display();
        match &self.kind {
            ErrorKind::NotFound => "check the `library` of the pipeline's plugin block (relative \
                 paths are resolved from the pipeline file's folder), or build the plugin first \
                 (`cargo build --release` puts it in target/release/lib<name>.so; ardpipe's example \
                 plugins are built by `cargo build --workspace`)"
                .to_string(),
            ErrorKind::NotInSearchPath { .. } => format!(
                "give the pipeline's plugin block a `library`, or copy lib{0}.so into one of the searched \
                 folders (set {1} to add folders, separated by `:`)",
                self.plugin,
                crate::resolve::SEARCH_PATH_ENV
            ),
            ErrorKind::NotSharedLibrary { .. } => format!(
                "point at the built library (lib<name>.so on Linux, lib<name>.dylib on macOS, \
                 <name>.dll on Windows), not at {path}; a Rust plugin needs \
                 `crate-type = [\"cdylib\"]` under [lib]"
            ),
            ErrorKind::LoadFailed { .. } => "the dynamic loader's message above names the cause: \
                 install the missing library, or rebuild the plugin for this machine"
                .to_string(),
            ErrorKind::NoEntrySymbol => format!(
                "{path} exports no `{sym}`: it was built for another tool, without \
                 `ardpipe_plugin_sdk::export_plugin!(...)`, or by an SDK older than ABI 1 — add the \
                 macro (or, in C, define `{sym}`) and rebuild; `nm -D {path} | grep ardpipe` shows what it exports",
                sym = crate::ENTRY_SYMBOL
            ),
            ErrorKind::AbiMismatch {
                plugin_abi,
                host_abi,
            } => {
                if plugin_abi > host_abi {
                    format!(
                        "the plugin was built with a newer SDK (ABI {plugin_abi}) than this ardpipe \
                         understands (ABI {host_abi}): upgrade ardpipe, or rebuild the plugin against \
                         ardpipe-plugin-sdk for ABI {host_abi}"
                    )
                } else {
                    format!(
                        "the plugin was built with an older SDK (ABI {plugin_abi}): rebuild it against \
                         the ardpipe-plugin-sdk that ships with this ardpipe (ABI {host_abi})"
                    )
                }
            }
            ErrorKind::BadDescriptor { .. } => {
                "the plugin's descriptor breaks the ABI: rebuild it \
                 with the SDK's `export_plugin!` macro, or compare a C plugin with \
                 include/ardpipe_plugin.h"
                    .to_string()
            }
            ErrorKind::WrongKind { expected, .. } => format!(
                "use this plugin where a {found} is expected, or name a {expected} plugin here",
                found = match expected {
                    Kind::Loader => Kind::Metric,
                    Kind::Metric => Kind::Loader,
                }
            ),
            ErrorKind::Failed { .. } | ErrorKind::BadOption { .. } if self.key.is_some() => format!(
                "fix the option where the pipeline uses the plugin (`plugin({}, key = value)`); \
                 `ardpipe plugin inspect {path}` lists the options it accepts",
                self.plugin
            ),
            ErrorKind::Failed { .. } | ErrorKind::BadOption { .. } => {
                "the plugin's message says what is wrong; fix its input or options".to_string()
            }
            ErrorKind::Panicked { .. } => format!(
                "this is a bug in the plugin `{}`: ardpipe caught the panic and stopped using it; \
                 report it to the plugin's author with the message above",
                self.plugin
            ),
            ErrorKind::BadOutput { .. } => format!(
                "this is a bug in the plugin `{}`: it returned data the ABI does not allow",
                self.plugin
            ),
            ErrorKind::InvalidInput { .. } => {
                "this is a bug in ardpipe, not in the plugin: please \
                 report it with the message above"
                    .to_string()
            }
            ErrorKind::Unusable { .. } => {
                "open the plugin again; an instance that failed or panicked is not reused"
                    .to_string()
            }
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, path) = (&self.plugin, self.path.display());
        match &self.kind {
            ErrorKind::NotFound => write!(f, "plugin `{name}`: no file at {path}"),
            ErrorKind::NotInSearchPath { searched } => {
                write!(f, "plugin `{name}`: no library named like it in ")?;
                if searched.is_empty() {
                    f.write_str("the plugin search path (it is empty)")
                } else {
                    let dirs: Vec<String> =
                        searched.iter().map(|d| d.display().to_string()).collect();
                    write!(f, "the plugin search path ({})", dirs.join(", "))
                }
            }
            ErrorKind::NotSharedLibrary { detail } => {
                write!(
                    f,
                    "plugin `{name}`: {path} is not a shared library ({detail})"
                )
            }
            ErrorKind::LoadFailed { detail } => {
                write!(f, "plugin `{name}`: {path} could not be loaded: {detail}")
            }
            ErrorKind::NoEntrySymbol => write!(
                f,
                "plugin `{name}`: {path} is a shared library but not an ardpipe plugin (no `{}` symbol)",
                crate::ENTRY_SYMBOL
            ),
            ErrorKind::AbiMismatch {
                plugin_abi,
                host_abi,
            } => write!(
                f,
                "plugin `{name}` ({path}) uses plugin ABI version {plugin_abi}, but this ardpipe uses ABI version {host_abi}"
            ),
            ErrorKind::BadDescriptor { detail } => {
                write!(
                    f,
                    "plugin `{name}` ({path}) has an invalid descriptor: {detail}"
                )
            }
            ErrorKind::WrongKind { expected, found } => write!(
                f,
                "plugin `{name}` is a {found} plugin, but a {expected} plugin is needed here"
            ),
            ErrorKind::Failed { during, message } => match &self.key {
                Some(key) => write!(
                    f,
                    "plugin `{name}` refused option `{key}` in {during}: {message}"
                ),
                None => write!(f, "plugin `{name}` failed in {during}: {message}"),
            },
            ErrorKind::BadOption { during, detail } => {
                let key = self.key.as_deref().unwrap_or("?");
                write!(
                    f,
                    "plugin `{name}` refused option `{key}` in {during}: {detail}"
                )
            }
            ErrorKind::Panicked { during, message } => {
                write!(f, "plugin `{name}` panicked in {during}: {message}")
            }
            ErrorKind::BadOutput { during, detail } => {
                write!(
                    f,
                    "plugin `{name}` returned invalid data from {during}: {detail}"
                )
            }
            ErrorKind::InvalidInput { during, detail } => {
                write!(
                    f,
                    "ardpipe passed plugin `{name}` invalid input in {during}: {detail}"
                )
            }
            ErrorKind::Unusable { during } => write!(
                f,
                "plugin `{name}`: {during} called on an instance that already failed or panicked"
            ),
        }
    }
}

impl std::error::Error for PluginError {}

impl miette::Diagnostic for PluginError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(PluginError::code(self)))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(PluginError::help(self)))
    }
}
