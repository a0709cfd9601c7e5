//! Build a [`Trainer`] from a pipeline: data, model, adapters, optimisers, regularisers and the
//! run directory (new, or an existing one to resume).

use std::path::Path;

use ardpipe_adapters::adalora::{AdaLora, RankAllocator};
use ardpipe_adapters::ard::ArdLora;
use ardpipe_adapters::ard::ArdRegulariser;
use ardpipe_adapters::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig};
use ardpipe_adapters::{MethodConfig, ParamRole};
use ardpipe_dsl::pipeline as p;
use ardpipe_models::arch::EncoderHead;
use ardpipe_models::{LoadOptions, Precision, StorageDtype};

use super::batches::Batches;
use super::parallel::DataParallel;
use super::state::LoopState;
use super::task::TaskModel;
use super::{AdaBlock, ArdBlock, RunOptions, TrainError, Trainer};
use crate::convert;
use crate::plan;
use crate::rundir::RunDir;
use crate::schedule::ResolvedSchedule;

/// The schedules the loop evaluates each step.
pub struct Schedules {
    pub lr: ResolvedSchedule,
    pub alpha_lr: Option<ResolvedSchedule>,
}

/// A trainer plus what `ardpipe run` prints before training starts.
pub type Prepared = Trainer;

pub fn device(d: &p::Device) -> Result<tch::Device, TrainError> {
    Ok(match d {
        p::Device::Cpu => tch::Device::Cpu,
        p::Device::Auto => {
            if ardpipe_models::runtime::enable_cuda().is_ok() {
                tch::Device::Cuda(0)
            } else {
                tch::Device::Cpu
            }
        }
        p::Device::Cuda { index } => {
            ardpipe_models::runtime::enable_cuda()
                .map_err(|why| TrainError::Other(format!("device = cuda: {why}")))?;
            tch::Device::Cuda(*index as usize)
        }
    })
}

pub fn precision(model: &p::Model, train: &p::Train) -> Precision {
    let storage = match model.dtype {
        p::DType::F32 => StorageDtype::F32,
        p::DType::Bf16 => StorageDtype::Bf16,
        p::DType::F16 => StorageDtype::F16,
    };
    let autocast = match train.precision {
        p::Precision::F32 => None,
        p::Precision::Bf16 => Some(StorageDtype::Bf16),
        p::Precision::F16 => Some(StorageDtype::F16),
    };
    Precision { storage, autocast }
}

fn optimizer(name: &str, o: &p::Optimizer, groups: Vec<ParamGroup>) -> Box<dyn Optimizer> {
    match *o {
        p::Optimizer::AdamW {
            beta1, beta2, eps, ..
        }
        | p::Optimizer::Adam { beta1, beta2, eps } => {
            Box::new(AdamW::new(name, AdamWConfig { beta1, beta2, eps }, groups))
        }
        p::Optimizer::Sgd { momentum, .. } => Box::new(Sgd::new(
            name,
            SgdConfig {
                momentum,
                ..SgdConfig::default()
            },
            groups,
        )),
    }
}

fn weight_decay(o: &p::Optimizer) -> f64 {
    match *o {
        p::Optimizer::AdamW { weight_decay, .. } | p::Optimizer::Sgd { weight_decay, .. } => {
            weight_decay
        }
        p::Optimizer::Adam { .. } => 0.0,
    }
}

/// Load the model with the pipeline's head; `num_labels` for classification.
fn load_model(
    pipeline: &p::Pipeline,
    num_labels: usize,
    dev: tch::Device,
) -> Result<TaskModel, TrainError> {
    let opts = LoadOptions {
        device: dev,
        precision: precision(&pipeline.model, &pipeline.train),
    };
    let path = &pipeline.model.path;
    Ok(match &pipeline.model.head {
        p::Head::CausalLm => {
            TaskModel::CausalLm(Box::new(ardpipe_models::load_causal_lm(path, &opts)?.model))
        }
        p::Head::SequenceClassification { .. } => {
            let head = EncoderHead::Classification {
                num_labels,
                seed: pipeline.train.seed,
            };
            TaskModel::Classifier(Box::new(
                ardpipe_models::load_encoder(path, head, &opts)?.model,
            ))
        }
        p::Head::Embedding { .. } => {
            return Err(TrainError::Other(
                "training an embedding head needs a contrastive objective, which this version does not have: \
                 use head = sequence_classification or causal_lm"
                    .into(),
            ));
        }
    })
}

