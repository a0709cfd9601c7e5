use crate::{ardpipe, stderr, stdout};

const SUBCOMMANDS: &[&str] = &[
    "run", "check", "fmt", "plan", "schema", "inspect", "generate", "classify", "embed", "doctor",
    "plugin", "bench", "study",
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
