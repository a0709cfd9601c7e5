//! The trainer: one pipeline run, from a checked pipeline to a run directory.
//!
//! Per optimiser step: `grad_accum` micro-batches of task loss (under autocast when asked),
//! plus for ARD-LoRA λ(t)·(β(t)·ℓ1 + γ(t)·TV) and for AdaLoRA the orthogonality term; under
//! `precision = f16` dynamic loss scaling (a step whose gradients overflow is skipped); clipping;
//! the weight and α optimisers step with their scheduled learning rates; α is projected into
//! its bounds; AdaLoRA's rank allocator and ARD-LoRA's compaction run at their cadence.
//! Checkpoints hold every piece of state, so `--resume` continues exactly where the run was
//! killed; on CPU with one intra-op thread (`ardpipe run --threads 1`) the result is bit-for-bit
//! the uninterrupted run's (libtorch's multi-threaded kernels may round differently per process).

mod accounting;
pub mod batches;
mod console;
pub mod dataset;
mod export;
pub mod follow;
mod loss_scale;
mod metric_plugins;
pub mod parallel;
pub mod planning;
mod plugin_records;
pub mod plugins;
pub mod preview;
mod run_loop;
pub mod setup;
pub mod state;
pub mod task;

use std::path::PathBuf;
use std::time::Instant;

use ardpipe_adapters::adalora::orth_regulariser;
use ardpipe_adapters::ard::ArdRegulariser;
use ardpipe_adapters::optim::Optimizer;
use ardpipe_dsl::pipeline as p;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::rundir::RunDir;
pub use accounting::AdaptationMemory;
pub use setup::Prepared;
use task::TaskModel;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ardpipe_models::ModelError),
    #[error(transparent)]
    Adapter(#[from] ardpipe_adapters::AdapterError),
    #[error(transparent)]
    Data(#[from] ardpipe_data::DataError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    #[error(transparent)]
    RunDir(#[from] crate::rundir::RunDirError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Dist(#[from] ardpipe_dist::DistError),
    #[error(
        "training stopped at step {step}: the {term} became {value}. The last good checkpoint ({checkpoint}) is intact; \
         lower the learning rate, enable `clip`, or use precision = f32, then `ardpipe run --resume {run_dir}`"
    )]
    NonFinite {
        step: u64,
        term: String,
        value: f64,
        checkpoint: String,
        run_dir: String,
    },
    /// A loader or metric plugin failed; `site` is where the pipeline uses it.
    #[error("{site}: {error}")]
    Plugin {
        site: plugins::Site,
        // Boxed: the error names, paths and messages would make every `Result` here large.
        error: Box<ardpipe_plugin_host::PluginError>,
    },
    #[error("cannot resume {run_dir}: {why}")]
    Resume { run_dir: String, why: String },
    #[error("{0}")]
    Other(String),
}

/// How to run, beyond the pipeline itself.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue this run directory from its last checkpoint.
    pub resume: Option<PathBuf>,
    /// With `resume`: when the run has no usable checkpoint, train it again from step 0
    /// instead of refusing (a usable checkpoint is always continued).
    pub restart: bool,
    /// No progress bar; plain log lines.
    pub quiet: bool,
    /// Also report the final metrics on the validation split (`ardpipe run --validate`).
    pub validate: bool,
    /// Stop (as if killed, without the final export) after this many steps. For tests of resume.
    pub stop_after: Option<u64>,
    /// The variant this run is, for `{variant}` in `output.dir` (the pipeline's name otherwise).
    pub variant: Option<String>,
    /// Data parallelism: this process's group (from the torchrun environment).
    pub group: Option<std::sync::Arc<ardpipe_dist::ProcessGroup>>,
    /// `--log-format json`: the run's events as JSON lines on stdout ([`follow`]).
    pub json_events: bool,
}

/// One evaluation's named scalars.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalResult {
    pub step: u64,
    pub metrics: Vec<(String, f64)>,
    /// Per entry of `evaluate.metrics`, the value early stopping watches (a plugin's first
    /// scalar unless the pipeline named one).
    #[serde(skip)]
    pub primary: Vec<Option<f64>>,
}

