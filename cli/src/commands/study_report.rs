//! The study's results report: runs' `summary.json` files aggregated per method (mean ± sample
//! standard deviation over seeds), the parameters and memory each method needed, the rank maps
//! ARD-LoRA learned, and a plain verdict of where ARD-LoRA does and does not beat each baseline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What each run wrote: the engine's own summary type.
pub use ardpipe_engine::train::RunSummary as Summary;

/// A finished run's summary, or None when the run did not finish (or left no summary).
pub fn read_summary(run_dir: &Path) -> Option<Summary> {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).ok()?;
    let s: Summary = serde_json::from_str(&text).ok()?;
    (!s.interrupted && s.final_eval.is_some()).then_some(s)
}

pub struct RunOutcome {
    pub pipeline: String,
    pub variant: String,
    pub seed: u64,
    pub run_dir: PathBuf,
    pub log: PathBuf,
    pub summary: Option<Summary>,
    /// Finished by an earlier invocation of the study (kept, not run again).
    pub earlier: bool,
}

impl MethodStats {
    fn metric(&self, name: &str) -> Option<(f64, f64)> {
        self.metrics
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

impl RunOutcome {
    pub fn one_line(&self) -> String {
        match &self.summary {
            None => format!("FAILED (log: {})", self.log.display()),
            Some(s) => {
                let metrics = s
                    .final_eval
                    .iter()
                    .flat_map(|e| &e.metrics)
                    .map(|(k, v)| format!("{k} {}", num(*v)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "{metrics}; {} trainable; {:.0} s; {:.0} MiB",
                    count(s.exported_parameters as f64),
                    s.wall_seconds,
                    s.peak_rss_mb
                )
            }
        }
    }
}

pub struct FileInfo {
    pub file: String,
    pub name: String,
    pub description: Option<String>,
    pub steps: Option<u64>,
    pub variants: Vec<String>,
}

pub struct StudySettings {
    pub command: String,
    pub quick: bool,
    pub seeds: usize,
    pub files: Vec<FileInfo>,
    pub elapsed_s: f64,
}

/// Mean and sample standard deviation (0 for one value).
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn num(v: f64) -> String {
    if v.abs() >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The metric that decides "better" for a task, and whether higher is better.
fn primary(metrics: &[String]) -> Option<(&str, bool)> {
    for (m, higher) in [("perplexity", false), ("accuracy", true), ("loss", false)] {
        if metrics.iter().any(|x| x == m) {
            return Some((m, higher));
        }
    }
    None
}

/// One method's aggregate over its finished seeds.
struct MethodStats {
    variant: String,
    runs: usize,
    metrics: Vec<(String, (f64, f64))>,
    trainable: f64,
    peak_rss: f64,
    wall: f64,
    tokens_per_s: f64,
    rank: Option<(f64, f64)>,
    first: Option<Summary>,
}

fn stats(variant: &str, runs: &[&RunOutcome]) -> MethodStats {
    let done: Vec<&Summary> = runs.iter().filter_map(|r| r.summary.as_ref()).collect();
    // In the pipeline's order of metrics, not alphabetical.
    let mut by_metric: Vec<(String, Vec<f64>)> = Vec::new();
    for s in &done {
        for (k, v) in s.final_eval.iter().flat_map(|e| &e.metrics) {
            match by_metric.iter_mut().find(|(name, _)| name == k) {
                Some((_, vs)) => vs.push(*v),
                None => by_metric.push((k.clone(), vec![*v])),
            }
        }
    }
    let avg = |f: &dyn Fn(&Summary) -> f64| {
        if done.is_empty() {
            f64::NAN
        } else {
            done.iter().map(|s| f(s)).sum::<f64>() / done.len() as f64
        }
    };
    let ranks: Vec<f64> = done.iter().filter_map(|s| s.mean_effective_rank).collect();
    MethodStats {
        variant: variant.to_string(),
        runs: done.len(),
        metrics: by_metric
            .into_iter()
            .map(|(k, v)| (k, mean_std(&v)))
            .collect(),
        trainable: avg(&|s| s.exported_parameters as f64),
        peak_rss: avg(&|s| s.peak_rss_mb),
        wall: avg(&|s| s.wall_seconds),
        tokens_per_s: avg(&|s| s.tokens_per_second),
        rank: (!ranks.is_empty()).then(|| mean_std(&ranks)),
        first: done.first().map(|s| (*s).clone()),
    }
}

pub fn render(settings: &StudySettings, outcomes: &[RunOutcome]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Results: ARD-LoRA against the baselines\n");
    let _ = writeln!(
        md,
        "Written by `ardpipe study`{}; do not edit by hand. Regenerate with the command below.\n",
        if settings.quick {
            " --quick (a smoke-sized study: the numbers say nothing about the methods)"
        } else {
            ""
        }
    );
    let _ = writeln!(md, "- command: `{}`", settings.command);
    let _ = writeln!(
        md,
        "- seeds per method: {}; values are mean ± sample standard deviation over seeds",
        settings.seeds
    );
    let _ = writeln!(
        md,
        "- whole study: {:.1} minutes of wall time",
        settings.elapsed_s / 60.0
    );
    for line in machine(outcomes.iter().map(|o| o.run_dir.as_path())) {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(
        md,
        "- trainable parameters: adapters, α and trained head tensors; ARD-LoRA's are counted at \
         the ranks its α reached (what compaction keeps and export writes); `full` trains every \
         linear layer and the head (embeddings stay frozen)"
    );
    let _ = writeln!(
        md,
        "- peak memory: each run's own process (VmHWM), model and data included; wall time: the \
         whole run (loading, evaluation and export included)\n"
    );

    for file in &settings.files {
        render_file(&mut md, file, outcomes);
    }

    let failed: Vec<&RunOutcome> = outcomes.iter().filter(|o| o.summary.is_none()).collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "## Runs that failed\n");
        for o in failed {
            let _ = writeln!(
                md,
                "- {} {} seed {}: see `{}`",
                o.pipeline,
                o.variant,
                o.seed,
                o.log.display()
            );
        }
        md.push('\n');
    }
    md
}

fn render_file(md: &mut String, file: &FileInfo, outcomes: &[RunOutcome]) {
    let runs: Vec<&RunOutcome> = outcomes
        .iter()
        .filter(|o| o.pipeline == file.name)
        .collect();
    let _ = writeln!(md, "## {}\n", file.name);
    if let Some(d) = &file.description {
        let _ = writeln!(md, "{d}. ");
    }
    let _ = writeln!(
        md,
        "Pipeline `{}`{}.\n",
        file.file,
        file.steps
            .map(|s| format!(", {s} training steps per run"))
            .unwrap_or_default()
    );
    let methods: Vec<MethodStats> = file
        .variants
        .iter()
        .map(|v| {
            let mine: Vec<&RunOutcome> = runs.iter().copied().filter(|o| &o.variant == v).collect();
            stats(v, &mine)
        })
        .collect();
    let mut metric_names: Vec<String> = Vec::new();
    for m in &methods {
        for (k, _) in &m.metrics {
            if !metric_names.contains(k) {
                metric_names.push(k.clone());
            }
        }
    }
    let full = methods
        .iter()
        .find(|m| m.variant == "full")
        .map(|m| m.trainable);
    let _ = write!(md, "| method | runs |");
    for k in &metric_names {
        let _ = write!(md, " {k} |");
    }
    let _ = writeln!(
        md,
        " trainable | % of full | peak RSS | wall | train tokens/s | mean rank |"
    );
    let _ = writeln!(
        md,
        "|---|---|{}---|---|---|---|---|---|",
        "---|".repeat(metric_names.len())
    );
    for m in &methods {
        let _ = write!(md, "| {} | {} |", m.variant, m.runs);
        for k in &metric_names {
            match m.metric(k) {
                // One seed has no spread to show.
                Some((mean, _)) if m.runs < 2 => {
                    let _ = write!(md, " {} |", num(mean));
                }
                Some((mean, std)) => {
                    let _ = write!(md, " {} ± {} |", num(mean), num(std));
                }
                None => md.push_str(" — |"),
            }
        }
        let pct = match full {
            Some(f) if f > 0.0 && m.runs > 0 => format!("{:.2}%", 100.0 * m.trainable / f),
            _ => "—".into(),
        };
        let rank = match m.rank {
            Some((r, _)) if m.runs < 2 => format!("{r:.2}"),
            Some((r, s)) => format!("{r:.2} ± {s:.2}"),
            None => "—".into(),
        };
        if m.runs == 0 {
            let _ = writeln!(md, " — | — | — | — | — | — |");
        } else {
            let _ = writeln!(
                md,
                " {} | {pct} | {:.0} MiB | {:.0} s | {:.0} | {rank} |",
                count(m.trainable),
                m.peak_rss,
                m.wall,
                m.tokens_per_s
            );
        }
    }
    md.push('\n');
    // Reference points: the base model before training, the majority class.
    let first = runs.iter().find_map(|o| o.summary.as_ref());
    if let Some(s) = first {
        if let Some(init) = &s.initial_eval {
            let vals: Vec<String> = init
                .iter()
                .map(|(k, v)| format!("{k} {}", num(*v)))
                .collect();
            let _ = writeln!(
                md,
                "Before training (the base model): {}.\n",
                vals.join(", ")
            );
        }
        if let Some(b) = s.majority_baseline {
            let _ = writeln!(
                md,
                "Always predicting the most frequent training class scores accuracy {}.\n",
                num(b)
            );
        }
    }
    verdict(md, &methods, &metric_names);
    rank_maps(md, &methods);
}

/// Plain sentences: for every ARD-LoRA variant against every other method, on the primary
/// metric, whether it wins by more than the seeds' spread, loses, or cannot be told apart.
fn verdict(md: &mut String, methods: &[MethodStats], metric_names: &[String]) {
    let Some((metric, higher)) = primary(metric_names) else {
        return;
    };
    let ard: Vec<&MethodStats> = methods
        .iter()
        .filter(|m| m.rank.is_some() && m.runs > 0)
        .collect();
    if ard.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "**Where ARD-LoRA stands** (on {metric}, {} is better; \"within noise\" means the \
         difference of means is smaller than the combined standard deviation of the seeds):\n",
        if higher { "higher" } else { "lower" }
    );
    for a in &ard {
        let Some((am, asd)) = a.metric(metric) else {
            continue;
        };
        // Against the baselines (ARD-LoRA variants among themselves are a knob study).
        for b in methods.iter().filter(|b| b.rank.is_none() && b.runs > 0) {
            let Some((bm, bsd)) = b.metric(metric) else {
                continue;
            };
            let noise = (asd * asd + bsd * bsd).sqrt();
            let better = if higher { am - bm } else { bm - am };
            let what = if a.runs < 2 || b.runs < 2 {
                if better > 0.0 {
                    "scores better than (one seed: no noise estimate)"
                } else {
                    "does not beat (one seed: no noise estimate)"
                }
            } else if better > noise {
                "beats"
            } else if -better > noise {
                "does not beat: it is worse than"
            } else {
                "does not beat: it is within noise of"
            };
            let params = if b.trainable > 0.0 {
                format!("{:.2}× the trainable parameters", a.trainable / b.trainable)
            } else {
                String::new()
            };
            let spread = if a.runs < 2 || b.runs < 2 {
                String::new()
            } else {
                format!(" (± {})", num(noise))
            };
            let _ = writeln!(
                md,
                "- `{}` {what} `{}`: {} vs {}{spread}, with {params}, {:.2}× the peak memory",
                a.variant,
                b.variant,
                num(am),
                num(bm),
                a.peak_rss / b.peak_rss
            );
        }
    }
    md.push('\n');
}

/// The ranks ARD-LoRA learned, first seed: per module kind, a row per layer, a column per head.
fn rank_maps(md: &mut String, methods: &[MethodStats]) {
    for m in methods {
        let Some(s) = &m.first else { continue };
        if s.rank_map.is_empty() {
            continue;
        }
        let _ = writeln!(
            md,
            "Rank map `{}` learned (first seed; rows: module and layer, columns: heads or groups):\n",
            m.variant
        );
        let _ = writeln!(md, "```");
        for r in &s.rank_map {
            let ranks: Vec<String> = r.ranks.iter().map(|x| format!("{x:>2}")).collect();
            let _ = writeln!(
                md,
                "{:<34} {:>2}  {}",
                r.module,
                r.layer.map(|l| l.to_string()).unwrap_or_default(),
                ranks.join(" ")
            );
        }
        let _ = writeln!(md, "```\n");
    }
}

/// The machine and versions: CPU and memory from /proc, the rest from a run's manifest.
pub(crate) fn machine<'a>(run_dirs: impl IntoIterator<Item = &'a std::path::Path>) -> Vec<String> {
    let mut lines = Vec::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
    });
    let manifest = run_dirs.into_iter().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()
    });
    let cpus = manifest
        .as_ref()
        .and_then(|m| m["host"]["cpus"].as_u64())
        .map(|c| c.to_string())
        .unwrap_or_else(|| "?".into());
    lines.push(format!(
        "machine: {} ({cpus} CPUs), {} memory, {}",
        cpu.unwrap_or_else(|| "unknown CPU".into()),
        mem.map(|kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into()),
        std::env::consts::OS
    ));
    if let Some(m) = &manifest {
        lines.push(format!(
            "ardpipe {}, libtorch {}, {} libtorch threads per run, device {}",
            m["versions"]["ardpipe"].as_str().unwrap_or("?"),
            m["versions"]["libtorch"].as_str().unwrap_or("?"),
            m["host"]["torch_threads"],
            m["device"].as_str().unwrap_or("?")
        ));
        if let Some(c) = m["git"]["commit"].as_str() {
            let dirty = m["git"]["dirty"].as_bool() == Some(true);
            lines.push(format!(
                "git commit {c}{}",
                if dirty {
                    " (with uncommitted changes)"
                } else {
                    ""
                }
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(acc: f64, params: usize, rank: Option<f64>) -> Summary {
        Summary {
            run_dir: "runs/x".into(),
            steps: 10,
            stopped_early: false,
            interrupted: false,
            stop_signal: None,
            final_eval: Some(ardpipe_engine::train::EvalResult {
                step: 10,
                metrics: vec![("loss".into(), 1.0), ("accuracy".into(), acc)],
                primary: vec![],
            }),
            initial_eval: None,
            majority_baseline: Some(0.1),
            exported_parameters: params,
            base_parameters: 1000,
            mean_effective_rank: rank,
            rank_map: vec![],
            wall_seconds: 10.0,
            train_seconds: 9.0,
            communication_seconds: 0.0,
            tokens_per_second: 1.0,
            peak_rss_mb: 100.0,
        }
    }

    fn outcome(variant: &str, seed: u64, s: Option<Summary>) -> RunOutcome {
        RunOutcome {
            pipeline: "p".into(),
            variant: variant.into(),
            seed,
            run_dir: PathBuf::from("/nonexistent"),
            log: PathBuf::from(format!("/logs/{variant}-{seed}.log")),
            summary: s,
            earlier: false,
        }
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn report_aggregates_seeds_and_says_where_ard_loses() {
        let outcomes = vec![
            outcome("ard_lora", 1, Some(summary(0.40, 300, Some(4.0)))),
            outcome("ard_lora", 2, Some(summary(0.42, 300, Some(5.0)))),
            outcome("lora_r8", 1, Some(summary(0.50, 200, None))),
            outcome("lora_r8", 2, Some(summary(0.52, 200, None))),
            outcome("full", 1, Some(summary(0.30, 1000, None))),
            outcome("full", 2, None),
        ];
        let settings = StudySettings {
            command: "ardpipe study".into(),
            quick: false,
            seeds: 2,
            files: vec![FileInfo {
                file: "p.ard".into(),
                name: "p".into(),
                description: None,
                steps: Some(10),
                variants: vec!["ard_lora".into(), "lora_r8".into(), "full".into()],
            }],
            elapsed_s: 60.0,
        };
        let md = render(&settings, &outcomes);
        assert!(
            md.contains("| ard_lora | 2 | 1.0000 ± 0.0000 | 0.4100 ± 0.0141 | 300 | 30.00% |"),
            "{md}"
        );
        assert!(
            md.contains("`ard_lora` does not beat: it is worse than `lora_r8`: 0.4100 vs 0.5100"),
            "{md}"
        );
        // One seed of `full` finished: no noise estimate, said so.
        assert!(
            md.contains("`ard_lora` scores better than (one seed: no noise estimate) `full`"),
            "{md}"
        );
        assert!(
            md.contains("- p full seed 2: see `/logs/full-2.log`"),
            "{md}"
        );
    }
}
