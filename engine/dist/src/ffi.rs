//! The C ABI of csrc/c10d_bridge.cpp. Tensors cross as tch's `C_tensor` handles, which are
//! `at::Tensor*` on the C++ side.

use std::ffi::{c_char, c_int, c_void};

use torch_sys::C_tensor;

unsafe extern "C" {
    #[allow(clippy::too_many_arguments)]
    pub fn ardpipe_c10d_new(
        backend: *const c_char,
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        store_server: c_int,
        listen_fd: c_int,
        gloo_host: *const c_char,
        device: c_int,
        prefix: *const c_char,
        timeout_ms: i64,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    pub fn ardpipe_c10d_free(group: *mut c_void);
    pub fn ardpipe_c10d_barrier(group: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    pub fn ardpipe_c10d_broadcast(
        group: *mut c_void,
        tensors: *const *mut C_tensor,
        n: usize,
        root: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn ardpipe_c10d_all_reduce_sum(
        group: *mut c_void,
        tensors: *const *mut C_tensor,
        n: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Room for c10d's message (they can name hosts, ports and files).
pub const ERR_LEN: usize = 4096;

/// The NUL-terminated message the bridge wrote into `buf`.
pub fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim().to_string()
}
