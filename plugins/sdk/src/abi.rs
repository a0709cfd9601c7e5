//! The C ABI itself: every type that crosses the boundary between ardpipe and a plugin.
//!
//! Only plain C data lives here (integers, floats, pointers, nullable function pointers), laid out
//! with `#[repr(C)]` so that `include/ardpipe_plugin.h` describes exactly the same memory. Change a
//! layout and you must bump [`ABI_VERSION`] and the entry symbol's suffix together.
//!
//! Ownership rule: whoever allocates, releases. Anything the plugin hands to the host (error
//! messages, record batches, metric results) comes with an `owner` pointer and a `release`
//! callback; the host copies what it needs and calls `release(owner)` exactly once.

use std::ffi::c_void;

/// The ABI this SDK speaks. The host refuses a descriptor whose first field differs.
pub const ABI_VERSION: u32 = 1;

/// The one symbol a plugin exports; its suffix is the ABI version, so a future ABI can be exported
/// side by side with this one from the same library.
pub const ENTRY_SYMBOL: &str = "ardpipe_plugin_v1";

/// Status codes returned by every fallible function.
pub const ARD_OK: i32 = 0;
/// The plugin refused (bad options, bad data): `ArdError` holds the message.
pub const ARD_ERROR: i32 = 1;
/// The plugin panicked (or hit an internal bug); the SDK caught it and `ArdError` holds the message.
pub const ARD_PANIC: i32 = 2;

/// Plugin kinds (`ArdPluginDescriptor::kind`).
pub const ARD_KIND_LOADER: u32 = 1;
pub const ARD_KIND_METRIC: u32 = 2;

/// Element types of an [`ArdTensor`].
pub const ARD_DTYPE_F32: u32 = 1;
pub const ARD_DTYPE_I64: u32 = 2;

/// Log levels of the host's log callback (same order as `tracing`/`log`).
pub const ARD_LOG_ERROR: u32 = 1;
pub const ARD_LOG_WARN: u32 = 2;
pub const ARD_LOG_INFO: u32 = 3;
pub const ARD_LOG_DEBUG: u32 = 4;
pub const ARD_LOG_TRACE: u32 = 5;

/// A borrowed UTF-8 string: pointer + length, no terminating NUL. A null `ptr` means "absent"
/// (for optional fields); an empty present string has a non-null `ptr` and `len == 0`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArdStr {
    pub ptr: *const u8,
    pub len: usize,
}

/// Frees memory that the side which allocated it handed over; called once with the `owner` it came with.
pub type ArdReleaseFn = unsafe extern "C" fn(owner: *mut c_void);

/// A string allocated by the other side, with the callback that frees it.
#[repr(C)]
#[derive(Debug)]
pub struct ArdOwnedStr {
    pub ptr: *const u8,
    pub len: usize,
    pub owner: *mut c_void,
    pub release: Option<ArdReleaseFn>,
}

/// Filled by the plugin when a call returns `ARD_ERROR` or `ARD_PANIC`. The host zeroes it before
/// each call. `key` names the offending option when the error is about one (else absent).
#[repr(C)]
#[derive(Debug)]
pub struct ArdError {
    pub message: ArdOwnedStr,
    pub key: ArdOwnedStr,
}

/// What the host gives the plugin once, at entry: where to send log lines. Lives for the whole
/// process. `ctx` is the host's, passed back unchanged.
#[repr(C)]
#[derive(Debug)]
pub struct ArdHost {
    pub abi_version: u32,
    pub struct_size: u32,
    pub ctx: *mut c_void,
    pub log: Option<unsafe extern "C" fn(ctx: *mut c_void, level: u32, message: ArdStr)>,
}

/// One option the plugin accepts, shown by `ardpipe plugin inspect` and checked before `open`/`create`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArdOptionSpec {
    pub key: ArdStr,
    /// Free text for humans and checks: `string`, `path`, `integer`, `number`, `boolean`, `list of strings`.
    pub kind: ArdStr,
    /// The default as the user would write it; absent when there is none.
    pub default_value: ArdStr,
    pub help: ArdStr,
    /// 1 when the option must be given.
    pub required: u32,
    pub _reserved: u32,
}

