//! One module per subcommand; `dispatch` wires them to the parsed command line.

mod bench;
mod bench_distributed;
mod check;
mod classify;
mod compare;
mod completions;
mod compose;
mod data;
mod diff;
mod doctor;
mod embed;
mod fmt;
mod generate;
mod inspect;
mod inspect_run;
mod launch;
mod lsp;
mod man;
mod merge;
mod migrate;
mod new;
mod plan;
mod plugin;
mod run;
mod runs;
mod schema;
mod study;
mod study_report;
mod study_svg;

use crate::args::{Command, DataCommand, Global, InspectWhat};
use crate::exit::Code;

pub fn dispatch(command: Command, global: &Global) -> miette::Result<Code> {
    match command {
        Command::Doctor { deep, format } => doctor::run(deep, format),
        Command::Run {
            file,
            resume,
            restart,
            variant,
            nproc,
            threads,
            validate,
            log_format,
            overrides,
        } => run::run(
            file.as_deref(),
            resume.as_deref(),
            restart,
            variant.as_deref(),
            nproc,
            threads,
            validate,
            &overrides,
            global.quiet > 0,
            log_format,
        ),
        Command::Check {
            files,
            format,
            overrides,
        } => check::run(&files, format, &overrides),
        Command::Fmt { files, check } => fmt::run(&files, check),
        Command::Plan {
            file,
            format,
            resolved,
            variant,
            fit,
            nproc,
            overrides,
        } => plan::run(
            &file,
            format,
            resolved,
            variant.as_deref(),
            fit.as_deref().map(|d| (d, nproc)),
            &overrides,
        ),
        Command::Runs {
            dir,
            pipeline,
            format,
        } => runs::run(dir.as_deref(), pipeline.as_deref(), format),
        Command::Compare { runs, format } => compare::run(&runs, format),
        Command::Diff {
            old,
            new,
            textconv,
            format,
        } => diff::run(old.as_deref(), new.as_deref(), textconv.as_deref(), format),
        Command::Migrate { file, write } => migrate::run(&file, write),
        Command::Schema { kind } => schema::print(kind),
        Command::Inspect {
            what: InspectWhat::Model { path, format },
        } => inspect::model(&path, format),
        Command::Inspect {
            what: InspectWhat::Run { path, format },
        } => inspect_run::run(&path, format),
        Command::Generate(args) => generate::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Compose(args) => compose::run(args),
        Command::Data {
            what: DataCommand::Preview(args),
        } => data::preview(args, global),
        Command::Plugin { what } => plugin::run(what),
        Command::Bench { what } => bench::run(what),
        Command::Study(args) => study::run(args),
        Command::New(a) => new::run(&a.file, &a.model, a.task, a.force),
        Command::Completions { shell } => completions::run(shell),
        Command::Man { out } => man::run(out.as_deref()),
        Command::Lsp => lsp::run(),
    }
}
