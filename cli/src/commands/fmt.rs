//! `ardpipe fmt [--check] FILE...`: canonical layout, comments kept, idempotent.

use std::path::PathBuf;

use miette::{IntoDiagnostic, WrapErr};

use crate::exit::Code;

pub fn run(files: &[PathBuf], check: bool) -> miette::Result<Code> {
    let mut ok = true;
    for file in files {
        let text = std::fs::read_to_string(file)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", file.display()))?;
        let formatted = match ardpipe_dsl::format_source(&file.display().to_string(), &text) {
            Ok(f) => f,
            Err(d) => {
                // Never guess at broken text: report and leave the file alone.
                super::check::print_diagnostics(d);
                ok = false;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        if check {
            println!("not formatted: {}", file.display());
            ok = false;
        } else {
            // Write beside, then rename: an interrupted fmt never leaves half a file.
            let tmp = file.with_extension("ard.fmt-tmp");
            std::fs::write(&tmp, &formatted)
                .and_then(|_| std::fs::rename(&tmp, file))
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write {}", file.display()))?;
            println!("formatted: {}", file.display());
        }
    }
    Ok(if ok { Code::Success } else { Code::Failure })
}
