//! `ardpipe check FILE...`: every problem of every file at once; exit 0 when all pass.

use std::path::{Path, PathBuf};

use crate::args::{Format, Overrides};
use crate::exit::Code;

/// What every command that reads a pipeline passes to the checker.
pub fn context(overrides: &Overrides) -> ardpipe_dsl::Context {
    ardpipe_dsl::Context {
        assets: Some(ardpipe_engine::models::assets::cache_root().join("assets")),
        overrides: overrides.set.clone(),
        cwd: std::env::current_dir().ok(),
        variant: None,
    }
}

/// The context of a command that runs or plans one variant (`--variant NAME`) or all.
pub fn context_for_variant(overrides: &Overrides, variant: Option<&str>) -> ardpipe_dsl::Context {
    ardpipe_dsl::Context {
        variant: variant.map(str::to_string),
        ..context(overrides)
    }
}

/// Prints diagnostics through miette's hook (colour as `--color` says).
pub fn print_diagnostics(d: ardpipe_dsl::Diagnostics) {
    if !d.problems.is_empty() {
        eprintln!("{:?}", miette::Report::new(d));
    }
}

pub fn run(files: &[PathBuf], format: Format, overrides: &Overrides) -> miette::Result<Code> {
    let ctx = context(overrides);
    let mut ok = true;
    let mut json = Vec::new();
    for file in files {
        let (passed, diags) = match ardpipe_dsl::check_file(file, &ctx) {
            Ok(c) => (true, c.warnings),
            Err(d) => (false, d),
        };
        ok &= passed;
        match format {
            Format::Json | Format::Yaml => json.push(serde_json::json!({
                "file": file.display().to_string(),
                "ok": passed,
                "problems": diags.to_json(),
            })),
            Format::Text => {
                print_diagnostics(diags);
                if passed {
                    println!("ok: {}", display(file));
                }
            }
        }
    }
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": ok, "files": json }))
                .unwrap_or_default()
        ),
        Format::Yaml => print!(
            "{}",
            serde_yaml::to_string(&serde_json::json!({ "ok": ok, "files": json }))
                .unwrap_or_default()
        ),
        Format::Text => {}
    }
    Ok(if ok { Code::Success } else { Code::Failure })
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// The checked pipeline of `file` for `ardpipe plan` and `ardpipe data`, its warnings printed; on
/// errors, the diagnostics are printed and `None` is returned (the command then fails).
pub(crate) fn checked_pipeline(
    file: &Path,
    overrides: &Overrides,
    variant: Option<&str>,
) -> Option<ardpipe_dsl::Pipeline> {
    let ctx = context_for_variant(overrides, variant);
    match ardpipe_dsl::check_file(file, &ctx) {
        Ok(c) => {
            print_diagnostics(c.warnings);
            Some(c.pipeline)
        }
        Err(d) => {
            print_diagnostics(d);
            None
        }
    }
}
