//! `ardpipe bench distributed`: data-parallel scaling. The same pipeline trains for a few
//! steps on 1 and on N local workers (`ardpipe run --nproc N`, the same global batch), in
//! alternating order over several rounds; steps/s comes from each run's summary.json (time
//! inside the training loop, so model loading and start-up are not counted).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::args::BenchDistributedArgs;
use crate::exit::Code;

/// One finished run.
struct Sample {
    workers: usize,
    steps_per_s: f64,
    tokens_per_s: f64,
    /// Share of the training loop rank 0 spent in the gradient all-reduce, waiting for the
    /// slower worker included (a worker whose part of the batch pads longer finishes later).
    comm_share: f64,
}

pub fn run(a: BenchDistributedArgs) -> miette::Result<Code> {
    let mut counts = if a.nproc.is_empty() {
        vec![1, 2]
    } else {
        a.nproc.clone()
    };
    counts.dedup();
    if counts.contains(&0) || a.rounds == 0 || a.steps == 0 || a.threads < 1 {
        return Err(miette::miette!(
            "--nproc, --rounds, --steps and --threads must all be at least 1"
        ));
    }
    if !a.pipeline.is_file() {
        return Err(miette::miette!(
            help = "run from the repository root, or pass --pipeline FILE",
            "{} is not a file",
            a.pipeline.display()
        ));
    }
    let exe = std::env::current_exe()
        .map_err(|e| miette::miette!("cannot find the ardpipe executable: {e}"))?;
    let (out, temporary) = match &a.out {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("ardpipe-bench-distributed-{}", std::process::id())),
            true,
        ),
    };
    eprintln!(
        "{}: {} steps per run, {} thread(s) per worker, workers {:?}, {} round(s)",
        a.pipeline.display(),
        a.steps,
        a.threads,
        counts,
        a.rounds
    );
    let mut samples = Vec::new();
    let mut first_run = None;
    for round in 0..a.rounds {
        // Alternate the order, so a slow drift of the machine does not favour one side.
        let order: Vec<usize> = if round % 2 == 0 {
            counts.clone()
        } else {
            counts.iter().rev().copied().collect()
        };
        for n in order {
            let dir = out.join(format!("round-{round}-workers-{n}"));
            let _ = std::fs::remove_dir_all(&dir);
            let s = one_run(&exe, &a, n, &dir)?;
            eprintln!(
                "  round {} · {n} worker(s): {:.3} steps/s, {:.0} tokens/s, {:.1} % in all-reduce",
                round + 1,
                s.steps_per_s,
                s.tokens_per_s,
                100.0 * s.comm_share
            );
            first_run.get_or_insert(dir);
            samples.push(s);
        }
    }
    let table = table(&counts, &samples);
    println!("{table}");
    if let Some(path) = &a.report {
        let mut md = String::from("# Data-parallel scaling\n\n");
        let _ = writeln!(
            md,
            "Written by `ardpipe bench distributed` ({} steps of `{}` per run, {} thread(s) per worker, \
             median of {} alternating round(s); steps/s is measured inside the training loop).\n",
            a.steps,
            a.pipeline.display(),
            a.threads,
            a.rounds
        );
        for line in super::study_report::machine(first_run.as_deref()) {
            let _ = writeln!(md, "- {line}");
        }
        let _ = writeln!(md, "\n{table}");
        ardpipe_engine::rundir::write_atomic(path, md.as_bytes())
            .map_err(|e| miette::miette!("{e}"))?;
        eprintln!("wrote {}", path.display());
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&out);
    }
    Ok(Code::Success)
}

fn one_run(exe: &Path, a: &BenchDistributedArgs, n: usize, dir: &Path) -> miette::Result<Sample> {
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg(&a.pipeline)
        .arg("-q")
        .args(["--threads", &a.threads.to_string()])
        .args(["--set", &format!("train.steps={}", a.steps)])
        // Evaluations and checkpoints only at the end (outside the timed loop).
        .args(["--set", &format!("train.eval_every={} steps", a.steps)])
        .args([
            "--set",
            &format!("train.checkpoint_every={} steps", a.steps),
        ])
        .args(["--set", &format!("output.dir=\"{}\"", dir.display())]);
    for s in &a.overrides.set {
        cmd.args(["--set", s]);
    }
    if n > 1 {
        cmd.args(["--nproc", &n.to_string()]);
    }
    let o = cmd
        .output()
        .map_err(|e| miette::miette!("cannot start `ardpipe run`: {e}"))?;
    if !o.status.success() {
        return Err(miette::miette!(
            "the run with {n} worker(s) failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let path = dir.join(ardpipe_engine::rundir::SUMMARY);
    let text =
        std::fs::read_to_string(&path).map_err(|e| miette::miette!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| miette::miette!("{}: {e}", path.display()))?;
    let steps = v["steps"].as_f64().unwrap_or(0.0);
    let seconds = v["train_seconds"].as_f64().unwrap_or(0.0);
    if steps <= 0.0 || seconds <= 0.0 {
        return Err(miette::miette!(
            "{} has no steps or training time",
            path.display()
        ));
    }
    Ok(Sample {
        workers: n,
        steps_per_s: steps / seconds,
        tokens_per_s: v["tokens_per_second"].as_f64().unwrap_or(0.0),
        comm_share: v["communication_seconds"].as_f64().unwrap_or(0.0) / seconds,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians per worker count; speed-up and efficiency against the smallest count.
fn table(counts: &[usize], samples: &[Sample]) -> String {
    let med = |n: usize, f: fn(&Sample) -> f64| {
        median(samples.iter().filter(|s| s.workers == n).map(f).collect())
    };
    let base_n = *counts.iter().min().unwrap_or(&1);
    let base = med(base_n, |s| s.steps_per_s);
    let mut t = String::from(
        "| workers | steps/s (median) | tokens/s (median) | speed-up | scaling efficiency | time in the gradient all-reduce, waiting for the slower worker included |\n|---|---|---|---|---|---|\n",
    );
    for &n in counts {
        let sps = med(n, |s| s.steps_per_s);
        let speedup = sps / base;
        let _ = writeln!(
            t,
            "| {n} | {sps:.3} | {:.0} | {speedup:.2}x | {:.0} % | {:.1} % |",
            med(n, |s| s.tokens_per_s),
            100.0 * speedup / (n as f64 / base_n as f64),
            100.0 * med(n, |s| s.comm_share)
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efficiency_is_speed_up_over_the_ideal() {
        let s = |workers, steps_per_s| Sample {
            workers,
            steps_per_s,
            tokens_per_s: 100.0 * steps_per_s,
            comm_share: if workers == 1 { 0.0 } else { 0.02 },
        };
        let t = table(
            &[1, 2],
            &[s(1, 1.0), s(2, 1.8), s(1, 1.2), s(2, 1.6), s(1, 0.4)],
        );
        // Medians: 1.0 (of 0.4, 1.0, 1.2) and 1.7 (of 1.6, 1.8).
        assert!(
            t.contains("| 1 | 1.000 | 100 | 1.00x | 100 % | 0.0 % |"),
            "{t}"
        );
        assert!(
            t.contains("| 2 | 1.700 | 170 | 1.70x | 85 % | 2.0 % |"),
            "{t}"
        );
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
