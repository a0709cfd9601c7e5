//! Shared helpers of the dsl tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("dsl/ has a parent")
        .to_path_buf()
}

/// `${assets}` for tests: the dsl never looks at the disk, so any absolute path works.
pub fn ctx() -> ardpipe_dsl::Context {
    ardpipe_dsl::Context {
        assets: Some("/assets".into()),
        overrides: Vec::new(),
        cwd: Some(repo()),
        ..Default::default()
    }
}

/// Diagnostics as the terminal shows them without colour, at a fixed width.
pub fn render(d: &ardpipe_dsl::Diagnostics) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false);
    let mut out = String::new();
    for r in d.reports() {
        handler
            .render_report(&mut out, r)
            .expect("rendering into a String cannot fail");
        out.push('\n');
    }
    out
}
