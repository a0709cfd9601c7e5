//! The study's results report. Per pipeline and variant: the learning-rate factor chosen on the
//! validation split (the evaluation split, say test, is read only for the chosen factor), the
//! evaluation metrics over seeds (mean ± sample standard deviation), the score as a percentage of full fine-tuning's,
//! what the method exports, allocates and holds in memory, paired per-seed comparisons of each
//! ARD-LoRA variant with the baselines (95% Student-t intervals), the comparison at a matched
//! parameter budget, and the Pareto frontier of exported parameters against score
//! (drawn by `study_svg`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::study_svg;

/// What each run wrote: the engine's own summary type.
pub use ardpipe_engine::train::RunSummary as Summary;

/// A baseline is "at no larger budget" than an ARD-LoRA variant when it exports at most this
/// many times the ARD-LoRA variant's parameters.
pub const BUDGET_SLACK: f64 = 1.1;

/// A finished run's summary, or None when the run did not finish (or left no summary).
pub fn read_summary(run_dir: &Path) -> Option<Summary> {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).ok()?;
    let s: Summary = serde_json::from_str(&text).ok()?;
    (!s.interrupted && s.final_eval.is_some()).then_some(s)
}

/// The run's adapter methods from its `plan.json` (`adapters[].method`, in order, each once,
/// joined by `+`), or None when the plan cannot be read.
pub fn read_family(run_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run_dir.join("plan.json")).ok()?;
    let plan: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut methods: Vec<&str> = Vec::new();
    for a in plan["adapters"].as_array()? {
        let m = a["method"].as_str()?;
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    (!methods.is_empty()).then(|| methods.join("+"))
}

/// A variant's method when no run left a plan: its name without trailing size segments
/// (`ard_lora_r2` → `ard_lora`, `lora_r16` → `lora`).
fn family_from_name(variant: &str) -> String {
    let parts: Vec<&str> = variant.split('_').collect();
    let mut keep = parts.len();
    while keep > 1 {
        let p = parts[keep - 1];
        let mut chars = p.chars();
        let sized = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && !p[1..].is_empty()
            && p[1..].chars().all(|c| c.is_ascii_digit());
        if !sized {
            break;
        }
        keep -= 1;
    }
    parts[..keep].join("_")
}

pub struct RunOutcome {
    pub pipeline: String,
    pub variant: String,
    pub seed: u64,
    /// The factor on the pipeline's learning-rate schedule (`train.lr_scale`).
    pub lr_factor: f64,
    pub run_dir: PathBuf,
    pub log: PathBuf,
    pub summary: Option<Summary>,
    /// The adapter methods of the run's plan (`read_family`).
    pub family: Option<String>,
    /// Finished by an earlier invocation of the study (kept, not run again).
    pub earlier: bool,
}

