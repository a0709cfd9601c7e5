//! A c10d process group and the collectives the trainer runs on it.

use std::ffi::{CString, c_void};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::IntoRawFd;
use std::ptr::NonNull;
use std::time::Duration;

use tch::{Device, Kind, Tensor};

use crate::{DistError, Launch, ffi};

/// The collective engine under a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors over TCP.
    Gloo,
    /// NCCL: CUDA tensors over NVLink / InfiniBand / TCP.
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// Whether this build can create the backend (NCCL needs a CUDA build with its headers).
    pub fn compiled_in(self) -> bool {
        match self {
            Backend::Gloo => true,
            Backend::Nccl => cfg!(ardpipe_nccl),
        }
    }
}

/// This process's membership in a multi-process run. Dropping it leaves the group.
pub struct ProcessGroup {
    raw: NonNull<c_void>,
    rank: usize,
    world_size: usize,
    local_rank: usize,
    backend: Backend,
    timeout: Duration,
}

// SAFETY: c10d process groups are built to be driven from any thread (collectives are queued to
// the backend's own worker threads); ardpipe issues them from one thread at a time, in the
// same order on every rank, as c10d requires.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("backend", &self.backend)
            .finish()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from ardpipe_c10d_new and is freed once, here.
        unsafe { ffi::ardpipe_c10d_free(self.raw.as_ptr()) }
    }
}

