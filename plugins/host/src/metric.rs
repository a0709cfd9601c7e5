//! A metric plugin instance: created with options, updated batch by batch, finished once.

use std::ffi::c_void;

use ardpipe_plugin_sdk::abi::{
    ARD_DTYPE_F32, ARD_DTYPE_I64, ArdScalar, ArdScalars, ArdStr, ArdTensor,
};

use crate::Plugin;
use crate::call::call;
use crate::descriptor::MetricFns;
use crate::error::{ErrorKind, PluginError};

/// The most named results one `finish` may return (a confusion matrix of 100 classes is 10,000).
pub const MAX_RESULTS: usize = 1 << 20;

/// The longest result name.
pub const MAX_NAME_BYTES: usize = 4096;

/// Predictions for one batch: f32 logits `[.., classes]` or i64 ids, dense and row-major.
#[derive(Debug, Clone, Copy)]
pub enum Predictions<'a> {
    Logits { data: &'a [f32], shape: &'a [i64] },
    Ids { data: &'a [i64], shape: &'a [i64] },
}

/// A live metric. `finish` consumes it; dropping it destroys the plugin's handle.
pub struct MetricInstance {
    plugin: &'static Plugin,
    fns: MetricFns,
    handle: *mut c_void,
    broken: bool,
}

// SAFETY: one thread at a time (`&mut self`), which the ABI allows across threads.
unsafe impl Send for MetricInstance {}

impl MetricInstance {
    pub(crate) fn create(
        plugin: &'static Plugin,
        fns: MetricFns,
        options_json: &[u8],
    ) -> Result<MetricInstance, PluginError> {
        let mut handle: *mut c_void = std::ptr::null_mut();
        let options = ArdStr {
            ptr: options_json.as_ptr(),
            len: options_json.len(),
        };
        // SAFETY: arguments follow the ABI; `options_json` outlives the call.
        call(plugin, "create", |err| unsafe {
            (fns.create)(options, &mut handle, err)
        })?;
        if handle.is_null() {
            return Err(plugin.error(ErrorKind::BadOutput {
                during: "create",
                detail: "it reported success but returned a null handle".into(),
            }));
        }
        Ok(MetricInstance {
            plugin,
            fns,
            handle,
            broken: false,
        })
    }

    pub fn plugin(&self) -> &'static Plugin {
        self.plugin
    }

    /// Feeds one batch. `labels` are i64 with shape `labels_shape`.
    pub fn update(
        &mut self,
        predictions: Predictions<'_>,
        labels: &[i64],
        labels_shape: &[i64],
    ) -> Result<(), PluginError> {
        if self.broken {
            return Err(self.plugin.error(ErrorKind::Unusable { during: "update" }));
        }
        // Checked here so a C plugin never reads past a buffer because ardpipe got a shape wrong.
        let predictions = match predictions {
            Predictions::Logits { data, shape } => {
                tensor(ARD_DTYPE_F32, data.as_ptr().cast(), data.len(), shape)
            }
            Predictions::Ids { data, shape } => {
                tensor(ARD_DTYPE_I64, data.as_ptr().cast(), data.len(), shape)
            }
        }
        .map_err(|detail| self.invalid(format!("predictions: {detail}")))?;
        let labels = tensor(
            ARD_DTYPE_I64,
            labels.as_ptr().cast(),
            labels.len(),
            labels_shape,
        )
        .map_err(|detail| self.invalid(format!("labels: {detail}")))?;
        let (fns, handle) = (self.fns, self.handle);
        // SAFETY: live handle; tensors borrow buffers that outlive the call.
        let result = call(self.plugin, "update", |err| unsafe {
            (fns.update)(handle, &predictions, &labels, err)
        });
        if let Err(e) = &result
            && matches!(e.kind, ErrorKind::Panicked { .. })
        {
            self.broken = true;
        }
        result
    }

    /// The named scalars over every batch, in the plugin's order.
    pub fn finish(mut self) -> Result<Vec<(String, f64)>, PluginError> {
        if self.broken {
            return Err(self.plugin.error(ErrorKind::Unusable { during: "finish" }));
        }
        let mut out = ArdScalars::empty();
        let (fns, handle) = (self.fns, self.handle);
        // SAFETY: live handle, valid out-pointer.
        let result = call(self.plugin, "finish", |err| unsafe {
            (fns.finish)(handle, &mut out, err)
        });
        let copied = result.and_then(|()| self.copy_scalars(&out));
        if let Some(release) = out.release {
            // SAFETY: released once, with the owner it came with.
            unsafe { release(out.owner) };
        }
        self.broken = true;
        copied
    }

    fn copy_scalars(&self, out: &ArdScalars) -> Result<Vec<(String, f64)>, PluginError> {
        let bad = |detail: String| {
            self.plugin.error(ErrorKind::BadOutput {
                during: "finish",
                detail,
            })
        };
        if out.len == 0 {
            return Ok(Vec::new());
        }
        if out.len > MAX_RESULTS {
            return Err(bad(format!(
                "it claims {} results, more than the {MAX_RESULTS} a metric may report",
                out.len
            )));
        }
        if out.items.is_null() || !(out.items as usize).is_multiple_of(align_of::<ArdScalar>()) {
            return Err(bad(format!(
                "{} results behind a null or misaligned pointer",
                out.len
            )));
        }
        // SAFETY: non-null, aligned, `len` items owned by the plugin until release.
        let items = unsafe { std::slice::from_raw_parts(out.items, out.len) };
        items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if s.name.len > MAX_NAME_BYTES {
                    return Err(bad(format!(
                        "result {i}'s name claims {} bytes, more than the {MAX_NAME_BYTES} allowed",
                        s.name.len
                    )));
                }
                // SAFETY: the name is owned by the plugin until release.
                let name = unsafe { s.name.as_bytes() }
                    .ok_or_else(|| bad(format!("result {i} has no name")))?;
                let name = String::from_utf8(name.to_vec())
                    .map_err(|_| bad(format!("result {i}'s name is not UTF-8")))?;
                Ok((name, s.value))
            })
            .collect()
    }

    fn invalid(&self, detail: String) -> PluginError {
        self.plugin.error(ErrorKind::InvalidInput {
            during: "update",
            detail,
        })
    }
}

fn tensor(dtype: u32, data: *const c_void, len: usize, shape: &[i64]) -> Result<ArdTensor, String> {
    let mut count: u64 = 1;
    for &d in shape {
        let d = u64::try_from(d).map_err(|_| format!("negative size in shape {shape:?}"))?;
        count = count.saturating_mul(d);
    }
    if count != len as u64 {
        return Err(format!(
            "shape {shape:?} holds {count} values but the buffer has {len}"
        ));
    }
    Ok(ArdTensor {
        dtype,
        ndim: shape.len() as u32,
        shape: shape.as_ptr(),
        data,
        len,
    })
}

impl Drop for MetricInstance {
    fn drop(&mut self) {
        // SAFETY: the handle came from `create` and is destroyed exactly once, here.
        unsafe { (self.fns.destroy)(self.handle) };
    }
}
