//! The glue [`export_plugin!`](crate::export_plugin) expands to: `extern "C"` shims that turn the
//! C ABI into calls of the author's trait, catching every panic and returning errors as values.
//!
//! Not a public API: only the macro names these items, through `__private`.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Once, OnceLock};

use crate::abi::{self, *};
use crate::log::{self, Level};
use crate::plugin::{Describe, Loader, Metric, Predictions, Record, Scalar, TensorView};
use crate::{Options, PluginError};

/// Holds the descriptor built on the first entry call; the macro puts one in a `static`.
pub struct DescriptorCell(OnceLock<DescriptorPtr>);

struct DescriptorPtr(*const ArdPluginDescriptor);
// SAFETY: the descriptor is immutable after construction and leaked for the life of the process.
unsafe impl Send for DescriptorPtr {}
unsafe impl Sync for DescriptorPtr {}

impl DescriptorCell {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        DescriptorCell(OnceLock::new())
    }
}

/// The body of the exported entry symbol.
///
/// # Safety
/// `host` is null or points to an `ArdHost` that lives for the rest of the process.
pub unsafe fn entry(
    host: *const ArdHost,
    cell: &'static DescriptorCell,
    build: fn() -> ArdPluginDescriptor,
) -> *const ArdPluginDescriptor {
    install_panic_hook();
    let result = catch_unwind(AssertUnwindSafe(|| {
        log::install_host(host);
        cell.0
            .get_or_init(|| DescriptorPtr(Box::leak(Box::new(build()))))
            .0
    }));
    match result {
        Ok(descriptor) => descriptor,
        Err(payload) => {
            // The host turns a null descriptor into "the plugin failed to describe itself".
            log::log(
                Level::Error,
                &format!("panic while describing the plugin: {}", panic_text(payload)),
            );
            std::ptr::null()
        }
    }
}

thread_local! {
    // Where the panic hook leaves "message at file:line" for the `catch_unwind` that follows.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default hook (which prints to stderr) in this library's own copy of std: the
/// panic is reported to the host as an error value instead, with its location.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = payload_text(info.payload());
            let text = match info.location() {
                Some(loc) => format!("{message} (at {}:{})", loc.file(), loc.line()),
                None => message,
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| payload_text(payload.as_ref()))
}

/// Runs `f`, turning an error into `ARD_ERROR` and a panic into `ARD_PANIC`, with the message in `err`.
fn guard<R>(err: *mut ArdError, f: impl FnOnce() -> Result<R, PluginError>) -> Result<R, i32> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            write_error(err, e.message, e.key);
            Err(ARD_ERROR)
        }
        Err(payload) => {
            write_error(err, panic_text(payload), None);
            Err(ARD_PANIC)
        }
    }
}

fn status(result: Result<(), i32>) -> i32 {
    match result {
        Ok(()) => ARD_OK,
        Err(code) => code,
    }
}

fn write_error(err: *mut ArdError, message: String, key: Option<String>) {
    if err.is_null() {
        return;
    }
    // SAFETY: the host passes a valid, writable error slot (or null, handled above).
    unsafe {
        (*err).message = owned_string(message);
        (*err).key = key.map_or(ArdOwnedStr::NONE, owned_string);
    }
}

fn owned_string(s: String) -> ArdOwnedStr {
    let boxed = Box::new(s);
    ArdOwnedStr {
        ptr: boxed.as_ptr(),
        len: boxed.len(),
        owner: Box::into_raw(boxed) as *mut c_void,
        release: Some(release_box::<String>),
    }
}

/// Release callback for anything this side boxed and handed over.
unsafe extern "C" fn release_box<T>(owner: *mut c_void) {
    if owner.is_null() {
        return;
    }
    // SAFETY: `owner` came from `Box::into_raw` of a `T` and is released once (the host's promise).
    let _ = catch_unwind(AssertUnwindSafe(|| {
        drop(unsafe { Box::from_raw(owner as *mut T) })
    }));
}

