//! Loads plugins built with ardpipe-plugin-sdk (or the C header) and checks their ABI before
//! anything else.
//!
//! ```no_run
//! let plugin = ardpipe_plugin_host::load("target/release/libfortunes_loader.so".as_ref())?;
//! println!("{} {} (ABI {})", plugin.info().name, plugin.info().version, plugin.info().abi_version);
//! for record in plugin.open_loader(br#"{"path": "fortunes/"}"#, 42)? {
//!     let record = record?;
//!     println!("{:?}: {}", record.label, record.text);
//! }
//! # Ok::<(), ardpipe_plugin_host::PluginError>(())
//! ```
//!
//! Order of checks on load: the file exists → it is a shared library → it loads → it exports
//! `ardpipe_plugin_v1` (else: another `ardpipe_plugin_vN`, reported as an ABI mismatch) → the
//! descriptor's first field is ABI 1 → its size → every other field. Each failure is a
//! [`PluginError`] naming the plugin and the fix; nothing here panics on a bad plugin.
//! Libraries stay loaded for the life of the process; loading the same file twice returns the
//! same [`Plugin`].

mod call;
mod descriptor;
mod error;
mod info;
mod library;
mod loader;
mod log;
mod metric;
mod options;
mod resolve;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub use ardpipe_plugin_sdk::abi::{ABI_VERSION, ENTRY_SYMBOL};
pub use error::{ErrorKind, PluginError};
pub use info::{Kind, OptionInfo, PluginInfo};
pub use loader::{DEFAULT_BATCH_SIZE, LoaderStream, PluginRecord};
pub use metric::{MetricInstance, Predictions};
pub use resolve::{SEARCH_PATH_ENV, library_file_names, resolve, search_path};

use descriptor::Fns;

/// A loaded plugin; lives for the rest of the process.
pub struct Plugin {
    info: PluginInfo,
    fns: Fns,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).finish()
    }
}

impl Plugin {
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Opens a loader with the pipeline block's options (a JSON object) and the run's seed. The
    /// options are first checked against the declared ones, and defaults filled in (see
    /// `options.rs`): the plugin gets only what it declares, in the declared kinds.
    pub fn open_loader(
        &'static self,
        options_json: &[u8],
        seed: u64,
    ) -> Result<LoaderStream, PluginError> {
        match self.fns {
            Fns::Loader(fns) => {
                let options = options::check(&self.info, options_json, "open")?;
                LoaderStream::open(self, fns, &options, seed)
            }
            Fns::Metric(_) => Err(self.wrong_kind(Kind::Loader)),
        }
    }

    /// Creates a metric with the pipeline block's options (a JSON object), checked and completed
    /// like a loader's.
    pub fn create_metric(
        &'static self,
        options_json: &[u8],
    ) -> Result<MetricInstance, PluginError> {
        match self.fns {
            Fns::Metric(fns) => {
                let options = options::check(&self.info, options_json, "create")?;
                MetricInstance::create(self, fns, &options)
            }
            Fns::Loader(_) => Err(self.wrong_kind(Kind::Metric)),
        }
    }

    /// An error about this plugin, named and located.
    pub fn error(&self, kind: ErrorKind) -> PluginError {
        PluginError::new(&self.info.name, &self.info.path, kind)
    }

    fn wrong_kind(&self, expected: Kind) -> PluginError {
        self.error(ErrorKind::WrongKind {
            expected,
            found: self.info.kind,
        })
    }
}

fn loaded() -> &'static Mutex<HashMap<PathBuf, &'static Plugin>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, &'static Plugin>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Loads the plugin library at `path` (once per file per process) and validates its descriptor.
pub fn load(path: &Path) -> Result<&'static Plugin, PluginError> {
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    // One lock for the whole load: two threads naming the same plugin get the same instance.
    let mut cache = loaded()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(plugin) = cache.get(&canonical) {
        return Ok(plugin);
    }
    let entry = library::open(&canonical, &label)?;
    let (host, log_context) = log::host_for(label.clone());
    // SAFETY: the entry symbol has the ABI's signature; the host table lives forever.
    let descriptor = unsafe { entry(host) };
    // SAFETY: `read` checks the pointer, version and size before reading anything else.
    let (info, fns) = unsafe { descriptor::read(descriptor, &canonical, &label) }?;
    let _ = log_context.name.set(info.name.clone());
    tracing::debug!(
        plugin = %info.name,
        version = %info.version,
        kind = %info.kind,
        path = %canonical.display(),
        "loaded plugin"
    );
    let plugin: &'static Plugin = Box::leak(Box::new(Plugin { info, fns }));
    cache.insert(canonical, plugin);
    Ok(plugin)
}

/// Loads and checks the plugin is of the `expected` kind.
pub fn load_kind(path: &Path, expected: Kind) -> Result<&'static Plugin, PluginError> {
    let plugin = load(path)?;
    if plugin.info.kind == expected {
        Ok(plugin)
    } else {
        Err(plugin.wrong_kind(expected))
    }
}
