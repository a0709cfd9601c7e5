//! The loop's own state, and checkpoints of all of a run's state through [`crate::checkpoint`]:
//! trainable parameters, optimiser moments, regulariser and allocator state as tensors; step,
//! data position, early stopping, ARD capacities and AdaLoRA budgets in the sidecar.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{TrainError, Trainer};
use crate::checkpoint::{self, Checkpoints, DataPosition, TrainingState};
use crate::rundir::RunDir;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoopState {
    /// Optimiser steps taken.
    pub step: u64,
    pub data: DataPosition,
    pub tokens_seen: u64,
    pub best_metric: Option<f64>,
    pub evals_without_improvement: u32,
    pub stopped_early: bool,
    pub trainable_parameters: usize,
    /// The most trainable parameters allocated after any step (train/accounting.rs).
    #[serde(default)]
    pub peak_parameters: usize,
    /// The most adaptation bytes held after any step (train/accounting.rs).
    #[serde(default)]
    pub peak_adaptation_bytes: u64,
    /// Seconds spent training before this process (for throughput across resumes).
    pub train_seconds: f64,
    /// A causal LM's evaluation before the first step (what the base model scores).
    #[serde(default)]
    pub initial_eval: Option<Vec<(String, f64)>>,
    /// Processes that trained together (data parallelism); 0 in checkpoints from before it.
    #[serde(default)]
    pub world_size: usize,
    /// `precision = f16`: the dynamic loss scale and its counters (train/loss_scale.rs).
    #[serde(default)]
    pub loss_scale: Option<ardpipe_adapters::optim::LossScaler>,
}

impl LoopState {
    pub fn new(trainable: usize) -> Self {
        Self {
            trainable_parameters: trainable,
            ..Self::default()
        }
    }
}

/// What the trainer keeps in the checkpoint sidecar's `extra` besides [`TrainingState`].
#[derive(Debug, Serialize, Deserialize)]
struct TrainerExtra {
    state: LoopState,
    /// ARD modules' per-unit capacities (they shrink with compaction).
    ard_capacities: Vec<(String, Vec<usize>)>,
    adalora_allocators: Vec<(String, ardpipe_adapters::adalora::RankAllocatorState)>,
}

const KEEP_CHECKPOINTS: usize = 2;

pub fn latest_checkpoint_name(run: &RunDir) -> Option<String> {
    let name = std::fs::read_to_string(run.checkpoints_dir().join(checkpoint::LATEST)).ok()?;
    Some(
        run.checkpoints_dir()
            .join(name.trim())
            .display()
            .to_string(),
    )
}

fn ckpt_err(e: checkpoint::CheckpointError) -> TrainError {
    TrainError::Other(format!("checkpoint: {e}"))
}

