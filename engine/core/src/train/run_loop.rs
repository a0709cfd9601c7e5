//! The training loop proper: steps, logging, evaluation, early stopping, checkpoints, and the
//! end of a run (final evaluation, export, report).

use std::time::Instant;

use ardpipe_dsl::pipeline as p;
use serde_json::json;
use tch::{Kind, Tensor};

use super::follow::Follow;
use super::metric_plugins::MetricPlugins;
use super::{AdaptationMemory, EvalResult, RankRow, RunOptions, RunSummary, TrainError, Trainer};

/// Streaming evaluation counts: nothing but sums and a confusion matrix stays on the host.
struct EvalCounts {
    loss_sum: f64,
    loss_items: f64,
    confusion: Option<Tensor>,
    /// Causal LM: [targets predicted right, targets, examples with a target, examples whose
    /// every target is predicted right], summed on the device.
    answers: Option<Tensor>,
}

/// A causal-LM batch's answer counts (see [`EvalCounts::answers`]). Teacher-forced: a target is
/// right when it is the argmax given the true tokens before it, so an example is an exact
/// match exactly when greedy decoding from its prompt reproduces its answer.
fn answer_counts(logits: &Tensor, batch: &super::task::TensorBatch) -> Tensor {
    let (b, t) = (batch.labels.size()[0], batch.labels.size()[1]);
    let has = batch.labels.ne(-100);
    let wrong = logits
        .argmax(-1, false)
        .ne_tensor(&batch.labels)
        .logical_and(&has)
        .to_kind(Kind::Int64);
    let has = has.to_kind(Kind::Int64);
    // One key per example: its row and its segment (a row without segments is one example).
    let seg = batch.segments.as_ref().unwrap_or(&batch.attention_mask);
    let rows = Tensor::arange(b, (Kind::Int64, logits.device())).unsqueeze(1) * (t + 1);
    let key = (rows + seg).view([-1]);
    let per = |x: &Tensor| {
        Tensor::zeros([b * (t + 1)], (Kind::Int64, logits.device())).index_add(
            0,
            &key,
            &x.view([-1]),
        )
    };
    let (wrong_per, has_per) = (per(&wrong), per(&has));
    let examples = has_per.gt(0);
    let exact = examples.logical_and(&wrong_per.eq(0));
    let targets = has.sum(Kind::Int64);
    Tensor::stack(
        &[
            &targets - wrong.sum(Kind::Int64),
            targets,
            examples.sum(Kind::Int64),
            exact.sum(Kind::Int64),
        ],
        0,
    )
}

impl Trainer {
    /// Evaluate on the evaluation split with the pipeline's metrics.
    pub fn evaluate(&self) -> Result<Option<EvalResult>, TrainError> {
        self.evaluate_on(&self.data)
    }