/// Attach every adapter block; returns (block name, method, matched paths).
fn attach_adapters(
    pipeline: &p::Pipeline,
    model: &mut TaskModel,
    total: u64,
    per_epoch: u64,
) -> Result<Vec<(String, MethodConfig, Vec<String>)>, TrainError> {
    let desc = ardpipe_models::describe(&pipeline.model.path)?;
    let modules = plan::model_modules(&desc, &pipeline.model.head);
    let mut blocks = Vec::new();
    for a in &pipeline.adapters {
        let (selected, _) = plan::resolve_targets(a, &modules)?;
        let method = convert::method_config_with_epochs(&a.method, total, per_epoch);
        let paths: Vec<String> = selected.iter().map(|m| m.path.clone()).collect();
        let mut attached = 0;
        for lin in model.linears_mut() {
            if paths.contains(&lin.path) {
                ardpipe_adapters::attach(lin, &method)?;
                attached += 1;
            }
        }
        if attached != paths.len() {
            return Err(TrainError::Other(format!(
                "adapter `{}`: planned {} modules but the loaded model has {attached} of them",
                a.name,
                paths.len()
            )));
        }
        blocks.push((a.name.clone(), method, paths));
    }
    Ok(blocks)
}

pub fn prepare(pipeline: &p::Pipeline, opts: &RunOptions) -> Result<Trainer, TrainError> {
    let parallel = opts
        .group
        .clone()
        .map(|g| DataParallel::new(g, pipeline.distributed.bucket_mb));
    let root = parallel.as_ref().is_none_or(|d| d.group.is_root());
    if let Some(dp) = &parallel {
        // Before anything is written: a batch that does not split fails every process alike.
        super::batches::check_batch_splits(pipeline.train.batch_size as usize, dp.world())?;
    }
    let mut dev = device(&pipeline.model.device)?;
    if let (Some(dp), tch::Device::Cuda(_)) = (&parallel, dev) {
        // One GPU per process on a machine: the launcher's LOCAL_RANK picks it.
        dev = tch::Device::Cuda(dp.group.local_rank());
    }
    let (run_dir, resume_state) = match (&opts.resume, &parallel) {
        (Some(dir), _) => open_for_resume(dir, pipeline, root)?,
        (None, None) => (create_run_dir(pipeline, opts.variant.as_deref())?, None),
        (None, Some(dp)) => {
            // Rank 0 creates the run directory; the others learn where it is and write nothing.
            let created = if root {
                Some(create_run_dir(pipeline, opts.variant.as_deref())?)
            } else {
                None
            };
            let path = super::parallel::share_path(&dp.group, created.as_ref().map(|d| d.root()))?;
            (
                created.unwrap_or_else(|| RunDir::of_another_rank(&path)),
                None,
            )
        }
    };

    tracing::info!("loading data");
    let mut data = Batches::build(pipeline)?;
    if let Some(dp) = &parallel {
        data.set_shard(dp.rank(), dp.world())?;
    }
    if !data.labels().is_empty() && root {
        // Saved with the run so a fine-tuned classifier's outputs can be named later.
        crate::rundir::write_json_atomic(&run_dir.path("labels.json"), data.labels())?;
    }
    let steps_per_epoch =
        data.steps_per_epoch(pipeline.train.batch_size, pipeline.train.grad_accum);
    let total_steps = plan::total_steps(pipeline, steps_per_epoch)?;
    // The plan's checks (schedules inside training, targets that match) run before any weight loads.
    let _plan = plan::plan(pipeline, steps_per_epoch)?;

    tracing::info!("loading {}", pipeline.model.path.display());
    tch::manual_seed(pipeline.train.seed as i64);
    let mut model = load_model(pipeline, data.num_labels(), dev)?;
    let blocks = attach_adapters(pipeline, &mut model, total_steps, steps_per_epoch)?;

    // Optimiser groups: adapter weights and the task head with weight decay, α on its own.
    let mut weights = model.head_parameters();
    let mut alphas = Vec::new();
    for lin in model.linears() {
        for (name, t, role) in lin.trainable() {
            match role {
                ParamRole::Weight => weights.push((name, t)),
                ParamRole::Alpha => alphas.push((name, t)),
            }
        }
    }
    let trainable: usize = weights.iter().chain(&alphas).map(|(_, t)| t.numel()).sum();
    let lr0 = convert::resolve_schedule(&pipeline.train.lr, total_steps, steps_per_epoch)
        .map_err(|e| TrainError::Other(format!("train.lr: {e}")))?;
    let main_opt = optimizer(
        "main",
        &pipeline.train.optimizer,
        vec![ParamGroup::new(
            "weights",
            lr0.value_at(0),
            weight_decay(&pipeline.train.optimizer),
            weights,
        )],
    );
    let (alpha_opt, alpha_lr) = if alphas.is_empty() {
        (None, None)
    } else {
        let s = convert::resolve_schedule(&pipeline.train.alpha_lr, total_steps, steps_per_epoch)
            .map_err(|e| TrainError::Other(format!("train.alpha_lr: {e}")))?;
        // No weight decay on α: the ℓ1 term is its only pull towards zero.
        let o = optimizer(
            "alpha",
            &pipeline.train.alpha_optimizer,
            vec![ParamGroup::new("alpha", s.value_at(0), 0.0, alphas)],
        );
        (Some(o), Some(s))
    };

    let mut ard = Vec::new();
    let mut adalora = Vec::new();
    for ((name, method, paths), spec) in blocks.into_iter().zip(&pipeline.adapters) {
        match (&method, &spec.method) {
            (MethodConfig::ArdLora(cfg), p::Method::ArdLora(dsl)) => {
                let adapters: Vec<&ArdLora> = model
                    .linears()
                    .into_iter()
                    .filter(|l| paths.contains(&l.path))
                    .filter_map(|l| l.adapter.as_ref().and_then(|a| a.as_ard()))
                    .collect();
                let regulariser = ArdRegulariser::new(&adapters, cfg)?;
                let sched = |what: &str, s: &p::Schedule| {
                    convert::resolve_schedule(s, total_steps, steps_per_epoch)
                        .map_err(|e| TrainError::Other(format!("adapter `{name}` {what}: {e}")))
                };
                ard.push(ArdBlock {
                    lambda: sched("lambda", &dsl.regularizer.lambda)?,
                    beta: sched("beta", &dsl.regularizer.beta)?,
                    gamma: sched("gamma", &dsl.regularizer.gamma)?,
                    compaction_every: cfg.compaction_interval as u64,
                    name,
                    paths,
                    regulariser,
                });
            }
            (MethodConfig::Adalora(cfg), _) => {
                let adapters: Vec<&AdaLora> = model
                    .linears()
                    .into_iter()
                    .filter(|l| paths.contains(&l.path))
                    .filter_map(|l| l.adapter.as_ref().and_then(|a| a.as_adalora()))
                    .collect();
                let allocator = RankAllocator::new(cfg, &adapters, total_steps as usize)?;
                adalora.push(AdaBlock {
                    name,
                    paths,
                    allocator,
                    orth_reg: cfg.orth_reg_weight,
                });
            }
            _ => {}
        }
    }

    let t = &pipeline.train;
    let pos = |x: &p::Position| convert::position_steps(x, total_steps, steps_per_epoch).max(1);
    let mut trainer = Trainer {
        base_parameters: ardpipe_models::describe(&pipeline.model.path)?.parameters,
        eval_every: t.eval_every.as_ref().map(pos),
        checkpoint_every: t
            .checkpoint_every
            .as_ref()
            .map(pos)
            .unwrap_or(total_steps.max(1)),
        log_every: pos(&t.log_every),
        pipeline: pipeline.clone(),
        model,
        data,
        main_opt,
        alpha_opt,
        ard,
        adalora,
        schedules: Schedules { lr: lr0, alpha_lr },
        total_steps,
        steps_per_epoch,
        run_dir,
        state: LoopState::new(trainable),
        device: dev,
        autocast: precision(&pipeline.model, &pipeline.train).autocast,
        // One progress display: rank 0's.
        quiet: opts.quiet || !root,
        parallel,
        comm_seconds: 0.0,
    };
    trainer.state.world_size = trainer.rank_and_world().1;
    if let Some(ckpt) = resume_state {
        trainer.restore(ckpt)?;
        trainer.sync_parameters(None)?;
        let value = serde_json::to_value(pipeline).map_err(|e| TrainError::Other(e.to_string()))?;
        let step = trainer.state.step;
        let processes = trainer.processes();
        trainer.update_manifest(|m| m.record_resume(step, &value, processes))?;
    } else {
        trainer.sync_parameters(None)?;
        trainer.write_start_files()?;
    }
    Ok(trainer)
}

