//! Data-parallel training over c10d with Gloo, on loopback only: two CPU workers train the
//! adapter one worker trains at the same global batch; a torchrun-style launch (the
//! environment alone, and torchrun itself, from the Python peer) works; a killed
//! worker stops the others with a clear error instead of a hang, and the run resumes; a wrong
//! launcher environment, an unreachable rendezvous and a batch too small to split say so.
//!
//! MiniLM's own config has dropout 0.1, and dropout masks depend on how a batch is cut (each
//! process draws its own); the equivalence test uses the same weights with dropout off, from a
//! folder that links to the real files and changes only config.json.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{stderr, stdout};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    crate::fresh_dir(&format!("dist-{name}"))
}

/// MiniLM with dropout off: links to the real weights and tokenizer, an edited config.json.
fn minilm_without_dropout(dir: &Path) -> PathBuf {
    let src = repo().join(".ardpipe/assets/minilm");
    let dst = dir.join("minilm-no-dropout");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "config.json" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        std::os::unix::fs::symlink(
            std::fs::canonicalize(entry.path()).unwrap(),
            dst.join(&name),
        )
        .unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["hidden_dropout_prob"], 0.1, "MiniLM's config changed");
    cfg["hidden_dropout_prob"] = 0.0.into();
    cfg["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(dst.join("config.json"), cfg.to_string()).unwrap();
    dst
}

/// `ardpipe run pipelines/quickstart.ard` made short, into `out`.
fn quickstart(out: &Path, steps: u32, extra: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ardpipe"));
    cmd.current_dir(repo())
        .args(["run", "pipelines/quickstart.ard", "-q", "--threads", "1"])
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000");
    for s in [
        format!("train.steps={steps}"),
        // A high rate: the adapter must move far beyond the tolerance of the comparison.
        "train.lr=2e-2".into(),
        "train.batch_size=8".into(),
        "train.eval_every=3 steps".into(),
        "train.checkpoint_every=3 steps".into(),
        "dataset.tweets.split.validation=1%".into(),
        "evaluate.batch_size=32".into(),
        format!("output.dir=\"{}\"", out.display()),
    ] {
        cmd.arg("--set").arg(s);
    }
    cmd.args(extra);
    cmd
}