    /// Evaluate the evaluation split of `data` (the run's own, or the validation split of
    /// `--validate`).
    fn evaluate_on(
        &self,
        data: &super::batches::Batches,
    ) -> Result<Option<EvalResult>, TrainError> {
        if data.eval_len() == 0 {
            return Ok(None);
        }
        let _ng = tch::no_grad_guard();
        let n_classes = data.num_labels() as i64;
        let mut c = EvalCounts {
            loss_sum: 0.0,
            loss_items: 0.0,
            confusion: (n_classes > 0)
                .then(|| Tensor::zeros([n_classes * n_classes], (Kind::Int64, self.device))),
            answers: (n_classes == 0).then(|| Tensor::zeros([4], (Kind::Int64, self.device))),
        };
        let mut loss_acc = Tensor::zeros([], (Kind::Double, self.device));
        let mut plugins = MetricPlugins::create(&self.plan.settings)?;
        // Several processes split the evaluation batches and add up their counts; a metric
        // plugin sees predictions one by one and cannot be summed, so with plugins every
        // process evaluates everything (the same result, no faster).
        let (rank, world) = self.rank_and_world();
        let split = world > 1 && !self.has_metric_plugins();
        let (rank, world) = if split { (rank, world) } else { (0, 1) };
        for batch in data.eval_batches_of(self.device, rank, world) {
            let batch = batch?;
            let (loss, logits) = {
                let _ac = ardpipe_models::precision::autocast(self.device, self.autocast);
                self.model.loss(&batch, false)?
            };
            let items = if logits.dim() == 3 {
                batch.labels.ne(-100).sum(Kind::Int64).int64_value(&[])
            } else {
                batch.labels.size()[0]
            };
            loss_acc += loss.to_kind(Kind::Double) * items as f64;
            c.loss_items += items as f64;
            if let Some(a) = c.answers.as_mut()
                && logits.dim() == 3
            {
                *a += answer_counts(&logits, &batch);
            }
            if let Some(conf) = c.confusion.as_mut() {
                let pred = logits.argmax(-1, false);
                let cell = &batch.labels * n_classes + pred;
                let _ = conf.index_add_(0, &cell, &Tensor::ones_like(&cell));
            }
            plugins.update(&logits, &batch.labels)?;
        }
        let mut plugin_scalars = plugins.finish()?;
        if split {
            let sums = self.sum_over_processes(Tensor::stack(
                &[loss_acc, Tensor::from(c.loss_items).to_device(self.device)],
                0,
            ))?;
            loss_acc = sums.get(0);
            c.loss_items = sums.get(1).double_value(&[]);
            if let (Some(conf), Some(dp)) = (c.confusion.as_ref(), self.parallel.as_ref()) {
                dp.group.all_reduce_sum(std::slice::from_ref(conf))?;
            }
            if let Some(a) = c.answers.as_mut() {
                *a = self
                    .sum_over_processes(a.to_kind(Kind::Double))?
                    .to_kind(Kind::Int64);
            }
        }
        let answers: Option<Vec<i64>> = c
            .answers
            .as_ref()
            .map(|t| Vec::<i64>::try_from(t.to_device(tch::Device::Cpu)).unwrap_or_default());
        let ratio = |a: i64, b: i64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        c.loss_sum = loss_acc.double_value(&[]);
        let mean_loss = c.loss_sum / c.loss_items.max(1.0);
        let mut metrics: Vec<(String, f64)> = Vec::new();
        let mut primary = Vec::new();
        let wanted: Vec<p::Metric> = self
            .plan
            .settings
            .evaluate
            .as_ref()
            .map(|e| e.metrics.clone())
            .unwrap_or_else(|| vec![p::Metric::Loss]);
        let conf: Option<Vec<i64>> = c
            .confusion
            .as_ref()
            .map(|t| Vec::<i64>::try_from(t.to_device(tch::Device::Cpu)).unwrap_or_default());
        for (index, m) in wanted.iter().enumerate() {
            let before = metrics.len();
            match m {
                p::Metric::Loss => metrics.push(("loss".to_string(), mean_loss)),
                p::Metric::Perplexity => metrics.push(("perplexity".to_string(), mean_loss.exp())),
                p::Metric::Accuracy => {
                    if let Some(conf) = &conf {
                        metrics.push(("accuracy".to_string(), accuracy(conf, n_classes as usize)));
                    } else if let Some(a) = &answers {
                        // A causal LM: the share of trained-on (answer) tokens predicted right.
                        metrics.push(("accuracy".to_string(), ratio(a[0], a[1])));
                    }
                }
                p::Metric::ExactMatch => {
                    if let Some(a) = &answers {
                        metrics.push(("exact_match".to_string(), ratio(a[3], a[2])));
                    }
                }
                p::Metric::MacroF1 => {
                    if let Some(conf) = &conf {
                        metrics.push(("macro_f1".to_string(), macro_f1(conf, n_classes as usize)));
                    }
                }
                p::Metric::Plugin { plugin, .. } => {
                    for (name, value) in plugin_scalars.remove(&index).unwrap_or_default() {
                        let name = unique_name(&metrics, plugin, name);
                        metrics.push((name, value));
                    }
                }
            }
            primary.push(metrics.get(before).map(|&(_, v)| v));
        }
        Ok(Some(EvalResult {
            step: self.state.step,
            metrics,
            primary,
        }))
    }

    fn log_metrics(
        &self,
        follow: &mut Follow,
        record: serde_json::Value,
    ) -> Result<(), TrainError> {
        if !self.writes() {
            return Ok(());
        }
        let mut log = self.run_dir.metrics_log()?;
        log.append(&record)?;
        follow.metrics(&record)
    }

