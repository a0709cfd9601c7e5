//! `ardpipe compare RUN RUN…`: runs side by side — metrics (final and best evaluation, the
//! last training loss), parameters (trainable, exported), the settings that differ between
//! their resolved pipelines, and their rank maps (per module, per layer, the mean effective rank
//! of the last `ranks.jsonl` record). Reads only the runs' files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ardpipe_engine::manifest::{canonical_json, json_diff};
use ardpipe_engine::rundir;
use serde::Serialize;
use serde_json::{Value, json};

use super::runs::{RunRow, describe, duration};
use crate::args::TextOrJson;
use crate::exit::Code;

#[derive(Debug, Serialize)]
struct Compared {
    #[serde(flatten)]
    row: RunRow,
    /// The final evaluation's metrics, in the pipeline's order.
    final_eval: Vec<(String, f64)>,
    /// The last logged training loss.
    train_loss: Option<f64>,
    trainable_initial: Option<u64>,
    trainable_max: Option<u64>,
    /// The most adaptation parameters held at once (adaptive methods grow and shrink).
    peak_parameters: Option<u64>,
}

/// Per module kind, per layer: each run's mean effective rank (None: the run has no such unit).
type RankTable = BTreeMap<String, BTreeMap<u64, Vec<Option<f64>>>>;

