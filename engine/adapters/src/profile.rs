//! libtorch's operator profiler (csrc/profile.cpp): every aten operator run between
//! [`Profile::start`] and [`Profile::finish`] is written to a Chrome trace, the same format
//! `torch.profiler` exports, so the benchmark can set ardpipe's time per operator beside the
//! Python peer's.

use std::ffi::{CString, c_char, c_int};
use std::path::Path;

use crate::ops::call;

unsafe extern "C" {
    fn ardpipe_profile_start(err: *mut c_char, err_len: usize) -> c_int;
    fn ardpipe_profile_stop(path: *const c_char, err: *mut c_char, err_len: usize) -> c_int;
}

/// A profiler recording on this process. Dropping it without [`Profile::finish`] stops it and
/// discards the events.
pub struct Profile {
    running: bool,
}

impl Profile {
    /// Start recording (CPU operators). Fails when a profiler is already on.
    pub fn start() -> Result<Self, String> {
        call(|e, n| unsafe { ardpipe_profile_start(e, n) })?;
        Ok(Self { running: true })
    }

    /// Stop recording and write the events to `path` as a Chrome trace (JSON).
    pub fn finish(mut self, path: &Path) -> Result<(), String> {
        self.running = false;
        let c = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
        call(|e, n| unsafe { ardpipe_profile_stop(c.as_ptr(), e, n) })
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if self.running {
            let _ = call(|e, n| unsafe { ardpipe_profile_stop(c"/dev/null".as_ptr(), e, n) });
        }
    }
}
