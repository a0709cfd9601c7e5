//! What a person watching a run sees: a progress bar on a terminal (loss, lr, mean effective
//! rank, tokens/s, ETA), plain log lines otherwise or with `--quiet`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Console {
    bar: Option<ProgressBar>,
    total: u64,
}

impl Console {
    pub fn new(total: u64, start: u64, quiet: bool) -> Console {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_position(start);
            b
        });
        Console { bar, total }
    }

    pub fn update(&self, step: u64, loss: f64, lr: f64, rank: Option<f64>, tokens_per_s: f64) {
        let rank = rank.map(|r| format!(" rank {r:.2}")).unwrap_or_default();
        let msg = format!("loss {loss:.4} lr {lr:.2e}{rank} {tokens_per_s:.0} tok/s");
        match &self.bar {
            Some(b) => {
                b.set_position(step);
                b.set_message(msg);
            }
            None => tracing::info!("step {step}/{}: {msg}", self.total),
        }
    }

    pub fn tick(&self, step: u64) {
        if let Some(b) = &self.bar {
            b.set_position(step);
        }
    }

    pub fn message(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => tracing::info!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
