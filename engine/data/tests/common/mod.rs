//! Helpers shared by the integration tests: where the example assets live.
#![allow(dead_code)]

pub mod gguf;

use std::path::{Path, PathBuf};

/// Same lookup as `ardpipe_models::assets` (not a dependency here): `ARDPIPE_CACHE`, else
/// `$XDG_CACHE_HOME/ardpipe`, else `~/.cache/ardpipe`.
fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARDPIPE_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("ardpipe")
}

/// A file of an installed example asset. A missing asset fails the test loudly: these tests
/// are part of the suite and must never pass by skipping.
pub fn asset(asset: &str, file: &str) -> PathBuf {
    let p = cache_root().join("assets").join(asset).join(file);
    assert!(
        p.exists(),
        "example asset {asset}/{file} is not installed at {}: run `python3 scripts/setup.py` \
         (or set ARDPIPE_CACHE to the cache that holds it)",
        p.display()
    );
    p
}

/// The peer's python (`ARDPIPE_PEER_PYTHON`, else the checkout's `.ardpipe/peer-venv`); a
/// missing peer fails the test with the fix, never skips it.
pub fn peer_python() -> PathBuf {
    let p = std::env::var_os("ARDPIPE_PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ardpipe/peer-venv/bin/python")
        });
    assert!(
        p.exists(),
        "{} is missing: the Python peer venv comes from the README's first command \
         (scripts/setup.sh), or set ARDPIPE_PEER_PYTHON",
        p.display()
    );
    p
}

/// Run the peer script `tests/peer/SCRIPT` with `args`, offline and quiet; its stdout as JSON.
/// A failing peer fails the test with its stderr.
pub fn run_peer(script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = std::process::Command::new(peer_python())
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/peer")
                .join(script),
        )
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("TQDM_DISABLE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the peer {script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A fresh temporary folder for one test's fixture files, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "ardpipe-data-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    /// Write a fixture file (parents created) and return its path.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
