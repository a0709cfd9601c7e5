//! libtorch's operator profiler (csrc/profile.cpp): every aten operator run between
//! [`Profile::start`] and [`Profile::finish`] is written to a Chrome trace, the same format
//! `torch.profiler` exports, so the benchmark can set ardpipe's time per operator beside the
//! Python peer's.

use std::ffi::{CString, c_char, c_int};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ops::call;

unsafe extern "C" {
    fn ardpipe_profile_start(err: *mut c_char, err_len: usize) -> c_int;
    fn ardpipe_profile_stop(path: *const c_char, err: *mut c_char, err_len: usize) -> c_int;
}

/// Whether a [`Profile`] records: libtorch would let a second one start over the first and
/// hand the first one's events to whichever stops first.
static RECORDING: AtomicBool = AtomicBool::new(false);

/// A profiler recording on this process. Dropping it without [`Profile::finish`] stops it and
/// discards the events.
pub struct Profile {
    running: bool,
}

impl Profile {
    /// Start recording (CPU operators). Fails when a profile is already recording.
    pub fn start() -> Result<Self, String> {
        if RECORDING.swap(true, Ordering::SeqCst) {
            return Err("a profile is already recording in this process".into());
        }
        if let Err(e) = call(|e, n| unsafe { ardpipe_profile_start(e, n) }) {
            RECORDING.store(false, Ordering::SeqCst);
            return Err(e);
        }
        Ok(Self { running: true })
    }

    /// Stop recording and write the events to `path` as a Chrome trace (JSON).
    pub fn finish(mut self, path: &Path) -> Result<(), String> {
        self.running = false;
        let c = CString::new(path.to_string_lossy().as_bytes());
        let r = match &c {
            Ok(c) => call(|e, n| unsafe { ardpipe_profile_stop(c.as_ptr(), e, n) }),
            Err(_) => {
                let _ = call(|e, n| unsafe { ardpipe_profile_stop(std::ptr::null(), e, n) });
                Err(format!("{} contains a NUL byte", path.display()))
            }
        };
        RECORDING.store(false, Ordering::SeqCst);
        r
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if self.running {
            let _ = call(|e, n| unsafe { ardpipe_profile_stop(std::ptr::null(), e, n) });
            RECORDING.store(false, Ordering::SeqCst);
        }
    }
}
