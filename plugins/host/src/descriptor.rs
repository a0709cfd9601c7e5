//! Reading a plugin's descriptor: the ABI version first, then the size, then everything else,
//! checked field by field and copied into owned values before any of it is trusted.

use std::path::Path;

use ardpipe_plugin_sdk::abi::*;

use crate::error::{ErrorKind, PluginError};
use crate::info::{Kind, OptionInfo, PluginInfo};

type OpenFn = unsafe extern "C" fn(ArdStr, u64, *mut *mut std::ffi::c_void, *mut ArdError) -> i32;
type NextBatchFn =
    unsafe extern "C" fn(*mut std::ffi::c_void, usize, *mut ArdRecordBatch, *mut ArdError) -> i32;
type SizeHintFn =
    unsafe extern "C" fn(*mut std::ffi::c_void, *mut u64, *mut u8, *mut ArdError) -> i32;
type CloseFn = unsafe extern "C" fn(*mut std::ffi::c_void);
type CreateFn = unsafe extern "C" fn(ArdStr, *mut *mut std::ffi::c_void, *mut ArdError) -> i32;
type UpdateFn = unsafe extern "C" fn(
    *mut std::ffi::c_void,
    *const ArdTensor,
    *const ArdTensor,
    *mut ArdError,
) -> i32;
type FinishFn = unsafe extern "C" fn(*mut std::ffi::c_void, *mut ArdScalars, *mut ArdError) -> i32;

/// A loader's functions, checked non-null except `size_hint`, which is optional (NULL: the
/// plugin does not know its size).
#[derive(Clone, Copy)]
pub(crate) struct LoaderFns {
    pub open: OpenFn,
    pub next_batch: NextBatchFn,
    pub size_hint: Option<SizeHintFn>,
    pub close: CloseFn,
}

/// A metric's functions, all checked non-null.
#[derive(Clone, Copy)]
pub(crate) struct MetricFns {
    pub create: CreateFn,
    pub update: UpdateFn,
    pub finish: FinishFn,
    pub destroy: CloseFn,
}

#[derive(Clone, Copy)]
pub(crate) enum Fns {
    Loader(LoaderFns),
    Metric(MetricFns),
}

