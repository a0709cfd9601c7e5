//! A shared library built for some other tool: it exports a function, but not `ardpipe_plugin_v1`.
//! The host must say "not an ardpipe plugin", not crash.

/// # Safety
/// Never called by ardpipe; exists so the library exports something.
#[unsafe(no_mangle)]
pub extern "C" fn other_tool_plugin_init() -> i32 {
    42
}
