//! `ardpipe migrate FILE [--write]`: bring a pipeline file written in an older language version
//! up to the current one (ardpipe_dsl::language: a registry of text-rewriting steps, one per
//! version; comments and layout are kept). Without `--write` the migrated text is printed.

use std::path::Path;

use ardpipe_dsl::language::{self, CURRENT};
use miette::{IntoDiagnostic, WrapErr};

use crate::exit::Code;

pub fn run(file: &Path, write: bool) -> miette::Result<Code> {
    let text = std::fs::read_to_string(file)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read {}", file.display()))?;
    let migrated = match language::migrate(
        &file.display().to_string(),
        &text,
        language::MIGRATIONS,
        CURRENT,
    ) {
        Ok(m) => m,
        Err(d) => {
            super::check::print_diagnostics(d);
            return Ok(Code::Failure);
        }
    };
    if migrated.steps.is_empty() {
        eprintln!(
            "{} is current (language version {CURRENT}): nothing to migrate",
            file.display()
        );
        if !write {
            print!("{text}");
        }
        return Ok(Code::Success);
    }
    for s in &migrated.steps {
        eprintln!("  {s}");
    }
    if write {
        ardpipe_engine::rundir::write_atomic(file, migrated.text.as_bytes())
            .map_err(|e| miette::miette!("{e}"))?;
        eprintln!(
            "migrated {} from language version {} to {}",
            file.display(),
            migrated.from,
            migrated.to
        );
    } else {
        print!("{}", migrated.text);
    }
    Ok(Code::Success)
}