/// What a finished run reports to the user, and `summary.json` (what `ardpipe study` reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub stopped_early: bool,
    pub interrupted: bool,
    /// The signal (2 SIGINT, 15 SIGTERM) that interrupted the run, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    pub final_eval: Option<EvalResult>,
    /// The same metrics on the validation split at the end, when `evaluate.split` is another
    /// split and the data has a validation split: what the study selects settings on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_eval: Option<EvalResult>,
    /// A causal LM's evaluation before training (the base model's perplexity).
    pub initial_eval: Option<Vec<(String, f64)>>,
    /// Accuracy of always predicting the most frequent training label (classification only).
    pub majority_baseline: Option<f64>,
    /// Parameters export writes, head included (train/accounting.rs).
    #[serde(default)]
    pub exported_parameters: usize,
    /// The most trainable parameters allocated at any step (before ARD-LoRA's compaction,
    /// AdaLoRA at `init_r`).
    #[serde(default)]
    pub peak_parameters: usize,
    /// Bytes of trainable tensors, gradients and optimiser state, at peak and at the end.
    #[serde(default)]
    pub adaptation_memory: AdaptationMemory,
    pub base_parameters: usize,
    pub mean_effective_rank: Option<f64>,
    /// Sample standard deviation of the effective ranks across ARD units (how unequal the
    /// learned allocation is).
    #[serde(default)]
    pub rank_spread: Option<f64>,
    /// Per ARD module kind: layer × head effective ranks.
    pub rank_map: Vec<RankRow>,
    pub wall_seconds: f64,
    /// Seconds inside the training loop (all processes of a run, resumes included): steps per
    /// second is `steps / train_seconds`.
    #[serde(default)]
    pub train_seconds: f64,
    /// Of those, seconds rank 0 spent averaging gradients over processes (this process's run
    /// only, not before a resume; 0 for a single process).
    #[serde(default)]
    pub communication_seconds: f64,
    pub tokens_per_second: f64,
    /// This process's peak resident memory (VmHWM) when the run ended.
    pub peak_rss_mb: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankRow {
    pub module: String,
    pub layer: Option<usize>,
    pub ranks: Vec<usize>,
}

/// Everything the loop needs, built by [`setup::prepare`].
pub struct Trainer {
    /// What this run executes; the trainer reads no pipeline.
    pub plan: crate::plan::ExecutionPlan,
    pub model: TaskModel,
    pub data: batches::Batches,
    /// The validation split when the run also reports it (`--validate`).
    pub validation: Option<batches::Batches>,
    pub main_opt: Box<dyn Optimizer>,
    pub alpha_opt: Option<Box<dyn Optimizer>>,
    pub ard: Vec<ArdBlock>,
    pub adalora: Vec<AdaBlock>,
    pub schedules: setup::Schedules,
    pub total_steps: u64,
    pub steps_per_epoch: u64,
    pub run_dir: RunDir,
    pub state: state::LoopState,
    pub device: tch::Device,
    pub autocast: Option<ardpipe_models::StorageDtype>,
    pub base_parameters: usize,
    pub eval_every: Option<u64>,
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub quiet: bool,
    /// Data parallelism over several processes (None: this process trains alone).
    pub parallel: Option<parallel::DataParallel>,
    /// Seconds this process spent in the per-step gradient and loss all-reduces.
    pub comm_seconds: f64,
}

/// One ARD-LoRA adapter block: its linears, regulariser and schedules.
pub struct ArdBlock {
    pub name: String,
    pub paths: Vec<String>,
    pub regulariser: ArdRegulariser,
    pub lambda: crate::schedule::ResolvedSchedule,
    pub beta: crate::schedule::ResolvedSchedule,
    pub gamma: crate::schedule::ResolvedSchedule,
    pub compaction_every: u64,
    /// Whether λ·R(α) is a proximal step after α's update or a term of the loss.
    pub update: ardpipe_adapters::AlphaUpdate,
}