impl RunOutcome {
    pub fn one_line(&self) -> String {
        match &self.summary {
            None => format!("FAILED (log: {})", self.log.display()),
            Some(s) => {
                let metrics = |e: &Option<ardpipe_engine::train::EvalResult>| {
                    e.iter()
                        .flat_map(|e| &e.metrics)
                        .map(|(k, v)| format!("{k} {}", num(*v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let validation = if s.validation_eval.is_some() {
                    format!("validation {}; ", metrics(&s.validation_eval))
                } else {
                    String::new()
                };
                format!(
                    "{validation}evaluation {}; {} exported; {:.0} s; {:.0} MiB",
                    metrics(&s.final_eval),
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
    /// The split `evaluate` scores (`test`, `validation`), when the pipeline evaluates.
    pub eval_split: Option<String>,
    pub variants: Vec<String>,
}

pub struct StudySettings {
    pub command: String,
    pub quick: bool,
    pub seeds: usize,
    /// The learning-rate factors every variant ran at (`[1]` without `--lr-grid`).
    pub lr_grid: Vec<f64>,
    pub files: Vec<FileInfo>,
    pub elapsed_s: f64,
}

/// The markdown report and its figures (file name, SVG text), to be written side by side.
pub struct Report {
    pub markdown: String,
    pub figures: Vec<(String, String)>,
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

/// The 97.5% quantile of Student's t with `df` degrees of freedom (a two-sided 95% interval):
/// the standard table for 1 to 30, the normal quantile beyond.
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        _ => 1.96,
    }
}

/// A paired comparison: per-seed differences `a − b` over the seeds both finished.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    pub n: usize,
    pub mean: f64,
    /// Half-width of the 95% interval of the mean difference (None with one pair).
    pub half: Option<f64>,
}

pub fn paired(a: &[(u64, f64)], b: &[(u64, f64)]) -> Option<Paired> {
    let d: Vec<f64> = a
        .iter()
        .filter_map(|(seed, x)| b.iter().find(|(s, _)| s == seed).map(|(_, y)| x - y))
        .filter(|d| d.is_finite())
        .collect();
    if d.is_empty() {
        return None;
    }
    let (mean, sd) = mean_std(&d);
    let half = (d.len() >= 2).then(|| t975(d.len() - 1) * sd / (d.len() as f64).sqrt());
    Some(Paired {
        n: d.len(),
        mean,
        half,
    })
}

/// The verdict on `a` against `b` from their paired difference `a − b`.
pub fn verdict(p: &Paired, higher_is_better: bool) -> &'static str {
    let Some(h) = p.half else {
        return "one seed: no interval";
    };
    let (lo, hi) = (p.mean - h, p.mean + h);
    let (better, worse) = if higher_is_better {
        (lo > 0.0, hi < 0.0)
    } else {
        (hi < 0.0, lo > 0.0)
    };
    if better {
        "better"
    } else if worse {
        "worse"
    } else {
        "no detectable difference (CI includes 0)"
    }
}

/// The score as a percentage of full fine-tuning's: score/full for a higher-is-better metric,
/// full/score for a lower-is-better one (perplexity, loss), so that 100% is full's and more is
/// better either way.
pub fn percent_of_full(score: f64, full: f64, higher_is_better: bool) -> Option<f64> {
    let (num, den) = if higher_is_better {
        (score, full)
    } else {
        (full, score)
    };
    let p = 100.0 * num / den;
    (den != 0.0 && p.is_finite()).then_some(p)
}

/// Whether score `a` is strictly better than `b`.
fn better(a: f64, b: f64, higher_is_better: bool) -> bool {
    if higher_is_better { a > b } else { a < b }
}

/// The Pareto frontier of (parameters, score) points: indices of those no other point
/// dominates (as few or fewer parameters and as good or better a score, one of them strictly),
/// by ascending parameters.
pub fn pareto_frontier(points: &[(f64, f64)], higher_is_better: bool) -> Vec<usize> {
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| {
            let (pi, si) = points[i];
            pi.is_finite()
                && si.is_finite()
                && !points.iter().enumerate().any(|(j, &(pj, sj))| {
                    j != i
                        && pj.is_finite()
                        && sj.is_finite()
                        && pj <= pi
                        && !better(si, sj, higher_is_better)
                        && (pj < pi || better(sj, si, higher_is_better))
                })
        })
        .collect();
    front.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    front
}

/// Of the candidates `(parameters, score)`, the index of the best-scoring one that exports at
/// most `BUDGET_SLACK` × `budget` parameters.
pub fn best_at_budget(
    budget: f64,
    candidates: &[(f64, f64)],
    higher_is_better: bool,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &(p, s)) in candidates.iter().enumerate() {
        if !(p > 0.0 && p <= BUDGET_SLACK * budget && s.is_finite()) {
            continue;
        }
        if best.is_none_or(|b| better(s, candidates[b].1, higher_is_better)) {
            best = Some(i);
        }
    }
    best
}

/// How a variant's learning-rate factor was chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// The factor with the best mean validation score (`by_validation`), or the only factor.
    Chosen { factor: f64, by_validation: bool },
    /// No factor can be chosen without looking at the evaluation split; the reason.
    Impossible(String),
}

/// Per factor of the grid: mean validation score and the runs it averages (None: no finished
/// run, or a finished run without a validation score).
pub type ValidationScores = Vec<(f64, Option<(f64, usize)>)>;

/// Chooses a variant's learning-rate factor from its runs' validation scores only (never their
/// final evaluation scores).
pub fn select_lr(
    grid: &[f64],
    runs: &[&RunOutcome],
    metric: &str,
    higher_is_better: bool,
) -> (Selection, ValidationScores) {
    let mut scores: ValidationScores = Vec::new();
    let mut missing = Vec::new();
    for &f in grid {
        let done: Vec<&Summary> = runs
            .iter()
            .filter(|r| r.lr_factor == f)
            .filter_map(|r| r.summary.as_ref())
            .collect();
        let vals: Vec<f64> = done
            .iter()
            .filter_map(|s| validation_metric(s, metric))
            .collect();
        if !done.is_empty() && vals.len() < done.len() {
            missing.push(f);
        }
        let score =
            (!done.is_empty() && vals.len() == done.len()).then(|| (mean_std(&vals).0, vals.len()));
        scores.push((f, score));
    }
    if grid.len() == 1 {
        let by_validation = scores[0].1.is_some();
        return (
            Selection::Chosen {
                factor: grid[0],
                by_validation,
            },
            scores,
        );
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|f| factor_label(*f)).collect();
        return (
            Selection::Impossible(format!(
                "runs at factor {} have no validation {metric} (no validation split, or \
                 summaries written before `ardpipe run --validate`)",
                list.join(", ")
            )),
            scores,
        );
    }
    let mut best: Option<(f64, f64)> = None;
    for (f, s) in &scores {
        if let Some((v, _)) = s
            && v.is_finite()
            && best.is_none_or(|(_, b)| better(*v, b, higher_is_better))
        {
            best = Some((*f, *v));
        }
    }
    let selection = match best {
        Some((factor, _)) => Selection::Chosen {
            factor,
            by_validation: true,
        },
        None => Selection::Impossible(format!(
            "no run at any factor has a finite validation {metric}"
        )),
    };
    (selection, scores)
}

fn validation_metric(s: &Summary, metric: &str) -> Option<f64> {
    s.validation_eval
        .as_ref()?
        .metrics
        .iter()
        .find(|(k, _)| k == metric)
        .map(|(_, v)| *v)
}

/// A learning-rate factor as it appears in `--lr-grid`, run directories and the report.
pub fn factor_label(f: f64) -> String {
    format!("{f}")
}

fn num(v: f64) -> String {
    if v.abs() >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// A signed difference with its sign always shown.
fn signed(v: f64) -> String {
    let s = num(v.abs());
    if v < 0.0 {
        format!("−{s}")
    } else {
        format!("+{s}")
    }
}

pub(crate) fn count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The metric that decides "better" for a task, and whether higher is better.
pub(super) fn primary(metrics: &[String]) -> Option<(&str, bool)> {
    for (m, higher) in [("perplexity", false), ("accuracy", true), ("loss", false)] {
        if metrics.iter().any(|x| x == m) {
            return Some((m, higher));
        }
    }
    None
}

/// One variant's aggregate over its finished seeds at its chosen learning-rate factor.
struct MethodStats {
    variant: String,
    family: String,
    is_ard: bool,
    runs: usize,
    /// Test metrics in the pipeline's order: mean and sample std over seeds.
    metrics: Vec<(String, (f64, f64))>,
    /// Per seed, its test metrics (for the paired comparisons).
    per_seed: Vec<(u64, Vec<(String, f64)>)>,
    exported: f64,
    peak_params: f64,
    adaptation_mib: f64,
    /// The same when training ended (ARD-LoRA's compaction lowers it).
    adaptation_end_mib: f64,
    peak_rss: f64,
    wall: f64,
    tokens_per_s: f64,
    /// Mean effective rank, and the spread of ranks across units (both averaged over seeds).
    rank: Option<(f64, Option<f64>)>,
    /// ARD-LoRA's λ at the end of training (from the first run's plan).
    lambda: Option<f64>,
    first: Option<Summary>,
}

impl MethodStats {
    fn metric(&self, name: &str) -> Option<(f64, f64)> {
        self.metrics
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    fn seed_scores(&self, name: &str) -> Vec<(u64, f64)> {
        self.per_seed
            .iter()
            .filter_map(|(seed, ms)| ms.iter().find(|(k, _)| k == name).map(|(_, v)| (*seed, *v)))
            .collect()
    }
}

fn stats(variant: &str, family: &str, runs: &[&RunOutcome]) -> MethodStats {
    let done: Vec<(u64, &Summary)> = runs
        .iter()
        .filter_map(|r| r.summary.as_ref().map(|s| (r.seed, s)))
        .collect();
    // In the pipeline's order of metrics, not alphabetical.
    let mut by_metric: Vec<(String, Vec<f64>)> = Vec::new();
    for (_, s) in &done {
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
            done.iter().map(|(_, s)| f(s)).sum::<f64>() / done.len() as f64
        }
    };
    let ranks: Vec<f64> = done
        .iter()
        .filter_map(|(_, s)| s.mean_effective_rank)
        .collect();
    let spreads: Vec<f64> = done.iter().filter_map(|(_, s)| s.rank_spread).collect();
    let is_ard =
        family.split('+').any(|m| m == "ard_lora") || (family.is_empty() && !ranks.is_empty());
    MethodStats {
        variant: variant.to_string(),
        family: family.to_string(),
        is_ard,
        runs: done.len(),
        metrics: by_metric
            .into_iter()
            .map(|(k, v)| (k, mean_std(&v)))
            .collect(),
        per_seed: done
            .iter()
            .map(|(seed, s)| {
                (
                    *seed,
                    s.final_eval
                        .as_ref()
                        .map(|e| e.metrics.clone())
                        .unwrap_or_default(),
                )
            })
            .collect(),
        exported: avg(&|s| s.exported_parameters as f64),
        peak_params: avg(&|s| s.peak_parameters as f64),
        adaptation_mib: avg(&|s| s.adaptation_memory.peak_bytes as f64 / (1024.0 * 1024.0)),
        adaptation_end_mib: avg(&|s| s.adaptation_memory.final_bytes as f64 / (1024.0 * 1024.0)),
        peak_rss: avg(&|s| s.peak_rss_mb),
        wall: avg(&|s| s.wall_seconds),
        tokens_per_s: avg(&|s| s.tokens_per_second),
        rank: (!ranks.is_empty()).then(|| {
            (
                mean_std(&ranks).0,
                (!spreads.is_empty()).then(|| mean_std(&spreads).0),
            )
        }),
        lambda: runs
            .iter()
            .find(|r| r.summary.is_some())
            .and_then(|r| final_lambda(&r.run_dir)),
        first: done.first().map(|(_, s)| (*s).clone()),
    }
}

/// λ at the end of training, from the run's `plan.json` (the schedule named `<adapter>.lambda`,
/// evaluated at the last step); None without ARD-LoRA or a readable plan.
pub fn final_lambda(run_dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(run_dir.join("plan.json")).ok()?;
    let plan: serde_json::Value = serde_json::from_str(&text).ok()?;
    let steps = plan["training"]["total_steps"].as_u64()?;
    plan["training"]["schedules"]
        .as_array()?
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.ends_with(".lambda")))
        .and_then(|s| {
            serde_json::from_value::<ardpipe_engine::schedule::ResolvedSchedule>(
                s["schedule"].clone(),
            )
            .ok()
        })
        .map(|s| s.value_at(steps.saturating_sub(1)))
}

