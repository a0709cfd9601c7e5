//! The host's log callback: plugin log lines reach ardpipe's own log (tracing), tagged with the plugin.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use ardpipe_plugin_sdk::abi::{self, ABI_VERSION, ArdHost, ArdStr, struct_size};

/// Per-library context behind `ArdHost::ctx`; the name is filled in once the descriptor is read.
pub(crate) struct LogContext {
    pub name: OnceLock<String>,
    pub fallback: String,
}

/// A host table for one library, alive for the rest of the process (plugins may keep it).
pub(crate) fn host_for(fallback: String) -> (*const ArdHost, &'static LogContext) {
    let ctx: &'static LogContext = Box::leak(Box::new(LogContext {
        name: OnceLock::new(),
        fallback,
    }));
    let host: &'static ArdHost = Box::leak(Box::new(ArdHost {
        abi_version: ABI_VERSION,
        struct_size: struct_size::<ArdHost>(),
        ctx: ctx as *const LogContext as *mut c_void,
        log: Some(host_log),
    }));
    (host as *const ArdHost, ctx)
}

unsafe extern "C" fn host_log(ctx: *mut c_void, level: u32, message: ArdStr) {
    // Nothing may unwind back into the plugin.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let plugin = if ctx.is_null() {
            "?"
        } else {
            // SAFETY: ctx is the LogContext this module leaked for the library.
            let ctx = unsafe { &*(ctx as *const LogContext) };
            ctx.name.get().map_or(ctx.fallback.as_str(), String::as_str)
        };
        // SAFETY: the plugin passes a string valid for the duration of the call.
        let bytes = unsafe { message.as_bytes() }.unwrap_or_default();
        let text = String::from_utf8_lossy(bytes);
        match level {
            abi::ARD_LOG_ERROR => tracing::error!(plugin, "{text}"),
            abi::ARD_LOG_WARN => tracing::warn!(plugin, "{text}"),
            abi::ARD_LOG_INFO => tracing::info!(plugin, "{text}"),
            abi::ARD_LOG_DEBUG => tracing::debug!(plugin, "{text}"),
            _ => tracing::trace!(plugin, "{text}"),
        }
    }));
}
