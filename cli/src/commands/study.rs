//! `ardpipe study`: the method comparison. Every variant of each study pipeline runs once per
//! seed and learning-rate factor (`--lr-grid`), each as its own `ardpipe run --validate`
//! process (so its peak memory is its own and a crash takes down one run, not the study); then
//! the runs' `summary.json` files are aggregated into the results report (`study_report`),
//! which chooses each variant's factor on the validation split, and its Pareto figures.
//!
//! A killed study continues where it stopped: a run whose directory holds a `summary.json` is
//! finished and is not run again; a run directory without one is started afresh.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ardpipe_dsl::Pipeline;
use ardpipe_dsl::pipeline::SplitPart;

use super::study_report::{self, RunOutcome, StudySettings};
use crate::args::{Overrides, StudyArgs};
use crate::exit::Code;

/// Steps per run with `--quick`: enough to pass every phase (warm-up, AdaLoRA pruning,
/// ARD compaction, evaluation, export) in a few seconds.
const QUICK_STEPS: u64 = 3;
/// Examples per step with `--quick`.
const QUICK_BATCH: u32 = 2;
/// Held-out fractions with `--quick` (evaluation dominates a four-step run otherwise).
const QUICK_SPLIT: &str = "1%";

pub fn run(a: StudyArgs) -> miette::Result<Code> {
    let files = study_files(&a.files)?;
    let seeds = a.seeds.unwrap_or(if a.quick { 1 } else { 3 });
    if seeds == 0 {
        return Err(miette::miette!("--seeds must be at least 1"));
    }
    let grid = lr_grid(&a.lr_grid)?;
    let out = absolute(&a.out.clone().unwrap_or_else(|| {
        PathBuf::from(if a.quick {
            "runs/study-quick"
        } else {
            "runs/study"
        })
    }));
    let report_path = a.report.clone().unwrap_or_else(|| {
        if a.quick {
            out.join("RESULTS.md")
        } else {
            PathBuf::from("docs/RESULTS.md")
        }
    });

    // Check every file first: a typo in the last pipeline must not surface an hour in.
    let mut plans = Vec::new();
    for file in &files {
        let pipeline = checked(file, &a.overrides.set)?;
        let quick = if a.quick {
            quick_overrides(&pipeline)
        } else {
            vec![]
        };
        let sets: Vec<String> = a.overrides.set.iter().cloned().chain(quick).collect();
        let pipeline = checked(file, &sets)?;
        let mut variants: Vec<String> =
            pipeline.runs().iter().map(|(n, _)| n.to_string()).collect();
        if !a.variants.is_empty() {
            for want in &a.variants {
                if !variants.contains(want) {
                    return Err(miette::miette!(
                        help = format!("its variants are: {}", variants.join(", ")),
                        "--variant {want}: {} has no such variant",
                        file.display()
                    ));
                }
            }
            variants.retain(|v| a.variants.contains(v));
        }
        let seed0 = pipeline.seed;
        plans.push(FilePlan {
            file: file.clone(),
            name: pipeline.name.clone(),
            description: pipeline.description.clone(),
            steps: steps_of(&pipeline),
            eval_split: pipeline.evaluate.as_ref().and_then(|e| {
                serde_json::to_value(e.split)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
            }),
            sets,
            has_variants: !pipeline.variants.is_empty(),
            variants,
            seeds: (0..seeds as u64).map(|k| seed0 + k).collect(),
            resplit: pipeline
                .datasets
                .iter()
                .filter(|d| {
                    [&d.split.validation, &d.split.test]
                        .iter()
                        .any(|p| matches!(p, Some(SplitPart::Fraction { .. })))
                })
                .map(|d| d.name.clone())
                .collect(),
        });
    }
    let factors = grid.as_deref().unwrap_or(&[1.0]);
    let total: usize = plans
        .iter()
        .map(|p| p.variants.len() * p.seeds.len() * factors.len())
        .sum();
    eprintln!(
        "study: {} pipeline(s), {total} runs ({seeds} seed(s){} each){}; runs in {}",
        plans.len(),
        if factors.len() > 1 {
            format!(" × {} learning-rate factors", factors.len())
        } else {
            String::new()
        },
        if a.quick { ", quick" } else { "" },
        out.display()
    );

    let t0 = Instant::now();
    let mut outcomes = Vec::new();
    let mut done = 0;
    for plan in &plans {
        if a.quick {
            let quick: Vec<&String> = plan.sets.iter().skip(a.overrides.set.len()).collect();
            eprintln!(
                "study: {} quick settings: --set {}",
                plan.name,
                quick
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" --set ")
            );
        }
        // Seeds outermost: a study stopped early still has every method at the first seeds.
        for &seed in &plan.seeds {
            for variant in &plan.variants {
                for &factor in factors {
                    done += 1;
                    // Without a grid, today's layout: `VARIANT/seed-S`.
                    let mut dir = out.join(&plan.name).join(variant);
                    if grid.is_some() {
                        dir = dir.join(format!("lr-{}", study_report::factor_label(factor)));
                    }
                    let dir = dir.join(format!("seed-{seed}"));
                    let lr_scale = grid.is_some().then_some(factor);
                    let outcome = run_one(plan, variant, seed, lr_scale, &dir, a.threads)?;
                    eprintln!(
                        "[{done}/{total}] {} {variant}{} seed {seed}: {}{}",
                        plan.name,
                        lr_scale
                            .map(|f| format!(" lr ×{}", study_report::factor_label(f)))
                            .unwrap_or_default(),
                        outcome.one_line(),
                        if outcome.earlier {
                            " (finished earlier)"
                        } else {
                            ""
                        }
                    );
                    outcomes.push(outcome);
                }
            }
        }
    }

    let settings = StudySettings {
        // As a user would type it, whatever path the binary was started from.
        command: std::iter::once("ardpipe".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        quick: a.quick,
        seeds,
        lr_grid: factors.to_vec(),
        files: plans
            .iter()
            .map(|p| study_report::FileInfo {
                file: p.file.display().to_string(),
                name: p.name.clone(),
                description: p.description.clone(),
                steps: p.steps,
                eval_split: p.eval_split.clone(),
                variants: p.variants.clone(),
            })
            .collect(),
        elapsed_s: t0.elapsed().as_secs_f64(),
    };
    let report = study_report::render(&settings, &outcomes);
    let kept = std::fs::read_to_string(&report_path)
        .ok()
        .and_then(|old| kept_sections(&old));
    let markdown = match kept {
        Some(tail) => format!("{}\n{tail}", report.markdown.trim_end()),
        None => report.markdown.clone(),
    };
    write_atomic(&report_path, &markdown)?;
    // The figures beside the report, where its `![…](NAME.svg)` links find them.
    let report_dir = report_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for (name, svg) in &report.figures {
        write_atomic(&report_dir.join(name), svg)?;
    }
    let failed = outcomes.iter().filter(|o| o.summary.is_none()).count();
    eprintln!(
        "study: {} of {total} runs finished in {:.0} s; results in {}",
        total - failed,
        settings.elapsed_s,
        report_path.display()
    );
    if failed > 0 {
        eprintln!("study: {failed} run(s) failed: their logs are named in the report");
        return Ok(Code::Failure);
    }
    Ok(Code::Success)
}