pub fn render(settings: &StudySettings, outcomes: &[RunOutcome]) -> Report {
    let mut md = String::new();
    let mut figures = Vec::new();
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
        "- seeds per method: {}; values are mean ± sample standard deviation over seeds; runs \
         with the same seed share the data split and order",
        settings.seeds
    );
    let grid: Vec<String> = settings.lr_grid.iter().map(|f| factor_label(*f)).collect();
    if settings.lr_grid.len() > 1 {
        let _ = writeln!(
            md,
            "- learning rate: each variant ran at the pipeline's schedule × {} \
             (`train.lr_scale`); per variant the factor with the best mean score on the \
             validation split is chosen, and only that factor's runs are reported on the \
             evaluation split (`evaluate.split`, named per pipeline): every score below is at \
             the chosen factor",
            grid.join(", ")
        );
    } else {
        let _ = writeln!(
            md,
            "- learning rate: the pipeline's own schedule (factor {}); nothing was tuned \
             (`ardpipe study --lr-grid 0.5,1,2` chooses a factor per variant on the validation \
             split); scores are on each pipeline's evaluation split (`evaluate.split`, named \
             per pipeline)",
            grid.join(", ")
        );
    }
    // The runs' own wall times: a study continued over several invocations (or only rendered
    // by the last) took that long, whatever this invocation's clock says.
    let run_wall: f64 = outcomes
        .iter()
        .filter_map(|o| o.summary.as_ref().map(|s| s.wall_seconds))
        .sum();
    let earlier = outcomes.iter().filter(|o| o.earlier).count();
    let _ = writeln!(
        md,
        "- whole study: {:.1} minutes of run wall time (the runs' own, summed; runs side by side \
         overlap){}",
        run_wall / 60.0,
        if earlier > 0 {
            format!(
                "; {earlier} of {} runs finished in earlier invocations, this one took {:.1} minutes",
                outcomes.len(),
                settings.elapsed_s / 60.0
            )
        } else {
            String::new()
        }
    );
    for line in machine(outcomes.iter().map(|o| o.run_dir.as_path())) {
        let _ = writeln!(md, "- {line}");
    }
    for line in [
        "**% of full**: the primary score relative to the `full` variant's (score ÷ full × 100 \
         when higher is better, full ÷ score × 100 when lower is better, as for perplexity and \
         loss): above 100% beats full fine-tuning",
        "**exported params**: what export writes, without the structural zeros of a layout \
         (ARD-LoRA: the live rows of its units; AdaLoRA: its kept triplets; other methods: every \
         trainable element), trained head included",
        "**peak params**: the most trainable parameters allocated at any step of training \
         (ARD-LoRA before compaction, AdaLoRA at its initial rank)",
        "**adaptation memory**: bytes of the trainable tensors, their gradients and the \
         optimiser state at their peak during training and when it ended (ARD-LoRA's compaction \
         lowers it), summed from the tensors themselves (not process memory, which the frozen \
         base model dominates), in MiB",
        "**peak RSS**: each run's own process (VmHWM), model and data included; **wall**: the \
         whole run (loading, evaluation and export included)",
        "**mean rank ± spread** (ARD-LoRA): the mean effective rank of its units ± their \
         sample standard deviation across units (how unequal the learned allocation is), each \
         averaged over seeds",
        "**paired comparisons**: per seed, the difference ARD-LoRA − baseline on the primary \
         metric; its mean with a 95% confidence interval (Student t, n − 1 degrees of freedom); \
         \"better\" or \"worse\" when the interval excludes 0",
    ] {
        let _ = writeln!(md, "- {line}");
    }
    md.push('\n');

    for file in &settings.files {
        if let Some(fig) = render_file(&mut md, file, &settings.lr_grid, outcomes) {
            figures.push(fig);
        }
    }

    let failed: Vec<&RunOutcome> = outcomes.iter().filter(|o| o.summary.is_none()).collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "## Runs that failed\n");
        for o in failed {
            let _ = writeln!(
                md,
                "- {} {}{} seed {}: see `{}`",
                o.pipeline,
                o.variant,
                if settings.lr_grid.len() > 1 {
                    format!(" lr ×{}", factor_label(o.lr_factor))
                } else {
                    String::new()
                },
                o.seed,
                o.log.display()
            );
        }
        md.push('\n');
    }
    Report {
        markdown: md,
        figures,
    }
}

