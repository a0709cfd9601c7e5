//! An installed `ardpipe` (what `cargo install --path cli` puts on PATH) runs anywhere without
//! environment variables: it finds libtorch through the RUNPATH its build gave it
//! (build-support/rpath.rs), not through LD_LIBRARY_PATH or the checkout.

use std::process::Command;

use crate::stdout;

#[test]
fn a_copied_binary_runs_with_a_cleared_environment() {
    let dir = std::env::temp_dir().join(format!("ardpipe-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("ardpipe");
    std::fs::copy(env!("CARGO_BIN_EXE_ardpipe"), &bin).unwrap();
    let home = std::env::var_os("HOME").expect("HOME is set");
    let run = |args: &[&str]| {
        Command::new(&bin)
            .args(args)
            .env_clear()
            .env("HOME", &home)
            // Not the checkout: nothing may be found relative to it.
            .current_dir(&dir)
            .output()
            .expect("the copied binary starts")
    };

    let out = run(&["--version"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).starts_with(&format!("ardpipe {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        stdout(&out)
    );

    // doctor loads libtorch and says which; the assets are found through HOME (the per-user
    // cache) unless this machine keeps them elsewhere (ARDPIPE_CACHE), which a cleared
    // environment hides on purpose: only libtorch is asserted then.
    let out = run(&["doctor", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let version = report["libtorch"]["version"].as_str().unwrap_or_default();
    assert!(
        version.starts_with(report["libtorch_expected"].as_str().unwrap()),
        "libtorch not found without LD_LIBRARY_PATH: {report}"
    );
    if std::env::var_os("ARDPIPE_CACHE").is_none() && std::env::var_os("XDG_CACHE_HOME").is_none() {
        assert_eq!(out.status.code(), Some(0), "{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The subcommands `ardpipe --help` lists (clap's own `help` aside).
fn subcommands() -> Vec<String> {
    let help = stdout(&crate::ardpipe(&["--help"]));
    let section = help
        .split("Commands:")
        .nth(1)
        .and_then(|s| s.split("Options:").next())
        .expect("--help lists commands");
    let names: Vec<String> = section
        .lines()
        // A name starts a line two spaces in; wrapped descriptions are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    for expected in ["run", "new", "completions", "man"] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    names
}

#[test]
fn completions_name_every_subcommand_and_bash_reads_them() {
    let subs = subcommands();
    let out = crate::ardpipe(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let script = stdout(&out);
    for s in &subs {
        assert!(script.contains(s.as_str()), "bash completion lacks {s}");
    }
    let file = std::env::temp_dir().join(format!("ardpipe-complete-{}.bash", std::process::id()));
    std::fs::write(&file, &script).unwrap();
    let bash = Command::new("bash").arg("-n").arg(&file).output();
    let _ = std::fs::remove_file(&file);
    let bash = bash.expect("bash runs (the completion test needs it)");
    assert!(
        bash.status.success(),
        "bash -n refuses the script: {}",
        String::from_utf8_lossy(&bash.stderr)
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = crate::ardpipe(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(stdout(&out).contains("completions"), "{shell}");
    }
}

#[test]
fn man_pages_cover_every_subcommand() {
    let subs = subcommands();
    let out = crate::ardpipe(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = stdout(&out);
    assert!(page.contains(".TH ardpipe 1"), "{page}");
    for s in &subs {
        assert!(
            page.contains(&format!("ardpipe\\-{s}(1)")),
            "the page lacks {s}:\n{page}"
        );
    }
    let dir = std::env::temp_dir().join(format!("ardpipe-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = crate::ardpipe(&["man", "--out", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", crate::stderr(&out));
    for s in &subs {
        let file = dir.join(format!("ardpipe-{s}.1"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{}",
            file.display()
        );
        assert!(text.contains(&format!(".TH ardpipe-{s} 1")), "{text}");
    }
    // Nested subcommands get their own pages too.
    assert!(dir.join("ardpipe-inspect-model.1").is_file());
    assert!(dir.join("ardpipe.1").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