/// One AdaLoRA adapter block and its rank allocator.
pub struct AdaBlock {
    pub name: String,
    pub paths: Vec<String>,
    pub allocator: ardpipe_adapters::adalora::RankAllocator,
    pub orth_reg: f64,
}

impl Trainer {
    fn ard_adapters<'a>(
        model: &'a TaskModel,
        paths: &[String],
    ) -> Vec<&'a ardpipe_adapters::ard::ArdLora> {
        model
            .linears()
            .into_iter()
            .filter(|l| paths.contains(&l.path))
            .filter_map(|l| l.adapter.as_ref().and_then(|a| a.as_ard()))
            .collect()
    }

    /// Mean effective rank over every ARD unit (None without ARD-LoRA).
    pub fn mean_effective_rank(&self) -> Option<f64> {
        let ranks: Vec<usize> = self
            .model
            .linears()
            .into_iter()
            .filter_map(|l| l.adapter.as_ref().and_then(|a| a.as_ard()))
            .flat_map(|a| a.effective_ranks())
            .collect();
        (!ranks.is_empty()).then(|| ranks.iter().sum::<usize>() as f64 / ranks.len() as f64)
    }

    /// Regularisation terms of this step: (those added to the task loss, those that act as a
    /// proximal step instead and are only logged).
    fn regularisers(&self, step: u64) -> Result<(Option<Tensor>, Option<Tensor>), TrainError> {
        let add = |sum: Option<Tensor>, r: Tensor| {
            Some(match sum {
                None => r,
                Some(t) => t + r,
            })
        };
        let (mut total, mut logged): (Option<Tensor>, Option<Tensor>) = (None, None);
        for block in &self.ard {
            let adapters = Self::ard_adapters(&self.model, &block.paths);
            let terms = block.regulariser.terms(&adapters)?;
            let (lambda, beta, gamma) = (
                block.lambda.value_at(step),
                block.beta.value_at(step),
                block.gamma.value_at(step),
            );
            let r = terms.total(beta, gamma) * lambda;
            match block.update {
                ardpipe_adapters::AlphaUpdate::Penalty => total = add(total, r),
                ardpipe_adapters::AlphaUpdate::Proximal => logged = add(logged, r.detach()),
            }
        }
        for block in &self.adalora {
            let adapters: Vec<&ardpipe_adapters::adalora::AdaLora> = self
                .model
                .linears()
                .into_iter()
                .filter(|l| block.paths.contains(&l.path))
                .filter_map(|l| l.adapter.as_ref().and_then(|a| a.as_adalora()))
                .collect();
            if let Some(orth) = orth_regulariser(&adapters, block.orth_reg) {
                total = add(total, orth);
            }
        }
        Ok((total, logged))
    }

    /// `alpha { update = proximal }`: after α's optimiser step, λ·R(α) as a proximal step of
    /// size lr_α(t)·λ(t) (ArdRegulariser::proximal_shifts), then α back inside its bounds.
    fn proximal_alpha_step(&mut self, step: u64, alpha_lr: f64) -> Result<(), TrainError> {
        for block in &self.ard {
            if block.update != ardpipe_adapters::AlphaUpdate::Proximal {
                continue;
            }
            let eta = alpha_lr * block.lambda.value_at(step);
            if eta == 0.0 {
                continue;
            }
            let shifts = {
                let adapters = Self::ard_adapters(&self.model, &block.paths);
                block.regulariser.proximal_shifts(
                    &adapters,
                    eta,
                    block.beta.value_at(step),
                    block.gamma.value_at(step),
                )?
            };
            // The same modules in the same order as ard_adapters.
            let mut shifts = shifts.iter();
            for lin in self.model.linears_mut() {
                if !block.paths.contains(&lin.path) {
                    continue;
                }
                if let Some(a) = lin.adapter.as_mut().and_then(|a| a.as_ard_mut()) {
                    let shift = shifts.next().ok_or_else(|| {
                        TrainError::Other("ARD-LoRA: more adapters than α shifts".into())
                    })?;
                    a.shift_alpha(shift);
                }
            }
        }
        Ok(())
    }

    /// One optimiser step over `grad_accum` micro-batches. Returns (task loss, regulariser, tokens).
    fn step(&mut self) -> Result<(f64, f64, i64), TrainError> {
        let step = self.state.step;
        let accum = self.plan.settings.train.grad_accum.max(1) as u64;
        self.main_opt.zero_grad();
        if let Some(o) = self.alpha_opt.as_mut() {
            o.zero_grad();
        }
        // Dropout and any other torch randomness: one seed per step, so a resumed run
        // draws exactly what the uninterrupted run drew.
        let (rank, world) = self.rank_and_world();
        crate::rng::seed_torch_for_step(self.plan.settings.train.seed, rank, world, step);
        let mut task_sum = Tensor::zeros([], (Kind::Float, self.device));
        let mut tokens = 0;
        let world = world as f64;
        for _ in 0..accum {
            let batch = self.data.next_train(&mut self.state.data, self.device)?;
            tokens += batch.tokens;
            let loss = {
                let _ac = ardpipe_models::precision::autocast(self.device, self.autocast);
                self.model.train_loss(&batch)?
            };
            if batch.share == 1.0 && world == 1.0 {
                self.scaled(&loss / accum as f64).backward();
                task_sum += loss.detach();
            } else {
                // Averaged over processes below: weight by this process's share of the batch.
                self.scaled(&loss * (batch.share * world / accum as f64))
                    .backward();
                task_sum += loss.detach() * batch.share;
            }
        }
        let (reg, reg_logged) = self.regularisers(step)?;
        let mut reg_value = match reg {
            Some(r) => {
                self.scaled(r.shallow_clone()).backward();
                r.detach()
            }
            None => Tensor::zeros([], (Kind::Float, self.device)),
        };
        if let Some(r) = reg_logged {
            reg_value += r.to_kind(reg_value.kind());
        }
        if self.parallel.is_some() {
            let t = Instant::now();
            self.average_gradients()?;
            // The global batch's loss and tokens, for the log and the finiteness check (which
            // every process then takes alike).
            let local = Tensor::stack(
                &[
                    task_sum.to_kind(Kind::Double),
                    Tensor::from(tokens as f64).to_device(self.device),
                ],
                0,
            );
            let global = self.sum_over_processes(local)?;
            task_sum = global.get(0).to_kind(Kind::Float);
            tokens = global.get(1).double_value(&[]).round() as i64;
            self.comm_seconds += t.elapsed().as_secs_f64();
        }
        // One host sync per step: the loss and regulariser values, checked for finiteness.
        let both = Tensor::stack(
            &[task_sum / accum as f64, reg_value.to_kind(Kind::Float)],
            0,
        );
        let host = Vec::<f64>::try_from(both.to_kind(Kind::Double).to_device(tch::Device::Cpu))?;
        let (task, reg) = (host[0], host[1]);
        for (term, v) in [("task loss", task), ("regulariser λ·R(α)", reg)] {
            if !v.is_finite() {
                return Err(self.non_finite(step, term, v));
            }
        }
        if !self.unscale_gradients() {
            // f16: a gradient overflowed at this loss scale; the scale is halved, nothing moves.
            return Ok((task, reg, tokens));
        }
        if let Some(max) = self.plan.settings.train.clip {
            let norm = self.main_opt.clip_grad_norm(max);
            if !norm.is_finite() {
                return Err(self.non_finite(step, "gradient norm", norm));
            }
        }
        let names: Vec<String> = self
            .main_opt
            .groups()
            .iter()
            .map(|g| g.name.clone())
            .collect();
        for n in names {
            let schedule = if n == setup::HEAD_GROUP {
                &self.schedules.head_lr
            } else {
                &self.schedules.lr
            };
            self.main_opt.set_lr(&n, schedule.value_at(step))?;
        }
        self.main_opt.step();
        if let (Some(o), Some(s)) = (self.alpha_opt.as_mut(), self.schedules.alpha_lr.as_ref()) {
            let lr = s.value_at(step);
            let names: Vec<String> = o.groups().iter().map(|g| g.name.clone()).collect();
            for n in names {
                o.set_lr(&n, lr)?;
            }
            o.step();
            self.proximal_alpha_step(step, lr)?;
        }
        self.after_step(step + 1)?;
        Ok((task, reg, tokens))
    }

    /// α projection, EMA, AdaLoRA allocation and ARD compaction, after the update of `step_done`.
    fn after_step(&mut self, step_done: u64) -> Result<(), TrainError> {
        for lin in self.model.linears_mut() {
            if let Some(a) = lin.adapter.as_mut().and_then(|a| a.as_ard_mut()) {
                a.project_alpha();
            }
        }
        for i in 0..self.ard.len() {
            let paths = self.ard[i].paths.clone();
            {
                let adapters = Self::ard_adapters(&self.model, &paths);
                self.ard[i].regulariser.update_ema(&adapters)?;
            }
            let every = self.ard[i].compaction_every;
            if every > 0 && step_done.is_multiple_of(every) && step_done < self.total_steps {
                // Every process must cut the same ranks: decide on rank 0's α.
                self.sync_parameters(Some(&paths))?;
                let linears: Vec<_> = self
                    .model
                    .linears_mut()
                    .into_iter()
                    .filter(|l| paths.contains(&l.path))
                    .collect();
                let report =
                    ardpipe_adapters::ard::compact_linears(linears, self.main_opt.as_mut())?;
                if report.modules_resized > 0 {
                    tracing::info!(
                        "step {step_done}: compaction resized {} modules of `{}`, adapter parameters {} → {}",
                        report.modules_resized,
                        self.ard[i].name,
                        report.params_before,
                        report.params_after
                    );
                }
            }
        }
        if self.parallel.is_some() {
            for i in 0..self.adalora.len() {
                let paths = self.adalora[i].paths.clone();
                self.sync_parameters(Some(&paths))?;
            }
        }
        for block in &mut self.adalora {
            let mut adapters = self.model.adalora_adapters(&block.paths);
            block
                .allocator
                .update_and_allocate(&mut adapters, step_done as usize)?;
        }
        Ok(())
    }

    fn non_finite(&self, step: u64, term: &str, value: f64) -> TrainError {
        TrainError::NonFinite {
            step,
            term: term.into(),
            value,
            checkpoint: state::latest_checkpoint_name(&self.run_dir)
                .unwrap_or_else(|| "none yet".into()),
            run_dir: self.run_dir.root().display().to_string(),
        }
    }
}

