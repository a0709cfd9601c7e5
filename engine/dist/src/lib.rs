//! Data-parallel collectives for ardpipe on c10d, the distributed runtime inside libtorch:
//! a TCPStore rendezvous from the torchrun environment ([`Launch`]), Gloo on CPU and NCCL on
//! CUDA ([`Backend`]), and the operations the trainer needs on a [`ProcessGroup`]: barrier,
//! broadcast from rank 0, and bucketed gradient averaging.

pub mod env;
mod ffi;
mod group;

pub use env::Launch;
pub use group::{Backend, ProcessGroup};

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("distributed launch: {var} {why}\n  fix: {fix}")]
    Env {
        var: String,
        why: String,
        fix: String,
    },
    #[error(
        "rank {rank} could not join the run's rendezvous at {addr}:{port} within {timeout_s:.0} s: {why}\n  fix: {fix}"
    )]
    Rendezvous {
        rank: usize,
        addr: String,
        port: u16,
        timeout_s: f64,
        why: String,
        fix: String,
    },
    #[error(
        "rank {rank}: another process of this run stopped during {op} ({why}). Its own output says why; this process stops too"
    )]
    PeerLost {
        rank: usize,
        op: &'static str,
        why: String,
    },
    #[error(
        "rank {rank}: {op} waited longer than the timeout ({timeout_s:.0} s) for the other processes ({why})\n  fix: a process is stuck or far slower than the others; raise `distributed {{ timeout = ... }}` if the work between collectives is legitimately long"
    )]
    Timeout {
        rank: usize,
        op: &'static str,
        timeout_s: f64,
        why: String,
    },
    #[error("rank {rank}: {op} failed: {why}")]
    Collective {
        rank: usize,
        op: &'static str,
        why: String,
    },
    #[error("{0}")]
    Usage(String),
}