/// What the entry symbol returns: a descriptor that stays valid for the life of the process.
/// `abi_version` and `struct_size` come first and never move: the host reads them before anything
/// else. A larger `struct_size` than the host knows is fine (fields appended later); a smaller one is refused.
#[repr(C)]
#[derive(Debug)]
pub struct ArdPluginDescriptor {
    pub abi_version: u32,
    pub struct_size: u32,
    pub kind: u32,
    pub _reserved: u32,
    pub name: ArdStr,
    pub version: ArdStr,
    pub description: ArdStr,
    pub capabilities: *const ArdStr,
    pub capabilities_len: usize,
    pub options: *const ArdOptionSpec,
    pub options_len: usize,
    /// Non-null exactly when `kind == ARD_KIND_LOADER`.
    pub loader: *const ArdLoaderVTable,
    /// Non-null exactly when `kind == ARD_KIND_METRIC`.
    pub metric: *const ArdMetricVTable,
}

/// One extra key/value of a record (for example the file and line it came from).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArdField {
    pub key: ArdStr,
    pub value: ArdStr,
}

/// One record as a loader streams it. `text` is required; `text_pair` and `label` may be absent.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArdRecord {
    pub text: ArdStr,
    pub text_pair: ArdStr,
    pub label: ArdStr,
    pub extra: *const ArdField,
    pub extra_len: usize,
}

/// A batch of records owned by the plugin until the host calls `release(owner)`.
/// `len == 0` means the stream has ended.
#[repr(C)]
#[derive(Debug)]
pub struct ArdRecordBatch {
    pub records: *const ArdRecord,
    pub len: usize,
    pub owner: *mut c_void,
    pub release: Option<ArdReleaseFn>,
}

/// A borrowed, dense, row-major tensor: `len` elements of `dtype`, `ndim` sizes in `shape`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArdTensor {
    pub dtype: u32,
    pub ndim: u32,
    pub shape: *const i64,
    pub data: *const c_void,
    pub len: usize,
}

/// One named result of a metric.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArdScalar {
    pub name: ArdStr,
    pub value: f64,
}

/// A metric's results, owned by the plugin until the host calls `release(owner)`.
#[repr(C)]
#[derive(Debug)]
pub struct ArdScalars {
    pub items: *const ArdScalar,
    pub len: usize,
    pub owner: *mut c_void,
    pub release: Option<ArdReleaseFn>,
}

/// A loader's functions. A handle from `open` is used by one thread at a time (it may move
/// between threads) and is closed exactly once, even after an error or a panic.
#[repr(C)]
#[derive(Debug)]
pub struct ArdLoaderVTable {
    pub struct_size: u32,
    pub _reserved: u32,
    /// `options` is the pipeline block's options as a JSON object (UTF-8 bytes), already checked
    /// by the host against the declared options (docs/PLUGINS.md, "Options as the plugin receives
    /// them").
    pub open: Option<
        unsafe extern "C" fn(
            options: ArdStr,
            seed: u64,
            out_handle: *mut *mut c_void,
            err: *mut ArdError,
        ) -> i32,
    >,
    /// Fills `out` with at most `max_records` records (the host refuses more); an empty batch ends
    /// the stream.
    pub next_batch: Option<
        unsafe extern "C" fn(
            handle: *mut c_void,
            max_records: usize,
            out: *mut ArdRecordBatch,
            err: *mut ArdError,
        ) -> i32,
    >,
    /// Sets `*out_known` to 1 and `*out_len` to the total number of records when known. Optional:
    /// `None` (NULL) means the plugin cannot tell.
    pub size_hint: Option<
        unsafe extern "C" fn(
            handle: *mut c_void,
            out_len: *mut u64,
            out_known: *mut u8,
            err: *mut ArdError,
        ) -> i32,
    >,
    pub close: Option<unsafe extern "C" fn(handle: *mut c_void)>,
}

