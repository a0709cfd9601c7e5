//! The checker's problems as LSP diagnostics: the same `check_source` `ardpipe check` runs, on
//! the editor's text, each problem with its code, its message and label, and its help.

use std::path::Path;

use lsp_types::{Diagnostic, DiagnosticSeverity, NumberOrString, Position, Range};

pub fn diagnostics(path: &Path, text: &str, ctx: &ardpipe_dsl::Context) -> Vec<Diagnostic> {
    let diags = match ardpipe_dsl::check_source(path, text, ctx) {
        Ok(checked) => checked.warnings,
        Err(d) => d,
    };
    let name = path.display().to_string();
    diags
        .problems
        .iter()
        .map(|p| {
            let mut message = p.message.clone();
            // Where a problem lies in another file (an import), this document shows it at its
            // top, saying where.
            let mut range = Range::new(Position::new(0, 0), Position::new(0, 0));
            if let Some(s) = p.span
                && let Some(f) = diags.sources.lookup(s.file)
            {
                if f.name == name {
                    range = super::range(text, s.start, s.end);
                } else {
                    let (line, col) = ardpipe_dsl::source::line_col(&f.text, s.start);
                    message = format!("{}:{line}:{col}: {message}", f.name);
                }
            }
            if !p.label.is_empty() {
                message += &format!(" ({})", p.label);
            }
            if let Some(h) = &p.help {
                message += &format!("\nhelp: {h}");
            }
            Diagnostic {
                range,
                severity: Some(match p.severity {
                    ardpipe_dsl::Severity::Error => DiagnosticSeverity::ERROR,
                    ardpipe_dsl::Severity::Warning => DiagnosticSeverity::WARNING,
                }),
                code: Some(NumberOrString::String(p.code.full())),
                source: Some("ardpipe".into()),
                message,
                ..Default::default()
            }
        })
        .collect()
}
