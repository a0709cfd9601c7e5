//! `ardpipe`: fine-tune foundation models with ARD-LoRA from a pipeline file.

mod args;
mod commands;
mod exit;
mod output;

use clap::Parser;

fn main() {
    output::end_cleanly_on_unwritable_output();
    let cli = args::Cli::parse();
    output::init(&cli.global);
    let code = match commands::dispatch(cli.command, &cli.global) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            exit::Code::Failure
        }
    };
    std::process::exit(code as i32);
}