/// Validates the descriptor at `desc` and copies it out.
///
/// # Safety
/// `desc` is what the entry symbol returned (null or pointing into the loaded library).
pub(crate) unsafe fn read(
    desc: *const ArdPluginDescriptor,
    path: &Path,
    label: &str,
) -> Result<(PluginInfo, Fns), PluginError> {
    let bad = |name: &str, detail: String| {
        PluginError::new(name, path, ErrorKind::BadDescriptor { detail })
    };
    if desc.is_null() {
        return Err(bad(
            label,
            "the entry symbol returned no descriptor (the plugin failed while describing itself; \
             its log line above says why)"
                .into(),
        ));
    }
    // The two leading u32s are the only part of the layout every ABI version shares, so only
    // their alignment is assumed before the version is known.
    if !(desc as usize).is_multiple_of(std::mem::align_of::<u32>()) {
        return Err(bad(label, "the descriptor pointer is misaligned".into()));
    }
    // SAFETY: non-null, u32-aligned, and every descriptor starts with these two fields.
    let (abi_version, size) = unsafe {
        let head = desc as *const u32;
        (head.read(), head.add(1).read())
    };
    if abi_version != ABI_VERSION {
        return Err(PluginError::new(
            label,
            path,
            ErrorKind::AbiMismatch {
                plugin_abi: abi_version,
                host_abi: ABI_VERSION,
            },
        ));
    }
    let needed = struct_size::<ArdPluginDescriptor>();
    if size < needed {
        return Err(bad(
            label,
            format!("struct_size is {size} bytes, smaller than ABI {ABI_VERSION}'s {needed}"),
        ));
    }
    if !(desc as usize).is_multiple_of(std::mem::align_of::<ArdPluginDescriptor>()) {
        return Err(bad(label, "the descriptor pointer is misaligned".into()));
    }
    // SAFETY: version and size say the whole ABI-1 descriptor is there, and it is aligned.
    let d = unsafe { &*desc };
    let name = text(d.name, "name").map_err(|e| bad(label, e))?;
    if name.trim().is_empty() {
        return Err(bad(label, "the name is empty".into()));
    }
    let label = name.as_str();
    let version = text(d.version, "version").map_err(|e| bad(label, e))?;
    let description = optional_text(d.description, "description").map_err(|e| bad(label, e))?;
    let capabilities = array(d.capabilities, d.capabilities_len, "capabilities")
        .map_err(|e| bad(label, e))?
        .iter()
        .enumerate()
        .map(|(i, c)| text(*c, &format!("capability {i}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(label, e))?;
    let options = array(d.options, d.options_len, "options")
        .map_err(|e| bad(label, e))?
        .iter()
        .enumerate()
        .map(|(i, o)| option(o, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(label, e))?;
    let (kind, fns) = match d.kind {
        ARD_KIND_LOADER => (
            Kind::Loader,
            Fns::Loader(loader_fns(d.loader).map_err(|e| bad(label, e))?),
        ),
        ARD_KIND_METRIC => (
            Kind::Metric,
            Fns::Metric(metric_fns(d.metric).map_err(|e| bad(label, e))?),
        ),
        other => {
            return Err(bad(
                label,
                format!(
                    "kind {other} is neither a loader ({ARD_KIND_LOADER}) nor a metric ({ARD_KIND_METRIC})"
                ),
            ));
        }
    };
    let info = PluginInfo {
        name,
        version,
        description,
        abi_version,
        kind,
        capabilities,
        options,
        path: path.to_path_buf(),
    };
    Ok((info, fns))
}

fn loader_fns(vtable: *const ArdLoaderVTable) -> Result<LoaderFns, String> {
    let v = table(vtable, "loader")?;
    // SAFETY: `table` checked pointer and size.
    let v = unsafe { &*v };
    let missing = |f: &str| format!("the loader's `{f}` function is null");
    Ok(LoaderFns {
        open: v.open.ok_or_else(|| missing("open"))?,
        next_batch: v.next_batch.ok_or_else(|| missing("next_batch"))?,
        size_hint: v.size_hint,
        close: v.close.ok_or_else(|| missing("close"))?,
    })
}

fn metric_fns(vtable: *const ArdMetricVTable) -> Result<MetricFns, String> {
    let v = table(vtable, "metric")?;
    // SAFETY: `table` checked pointer and size.
    let v = unsafe { &*v };
    let missing = |f: &str| format!("the metric's `{f}` function is null");
    Ok(MetricFns {
        create: v.create.ok_or_else(|| missing("create"))?,
        update: v.update.ok_or_else(|| missing("update"))?,
        finish: v.finish.ok_or_else(|| missing("finish"))?,
        destroy: v.destroy.ok_or_else(|| missing("destroy"))?,
    })
}

/// Checks a vtable pointer: non-null, aligned, and at least as large as ABI 1's table.
fn table<T>(ptr: *const T, what: &str) -> Result<*const T, String> {
    if ptr.is_null() {
        return Err(format!(
            "it says it is a {what} but its {what} table is null"
        ));
    }
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(format!("its {what} table is misaligned"));
    }
    // SAFETY: every vtable starts with its u32 struct_size.
    let size = unsafe { (ptr as *const u32).read() };
    let needed = struct_size::<T>();
    if size < needed {
        return Err(format!(
            "its {what} table's struct_size is {size} bytes, smaller than ABI {ABI_VERSION}'s {needed}"
        ));
    }
    Ok(ptr)
}

fn array<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], String> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() || !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(format!(
            "{what}: {len} entries behind a null or misaligned pointer"
        ));
    }
    if len > 10_000 {
        return Err(format!("{what}: {len} entries is not plausible"));
    }
    // SAFETY: non-null, aligned, `len` entries in the library's static data (the ABI's promise).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

fn text(s: ArdStr, what: &str) -> Result<String, String> {
    if s.is_absent() {
        return Err(format!("its {what} is missing (null)"));
    }
    optional_text(s, what)
}

fn optional_text(s: ArdStr, what: &str) -> Result<String, String> {
    // SAFETY: descriptor strings live in the loaded library's static data.
    match unsafe { s.as_bytes() } {
        None => Ok(String::new()),
        Some(bytes) => {
            String::from_utf8(bytes.to_vec()).map_err(|_| format!("its {what} is not valid UTF-8"))
        }
    }
}

fn option(o: &ArdOptionSpec, i: usize) -> Result<OptionInfo, String> {
    let key = text(o.key, &format!("option {i}'s key"))?;
    let default = if o.default_value.is_absent() {
        None
    } else {
        Some(optional_text(
            o.default_value,
            &format!("option `{key}`'s default"),
        )?)
    };
    Ok(OptionInfo {
        kind: optional_text(o.kind, &format!("option `{key}`'s kind"))?,
        help: optional_text(o.help, &format!("option `{key}`'s help"))?,
        required: o.required != 0,
        default,
        key,
    })
}
