//! `ardpipe plan FILE`: what a run of the pipeline would do, resolved against the real model's
//! configuration (no weights read): targets, budgets, memory, schedules at concrete steps.
//! `--resolved` prints the checked pipeline instead; JSON and YAML print both
//! (`ardpipe schema plan` describes that document).

use std::path::Path;

use ardpipe_engine::memory::{self, Device};
use ardpipe_engine::plan::{PlanDocument, RunPlan, render_text};
use ardpipe_engine::train::planning::plan_run;
use serde::Serialize;

use crate::args::{Format, Overrides};
use crate::exit::Code;

pub fn run(
    file: &Path,
    format: Format,
    resolved_only: bool,
    variant: Option<&str>,
    fit: Option<(&str, u32)>,
    overrides: &Overrides,
) -> miette::Result<Code> {
    let device = fit
        .map(|(d, n)| Device::parse(d).map(|d| (d, n)))
        .transpose()
        .map_err(|e| miette::miette!(help = "e.g. `--fit h100` or `--fit 24GiB`", "{e}"))?;
    let Some(pipeline) = super::check::checked_pipeline(file, overrides, variant) else {
        return Ok(Code::Failure);
    };
    if resolved_only {
        print!("{}", render(&pipeline, format));
        return Ok(Code::Success);
    }
    let mut runs = Vec::new();
    for (name, p) in super::run::select_runs(&pipeline, variant)? {
        match plan_run(p) {
            Ok(plan) => {
                let fit = match &device {
                    Some((d, n)) => Some(
                        memory::fit(&plan, d.clone(), *n).map_err(|e| miette::miette!("{e}"))?,
                    ),
                    None => None,
                };
                runs.push(RunPlan {
                    run: name.to_string(),
                    plan,
                    fit,
                })
            }
            Err(e) => return Err(super::run::report(e)),
        }
    }
    match format {
        Format::Text => {
            for (i, r) in runs.iter().enumerate() {
                if runs.len() > 1 {
                    println!("{}== variant {}", if i > 0 { "\n" } else { "" }, r.run);
                }
                print!("{}", render_text(&r.plan));
                if let Some(f) = &r.fit {
                    println!("fit        {}", f.text());
                }
            }
        }
        _ => print!("{}", render(&PlanDocument { pipeline, runs }, format)),
    }
    Ok(Code::Success)
}
/// Any plan-like value in the requested format.
pub fn render<T: Serialize>(value: &T, format: Format) -> String {
    let v = serde_json::to_value(value).unwrap_or_default();
    match format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()),
        Format::Yaml => serde_yaml::to_string(&v).unwrap_or_default(),
        Format::Text => {
            let mut out = String::new();
            text(&v, 0, &mut out);
            out
        }
    }
}

/// An indented outline: `key: value` per line, nested values indented, nulls left out.
fn text(v: &serde_json::Value, depth: usize, out: &mut String) {
    use serde_json::Value;
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match x {
                    Value::Null => {}
                    Value::Object(m) if m.is_empty() => {}
                    Value::Array(a) if a.is_empty() => out.push_str(&format!("{pad}{k}: none\n")),
                    Value::Object(_) | Value::Array(_) if !is_flat(x) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        text(x, depth + 1, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(x))),
                }
            }
        }
        Value::Array(items) => {
            for x in items {
                if is_flat(x) {
                    out.push_str(&format!("{pad}- {}\n", scalar(x)));
                } else {
                    out.push_str(&format!("{pad}-\n"));
                    text(x, depth + 1, out);
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Small values print on one line: scalars, lists of scalars, objects of one or two scalars.
fn is_flat(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Array(a) => a.iter().all(|x| !x.is_object() && !x.is_array()) && a.len() <= 8,
        Value::Object(m) => m.len() <= 2 && m.values().all(|x| !x.is_object() && !x.is_array()),
        _ => true,
    }
}

fn scalar(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(scalar).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => m.values().map(scalar).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}