    /// One evaluation as a `metrics.jsonl` record; `marker` (`initial`, `final`) flags the
    /// evaluations before and after training. Its keys are [`RECORD_KEYS`].
    fn log_eval(
        &self,
        follow: &mut Follow,
        eval: &EvalResult,
        marker: Option<&str>,
    ) -> Result<(), TrainError> {
        let mut rec = json!({ "step": eval.step, "split": "eval" });
        if let Some(m) = marker {
            rec[m] = json!(true);
        }
        for (k, v) in &eval.metrics {
            rec[k] = json!(v);
        }
        self.log_metrics(follow, rec)
    }

    /// `final`: the record after the last step, flagged so a resume can write it again.
    fn log_ranks(&self, follow: &mut Follow, last: bool) -> Result<(), TrainError> {
        if !self.writes() {
            return Ok(());
        }
        let units: Vec<_> = self
            .model
            .linears()
            .into_iter()
            .filter_map(|l| l.adapter.as_ref().and_then(|a| a.as_ard()))
            .flat_map(|a| a.telemetry())
            .collect();
        if units.is_empty() {
            return Ok(());
        }
        let mut log = self.run_dir.ranks_log()?;
        let mut rec = json!({ "step": self.state.step, "units": units });
        if last {
            rec["final"] = json!(true);
        }
        log.append(&rec)?;
        follow.ranks(&rec)
    }

    fn has_metric_plugins(&self) -> bool {
        self.plan.settings.evaluate.as_ref().is_some_and(|e| {
            e.metrics
                .iter()
                .any(|m| matches!(m, p::Metric::Plugin { .. }))
        })
    }

    /// Returns true when early stopping says to stop.
    fn early_stop_check(&mut self, eval: &EvalResult) -> bool {
        let Some(es) = &self.plan.settings.train.early_stopping else {
            return false;
        };
        // The checker made the watched metric one of `evaluate.metrics`; a plugin metric without
        // `metric = ` is watched through the first scalar it reports.
        let watched = self
            .plan
            .settings
            .evaluate
            .as_ref()
            .and_then(|e| e.metrics.iter().position(|m| *m == es.metric))
            .and_then(|i| eval.primary.get(i).copied().flatten());
        let name = metric_name(&es.metric);
        let by_name = || eval.metrics.iter().find(|(n, _)| *n == name).map(|m| m.1);
        let Some(v) = watched.or_else(by_name) else {
            return false;
        };
        let improved = match (self.state.best_metric, es.mode) {
            (None, _) => true,
            (Some(b), p::Goal::Max) => v > b + es.min_delta,
            (Some(b), p::Goal::Min) => v < b - es.min_delta,
        };
        if improved {
            self.state.best_metric = Some(v);
            self.state.evals_without_improvement = 0;
        } else {
            self.state.evals_without_improvement += 1;
        }
        self.state.evals_without_improvement >= es.patience
    }

