//! Terminal set-up in one place: tracing (logs to stderr) and miette's report hook.

use crate::args::{ColorChoice, Global};
use tracing_subscriber::EnvFilter;

pub fn init(global: &Global) {
    let color = match global.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none()
        }
    };
    // RUST_LOG wins when set; otherwise -v / -q move the level from `info`.
    // The other workers of a data-parallel run keep to warnings: rank 0 tells the story.
    let other_rank = std::env::var("RANK")
        .ok()
        .and_then(|r| r.trim().parse::<usize>().ok())
        .is_some_and(|r| r > 0);
    let level = match global.verbose as i8 - global.quiet as i8 - other_rank as i8 {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("ardpipe={level},ardpipe_engine={level},ardpipe_models={level},ardpipe_data={level},ardpipe_adapters={level},ardpipe_dsl={level},ardpipe_plugin_host={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(global.verbose > 0)
        .without_time()
        .try_init();
    // COLUMNS (the shell convention) sets the wrap width where there is no terminal to ask,
    // e.g. when stderr goes to a log file or a CI console.
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&w| w >= 20);
    let _ = miette::set_hook(Box::new(move |_| {
        let mut opts = miette::MietteHandlerOpts::new()
            .color(color)
            .unicode(color)
            .terminal_links(false);
        if let Some(w) = width {
            opts = opts.width(w);
        }
        Box::new(opts.build())
    }));
}
