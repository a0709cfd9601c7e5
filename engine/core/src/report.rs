//! The run report: `report/report.md` with SVG pictures drawn by this module (no plotting
//! dependency): the learned rank map per module kind (layer × head), α curves and loss curves;
//! and `report/index.html`, the same and more in one self-contained page ([`html`]).

pub mod html;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::metrics::{MetricsRecord, RankRecord};
use crate::rundir::{self, RunDirError};

/// Ranks of one module kind: `ranks[layer][head]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RankMap {
    pub module: String,
    pub layers: Vec<u32>,
    pub ranks: Vec<Vec<f64>>,
}

/// One curve: `(x, y)` points in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    pub title: String,
    /// Summary table rows, e.g. ("accuracy", "0.612 (majority baseline 0.214)").
    pub summary: Vec<(String, String)>,
    pub rank_maps: Vec<RankMap>,
    pub alpha_curves: Vec<Series>,
    pub loss_curves: Vec<Series>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// White → dark blue, by `t` in [0, 1].
fn color(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        lerp(247.0, 8.0),
        lerp(251.0, 48.0),
        lerp(255.0, 107.0)
    )
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A layer × head heatmap with the rank written in each cell.
pub fn heatmap_svg(map: &RankMap) -> String {
    let heads = map.ranks.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let rows = map.ranks.len().max(1);
    let (cell, left, top) = (28.0, 70.0, 40.0);
    let (w, h) = (
        left + cell * heads as f64 + 20.0,
        top + cell * rows as f64 + 40.0,
    );
    let max = map
        .ranks
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{left}" y="20" font-size="13">rank map: {} (max {max})</text>"#,
        esc(&map.module)
    );
    for (i, row) in map.ranks.iter().enumerate() {
        let y = top + cell * i as f64;
        let layer = map.layers.get(i).copied().unwrap_or(i as u32);
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">layer {layer}</text>"#,
            left - 6.0,
            y + cell * 0.65
        );
        for (j, &v) in row.iter().enumerate() {
            let x = left + cell * j as f64;
            let t = v / max;
            let fg = if t > 0.5 { "#ffffff" } else { "#000000" };
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{}" stroke="#cccccc"/><text x="{}" y="{}" text-anchor="middle" fill="{fg}">{}</text>"##,
                color(t),
                x + cell / 2.0,
                y + cell * 0.65,
                if v.is_finite() {
                    format!("{}", v.round())
                } else {
                    "?".into()
                }
            );
        }
    }
    for j in 0..heads {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">h{j}</text>"#,
            left + cell * j as f64 + cell / 2.0,
            top + cell * rows as f64 + 14.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A line chart of several series on shared axes.
pub fn line_chart_svg(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h) = (640.0, 360.0);
    let (left, right, top, bottom) = (60.0, 150.0, 30.0, 40.0);
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        y1 = y0 + 1.0;
    }
    let (pw, ph) = (w - left - right, h - top - bottom);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| top + ph - (y - y0) / (y1 - y0) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{left}" y="18" font-size="13">{}</text>"#,
        esc(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888888"/>"##
    );
    for k in 0..=4 {
        let fy = y0 + (y1 - y0) * k as f64 / 4.0;
        let fx = x0 + (x1 - x0) * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left - 4.0,
            sy(fy) + 4.0,
            fmt_num(fy),
            sx(fx),
            top + ph + 14.0,
            fmt_num(fx)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 6.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        top + ph / 2.0,
        top + ph / 2.0,
        esc(y_label)
    );
    for (i, ser) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = ser
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.2},{:.2}", sx(x), sy(y)))
            .collect();
        if !path.is_empty() {
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#,
                path.join(" ")
            );
        }
        let ly = top + 14.0 * i as f64 + 8.0;
        let _ = write!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            left + pw + 10.0,
            left + pw + 28.0,
            left + pw + 32.0,
            ly + 4.0,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-2 {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// The files a report consists of.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub pictures: Vec<PathBuf>,
    /// `index.html` (the run report of [`write_run_report`]).
    pub html: Option<PathBuf>,
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Write `report.md` and its SVGs into `dir` (atomically, file by file).
pub fn write_report(dir: &Path, input: &ReportInput) -> Result<ReportFiles, RunDirError> {
    std::fs::create_dir_all(dir).map_err(rundir::io_err("cannot create", dir))?;
    let mut md = format!("# {}\n\n", input.title);
    let mut pictures = Vec::new();
    if !input.summary.is_empty() {
        md.push_str("| | |\n|---|---|\n");
        for (k, v) in &input.summary {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        md.push('\n');
    }
    let mut picture =
        |name: String, svg: String, caption: &str, md: &mut String| -> Result<(), RunDirError> {
            let p = dir.join(&name);
            rundir::write_atomic(&p, svg.as_bytes())?;
            let _ = writeln!(md, "![{caption}]({name})\n");
            pictures.push(p);
            Ok(())
        };
    if !input.rank_maps.is_empty() {
        md.push_str("## Learned ranks (layer × head)\n\n");
        for m in &input.rank_maps {
            picture(
                format!("ranks-{}.svg", slug(&m.module)),
                heatmap_svg(m),
                &format!("rank map of {}", m.module),
                &mut md,
            )?;
        }
    }
    if !input.loss_curves.is_empty() {
        md.push_str("## Loss\n\n");
        picture(
            "loss.svg".into(),
            line_chart_svg("loss", "step", "loss", &input.loss_curves),
            "loss curves",
            &mut md,
        )?;
    }
    if !input.alpha_curves.is_empty() {
        md.push_str("## α over training\n\n");
        picture(
            "alpha.svg".into(),
            line_chart_svg("α", "step", "α", &input.alpha_curves),
            "alpha curves",
            &mut md,
        )?;
    }
    let markdown = dir.join("report.md");
    rundir::write_atomic(&markdown, md.as_bytes())?;
    Ok(ReportFiles {
        markdown,
        pictures,
        html: None,
    })
}

/// Loss curves (`train` and every other split) from `metrics.jsonl` records.
pub fn loss_curves(records: &[MetricsRecord]) -> Vec<Series> {
    let mut by_split: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in records {
        if let Some(&l) = r.values.get("loss") {
            by_split
                .entry(&r.split)
                .or_default()
                .push((r.step as f64, l));
        }
    }
    by_split
        .into_iter()
        .map(|(split, points)| Series {
            name: split.to_string(),
            points,
        })
        .collect()
}

/// α curves from `ranks.jsonl`: the mean α of each module kind per layer (one line per
/// module×layer would be hundreds of lines on a 30-layer model).
pub fn alpha_curves(records: &[RankRecord]) -> Vec<Series> {
    let mut curves: BTreeMap<(String, u32), Vec<(f64, f64)>> = BTreeMap::new();
    for r in records {
        let mut sums: BTreeMap<(String, u32), (f64, u32)> = BTreeMap::new();
        for u in &r.units {
            let e = sums.entry((u.module.clone(), u.layer)).or_default();
            e.0 += u.alpha;
            e.1 += 1;
        }
        for (k, (sum, n)) in sums {
            curves
                .entry(k)
                .or_default()
                .push((r.step as f64, sum / n as f64));
        }
    }
    curves
        .into_iter()
        .map(|((m, l), points)| Series {
            name: format!("{m} L{l}"),
            points,
        })
        .collect()
}

/// The final rank maps (one per module kind) from the last `ranks.jsonl` record.
pub fn rank_maps(last: &RankRecord) -> Vec<RankMap> {
    let mut grid: BTreeMap<&str, BTreeMap<u32, BTreeMap<u32, f64>>> = BTreeMap::new();
    for u in &last.units {
        grid.entry(&u.module)
            .or_default()
            .entry(u.layer)
            .or_default()
            .insert(u.head, u.rank as f64);
    }
    grid.into_iter()
        .map(|(module, layers)| {
            let heads = layers
                .values()
                .flat_map(|h| h.keys())
                .max()
                .map_or(0, |m| m + 1);
            RankMap {
                module: module.to_string(),
                layers: layers.keys().copied().collect(),
                ranks: layers
                    .values()
                    .map(|h| {
                        (0..heads)
                            .map(|i| h.get(&i).copied().unwrap_or(f64::NAN))
                            .collect()
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Loss curves and rank records from a run directory's `metrics.jsonl` and `ranks.jsonl`, read
/// leniently so both this crate's record types and flat trainer lines work: a metrics line
/// gives its loss as `values.loss` or `loss` (split `split`, default `train`); a rank unit gives
/// its module kind as `kind` or `module`, its rank as `rank` or `effective_rank`, and a missing
/// `layer` counts as layer 0.
pub fn read_run_curves(run_dir: &Path) -> Result<(Vec<Series>, Vec<RankRecord>), RunDirError> {
    let metrics: Vec<MetricsRecord> = rundir::read_jsonl(&run_dir.join(rundir::METRICS))?
        .iter()
        .filter_map(|v| {
            let step = v.get("step")?.as_u64()?;
            let loss = v
                .get("values")
                .and_then(|x| x.get("loss"))
                .or_else(|| v.get("loss"))?
                .as_f64()?;
            let split = v.get("split").and_then(|s| s.as_str()).unwrap_or("train");
            Some(MetricsRecord {
                step,
                split: split.to_string(),
                values: BTreeMap::from([("loss".to_string(), loss)]),
            })
        })
        .collect();
    let ranks = rundir::read_jsonl(&run_dir.join(rundir::RANKS))?
        .iter()
        .filter_map(|v| {
            let step = v.get("step")?.as_u64()?;
            let units = v
                .get("units")?
                .as_array()?
                .iter()
                .filter_map(|u| {
                    let module = u.get("kind").or_else(|| u.get("module"))?.as_str()?;
                    let rank = u
                        .get("rank")
                        .or_else(|| u.get("effective_rank"))?
                        .as_u64()?;
                    Some(crate::metrics::UnitRank {
                        module: module.to_string(),
                        layer: u.get("layer").and_then(|l| l.as_u64()).unwrap_or(0) as u32,
                        head: u.get("head")?.as_u64()? as u32,
                        alpha: u.get("alpha")?.as_f64()?,
                        rank: rank as u32,
                    })
                })
                .collect();
            Some(RankRecord { step, units })
        })
        .collect();
    Ok((loss_curves(&metrics), ranks))
}

/// Write `RUN/report/` from the run's logs: rank maps from the last rank record, α and loss
/// curves, and the caller's summary rows, as `report.md` with its pictures and as
/// `index.html`; whole or not at all (filled as `report.partial/`, then renamed by
/// [`rundir::write_dir_atomic`]). The trainer's report at the end of a run.
pub fn write_run_report(
    run_dir: &Path,
    title: &str,
    summary: Vec<(String, String)>,
) -> Result<ReportFiles, RunDirError> {
    let (loss, ranks) = read_run_curves(run_dir)?;
    let page = html::render(run_dir, title, &summary, &ranks)?;
    let input = ReportInput {
        title: title.to_string(),
        summary,
        rank_maps: ranks.last().map(rank_maps).unwrap_or_default(),
        alpha_curves: alpha_curves(&ranks),
        loss_curves: loss,
    };
    let dir = run_dir.join(rundir::REPORT);
    let mut written = None;
    rundir::write_dir_atomic(&dir, |partial| -> Result<(), RunDirError> {
        written = Some(write_report(partial, &input)?);
        rundir::write_atomic(&partial.join(html::INDEX), page.as_bytes())
    })?;
    let files = written.expect("the folder was filled");
    // The files as they are named now that the folder is in place.
    let moved = |p: PathBuf| p.file_name().map(|n| dir.join(n)).unwrap_or(p);
    Ok(ReportFiles {
        markdown: moved(files.markdown),
        pictures: files.pictures.into_iter().map(moved).collect(),
        html: Some(dir.join(html::INDEX)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::UnitRank;

    fn parse(svg: &str) {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert_eq!(
            doc.root_element().tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
    }

    fn ranks() -> Vec<RankRecord> {
        (0..3)
            .map(|s| RankRecord {
                step: s * 10,
                units: (0..2)
                    .flat_map(|layer| {
                        (0..3).map(move |head| UnitRank {
                            module: "query".into(),
                            layer,
                            head,
                            alpha: 1.0 - 0.1 * s as f64 + 0.05 * head as f64,
                            rank: 8 - s as u32 - head,
                        })
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn report_files_are_written_and_well_formed() {
        let d = tempfile::tempdir().unwrap();
        let metrics = vec![
            MetricsRecord {
                step: 0,
                split: "train".into(),
                values: BTreeMap::from([("loss".into(), 2.5)]),
            },
            MetricsRecord {
                step: 10,
                split: "train".into(),
                values: BTreeMap::from([("loss".into(), 1.5)]),
            },
            MetricsRecord {
                step: 10,
                split: "eval".into(),
                values: BTreeMap::from([("loss".into(), 1.7), ("accuracy".into(), 0.4)]),
            },
        ];
        let r = ranks();
        let input = ReportInput {
            title: "quickstart <ARD-LoRA>".into(),
            summary: vec![("accuracy".into(), "0.61".into())],
            rank_maps: rank_maps(r.last().unwrap()),
            alpha_curves: alpha_curves(&r),
            loss_curves: loss_curves(&metrics),
        };
        assert_eq!(input.loss_curves.len(), 2);
        assert_eq!(
            input.rank_maps[0].ranks,
            vec![vec![6.0, 5.0, 4.0], vec![6.0, 5.0, 4.0]]
        );
        assert_eq!(input.alpha_curves.len(), 2);
        let (x, y) = input.alpha_curves[0].points[0];
        assert_eq!(x, 0.0);
        assert!((y - 1.05).abs() < 1e-12, "{y}");
        let files = write_report(d.path(), &input).unwrap();
        assert_eq!(files.pictures.len(), 3);
        for p in &files.pictures {
            parse(&std::fs::read_to_string(p).unwrap());
        }
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        assert!(md.starts_with("# quickstart <ARD-LoRA>"));
        assert!(md.contains("![rank map of query](ranks-query.svg)"));
        assert!(md.contains("![loss curves](loss.svg)"));
        let heat = std::fs::read_to_string(d.path().join("ranks-query.svg")).unwrap();
        assert_eq!(heat.matches("<rect").count(), 6);
    }

    #[test]
    fn degenerate_inputs_still_give_valid_svg() {
        parse(&line_chart_svg("empty & <odd>", "x", "y", &[]));
        parse(&line_chart_svg(
            "flat",
            "x",
            "y",
            &[Series {
                name: "a\"b".into(),
                points: vec![(1.0, 2.0), (1.0, f64::NAN)],
            }],
        ));
        parse(&heatmap_svg(&RankMap {
            module: "v".into(),
            layers: vec![],
            ranks: vec![],
        }));
        parse(&heatmap_svg(&RankMap {
            module: "v".into(),
            layers: vec![0],
            ranks: vec![vec![f64::NAN, 3.0]],
        }));
    }

    #[test]
    fn a_run_directory_with_flat_trainer_lines_gets_a_full_report() {
        let d = tempfile::tempdir().unwrap();
        let lines = [
            r#"{"step":1,"split":"train","loss":2.0,"lr":0.001}"#,
            r#"{"step":2,"split":"train","loss":1.5,"lr":0.001}"#,
            r#"{"step":2,"split":"eval","metrics":{"accuracy":0.5},"values":{"loss":1.8}}"#,
        ];
        std::fs::write(d.path().join(rundir::METRICS), lines.join("\n") + "\n").unwrap();
        let unit = |layer: u32, head: u32, alpha: f64, r: u32| {
            serde_json::json!({"module": format!("encoder.layer.{layer}.attention.self.value"),
                "kind": "value", "layer": layer, "head": head, "alpha": alpha,
                "effective_rank": r, "capacity": 16})
        };
        let ranks = [
            serde_json::json!({"step": 1, "units": [unit(0, 0, 1.0, 8), unit(0, 1, 1.0, 8), unit(1, 0, 1.0, 8)]}),
            serde_json::json!({"step": 2, "units": [unit(0, 0, 0.5, 4), unit(0, 1, 1.2, 10), unit(1, 0, 0.25, 2)]}),
        ];
        let text: String = ranks.iter().map(|r| r.to_string() + "\n").collect();
        std::fs::write(d.path().join(rundir::RANKS), text).unwrap();
        let files = write_run_report(d.path(), "run", vec![("steps".into(), "2".into())]).unwrap();
        assert_eq!(files.pictures.len(), 3);
        for p in &files.pictures {
            parse(&std::fs::read_to_string(p).unwrap());
        }
        let (loss, recs) = read_run_curves(d.path()).unwrap();
        assert_eq!(loss.len(), 2);
        assert_eq!(loss[1].points, vec![(1.0, 2.0), (2.0, 1.5)]);
        let maps = rank_maps(recs.last().unwrap());
        assert_eq!(maps[0].module, "value");
        assert_eq!(maps[0].ranks[0], vec![4.0, 10.0]);
        assert!(maps[0].ranks[1][1].is_nan()); // layer 1 has no head 1
    }
}