struct FilePlan {
    file: PathBuf,
    name: String,
    description: Option<String>,
    steps: Option<u64>,
    eval_split: Option<String>,
    /// `--set` values for every run of this file: the user's, then the quick ones.
    sets: Vec<String>,
    /// Without variants the pipeline is one run, named after itself.
    has_variants: bool,
    variants: Vec<String>,
    seeds: Vec<u64>,
    /// Datasets whose held-out splits are fractions: each seed draws its own split of them
    /// (`split.seed` = the run's seed), so the seeds' spread includes the split's.
    resplit: Vec<String>,
}

/// The files named, or `pipelines/study/*.ard` under the current directory.
fn study_files(named: &[PathBuf]) -> miette::Result<Vec<PathBuf>> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    let dir = Path::new("pipelines/study");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            miette::miette!(
                help = "run it from the repository root, or name the study pipelines: `ardpipe study FILE.ard…`",
                "cannot read {}: {e}",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ard"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(miette::miette!(
            help = "name the study pipelines: `ardpipe study FILE.ard…`",
            "no .ard files in {}",
            dir.display()
        ));
    }
    Ok(files)
}

fn checked(file: &Path, sets: &[String]) -> miette::Result<Pipeline> {
    let overrides = Overrides { set: sets.to_vec() };
    let ctx = super::check::context(&overrides);
    match ardpipe_dsl::check_file(file, &ctx) {
        Ok(c) => Ok(c.pipeline),
        Err(d) => {
            super::check::print_diagnostics(d);
            Err(miette::miette!(
                "{} does not check: nothing was run",
                file.display()
            ))
        }
    }
}

