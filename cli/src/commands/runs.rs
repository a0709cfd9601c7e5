//! `ardpipe runs [DIR] [--pipeline FILE]`: the runs under a folder, one line each — status,
//! method, steps, best evaluation, exported parameters, wall time — read from the files a run
//! directory holds (engine/core/src/rundir.rs describes them). With `--pipeline FILE`, only the
//! runs made from some version of that file: the Git blob ids of every committed version (renames
//! followed) and of the working copy, matched against the blob id each run's manifest records.

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use ardpipe_engine::manifest::git_blob_id;
use ardpipe_engine::rundir;
use serde::Serialize;
use serde_json::Value;

use crate::args::TextOrJson;
use crate::exit::Code;

/// How deep below DIR run directories are looked for (`runs/study/VARIANT/seed-N` is three).
const MAX_DEPTH: usize = 4;

/// One run, as `runs` lists it and `compare` starts from.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// The folder, relative to the listed DIR (or as given).
    pub name: String,
    pub dir: PathBuf,
    /// The pipeline's (or variant's) name, from the manifest.
    pub pipeline: String,
    /// finished, stopped (early stopping), failed, interrupted (a signal, or killed: the run
    /// folder is not locked by a live process), running (locked by a live process).
    pub status: String,
    /// The adapter blocks' methods, joined with `+`.
    pub method: String,
    /// Steps done: the finished run's count, else the last step logged or checkpointed.
    pub steps_done: u64,
    pub steps_planned: Option<u64>,
    /// The best evaluation of the metric that decides (early stopping's, else perplexity,
    /// accuracy or loss, whichever the run evaluates): `(metric, value, step)`.
    pub best_eval: Option<BestEval>,
    pub exported_parameters: Option<u64>,
    pub wall_seconds: Option<f64>,
    pub started_at: Option<String>,
    /// The pipeline file's Git blob id the manifest records.
    pub pipeline_blob: Option<String>,
    /// The pipeline file the run was started from.
    pub pipeline_file: Option<PathBuf>,
    /// With `--pipeline`: the commit holding the run's version of the file (the newest one
    /// that changed the file to it), or `working copy` for a version that was never committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BestEval {
    pub metric: String,
    pub value: f64,
    pub step: Option<u64>,
    pub higher_is_better: bool,
}

pub fn run(
    dir: Option<&Path>,
    pipeline: Option<&Path>,
    format: TextOrJson,
) -> miette::Result<Code> {
    let versions = pipeline.map(file_versions).transpose()?;
    let dir = match (dir, pipeline) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(p)) => output_root(p).unwrap_or_else(|| PathBuf::from("runs")),
        (None, None) => PathBuf::from("runs"),
    };
    if !dir.is_dir() {
        return Err(miette::miette!(
            help = "give the folder runs are written to (a pipeline's `output.dir` without its last, templated part), e.g. `ardpipe runs runs/`",
            "{} is not a folder",
            dir.display()
        ));
    }
    let mut rows: Vec<RunRow> = find_runs(&dir)
        .into_iter()
        .map(|d| describe(&d, &dir))
        .collect();
    if let Some(v) = &versions {
        // A manifest written before blob ids were recorded is matched by the file's path: the
        // run is of this file, in a version nobody can name any more.
        let canonical = |p: &Path| std::fs::canonicalize(p).ok();
        let file = pipeline.and_then(canonical);
        rows.retain_mut(|r| {
            let version = match &r.pipeline_blob {
                Some(b) => v.get(b).cloned(),
                None => r
                    .pipeline_file
                    .as_deref()
                    .and_then(canonical)
                    .filter(|f| Some(f) == file.as_ref())
                    .map(|_| "unknown (no blob id recorded)".to_string()),
            };
            r.version = version;
            r.version.is_some()
        });
    }
    rows.sort_by(|a, b| (&a.started_at, &a.name).cmp(&(&b.started_at, &b.name)));
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        ),
        TextOrJson::Text => print!("{}", table(&rows, versions.is_some())),
    }
    Ok(Code::Success)
}

