//! `ardpipe plugin inspect`: the example plugins, and a clear error (exit 1) for each bad plugin.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{ardpipe, stderr, stdout};

/// Builds the workspace's fixture plugins once, into their own target dir (the outer `cargo test`
/// holds the lock on the normal one, so building there from a test would deadlock).
pub(crate) fn plugin(package: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = DIR.get_or_init(|| {
        let target = root.join("target").join("plugin-fixtures");
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args(["build", "--offline", "--target-dir"])
            .arg(&target)
            .args(["-p", "fortunes-loader", "-p", "mcc-metric"])
            .args(["-p", "ardpipe-test-no-entry", "-p", "ardpipe-test-abi-999"])
            .args(["-p", "ardpipe-test-misbehaving"])
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug")
    });
    dir.join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}

/// Compiles a C plugin (`source`, relative to the repository) against the plugin header with `cc`
/// (or `$CC`) as strict ISO C, into a scratch folder. A missing compiler fails the test with the
/// reason: set-up provides `cc`, and these tests must not pass without running.
pub(crate) fn c_plugin(source: &str, name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("ardpipe-c-plugins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let result = Command::new(&cc)
        .args(["-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror"])
        .args(["-shared", "-fPIC", "-I"])
        .arg(root.join("plugins/sdk/include"))
        .arg(root.join(source))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "no C compiler: `{cc}` cannot run ({e}); install one (e.g. `apt-get install gcc`) \
                 or set CC — this test needs it"
            )
        });
    assert!(
        result.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

fn inspect(path: &Path) -> std::process::Output {
    ardpipe(&["plugin", "inspect", path.to_str().unwrap()])
}

#[test]
fn inspect_shows_name_version_abi_kind_capabilities_and_options() {
    let out = inspect(&plugin("fortunes-loader"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "name          fortunes\n",
        "kind          loader\n",
        "abi           1\n",
        "capabilities  size-hint, deterministic, labels\n",
        "  path        path, required: a fortune file or a folder of them",
        "  shuffle     boolean, default true: shuffle items with the run's seed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let out = inspect(&plugin("mcc-metric"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("kind          metric\n"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("capabilities  logits, token-ids\n"));
}

fn assert_fails(path: &Path, expected: &[&str]) {
    let out = inspect(path);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout(&out));
    // miette wraps long lines (and marks continuations with `|`): compare the words only.
    let text = stderr(&out)
        .split_whitespace()
        .filter(|w| *w != "|")
        .collect::<Vec<_>>()
        .join(" ");
    for e in expected {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn inspect_explains_each_bad_plugin() {
    let scratch = std::env::temp_dir().join(format!("ardpipe-cli-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    assert_fails(
        &scratch.join("libmissing.so"),
        &["ardpipe::plugin::not_found", "no file at", "libmissing.so"],
    );
    let text = scratch.join("libtext.so");
    std::fs::write(&text, "not a library\n").unwrap();
    assert_fails(
        &text,
        &[
            "ardpipe::plugin::not_a_library",
            "is not a shared library",
            "cdylib",
        ],
    );
    assert_fails(
        &plugin("ardpipe-test-no-entry"),
        &[
            "ardpipe::plugin::no_entry_symbol",
            "ardpipe_plugin_v1",
            "export_plugin!",
        ],
    );
    assert_fails(
        &plugin("ardpipe-test-abi-999"),
        &[
            "ardpipe::plugin::abi_mismatch",
            "ABI version 999",
            "ABI version 1",
        ],
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
