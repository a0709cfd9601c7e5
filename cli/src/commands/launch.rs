//! Data-parallel launch: joining the process group a launcher set up (torchrun, `srun`, a
//! Kubernetes PyTorchJob — anything that sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT),
//! and `ardpipe run --nproc N`, which is such a launcher for the workers of one machine.

use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ardpipe_dsl::Pipeline;
use ardpipe_dsl::pipeline::{Device, DistBackend};
use ardpipe_engine::dist::{Backend, Launch, ProcessGroup};

use crate::exit::Code;

/// How long the other workers get to stop by themselves after one failed (they notice the
/// lost peer at their next collective) before they are killed.
const GRACE: Duration = Duration::from_secs(30);

/// The process group of this worker, or None for an ordinary single-process run.
pub fn join_group(pipeline: &Pipeline) -> miette::Result<Option<Arc<ProcessGroup>>> {
    let launch = Launch::from_env().map_err(|e| miette::miette!("{e}"))?;
    let Some(launch) = launch else {
        return Ok(None);
    };
    let d = &pipeline.distributed;
    let backend = match d.backend {
        DistBackend::Gloo => Backend::Gloo,
        DistBackend::Nccl => Backend::Nccl,
        DistBackend::Auto => match pipeline.model.device {
            Device::Cuda { .. } => Backend::Nccl,
            Device::Auto if ardpipe_engine::models::runtime::enable_cuda().is_ok() => Backend::Nccl,
            _ => Backend::Gloo,
        },
    };
    tracing::info!(
        "rank {} of {}: joining {}:{} ({})",
        launch.rank,
        launch.world_size,
        launch.master_addr,
        launch.master_port,
        backend.name()
    );
    let timeout = Duration::from_secs_f64(d.timeout_seconds);
    let group =
        ProcessGroup::init(&launch, backend, timeout).map_err(|e| miette::miette!("{e}"))?;
    Ok(Some(Arc::new(group)))
}

/// `ardpipe run ... --nproc N`: start N workers of this same command on this machine, with the
/// launcher environment set, and wait for them. A worker that fails stops the run.
pub fn local_workers(n: usize, threads: Option<i32>) -> miette::Result<Code> {
    let exe = std::env::current_exe()
        .map_err(|e| miette::miette!("cannot find the ardpipe executable to start workers: {e}"))?;
    let args = worker_args(std::env::args().skip(1).collect());
    let port = free_port()?;
    // Like torchrun's OMP_NUM_THREADS=1 default, but using the machine: the cores split
    // evenly, unless the user chose (--threads stays in the workers' command line).
    let split = (threads.is_none() && std::env::var_os("OMP_NUM_THREADS").is_none())
        .then(|| (cores() / n).max(1) as i32);
    eprintln!(
        "starting {n} workers on this machine (rendezvous 127.0.0.1:{port}{})",
        threads
            .or(split)
            .map(|t| format!(", {t} thread(s) each"))
            .unwrap_or_default()
    );
    let mut children: Vec<Child> = Vec::with_capacity(n);
    for rank in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.args(&args);
        if let Some(t) = split {
            cmd.arg("--threads").arg(t.to_string());
        }
        cmd.env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("GROUP_RANK", "0")
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env_remove("TORCHELASTIC_USE_AGENT_STORE");
        stop_with_parent(&mut cmd);
        match cmd.spawn() {
            Ok(c) => children.push(c),
            Err(e) => {
                stop_all(&mut children);
                return Err(miette::miette!("cannot start worker {rank}: {e}"));
            }
        }
    }
    Ok(supervise(children))
}

/// A worker outlives nothing: if this launcher dies (killed by a scheduler, SIGKILL, a crash),
/// the kernel sends the worker SIGTERM, instead of leaving it training unsupervised.
fn stop_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let launcher = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Its own process group: a terminal's Ctrl-C reaches the launcher alone, which
            // passes it on once (the same signal twice would stop a worker without a checkpoint).
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The launcher may have died before the prctl took effect.
            if libc::getppid() as u32 != launcher {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// The command line minus `--nproc N`; the workers get the launcher environment instead.
fn worker_args(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for a in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        if a == "--nproc" {
            skip_next = true;
            continue;
        }
        if a.starts_with("--nproc=") {
            continue;
        }
        out.push(a);
    }
    out
}

/// Wait for every worker; on the first failure give the rest [`GRACE`] to stop, then kill them.
fn supervise(mut children: Vec<Child>) -> Code {
    let mut status: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut failed_at: Option<(usize, Instant)> = None;
    let mut forwarded = false;
    loop {
        // SIGINT / SIGTERM to the launcher: every worker stops after the same step with a
        // checkpoint (they agree on it), and exits 130 / 143 as the launcher then does.
        if !forwarded && let Some(signal) = ardpipe_engine::rundir::stop_requested() {
            forwarded = true;
            for c in children.iter() {
                // SAFETY: kill(2) on a child process of ours.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, signal);
                }
            }
        }
        for (rank, c) in children.iter_mut().enumerate() {
            if status[rank].is_none()
                && let Ok(Some(s)) = c.try_wait()
            {
                status[rank] = Some(s);
                let stopped = forwarded && matches!(s.code(), Some(130 | 143));
                if !s.success() && !stopped && failed_at.is_none() {
                    eprintln!("worker {rank} {}; the other workers stop too", describe(&s));
                    failed_at = Some((rank, Instant::now()));
                }
            }
        }
        if status.iter().all(Option::is_some) {
            break;
        }
        if let Some((_, t)) = failed_at
            && t.elapsed() > GRACE
        {
            for (rank, c) in children.iter_mut().enumerate() {
                if status[rank].is_none() {
                    eprintln!(
                        "worker {rank} did not stop within {} s: killing it",
                        GRACE.as_secs()
                    );
                    let _ = c.kill();
                    status[rank] = c.wait().ok();
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match failed_at {
        None if forwarded && status.iter().any(|s| s.is_some_and(|s| !s.success())) => {
            match ardpipe_engine::rundir::stop_requested() {
                Some(libc::SIGINT) => Code::Interrupted,
                _ => Code::Terminated,
            }
        }
        None => Code::Success,
        Some((rank, _)) => match status[rank].and_then(|s| s.code()) {
            Some(0) | None => Code::Failure,
            Some(c) if c == Code::Environment as i32 => Code::Environment,
            Some(_) => Code::Failure,
        },
    }
}

fn describe(s: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "stopped".into(),
    }
}

fn stop_all(children: &mut [Child]) {
    for c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A TCP port free on 127.0.0.1 right now (the OS picks it; rank 0 binds it moments later).
fn free_port() -> miette::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| miette::miette!("cannot find a free local port for the rendezvous: {e}"))?;
    let port = l
        .local_addr()
        .map_err(|e| miette::miette!("cannot read the rendezvous port: {e}"))?
        .port();
    Ok(port)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_the_command_line_without_nproc() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            worker_args(args(&[
                "run",
                "p.ard",
                "--nproc",
                "2",
                "--set",
                "train.steps=3"
            ])),
            args(&["run", "p.ard", "--set", "train.steps=3"])
        );
        assert_eq!(
            worker_args(args(&["-q", "run", "--nproc=4", "p.ard"])),
            args(&["-q", "run", "p.ard"])
        );
    }
}
