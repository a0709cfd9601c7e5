//! `ardpipe diff OLD NEW`: two pipelines compared as the checker resolves them (imports,
//! variables and defaults applied), then what the change does to the plan: modules targeted,
//! ranks, trainable parameters, steps. OLD and NEW are files, or `REV:path` read from Git (the
//! file and its relative imports from that revision's tree; its other paths — model, data — are
//! resolved where the file lies in the work tree, as a checkout of REV would have them).
//!
//! `ardpipe diff --textconv FILE` prints the resolved pipeline as one `key = value` line per
//! setting, for Git's textconv (docs/GIT.md): `git diff` of `.ard` files then shows what
//! changed in the resolved pipeline. Git hands an old version over as a temporary file
//! (`$TMPDIR/git-blob-XXXXXX/NAME.ard`) and runs the command at the top of the work tree; such a
//! file is checked as if it were the tracked file of that name (imports read from the work
//! tree), and a file that cannot be resolved is shown as written, so `git diff` never fails.

use std::path::{Path, PathBuf};

use ardpipe_engine::manifest::{canonical_json, json_diff};
use ardpipe_engine::plan::ExecutionPlan;
use ardpipe_engine::train::planning::plan_run;
use serde::Serialize;
use serde_json::{Value, json};

use crate::args::{Overrides, TextOrJson};
use crate::exit::Code;

/// One side of the comparison, resolved.
struct Side {
    label: String,
    pipeline: ardpipe_dsl::Pipeline,
}

#[derive(Debug, Serialize)]
struct KeyChange {
    key: String,
    /// `added`, `removed` or `changed`.
    change: &'static str,
    old: Option<Value>,
    new: Option<Value>,
}

/// The plan of one run (the pipeline, or one variant) on both sides.
#[derive(Debug, Serialize)]
struct RunImpact {
    run: String,
    old: Result<PlanFacts, String>,
    new: Result<PlanFacts, String>,
}

/// What a plan says that a pipeline change moves.
#[derive(Debug, Serialize, PartialEq)]
struct PlanFacts {
    steps: u64,
    trainable_initial: usize,
    trainable_max: usize,
    adapters: Vec<AdapterFacts>,
}

#[derive(Debug, Serialize, PartialEq)]
struct AdapterFacts {
    name: String,
    method: String,
    modules: usize,
    rank_initial: usize,
    rank_max: usize,
    trainable_initial: usize,
}