    pub fn train_loop(&mut self, opts: &RunOptions) -> Result<RunSummary, TrainError> {
        let started = Instant::now();
        let seconds_before = self.state.train_seconds;
        let progress = super::console::Console::new(self.total_steps, self.state.step, self.quiet);
        let mut follow = Follow::start(self, opts.json_events)?;
        let mut window_tokens = 0i64;
        let mut window_start = Instant::now();
        let mut interrupted = false;
        let mut stop_signal = None;
        if self.data.eval_len() > 0 {
            // A metric plugin that cannot be loaded or refuses its options fails the run now,
            // not at the first evaluation after minutes of training.
            MetricPlugins::create(&self.plan.settings)?;
        }
        if self.state.step == 0
            && self.state.initial_eval.is_none()
            && matches!(self.plan.settings.model.head, p::Head::CausalLm)
            && self.plan.settings.evaluate.is_some()
            && let Some(eval) = self.evaluate()?
        {
            // The base model's own score: "perplexity before → after" is what a user asks.
            self.log_eval(&mut follow, &eval, Some("initial"))?;
            progress.message(&format!("before training: {}", format_eval(&eval)));
            self.state.initial_eval = Some(eval.metrics);
        }
        while self.state.step < self.total_steps && !self.state.stopped_early {
            // SIGINT / SIGTERM: stop between steps, with a checkpoint (below).
            if let Some(signal) = self.stop_signal()? {
                // A warning: it shows under `-q` too, where people run unattended.
                tracing::warn!(
                    "{} received: stopping after step {} with a checkpoint (a second signal stops at once, without one)",
                    if signal == 2 { "SIGINT" } else { "SIGTERM" },
                    self.state.step
                );
                stop_signal = Some(signal);
                interrupted = true;
                break;
            }
            let (task, reg, tokens) = self.step()?;
            self.track_peaks();
            self.state.step += 1;
            self.state.tokens_seen += tokens as u64;
            window_tokens += tokens;
            let step = self.state.step;
            let lr = self.schedules.lr.value_at(step - 1);
            let rank = self.mean_effective_rank();
            if step.is_multiple_of(self.log_every) || step == self.total_steps {
                let tps = window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
                window_tokens = 0;
                window_start = Instant::now();
                let mut record = json!({
                    "step": step, "split": "train", "loss": task, "regularizer": reg, "lr": lr,
                    "mean_effective_rank": rank, "tokens_per_second": tps,
                });
                self.loss_scale_fields(&mut record);
                self.log_metrics(&mut follow, record)?;
                self.log_ranks(&mut follow, false)?;
                progress.update(step, task, lr, rank, tps, self.next_eval(step));
            } else {
                progress.tick(step);
            }
            // Evaluations and checkpoints are not training: keep them out of tokens/s.
            let pause = Instant::now();
            if let Some(every) = self.eval_every
                && step.is_multiple_of(every)
                && step < self.total_steps
                && let Some(eval) = self.evaluate()?
            {
                self.log_eval(&mut follow, &eval, None)?;
                progress.message(&format_eval(&eval));
                if self.early_stop_check(&eval) {
                    self.state.stopped_early = true;
                    progress.message(&format!(
                        "early stopping at step {step}: no improvement in {} evaluations",
                        self.state.evals_without_improvement
                    ));
                }
            }
            if step.is_multiple_of(self.checkpoint_every) && step < self.total_steps {
                self.state.train_seconds = seconds_before + started.elapsed().as_secs_f64();
                self.checkpoint(&follow)?;
            }
            window_start += pause.elapsed();
            crate::rundir::test_pause(&format!("step@{step}"), true);
            if opts.stop_after.is_some_and(|s| step >= s) && step < self.total_steps {
                interrupted = true;
                break;
            }
        }
        progress.finish();
        self.state.train_seconds = seconds_before + started.elapsed().as_secs_f64();
        if interrupted {
            self.checkpoint(&follow)?;
            let mut summary = self.summary(None, true);
            summary.stop_signal = stop_signal;
            return Ok(summary);
        }
        let final_eval = self.evaluate()?;
        if let Some(eval) = &final_eval {
            self.log_eval(&mut follow, eval, Some("final"))?;
        }
        let validation_eval = match &self.validation {
            Some(v) => self.evaluate_on(v)?,
            None => None,
        };
        if let Some(eval) = &validation_eval {
            tracing::info!("validation split: {}", format_eval(eval));
        }
        self.log_ranks(&mut follow, true)?;
        self.checkpoint(&follow)?;
        self.export()?;
        if self.writes() {
            let exports: Vec<_> = self
                .plan
                .settings
                .output
                .export
                .iter()
                .map(|e| match e {
                    p::Export::Peft => self.run_dir.adapter_dir(),
                    p::Export::Merged => self.run_dir.path(super::export::MERGED),
                })
                .collect();
            follow.event(
                "export",
                json!({ "step": self.state.step, "paths": exports }),
            );
        }
        let mut summary = self.summary(final_eval, false);
        summary.validation_eval = validation_eval;
        if self.writes() {
            crate::rundir::write_json_atomic(&self.run_dir.path("summary.json"), &summary)?;
        }
        if let Some(path) = self.write_report(&summary)? {
            follow.event("report", json!({ "step": self.state.step, "path": path }));
        }
        Ok(summary)
    }