/// A pipeline's section; its Pareto figure (file name, SVG) when it has points to draw.
fn render_file(
    md: &mut String,
    file: &FileInfo,
    grid: &[f64],
    outcomes: &[RunOutcome],
) -> Option<(String, String)> {
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
        "Pipeline `{}`{}{}.\n",
        file.file,
        file.steps
            .map(|s| format!(", {s} training steps per run"))
            .unwrap_or_default(),
        match file.eval_split.as_deref() {
            Some("validation") => "; scores are on its `validation` split (it evaluates no \
                 separate test split, so a learning-rate grid has nothing held out to select on)"
                .to_string(),
            Some(split) => format!("; scores are on its `{split}` split"),
            None => String::new(),
        }
    );
    let mut metric_names: Vec<String> = Vec::new();
    for s in runs.iter().filter_map(|o| o.summary.as_ref()) {
        for (k, _) in s.final_eval.iter().flat_map(|e| &e.metrics) {
            if !metric_names.contains(k) {
                metric_names.push(k.clone());
            }
        }
    }
    let primary = primary(&metric_names);

    // Per variant: its runs, family, the learning-rate choice and its stats at that choice.
    let mut selections: Vec<(String, Selection, ValidationScores)> = Vec::new();
    let mut methods: Vec<MethodStats> = Vec::new();
    for v in &file.variants {
        let mine: Vec<&RunOutcome> = runs.iter().copied().filter(|o| &o.variant == v).collect();
        let family = mine
            .iter()
            .find_map(|o| o.family.clone())
            .unwrap_or_else(|| family_from_name(v));
        let (selection, scores) = match primary {
            Some((metric, higher)) => select_lr(grid, &mine, metric, higher),
            // No primary metric (no run finished, or unknown metrics): a grid cannot be judged.
            None if grid.len() == 1 => (
                Selection::Chosen {
                    factor: grid[0],
                    by_validation: false,
                },
                vec![(grid[0], None)],
            ),
            None => (
                Selection::Impossible("no run reported a metric to select on".into()),
                grid.iter().map(|f| (*f, None)).collect(),
            ),
        };
        if let Selection::Chosen { factor, .. } = selection {
            let chosen: Vec<&RunOutcome> = mine
                .iter()
                .copied()
                .filter(|o| o.lr_factor == factor)
                .collect();
            methods.push(stats(v, &family, &chosen));
        }
        selections.push((v.clone(), selection, scores));
    }

    lr_table(md, grid, &selections, primary);

    let full = methods
        .iter()
        .find(|m| m.variant == "full")
        .or_else(|| methods.iter().find(|m| m.family == "full"))
        .filter(|m| m.runs > 0);
    let _ = write!(md, "| method | runs |");
    for k in &metric_names {
        let _ = write!(md, " {k} |");
    }
    let _ = writeln!(
        md,
        " % of full | exported params | peak params | adaptation memory, peak → end | peak RSS | wall | \
         train tokens/s | mean rank ± spread |"
    );
    let _ = writeln!(
        md,
        "|---|---|{}---|---|---|---|---|---|---|---|",
        "---|".repeat(metric_names.len())
    );
    let or_dash = |v: f64, f: &dyn Fn(f64) -> String| {
        if v > 0.0 && v.is_finite() {
            f(v)
        } else {
            "—".to_string()
        }
    };
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
        if m.runs == 0 {
            let _ = writeln!(md, " — | — | — | — | — | — | — | — |");
            continue;
        }
        let pct = match (primary, full) {
            (Some((metric, higher)), Some(f)) => m
                .metric(metric)
                .zip(f.metric(metric))
                .and_then(|((s, _), (fs, _))| percent_of_full(s, fs, higher))
                .map(|p| format!("{p:.1}%"))
                .unwrap_or_else(|| "—".into()),
            _ => "—".into(),
        };
        let rank = match m.rank {
            Some((r, Some(s))) => format!("{r:.2} ± {s:.2}"),
            Some((r, None)) => format!("{r:.2}"),
            None => "—".into(),
        };
        let _ = writeln!(
            md,
            " {pct} | {} | {} | {} | {:.0} MiB | {:.0} s | {:.0} | {rank} |",
            or_dash(m.exported, &count),
            or_dash(m.peak_params, &count),
            or_dash(m.adaptation_mib, &|v| format!(
                "{v:.1} → {:.1} MiB",
                m.adaptation_end_mib
            )),
            m.peak_rss,
            m.wall,
            m.tokens_per_s
        );
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
    let figure = if let Some((metric, higher)) = primary {
        comparisons(md, &methods, metric, higher);
        let figure = pareto(md, &file.name, &methods, metric, higher);
        matched_budget(md, &methods, metric, higher);
        figure
    } else {
        None
    };
    lambda_curve(md, &methods, primary);
    rank_maps(md, &methods);
    figure
}