pub fn run(
    old: Option<&str>,
    new: Option<&str>,
    textconv: Option<&Path>,
    format: TextOrJson,
) -> miette::Result<Code> {
    if let Some(file) = textconv {
        print!("{}", textconv_text(file));
        return Ok(Code::Success);
    }
    let (Some(old), Some(new)) = (old, new) else {
        return Err(miette::miette!(
            help = "e.g. `ardpipe diff HEAD~1:pipelines/quickstart.ard pipelines/quickstart.ard`",
            "diff needs OLD and NEW (or --textconv FILE)"
        ));
    };
    let (Some(a), Some(b)) = (resolve(old)?, resolve(new)?) else {
        return Ok(Code::Failure);
    };
    let keys = key_changes(&a.pipeline, &b.pipeline);
    let impact = impact(&a.pipeline, &b.pipeline);
    match format {
        TextOrJson::Json => {
            let doc = json!({
                "old": a.label,
                "new": b.label,
                "keys": keys,
                "plan": impact.iter().map(|r| json!({
                    "run": r.run,
                    "old": facts_json(&r.old),
                    "new": facts_json(&r.new),
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        TextOrJson::Text => print!("{}", text(&a.label, &b.label, &keys, &impact)),
    }
    Ok(Code::Success)
}

fn facts_json(f: &Result<PlanFacts, String>) -> Value {
    match f {
        Ok(f) => serde_json::to_value(f).unwrap_or_default(),
        Err(e) => json!({ "error": e }),
    }
}

/// A `REV:path` spec (not a file that exists under that name), split.
fn git_spec(spec: &str) -> Option<(&str, &str)> {
    if Path::new(spec).exists() {
        return None;
    }
    let (rev, path) = spec.split_once(':')?;
    (!rev.is_empty() && !path.is_empty()).then_some((rev, path))
}

fn git(args: &[&str], dir: Option<&Path>) -> Result<String, String> {
    ardpipe_engine::git::run(dir, args).map_err(|e| e.to_string())
}

/// Check one side; on errors its diagnostics are printed and `None` returned.
fn resolve(spec: &str) -> miette::Result<Option<Side>> {
    let ctx = super::check::context(&Overrides::default());
    let side = |checked: Result<ardpipe_dsl::Checked, ardpipe_dsl::Diagnostics>| match checked {
        Ok(c) => Some(Side {
            label: spec.to_string(),
            pipeline: c.pipeline,
        }),
        Err(d) => {
            super::check::print_diagnostics(d);
            None
        }
    };
    let Some((rev, path)) = git_spec(spec) else {
        return Ok(side(ardpipe_dsl::check_file(Path::new(spec), &ctx)));
    };
    let fail = |why: String| {
        miette::miette!(
            help = "REV:path reads the file from Git as `git show REV:path` does: path is relative to the repository's top folder (or to the current folder when it starts with ./ or ../)",
            "cannot read {spec}: {why}"
        )
    };
    let top = PathBuf::from(
        git(&["rev-parse", "--show-toplevel"], None)
            .map_err(fail)?
            .trim(),
    );
    // As git reads it: `REV:./p` is relative to the current folder, `REV:p` to the top.
    let in_repo = if path.starts_with("./") || path.starts_with("../") {
        let prefix = git(&["rev-parse", "--show-prefix"], None).map_err(fail)?;
        ardpipe_dsl::normalize_path(&Path::new(prefix.trim()).join(path))
    } else {
        PathBuf::from(path)
    };
    let object = format!("{rev}:{}", in_repo.display());
    let text = git(&["cat-file", "blob", &object], Some(&top)).map_err(fail)?;
    let file = top.join(&in_repo);
    let rev = rev.to_string();
    let top_for_imports = top.clone();
    let imports = move |abs: &Path| -> Result<String, String> {
        match abs.strip_prefix(&top_for_imports) {
            Ok(rel) => git(
                &["cat-file", "blob", &format!("{rev}:{}", rel.display())],
                Some(&top_for_imports),
            )
            .map_err(|e| format!("not in {rev}'s tree ({e})")),
            // Outside the repository: no revision of it exists; the disk has the only copy.
            Err(_) => std::fs::read_to_string(abs).map_err(|e| e.to_string()),
        }
    };
    Ok(side(ardpipe_dsl::check_source_with_imports(
        &file, &text, &ctx, &imports,
    )))
}

/// The resolved pipeline as JSON, without its location (`file`): what the file says, not where
/// it lies.
fn settings(p: &ardpipe_dsl::Pipeline) -> Value {
    fn strip(v: &mut Value) {
        if let Some(o) = v.as_object_mut() {
            o.remove("file");
            if let Some(Value::Array(vs)) = o.get_mut("variants") {
                for x in vs {
                    strip(&mut x["pipeline"]);
                }
            }
        }
    }
    let mut v = serde_json::to_value(p).unwrap_or_default();
    strip(&mut v);
    v
}

fn key_changes(a: &ardpipe_dsl::Pipeline, b: &ardpipe_dsl::Pipeline) -> Vec<KeyChange> {
    json_diff(&settings(a), &settings(b))
        .into_iter()
        .map(|(key, old, new)| KeyChange {
            key,
            change: match (&old, &new) {
                (None, _) => "added",
                (_, None) => "removed",
                _ => "changed",
            },
            old,
            new,
        })
        .collect()
}

fn facts(p: &ardpipe_dsl::Pipeline) -> Result<PlanFacts, String> {
    let plan: ExecutionPlan = plan_run(p).map_err(|e| e.to_string())?;
    Ok(PlanFacts {
        steps: plan.training.total_steps,
        trainable_initial: plan.trainable_initial,
        trainable_max: plan.trainable_max,
        adapters: plan
            .adapters
            .iter()
            .map(|a| AdapterFacts {
                name: a.name.clone(),
                method: a.method.clone(),
                modules: a.modules.len(),
                rank_initial: a.rank_budget_initial,
                rank_max: a.rank_budget_max,
                trainable_initial: a.trainable_initial,
            })
            .collect(),
    })
}

/// Each run on both sides, matched by name (a variant only one side has is planned alone).
fn impact(a: &ardpipe_dsl::Pipeline, b: &ardpipe_dsl::Pipeline) -> Vec<RunImpact> {
    let (ra, rb) = (a.runs(), b.runs());
    let single = ra.len() == 1 && rb.len() == 1;
    let mut names: Vec<&str> = ra.iter().chain(&rb).map(|(n, _)| *n).collect();
    names.dedup();
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for name in names {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let side = |runs: &[(&str, &ardpipe_dsl::Pipeline)], label: &str| {
            // One run each (no variants): compared whatever their names.
            let found = if single {
                runs.first()
            } else {
                runs.iter().find(|(n, _)| *n == name)
            };
            match found {
                Some((_, p)) => facts(p),
                None => Err(format!("{label} has no run `{name}`")),
            }
        };
        out.push(RunImpact {
            run: name.to_string(),
            old: side(&ra, "OLD"),
            new: side(&rb, "NEW"),
        });
        if single {
            break;
        }
    }
    out
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => canonical_json(v),
    }
}

fn signed(old: usize, new: usize) -> String {
    let d = new as i128 - old as i128;
    if d == 0 {
        format!("{old} (unchanged)")
    } else {
        format!("{old} → {new} ({d:+})")
    }
}

fn text(old: &str, new: &str, keys: &[KeyChange], impact: &[RunImpact]) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "pipeline  {old} → {new}");
    if keys.is_empty() {
        let _ = writeln!(o, "keys      the resolved pipelines are the same");
    }
    for k in keys {
        let _ = match k.change {
            "added" => writeln!(o, "added     {} = {}", k.key, show(&k.new)),
            "removed" => writeln!(o, "removed   {} (was {})", k.key, show(&k.old)),
            _ => writeln!(
                o,
                "changed   {}: {} → {}",
                k.key,
                show(&k.old),
                show(&k.new)
            ),
        };
    }
    for r in impact {
        let _ = writeln!(o, "\nplan of `{}`", r.run);
        match (&r.old, &r.new) {
            (Ok(a), Ok(b)) => {
                if a == b {
                    let _ = writeln!(
                        o,
                        "  unchanged (steps, trainable parameters, modules, rank budgets)"
                    );
                    continue;
                }
                let _ = writeln!(
                    o,
                    "  steps                {}",
                    signed(a.steps as usize, b.steps as usize)
                );
                let _ = writeln!(
                    o,
                    "  trainable (initial)  {}",
                    signed(a.trainable_initial, b.trainable_initial)
                );
                let _ = writeln!(
                    o,
                    "  trainable (max)      {}",
                    signed(a.trainable_max, b.trainable_max)
                );
                let mut names: Vec<&str> = a
                    .adapters
                    .iter()
                    .chain(&b.adapters)
                    .map(|x| x.name.as_str())
                    .collect();
                names.sort_unstable();
                names.dedup();
                for n in names {
                    let (x, y) = (
                        a.adapters.iter().find(|x| x.name == n),
                        b.adapters.iter().find(|x| x.name == n),
                    );
                    match (x, y) {
                        (Some(x), Some(y)) => {
                            let method = if x.method == y.method {
                                x.method.clone()
                            } else {
                                format!("{} → {}", x.method, y.method)
                            };
                            let _ = writeln!(
                                o,
                                "  adapter {n} ({method}): modules {}, rank budget {}, max {}",
                                signed(x.modules, y.modules),
                                signed(x.rank_initial, y.rank_initial),
                                signed(x.rank_max, y.rank_max)
                            );
                        }
                        (Some(x), None) => {
                            let _ = writeln!(
                                o,
                                "  adapter {n} removed ({} modules, rank budget {})",
                                x.modules, x.rank_initial
                            );
                        }
                        (None, Some(y)) => {
                            let _ = writeln!(
                                o,
                                "  adapter {n} added ({} modules, rank budget {})",
                                y.modules, y.rank_initial
                            );
                        }
                        (None, None) => {}
                    }
                }
            }
            (a, b) => {
                for (label, side) in [("OLD", a), ("NEW", b)] {
                    match side {
                        Ok(f) => {
                            let _ = writeln!(
                                o,
                                "  {label}: {} steps, {} trainable parameters (initial)",
                                f.steps, f.trainable_initial
                            );
                        }
                        Err(e) => {
                            let _ = writeln!(o, "  {label} cannot be planned: {e}");
                        }
                    }
                }
            }
        }
    }
    o
}

// ---- textconv ---------------------------------------------------------------------------------

/// The resolved pipeline as sorted `key = value` lines, or the file as written (after a note
/// saying why) when it cannot be resolved.
fn textconv_text(file: &Path) -> String {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return format!("# ardpipe: cannot read {}: {e}\n", file.display()),
    };
    let ctx = super::check::context(&Overrides::default());
    let at = tracked_original(file).unwrap_or_else(|| file.to_path_buf());
    match ardpipe_dsl::check_source(&at, &text, &ctx) {
        Ok(c) => {
            let mut lines = Vec::new();
            flatten("", &settings(&c.pipeline), &mut lines);
            lines.join("\n") + "\n"
        }
        Err(d) => {
            let first = d
                .problems
                .first()
                .map_or_else(String::new, |p| format!(": {}", p.message));
            format!(
                "# ardpipe: not resolved ({} problem(s){first}); the file as written:\n{text}",
                d.problems.len()
            )
        }
    }
}

/// Git's temporary copy of an old version (`…/git-blob-XXXXXX/NAME`) stands for the tracked
/// file named NAME when the work tree (git runs textconv at its top) has exactly one.
fn tracked_original(file: &Path) -> Option<PathBuf> {
    let parent = file.parent()?.file_name()?.to_str()?;
    if !parent.starts_with("git-blob-") {
        return None;
    }
    let name = file.file_name()?.to_str()?;
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"], None).ok()?.trim());
    let listed = git(&["ls-files", "--full-name", "-z"], Some(&top)).ok()?;
    let mut hits = listed
        .split('\0')
        .filter(|p| Path::new(p).file_name().and_then(|n| n.to_str()) == Some(name));
    let one = hits.next()?;
    hits.next().is_none().then(|| top.join(one))
}

/// One line per leaf, in key order: `train.duration.value = 200`.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, &m[k], out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        leaf => out.push(format!("{prefix} = {}", canonical_json(leaf))),
    }
}