impl Trainer {
    /// Every tensor a checkpoint holds, by name.
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = Vec::new();
        for (n, t) in self.model.head_parameters() {
            v.push((format!("param/{n}"), t));
        }
        for lin in self.model.linears() {
            for (n, t, _) in lin.trainable() {
                v.push((format!("param/{n}"), t));
            }
        }
        for (n, t) in self.main_opt.state_tensors() {
            v.push((format!("optim/{n}"), t));
        }
        if let Some(o) = &self.alpha_opt {
            for (n, t) in o.state_tensors() {
                v.push((format!("optim/{n}"), t));
            }
        }
        for b in &self.ard {
            for (n, t) in b.regulariser.state_tensors() {
                v.push((format!("ard/{}/{n}", b.name), t));
            }
        }
        for b in &self.adalora {
            for (n, t) in b.allocator.state_tensors() {
                v.push((format!("adalora/{}/{n}", b.name), t));
            }
        }
        v.into_iter()
            .map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu).contiguous()))
            .collect()
    }

    /// Write a checkpoint of the current state atomically and point `latest` at it.
    pub fn save_checkpoint(&self) -> Result<Option<PathBuf>, TrainError> {
        if !self.writes() {
            return Ok(None);
        }
        let extra = TrainerExtra {
            state: self.state.clone(),
            ard_capacities: self
                .model
                .linears()
                .into_iter()
                .filter_map(|l| {
                    l.adapter
                        .as_ref()
                        .and_then(|a| a.as_ard())
                        .map(|a| (l.path.clone(), a.capacities().to_vec()))
                })
                .collect(),
            adalora_allocators: self
                .adalora
                .iter()
                .map(|b| (b.name.clone(), b.allocator.state().clone()))
                .collect(),
        };
        let mut ts = TrainingState::new(self.plan.settings.train.seed);
        ts.step = self.state.step;
        ts.data = self.state.data.clone();
        ts.label_vocab = Some(self.data.labels().to_vec()).filter(|l| !l.is_empty());
        ts.extra.insert(
            "trainer".into(),
            serde_json::to_value(&extra).map_err(|e| TrainError::Other(e.to_string()))?,
        );
        let tensors = self.state_tensors();
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        // The logs leading up to this checkpoint are on disk before it is.
        self.run_dir.sync_logs()?;
        let store = Checkpoints::new(&self.run_dir.checkpoints_dir(), KEEP_CHECKPOINTS)
            .map_err(ckpt_err)?;
        store.save(&ts, &refs).map_err(ckpt_err).map(Some)
    }

    /// Load a checkpoint into a freshly prepared trainer.
    pub fn restore(&mut self, loaded: checkpoint::Checkpoint) -> Result<(), TrainError> {
        let ckpt = loaded.path.clone();
        let meta: TrainerExtra = loaded
            .state
            .extra
            .get("trainer")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| TrainError::Resume {
                run_dir: self.run_dir.root().display().to_string(),
                why: format!(
                    "checkpoint {} was not written by this trainer (no trainer state)",
                    ckpt.display()
                ),
            })?;
        let tensors = loaded.tensors;
        let get = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        // Compaction narrowed some ARD modules: narrow the fresh ones the same way first.
        for lin in self.model.linears_mut() {
            if let Some((_, caps)) = meta.ard_capacities.iter().find(|(p, _)| p == &lin.path)
                && let Some(ard) = lin.adapter.as_mut().and_then(|a| a.as_ard_mut())
                && ard.capacities() != caps.as_slice()
            {
                let resized = ard.restore_capacities(caps);
                for r in resized {
                    self.main_opt.replace_param(
                        &format!("{}.{}", lin.path, r.name),
                        r.tensor.shallow_clone(),
                        &|s| r.apply(s),
                    )?;
                }
            }
        }
        let mut params: Vec<(String, Tensor)> = self.model.head_parameters();
        for lin in self.model.linears() {
            params.extend(lin.trainable().into_iter().map(|(n, t, _)| (n, t)));
        }
        tch::no_grad(|| -> Result<(), TrainError> {
            for (name, t) in &params {
                let src = get(&format!("param/{name}")).ok_or_else(|| TrainError::Resume {
                    run_dir: self.run_dir.root().display().to_string(),
                    why: format!("the checkpoint has no tensor for `{name}`"),
                })?;
                if src.size() != t.size() {
                    return Err(TrainError::Resume {
                        run_dir: self.run_dir.root().display().to_string(),
                        why: format!(
                            "`{name}` is {:?} in the checkpoint but {:?} now",
                            src.size(),
                            t.size()
                        ),
                    });
                }
                t.shallow_clone().copy_(src);
            }
            Ok(())
        })?;
        let strip = |prefix: &str| -> Vec<(String, Tensor)> {
            tensors
                .iter()
                .filter_map(|(n, t)| {
                    n.strip_prefix(prefix)
                        .map(|rest| (rest.to_string(), t.to_device(self.device)))
                })
                .collect()
        };
        let optim = strip("optim/");
        let main_names: Vec<(String, Tensor)> = optim
            .iter()
            .filter(|(n, _)| n.starts_with("main"))
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        self.main_opt.load_state(&main_names)?;
        if let Some(o) = self.alpha_opt.as_mut() {
            let names: Vec<(String, Tensor)> = optim
                .iter()
                .filter(|(n, _)| n.starts_with("alpha"))
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect();
            o.load_state(&names)?;
        }
        for b in &mut self.ard {
            let s = strip(&format!("ard/{}/", b.name));
            b.regulariser.load_state(&s)?;
        }
        for b in &mut self.adalora {
            let s = strip(&format!("adalora/{}/", b.name));
            if let Some((_, st)) = meta.adalora_allocators.iter().find(|(n, _)| n == &b.name) {
                b.allocator.load_state(st.clone(), &s)?;
            }
            let mut adapters = self.model.adalora_adapters(&b.paths);
            b.allocator.sync_adapters(&mut adapters);
        }
        let world_now = self.rank_and_world().1;
        let world_then = meta.state.world_size.max(1);
        self.state = meta.state;
        self.state.world_size = world_now;
        if world_then != world_now {
            // The data order and the global batch belong to the pipeline, not to the number of
            // processes: the run goes on where it stopped, only sums are added up differently.
            tracing::warn!(
                "this run trained on {world_then} process(es) and resumes on {world_now}: the global batch stays {} \
                 examples in the same seeded order, now cut into {world_now} part(s); sums are added in another order \
                 and dropout draws other masks, so the result is the same training but not bit for bit the run it would have been",
                self.plan.settings.train.batch_size
            );
        }
        // Logs may run past the checkpoint (the kill came later): cut them back to it. The end
        // of a run (final evaluation and ranks) is written again by the resumed run.
        if self.writes() {
            self.run_dir
                .truncate_logs_to_step(self.state.step, &["final"])?;
        }
        tracing::info!(
            "resumed {} at step {} of {}",
            self.run_dir.root().display(),
            self.state.step,
            self.total_steps
        );
        Ok(())
    }
}