impl Trainer {
    /// The resolved pipeline and the manifest, written when a run starts.
    pub fn write_start_files(&self) -> Result<(), TrainError> {
        if !self.writes() {
            return Ok(());
        }
        let value =
            serde_json::to_value(&self.pipeline).map_err(|e| TrainError::Other(e.to_string()))?;
        self.run_dir.write_resolved_pipeline(&value)?;
        let datasets: Vec<(String, std::path::PathBuf)> = self
            .pipeline
            .datasets
            .iter()
            .filter_map(|d| match &d.source {
                p::Source::Jsonl { path }
                | p::Source::Csv { path, .. }
                | p::Source::Text { path, .. }
                | p::Source::Folders { path } => Some((d.name.clone(), path.clone())),
                // A loader plugin's `path` is its data too (the plugin's own bytes are hashed below).
                p::Source::Plugin { path, .. } => path.clone().map(|p| (d.name.clone(), p)),
            })
            .filter(|(_, path)| path.exists())
            .collect();
        let plugins: Vec<(String, std::path::PathBuf)> = self
            .pipeline
            .plugins
            .iter()
            .map(|pl| (pl.name.clone(), pl.library.clone()))
            .collect();
        let mut seeds = std::collections::BTreeMap::new();
        seeds.insert("pipeline".to_string(), self.pipeline.seed);
        seeds.insert("train".to_string(), self.pipeline.train.seed);
        let manifest = crate::manifest::Manifest::collect(&crate::manifest::ManifestInputs {
            run_name: &self.pipeline.name,
            pipeline: &value,
            pipeline_file: Some(&self.pipeline.file),
            datasets: &datasets,
            plugins: &plugins,
            device: &format!("{:?}", self.device).to_lowercase(),
            seeds,
            processes: self.processes(),
        })?;
        manifest.write(&self.run_dir.manifest_path())?;
        Ok(())
    }

