//! The language version (`pipeline { language = N }`): the current one checks and is recorded,
//! `fmt` keeps it, a newer one is refused with the fix, and `ardpipe migrate` leaves a current
//! file alone (the migration mechanism itself is unit-tested in dsl/src/language.rs, with a
//! test-only migration: version 1 is the only one so far).

use crate::{ardpipe, stderr, stdout};

fn quickstart_with(line: &str) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pipelines/quickstart.ard"
    ))
    .unwrap();
    assert!(text.contains("pipeline {\n"));
    let mut lines = text.replacen("pipeline {\n", &format!("pipeline {{\n    {line}\n"), 1);
    // Relative to the copy's folder, the shipped output.dir would leave the temporary folder.
    lines = lines.replace("\"../runs/{name}-{timestamp}\"", "\"runs/{name}\"");
    lines
}

#[test]
fn language_versions_are_checked_kept_and_migrated() {
    let dir = std::env::temp_dir().join(format!("ardpipe-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let current = dir.join("current.ard");
    let v1 = quickstart_with("language = 1");
    std::fs::write(&current, &v1).unwrap();
    let f = current.to_str().unwrap();

    let o = ardpipe(&["check", f]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ardpipe(&["plan", f, "--resolved", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let resolved: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(resolved["language"], 1, "{resolved}");

    let o = ardpipe(&["fmt", "--check", f]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        std::fs::read_to_string(&current)
            .unwrap()
            .contains("    language = 1\n")
    );

    let o = ardpipe(&["migrate", f, "--write"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is current (language version 1)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&current).unwrap(), v1);
    let o = ardpipe(&["migrate", f]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), v1);

    // A newer file: one clear error, not a list of keys this build does not know.
    let newer = dir.join("newer.ard");
    std::fs::write(
        &newer,
        quickstart_with("language = 2\n    shiny_new_key = 3"),
    )
    .unwrap();
    let o = ardpipe(&["check", newer.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("written in ardpipe language version 2")
            && e.contains("reads up to version 1")
            && e.contains("upgrade ardpipe"),
        "{e}"
    );
    assert!(
        e.contains("1 problem(s)") && !e.contains("unknown_key"),
        "{e}"
    );
    let o = ardpipe(&["migrate", newer.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("upgrade ardpipe"), "{}", stderr(&o));

    let zero = dir.join("zero.ard");
    std::fs::write(&zero, quickstart_with("language = 0")).unwrap();
    let o = ardpipe(&["check", zero.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("language"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}