    /// A checkpoint, and at it the HTML report of the run so far (when the run has a report).
    fn checkpoint(&self, follow: &Follow) -> Result<(), TrainError> {
        if let Some(path) = self.save_checkpoint()? {
            follow.event(
                "checkpoint",
                json!({ "step": self.state.step, "path": path }),
            );
            self.write_progress_report()?;
        }
        Ok(())
    }

    /// The step of the next evaluation after `step`: the next `eval_every` one, or the final one.
    fn next_eval(&self, step: u64) -> Option<u64> {
        if self.data.eval_len() == 0 || step >= self.total_steps {
            return None;
        }
        let next = self
            .eval_every
            .map(|e| (step / e + 1) * e)
            .unwrap_or(self.total_steps);
        Some(next.min(self.total_steps))
    }

    fn summary(&self, final_eval: Option<EvalResult>, interrupted: bool) -> RunSummary {
        let mut rank_map: Vec<RankRow> = Vec::new();
        for lin in self.model.linears() {
            if let Some(a) = lin.adapter.as_ref().and_then(|a| a.as_ard()) {
                let t = a.telemetry();
                if let Some(first) = t.first() {
                    rank_map.push(RankRow {
                        module: first.kind.clone(),
                        layer: first.layer,
                        ranks: t.iter().map(|u| u.effective_rank).collect(),
                    });
                }
            }
        }
        let ranks: Vec<f64> = rank_map
            .iter()
            .flat_map(|r| r.ranks.iter().map(|&k| k as f64))
            .collect();
        RunSummary {
            run_dir: self.run_dir.root().to_path_buf(),
            steps: self.state.step,
            stopped_early: self.state.stopped_early,
            interrupted,
            stop_signal: None,
            final_eval,
            initial_eval: self.state.initial_eval.clone(),
            majority_baseline: self.data.majority_baseline(),
            exported_parameters: self.exported_parameters(),
            peak_parameters: self.state.peak_parameters.max(self.allocated_parameters()),
            adaptation_memory: AdaptationMemory {
                peak_bytes: self
                    .state
                    .peak_adaptation_bytes
                    .max(self.adaptation_bytes()),
                final_bytes: self.adaptation_bytes(),
            },
            base_parameters: self.base_parameters,
            mean_effective_rank: self.mean_effective_rank(),
            rank_spread: (ranks.len() > 1).then(|| sample_std(&ranks)),
            validation_eval: None,
            rank_map,
            wall_seconds: 0.0,
            train_seconds: self.state.train_seconds,
            communication_seconds: self.comm_seconds,
            peak_rss_mb: 0.0,
            tokens_per_second: self.state.tokens_seen as f64 / self.state.train_seconds.max(1e-9),
        }
    }
}

