//! A loader plugin as a Rust iterator of owned records.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::c_void;

use ardpipe_plugin_sdk::abi::{ArdRecord, ArdRecordBatch, ArdStr};

use crate::Plugin;
use crate::call::call;
use crate::descriptor::LoaderFns;
use crate::error::{ErrorKind, PluginError};

/// One record, owned by ardpipe (the plugin's memory is already released).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginRecord {
    pub text: String,
    pub text_pair: Option<String>,
    pub label: Option<String>,
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    Ended,
    /// An error or panic was reported; the handle is only closed from now on.
    Broken,
}

/// Records streamed from a loader plugin, fetched in batches. Yields `Err` once if the plugin
/// fails, then ends. Closing happens on drop.
pub struct LoaderStream {
    plugin: &'static Plugin,
    fns: LoaderFns,
    handle: *mut c_void,
    buffer: VecDeque<PluginRecord>,
    batch_size: usize,
    state: State,
}

// SAFETY: the ABI lets a handle move between threads as long as one thread uses it at a time,
// which `&mut self` on every call guarantees.
unsafe impl Send for LoaderStream {}

/// Records requested per call into the plugin unless `with_batch_size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 256;

/// The most records the host asks for in one call, whatever `with_batch_size` says.
pub const MAX_BATCH_SIZE: usize = 1 << 16;

/// The longest string a record field may be. A plugin's lengths are not trusted beyond what the
/// host can check: a garbage length must be an error, not an attempt to copy terabytes.
pub const MAX_FIELD_BYTES: usize = 64 << 20;

/// The most extra fields one record may carry.
pub const MAX_EXTRA_FIELDS: usize = 4096;

impl LoaderStream {
    pub(crate) fn open(
        plugin: &'static Plugin,
        fns: LoaderFns,
        options_json: &[u8],
        seed: u64,
    ) -> Result<LoaderStream, PluginError> {
        let mut handle: *mut c_void = std::ptr::null_mut();
        let options = ArdStr {
            ptr: options_json.as_ptr(),
            len: options_json.len(),
        };
        // SAFETY: arguments follow the ABI; `options_json` outlives the call.
        call(plugin, "open", |err| unsafe {
            (fns.open)(options, seed, &mut handle, err)
        })?;
        if handle.is_null() {
            return Err(plugin.error(ErrorKind::BadOutput {
                during: "open",
                detail: "it reported success but returned a null handle".into(),
            }));
        }
        Ok(LoaderStream {
            plugin,
            fns,
            handle,
            buffer: VecDeque::new(),
            batch_size: DEFAULT_BATCH_SIZE,
            state: State::Streaming,
        })
    }

