//! Exit codes, documented in the README ("Exit codes").

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    /// The command did what was asked.
    Success = 0,
    /// The command failed: a bad pipeline, data, model or plugin, or a run that stopped on an error.
    Failure = 1,
    // 2 is clap's: the command line itself was wrong.
    /// The environment is not ready (libtorch or example assets missing): `ardpipe doctor` says what to fix.
    Environment = 3,
    /// A run stopped by SIGINT (Ctrl-C) after writing a checkpoint: `run --resume` continues it.
    Interrupted = 130,
    /// A run stopped by SIGTERM (Slurm preemption, Kubernetes eviction) after a checkpoint.
    Terminated = 143,
}