pub fn run(dirs: &[PathBuf], format: TextOrJson) -> miette::Result<Code> {
    for d in dirs {
        if !d.join(rundir::MANIFEST).is_file() {
            return Err(miette::miette!(
                help = "each RUN is a folder `ardpipe run` created (`ardpipe runs` lists them)",
                "{} is not a run directory (no {})",
                d.display(),
                rundir::MANIFEST
            ));
        }
    }
    let runs: Vec<Compared> = dirs.iter().map(|d| compared(d)).collect();
    let settings = differing_settings(dirs);
    let ranks = rank_table(dirs);
    match format {
        TextOrJson::Json => {
            let doc = json!({
                "runs": runs,
                "settings": settings.iter().map(|(k, vs)| json!({"key": k, "values": vs})).collect::<Vec<_>>(),
                "ranks": ranks.iter().map(|(module, layers)| json!({
                    "module": module,
                    "layers": layers.iter().map(|(l, v)| json!({"layer": l, "mean_rank": v})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        TextOrJson::Text => print!("{}", text(&runs, &settings, &ranks)),
    }
    Ok(Code::Success)
}

fn read(path: &Path) -> Option<Value> {
    rundir::read_json(path).ok()
}

fn compared(dir: &Path) -> Compared {
    let row = describe(dir, Path::new(""));
    let summary = read(&dir.join(rundir::SUMMARY)).unwrap_or(Value::Null);
    let plan = read(&dir.join(rundir::PLAN)).unwrap_or(Value::Null);
    let records = rundir::read_jsonl(&dir.join(rundir::METRICS)).unwrap_or_default();
    let final_eval = summary["final_eval"]["metrics"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| Some((m[0].as_str()?.to_string(), m[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let train_loss = records
        .iter()
        .rev()
        .find(|r| r["split"] == "train" && r["loss"].is_number())
        .and_then(|r| r["loss"].as_f64());
    Compared {
        row,
        final_eval,
        train_loss,
        trainable_initial: plan["trainable_initial"].as_u64(),
        trainable_max: plan["trainable_max"].as_u64(),
        peak_parameters: summary["peak_parameters"].as_u64(),
    }
}

/// Each resolved-pipeline key whose value is not the same in every run, with every run's value.
/// Labels and locations (`file`, `name`, `output.dir`) differ between any two runs and are left out.
fn differing_settings(dirs: &[PathBuf]) -> Vec<(String, Vec<Option<Value>>)> {
    let resolved: Vec<Value> = dirs
        .iter()
        .map(|d| {
            let mut v = read(&d.join(rundir::RESOLVED_PIPELINE)).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.remove("file");
                o.remove("name");
                if let Some(out) = o.get_mut("output").and_then(Value::as_object_mut) {
                    out.remove("dir");
                }
            }
            v
        })
        .collect();
    let Some(first) = resolved.first() else {
        return vec![];
    };
    let mut keys: Vec<String> = Vec::new();
    for other in &resolved[1..] {
        for (k, _, _) in json_diff(first, other) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let values = resolved.iter().map(|r| at_path(r, &k).cloned()).collect();
            (k, values)
        })
        .collect()
}

/// The value at a dotted path as [`json_diff`] writes it (`a.b[2].c`).
fn at_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = v;
    for seg in path.split('.') {
        let (key, idx) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        for i in idx.split(['[', ']']).filter(|s| !s.is_empty()) {
            cur = cur.get(i.parse::<usize>().ok()?)?;
        }
    }
    Some(cur)
}

/// Mean effective rank per module kind and layer in each run's last `ranks.jsonl` record.
fn rank_table(dirs: &[PathBuf]) -> RankTable {
    let mut table = RankTable::new();
    for (i, d) in dirs.iter().enumerate() {
        let records = rundir::read_jsonl(&d.join(rundir::RANKS)).unwrap_or_default();
        let Some(last) = records.last() else { continue };
        let mut sums: BTreeMap<(String, u64), (f64, usize)> = BTreeMap::new();
        for u in last["units"].as_array().into_iter().flatten() {
            let (Some(kind), Some(layer), Some(rank)) = (
                u["kind"].as_str(),
                u["layer"].as_u64(),
                u["effective_rank"].as_f64(),
            ) else {
                continue;
            };
            let e = sums.entry((kind.to_string(), layer)).or_default();
            e.0 += rank;
            e.1 += 1;
        }
        for ((kind, layer), (sum, n)) in sums {
            let row = table
                .entry(kind)
                .or_default()
                .entry(layer)
                .or_insert_with(|| vec![None; dirs.len()]);
            row[i] = Some(sum / n as f64);
        }
    }
    table
}

fn text(runs: &[Compared], settings: &[(String, Vec<Option<Value>>)], ranks: &RankTable) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let col = |f: &dyn Fn(&Compared) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let num = |v: Option<u64>| v.map_or("-".into(), |n| n.to_string());
    rows.push(("run".into(), col(&|r| r.row.name.clone())));
    rows.push(("status".into(), col(&|r| r.row.status.clone())));
    rows.push(("method".into(), col(&|r| r.row.method.clone())));
    rows.push((
        "steps".into(),
        col(&|r| match r.row.steps_planned {
            Some(p) => format!("{}/{p}", r.row.steps_done),
            None => r.row.steps_done.to_string(),
        }),
    ));
    let mut metric_names: Vec<&str> = Vec::new();
    for r in runs {
        for (m, _) in &r.final_eval {
            if !metric_names.contains(&m.as_str()) {
                metric_names.push(m.as_str());
            }
        }
    }
    for m in metric_names {
        rows.push((
            format!("final eval {m}"),
            col(&|r| {
                r.final_eval
                    .iter()
                    .find(|(n, _)| n == m)
                    .map_or("-".into(), |(_, v)| format!("{v:.4}"))
            }),
        ));
    }
    rows.push((
        "best eval".into(),
        col(&|r| {
            r.row.best_eval.as_ref().map_or("-".into(), |b| {
                format!(
                    "{} {:.4}{}",
                    b.metric,
                    b.value,
                    b.step.map_or(String::new(), |s| format!(" @{s}"))
                )
            })
        }),
    ));
    rows.push((
        "train loss (last)".into(),
        col(&|r| r.train_loss.map_or("-".into(), |l| format!("{l:.4}"))),
    ));
    rows.push((
        "trainable (initial)".into(),
        col(&|r| num(r.trainable_initial)),
    ));
    rows.push(("trainable (max)".into(), col(&|r| num(r.trainable_max))));
    rows.push(("peak parameters".into(), col(&|r| num(r.peak_parameters))));
    rows.push((
        "exported parameters".into(),
        col(&|r| num(r.row.exported_parameters)),
    ));
    rows.push((
        "wall time".into(),
        col(&|r| r.row.wall_seconds.map_or("-".into(), duration)),
    ));
    let mut out = grid(&rows);
    out.push_str("\nsettings that differ\n");
    if settings.is_empty() {
        out.push_str("  none\n");
    } else {
        let srows: Vec<(String, Vec<String>)> = settings
            .iter()
            .map(|(k, vs)| {
                let cells = vs
                    .iter()
                    .map(|v| match v {
                        None => "(absent)".into(),
                        Some(Value::String(s)) => s.clone(),
                        Some(v) => canonical_json(v),
                    })
                    .collect();
                (format!("  {k}"), cells)
            })
            .collect();
        out.push_str(&grid(&srows));
    }
    out.push_str("\nmean effective rank per layer (last ranks.jsonl record)\n");
    if ranks.is_empty() {
        out.push_str("  none of these runs records ranks\n");
    }
    // One grid for every module, so the columns line up across them.
    let mut lrows: Vec<(String, Vec<String>)> = Vec::new();
    for (module, layers) in ranks {
        lrows.push((format!("  {module}"), vec![]));
        for (l, vs) in layers {
            lrows.push((
                format!("    layer {l}"),
                vs.iter()
                    .map(|v| v.map_or("-".into(), |x| format!("{x:.2}")))
                    .collect(),
            ));
        }
    }
    out.push_str(&grid(&lrows));
    out
}

/// Rows of a label and one cell per run, in aligned columns.
fn grid(rows: &[(String, Vec<String>)]) -> String {
    // A heading row (no cells) may be wider than the labels without widening the columns.
    let label_w = rows
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let n = rows.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|(_, c)| c.get(i).map(|s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (label, cells) in rows {
        let mut line = format!("{label:<label_w$}");
        for (c, &w) in cells.iter().zip(&widths) {
            line.push_str(&format!("  {c:<w$}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
