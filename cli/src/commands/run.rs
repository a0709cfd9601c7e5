//! `ardpipe run FILE` / `ardpipe run --resume RUN_DIR`: train, evaluate and export.
//!
//! With `--log-format json` stdout carries only the run's events, one JSON object per line
//! (ardpipe_engine::train::follow writes them; the `end` event, with the status, is written
//! here), and the summary goes to stderr with the log.
//!
//! SIGINT (Ctrl-C) and SIGTERM (Slurm preemption, Kubernetes eviction) ask the run to stop: it
//! finishes its current step, writes a checkpoint, marks its manifest `interrupted` and exits
//! 130 / 143; a second signal exits at once (the last checkpoint stays the one to resume from).

use std::path::Path;

use ardpipe_dsl::Pipeline;
use ardpipe_engine::train::{self, RunOptions, RunSummary, TrainError};

use crate::args::Overrides;
use crate::exit::Code;
use crate::output::LogFormat;

/// A second stop signal while the first is being honoured: leave now.
extern "C" fn on_stop_signal(signal: libc::c_int) {
    if ardpipe_engine::rundir::request_stop(signal) != 0 {
        const MSG: &[u8] = b"second signal: stopping at once, without a checkpoint\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a static buffer.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(128 + signal);
        }
    }
}

/// Route SIGINT and SIGTERM to [`ardpipe_engine::rundir::request_stop`].
fn stop_on_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler only
        // stores to an atomic, or writes and exits.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                tracing::warn!(
                    "cannot handle signal {signal}: it will stop the run without a checkpoint"
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    file: Option<&Path>,
    resume: Option<&Path>,
    restart: bool,
    variant: Option<&str>,
    nproc: Option<usize>,
    threads: Option<i32>,
    validate: bool,
    overrides: &Overrides,
    quiet: bool,
    log_format: LogFormat,
) -> miette::Result<Code> {
    let json = log_format == LogFormat::Json;
    stop_on_signals();
    if let Some(n) = threads {
        ardpipe_engine::models::runtime::set_threads(n);
    }
    if let Some(n) = nproc.filter(|&n| n > 1) {
        if ardpipe_engine::dist::Launch::from_env()
            .ok()
            .flatten()
            .is_some()
        {
            return Err(miette::miette!(
                help = "drop --nproc: the launcher already started the workers",
                "--nproc {n} inside a launched worker (RANK and WORLD_SIZE are set)"
            ));
        }
        return super::launch::local_workers(n, threads);
    }
    // Where plugin options are written, to show a plugin's option error against the text (a
    // resumed run has only its saved pipeline, without the text).
    let mut uses = None;
    let pipeline = match (file, resume) {
        (Some(f), _) => {
            let ctx = super::check::context_for_variant(overrides, variant);
            match ardpipe_dsl::check_file(f, &ctx) {
                Ok(c) => {
                    super::check::print_diagnostics(c.warnings);
                    uses = Some(c.plugin_uses);
                    c.pipeline
                }
                Err(d) => {
                    super::check::print_diagnostics(d);
                    if json {
                        let error = format!("{} does not check: see the diagnostics", f.display());
                        let fields = serde_json::json!({"status": "failed", "error": error});
                        train::follow::emit_json("end", fields);
                    }
                    return Ok(Code::Failure);
                }
            }
        }
        (None, Some(dir)) => {
            if !overrides.set.is_empty() {
                return Err(miette::miette!(
                    help =
                        "pass the pipeline file too: `ardpipe run FILE --resume RUN_DIR --set …`",
                    "--set needs a pipeline file to apply to"
                ));
            }
            saved_pipeline(dir)?
        }
        (None, None) => {
            return Err(miette::miette!(
                help = "e.g. `ardpipe run pipelines/quickstart.ard`",
                "name a pipeline file, or --resume RUN_DIR"
            ));
        }
    };
    let mut last = None;
    let runs = select_runs(&pipeline, variant)?;
    // Under a launcher (torchrun, srun, a PyTorchJob, --nproc): join the other processes.
    let group = super::launch::join_group(runs.first().map(|r| r.1).unwrap_or(&pipeline))?;
    let root = group.as_ref().is_none_or(|g| g.is_root());
    for (variant, p) in &runs {
        if runs.len() > 1 {
            eprintln!("\n== variant {variant}");
        }
        let opts = RunOptions {
            resume: resume.map(Path::to_path_buf),
            restart,
            quiet,
            stop_after: None,
            validate,
            variant: (!pipeline.variants.is_empty()).then(|| variant.to_string()),
            group: group.clone(),
            json_events: json,
        };
        let result = train::run(p, &opts);
        if json && root {
            emit_end(variant, &result);
        }
        match result {
            Ok(s) => {
                if root {
                    print_summary(json, p, &s);
                }
                if let Some(signal) = s.stop_signal {
                    // The other variants do not start: the user asked to stop.
                    return Ok(if signal == libc::SIGINT {
                        Code::Interrupted
                    } else {
                        Code::Terminated
                    });
                }
                last = Some(s);
            }
            Err(TrainError::Plugin { site, error }) => {
                let name: &str = variant;
                let variant = (!pipeline.variants.is_empty()).then_some(name);
                return super::plugin::run_failure(&site, &error, p, uses.as_ref(), variant);
            }
            Err(e) => return Err(report(e)),
        }
    }
    if let Some(g) = &group {
        // Rank 0 may still be writing the export and report: leave together, so a launcher
        // does not see one process finish while another is still working.
        g.barrier().map_err(|e| miette::miette!("{e}"))?;
    }
    Ok(if last.is_some() {
        Code::Success
    } else {
        Code::Failure
    })
}