fn checked_handle<'a, T>(handle: *mut c_void) -> Result<&'a mut T, PluginError> {
    if handle.is_null() {
        return Err(PluginError::new("the host passed a null handle"));
    }
    // SAFETY: non-null handles are the ones `open`/`create` returned, used by one thread at a time.
    Ok(unsafe { &mut *(handle as *mut T) })
}

fn checked_out<'a, T>(out: *mut T, what: &str) -> Result<&'a mut T, PluginError> {
    if out.is_null() {
        return Err(PluginError::new(format!("the host passed a null {what}")));
    }
    // SAFETY: non-null output slots are valid and writable for the call (the host's promise).
    Ok(unsafe { &mut *out })
}

fn parse_options(options: ArdStr, specs: &[crate::OptionSpec]) -> Result<Options, PluginError> {
    // SAFETY: the host passes a borrowed string valid for the duration of the call.
    let bytes = unsafe { options.as_bytes() }.unwrap_or(&[]);
    let options = Options::parse(bytes)?;
    options.check(specs)?;
    Ok(options)
}

fn describe<T: Describe>(
    kind: u32,
    loader: *const ArdLoaderVTable,
    metric: *const ArdMetricVTable,
) -> ArdPluginDescriptor {
    let capabilities: &'static [ArdStr] =
        Box::leak(T::CAPABILITIES.iter().map(|c| ArdStr::borrow(c)).collect());
    let options: &'static [ArdOptionSpec] = Box::leak(
        T::OPTIONS
            .iter()
            .map(|o| ArdOptionSpec {
                key: ArdStr::borrow(o.key),
                kind: ArdStr::borrow(o.kind),
                default_value: ArdStr::borrow_opt(o.default),
                help: ArdStr::borrow(o.help),
                required: u32::from(o.required),
                _reserved: 0,
            })
            .collect(),
    );
    ArdPluginDescriptor {
        abi_version: abi::ABI_VERSION,
        struct_size: struct_size::<ArdPluginDescriptor>(),
        kind,
        _reserved: 0,
        name: ArdStr::borrow(T::NAME),
        version: ArdStr::borrow(T::VERSION),
        description: ArdStr::borrow(T::DESCRIPTION),
        capabilities: capabilities.as_ptr(),
        capabilities_len: capabilities.len(),
        options: options.as_ptr(),
        options_len: options.len(),
        loader,
        metric,
    }
}

// ---------------------------------------------------------------- loaders

/// A loader plus the records it returned beyond what the host asked for.
struct LoaderState<T> {
    loader: T,
    pending: VecDeque<Record>,
    ended: bool,
}

/// Record memory handed to the host until it calls `release`.
struct BatchStorage {
    _records: Vec<Record>,
    _fields: Vec<Vec<ArdField>>,
    raw: Vec<ArdRecord>,
}

pub fn loader_descriptor<T: Loader>() -> ArdPluginDescriptor {
    let vtable: &'static ArdLoaderVTable = Box::leak(Box::new(ArdLoaderVTable {
        struct_size: struct_size::<ArdLoaderVTable>(),
        _reserved: 0,
        open: Some(loader_open::<T>),
        next_batch: Some(loader_next_batch::<T>),
        size_hint: Some(loader_size_hint::<T>),
        close: Some(loader_close::<T>),
    }));
    describe::<T>(ARD_KIND_LOADER, vtable, std::ptr::null())
}

unsafe extern "C" fn loader_open<T: Loader>(
    options: ArdStr,
    seed: u64,
    out_handle: *mut *mut c_void,
    err: *mut ArdError,
) -> i32 {
    status(guard(err, || {
        let out = checked_out(out_handle, "handle slot")?;
        let options = parse_options(options, T::OPTIONS)?;
        let state = LoaderState {
            loader: T::open(&options, seed)?,
            pending: VecDeque::new(),
            ended: false,
        };
        *out = Box::into_raw(Box::new(state)) as *mut c_void;
        Ok(())
    }))
}

