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

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    stdout(o) + &stderr(o)
}

/// `ardpipe ARGS` run in `dir` (relative paths and `runs/` resolve there).
pub fn ardpipe_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .current_dir(dir)
        .args(args)
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000")
        .env_remove("ARDPIPE_TEST_PAUSE")
        .output()
        .expect("the ardpipe binary runs")
}

/// `git -C REPO ARGS` under a fixed identity and no pager, asserting it succeeds: its stdout,
/// trimmed.
pub fn git(repo: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .env("GIT_PAGER", "cat")
        .output()
        .expect("git runs (the tests need git installed)");
    assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    stdout(&o).trim().to_string()
}

/// An empty folder `ardpipe-NAME-PID` in the temporary directory (emptied if a run before left
/// one there).
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A scratch folder, removed when dropped unless the test failed (then kept to look at).
pub struct Scratch(pub std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