/// ARD-LoRA's λ → rank curve: one row per ARD-LoRA variant, by λ.
fn lambda_curve(md: &mut String, methods: &[MethodStats], primary: Option<(&str, bool)>) {
    let mut ard: Vec<&MethodStats> = methods
        .iter()
        .filter(|m| m.is_ard && m.runs > 0 && m.lambda.is_some())
        .collect();
    if ard.is_empty() {
        return;
    }
    ard.sort_by(|a, b| {
        a.lambda
            .partial_cmp(&b.lambda)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let metric = primary.map(|(m, _)| m).unwrap_or("score");
    let _ = writeln!(
        md,
        "**λ → rank** (ARD-LoRA; λ after its warm-up; mean effective rank over units, averaged over \
         seeds; spread: the standard deviation of the ranks across units, averaged over seeds):\n"
    );
    let _ = writeln!(
        md,
        "| variant | λ | mean rank | spread across units | exported params | {metric} |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for m in ard {
        let (rank, spread) = match m.rank {
            Some((r, s)) => (
                format!("{r:.2}"),
                s.map(|s| format!("{s:.2}")).unwrap_or_else(|| "—".into()),
            ),
            None => ("—".into(), "—".into()),
        };
        let score = match m.metric(metric) {
            Some((mean, std)) if m.runs > 1 => format!("{} ± {}", num(mean), num(std)),
            Some((mean, _)) => num(mean),
            None => "—".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {rank} | {spread} | {} | {score} |",
            m.variant,
            m.lambda.map(|l| format!("{l}")).unwrap_or_default(),
            count(m.exported)
        );
    }
    md.push('\n');
}

/// The learning-rate choice per variant: the factor, and the validation score of each factor.
fn lr_table(
    md: &mut String,
    grid: &[f64],
    selections: &[(String, Selection, ValidationScores)],
    primary: Option<(&str, bool)>,
) {
    let any_validation = selections
        .iter()
        .any(|(_, _, scores)| scores.iter().any(|(_, s)| s.is_some()));
    if grid.len() < 2 && !any_validation {
        return;
    }
    let metric = primary.map(|(m, _)| m).unwrap_or("score");
    let _ = writeln!(
        md,
        "Learning-rate factor chosen on the validation split (validation {metric}{}, mean over \
         seeds, per factor):\n",
        match primary {
            Some((_, true)) => ", higher is better",
            Some((_, false)) => ", lower is better",
            None => "",
        }
    );
    let _ = write!(md, "| method | chosen factor |");
    for f in grid {
        let _ = write!(md, " ×{} |", factor_label(*f));
    }
    let _ = writeln!(md, "\n|---|---|{}", "---|".repeat(grid.len()));
    for (v, sel, scores) in selections {
        let chosen = match sel {
            Selection::Chosen {
                factor,
                by_validation: true,
            } if grid.len() > 1 => format!("×{}", factor_label(*factor)),
            Selection::Chosen { factor, .. } => {
                format!("×{} (the only one)", factor_label(*factor))
            }
            Selection::Impossible(_) => "none: selection impossible".into(),
        };
        let _ = write!(md, "| {v} | {chosen} |");
        for (_, s) in scores {
            match s {
                Some((mean, _)) => {
                    let _ = write!(md, " {} |", num(*mean));
                }
                None => md.push_str(" — |"),
            }
        }
        md.push('\n');
    }
    md.push('\n');
    for (v, sel, _) in selections {
        if let Selection::Impossible(why) = sel {
            let _ = writeln!(
                md,
                "- `{v}`: no learning-rate factor could be selected ({why}); its scores \
                 are not reported, and it is left out of the comparisons below.",
            );
        }
    }
    if selections
        .iter()
        .any(|(_, s, _)| matches!(s, Selection::Impossible(_)))
    {
        md.push('\n');
    }
}

/// Every ARD-LoRA variant against every baseline: the paired per-seed difference on the
/// primary metric with its 95% interval.
fn comparisons(md: &mut String, methods: &[MethodStats], metric: &str, higher: bool) {
    let ard: Vec<&MethodStats> = methods.iter().filter(|m| m.is_ard && m.runs > 0).collect();
    let baselines: Vec<&MethodStats> = methods.iter().filter(|m| !m.is_ard && m.runs > 0).collect();
    if ard.is_empty() || baselines.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "**Paired comparisons** (on {metric}, {} is better; Δ = ARD-LoRA − baseline, per seed):\n",
        if higher { "higher" } else { "lower" }
    );
    let _ = writeln!(
        md,
        "| ARD-LoRA | baseline | seeds | mean Δ | 95% CI | verdict | exported params ratio |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for a in &ard {
        for b in &baselines {
            let Some(p) = paired(&a.seed_scores(metric), &b.seed_scores(metric)) else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                a.variant,
                b.variant,
                p.n,
                signed(p.mean),
                interval(&p),
                verdict(&p, higher),
                if a.exported > 0.0 && b.exported > 0.0 {
                    format!("{:.2}×", a.exported / b.exported)
                } else {
                    "—".into()
                }
            );
        }
    }
    md.push('\n');
}

fn interval(p: &Paired) -> String {
    match p.half {
        Some(h) => format!("[{}, {}]", signed(p.mean - h), signed(p.mean + h)),
        None => "—".into(),
    }
}

