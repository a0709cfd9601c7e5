//! The ardpipe plugin SDK: write a data loader or a metric as ordinary Rust, export it over a
//! stable C ABI, build it as a `cdylib`, and name it in a pipeline. No libtorch, no ardpipe source tree.
//!
//! ```no_run
//! use ardpipe_plugin_sdk::{Describe, Loader, OptionSpec, Options, PluginError, Record};
//!
//! pub struct Numbers { next: u64, end: u64 }
//!
//! impl Describe for Numbers {
//!     const NAME: &'static str = "numbers";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     const OPTIONS: &'static [OptionSpec] =
//!         &[OptionSpec::required("count", "integer", "how many records")];
//! }
//!
//! impl Loader for Numbers {
//!     fn open(options: &Options, _seed: u64) -> Result<Self, PluginError> {
//!         Ok(Numbers { next: 0, end: options.u64("count")?.unwrap_or(0) })
//!     }
//!     fn next_batch(&mut self, max: usize) -> Result<Vec<Record>, PluginError> {
//!         let stop = (self.next + max as u64).min(self.end);
//!         let batch = (self.next..stop).map(|i| Record::new(i.to_string())).collect();
//!         self.next = stop;
//!         Ok(batch)
//!     }
//! }
//!
//! ardpipe_plugin_sdk::export_plugin!(loader = Numbers);
//! ```
//!
//! What the macro guarantees: one entry symbol, [`abi::ENTRY_SYMBOL`], returning a descriptor whose
//! first fields are the ABI version and struct size; every exported function catches panics and
//! returns them (and your [`PluginError`]s) as values; memory you hand over is released by your side.
//! See `docs/PLUGINS.md` in the ardpipe repository for the full guide and `include/ardpipe_plugin.h`
//! for C authors.

// A panic unwinding out of `extern "C"` aborts the host; with panic=abort nothing can be caught.
#[cfg(panic = "abort")]
compile_error!(
    "ardpipe plugins must be built with panic = \"unwind\" (the default): the SDK turns panics into \
     error values, which panic = \"abort\" makes impossible. Remove `panic = \"abort\"` from your profile."
);

pub mod abi;
mod error;
mod export;
pub mod log;
mod options;
mod plugin;

pub use error::PluginError;
pub use options::{OptionSpec, Options, closest, kind_of};
pub use plugin::{Describe, Loader, Metric, Predictions, Record, Scalar, TensorView, capability};
/// Re-exported so a plugin's own tests can build [`Options`] with `serde_json::json!` without
/// adding the dependency themselves.
pub use serde_json;

/// Items the export macro needs; not part of the stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{DescriptorCell, entry, loader_descriptor, metric_descriptor};
}

/// Exports one plugin from this `cdylib`: `export_plugin!(loader = MyLoader);` or
/// `export_plugin!(metric = MyMetric);`. Use it once per library.
#[macro_export]
macro_rules! export_plugin {
    (loader = $ty:ty) => {
        $crate::export_plugin!(@entry $crate::__private::loader_descriptor::<$ty>);
    };
    (metric = $ty:ty) => {
        $crate::export_plugin!(@entry $crate::__private::metric_descriptor::<$ty>);
    };
    (@entry $build:expr) => {
        /// The ardpipe plugin entry point (ABI version 1).
        ///
        /// # Safety
        /// Called by the ardpipe host with a host table that outlives the process.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn ardpipe_plugin_v1(
            host: *const $crate::abi::ArdHost,
        ) -> *const $crate::abi::ArdPluginDescriptor {
            static DESCRIPTOR: $crate::__private::DescriptorCell =
                $crate::__private::DescriptorCell::new();
            // SAFETY: forwarded from our caller's contract.
            unsafe { $crate::__private::entry(host, &DESCRIPTOR, $build) }
        }
    };
}