fn ok(o: &Output) -> String {
    let text = stdout(o) + &stderr(o);
    assert!(o.status.success(), "{text}");
    text
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A worker as a launcher would start it: the torchrun environment and nothing else.
fn worker(mut cmd: Command, rank: usize, world: usize, port: u16) -> Command {
    cmd.env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    cmd
}

/// Every f32 tensor of a safetensors file whose name contains `part`, by name.
fn tensors(file: &Path, part: &str) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n.contains(part))
        .map(|(n, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{n}");
            let f = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (n, f)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn final_eval_loss(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["final"] == true)
        .and_then(|r| r["loss"].as_f64())
        .expect("a final evaluation")
}

/// Two workers of a 30-step quickstart into `out`, past their first checkpoint (rank 0's stderr
/// piped, for the error it will print).
fn two_workers_past_a_checkpoint(out: &Path, extra: &[String]) -> (Child, Child) {
    let port = free_port();
    let mut rank0 = worker(quickstart(out, 30, extra), 0, 2, port)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rank1 = worker(quickstart(out, 30, extra), 1, 2, port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_a_checkpoint(&mut rank0, out);
    (rank0, rank1)
}

/// Wait until the run in `out` has written its first checkpoint, while `child` still runs.
fn wait_for_a_checkpoint(child: &mut Child, out: &Path) {
    let latest = out.join("checkpoints/latest");
    let t0 = Instant::now();
    while !latest.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(t0.elapsed() < Duration::from_secs(300), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for `child` to exit by itself within `limit`; its exit status, seconds taken and stderr.
fn exits_by_itself(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, f64, String) {
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} later");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, t0.elapsed().as_secs_f64(), err)
}

#[test]
fn two_gloo_workers_train_the_adapter_one_worker_trains() {
    let dir = scratch("equal");
    let model = minilm_without_dropout(&dir);
    let m = vec![
        "--set".into(),
        format!("model.path=\"{}\"", model.display()),
    ];
    let one = dir.join("one");
    ok(&quickstart(&one, 6, &m).output().unwrap());
    let two = dir.join("two");
    let mut args = m.clone();
    args.extend(["--nproc".into(), "2".into()]);
    let text = ok(&quickstart(&two, 6, &args).output().unwrap());
    assert!(
        text.contains("starting 2 workers on this machine"),
        "{text}"
    );
    // Rank 0 alone wrote the run: one summary, each step logged once.
    assert_eq!(text.matches("\nrun        ").count(), 1, "{text}");
    let metrics = std::fs::read_to_string(two.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.matches("\"final\":true").count(), 1, "{metrics}");
    let manifest = std::fs::read_to_string(two.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"completed\""), "{manifest}");
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["processes"]["world_size"], 2, "{manifest}");
    assert_eq!(m["processes"]["backend"], "gloo", "{manifest}");
    let shown = crate::ardpipe(&["inspect", "run", two.to_str().unwrap()]);
    assert!(
        stdout(&shown).contains("processes  2 (data parallel, gloo)"),
        "{}",
        stdout(&shown)
    );

    // Same global batch, same seeded order: the same training up to float rounding (batches
    // cut in two pad to other lengths, sums go in another order, Adam magnifies both a little).
    let (l1, l2) = (final_eval_loss(&one), final_eval_loss(&two));
    assert!(
        (l1 - l2).abs() < 1e-2 * l1,
        "final eval loss {l1} (1 worker) vs {l2} (2)"
    );
    let a = tensors(&one.join("adapter/adapter_model.safetensors"), "lora_B");
    let b = tensors(&two.join("adapter/adapter_model.safetensors"), "lora_B");
    assert_eq!(a.len(), 12);
    assert_eq!(
        a.iter().map(|t| &t.0).collect::<Vec<_>>(),
        b.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    // lora_B starts at zero: its norm is how far training moved it.
    let (mut diff, mut moved) = (0.0f64, 0.0f64);
    for ((_, x), (_, y)) in a.iter().zip(&b) {
        for (p, q) in x.iter().zip(y) {
            diff += ((p - q) as f64).powi(2);
            moved += (*p as f64).powi(2);
        }
    }
    let rel = (diff / moved).sqrt();
    eprintln!("lora_B: |2 workers - 1 worker| / |1 worker| = {rel:.2e} (tolerance 1e-2)");
    assert!(moved.sqrt() > 0.1, "training did not move the adapter");
    assert!(
        rel < 1e-2,
        "2 workers differ from 1 by {rel:.2e} (relative)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torchrun_style_environment_launches_the_workers() {
    let dir = scratch("env");
    let port = free_port();
    let out = dir.join("run");
    let children: Vec<Child> = (0..2)
        .map(|rank| {
            worker(quickstart(&out, 4, &[]), rank, 2, port)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let text0 = ok(&outputs[0]);
    let text1 = ok(&outputs[1]);
    assert!(text0.contains("\nrun        "), "{text0}");
    // Rank 1 trains quietly and prints no summary: the run is rank 0's.
    assert!(!text1.contains("run        "), "{text1}");
    assert!(out.join("summary.json").is_file());

    // torchrun itself (its agent hosts the rendezvous store), from the Python peer's torch.
    let torchrun = repo().join(".ardpipe/peer-venv/bin/torchrun");
    assert!(
        torchrun.is_file(),
        "{} is missing: torchrun comes with the Python peer venv that the README's first \
         command installs (scripts/setup.sh without --no-peer)",
        torchrun.display()
    );
    let out = dir.join("torchrun");
    let inner = quickstart(&out, 4, &[]);
    let mut cmd = Command::new(&torchrun);
    cmd.current_dir(repo())
        .args(["--no-python", "--nnodes", "1", "--nproc-per-node", "2"])
        .arg(format!("--master-port={}", free_port()))
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000");
    let text = ok(&cmd.output().unwrap());
    assert_eq!(text.matches("\nrun        ").count(), 1, "{text}");
    assert!(out.join("summary.json").is_file(), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_worker_stops_the_others_and_the_run_resumes() {
    let dir = scratch("kill");
    let out = dir.join("run");
    let (mut rank0, mut rank1) = two_workers_past_a_checkpoint(&out, &[]);
    rank1.kill().unwrap(); // SIGKILL
    let _ = rank1.wait();
    // The survivor must stop by itself (the collective timeout is 30 minutes: a hang would
    // show here as the 120 s limit).
    let (status, took, err) = exits_by_itself(&mut rank0, Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("another process of this run stopped"), "{err}");
    eprintln!("rank 0 stopped {took:.1} s after rank 1 was killed");

    // Resume on one process: it says what it does with the different world size, and goes on.
    let resumed = Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .current_dir(repo())
        .args(["run", "-q", "--threads", "1", "--resume"])
        .arg(&out)
        .env("ARDPIPE_COLOR", "never")
        .output()
        .unwrap();
    let text = ok(&resumed);
    assert!(
        text.contains("this run trained on 2 process(es) and resumes on 1"),
        "{text}"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "completed", "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_launch_says_what_is_wrong() {
    let dir = scratch("bad");
    let out = dir.join("run");
    // RANK without WORLD_SIZE.
    let o = quickstart(&out, 4, &[]).env("RANK", "0").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("WORLD_SIZE is not set, but RANK=0 is"),
        "{}",
        stderr(&o)
    );
    // A rank past the world.
    let o = worker(quickstart(&out, 4, &[]), 2, 2, 1).output().unwrap();
    assert!(
        stderr(&o).contains("ranks run from 0 to WORLD_SIZE - 1 = 1"),
        "{}",
        stderr(&o)
    );
    // Nobody hosts the rendezvous: rank 1 gives up after the pipeline's timeout.
    let port = free_port();
    let t0 = Instant::now();
    let o = worker(
        quickstart(&out, 4, &["--set".into(), "distributed.timeout=3 s".into()]),
        1,
        2,
        port,
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "rank 1 could not join the run's rendezvous at 127.0.0.1:{port} within 3 s"
        )),
        "{err}"
    );
    assert!(err.contains("is rank 0 running"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(60), "{err}");
    // A global batch smaller than the number of workers: every worker refuses, the launcher
    // reports the first failure.
    let o = quickstart(&out, 4, &["--nproc".into(), "9".into()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("train.batch_size is 8 but the run has 9 processes"),
        "{err}"
    );
    assert!(err.contains("the other workers stop too"), "{err}");
    assert!(!out.join("summary.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_scaling_benchmark_compares_one_and_two_workers() {
    let dir = scratch("bench");
    let report = dir.join("scaling.md");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .current_dir(repo())
        .args(["bench", "distributed", "--steps", "2", "--rounds", "1"])
        .arg("--out")
        .arg(dir.join("runs"))
        .arg("--report")
        .arg(&report)
        .args(["--set", "train.batch_size=4"])
        .args(["--set", "dataset.tweets.split.validation=1%"])
        .env("ARDPIPE_COLOR", "never")
        .output()
        .unwrap();
    let text = ok(&o);
    assert!(text.contains("| 1 | "), "{text}");
    assert!(text.contains("| 2 | "), "{text}");
    assert!(text.contains("1.00x | 100 % | 0.0 % |"), "{text}");
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.contains("# Data-parallel scaling") && md.contains("- machine: "),
        "{md}"
    );
    for n in [1, 2] {
        let s = dir.join(format!("runs/round-0-workers-{n}/summary.json"));
        assert!(s.is_file(), "{}", s.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The other methods and the causal LM path under two workers: AdaLoRA (its allocator runs on
/// broadcast adapters every step), full fine-tuning (22 M gradients in several buckets, a merged
/// export) and ARD-LoRA on SmolLM2 with a compaction every step (ranks decided on rank 0's α).
#[test]
fn every_method_and_the_causal_lm_train_on_two_workers() {
    let dir = scratch("methods");
    let run = |file: &str, variant: &str, sets: &[&str]| {
        let out = dir.join(variant);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ardpipe"));
        cmd.current_dir(repo())
            .args(["run", file, "-q", "--nproc", "2", "--threads", "1"])
            .args(["--variant", variant])
            .args(["--set", &format!("output.dir=\"{}\"", out.display())])
            .env("ARDPIPE_COLOR", "never");
        for s in sets {
            cmd.args(["--set", s]);
        }
        let text = ok(&cmd.output().unwrap());
        assert!(out.join("summary.json").is_file(), "{variant}: {text}");
        (out, text)
    };
    let small = ["train.batch_size=4", "dataset.tweets.split.test=1%"];
    let (out, _) = run(
        "pipelines/study/classification.ard",
        "adalora_r8",
        &[&["train.steps=8", "train.lr=2e-2"], &small[..]].concat(),
    );
    let cfg = std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap();
    assert!(cfg.contains("ADALORA"), "{cfg}");
    let (out, _) = run(
        "pipelines/study/classification.ard",
        "full",
        &[&["train.steps=2"], &small[..]].concat(),
    );
    assert!(out.join("merged/model.safetensors").is_file());
    let (_, text) = run(
        "pipelines/study/causal_lm.ard",
        "ard_lambda_1",
        &[
            "train.steps=4",
            "adapter.attention.compaction.every=1 steps",
            "train.batch_size=2",
            "dataset.shakespeare.max_rows=2000",
            "dataset.shakespeare.split.validation=2%",
        ],
    );
    assert!(text.contains("perplexity"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker that stops answering (SIGSTOP, as a hung process would) makes the others fail after
/// `distributed.timeout`, with the timeout named, instead of waiting forever; two processes then
/// resume the run.
#[test]
fn a_stuck_worker_times_the_others_out() {
    let dir = scratch("stuck");
    let out = dir.join("run");
    let timeout = ["--set".to_string(), "distributed.timeout=10 s".to_string()];
    let (mut rank0, mut rank1) = two_workers_past_a_checkpoint(&out, &timeout);
    let stop = Command::new("kill")
        .args(["-STOP", &rank1.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let (status, waited, err) = exits_by_itself(&mut rank0, Duration::from_secs(120));
    let _ = rank1.kill();
    let _ = rank1.wait();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("waited longer than the timeout (10 s) for the other processes"),
        "{err}"
    );
    assert!(waited >= 5.0, "gave up after {waited:.1} s: {err}");
    eprintln!("rank 0 gave up {waited:.1} s after rank 1 stopped");

    // The same two processes resume it from its last checkpoint.
    let resumed = Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .current_dir(repo())
        .args(["run", "-q", "--threads", "1", "--nproc", "2", "--resume"])
        .arg(&out)
        .env("ARDPIPE_COLOR", "never")
        .output()
        .unwrap();
    let text = ok(&resumed);
    assert!(
        !text.contains("resumes on"),
        "same world size, no warning: {text}"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "completed", "{m}");
    assert_eq!(m["resumptions"][0]["processes"]["world_size"], 2, "{m}");
    assert!(
        m["resumptions"][0]["from_step"].as_u64().unwrap() >= 3,
        "{m}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["PPid:", &pid.to_string()])
        {
            out.push(child);
        }
    }
    out
}

/// Running, not gone and not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
}

/// The TCP sockets `pids` listen on, as (address, port), from /proc/net/tcp{,6}.
fn listening_sockets(pids: &[u32]) -> Vec<(std::net::IpAddr, u16)> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is hex, each 32-bit word in host (little-endian) order; 0A = LISTEN.
            if f.len() < 10 || f[3] != "0A" || !inodes.contains(f[9]) {
                continue;
            }
            let (addr, port) = f[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            let words: Vec<u32> = (0..addr.len() / 8)
                .map(|i| {
                    u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16)
                        .unwrap()
                        .swap_bytes()
                })
                .collect();
            let ip: std::net::IpAddr = match words.as_slice() {
                [a] => std::net::Ipv4Addr::from(*a).into(),
                [a, b, c, d] => {
                    let v6 = std::net::Ipv6Addr::from(
                        ((*a as u128) << 96)
                            | ((*b as u128) << 64)
                            | ((*c as u128) << 32)
                            | *d as u128,
                    );
                    v6.to_ipv4_mapped().map_or(v6.into(), Into::into)
                }
                _ => panic!("unexpected address {addr} in {table}"),
            };
            out.push((ip, port));
        }
    }
    out
}

/// `--nproc` workers listen on loopback only (libtorch's store and Gloo would bind every
/// interface, unauthenticated) and do not outlive their launcher (a scheduler's SIGKILL, a
/// crash): the kernel stops them.
#[test]
fn local_workers_listen_on_loopback_only_and_die_with_their_launcher() {
    let dir = scratch("launcher");
    let out = dir.join("run");
    // 400 steps: minutes of work, so workers that kept running could not pass for stopped ones.
    let mut launcher = quickstart(&out, 400, &["--nproc".into(), "2".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_a_checkpoint(&mut launcher, &out);
    let workers = children_of(launcher.id());
    assert_eq!(workers.len(), 2, "{workers:?}");
    let sockets = listening_sockets(&workers);
    eprintln!("listening sockets of the workers: {sockets:?}");
    // Rank 0's store, and Gloo's listener in each worker.
    assert!(
        sockets.len() >= 3,
        "listening sockets of the workers: {sockets:?}"
    );
    assert!(
        sockets.iter().all(|(ip, _)| ip.is_loopback()),
        "a worker listens beyond loopback: {sockets:?}"
    );
    launcher.kill().unwrap(); // SIGKILL: no chance to clean up
    let _ = launcher.wait();
    let killed = Instant::now();
    while workers.iter().any(|&w| alive(w)) {
        if killed.elapsed() > Duration::from_secs(20) {
            for w in &workers {
                let _ = Command::new("kill").args(["-9", &w.to_string()]).status();
            }
            panic!("workers {workers:?} still running 20 s after their launcher was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "workers stopped {:.1} s after the launcher was killed",
        killed.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
