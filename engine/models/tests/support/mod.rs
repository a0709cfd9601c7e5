//! Helpers shared by the integration tests that compare ardpipe with its Python peer
//! (transformers, peft and the gguf package in the venv scripts/setup.sh builds). Each test
//! binary uses a part of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tch::Tensor;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The peer's python (`ARDPIPE_PEER_PYTHON`, else the checkout's `.ardpipe/peer-venv`); a
/// missing peer fails the test with the fix, never skips it.
pub fn peer_python() -> PathBuf {
    let p = std::env::var_os("ARDPIPE_PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".ardpipe/peer-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: the Python peer venv comes from the README's first command (scripts/setup.sh)",
        p.display()
    );
    p
}

/// A peer script under engine/models/tests/peer/, offline and quiet, ready for its arguments.
pub fn peer_command(script: &str) -> Command {
    let mut c = Command::new(peer_python());
    c.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peer")
            .join(script),
    )
    .env("HF_HUB_OFFLINE", "1")
    .env("TRANSFORMERS_VERBOSITY", "error")
    .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    .env("TQDM_DISABLE", "1");
    c
}

/// Run a peer command to the end; a failing peer fails the test with its stderr.
pub fn run_peer(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "the peer {:?} failed:\n{}",
        cmd.get_args().next().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An empty scratch folder for this process.
pub fn scratch(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-{tag}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A JSON file's value.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A JSON list of rows of integers as a 2-D int64 tensor.
pub fn tensor_i64(v: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<i64>> = serde_json::from_value(v.clone()).unwrap();
    let n = rows.len() as i64;
    Tensor::from_slice(&rows.concat()).reshape([n, -1])
}

/// A JSON list of rows of numbers as a 2-D f32 tensor.
pub fn matrix(v: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
    let flat: Vec<f32> = rows.concat();
    Tensor::from_slice(&flat).reshape([rows.len() as i64, -1])
}