/// The runs of a pipeline: all of them, or the one variant asked for.
pub(crate) fn select_runs<'p>(
    pipeline: &'p Pipeline,
    variant: Option<&str>,
) -> miette::Result<Vec<(&'p str, &'p Pipeline)>> {
    let all = pipeline.runs();
    let Some(want) = variant else {
        return Ok(all);
    };
    if pipeline.variants.is_empty() {
        return Err(miette::miette!(
            help = "remove --variant, or add `variant NAME { … }` blocks to the pipeline",
            "--variant {want}: pipeline `{}` has no variants",
            pipeline.name
        ));
    }
    let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    match all.iter().find(|(n, _)| *n == want) {
        Some(r) => Ok(vec![*r]),
        None => Err(miette::miette!(
            help = format!("the variants are: {}", names.join(", ")),
            "--variant {want}: pipeline `{}` has no such variant",
            pipeline.name
        )),
    }
}

fn saved_pipeline(dir: &Path) -> miette::Result<Pipeline> {
    let path = dir.join(ardpipe_engine::rundir::RESOLVED_PIPELINE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        miette::miette!(
            help = "RUN_DIR is the folder `ardpipe run` printed when the run started",
            "{} is not a run directory: {e}",
            dir.display()
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| miette::miette!("{} is damaged or from another version: {e}", path.display()))
}

pub(crate) fn report(e: TrainError) -> miette::Report {
    let help = match &e {
        TrainError::Plan(p) => p.help().map(str::to_string),
        TrainError::Data(d) => Some(d.to_string()),
        _ => None,
    };
    match help {
        Some(h) => miette::miette!(help = h, "{e}"),
        None => miette::miette!("{e}"),
    }
}

/// The run's summary for a person: on stdout, or on stderr when stdout carries JSON events.
fn print_summary(to_stderr: bool, p: &Pipeline, s: &RunSummary) {
    let text = summary_text(p, s);
    if to_stderr {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

fn summary_text(p: &Pipeline, s: &RunSummary) -> String {
    let mut text = String::new();
    macro_rules! say {
        ($($arg:tt)*) => {{
            text.push_str(&format!($($arg)*));
            text.push('\n');
        }};
    }
    if s.interrupted {
        say!(
            "stopped after step {} (checkpoint saved): resume with `ardpipe run --resume {}`",
            s.steps,
            s.run_dir.display()
        );
        return text;
    }
    say!("\nrun        {}", s.run_dir.display());
    say!(
        "steps      {}{} in {:.0} s ({:.0} tokens/s)",
        s.steps,
        if s.stopped_early { " (early stop)" } else { "" },
        s.wall_seconds,
        s.tokens_per_second
    );
    if let Some(e) = &s.final_eval {
        for (k, v) in &e.metrics {
            let before = s
                .initial_eval
                .iter()
                .flatten()
                .find(|(name, _)| name == k)
                .map(|(_, b)| format!(" (before training {b:.4})"))
                .unwrap_or_default();
            say!("{:<10} {v:.4}{before}", k);
        }
    }
    if let Some(b) = s.majority_baseline {
        say!("baseline   {b:.4} (always predicting the most frequent training class or answer)");
    }
    say!(
        "exported   {} parameters, {:.3}% of the base model's {} ({} allocated at peak)",
        s.exported_parameters,
        100.0 * s.exported_parameters as f64 / s.base_parameters.max(1) as f64,
        s.base_parameters,
        s.peak_parameters
    );
    say!(
        "adaptation {:.2} MiB at peak (trainable tensors, gradients, optimiser state)",
        s.adaptation_memory.peak_bytes as f64 / 1048576.0
    );
    if let Some(r) = s.mean_effective_rank {
        say!("mean rank  {r:.2} (ARD-LoRA effective rank per head)");
        say!("rank map   (rows: module × layer, columns: heads)");
        for row in &s.rank_map {
            let ranks: Vec<String> = row.ranks.iter().map(|x| format!("{x:>2}")).collect();
            say!(
                "  {:<40} {:>2}  {}",
                row.module,
                row.layer.map(|l| l.to_string()).unwrap_or_default(),
                ranks.join(" ")
            );
        }
    }
    if p.output
        .export
        .contains(&ardpipe_dsl::pipeline::Export::Peft)
    {
        say!("adapter    {}", s.run_dir.join("adapter").display());
    }
    if p.output
        .export
        .contains(&ardpipe_dsl::pipeline::Export::Merged)
    {
        say!(
            "merged     {} (a complete Hugging Face model folder)",
            s.run_dir.join("merged").display()
        );
    }
    text
}

/// `--log-format json`: the last event of a run, with its status (`completed`, `stopped` early,
/// `interrupted`, `failed` with the error).
fn emit_end(variant: &str, result: &Result<RunSummary, TrainError>) {
    let fields = match result {
        Ok(s) => {
            let status = if s.interrupted {
                "interrupted"
            } else if s.stopped_early {
                "stopped"
            } else {
                "completed"
            };
            serde_json::json!({
                "status": status,
                "variant": variant,
                "run_dir": s.run_dir,
                "steps": s.steps,
                "final_eval": s.final_eval.as_ref().map(|e| {
                    e.metrics
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                        .collect::<serde_json::Map<_, _>>()
                }),
                "stop_signal": s.stop_signal,
                "wall_seconds": s.wall_seconds,
            })
        }
        Err(e) => {
            serde_json::json!({"status": "failed", "variant": variant, "error": e.to_string()})
        }
    };
    train::follow::emit_json("end", fields);
}