/// A metric's functions; same handle rules as the loader's.
#[repr(C)]
#[derive(Debug)]
pub struct ArdMetricVTable {
    pub struct_size: u32,
    pub _reserved: u32,
    pub create: Option<
        unsafe extern "C" fn(
            options: ArdStr,
            out_handle: *mut *mut c_void,
            err: *mut ArdError,
        ) -> i32,
    >,
    /// `predictions`: f32 logits (`[.., classes]`) or i64 token/class ids; `labels`: i64, the
    /// predictions' shape without the class axis for logits, the same shape for ids.
    pub update: Option<
        unsafe extern "C" fn(
            handle: *mut c_void,
            predictions: *const ArdTensor,
            labels: *const ArdTensor,
            err: *mut ArdError,
        ) -> i32,
    >,
    pub finish: Option<
        unsafe extern "C" fn(handle: *mut c_void, out: *mut ArdScalars, err: *mut ArdError) -> i32,
    >,
    pub destroy: Option<unsafe extern "C" fn(handle: *mut c_void)>,
}

impl ArdStr {
    /// The absent string (null pointer).
    pub const NONE: ArdStr = ArdStr {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows `s`; the caller keeps `s` alive as long as the `ArdStr` is used.
    pub const fn borrow(s: &str) -> ArdStr {
        ArdStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    pub fn borrow_opt(s: Option<&str>) -> ArdStr {
        s.map_or(ArdStr::NONE, ArdStr::borrow)
    }

    pub fn is_absent(&self) -> bool {
        self.ptr.is_null()
    }

    /// The bytes, or `None` when absent.
    ///
    /// # Safety
    /// `ptr` must be null or point to `len` readable bytes that outlive the returned slice.
    pub unsafe fn as_bytes<'a>(&self) -> Option<&'a [u8]> {
        if self.ptr.is_null() {
            None
        } else {
            // SAFETY: the caller guarantees ptr/len describe live memory.
            Some(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
        }
    }
}

impl ArdOwnedStr {
    pub const NONE: ArdOwnedStr = ArdOwnedStr {
        ptr: std::ptr::null(),
        len: 0,
        owner: std::ptr::null_mut(),
        release: None,
    };
}

impl ArdError {
    /// The state the host puts an error slot in before each call.
    pub const fn empty() -> ArdError {
        ArdError {
            message: ArdOwnedStr::NONE,
            key: ArdOwnedStr::NONE,
        }
    }
}

impl ArdRecordBatch {
    pub const fn empty() -> ArdRecordBatch {
        ArdRecordBatch {
            records: std::ptr::null(),
            len: 0,
            owner: std::ptr::null_mut(),
            release: None,
        }
    }
}

impl ArdScalars {
    pub const fn empty() -> ArdScalars {
        ArdScalars {
            items: std::ptr::null(),
            len: 0,
            owner: std::ptr::null_mut(),
            release: None,
        }
    }
}

/// `size_of::<T>()` as the `u32` the descriptors carry.
pub const fn struct_size<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

#[cfg(all(test, target_pointer_width = "64"))]
mod layout_tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // These numbers are what `include/ardpipe_plugin.h` gives on x86_64/aarch64 (checked by the
    // host's C-plugin test, which compiles the header); a change here is an ABI change.
    #[test]
    fn layouts_match_the_c_header_on_64_bit() {
        assert_eq!(offset_of!(ArdPluginDescriptor, abi_version), 0);
        assert_eq!(offset_of!(ArdPluginDescriptor, struct_size), 4);
        assert_eq!(size_of::<ArdStr>(), 16);
        assert_eq!(size_of::<ArdOwnedStr>(), 32);
        assert_eq!(size_of::<ArdError>(), 64);
        assert_eq!(size_of::<ArdHost>(), 24);
        assert_eq!(size_of::<ArdOptionSpec>(), 72);
        assert_eq!(size_of::<ArdPluginDescriptor>(), 112);
        assert_eq!(size_of::<ArdRecord>(), 64);
        assert_eq!(size_of::<ArdTensor>(), 32);
        assert_eq!(size_of::<ArdLoaderVTable>(), 40);
        assert_eq!(size_of::<ArdMetricVTable>(), 40);
    }
}