/// Each ARD-LoRA variant against the best baseline that exports no more than
/// `BUDGET_SLACK` × its parameters.
fn matched_budget(md: &mut String, methods: &[MethodStats], metric: &str, higher: bool) {
    let ard: Vec<&MethodStats> = methods
        .iter()
        .filter(|m| m.is_ard && m.runs > 0 && m.exported > 0.0)
        .collect();
    if ard.is_empty() {
        return;
    }
    let baselines: Vec<&MethodStats> = methods
        .iter()
        .filter(|m| !m.is_ard && m.runs > 0 && m.exported > 0.0)
        .collect();
    let candidates: Vec<(f64, f64)> = baselines
        .iter()
        .map(|b| (b.exported, b.metric(metric).map_or(f64::NAN, |(s, _)| s)))
        .collect();
    let _ = writeln!(
        md,
        "**At a matched budget** (each ARD-LoRA variant against the baseline with the best mean \
         {metric} among those exporting at most {BUDGET_SLACK}× its parameters: the \
         strongest competitor at no larger budget):\n"
    );
    for a in ard {
        let Some(i) = best_at_budget(a.exported, &candidates, higher) else {
            let _ = writeln!(
                md,
                "- `{}` ({} exported): no baseline exports at most {BUDGET_SLACK}× its \
                 parameters.",
                a.variant,
                count(a.exported)
            );
            continue;
        };
        let b = baselines[i];
        let what = match paired(&a.seed_scores(metric), &b.seed_scores(metric)) {
            Some(p) if p.half.is_some() => format!(
                "Δ {} {metric}, 95% CI {} over {} seeds: {}",
                signed(p.mean),
                interval(&p),
                p.n,
                verdict(&p, higher)
            ),
            Some(p) => format!("Δ {} {metric}: one seed: no interval", signed(p.mean)),
            None => "no seed finished for both".into(),
        };
        let _ = writeln!(
            md,
            "- `{}` ({} exported, {metric} {}) against `{}` ({} exported, {metric} {}): {what}.",
            a.variant,
            count(a.exported),
            a.metric(metric).map_or("—".into(), |(s, _)| num(s)),
            b.variant,
            count(b.exported),
            num(candidates[i].1)
        );
    }
    md.push('\n');
}

