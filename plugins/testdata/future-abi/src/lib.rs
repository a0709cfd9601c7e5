//! A plugin from a future SDK that exports only `ardpipe_plugin_v2`: the host must report an ABI
//! mismatch naming 2 and 1, never call it.

/// # Safety
/// Must never be called by an ABI-1 host.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ardpipe_plugin_v2(_host: *const u8) -> *const u8 {
    std::process::abort()
}
