//! `report/index.html`: the run report as one self-contained page (inline CSS, script and SVG;
//! nothing fetched, no fonts), for a browser opened on the file. The page holds the run's data
//! as JSON (metrics.jsonl, ranks.jsonl grouped per module kind, plan.json, manifest.json) and
//! its script draws the rank heat maps per module kind (layer × head, with a slider over the
//! logged steps), the loss, metric and α curves, and the plan and manifest.
//!
//! The script marks the body `data-rendered="ok"` once everything is drawn and counts uncaught
//! errors in `data-errors` (their messages in `data-error-messages`): what tests/cli/report.rs
//! reads back from a headless browser.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::metrics::RankRecord;
use crate::rundir::{self, RunDirError};

/// The page's file name inside `report/`.
pub const INDEX: &str = "index.html";

const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// Ranks and α of one module kind over the logged steps: `ranks[i]` is step `steps[i]`'s grid,
/// layer-major (`layers.len() × heads`), null where a layer has no such head.
fn rank_series(records: &[RankRecord]) -> Vec<Value> {
    let mut kinds: BTreeMap<&str, (Vec<u32>, u32)> = BTreeMap::new();
    for r in records {
        for u in &r.units {
            let e = kinds.entry(&u.module).or_default();
            if !e.0.contains(&u.layer) {
                e.0.push(u.layer);
            }
            e.1 = e.1.max(u.head + 1);
        }
    }
    kinds
        .into_iter()
        .map(|(module, (mut layers, heads))| {
            layers.sort_unstable();
            let cells = layers.len() * heads as usize;
            let (mut steps, mut ranks, mut alphas) = (vec![], vec![], vec![]);
            for r in records {
                let mut rank: Vec<Option<u32>> = vec![None; cells];
                let mut alpha: Vec<Option<f64>> = vec![None; cells];
                let mut any = false;
                for u in r.units.iter().filter(|u| u.module == module) {
                    if let Ok(l) = layers.binary_search(&u.layer) {
                        let i = l * heads as usize + u.head as usize;
                        rank[i] = Some(u.rank);
                        alpha[i] = Some(u.alpha).filter(|a| a.is_finite());
                        any = true;
                    }
                }
                if any {
                    steps.push(r.step);
                    ranks.push(rank);
                    alphas.push(alpha);
                }
            }
            json!({"module": module, "layers": layers, "heads": heads, "steps": steps,
                   "ranks": ranks, "alpha": alphas})
        })
        .collect()
}

/// A JSON file of the run, or null when it is not there (yet).
fn optional_json(path: &Path) -> Result<Value, RunDirError> {
    if path.exists() {
        rundir::read_json(path)
    } else {
        Ok(Value::Null)
    }
}

/// JSON that can sit inside a `<script>` element: `<` only occurs inside strings there, where
/// `\u003c` means the same, so no `</script>` or `<!--` can end or confuse the element.
fn script_json(v: &Value) -> String {
    v.to_string().replace('<', "\\u003c")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for `run_dir` as it is now: `title`, the summary rows, and the run's logs.
pub fn render(
    run_dir: &Path,
    title: &str,
    summary: &[(String, String)],
    ranks: &[RankRecord],
) -> Result<String, RunDirError> {
    // Non-finite values are not JSON: the logs never hold them (a non-finite loss stops the
    // run), and a record without a number simply draws no point.
    let metrics = rundir::read_jsonl(&run_dir.join(rundir::METRICS))?;
    let data = json!({
        "title": title,
        "summary": summary,
        "metrics": metrics,
        "ranks": rank_series(ranks),
        "plan": optional_json(&run_dir.join(rundir::PLAN))?,
        "manifest": optional_json(&run_dir.join(rundir::MANIFEST))?,
    });
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}: ardpipe run report</title>\n<style>\n{STYLE}</style>\n</head>\n\
         <body data-errors=\"0\">\n\
         <script>\n\
         window.onerror = function (message, source, line, column) {{\n\
           var b = document.body, n = Number(b.dataset.errors || 0) + 1;\n\
           b.dataset.errors = String(n);\n\
           b.dataset.errorMessages = (b.dataset.errorMessages || '') + message + ' (line ' + line + ':' + column + ')\\n';\n\
         }};\n\
         </script>\n\
         <main id=\"report\"><h1>{title}</h1><p class=\"note\">Drawing the report…</p></main>\n\
         <script type=\"application/json\" id=\"run-data\">{}</script>\n\
         <script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        script_json(&data),
        title = esc(title),
    ))
}

/// Write `report/index.html` of `run_dir` atomically (the report of a run still training, at
/// its checkpoints). Returns its path.
pub fn write_progress(
    run_dir: &Path,
    title: &str,
    summary: &[(String, String)],
) -> Result<PathBuf, RunDirError> {
    let (_, ranks) = super::read_run_curves(run_dir)?;
    let page = render(run_dir, title, summary, &ranks)?;
    let dir = run_dir.join(rundir::REPORT);
    std::fs::create_dir_all(&dir).map_err(rundir::io_err("cannot create", &dir))?;
    let path = dir.join(INDEX);
    rundir::write_atomic(&path, page.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::UnitRank;

    #[test]
    fn the_page_embeds_the_logs_safely_and_groups_ranks_per_module() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(rundir::METRICS),
            "{\"step\":1,\"split\":\"train\",\"loss\":2.0,\"note\":\"</script><!--\"}\n",
        )
        .unwrap();
        let unit = |layer, head, rank| UnitRank {
            module: "q".into(),
            layer,
            head,
            alpha: 0.5,
            rank,
        };
        let ranks = vec![
            RankRecord {
                step: 1,
                units: vec![unit(0, 0, 4), unit(0, 1, 3), unit(2, 0, 2)],
            },
            RankRecord {
                step: 2,
                units: vec![unit(0, 0, 1)],
            },
        ];
        let page = render(d.path(), "a <b>", &[("k".into(), "v".into())], &ranks).unwrap();
        assert_eq!(page.matches("</script>").count(), 3, "{page}");
        assert!(page.contains("<title>a &lt;b&gt;: ardpipe run report</title>"));
        let start = page.find("id=\"run-data\">").unwrap() + "id=\"run-data\">".len();
        let end = start + page[start..].find("</script>").unwrap();
        let data: Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(data["metrics"][0]["note"], "</script><!--");
        assert_eq!(data["plan"], Value::Null);
        let q = &data["ranks"][0];
        assert_eq!(q["layers"], json!([0, 2]));
        assert_eq!(q["heads"], 2);
        assert_eq!(q["steps"], json!([1, 2]));
        assert_eq!(q["ranks"][0], json!([4, 3, 2, null]));
        assert_eq!(q["ranks"][1], json!([1, null, null, null]));
    }
}
