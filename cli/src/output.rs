//! Terminal set-up in one place: tracing (logs to stderr) and miette's report hook.

use crate::args::{ColorChoice, Global};
use serde::Serialize;
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

/// Output that cannot be written ends the process cleanly instead of with a panic (exit 101):
///
/// - a reader that stops early (`ardpipe schema | head`, `2>&1 | head`) ends it the way it ends
///   any Unix tool: killed by SIGPIPE, quietly (a shell shows status 141);
/// - any other failed write to stdout or stderr (a full disk, `> /dev/full`) is exit 1 with the
///   reason on stderr (when stderr is still writable).
///
/// Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE and `println!`/`eprintln!`
/// panic on it ("failed printing to stdout"). SIGPIPE is not simply restored for the whole process
/// because the data-parallel transports (Gloo, the TCP store) write to sockets and rely on getting
/// an error, not a signal, when a peer is gone. Instead the panic hook recognises exactly that
/// panic, which std raises only from its print macros.
pub fn end_cleanly_on_unwritable_output() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(failure) = failed_print(info.payload()) {
            let epipe = std::io::Error::from_raw_os_error(libc::EPIPE).to_string();
            if failure.ends_with(&epipe) {
                die_of_sigpipe();
            }
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot write the output ({failure}): check the disk or file it goes to"
            );
            std::process::exit(crate::exit::Code::Failure as i32);
        }
        default(info);
    }));
}

/// The reason of std's panic for a print that failed ("failed printing to stdout: Broken pipe (os
/// error 32)" → "stdout: Broken pipe (os error 32)"), or `None` for any other panic.
fn failed_print(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())?
        .strip_prefix("failed printing to ")
        .filter(|rest| rest.starts_with("std"))
}

fn die_of_sigpipe() -> ! {
    // SAFETY: restoring a signal's default action and raising it are async-signal-safe libc
    // calls with no Rust state involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached: SIGPIPE's default action ends the process. Should it be blocked, exit with
    // the status a shell would show.
    std::process::exit(128 + libc::SIGPIPE)
}

/// `ardpipe run --log-format`: the human log only (on stderr), or also the run's events as JSON
/// lines on stdout (`ardpipe_engine::train::follow`).
#[derive(Debug, Clone, Copy, clap::ValueEnum, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `value` as YAML for `--format yaml` (one writer for every command, so YAML is always YAML).
pub fn yaml<T: Serialize + ?Sized>(value: &T) -> miette::Result<String> {
    serde_yaml::to_string(value)
        .map_err(|e| miette::miette!("cannot write the output as YAML: {e}"))
}