unsafe extern "C" fn loader_next_batch<T: Loader>(
    handle: *mut c_void,
    max_records: usize,
    out: *mut ArdRecordBatch,
    err: *mut ArdError,
) -> i32 {
    status(guard(err, || {
        let state = checked_handle::<LoaderState<T>>(handle)?;
        let out = checked_out(out, "batch slot")?;
        let max = max_records.max(1);
        if state.pending.is_empty() && !state.ended {
            let batch = state.loader.next_batch(max)?;
            state.ended = batch.is_empty();
            state.pending.extend(batch);
        }
        let take = state.pending.len().min(max);
        *out = batch_to_ffi(state.pending.drain(..take).collect());
        Ok(())
    }))
}

fn batch_to_ffi(records: Vec<Record>) -> ArdRecordBatch {
    if records.is_empty() {
        return ArdRecordBatch::empty();
    }
    let fields: Vec<Vec<ArdField>> = records
        .iter()
        .map(|r| {
            r.extra
                .iter()
                .map(|(k, v)| ArdField {
                    key: ArdStr::borrow(k),
                    value: ArdStr::borrow(v),
                })
                .collect()
        })
        .collect();
    let raw = records
        .iter()
        .zip(&fields)
        .map(|(r, f)| ArdRecord {
            text: ArdStr::borrow(&r.text),
            text_pair: ArdStr::borrow_opt(r.text_pair.as_deref()),
            label: ArdStr::borrow_opt(r.label.as_deref()),
            extra: f.as_ptr(),
            extra_len: f.len(),
        })
        .collect();
    // Moving the vectors into the box keeps their heap buffers (and so every pointer above) in place.
    let storage = Box::new(BatchStorage {
        _records: records,
        _fields: fields,
        raw,
    });
    ArdRecordBatch {
        records: storage.raw.as_ptr(),
        len: storage.raw.len(),
        owner: Box::into_raw(storage) as *mut c_void,
        release: Some(release_box::<BatchStorage>),
    }
}

unsafe extern "C" fn loader_size_hint<T: Loader>(
    handle: *mut c_void,
    out_len: *mut u64,
    out_known: *mut u8,
    err: *mut ArdError,
) -> i32 {
    status(guard(err, || {
        let state = checked_handle::<LoaderState<T>>(handle)?;
        let len = checked_out(out_len, "length slot")?;
        let known = checked_out(out_known, "known-flag slot")?;
        match state.loader.size_hint() {
            Some(n) => {
                *len = n;
                *known = 1;
            }
            None => *known = 0,
        }
        Ok(())
    }))
}

unsafe extern "C" fn loader_close<T: Loader>(handle: *mut c_void) {
    if handle.is_null() {
        return;
    }
    // SAFETY: the handle came from `loader_open` and the host closes it once.
    let state = unsafe { Box::from_raw(handle as *mut LoaderState<T>) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(state))) {
        log::log(
            Level::Error,
            &format!(
                "{} panicked while closing: {}",
                T::NAME,
                panic_text(payload)
            ),
        );
    }
}

// ---------------------------------------------------------------- metrics

/// Scalar memory handed to the host until it calls `release`.
struct ScalarStorage {
    _names: Vec<String>,
    items: Vec<ArdScalar>,
}

pub fn metric_descriptor<T: Metric>() -> ArdPluginDescriptor {
    let vtable: &'static ArdMetricVTable = Box::leak(Box::new(ArdMetricVTable {
        struct_size: struct_size::<ArdMetricVTable>(),
        _reserved: 0,
        create: Some(metric_create::<T>),
        update: Some(metric_update::<T>),
        finish: Some(metric_finish::<T>),
        destroy: Some(metric_destroy::<T>),
    }));
    describe::<T>(ARD_KIND_METRIC, std::ptr::null(), vtable)
}

unsafe extern "C" fn metric_create<T: Metric>(
    options: ArdStr,
    out_handle: *mut *mut c_void,
    err: *mut ArdError,
) -> i32 {
    status(guard(err, || {
        let out = checked_out(out_handle, "handle slot")?;
        let options = parse_options(options, T::OPTIONS)?;
        *out = Box::into_raw(Box::new(T::create(&options)?)) as *mut c_void;
        Ok(())
    }))
}

