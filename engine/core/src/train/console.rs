//! What a person watching a run sees: a progress bar on a terminal (loss, lr, mean effective
//! rank, tokens/s, ETA, the next evaluation), plain log lines otherwise or with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Console {
    bar: Option<ProgressBar>,
    total: u64,
    /// When this process started training, and at which step (a resumed run starts later).
    started: Instant,
    first: u64,
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
        Console {
            bar,
            total,
            started: Instant::now(),
            first: start,
        }
    }

    /// Time left at this process's pace so far (evaluations and checkpoints included).
    fn eta(&self, step: u64) -> Option<Duration> {
        let done = step.checked_sub(self.first).filter(|&d| d > 0)?;
        let per_step = self.started.elapsed().as_secs_f64() / done as f64;
        Some(Duration::from_secs_f64(
            per_step * self.total.saturating_sub(step) as f64,
        ))
    }

    pub fn update(
        &self,
        step: u64,
        loss: f64,
        lr: f64,
        rank: Option<f64>,
        tokens_per_s: f64,
        next_eval: Option<u64>,
    ) {
        let rank = rank.map(|r| format!(" rank {r:.2}")).unwrap_or_default();
        let next = next_eval
            .map(|s| format!(", next eval at step {s}"))
            .unwrap_or_default();
        let msg = format!("loss {loss:.4} lr {lr:.2e}{rank} {tokens_per_s:.0} tok/s{next}");
        match &self.bar {
            // The bar shows the ETA itself.
            Some(b) => {
                b.set_position(step);
                b.set_message(msg);
            }
            None => {
                let eta = self
                    .eta(step)
                    .map(|d| format!(", eta {}", clock(d)))
                    .unwrap_or_default();
                tracing::info!("step {step}/{}: {msg}{eta}", self.total)
            }
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

/// `H:MM:SS`, as the bar shows its ETA.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_reads_hours_minutes_seconds() {
        assert_eq!(
            super::clock(std::time::Duration::from_secs(3725)),
            "1:02:05"
        );
        assert_eq!(
            super::clock(std::time::Duration::from_millis(400)),
            "0:00:00"
        );
    }
}
