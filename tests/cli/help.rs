use crate::{ardpipe, stderr, stdout};

const SUBCOMMANDS: &[&str] = &[
    "run",
    "check",
    "fmt",
    "plan",
    "schema",
    "inspect",
    "generate",
    "classify",
    "embed",
    "merge",
    "doctor",
    "data",
    "plugin",
    "bench",
    "study",
    "runs",
    "compare",
    "diff",
    "migrate",
    "lsp",
    "compose",
    "new",
    "completions",
    "man",
];

#[test]
fn help_names_every_subcommand_and_each_has_its_own_help() {
    let out = ardpipe(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for sub in SUBCOMMANDS {
        assert!(
            text.contains(&format!("  {sub} ")),
            "--help does not name `{sub}`:\n{text}"
        );
        let sub_help = ardpipe(&[sub, "--help"]);
        assert!(
            sub_help.status.success(),
            "`{sub} --help` failed: {}",
            stderr(&sub_help)
        );
        assert!(
            stdout(&sub_help).contains("Usage: ardpipe"),
            "`{sub} --help` has no usage line"
        );
    }
}

#[test]
fn bad_command_line_exits_2() {
    let out = ardpipe(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The exit codes `--help` lists are the README's table, no more, no fewer (69 was listed and
/// returned by nothing).
#[test]
fn help_and_readme_list_the_same_exit_codes() {
    let help = stdout(&ardpipe(&["--help"]));
    let line = help
        .split("Exit codes:")
        .nth(1)
        .expect("--help lists the exit codes")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let numbers = |text: &str| -> std::collections::BTreeSet<u32> {
        text.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    // Codes are the numbers before each description: "0 success, 1 failure (...), ...".
    let from_help: std::collections::BTreeSet<u32> = line
        .split(", ")
        .flat_map(|item| {
            let words: Vec<&str> = item.split(' ').collect();
            let head = words
                .iter()
                .take_while(|w| w.chars().all(|c| c.is_ascii_digit()) || **w == "/")
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            numbers(&head)
        })
        .collect();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let table = readme
        .split("**Exit codes.**")
        .nth(1)
        .expect("the README has an exit code table");
    let from_readme: std::collections::BTreeSet<u32> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(numbers)
        .collect();
    assert!(!from_help.contains(&69), "{line}");
    assert_eq!(from_help, from_readme, "--help: {line}");
    assert_eq!(
        from_help,
        [0, 1, 2, 3, 130, 141, 143].into(),
        "the codes the code returns (cli/src/exit.rs, SIGPIPE): {line}"
    );
}