/// `--quick`: a few steps, and small held-out splits, derived from what the pipeline has so
/// that any study pipeline shrinks the same way.
fn quick_overrides(p: &Pipeline) -> Vec<String> {
    let mut sets = vec![
        format!("train.steps={QUICK_STEPS}"),
        format!("train.batch_size={}", p.train.batch_size.min(QUICK_BATCH)),
    ];
    for d in &p.datasets {
        for (part, value) in [("validation", &d.split.validation), ("test", &d.split.test)] {
            if let Some(SplitPart::Fraction { .. }) = value {
                sets.push(format!("dataset.{}.split.{part}={QUICK_SPLIT}", d.name));
            }
        }
    }
    sets
}

fn steps_of(p: &Pipeline) -> Option<u64> {
    match p.train.duration {
        ardpipe_dsl::pipeline::Duration::Steps(n) => Some(n),
        _ => None,
    }
}

/// `--lr-grid`: None without one; else the factors, each positive and named once.
fn lr_grid(given: &[f64]) -> miette::Result<Option<Vec<f64>>> {
    if given.is_empty() {
        return Ok(None);
    }
    for (i, f) in given.iter().enumerate() {
        if !(f.is_finite() && *f > 0.0) {
            return Err(miette::miette!(
                help = "factors multiply the pipeline's learning rate, e.g. `--lr-grid 0.5,1,2`",
                "--lr-grid: {f} is not a positive number"
            ));
        }
        if given[..i].contains(f) {
            return Err(miette::miette!(
                help = "name each factor once, e.g. `--lr-grid 0.5,1,2`",
                "--lr-grid: {f} is named twice"
            ));
        }
    }
    Ok(Some(given.to_vec()))
}

