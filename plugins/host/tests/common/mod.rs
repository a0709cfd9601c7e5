//! Test fixtures: the workspace's example and deliberately broken plugins, built as real cdylibs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const FIXTURE_PACKAGES: &[&str] = &[
    "fortunes-loader",
    "mcc-metric",
    "ardpipe-test-no-entry",
    "ardpipe-test-abi-999",
    "ardpipe-test-future-abi",
    "ardpipe-test-misbehaving",
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the fixture plugins once per test process into their own target dir: the outer
/// `cargo test` holds the lock on the normal one, so building there from a test would deadlock.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace_root().join("target").join("plugin-fixtures");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(workspace_root())
            .args(["build", "--offline", "--target-dir"])
            .arg(&target);
        for p in FIXTURE_PACKAGES {
            cmd.args(["-p", p]);
        }
        let out = cmd.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building the fixture plugins failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug")
    })
}

/// The built library of a workspace plugin package, e.g. `fortunes-loader`.
pub fn plugin(package: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let path = plugin_dir().join(file);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A fresh, empty scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ardpipe-host-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A small fortunes folder in the Debian layout (with a `.dat` index that must be skipped).
pub fn fortunes_folder(name: &str) -> PathBuf {
    let dir = scratch(name);
    let files: &[(&str, &str)] = &[
        (
            "wisdom",
            "Look before you leap.\n%\nHaste makes waste.\n%\nA stitch in time\nsaves nine.\n%\n",
        ),
        (
            "art",
            "A thing of beauty is a joy forever.\n%\nArt is long, life is short.\n",
        ),
        (
            "computers",
            "There are 10 kinds of people.\n%\nIt works on my machine.\n%\nHave you tried turning it off and on again?\n%\nReal programmers count from 0.\n",
        ),
    ];
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    std::fs::write(dir.join("wisdom.dat"), [0u8, 0, 0, 2, 0xff, 0xfe]).unwrap();
    dir
}
