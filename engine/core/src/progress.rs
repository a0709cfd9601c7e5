//! Training progress for people: a progress bar (indicatif) with loss, lr, mean effective rank,
//! tokens/s and ETA when stderr is a terminal; otherwise (logs, CI, `--quiet`) one plain
//! `tracing` line every N steps, so logs stay readable and greppable.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What the trainer reports after each optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Optimizer steps done (1 after the first update).
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    /// Mean effective rank over ARD units; `None` for methods without one.
    pub mean_rank: Option<f64>,
    /// Tokens processed in this step.
    pub tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Lines,
    Silent,
}

impl Mode {
    /// A bar on a terminal unless `quiet`; plain lines otherwise.
    pub fn detect(quiet: bool) -> Mode {
        if !quiet && std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Tokens/s over a sliding window of recent steps (the first steps include warm-up costs).
#[derive(Debug, Clone)]
struct Rate {
    window: std::collections::VecDeque<(Instant, u64)>,
    cap: usize,
}

impl Rate {
    fn new(cap: usize) -> Rate {
        Rate {
            window: Default::default(),
            cap,
        }
    }
    fn push(&mut self, at: Instant, tokens: u64) {
        self.window.push_back((at, tokens));
        while self.window.len() > self.cap {
            self.window.pop_front();
        }
    }
    /// (tokens/s, seconds per step) over the window.
    fn rates(&self) -> Option<(f64, f64)> {
        let (first, last) = (self.window.front()?, self.window.back()?);
        let secs = last.0.duration_since(first.0).as_secs_f64();
        let steps = self.window.len() - 1;
        if steps == 0 || secs <= 0.0 {
            return None;
        }
        let tokens: u64 = self.window.iter().skip(1).map(|(_, t)| t).sum();
        Some((tokens as f64 / secs, secs / steps as f64))
    }
}

pub struct Progress {
    mode: Mode,
    total: u64,
    log_every: u64,
    bar: Option<ProgressBar>,
    rate: Rate,
}

/// `1h02m`, `3m07s`, `12s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The fields shown in both modes, e.g. `loss 1.2345 lr 3.00e-4 rank 5.2 1234 tok/s`.
pub fn format_stats(s: &StepStats, tokens_per_sec: Option<f64>) -> String {
    let mut out = format!("loss {:.4} lr {:.2e}", s.loss, s.lr);
    if let Some(r) = s.mean_rank {
        out.push_str(&format!(" rank {r:.1}"));
    }
    if let Some(t) = tokens_per_sec {
        out.push_str(&format!(" {t:.0} tok/s"));
    }
    out
}

impl Progress {
    /// `log_every`: steps between plain lines (at least 1).
    pub fn new(total_steps: u64, log_every: u64, mode: Mode) -> Progress {
        let bar = (mode == Mode::Bar).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise} < {eta}] {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Progress {
            mode,
            total: total_steps,
            log_every: log_every.max(1),
            bar,
            rate: Rate::new(20),
        }
    }

    /// For a resumed run: show the bar from where the checkpoint left off.
    pub fn resume_at(&mut self, step: u64) {
        if let Some(b) = &self.bar {
            b.set_position(step);
        }
    }

    pub fn step(&mut self, s: &StepStats) {
        self.step_at(s, Instant::now());
    }

    fn step_at(&mut self, s: &StepStats, now: Instant) {
        self.rate.push(now, s.tokens);
        let rates = self.rate.rates();
        let stats = format_stats(s, rates.map(|r| r.0));
        match self.mode {
            Mode::Bar => {
                if let Some(b) = &self.bar {
                    b.set_position(s.step);
                    b.set_message(stats);
                }
            }
            Mode::Lines => {
                if s.step.is_multiple_of(self.log_every) || s.step == self.total {
                    tracing::info!(target: "ardpipe::train", "{}", self.line(s, rates.map(|r| r.1), &stats));
                }
            }
            Mode::Silent => {}
        }
    }

    /// `step 40/300 (13%) loss 1.2345 lr 3.00e-4 rank 5.2 1234 tok/s eta 2m10s`
    fn line(&self, s: &StepStats, secs_per_step: Option<f64>, stats: &str) -> String {
        let pct = (100 * s.step).checked_div(self.total).unwrap_or(100);
        let mut line = format!("step {}/{} ({pct}%) {stats}", s.step, self.total);
        if let Some(sps) = secs_per_step {
            let left = self.total.saturating_sub(s.step) as f64 * sps;
            line.push_str(&format!(
                " eta {}",
                format_duration(Duration::from_secs_f64(left))
            ));
        }
        line
    }

    /// A message that must not be garbled by the bar (evaluation results, warnings).
    pub fn println(&self, msg: &str) {
        match (&self.bar, self.mode) {
            (Some(b), Mode::Bar) => b.println(msg),
            (_, Mode::Silent) => {}
            _ => tracing::info!(target: "ardpipe::train", "{msg}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(step: u64) -> StepStats {
        StepStats {
            step,
            loss: 1.23456,
            lr: 3e-4,
            mean_rank: Some(5.25),
            tokens: 1000,
        }
    }

    #[test]
    fn stats_and_durations_format_for_people() {
        assert_eq!(
            format_stats(&stats(1), Some(1234.4)),
            "loss 1.2346 lr 3.00e-4 rank 5.2 1234 tok/s"
        );
        let mut no_rank = stats(1);
        no_rank.mean_rank = None;
        assert_eq!(format_stats(&no_rank, None), "loss 1.2346 lr 3.00e-4");
        assert_eq!(format_duration(Duration::from_secs(7)), "7s");
        assert_eq!(format_duration(Duration::from_secs(187)), "3m07s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn lines_carry_rate_and_eta_from_the_recent_window() {
        let mut p = Progress::new(300, 10, Mode::Silent);
        let t0 = Instant::now();
        for i in 0..=4u64 {
            p.step_at(&stats(i + 1), t0 + Duration::from_millis(500 * i));
        }
        let (tps, sps) = p.rate.rates().unwrap();
        assert!((tps - 2000.0).abs() < 1e-6, "{tps}");
        assert!((sps - 0.5).abs() < 1e-9, "{sps}");
        let s = stats(5);
        let line = p.line(&s, Some(sps), &format_stats(&s, Some(tps)));
        assert_eq!(
            line,
            "step 5/300 (1%) loss 1.2346 lr 3.00e-4 rank 5.2 2000 tok/s eta 2m27s"
        );
    }

    #[test]
    fn quiet_never_draws_a_bar() {
        assert_eq!(Mode::detect(true), Mode::Lines);
        let p = Progress::new(10, 0, Mode::Lines);
        assert!(p.bar.is_none());
        assert_eq!(p.log_every, 1);
    }
}