/// One run in its own process; its outcome from the `summary.json` it leaves.
fn run_one(
    plan: &FilePlan,
    variant: &str,
    seed: u64,
    lr_scale: Option<f64>,
    dir: &Path,
    threads: Option<i32>,
) -> miette::Result<RunOutcome> {
    let log = dir.with_extension("log");
    let outcome = |summary| RunOutcome {
        pipeline: plan.name.clone(),
        variant: variant.to_string(),
        seed,
        lr_factor: lr_scale.unwrap_or(1.0),
        run_dir: dir.to_path_buf(),
        log: log.clone(),
        family: study_report::read_family(dir),
        summary,
        earlier: false,
    };
    if let Some(s) = study_report::read_summary(dir) {
        let mut o = outcome(Some(s));
        o.earlier = true;
        return Ok(o);
    }
    if dir.exists() {
        // An unfinished run of a killed study: start it again from nothing.
        std::fs::remove_dir_all(dir).map_err(|e| {
            miette::miette!("cannot remove the unfinished run {}: {e}", dir.display())
        })?;
    }
    let parent = dir.parent().expect("a run directory has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| miette::miette!("cannot create {}: {e}", parent.display()))?;
    let log_file = std::fs::File::create(&log)
        .map_err(|e| miette::miette!("cannot create {}: {e}", log.display()))?;
    // On Linux, this very binary even if it was replaced on disk since the study started (a
    // rebuild or an upgrade): every run of one study uses the same ardpipe.
    let proc_exe = Path::new("/proc/self/exe");
    let exe = if proc_exe.exists() {
        proc_exe.to_path_buf()
    } else {
        std::env::current_exe()
            .map_err(|e| miette::miette!("cannot find the ardpipe executable: {e}"))?
    };
    let mut cmd = Command::new(exe);
    // `--validate`: the run also scores the validation split, which the study selects on.
    cmd.arg("run").arg(&plan.file).arg("--validate");
    if plan.has_variants {
        cmd.args(["--variant", variant]);
    }
    if let Some(t) = threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    for s in &plan.sets {
        cmd.args(["--set", s]);
    }
    if let Some(f) = lr_scale {
        cmd.args([
            "--set",
            &format!("train.lr_scale={}", study_report::factor_label(f)),
        ]);
    }
    for d in &plan.resplit {
        cmd.args(["--set", &format!("dataset.{d}.split.seed={seed}")]);
    }
    cmd.args(["--set", &format!("pipeline.seed={seed}")])
        .args(["--set", &format!("output.dir={}", dsl_string(dir))])
        .stdin(Stdio::null())
        .stdout(
            log_file
                .try_clone()
                .map_err(|e| miette::miette!("{}: {e}", log.display()))?,
        )
        .stderr(log_file);
    let status = cmd.status().map_err(|e| {
        miette::miette!(
            help = "start the study again: finished runs are kept",
            "cannot start `{}`: {e}",
            cmd.get_program().to_string_lossy()
        )
    })?;
    // Ctrl-C (or a SIGTERM to the group) reaches the run too: it stops, and so does the study,
    // instead of going on to the next run. A run killed otherwise (say, out of memory) is a
    // failed run, and the study goes on.
    use std::os::unix::process::ExitStatusExt;
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    // `ardpipe run` itself exits 130 / 143 after checkpointing on SIGINT / SIGTERM.
    if matches!(status.code(), Some(130 | 143)) || matches!(status.signal(), Some(SIGINT | SIGTERM))
    {
        return Err(miette::miette!(
            help = "run the same `ardpipe study` again to continue: finished runs are kept",
            "the study was interrupted during {} {variant} seed {seed}",
            plan.name
        ));
    }
    let summary = if status.success() {
        study_report::read_summary(dir)
    } else {
        None
    };
    Ok(outcome(summary))
}

/// A path as a string literal of the pipeline language.
fn dsl_string(p: &Path) -> String {
    let s = p.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The line after which a results report holds sections the study does not measure (the VQA
/// pipeline's memory, written from its own runs): a new report keeps them.
pub const KEPT_MARKER: &str = "<!-- ardpipe study keeps what follows this line -->";

/// The marker and what follows it in an existing report, if it has one.
fn kept_sections(old: &str) -> Option<String> {
    old.find(KEPT_MARKER).map(|at| old[at..].to_string())
}

/// The report through the run directories' atomic writer: a reader never sees half of it.
fn write_atomic(path: &Path, text: &str) -> miette::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| miette::miette!("cannot create {}: {e}", parent.display()))?;
    }
    ardpipe_engine::rundir::write_atomic(path, text.as_bytes()).map_err(|e| miette::miette!("{e}"))
}

#[cfg(test)]
mod kept_tests {
    use super::*;

    #[test]
    fn a_new_report_keeps_the_sections_after_the_marker() {
        let old = format!("# Results\nold table\n\n{KEPT_MARKER}\n\n## VQA\nkept\n");
        assert_eq!(
            kept_sections(&old).unwrap(),
            format!("{KEPT_MARKER}\n\n## VQA\nkept\n")
        );
        assert_eq!(kept_sections("# Results\nno marker\n"), None);
    }
}