/// Sample standard deviation (n − 1 in the denominator).
fn sample_std(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

pub fn metric_name(m: &p::Metric) -> String {
    match m {
        p::Metric::Loss => "loss".into(),
        p::Metric::Perplexity => "perplexity".into(),
        p::Metric::Accuracy => "accuracy".into(),
        p::Metric::ExactMatch => "exact_match".into(),
        p::Metric::MacroF1 => "macro_f1".into(),
        p::Metric::Plugin { plugin, name, .. } => name.clone().unwrap_or_else(|| plugin.clone()),
    }
}

/// Keys of a metrics.jsonl record that are not metrics.
const RECORD_KEYS: &[&str] = &["step", "split", "initial", "final"];

/// A plugin's scalar keeps its own name unless a metric already has it (or it is a record key):
/// then it is `PLUGIN.NAME`, so nothing is overwritten in metrics.jsonl.
fn unique_name(metrics: &[(String, f64)], plugin: &str, name: String) -> String {
    let taken = |n: &str| RECORD_KEYS.contains(&n) || metrics.iter().any(|(m, _)| m == n);
    if !taken(&name) {
        return name;
    }
    let mut candidate = format!("{plugin}.{name}");
    let mut k = 2;
    while taken(&candidate) {
        candidate = format!("{plugin}.{name}.{k}");
        k += 1;
    }
    candidate
}

pub fn format_eval(e: &EvalResult) -> String {
    let parts: Vec<String> = e
        .metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect();
    format!("eval @ step {}: {}", e.step, parts.join(", "))
}

/// Row = true class, column = prediction.
fn accuracy(conf: &[i64], n: usize) -> f64 {
    let total: i64 = conf.iter().sum();
    let right: i64 = (0..n).map(|i| conf[i * n + i]).sum();
    right as f64 / total.max(1) as f64
}

/// Mean over classes present in the labels or the predictions of per-class F1.
fn macro_f1(conf: &[i64], n: usize) -> f64 {
    let mut sum = 0.0;
    let mut classes = 0;
    for c in 0..n {
        let tp = conf[c * n + c] as f64;
        let fp: f64 = (0..n)
            .filter(|&r| r != c)
            .map(|r| conf[r * n + c] as f64)
            .sum();
        let fn_: f64 = (0..n)
            .filter(|&k| k != c)
            .map(|k| conf[c * n + k] as f64)
            .sum();
        if tp + fp + fn_ == 0.0 {
            continue;
        }
        classes += 1;
        sum += 2.0 * tp / (2.0 * tp + fp + fn_);
    }
    if classes == 0 {
        0.0
    } else {
        sum / classes as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answer accuracy counts trained-on tokens only; exact match counts an example (a segment
    /// of a packed row, or a whole row) right only when every one of its answer tokens is.
    #[test]
    fn answer_counts_score_tokens_with_loss_and_whole_examples() {
        // Vocabulary of 4; the model predicts token 1 everywhere but at position 4 (token 2).
        let mut logits = vec![0f32; 2 * 6 * 4];
        for pos in 0..12 {
            let tok = if pos == 4 { 2 } else { 1 };
            logits[pos * 4 + tok] = 5.0;
        }
        let logits = Tensor::from_slice(&logits).view([2, 6, 4]);
        let t = |v: &[i64]| Tensor::from_slice(v).view([2, 6]);
        // Row 0 packs two examples: the first's answers (1, 1) are right, the second's (3 at
        // position 4) wrong; row 1 is one example whose answers are right, then padding.
        let batch = super::super::task::TensorBatch {
            input_ids: t(&[0; 12]),
            attention_mask: t(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]),
            padded: true,
            labels: t(&[-100, 1, 1, -100, 3, -100, -100, 1, -100, 1, -100, -100]),
            segments: Some(t(&[1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 0, 0])),
            vision: None,
            tokens: 10,
            share: 1.0,
        };
        let c = Vec::<i64>::try_from(answer_counts(&logits, &batch)).unwrap();
        assert_eq!(c, [4, 5, 3, 2], "[right, targets, examples, exact]");
        // Without segments each row is one example: row 0 then has a wrong answer token.
        let batch = super::super::task::TensorBatch {
            segments: None,
            ..batch
        };
        let c = Vec::<i64>::try_from(answer_counts(&logits, &batch)).unwrap();
        assert_eq!(c, [4, 5, 2, 1]);
    }

    #[test]
    fn accuracy_and_macro_f1_from_a_confusion_matrix() {
        // 2 classes: true 0 → [3 right, 1 wrong], true 1 → [2 wrong, 4 right].
        let conf = [3, 1, 2, 4];
        assert!((accuracy(&conf, 2) - 0.7).abs() < 1e-12);
        let f0 = 2.0 * 3.0 / (6.0 + 2.0 + 1.0);
        let f1 = 2.0 * 4.0 / (8.0 + 1.0 + 2.0);
        assert!((macro_f1(&conf, 2) - (f0 + f1) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn plugin_scalars_never_overwrite_a_metric_or_a_record_key() {
        let metrics = vec![
            ("accuracy".to_string(), 0.5),
            ("mcc.accuracy".to_string(), 0.4),
        ];
        assert_eq!(unique_name(&metrics, "mcc", "mcc".into()), "mcc");
        assert_eq!(unique_name(&metrics, "mcc", "step".into()), "mcc.step");
        assert_eq!(
            unique_name(&metrics, "mcc", "accuracy".into()),
            "mcc.accuracy.2"
        );
    }
}