    /// Mark the manifest finished (or record a resumption).
    pub fn update_manifest(
        &self,
        f: impl FnOnce(&mut crate::manifest::Manifest),
    ) -> Result<(), TrainError> {
        if !self.writes() {
            return Ok(());
        }
        let path = self.run_dir.manifest_path();
        let mut m = crate::manifest::Manifest::read(&path)?;
        f(&mut m);
        m.write(&path)?;
        Ok(())
    }
}

fn create_run_dir(pipeline: &p::Pipeline, variant: Option<&str>) -> Result<RunDir, TrainError> {
    let now = time::OffsetDateTime::now_utc();
    // The template is absolute (the checker resolved it against the pipeline file).
    let seed = pipeline.train.seed.to_string();
    let vars = [
        ("name", pipeline.name.as_str()),
        ("variant", variant.unwrap_or(pipeline.name.as_str())),
        ("seed", seed.as_str()),
    ];
    Ok(RunDir::create_from_template(
        Path::new(""),
        &pipeline.output.dir,
        &vars,
        now,
    )?)
}

/// Open a run to resume: its pipeline must be compatible with the one given now. Only the
/// process that writes the run (`owner`) locks it; the other ranks of a data-parallel run
/// read its checkpoint (the directory must be on a filesystem they all see).
fn open_for_resume(
    dir: &Path,
    pipeline: &p::Pipeline,
    owner: bool,
) -> Result<(RunDir, Option<crate::checkpoint::Checkpoint>), TrainError> {
    let run_dir = if owner {
        RunDir::open(dir)?
    } else {
        RunDir::open_unlocked(dir)?
    };
    let before = run_dir.read_resolved_pipeline()?;
    let now = serde_json::to_value(pipeline).map_err(|e| TrainError::Other(e.to_string()))?;
    let check = crate::manifest::check_resume(&before, &now);
    if !check.is_compatible() {
        let show = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "(absent)".into())
        };
        let lines: Vec<String> = check
            .refused()
            .map(|d| {
                format!(
                    "  - {}: was {}, now {} ({})",
                    d.path,
                    show(&d.old),
                    show(&d.new),
                    d.reason
                )
            })
            .collect();
        return Err(TrainError::Resume {
            run_dir: dir.display().to_string(),
            why: format!(
                "the pipeline changed in ways that would make the result differ from an uninterrupted run:\n{}\n  \
                 fix: restore those values, or start a new run",
                lines.join("\n")
            ),
        });
    }
    let ckpt = crate::checkpoint::load_latest(dir)
        .map_err(|e| TrainError::Other(format!("checkpoint: {e}")))?;
    Ok((run_dir, ckpt))
}