/// Run a pipeline (one variant) end to end: compile it, then execute the plan.
pub fn run(pipeline: &p::Pipeline, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    let mut compiled = planning::compile(pipeline)?;
    if opts.validate {
        compiled.validation = planning::validation_data(pipeline)?;
    }
    execute(compiled, opts)
}

/// Execute a compiled plan.
pub fn execute(compiled: planning::Compiled, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    let t0 = Instant::now();
    let mut trainer = setup::prepare(compiled, opts)?;
    let summary = match trainer.train_loop(opts) {
        Ok(s) => s,
        Err(e) => {
            // Best effort: the error being reported matters more than the manifest write.
            let _ = trainer.update_manifest(|m| m.finish(crate::manifest::RunStatus::Failed));
            return Err(e);
        }
    };
    if summary.interrupted {
        trainer.update_manifest(|m| m.finish(crate::manifest::RunStatus::Interrupted))?;
    } else if trainer.writes() {
        let status = if summary.stopped_early {
            crate::manifest::RunStatus::Stopped
        } else {
            crate::manifest::RunStatus::Completed
        };
        trainer.update_manifest(|m| m.finish(status))?;
    }
    let summary = RunSummary {
        wall_seconds: t0.elapsed().as_secs_f64(),
        peak_rss_mb: ardpipe_models::runtime::peak_rss_mb(),
        ..summary
    };
    if !summary.interrupted && trainer.writes() {
        // What scripts and `ardpipe study` read: the run's outcome in one file.
        crate::rundir::write_json_atomic(&summary.run_dir.join(crate::rundir::SUMMARY), &summary)?;
    }
    Ok(summary)
}
