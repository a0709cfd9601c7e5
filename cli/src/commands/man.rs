//! `ardpipe man [--out DIR]`: manual pages in roff from the clap definitions (cli/src/args.rs).
//! Without `--out`, the main page (`ardpipe(1)`, which lists every subcommand) on stdout; with
//! it, `ardpipe.1` and one page per subcommand (`ardpipe-run.1`, `ardpipe-inspect-model.1`, ...)
//! in DIR, each written atomically.

use std::path::Path;

use clap::CommandFactory;
use clap_mangen::Man;

use crate::args::Cli;
use crate::exit::Code;

pub fn run(out: Option<&Path>) -> miette::Result<Code> {
    let mut cmd = Cli::command();
    cmd.build();
    let Some(dir) = out else {
        let mut stdout = std::io::stdout().lock();
        Man::new(cmd)
            .render(&mut stdout)
            .map_err(|e| miette::miette!("cannot write the manual page: {e}"))?;
        return Ok(Code::Success);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| miette::miette!("cannot create {}: {e}", dir.display()))?;
    let mut written = 0;
    write_pages(&cmd, "ardpipe", dir, &mut written)?;
    println!("wrote {written} manual pages to {}", dir.display());
    Ok(Code::Success)
}

/// `cmd`'s page as NAME.1, then each subcommand's as NAME-SUB.1 (clap's `help` has none).
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> miette::Result<()> {
    // clap_mangen takes the page's title from the command's name: `ardpipe-run`, not `run`.
    let page = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let mut bytes = Vec::new();
    Man::new(page)
        .render(&mut bytes)
        .map_err(|e| miette::miette!("cannot render {name}(1): {e}"))?;
    let file = dir.join(format!("{name}.1"));
    ardpipe_engine::rundir::write_atomic(&file, &bytes).map_err(|e| miette::miette!("{e}"))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