impl ProcessGroup {
    /// Meet the other processes of `launch` and create the process group. Blocks until all
    /// `world_size` processes have joined, or fails after `timeout`.
    pub fn init(launch: &Launch, backend: Backend, timeout: Duration) -> Result<Self, DistError> {
        if !backend.compiled_in() {
            return Err(DistError::Usage(format!(
                "this ardpipe was built without {} support: NCCL needs a CUDA libtorch and the CUDA and NCCL \
                 headers when ardpipe is built (scripts/setup.sh --gpu, with CUDA_HOME or NCCL_INCLUDE_DIR set); \
                 until then train on the CPU with `distributed {{ backend = gloo }}`",
                backend.name()
            )));
        }
        let c = |s: &str| {
            CString::new(s).map_err(|_| DistError::Usage(format!("{s:?} contains a NUL byte")))
        };
        let name = c(backend.name())?;
        let host = c(&launch.master_addr)?;
        let local = LocalRendezvous::new(launch, timeout)?;
        let gloo_host = c(local.gloo_host.as_deref().unwrap_or(""))?;
        // A launcher's agent store holds its own keys too; keep ours apart, per restart.
        let prefix = c(&format!("ardpipe/attempt_{}", launch.restart_count))?;
        let mut err = vec![0u8; ffi::ERR_LEN];
        let timeout_ms = timeout.as_millis().clamp(1, i64::MAX as u128) as i64;
        // SAFETY: every pointer is valid for the call; `err` has `ERR_LEN` bytes.
        let raw = unsafe {
            ffi::ardpipe_c10d_new(
                name.as_ptr(),
                host.as_ptr(),
                launch.master_port as i32,
                launch.rank as i32,
                launch.world_size as i32,
                launch.hosts_store() as i32,
                // The store takes the socket over (and closes it): ownership passes here.
                local.store_listener.map_or(-1, |l| l.into_raw_fd()),
                gloo_host.as_ptr(),
                launch.local_rank as i32,
                prefix.as_ptr(),
                timeout_ms,
                err.as_mut_ptr().cast(),
                err.len(),
            )
        };
        let Some(raw) = NonNull::new(raw) else {
            return Err(rendezvous_error(launch, timeout, ffi::message(&err)));
        };
        Ok(ProcessGroup {
            raw,
            rank: launch.rank,
            world_size: launch.world_size,
            local_rank: launch.local_rank,
            backend,
            timeout,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Rank 0: the process that owns the run directory.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Wait until every process has reached this point.
    pub fn barrier(&self) -> Result<(), DistError> {
        let mut err = vec![0u8; ffi::ERR_LEN];
        // SAFETY: `raw` is a live group; `err` has `ERR_LEN` bytes.
        let rc = unsafe {
            ffi::ardpipe_c10d_barrier(self.raw.as_ptr(), err.as_mut_ptr().cast(), err.len())
        };
        self.check(rc, "a barrier", &err)
    }

    /// Overwrite `tensors` on every rank with rank 0's values (any layout and dtype; sent as
    /// few flat buffers as `bucket_bytes` allows).
    pub fn broadcast_from_root(
        &self,
        tensors: &[Tensor],
        bucket_bytes: usize,
    ) -> Result<(), DistError> {
        self.bucketed(
            tensors,
            bucket_bytes,
            "a broadcast from rank 0",
            |s, flats| s.raw_broadcast(flats, 0),
        )
    }

    /// Replace every defined tensor in `grads` by its mean over all ranks. The tensors go in
    /// flat buckets of at most `bucket_bytes` (f32, or f64 for f64 tensors), all launched
    /// before any is awaited; an undefined gradient counts as zeros and stays undefined.
    pub fn average(&self, grads: &[Tensor], bucket_bytes: usize) -> Result<(), DistError> {
        let world = self.world_size as f64;
        self.bucketed(grads, bucket_bytes, "a gradient all-reduce", |s, flats| {
            s.raw_all_reduce_sum(flats)?;
            for f in flats.iter() {
                let _ = f.shallow_clone().g_div_scalar_(world);
            }
            Ok(())
        })
    }

    /// Sum `tensors` (contiguous, dense) over all ranks in place.
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        for t in tensors {
            if !t.is_contiguous() {
                return Err(DistError::Usage(
                    "all_reduce_sum needs contiguous tensors".into(),
                ));
            }
        }
        self.raw_all_reduce_sum(tensors)
    }

    fn raw_all_reduce_sum(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        self.with_tensors(tensors, "an all-reduce", |g, ptrs, n, err, len| {
            // SAFETY: see `with_tensors`.
            unsafe { ffi::ardpipe_c10d_all_reduce_sum(g, ptrs, n, err, len) }
        })
    }

    fn raw_broadcast(&self, tensors: &[Tensor], root: usize) -> Result<(), DistError> {
        self.with_tensors(tensors, "a broadcast", |g, ptrs, n, err, len| {
            // SAFETY: see `with_tensors`.
            unsafe { ffi::ardpipe_c10d_broadcast(g, ptrs, n, root as i32, err, len) }
        })
    }

    /// Call a bridge collective on `tensors`. The handles stay alive for the call (the bridge
    /// waits for every collective it launched) and the bridge writes into the tensors'
    /// storage, which their owners expect (the collectives work in place).
    fn with_tensors(
        &self,
        tensors: &[Tensor],
        what: &'static str,
        call: impl FnOnce(
            *mut c_void,
            *const *mut torch_sys::C_tensor,
            usize,
            *mut std::ffi::c_char,
            usize,
        ) -> i32,
    ) -> Result<(), DistError> {
        let ptrs: Vec<*mut torch_sys::C_tensor> =
            tensors.iter().map(|t| t.as_ptr() as *mut _).collect();
        let mut err = vec![0u8; ffi::ERR_LEN];
        let rc = call(
            self.raw.as_ptr(),
            ptrs.as_ptr(),
            ptrs.len(),
            err.as_mut_ptr().cast(),
            err.len(),
        );
        self.check(rc, what, &err)
    }

    /// Pack `tensors` into flat buckets (per device and precision, in order), run `op` on all
    /// buckets at once, and copy the results back.
    fn bucketed(
        &self,
        tensors: &[Tensor],
        bucket_bytes: usize,
        what: &'static str,
        op: impl Fn(&Self, &[Tensor]) -> Result<(), DistError>,
    ) -> Result<(), DistError> {
        let _ng = tch::no_grad_guard();
        let buckets = plan_buckets(tensors, bucket_bytes);
        let flats: Vec<Tensor> = buckets
            .iter()
            .map(|b| {
                let parts: Vec<Tensor> = b
                    .members
                    .iter()
                    .map(|&i| {
                        let t = &tensors[i];
                        if t.defined() {
                            t.detach().reshape([-1]).to_kind(b.kind)
                        } else {
                            Tensor::zeros([0], (b.kind, b.device))
                        }
                    })
                    .collect();
                Tensor::cat(&parts, 0)
            })
            .collect();
        op(self, &flats).map_err(|e| match e {
            DistError::Collective { rank, why, .. } => DistError::Collective {
                rank,
                op: what,
                why,
            },
            DistError::PeerLost { rank, why, .. } => DistError::PeerLost {
                rank,
                op: what,
                why,
            },
            DistError::Timeout {
                rank,
                timeout_s,
                why,
                ..
            } => DistError::Timeout {
                rank,
                op: what,
                timeout_s,
                why,
            },
            other => other,
        })?;
        for (b, flat) in buckets.iter().zip(&flats) {
            let mut at = 0i64;
            for &i in &b.members {
                let t = &tensors[i];
                if !t.defined() {
                    continue;
                }
                let n = t.numel() as i64;
                let src = flat.narrow(0, at, n).view(t.size().as_slice());
                t.shallow_clone().copy_(&src);
                at += n;
            }
        }
        Ok(())
    }

    fn check(&self, rc: i32, op: &'static str, err: &[u8]) -> Result<(), DistError> {
        if rc == 0 {
            return Ok(());
        }
        Err(classify(self.rank, op, self.timeout, ffi::message(err)))
    }
}

/// One flat buffer's members (indices into the tensor list), on one device, in one precision.
#[derive(Debug, PartialEq)]
struct Bucket {
    device: Device,
    kind: Kind,
    members: Vec<usize>,
    bytes: usize,
}

/// Consecutive tensors of one device and precision share a bucket until it holds
/// `bucket_bytes`; a tensor larger than that gets a bucket of its own. Every rank builds the
/// same buckets from the same tensor list, which is what pairs the collectives up.
fn plan_buckets(tensors: &[Tensor], bucket_bytes: usize) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    let mut open: Vec<usize> = Vec::new(); // indices into `out` of buckets still filling
    for (i, t) in tensors.iter().enumerate() {
        let (device, kind, numel) = if t.defined() {
            let kind = if t.kind() == Kind::Double {
                Kind::Double
            } else {
                Kind::Float
            };
            (t.device(), kind, t.numel())
        } else {
            (Device::Cpu, Kind::Float, 0)
        };
        let bytes = numel * if kind == Kind::Double { 8 } else { 4 };
        let slot = open
            .iter()
            .copied()
            .find(|&b| out[b].device == device && out[b].kind == kind);
        match slot {
            Some(b)
                if bytes == 0
                    || out[b].bytes == 0
                    || out[b].bytes + bytes <= bucket_bytes.max(1) =>
            {
                out[b].members.push(i);
                out[b].bytes += bytes;
            }
            _ => {
                open.retain(|&b| !(out[b].device == device && out[b].kind == kind));
                open.push(out.len());
                out.push(Bucket {
                    device,
                    kind,
                    members: vec![i],
                    bytes,
                });
            }
        }
    }
    out
}

/// c10d's message, sorted into what the user can act on.
fn classify(rank: usize, op: &'static str, timeout: Duration, why: String) -> DistError {
    let lower = why.to_lowercase();
    let peer_gone = [
        "connection closed by peer",
        "connection reset by peer",
        "broken pipe",
        "socket closed",
        "connection refused",
        "eof",
    ];
    if peer_gone.iter().any(|p| lower.contains(p)) {
        return DistError::PeerLost { rank, op, why };
    }
    if lower.contains("timed out") || lower.contains("timeout") {
        return DistError::Timeout {
            rank,
            op,
            timeout_s: timeout.as_secs_f64(),
            why,
        };
    }
    DistError::Collective { rank, op, why }
}

/// Where a rendezvous on this machine listens. libtorch's TCPStore server and Gloo bind every
/// interface by default, and neither authenticates its peers; when MASTER_ADDR is a loopback
/// address (what `ardpipe run --nproc` and a single-node launcher use), nothing needs to be
/// reachable from elsewhere, so both are bound to that address instead. A multi-node run
/// keeps libtorch's defaults and, as with torch.distributed, must run on a trusted network
/// (docs/DISTRIBUTED.md).
struct LocalRendezvous {
    /// The store's listening socket, bound here (rank 0 only).
    store_listener: Option<TcpListener>,
    /// The address Gloo binds to, unless GLOO_SOCKET_IFNAME chooses an interface.
    gloo_host: Option<String>,
}

impl LocalRendezvous {
    fn new(launch: &Launch, timeout: Duration) -> Result<Self, DistError> {
        let addrs: Vec<SocketAddr> = (launch.master_addr.as_str(), launch.master_port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default();
        let loopback = !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback());
        if !loopback {
            return Ok(LocalRendezvous {
                store_listener: None,
                gloo_host: None,
            });
        }
        let store_listener = if launch.hosts_store() {
            let listener = TcpListener::bind(addrs[0]).map_err(|e| {
                rendezvous_error(
                    launch,
                    timeout,
                    format!("cannot listen on {}: {e}", addrs[0]),
                )
            })?;
            Some(listener)
        } else {
            None
        };
        let gloo_host = std::env::var_os("GLOO_SOCKET_IFNAME")
            .is_none()
            .then(|| addrs[0].ip().to_string());
        Ok(LocalRendezvous {
            store_listener,
            gloo_host,
        })
    }
}

fn rendezvous_error(launch: &Launch, timeout: Duration, why: String) -> DistError {
    let lower = why.to_lowercase();
    let fix = if lower.contains("address already in use") {
        format!(
            "port {} is taken on this machine: choose another MASTER_PORT (or let `ardpipe run --nproc N` pick a free one)",
            launch.master_port
        )
    } else if launch.hosts_store() {
        format!(
            "rank 0 hosts the rendezvous and waited for all {} processes: start every rank with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE, and check that they can reach this machine",
            launch.world_size
        )
    } else {
        format!(
            "is rank 0 running, is {} the address of its machine as seen from here, and is port {} open there? Every rank needs the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE",
            launch.master_addr, launch.master_port
        )
    };
    DistError::Rendezvous {
        rank: launch.rank,
        addr: launch.master_addr.clone(),
        port: launch.master_port,
        timeout_s: timeout.as_secs_f64(),
        why,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fill_in_order_per_precision_and_big_tensors_stand_alone() {
        let f = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let d = |n: i64| Tensor::zeros([n], (Kind::Double, Device::Cpu));
        // 40-byte buckets: f32 of 4 + 4 + 4 elements = 48 bytes → two buckets.
        let ts = vec![f(4), d(2), f(4), f(4), f(100), Tensor::new()];
        let b = plan_buckets(&ts, 40);
        let members: Vec<Vec<usize>> = b.iter().map(|b| b.members.clone()).collect();
        assert_eq!(members, vec![vec![0, 2], vec![1], vec![3], vec![4, 5]]);
        assert_eq!(b[1].kind, Kind::Double);
        assert_eq!(b[3].bytes, 400);
    }

    #[test]
    fn errors_are_sorted_into_what_the_user_can_do() {
        let t = Duration::from_secs(60);
        let lost = classify(
            1,
            "an all-reduce",
            t,
            "[pair.cc:534] Connection closed by peer [127.0.0.1]:4000".into(),
        );
        assert!(matches!(lost, DistError::PeerLost { .. }), "{lost}");
        assert!(
            lost.to_string()
                .contains("another process of this run stopped")
        );
        let slow = classify(
            0,
            "a barrier",
            t,
            "Timed out waiting 60000ms for recv operation".into(),
        );
        assert!(
            slow.to_string()
                .contains("raise `distributed { timeout = ... }`"),
            "{slow}"
        );
    }
}