/// The Pareto frontier of exported parameters against the primary score, in words and as a
/// figure (file name, SVG).
fn pareto(
    md: &mut String,
    pipeline: &str,
    methods: &[MethodStats],
    metric: &str,
    higher: bool,
) -> Option<(String, String)> {
    let drawn: Vec<&MethodStats> = methods
        .iter()
        .filter(|m| m.runs > 0 && m.exported > 0.0 && m.metric(metric).is_some())
        .collect();
    if drawn.is_empty() {
        return None;
    }
    let xy: Vec<(f64, f64)> = drawn
        .iter()
        .map(|m| (m.exported, m.metric(metric).map_or(f64::NAN, |(s, _)| s)))
        .collect();
    let front = pareto_frontier(&xy, higher);
    let points: Vec<study_svg::Point> = drawn
        .iter()
        .zip(&xy)
        .map(|(m, &(x, y))| study_svg::Point {
            label: m.variant.clone(),
            family: m.family.clone(),
            x,
            y,
            err: (m.runs >= 2).then(|| m.metric(metric).map_or(0.0, |(_, s)| s)),
        })
        .collect();
    let name = format!("{pipeline}_pareto.svg");
    let svg = study_svg::pareto_svg(
        &format!("{pipeline}: exported parameters against {metric}"),
        metric,
        higher,
        &points,
        &front,
    );
    let names: Vec<String> = front
        .iter()
        .map(|&i| format!("`{}`", drawn[i].variant))
        .collect();
    let _ = writeln!(
        md,
        "**Pareto frontier** (exported parameters against {metric}; a variant is on it when no \
         other exports as few or fewer parameters with as good or better a score): {}.\n",
        names.join(" → ")
    );
    let _ = writeln!(
        md,
        "![{pipeline}: exported parameters (log scale) against {metric}]({name})\n"
    );
    Some((name, svg))
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
    let mem = ardpipe_engine::models::runtime::machine_memory_bytes();
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
        mem.map(|b| format!("{:.0} GiB", b as f64 / (1u64 << 30) as f64))
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

    #[test]
    fn lambda_is_read_from_the_plan_at_the_last_step() {
        let dir = std::env::temp_dir().join(format!("ardpipe-lambda-{}", std::process::id()));
        let dir = &dir;
        std::fs::create_dir_all(dir).unwrap();
        let plan = serde_json::json!({"training": {"total_steps": 120, "schedules": [
            {"name": "train.lr", "schedule": {"kind": "constant", "value": 0.001}},
            {"name": "qv.lambda", "schedule": {"kind": "warm_up", "over": 24,
                "then": {"kind": "constant", "value": 0.3}}},
        ]}});
        std::fs::write(dir.join("plan.json"), plan.to_string()).unwrap();
        assert_eq!(final_lambda(dir), Some(0.3));
        // No ARD-LoRA, or no plan: no λ.
        let plan = serde_json::json!({"training": {"total_steps": 5, "schedules": []}});
        std::fs::write(dir.join("plan.json"), plan.to_string()).unwrap();
        assert_eq!(final_lambda(dir), None);
        assert_eq!(final_lambda(&dir.join("missing")), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A summary as `ardpipe run` writes it (through serde: fields the engine adds later with
    /// defaults do not break these tests).
    fn summary(test_acc: f64, val_acc: Option<f64>, exported: usize, rank: Option<f64>) -> Summary {
        let eval = |acc: f64| {
            serde_json::json!({
                "step": 10,
                "metrics": [["loss", 1.0], ["accuracy", acc]],
            })
        };
        let mut v = serde_json::json!({
            "run_dir": "runs/x",
            "steps": 10,
            "stopped_early": false,
            "interrupted": false,
            "final_eval": eval(test_acc),
            "initial_eval": null,
            "majority_baseline": 0.1,
            "exported_parameters": exported,
            "peak_parameters": exported * 2,
            "adaptation_memory": {"peak_bytes": 3 * 1024 * 1024, "final_bytes": 1024 * 1024},
            "base_parameters": 1000,
            "mean_effective_rank": rank,
            "rank_spread": rank.map(|_| 0.5),
            "rank_map": [],
            "wall_seconds": 10.0,
            "train_seconds": 9.0,
            "communication_seconds": 0.0,
            "tokens_per_second": 1.0,
            "peak_rss_mb": 100.0,
        });
        if let Some(a) = val_acc {
            v["validation_eval"] = eval(a);
        }
        serde_json::from_value(v).expect("a RunSummary")
    }

    fn outcome(variant: &str, seed: u64, lr: f64, s: Option<Summary>) -> RunOutcome {
        RunOutcome {
            pipeline: "p".into(),
            variant: variant.into(),
            seed,
            lr_factor: lr,
            run_dir: PathBuf::from("/nonexistent"),
            log: PathBuf::from(format!("/logs/{variant}-{seed}.log")),
            family: Some(family_from_name(variant)),
            summary: s,
            earlier: false,
        }
    }

    fn settings(grid: Vec<f64>, variants: &[&str]) -> StudySettings {
        StudySettings {
            command: "ardpipe study".into(),
            quick: false,
            seeds: 3,
            lr_grid: grid,
            files: vec![FileInfo {
                file: "p.ard".into(),
                name: "p".into(),
                description: None,
                steps: Some(10),
                eval_split: Some("test".into()),
                variants: variants.iter().map(|v| v.to_string()).collect(),
            }],
            elapsed_s: 60.0,
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
    fn t_interval_of_paired_differences() {
        // Differences 1, 2, 3: mean 2, sd 1, half-width t(0.975, 2) · 1/√3 = 4.303/√3.
        let p = paired(
            &[(1, 11.0), (2, 12.0), (3, 13.0), (4, 99.0)],
            &[(1, 10.0), (2, 10.0), (3, 10.0)],
        )
        .unwrap();
        assert_eq!(p.n, 3);
        assert!((p.mean - 2.0).abs() < 1e-12);
        let half = p.half.unwrap();
        assert!((half - 4.303 / 3f64.sqrt()).abs() < 1e-9, "{half}");
        assert!((half - 2.484).abs() < 1e-3, "{half}");
        // [−0.484, 4.484] includes 0.
        assert_eq!(
            verdict(&p, true),
            "no detectable difference (CI includes 0)"
        );
        // Differences 1.9, 2, 2.1: [1.75, 2.25] excludes 0, on the side the metric prefers.
        let tight = paired(
            &[(1, 1.9), (2, 2.0), (3, 2.1)],
            &[(1, 0.0), (2, 0.0), (3, 0.0)],
        )
        .unwrap();
        assert_eq!(verdict(&tight, true), "better");
        assert_eq!(verdict(&tight, false), "worse");
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(30), 2.042);
        assert_eq!(t975(31), 1.96);
        // One shared seed: no interval.
        let one = paired(&[(1, 2.0)], &[(1, 1.0), (2, 1.0)]).unwrap();
        assert_eq!((one.n, one.half), (1, None));
        assert_eq!(verdict(&one, true), "one seed: no interval");
        assert!(paired(&[(1, 2.0)], &[(2, 1.0)]).is_none());
    }

    #[test]
    fn percent_of_full_in_both_directions() {
        // Accuracy 0.45 against full's 0.5: 90% of full.
        assert!((percent_of_full(0.45, 0.5, true).unwrap() - 90.0).abs() < 1e-9);
        // Perplexity 120 against full's 100: 100/120 = 83.3% of full; 80 beats full: 125%.
        assert!((percent_of_full(120.0, 100.0, false).unwrap() - 250.0 / 3.0).abs() < 1e-9);
        assert!((percent_of_full(80.0, 100.0, false).unwrap() - 125.0).abs() < 1e-9);
        assert_eq!(percent_of_full(0.5, 0.0, true), None);
        assert_eq!(percent_of_full(0.0, 100.0, false), None);
    }

    #[test]
    fn pareto_frontier_keeps_the_undominated() {
        // (params, accuracy): c is dominated by b (fewer params, better), d by b, e ties b's
        // score with more params.
        let pts = [
            (100.0, 0.50),  // a
            (200.0, 0.60),  // b
            (300.0, 0.55),  // c
            (250.0, 0.60),  // e
            (1000.0, 0.70), // f
            (50.0, f64::NAN),
        ];
        assert_eq!(pareto_frontier(&pts, true), vec![0, 1, 4]);
        // Lower is better (perplexity): the same points read the other way.
        let ppl = [
            (100.0, 120.0),
            (200.0, 110.0),
            (300.0, 115.0),
            (1000.0, 100.0),
        ];
        assert_eq!(pareto_frontier(&ppl, false), vec![0, 1, 3]);
        // Two identical points do not dominate each other.
        assert_eq!(pareto_frontier(&[(1.0, 1.0), (1.0, 1.0)], true), vec![0, 1]);
    }

    #[test]
    fn best_baseline_at_no_larger_budget() {
        let baselines = [(900.0, 0.50), (1100.0, 0.60), (1101.0, 0.90), (500.0, 0.55)];
        // Budget 1000: up to 1100 parameters; the best of those scores 0.60.
        assert_eq!(best_at_budget(1000.0, &baselines, true), Some(1));
        // Lower is better: the lowest score under the budget.
        assert_eq!(best_at_budget(1000.0, &baselines, false), Some(0));
        assert_eq!(best_at_budget(100.0, &baselines, true), None);
    }

    #[test]
    fn learning_rate_is_chosen_on_validation_never_on_test() {
        // Factor 2 has the better test score, factor 0.5 the better validation score.
        let runs = [
            outcome("v", 1, 0.5, Some(summary(0.40, Some(0.70), 10, None))),
            outcome("v", 2, 0.5, Some(summary(0.41, Some(0.72), 10, None))),
            outcome("v", 1, 2.0, Some(summary(0.90, Some(0.60), 10, None))),
            outcome("v", 2, 2.0, Some(summary(0.91, Some(0.61), 10, None))),
            outcome("v", 1, 1.0, None),
        ];
        let refs: Vec<&RunOutcome> = runs.iter().collect();
        let (sel, scores) = select_lr(&[0.5, 1.0, 2.0], &refs, "accuracy", true);
        assert_eq!(
            sel,
            Selection::Chosen {
                factor: 0.5,
                by_validation: true
            }
        );
        assert!((scores[0].1.unwrap().0 - 0.71).abs() < 1e-12);
        assert_eq!(scores[1].1, None);
        // Lower is better on the same numbers: factor 2.
        let (sel, _) = select_lr(&[0.5, 1.0, 2.0], &refs, "accuracy", false);
        assert!(matches!(sel, Selection::Chosen { factor: 2.0, .. }));

        // Without validation scores: impossible with a grid, the only factor without one.
        let old = [
            outcome("v", 1, 0.5, Some(summary(0.40, None, 10, None))),
            outcome("v", 1, 2.0, Some(summary(0.90, Some(0.6), 10, None))),
        ];
        let refs: Vec<&RunOutcome> = old.iter().collect();
        let (sel, _) = select_lr(&[0.5, 2.0], &refs, "accuracy", true);
        assert!(matches!(sel, Selection::Impossible(ref why) if why.contains("factor 0.5")));
        let (sel, _) = select_lr(&[0.5], &refs[..1], "accuracy", true);
        assert_eq!(
            sel,
            Selection::Chosen {
                factor: 0.5,
                by_validation: false
            }
        );

        // The report shows only the chosen factor's test numbers.
        let mut all: Vec<RunOutcome> = runs.into_iter().collect();
        all.push(outcome("w", 1, 0.5, Some(summary(0.3, None, 10, None))));
        all.push(outcome(
            "w",
            1,
            2.0,
            Some(summary(0.3, Some(0.5), 10, None)),
        ));
        let md = render(&settings(vec![0.5, 1.0, 2.0], &["v", "w"]), &all).markdown;
        assert!(md.contains("| v | ×0.5 | 0.7100 | — | 0.6050 |"), "{md}");
        assert!(
            md.contains("| v | 2 | 1.0000 ± 0.0000 | 0.4050 ± 0.0071 |"),
            "{md}"
        );
        assert!(!md.contains("0.9050"), "{md}");
        assert!(md.contains("| w | none: selection impossible |"), "{md}");
        assert!(
            md.contains("`w`: no learning-rate factor could be selected"),
            "{md}"
        );
        assert!(!md.contains("| w | 1 |"), "{md}");
    }

    #[test]
    fn report_compares_by_paired_intervals_at_matched_budget_and_draws_the_frontier() {
        let outcomes = vec![
            outcome(
                "ard_lora",
                1,
                1.0,
                Some(summary(0.40, None, 300, Some(4.0))),
            ),
            outcome(
                "ard_lora",
                2,
                1.0,
                Some(summary(0.42, None, 300, Some(5.0))),
            ),
            outcome(
                "ard_lora",
                3,
                1.0,
                Some(summary(0.41, None, 300, Some(6.0))),
            ),
            outcome("lora_r8", 1, 1.0, Some(summary(0.50, None, 320, None))),
            outcome("lora_r8", 2, 1.0, Some(summary(0.53, None, 320, None))),
            outcome("lora_r8", 3, 1.0, Some(summary(0.52, None, 320, None))),
            outcome("lora_r16", 1, 1.0, Some(summary(0.60, None, 640, None))),
            outcome("lora_r16", 2, 1.0, Some(summary(0.62, None, 640, None))),
            outcome("lora_r16", 3, 1.0, Some(summary(0.61, None, 640, None))),
            outcome("full", 1, 1.0, Some(summary(0.50, None, 1000, None))),
            outcome("full", 2, 1.0, None),
            outcome("full", 3, 1.0, None),
        ];
        let report = render(
            &settings(vec![1.0], &["ard_lora", "lora_r8", "lora_r16", "full"]),
            &outcomes,
        );
        let md = &report.markdown;
        // Mean over three seeds; % of full is the score against full's 0.50; 3 MiB at peak, 1 at the end.
        assert!(
            md.contains(
                "| ard_lora | 3 | 1.0000 ± 0.0000 | 0.4100 ± 0.0100 | 82.0% | 300 | 600 | \
                 3.0 → 1.0 MiB | 100 MiB | 10 s | 1 | 5.00 ± 0.50 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| full | 1 | 1.0000 | 0.5000 | 100.0% | 1.0K |"),
            "{md}"
        );
        // Δ per seed −0.10, −0.11, −0.11 against lora_r8: worse; one shared seed with full.
        assert!(
            md.contains("| ard_lora | lora_r8 | 3 | −0.1067 | ["),
            "{md}"
        );
        assert!(md.contains("| worse | 0.94× |"), "{md}");
        assert!(
            md.contains("| ard_lora | full | 1 | −0.1000 | — | one seed: no interval | 0.30× |"),
            "{md}"
        );
        // The matched budget is lora_r8 (320 ≤ 330), not the better lora_r16 (640).
        assert!(
            md.contains("- `ard_lora` (300 exported, accuracy 0.4100) against `lora_r8` (320"),
            "{md}"
        );
        assert!(md.contains("over 3 seeds: worse."), "{md}");
        assert!(
            !md.contains("within noise") && !md.contains("combined"),
            "{md}"
        );
        // Frontier: ard_lora (fewest parameters), lora_r8, lora_r16; full is dominated.
        assert!(
            md.contains(": `ard_lora` → `lora_r8` → `lora_r16`.\n"),
            "{md}"
        );
        assert!(md.contains("](p_pareto.svg)"), "{md}");
        assert_eq!(report.figures.len(), 1);
        let (name, svg) = &report.figures[0];
        assert_eq!(name, "p_pareto.svg");
        assert_eq!(svg.matches(r#"class="point""#).count(), 4);
        assert!(
            md.contains("- p full seed 2: see `/logs/full-2.log`"),
            "{md}"
        );
    }

    #[test]
    fn families_from_variant_names() {
        assert_eq!(family_from_name("ard_lora_r2"), "ard_lora");
        assert_eq!(family_from_name("lora_r16"), "lora");
        assert_eq!(family_from_name("full"), "full");
        assert_eq!(family_from_name("ard_lora"), "ard_lora");
        assert_eq!(family_from_name("lora_l4_r8"), "lora");
    }
}