unsafe extern "C" fn metric_update<T: Metric>(
    handle: *mut c_void,
    predictions: *const ArdTensor,
    labels: *const ArdTensor,
    err: *mut ArdError,
) -> i32 {
    status(guard(err, || {
        let metric = checked_handle::<T>(handle)?;
        let predictions = match tensor_dtype(predictions, "predictions")? {
            ARD_DTYPE_F32 => Predictions::Logits(tensor_view(predictions, "predictions")?),
            ARD_DTYPE_I64 => Predictions::Ids(tensor_view(predictions, "predictions")?),
            other => {
                return Err(PluginError::new(format!(
                    "predictions have dtype code {other}; expected f32 logits (1) or i64 ids (2)"
                )));
            }
        };
        if tensor_dtype(labels, "labels")? != ARD_DTYPE_I64 {
            return Err(PluginError::new("labels must be i64 (dtype code 2)"));
        }
        let labels = tensor_view(labels, "labels")?;
        metric.update(predictions, labels)
    }))
}

fn tensor_dtype(t: *const ArdTensor, what: &str) -> Result<u32, PluginError> {
    if t.is_null() {
        return Err(PluginError::new(format!("the host passed no {what}")));
    }
    // SAFETY: non-null tensors are valid for the call (the host's promise).
    Ok(unsafe { (*t).dtype })
}

fn tensor_view<'a, T>(t: *const ArdTensor, what: &str) -> Result<TensorView<'a, T>, PluginError> {
    // SAFETY: checked non-null by `tensor_dtype`, valid for the call.
    let t = unsafe { &*t };
    let dims: &[i64] = if t.ndim == 0 {
        &[]
    } else if t.shape.is_null() {
        return Err(PluginError::new(format!(
            "{what}: null shape with {} dims",
            t.ndim
        )));
    } else {
        // SAFETY: shape points to ndim sizes (the host's promise).
        unsafe { std::slice::from_raw_parts(t.shape, t.ndim as usize) }
    };
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PluginError::new(format!("{what}: negative size in shape {dims:?}")))?;
    let count: usize = shape.iter().product();
    if count != t.len {
        return Err(PluginError::new(format!(
            "{what}: shape {shape:?} holds {count} values but the buffer has {}",
            t.len
        )));
    }
    let data: &[T] = if t.len == 0 {
        &[]
    } else if t.data.is_null() || !(t.data as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(PluginError::new(format!(
            "{what}: null or misaligned data pointer"
        )));
    } else {
        // SAFETY: non-null, aligned, `len` elements of T (the host's promise), valid for the call.
        unsafe { std::slice::from_raw_parts(t.data as *const T, t.len) }
    };
    Ok(TensorView { data, shape })
}

unsafe extern "C" fn metric_finish<T: Metric>(
    handle: *mut c_void,
    out: *mut ArdScalars,
    err: *mut ArdError,
) -> i32 {
    status(guard(err, || {
        let metric = checked_handle::<T>(handle)?;
        let out = checked_out(out, "results slot")?;
        let scalars: Vec<Scalar> = metric.finish()?;
        let names: Vec<String> = scalars.iter().map(|s| s.name.clone()).collect();
        let items = names
            .iter()
            .zip(&scalars)
            .map(|(n, s)| ArdScalar {
                name: ArdStr::borrow(n),
                value: s.value,
            })
            .collect();
        let storage = Box::new(ScalarStorage {
            _names: names,
            items,
        });
        *out = ArdScalars {
            items: storage.items.as_ptr(),
            len: storage.items.len(),
            owner: Box::into_raw(storage) as *mut c_void,
            release: Some(release_box::<ScalarStorage>),
        };
        Ok(())
    }))
}

unsafe extern "C" fn metric_destroy<T: Metric>(handle: *mut c_void) {
    if handle.is_null() {
        return;
    }
    // SAFETY: the handle came from `metric_create` and the host destroys it once.
    let metric = unsafe { Box::from_raw(handle as *mut T) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(metric))) {
        log::log(
            Level::Error,
            &format!(
                "{} panicked while being destroyed: {}",
                T::NAME,
                panic_text(payload)
            ),
        );
    }
}
