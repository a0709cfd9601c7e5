//! End-to-end tests of the `ardpipe` binary.

mod check;
mod data_preview;
mod diff;
mod distributed;
mod doctor;
mod editors;
mod families;
mod fmt;
mod gemma3;
mod help;
mod hf;
mod hostile_input;
mod hostile_models;
mod install;
mod log_json;
mod lsp;
mod memory;
mod merge;
mod migrate;
mod models;
mod new;
mod pipeline_keys;
mod plan;
mod plugin;
mod plugin_run;
mod precision;
mod report;
mod resume;
mod run;
mod runs;
mod schema;
mod seq_cls;
mod study;
mod tensorboard;
mod vqa;

use std::process::{Command, Output};

/// An example asset set-up installs (`.ardpipe/assets/REL`); a missing one fails the test with
/// the fix.
pub fn asset(rel: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.ardpipe/assets")
        .join(rel);
    assert!(
        p.exists(),
        "example asset {} is missing: run `python3 scripts/setup.py`",
        p.display()
    );
    p
}

/// The peer's python (`ARDPIPE_PEER_PYTHON`, else the checkout's `.ardpipe/peer-venv`); a
/// missing peer fails the test with the fix, never skips it.
pub fn peer_python() -> std::path::PathBuf {
    let p = std::env::var_os("ARDPIPE_PEER_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../.ardpipe/peer-venv/bin/python")
        });
    assert!(
        p.exists(),
        "{} is missing: the Python peer venv comes from the README's first command (scripts/setup.sh)",
        p.display()
    );
    p
}

pub fn ardpipe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .args(args)
        .env("ARDPIPE_COLOR", "never")
        // Wide enough that no message wraps: assertions must not depend on the checkout's path.
        .env("COLUMNS", "1000")
        .output()
        .expect("the ardpipe binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