    /// How many records to ask the plugin for at a time (1 to `MAX_BATCH_SIZE`).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.clamp(1, MAX_BATCH_SIZE);
        self
    }

    pub fn plugin(&self) -> &'static Plugin {
        self.plugin
    }

    /// The total number of records, when the plugin knows it (`None` also when its `size_hint`
    /// is NULL).
    pub fn size_hint_records(&mut self) -> Result<Option<u64>, PluginError> {
        if self.state == State::Broken {
            return Err(self.plugin.error(ErrorKind::Unusable {
                during: "size_hint",
            }));
        }
        let Some(size_hint) = self.fns.size_hint else {
            return Ok(None);
        };
        let (mut len, mut known) = (0u64, 0u8);
        let handle = self.handle;
        // SAFETY: a live handle and valid out-pointers.
        let result = call(self.plugin, "size_hint", |err| unsafe {
            size_hint(handle, &mut len, &mut known, err)
        });
        if let Err(e) = &result
            && matches!(e.kind, ErrorKind::Panicked { .. })
        {
            self.state = State::Broken;
        }
        result.map(|()| (known != 0).then_some(len))
    }

    /// Asks the plugin for the next batch; `Ok(false)` at the end of the stream.
    fn fetch(&mut self) -> Result<bool, PluginError> {
        let mut batch = ArdRecordBatch::empty();
        let (fns, handle, max) = (self.fns, self.handle, self.batch_size);
        // SAFETY: a live handle and a valid out-pointer.
        let result = call(self.plugin, "next_batch", |err| unsafe {
            (fns.next_batch)(handle, max, &mut batch, err)
        });
        // Release whatever came back, even on error; copy first.
        let copied = result.and_then(|()| self.copy_batch(&batch, max));
        if let Some(release) = batch.release {
            // SAFETY: released once, with the owner it came with.
            unsafe { release(batch.owner) };
        }
        let records = copied?;
        let more = !records.is_empty();
        self.buffer.extend(records);
        Ok(more)
    }

    fn copy_batch(
        &self,
        batch: &ArdRecordBatch,
        asked: usize,
    ) -> Result<Vec<PluginRecord>, PluginError> {
        if batch.len == 0 {
            return Ok(Vec::new());
        }
        let bad = |detail: String| {
            self.plugin.error(ErrorKind::BadOutput {
                during: "next_batch",
                detail,
            })
        };
        // The ABI allows at most `max_records`: a larger `len` cannot describe the plugin's real
        // array, and reading it would run past it.
        if batch.len > asked {
            return Err(bad(format!(
                "it returned {} records when asked for at most {asked} (`max_records`)",
                batch.len
            )));
        }
        if batch.records.is_null()
            || !(batch.records as usize).is_multiple_of(align_of::<ArdRecord>())
        {
            return Err(bad(format!(
                "{} records behind a null or misaligned pointer",
                batch.len
            )));
        }
        // SAFETY: non-null, aligned, `len` records owned by the plugin until release.
        let raw = unsafe { std::slice::from_raw_parts(batch.records, batch.len) };
        raw.iter()
            .enumerate()
            .map(|(i, r)| copy_record(r).map_err(|e| bad(format!("record {i} of the batch: {e}"))))
            .collect()
    }
}

fn copy_record(r: &ArdRecord) -> Result<PluginRecord, String> {
    let text = string(r.text, "text")?.ok_or("it has no text (null)")?;
    let mut extra = BTreeMap::new();
    if r.extra_len > MAX_EXTRA_FIELDS {
        return Err(format!(
            "it claims {} extra fields, more than the {MAX_EXTRA_FIELDS} a record may have",
            r.extra_len
        ));
    }
    if r.extra_len > 0 {
        if r.extra.is_null() {
            return Err(format!(
                "{} extra fields behind a null pointer",
                r.extra_len
            ));
        }
        // SAFETY: non-null, `extra_len` fields owned by the plugin until release.
        let fields = unsafe { std::slice::from_raw_parts(r.extra, r.extra_len) };
        for f in fields {
            let key = string(f.key, "an extra field's key")?.ok_or("an extra field has no key")?;
            let value = string(f.value, "extra field")?.unwrap_or_default();
            extra.insert(key, value);
        }
    }
    Ok(PluginRecord {
        text,
        text_pair: string(r.text_pair, "text_pair")?,
        label: string(r.label, "label")?,
        extra,
    })
}

fn string(s: ArdStr, what: &str) -> Result<Option<String>, String> {
    if !s.ptr.is_null() && s.len > MAX_FIELD_BYTES {
        return Err(format!(
            "its {what} claims {} bytes, more than the {} MiB a field may have",
            s.len,
            MAX_FIELD_BYTES >> 20
        ));
    }
    // SAFETY: the record's strings are owned by the plugin until the batch is released.
    match unsafe { s.as_bytes() } {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes.to_vec()).map(Some).map_err(|e| {
            format!(
                "its {what} is not valid UTF-8 (byte {})",
                e.utf8_error().valid_up_to()
            )
        }),
    }
}

impl Iterator for LoaderStream {
    type Item = Result<PluginRecord, PluginError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                return Some(Ok(record));
            }
            if self.state != State::Streaming {
                return None;
            }
            match self.fetch() {
                Ok(true) => {}
                Ok(false) => self.state = State::Ended,
                Err(e) => {
                    self.state = State::Broken;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Drop for LoaderStream {
    fn drop(&mut self) {
        // SAFETY: the handle came from `open` and is closed exactly once, here.
        unsafe { (self.fns.close)(self.handle) };
    }
}