/// Every run directory (a folder with a manifest) under `dir`, not looking inside runs.
pub fn find_runs(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if d.join(rundir::MANIFEST).is_file() {
            out.push(d.to_path_buf());
            return;
        }
        if depth == MAX_DEPTH {
            return;
        }
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        let mut subs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        for s in subs {
            walk(&s, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(dir, 0, &mut out);
    out
}

fn read(path: &Path) -> Option<Value> {
    rundir::read_json(path).ok()
}

/// What a run directory says about itself; a missing or damaged file leaves its fields empty
/// (a listing shows every run, the broken ones too).
pub fn describe(run: &Path, root: &Path) -> RunRow {
    let manifest = read(&run.join(rundir::MANIFEST)).unwrap_or(Value::Null);
    let summary = read(&run.join(rundir::SUMMARY));
    let plan = read(&run.join(rundir::PLAN));
    let resolved = read(&run.join(rundir::RESOLVED_PIPELINE)).unwrap_or(Value::Null);
    let metrics = rundir::read_jsonl(&run.join(rundir::METRICS)).unwrap_or_default();
    let name = run
        .strip_prefix(root)
        .ok()
        .filter(|r| !r.as_os_str().is_empty())
        .unwrap_or(run)
        .display()
        .to_string();
    let method = resolved["adapters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["method"]["method"].as_str())
                .collect::<Vec<_>>()
                .join("+")
        })
        .unwrap_or_default();
    let logged = metrics.iter().filter_map(|r| r["step"].as_u64()).max();
    let checkpointed = std::fs::read_to_string(run.join(rundir::CHECKPOINTS).join("latest"))
        .ok()
        .and_then(|s| s.trim().strip_prefix("step-")?.parse::<u64>().ok());
    let steps_done = summary
        .as_ref()
        .and_then(|s| s["steps"].as_u64())
        .or(logged.max(checkpointed))
        .unwrap_or(0);
    let status = status(run, &manifest);
    // A killed run has no end time: its wall time is unknown, not "until now".
    let wall_seconds = summary
        .as_ref()
        .and_then(|s| s["wall_seconds"].as_f64())
        .or_else(|| {
            (status == "running" || manifest["ended_at"].is_string())
                .then(|| elapsed(&manifest))
                .flatten()
        });
    RunRow {
        name,
        dir: run.to_path_buf(),
        pipeline: manifest["run_name"].as_str().unwrap_or("?").to_string(),
        status,
        method,
        steps_done,
        steps_planned: plan
            .as_ref()
            .and_then(|p| p["training"]["total_steps"].as_u64()),
        best_eval: best_eval(&metrics, &resolved),
        exported_parameters: summary
            .as_ref()
            .and_then(|s| s["exported_parameters"].as_u64()),
        wall_seconds,
        started_at: manifest["started_at"].as_str().map(str::to_string),
        pipeline_blob: manifest["pipeline_blob"].as_str().map(str::to_string),
        pipeline_file: manifest["pipeline_file"].as_str().map(PathBuf::from),
        version: None,
    }
}

/// The manifest's status, except that `running` is believed only while a live process holds
/// the run's lock: the kernel drops the lock when its holder dies, so an unlocked "running" run
/// was killed (and `run --resume` continues it, as it does an interrupted one).
fn status(run: &Path, manifest: &Value) -> String {
    match manifest["status"].as_str() {
        Some("completed") => "finished".into(),
        Some("running") => {
            // A shared lock taken on a read-only handle: nothing in the run folder is written.
            let held = File::open(run.join("run.lock"))
                .map(|f| matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock)))
                .unwrap_or(false);
            if held { "running" } else { "interrupted" }.into()
        }
        Some(other) => other.to_string(),
        None => "unknown".into(),
    }
}

/// Seconds from the manifest's start to its end (or to now, for a run without an end).
fn elapsed(manifest: &Value) -> Option<f64> {
    ardpipe_engine::manifest::seconds_between(
        manifest["started_at"].as_str()?,
        manifest["ended_at"].as_str(),
    )
}

/// The metric that decides "better" for a run: early stopping's when the pipeline has it, else
/// the study's rule (perplexity, accuracy, then loss).
pub fn deciding_metric(metrics: &[String], resolved: &Value) -> Option<(String, bool)> {
    let stop = &resolved["train"]["early_stopping"];
    if let Some(kind) = stop["metric"]["kind"].as_str() {
        let name = match kind {
            "plugin" => stop["metric"]["name"].as_str().unwrap_or(kind),
            k => k,
        };
        return Some((name.to_string(), stop["mode"] == "max"));
    }
    super::study_report::primary(metrics).map(|(m, h)| (m.to_string(), h))
}

