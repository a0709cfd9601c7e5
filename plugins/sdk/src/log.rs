//! Plugin logging that reaches ardpipe's own log (the host's callback), or stderr outside ardpipe.

use std::sync::atomic::{AtomicPtr, Ordering};

use crate::abi::{self, ArdHost, ArdStr};

/// Log levels, in the host's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    fn code(self) -> u32 {
        match self {
            Level::Error => abi::ARD_LOG_ERROR,
            Level::Warn => abi::ARD_LOG_WARN,
            Level::Info => abi::ARD_LOG_INFO,
            Level::Debug => abi::ARD_LOG_DEBUG,
            Level::Trace => abi::ARD_LOG_TRACE,
        }
    }
}

// Set once at entry; the host keeps its `ArdHost` alive for the whole process.
static HOST: AtomicPtr<ArdHost> = AtomicPtr::new(std::ptr::null_mut());

/// Remembers the host's callbacks when the host speaks our ABI; otherwise logs go to stderr.
pub(crate) fn install_host(host: *const ArdHost) {
    if host.is_null() {
        return;
    }
    // SAFETY: a non-null host pointer points at least at the two leading u32s every ABI version has.
    let (version, size) = unsafe { ((*host).abi_version, (*host).struct_size) };
    if version == abi::ABI_VERSION && size as usize >= std::mem::size_of::<ArdHost>() {
        HOST.store(host as *mut ArdHost, Ordering::Release);
    }
}

/// Sends one line to ardpipe's log (or stderr when the plugin runs outside ardpipe, e.g. in its own tests).
pub fn log(level: Level, message: &str) {
    let host = HOST.load(Ordering::Acquire);
    if !host.is_null() {
        // SAFETY: `install_host` checked version and size; the host keeps it alive forever.
        let host = unsafe { &*host };
        if let Some(log) = host.log {
            // SAFETY: the callback takes a borrowed string that lives for the call.
            unsafe { log(host.ctx, level.code(), ArdStr::borrow(message)) };
            return;
        }
    }
    eprintln!("[plugin {level:?}] {message}");
}

/// `log_info!("read {} files", n)`: formats and sends to ardpipe's log at info level.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Like [`log_info!`] at warn level.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// Like [`log_info!`] at debug level.
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &format!($($arg)*)) };
}

/// Like [`log_info!`] at error level.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &format!($($arg)*)) };
}
