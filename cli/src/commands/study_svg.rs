//! The study's Pareto figure as plain SVG: exported parameters (log scale) against the primary
//! score, one colour and marker per method family with a legend, each point labelled with its
//! variant and, over two or more seeds, an error bar of ± one sample standard deviation; the
//! Pareto frontier (chosen by `study_report::pareto_frontier`) as a step line.

use std::fmt::Write as _;

/// One variant: its exported parameters, mean score and the score's spread over seeds.
pub struct Point {
    pub label: String,
    pub family: String,
    pub x: f64,
    pub y: f64,
    pub err: Option<f64>,
}

const W: f64 = 760.0;
const H: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

/// Text for SVG content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A marker of family number `k` at (x, y) in pixels; `class` names its role.
fn marker(k: usize, x: f64, y: f64, class: &str) -> String {
    let c = COLOURS[k % COLOURS.len()];
    let r = 5.0;
    match (k / COLOURS.len() + k) % 4 {
        0 => format!(r#"<circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{c}"/>"#),
        1 => format!(
            r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{c}"/>"#,
            x - r,
            y - r,
            2.0 * r,
            2.0 * r
        ),
        2 => format!(
            r#"<polygon class="{class}" points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{c}"/>"#,
            x,
            y - r * 1.2,
            x - r * 1.1,
            y + r * 0.9,
            x + r * 1.1,
            y + r * 0.9
        ),
        _ => format!(
            r#"<polygon class="{class}" points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{c}"/>"#,
            x,
            y - r * 1.3,
            x + r * 1.3,
            y,
            x,
            y + r * 1.3,
            x - r * 1.3,
            y
        ),
    }
}

/// A decade of parameters: 1, 10, 100, 1K, …, 1M, …, 1B.
fn decade_label(d: i32) -> String {
    let (unit, base) = match d {
        ..=2 => ("", 0),
        3..=5 => ("K", 3),
        6..=8 => ("M", 6),
        _ => ("B", 9),
    };
    format!("{}{unit}", 10u64.pow((d.max(0) - base) as u32))
}

/// Round tick values (steps of 1, 2 or 5 × 10^k) covering [lo, hi], about `n` of them.
fn nice_ticks(lo: f64, hi: f64, n: usize) -> (Vec<f64>, f64) {
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .min_by(|a, b| (a / raw).ln().abs().total_cmp(&(b / raw).ln().abs()))
        .unwrap_or(mag);
    let first = (lo / step).ceil();
    let ticks: Vec<f64> = (0..)
        .map(|k| (first + k as f64) * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        .collect();
    (ticks, step)
}

fn score_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{v:.decimals$}")
}

/// Where a point's label goes: to the right above, else the first of a few other places that
/// overlaps no label already placed. Returns x, y and the text anchor.
fn place_label(
    placed: &mut Vec<(f64, f64, f64, f64)>,
    x: f64,
    y: f64,
    text: &str,
) -> (f64, f64, &'static str) {
    let w = 6.2 * text.chars().count() as f64;
    let h = 11.0;
    let candidates = [
        (7.0, -6.0, false),
        (7.0, 14.0, false),
        (-7.0, -6.0, true),
        (-7.0, 14.0, true),
        (7.0, -18.0, false),
        (7.0, 26.0, false),
        (-7.0, -18.0, true),
        (-7.0, 26.0, true),
    ];
    let boxed = |(dx, dy, left): (f64, f64, bool)| {
        let x0 = if left { x + dx - w } else { x + dx };
        (x0, y + dy - h, x0 + w, y + dy)
    };
    let free = |b: &(f64, f64, f64, f64)| {
        placed
            .iter()
            .all(|p| b.2 <= p.0 || b.0 >= p.2 || b.3 <= p.1 || b.1 >= p.3)
    };
    let pick = candidates
        .iter()
        .copied()
        .find(|c| free(&boxed(*c)))
        .unwrap_or(candidates[0]);
    placed.push(boxed(pick));
    let (dx, dy, left) = pick;
    (x + dx, y + dy, if left { "end" } else { "start" })
}

/// The figure. `frontier` indexes `points` by ascending parameters.
pub fn pareto_svg(
    title: &str,
    metric: &str,
    higher_is_better: bool,
    points: &[Point],
    frontier: &[usize],
) -> String {
    let shown: Vec<&Point> = points
        .iter()
        .filter(|p| p.x > 0.0 && p.x.is_finite() && p.y.is_finite())
        .collect();
    // Axis ranges: whole decades of parameters; the scores and their error bars, padded.
    let (mut lx0, mut lx1) = shown
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
            (a.0.min(p.x.log10()), a.1.max(p.x.log10()))
        });
    lx0 = lx0.floor();
    lx1 = lx1.ceil();
    if !(lx0.is_finite() && lx1.is_finite()) {
        (lx0, lx1) = (0.0, 1.0);
    }
    if lx1 <= lx0 {
        lx1 = lx0 + 1.0;
    }
    let (mut y0, mut y1) = shown
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
            let e = p.err.unwrap_or(0.0).abs();
            (a.0.min(p.y - e), a.1.max(p.y + e))
        });
    if !(y0.is_finite() && y1.is_finite()) {
        (y0, y1) = (0.0, 1.0);
    }
    if y1 - y0 <= f64::EPSILON * y1.abs().max(1.0) {
        let pad = (y0.abs() * 0.05).max(1e-3);
        (y0, y1) = (y0 - pad, y1 + pad);
    } else {
        let pad = (y1 - y0) * 0.08;
        (y0, y1) = (y0 - pad, y1 + pad);
    }
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log10() - lx0) / (lx1 - lx0) * pw;
    let py = |y: f64| TOP + (y1 - y) / (y1 - y0) * ph;

    let mut families: Vec<&str> = Vec::new();
    for p in &shown {
        if !families.contains(&p.family.as_str()) {
            families.push(&p.family);
        }
    }
    let family_of = |p: &Point| families.iter().position(|f| *f == p.family).unwrap_or(0);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="20" text-anchor="middle" font-size="13">{}</text>"#,
        LEFT + pw / 2.0,
        esc(title)
    );
    // Frame, ticks and grid.
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let mut d = lx0 as i32;
    while d as f64 <= lx1 {
        let x = LEFT + (d as f64 - lx0) / (lx1 - lx0) * pw;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph + 16.0,
            decade_label(d)
        );
        d += 1;
    }
    let (ticks, step) = nice_ticks(y0, y1, 5);
    for v in ticks {
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            score_label(v, step)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">exported parameters (log scale)</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{} ({} is better)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(metric),
        if higher_is_better { "higher" } else { "lower" }
    );
    // The frontier: a step from each point to the next (to its parameters, then its score).
    let front: Vec<&Point> = frontier
        .iter()
        .filter_map(|&i| points.get(i))
        .filter(|p| p.x > 0.0 && p.x.is_finite() && p.y.is_finite())
        .collect();
    if let Some(first) = front.first() {
        let mut path = format!("M {:.1} {:.1}", px(first.x), py(first.y));
        for p in &front[1..] {
            let _ = write!(path, " H {:.1} V {:.1}", px(p.x), py(p.y));
        }
        let _ = writeln!(
            s,
            r##"<path class="frontier" d="{path}" fill="none" stroke="#555" stroke-width="1.5" stroke-dasharray="5,3"/>"##
        );
    }
    // Error bars, then markers and labels.
    for p in &shown {
        if let Some(e) = p.err.filter(|e| *e > 0.0 && e.is_finite()) {
            let (x, ya, yb) = (px(p.x), py(p.y - e), py(p.y + e));
            let c = COLOURS[family_of(p) % COLOURS.len()];
            let _ = writeln!(
                s,
                r#"<path class="err" d="M {x:.1} {ya:.1} V {yb:.1} M {:.1} {ya:.1} H {:.1} M {:.1} {yb:.1} H {:.1}" stroke="{c}" fill="none"/>"#,
                x - 3.0,
                x + 3.0,
                x - 3.0,
                x + 3.0
            );
        }
    }
    // Markers first, so that labels avoid each other; labels in order of parameters.
    let mut placed: Vec<(f64, f64, f64, f64)> = Vec::new();
    for p in &shown {
        let (x, y) = (px(p.x), py(p.y));
        let _ = writeln!(s, "{}", marker(family_of(p), x, y, "point"));
    }
    let mut by_x: Vec<&&Point> = shown.iter().collect();
    by_x.sort_by(|a, b| a.x.total_cmp(&b.x));
    for p in by_x {
        let (x, y, anchor) = place_label(&mut placed, px(p.x), py(p.y), &p.label);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
            esc(&p.label)
        );
    }
    // Legend: one entry per family, and the frontier.
    let lx = LEFT + pw + 20.0;
    for (k, f) in families.iter().enumerate() {
        let y = TOP + 10.0 + 18.0 * k as f64;
        let _ = writeln!(s, "{}", marker(k, lx, y, "legend"));
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 12.0,
            y + 4.0,
            esc(f)
        );
    }
    let y = TOP + 10.0 + 18.0 * families.len() as f64;
    let _ = writeln!(
        s,
        r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555" stroke-width="1.5" stroke-dasharray="5,3"/>"##,
        lx - 6.0,
        lx + 6.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}">Pareto frontier</text>"#,
        lx + 12.0,
        y + 4.0
    );
    if shown.iter().any(|p| p.err.is_some_and(|e| e > 0.0)) {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">bars: ± 1 std over seeds</text>"#,
            lx - 6.0,
            y + 22.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal well-formedness check: every tag closes in order, attributes are quoted, and
    /// no bare `&` or `<` sits in text.
    pub(crate) fn well_formed(xml: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = xml;
        let mut root_seen = false;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            let close = rest[open..]
                .find('>')
                .ok_or_else(|| "unclosed `<`".to_string())?
                + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('?') {
                if !tag.ends_with('?') {
                    return Err(format!("bad declaration <{tag}>"));
                }
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body.split_whitespace().next().unwrap_or("");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("bad tag <{tag}>"));
            }
            if !body.matches('"').count().is_multiple_of(2) {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            if stack.is_empty() {
                if root_seen {
                    return Err("two root elements".into());
                }
                root_seen = true;
            }
            if !self_closing {
                stack.push(name.to_string());
            }
        }
        check_text(rest)?;
        if !stack.is_empty() {
            return Err(format!("unclosed {stack:?}"));
        }
        root_seen.then_some(()).ok_or_else(|| "no root".into())
    }

    fn check_text(t: &str) -> Result<(), String> {
        for (i, _) in t.match_indices('&') {
            let ent = &t[i..];
            if !["&amp;", "&lt;", "&gt;", "&quot;"]
                .iter()
                .any(|e| ent.starts_with(e))
            {
                return Err(format!("bare & in {t:?}"));
            }
        }
        Ok(())
    }

    fn point(label: &str, family: &str, x: f64, y: f64, err: Option<f64>) -> Point {
        Point {
            label: label.into(),
            family: family.into(),
            x,
            y,
            err,
        }
    }

    #[test]
    fn the_checker_rejects_broken_xml() {
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
        assert!(well_formed("<svg><rect x=\"1/></svg>").is_err());
        assert!(well_formed("<svg><g/></svg>").is_ok());
    }

    #[test]
    fn figure_is_well_formed_with_a_marker_per_point_a_legend_and_the_frontier() {
        let points = vec![
            point("ard_lora", "ard_lora", 3.3e6, 103.6, Some(0.4)),
            point("ard_lora_r2", "ard_lora", 9.2e5, 142.7, Some(0.7)),
            point("lora_r4", "lora", 4.6e5, 130.9, Some(0.7)),
            point("lora_r8", "lora", 9.2e5, 113.8, None),
            point("dora <&>", "dora", 9.7e5, 113.9, Some(0.0)),
            point("full", "full", 1.06e8, 106.9, Some(0.7)),
        ];
        let svg = pareto_svg("t & <u>", "perplexity", false, &points, &[2, 3, 0]);
        well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(
            svg.matches(r#"class="point""#).count(),
            points.len(),
            "{svg}"
        );
        // One legend entry per family, first family drawn as circles.
        assert_eq!(svg.matches(r#"class="legend""#).count(), 4, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2 + 1, "{svg}");
        // Error bars only where the spread is positive.
        assert_eq!(svg.matches(r#"class="err""#).count(), 4, "{svg}");
        assert_eq!(svg.matches(r#"class="frontier""#).count(), 1, "{svg}");
        assert!(svg.contains("perplexity (lower is better)"), "{svg}");
        assert!(svg.contains("dora &lt;&amp;&gt;"), "{svg}");
        // Decades 10^5 .. 10^9 on the log axis.
        assert!(
            svg.contains(">100K</text>") && svg.contains(">1B</text>"),
            "{svg}"
        );
    }

    #[test]
    fn axis_labels_are_round() {
        assert_eq!(
            (0..=10).map(decade_label).collect::<Vec<_>>(),
            [
                "1", "10", "100", "1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B"
            ]
        );
        let (ticks, step) = nice_ticks(99.3, 147.2, 5);
        assert_eq!(step, 10.0);
        assert_eq!(ticks, [100.0, 110.0, 120.0, 130.0, 140.0]);
        assert_eq!(score_label(0.25, 0.05), "0.25");
        let (ticks, step) = nice_ticks(0.401, 0.52, 5);
        assert_eq!(step, 0.02);
        assert_eq!(ticks.len(), 6, "{ticks:?}");
        assert_eq!(score_label(ticks[0], step), "0.42");
    }

    #[test]
    fn a_single_point_draws_without_a_degenerate_axis() {
        let svg = pareto_svg(
            "one",
            "accuracy",
            true,
            &[point("a", "f", 1000.0, 0.5, None)],
            &[0],
        );
        well_formed(&svg).unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains("accuracy (higher is better)"));
    }
}
