//! `ardpipe completions SHELL`: a completion script for bash, zsh, fish, elvish or PowerShell,
//! generated from the same clap definitions the command line parses with (cli/src/args.rs), so
//! it never lists a subcommand or flag that does not exist.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::Cli;
use crate::exit::Code;

pub fn run(shell: Shell) -> miette::Result<Code> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "ardpipe", &mut out);
    Ok(Code::Success)
}
