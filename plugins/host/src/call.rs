//! Calling into a plugin: an error slot per call, its strings copied and released, the status
//! turned into a `PluginError` naming the plugin and what it was doing.

use ardpipe_plugin_sdk::abi::{ARD_ERROR, ARD_OK, ARD_PANIC, ArdError, ArdOwnedStr};

use crate::Plugin;
use crate::error::{ErrorKind, PluginError};

/// Runs `f` with a fresh error slot and maps its status.
pub(crate) fn call(
    plugin: &Plugin,
    during: &'static str,
    f: impl FnOnce(*mut ArdError) -> i32,
) -> Result<(), PluginError> {
    let mut slot = ArdError::empty();
    let status = f(&mut slot);
    // Copy then release whatever the plugin put there, whatever the status (no leak either way).
    let message = take(&mut slot.message);
    let key = take(&mut slot.key);
    let kind = match status {
        ARD_OK => return Ok(()),
        ARD_ERROR => ErrorKind::Failed {
            during,
            message: message.unwrap_or_else(|| "(no message)".into()),
        },
        ARD_PANIC => ErrorKind::Panicked {
            during,
            message: message.unwrap_or_else(|| "(no message)".into()),
        },
        other => ErrorKind::BadOutput {
            during,
            detail: format!("unknown status code {other} (expected 0, 1 or 2)"),
        },
    };
    let mut error = plugin.error(kind);
    error.key = key.filter(|k| !k.is_empty());
    Err(error)
}

/// The most of an error message or key the host reads: they are shown to people, and a garbage
/// length must not make the host copy gigabytes.
const MAX_MESSAGE_BYTES: usize = 64 << 10;

/// Copies an owned string out (lossy UTF-8: it is only shown to people; cut at
/// `MAX_MESSAGE_BYTES`) and releases it.
pub(crate) fn take(s: &mut ArdOwnedStr) -> Option<String> {
    let len = s.len.min(MAX_MESSAGE_BYTES);
    // SAFETY: the plugin's ptr/len describe its own allocation, alive until released below; we
    // read no more than `len` of it.
    let text = unsafe {
        if s.ptr.is_null() {
            None
        } else {
            let mut t =
                String::from_utf8_lossy(std::slice::from_raw_parts(s.ptr, len)).into_owned();
            if len < s.len {
                t.push_str(&format!(" … (cut: the plugin said {} bytes)", s.len));
            }
            Some(t)
        }
    };
    if let Some(release) = s.release.take() {
        // SAFETY: released once, with the owner it came with.
        unsafe { release(s.owner) };
    }
    *s = ArdOwnedStr::NONE;
    text
}