fn best_eval(records: &[Value], resolved: &Value) -> Option<BestEval> {
    let evals: Vec<&Value> = records.iter().filter(|r| r["split"] == "eval").collect();
    let names: Vec<String> = evals
        .iter()
        .filter_map(|r| r.as_object())
        .flat_map(|o| o.keys().cloned())
        .collect();
    let (metric, higher) = deciding_metric(&names, resolved)?;
    let mut best: Option<BestEval> = None;
    for r in evals {
        let Some(v) = r[metric.as_str()].as_f64() else {
            continue;
        };
        let better = best
            .as_ref()
            .is_none_or(|b| if higher { v > b.value } else { v < b.value });
        if better {
            best = Some(BestEval {
                metric: metric.clone(),
                value: v,
                step: r["step"].as_u64(),
                higher_is_better: higher,
            });
        }
    }
    best
}

/// Where a pipeline's runs go: its `output.dir` up to the first templated part.
fn output_root(pipeline: &Path) -> Option<PathBuf> {
    let ctx = super::check::context(&crate::args::Overrides::default());
    let checked = ardpipe_dsl::check_file(pipeline, &ctx).ok()?;
    let mut root = PathBuf::new();
    for c in Path::new(&checked.pipeline.output.dir).components() {
        if c.as_os_str().to_string_lossy().contains('{') {
            return Some(root);
        }
        root.push(c);
    }
    root.parent().map(Path::to_path_buf)
}

/// Every version of `file` as blob id → where it comes from: each commit that changed it
/// (renames followed; newest first, so a blob committed twice names its latest commit) and the
/// working copy.
fn file_versions(file: &Path) -> miette::Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(file).map_err(|e| {
        miette::miette!(
            help = "--pipeline takes the pipeline file whose runs to list",
            "cannot read {}: {e}",
            file.display()
        )
    })?;
    let mut out = BTreeMap::new();
    for (blob, commit) in committed_blobs(file).into_iter().rev() {
        out.insert(blob, commit);
    }
    out.entry(git_blob_id(&bytes))
        .or_insert_with(|| "working copy".into());
    Ok(out)
}

/// `(blob, commit)` of each committed version of `file`, newest first, from
/// `git log --follow --raw`: the raw lines carry each commit's new blob id of the file, under
/// whatever name it had then. Empty outside Git (only the working copy then counts).
fn committed_blobs(file: &Path) -> Vec<(String, String)> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
        return vec![];
    };
    let args = [
        "log",
        "--follow",
        "-m",
        "--no-abbrev",
        "--raw",
        "--format=commit %H",
        "--",
        name,
    ];
    let Ok(out) = ardpipe_engine::git::run(Some(dir), &args) else {
        return vec![];
    };
    let mut blobs = Vec::new();
    let mut commit = String::new();
    for line in out.lines() {
        if let Some(c) = line.strip_prefix("commit ") {
            commit = c.trim().to_string();
        } else if let Some(raw) = line.strip_prefix(':') {
            // `:old_mode new_mode old_blob new_blob status\tpath[\tpath]`
            let fields: Vec<&str> = raw.split_whitespace().collect();
            if let Some(new) = fields.get(3).filter(|b| b.chars().any(|c| c != '0')) {
                blobs.push((new.to_string(), commit.clone()));
            }
        }
    }
    blobs
}

fn table(rows: &[RunRow], with_version: bool) -> String {
    if rows.is_empty() {
        return "no runs\n".into();
    }
    let mut lines = vec![{
        let mut h = vec![
            "RUN",
            "STATUS",
            "METHOD",
            "STEPS",
            "BEST EVAL",
            "EXPORTED",
            "WALL",
        ];
        if with_version {
            h.push("VERSION");
        }
        h.into_iter().map(String::from).collect::<Vec<_>>()
    }];
    for r in rows {
        let mut cells = vec![
            r.name.clone(),
            r.status.clone(),
            if r.method.is_empty() {
                "-".into()
            } else {
                r.method.clone()
            },
            match r.steps_planned {
                Some(p) => format!("{}/{p}", r.steps_done),
                None => r.steps_done.to_string(),
            },
            r.best_eval.as_ref().map_or("-".into(), |b| {
                format!(
                    "{} {:.4}{}",
                    b.metric,
                    b.value,
                    b.step.map_or(String::new(), |s| format!(" @{s}"))
                )
            }),
            r.exported_parameters.map_or("-".into(), |n| n.to_string()),
            r.wall_seconds.map_or("-".into(), duration),
        ];
        if with_version {
            // A commit as `git log --oneline` shows it; `working copy` whole.
            let v = r.version.clone().unwrap_or_default();
            let short = v.len() == 40 && v.chars().all(|c| c.is_ascii_hexdigit());
            cells.push(if short { v[..10].to_string() } else { v });
        }
        lines.push(cells);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `12.3s`, `4m05s`, `2h03m`.
pub fn duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}
