//! Build a [`Trainer`] from a compiled plan: model, adapters, optimisers, regularisers and the
//! run directory (new, or an existing one to resume). Nothing here reads the pipeline.

use std::path::Path;

use ardpipe_adapters::MethodConfig;
use ardpipe_adapters::adalora::{AdaLora, RankAllocator};
use ardpipe_adapters::ard::ArdLora;
use ardpipe_adapters::ard::ArdRegulariser;
use ardpipe_adapters::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig};
use ardpipe_dsl::pipeline as p;
use ardpipe_models::arch::{ArchConfig, EncoderHead};
use ardpipe_models::{LoadOptions, Precision, StorageDtype};

use super::parallel::DataParallel;
use super::planning::Compiled;
use super::state::LoopState;
use super::task::TaskModel;
use super::{AdaBlock, ArdBlock, RunOptions, TrainError, Trainer};
use crate::convert;
use crate::plan::{ExecutionPlan, RunSettings};
use crate::rundir::{self, RunDir};
use crate::schedule::ResolvedSchedule;

/// The main optimiser's group of the task head's parameters (it follows `train.head_lr`).
pub const HEAD_GROUP: &str = "head";

/// The schedules the loop evaluates each step.
pub struct Schedules {
    /// The adapter (or, for `full`, model) weights' learning rate.
    pub lr: ResolvedSchedule,
    /// The task head's.
    pub head_lr: ResolvedSchedule,
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

pub fn precision(settings: &RunSettings) -> Precision {
    let storage = match settings.base_dtype() {
        p::DType::Bf16 => StorageDtype::Bf16,
        p::DType::F16 => StorageDtype::F16,
        // `base_dtype` has resolved `auto` already.
        p::DType::F32 | p::DType::Auto => StorageDtype::F32,
    };
    let autocast = match settings.train.precision {
        p::Precision::F32 => None,
        p::Precision::Bf16 => Some(StorageDtype::Bf16),
        p::Precision::F16 => Some(StorageDtype::F16),
    };
    Precision { storage, autocast }
}

/// `train.checkpointing = layers`: the decoder's layers recompute in the backward pass.
/// (The plan refuses an encoder first, with the same words.)
fn checkpoint_layers(model: &mut TaskModel, path: &Path) -> Result<(), TrainError> {
    match model {
        TaskModel::CausalLm(m) => m.checkpointing = true,
        TaskModel::VisionLm(m) => m.decoder.checkpointing = true,
        TaskModel::DecoderClassifier(m) => m.model.checkpointing = true,
        TaskModel::Classifier(_) => {
            return Err(TrainError::Other(crate::plan::encoder_checkpointing(
                path, "bert",
            )));
        }
    }
    Ok(())
}

fn optimizer(name: &str, o: &p::Optimizer, groups: Vec<ParamGroup>) -> Box<dyn Optimizer> {
    match *o {
        p::Optimizer::AdamW {
            beta1, beta2, eps, ..
        } => Box::new(AdamW::new(
            name,
            AdamWConfig {
                beta1,
                beta2,
                eps,
                pooled: false,
            },
            groups,
        )),
        p::Optimizer::Adam {
            beta1,
            beta2,
            eps,
            pooled,
        } => Box::new(AdamW::new(
            name,
            AdamWConfig {
                beta1,
                beta2,
                eps,
                pooled,
            },
            groups,
        )),
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

/// Load the model with the plan's head; `num_labels` for classification.
pub(super) fn load_model(
    settings: &RunSettings,
    num_labels: usize,
    dev: tch::Device,
) -> Result<TaskModel, TrainError> {
    let opts = LoadOptions {
        device: dev,
        precision: precision(settings),
        quantize: convert::quant_scheme(settings.model.quantize),
    };
    let path = &settings.model.path;
    Ok(match &settings.model.head {
        p::Head::CausalLm => match ardpipe_models::describe(path)?.config {
            ArchConfig::PaliGemma(_) => {
                TaskModel::VisionLm(Box::new(ardpipe_models::load_vision_lm(path, &opts)?.model))
            }
            _ => TaskModel::CausalLm(Box::new(ardpipe_models::load_causal_lm(path, &opts)?.model)),
        },
        p::Head::SequenceClassification { .. } => {
            let seed = settings.train.seed;
            match ardpipe_models::describe(path)?.config {
                // A decoder classifies with transformers' `score` on its last non-padding token.
                ArchConfig::Llama(_) => TaskModel::DecoderClassifier(Box::new(
                    ardpipe_models::load_decoder_classifier(path, num_labels, seed, &opts)?.model,
                )),
                ArchConfig::PaliGemma(_) => {
                    return Err(TrainError::Other(format!(
                        "{} is a vision-language model: it answers in text, so use head = \
                         causal_lm with a dataset that maps `image`, `prompt` and `completion`",
                        path.display()
                    )));
                }
                ArchConfig::Bert(_) => {
                    let head = EncoderHead::Classification { num_labels, seed };
                    TaskModel::Classifier(Box::new(
                        ardpipe_models::load_encoder(path, head, &opts)?.model,
                    ))
                }
            }
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

/// Attach every adapter block to the modules the plan resolved; returns (block name, method,
/// module paths).
fn attach_adapters(
    plan: &ExecutionPlan,
    model: &mut TaskModel,
) -> Result<Vec<(String, MethodConfig, Vec<String>)>, TrainError> {
    let (total, per_epoch) = (plan.training.total_steps, plan.training.steps_per_epoch);
    let mut blocks = Vec::new();
    for (a, planned) in plan.settings.adapters.iter().zip(&plan.adapters) {
        let method = convert::method_config_with_epochs(&a.method, total, per_epoch);
        let paths: Vec<String> = planned.modules.iter().map(|m| m.path.clone()).collect();
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

pub fn prepare(compiled: Compiled, opts: &RunOptions) -> Result<Trainer, TrainError> {
    let settings = &compiled.plan.settings;
    let parallel = opts
        .group
        .clone()
        .map(|g| DataParallel::new(g, settings.distributed.bucket_mb));
    let root = parallel.as_ref().is_none_or(|d| d.group.is_root());
    if let Some(dp) = &parallel {
        // Before anything is written: a batch that does not split fails every process alike.
        super::batches::check_batch_splits(settings.train.batch_size as usize, dp.world())?;
    }
    let mut dev = device(&settings.model.device)?;
    if let (Some(dp), tch::Device::Cuda(_)) = (&parallel, dev) {
        // One GPU per process on a machine: the launcher's LOCAL_RANK picks it.
        dev = tch::Device::Cuda(dp.group.local_rank());
    }
    let processes = parallel.as_ref().map(|d| crate::manifest::Processes {
        world_size: d.world(),
        backend: d.group.backend().name().to_string(),
    });
    let (run_dir, resume_state) = match (&opts.resume, &parallel) {
        (Some(dir), None) => open_for_resume(dir, &compiled, opts.restart, dev, &processes)?,
        (Some(dir), Some(dp)) => {
            resume_together(dp, dir, &compiled, opts.restart, dev, &processes)?
        }
        (None, None) => {
            let run_dir = create_run_dir(settings, opts.variant.as_deref())?;
            write_start_files(&compiled, &run_dir, dev, &processes)?;
            (run_dir, Start::Fresh)
        }
        (None, Some(dp)) => {
            // Rank 0 creates the run directory; the others learn where it is and write nothing.
            let created = if root {
                let run_dir = create_run_dir(settings, opts.variant.as_deref())?;
                write_start_files(&compiled, &run_dir, dev, &processes)?;
                Some(run_dir)
            } else {
                None
            };
            let path = super::parallel::share_path(&dp.group, created.as_ref().map(|d| d.root()))?;
            (
                created.unwrap_or_else(|| RunDir::of_another_rank(&path)),
                Start::Fresh,
            )
        }
    };
    // From here on the run directory exists with its pipeline and manifest: a failure marks
    // the manifest `failed`, so the folder says what happened to it.
    let manifest = run_dir.manifest_path();
    let mut slot = Some(run_dir);
    let built = build(compiled, opts, parallel, dev, &mut slot, resume_state);
    if let Err(e) = &built
        && root
        && slot.is_some()
    {
        if let Err(m) = mark_failed(&manifest) {
            tracing::warn!("could not mark {} failed: {m}", manifest.display());
        }
        tracing::debug!("run failed at start: {e}");
    }
    built
}

/// How a run starts: afresh, or from a checkpoint.
pub enum Start {
    Fresh,
    /// A resumed run with no checkpoint yet (it was stopped before its first one): from step
    /// 0, with the logs of the attempt before cut back.
    Again,
    From(Box<crate::checkpoint::Checkpoint>),
}

fn mark_failed(manifest: &Path) -> Result<(), crate::rundir::RunDirError> {
    let mut m = crate::manifest::Manifest::read(manifest)?;
    m.finish(crate::manifest::RunStatus::Failed);
    m.write(manifest)
}

/// Everything after the run directory: model, adapters, optimisers, and the restore.
fn build(
    compiled: Compiled,
    opts: &RunOptions,
    parallel: Option<DataParallel>,
    dev: tch::Device,
    run_dir: &mut Option<RunDir>,
    resume_state: Start,
) -> Result<Trainer, TrainError> {
    let root = parallel.as_ref().is_none_or(|d| d.group.is_root());
    let run_dir_ref = run_dir
        .as_ref()
        .expect("the run directory is set until the trainer takes it");
    rundir::test_pause("loading", false);
    let Compiled {
        plan,
        mut data,
        pipeline: pipeline_value,
        validation,
        ..
    } = compiled;
    let settings = &plan.settings;
    if let Some(dp) = &parallel {
        data.set_shard(dp.rank(), dp.world())?;
    }
    if !data.labels().is_empty() && root {
        // Saved with the run so a fine-tuned classifier's outputs can be named later.
        crate::rundir::write_json_atomic(&run_dir_ref.path("labels.json"), data.labels())?;
    }
    let (total_steps, steps_per_epoch) = (plan.training.total_steps, plan.training.steps_per_epoch);

    tracing::info!("loading {}", settings.model.path.display());
    tch::manual_seed(settings.train.seed as i64);
    let mut model = load_model(settings, plan.data.classes.len(), dev)?;
    if settings.train.checkpointing == p::Checkpointing::Layers {
        checkpoint_layers(&mut model, &settings.model.path)?;
    }
    let blocks = attach_adapters(&plan, &mut model)?;
    ardpipe_models::runtime::release_freed_memory();

    // Optimiser groups: adapter weights and the task head (each with its learning rate, both
    // with weight decay), α on its own.
    let head = model.head_parameters();
    let (weights, alphas) = ardpipe_adapters::optim::split_by_role(model.linears());
    let trainable: usize = head
        .iter()
        .chain(&weights)
        .chain(&alphas)
        .map(|(_, t)| t.numel())
        .sum();
    let lr0 = plan.schedule("train.lr")?;
    let head_lr = plan.schedule("train.head_lr")?;
    let decay = weight_decay(&settings.train.optimizer);
    let mut groups = vec![ParamGroup::new("weights", lr0.value_at(0), decay, weights)];
    if !head.is_empty() {
        groups.push(ParamGroup::new(
            HEAD_GROUP,
            head_lr.value_at(0),
            decay,
            head,
        ));
    }
    let main_opt = optimizer("main", &settings.train.optimizer, groups);
    let (alpha_opt, alpha_lr) = if alphas.is_empty() {
        (None, None)
    } else {
        let s = plan.schedule("train.alpha_lr")?;
        // No weight decay on α: the ℓ1 term is its only pull towards zero.
        let o = optimizer(
            "alpha",
            &settings.train.alpha_optimizer,
            vec![ParamGroup::new("alpha", s.value_at(0), 0.0, alphas)],
        );
        (Some(o), Some(s))
    };

    let mut ard = Vec::new();
    let mut adalora = Vec::new();
    for (name, method, paths) in blocks {
        match &method {
            MethodConfig::ArdLora(cfg) => {
                let adapters: Vec<&ArdLora> = model
                    .linears()
                    .into_iter()
                    .filter(|l| paths.contains(&l.path))
                    .filter_map(|l| l.adapter.as_ref().and_then(|a| a.as_ard()))
                    .collect();
                let regulariser = ArdRegulariser::new(&adapters, cfg)?;
                let sched = |what: &str| plan.schedule(&format!("{name}.{what}"));
                ard.push(ArdBlock {
                    lambda: sched("lambda")?,
                    beta: sched("beta")?,
                    gamma: sched("gamma")?,
                    compaction_every: cfg.compaction_interval as u64,
                    update: cfg.alpha_update,
                    name,
                    paths,
                    regulariser,
                });
            }
            MethodConfig::Adalora(cfg) => {
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

    let t = &settings.train;
    let pos = |x: &p::Position| convert::position_steps(x, total_steps, steps_per_epoch).max(1);
    let autocast = precision(settings).autocast;
    let mut trainer = Trainer {
        base_parameters: plan.model.parameters,
        eval_every: t.eval_every.as_ref().map(pos),
        checkpoint_every: t
            .checkpoint_every
            .as_ref()
            .map(pos)
            .unwrap_or(total_steps.max(1)),
        log_every: pos(&t.log_every),
        model,
        data,
        validation,
        main_opt,
        alpha_opt,
        ard,
        adalora,
        schedules: Schedules {
            lr: lr0,
            head_lr,
            alpha_lr,
        },
        total_steps,
        steps_per_epoch,
        run_dir: run_dir
            .take()
            .expect("the run directory is set until the trainer takes it"),
        state: LoopState::new(trainable),
        device: dev,
        autocast,
        // One progress display: rank 0's.
        quiet: opts.quiet || !root,
        parallel,
        comm_seconds: 0.0,
        plan,
    };
    trainer.state.world_size = trainer.rank_and_world().1;
    let resumed = (|| -> Result<(), TrainError> {
        let value = pipeline_value;
        let processes = trainer.processes();
        match resume_state {
            Start::From(ckpt) => {
                trainer.restore(*ckpt)?;
                trainer.sync_parameters(None)?;
                let step = trainer.state.step;
                trainer.update_manifest(|m| m.record_resume(step, &value, processes))?;
            }
            Start::Again => {
                trainer.sync_parameters(None)?;
                if trainer.writes() {
                    // What the attempt before logged is done again: cut it back to nothing.
                    trainer
                        .run_dir
                        .truncate_logs_to_step(0, &["initial", "final"])?;
                }
                trainer.update_manifest(|m| m.record_resume(0, &value, processes))?;
            }
            Start::Fresh => trainer.sync_parameters(None)?,
        }
        // f16: the scaler (restored with the loop state when the checkpoint has one).
        trainer.init_loss_scale();
        Ok(())
    })();
    if let Err(e) = resumed {
        let _ = trainer.update_manifest(|m| m.finish(crate::manifest::RunStatus::Failed));
        return Err(e);
    }
    Ok(trainer)
}

/// The resolved pipeline and the manifest, written right after the run directory is locked
/// (before any data or weights load), so a run killed at any later instant can be resumed.
pub fn write_start_files(
    compiled: &Compiled,
    run_dir: &RunDir,
    dev: tch::Device,
    processes: &Option<crate::manifest::Processes>,
) -> Result<(), TrainError> {
    let settings = &compiled.plan.settings;
    run_dir.write_resolved_pipeline(&compiled.pipeline)?;
    // The plan this run executes: a resume compiles the pipeline again and must find the same.
    crate::rundir::write_json_atomic(&run_dir.path(crate::rundir::PLAN), &compiled.plan)?;
    let mut seeds = std::collections::BTreeMap::new();
    seeds.insert("pipeline".to_string(), settings.seed);
    seeds.insert("train".to_string(), settings.train.seed);
    let manifest = crate::manifest::Manifest::collect(&crate::manifest::ManifestInputs {
        run_name: &settings.name,
        pipeline: &compiled.pipeline,
        pipeline_file: Some(&settings.file),
        datasets: &compiled.dataset_files,
        plugins: &compiled.plugin_files,
        device: &format!("{dev:?}").to_lowercase(),
        seeds,
        processes: processes.clone(),
    })?;
    manifest.write(&run_dir.manifest_path())?;
    Ok(())
}

impl Trainer {
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

fn create_run_dir(settings: &RunSettings, variant: Option<&str>) -> Result<RunDir, TrainError> {
    let now = time::OffsetDateTime::now_utc();
    // The template is absolute (the checker resolved it against the pipeline file).
    let seed = settings.train.seed.to_string();
    let vars = [
        ("name", settings.name.as_str()),
        ("variant", variant.unwrap_or(settings.name.as_str())),
        ("seed", seed.as_str()),
    ];
    Ok(RunDir::create_from_template(
        Path::new(""),
        &settings.output.dir,
        &vars,
        now,
    )?)
}

/// Open a run to resume (the process that writes it): the pipeline must be compatible with the
/// one given now, the data and plugin files must hash as the manifest recorded, and the
/// checkpoint is the newest that verifies (newer folders that do not are moved to
/// `checkpoints/rejected/`). No usable checkpoint is an error when the run had trained, unless
/// `restart`: the run is then trained again from step 0.
fn open_for_resume(
    dir: &Path,
    compiled: &Compiled,
    restart: bool,
    dev: tch::Device,
    processes: &Option<crate::manifest::Processes>,
) -> Result<(RunDir, Start), TrainError> {
    let resume_err = |why: String| TrainError::Resume {
        run_dir: dir.display().to_string(),
        why,
    };
    let run_dir = RunDir::open(dir)?;
    let before = run_dir.read_resolved_pipeline()?;
    // The saved pipeline is what the checkpoints were trained with, as the manifest's hash of it
    // says: an edited copy would let `--resume DIR` alone go on with other settings unseen.
    let manifest_path = run_dir.manifest_path();
    if manifest_path.exists() {
        let recorded = crate::manifest::Manifest::read(&manifest_path)?.pipeline_sha256;
        let found = crate::manifest::pipeline_hash(&before);
        if found != recorded {
            return Err(resume_err(format!(
                "{} changed after the run started (its sha256 is {found}; the manifest recorded \
                 {recorded})\n  fix: restore it; to change settings, pass the pipeline file: \
                 `ardpipe run FILE --resume {}` shows what may change",
                run_dir.path(crate::rundir::RESOLVED_PIPELINE).display(),
                dir.display()
            )));
        }
    }
    let check = crate::manifest::check_resume(&before, &compiled.pipeline);
    if !check.is_compatible() {
        return Err(resume_err(format!(
            "the pipeline changed in ways that would make the result differ from an uninterrupted run:\n{}\n  \
             fix: restore those values, or start a new run",
            check.refused_lines()
        )));
    }
    let store = crate::checkpoint::Checkpoints::of_run(dir);
    let choice = store
        .choose(true)
        .map_err(|e| TrainError::Other(format!("checkpoint: {e}")))?;
    match choice.checkpoint {
        Some(ckpt) => {
            // The bytes the run trained on must be the bytes it goes on with.
            if manifest_path.exists() {
                let manifest = crate::manifest::Manifest::read(&manifest_path)?;
                let hash = |items: Vec<(String, std::path::PathBuf)>| {
                    items
                        .iter()
                        .map(|(n, p)| crate::manifest::FileHash::of(n, p))
                        .collect::<Result<Vec<_>, _>>()
                };
                let inputs = crate::manifest::check_inputs(
                    &manifest,
                    &hash(compiled.dataset_files.clone())?,
                    &hash(compiled.plugin_files.clone())?,
                );
                if !inputs.is_compatible() {
                    return Err(resume_err(format!(
                        "its input files changed since the run started:\n{}\n  \
                         fix: put back the files the run trained on, or start a new run with these",
                        inputs.refused_lines()
                    )));
                }
            } else {
                write_start_files(compiled, &run_dir, dev, processes)?;
            }
            // Same files, same settings: the data must still compile to the plan it trained on.
            check_data_plan(&run_dir, &compiled.plan).map_err(resume_err)?;
            Ok((run_dir, Start::From(Box::new(ckpt))))
        }
        None => {
            // Signs that the run had trained: logged steps, and folders rejected now or by an
            // earlier resume (which refused then, and must not start over silently now).
            let trained = crate::rundir::read_jsonl(&run_dir.metrics_path())
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.get("step").and_then(|s| s.as_u64()))
                .filter(|&s| s > 0)
                .max();
            let rejected_dir = store.dir().join(crate::checkpoint::REJECTED);
            let rejected_before = std::fs::read_dir(&rejected_dir)
                .map(|d| d.count())
                .unwrap_or(0)
                > 0
                && choice.rejected.is_empty();
            if (trained.is_some() || !choice.rejected.is_empty() || rejected_before) && !restart {
                let mut found: Vec<String> = choice
                    .rejected
                    .iter()
                    .map(|r| {
                        format!(
                            "  - {}: {}{}",
                            r.path.display(),
                            r.why,
                            r.moved_to
                                .as_ref()
                                .map(|m| format!(" (moved to {})", m.display()))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                if rejected_before {
                    found.push(format!(
                        "  - folders an earlier resume rejected, in {} (each with its reason in NAME.why)",
                        rejected_dir.display()
                    ));
                } else if found.is_empty() {
                    found.push(format!(
                        "  - no checkpoint folder in {}",
                        store.dir().display()
                    ));
                }
                if let Some(step) = trained {
                    found.push(format!(
                        "  - metrics.jsonl shows training up to step {step}"
                    ));
                }
                return Err(resume_err(format!(
                    "it has no usable checkpoint, so resuming would silently train again from step 0. Found:\n{}\n  \
                     fix: `ardpipe run --resume {} --restart` trains it again from step 0, or put a good checkpoint back in {}",
                    found.join("\n"),
                    dir.display(),
                    store.dir().display()
                )));
            }
            if trained.is_none() && choice.rejected.is_empty() && !rejected_before {
                tracing::info!(
                    "{} stopped before its first training step: starting it from step 0",
                    dir.display()
                );
            } else {
                tracing::warn!(
                    "--restart: {} has no usable checkpoint; training it again from step 0",
                    dir.display()
                );
            }
            // Nothing was trained that the run keeps: its start files are written afresh.
            let history = crate::manifest::Manifest::read(&manifest_path)
                .map(|m| m.resumptions)
                .unwrap_or_default();
            write_start_files(compiled, &run_dir, dev, processes)?;
            let mut m = crate::manifest::Manifest::read(&manifest_path)?;
            m.resumptions = history;
            m.write(&manifest_path)?;
            Ok((run_dir, Start::Again))
        }
    }
}

/// The data a resumed run goes on with must be the data its checkpoints saw, batched the same
/// way: the plan saved at the start and the plan compiled now must agree on every data field
/// (a run directory from before plans were saved has nothing to compare).
fn check_data_plan(run_dir: &RunDir, plan: &ExecutionPlan) -> Result<(), String> {
    let path = run_dir.path(crate::rundir::PLAN);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let before: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    let now = serde_json::to_value(&plan.data).map_err(|e| e.to_string())?;
    let old = before.get("data").cloned().unwrap_or_default();
    let (Some(old), Some(new)) = (old.as_object(), now.as_object()) else {
        return Err(format!("{} has no `data` section", path.display()));
    };
    let changed: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(k.as_str()) != Some(v))
        .map(|(k, v)| {
            format!(
                "  - data.{k}: {} → {v}",
                old.get(k.as_str())
                    .map_or("(absent)".to_string(), |o| o.to_string())
            )
        })
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the data compile to a different plan than the run started with ({}):\n{}\n  \
         fix: put back the data and settings the run trained on, or start a new run",
        path.display(),
        changed.join("\n")
    ))
}

/// Resume a data-parallel run: rank 0 opens it and chooses the checkpoint, then tells every
/// other rank which one (its step and the sha256 of its tensors); they load exactly that one
/// and check its hash, so no two processes can continue from different states.
fn resume_together(
    dp: &DataParallel,
    dir: &Path,
    compiled: &Compiled,
    restart: bool,
    dev: tch::Device,
    processes: &Option<crate::manifest::Processes>,
) -> Result<(RunDir, Start), TrainError> {
    if dp.group.is_root() {
        let opened = open_for_resume(dir, compiled, restart, dev, processes);
        let word = match &opened {
            Ok((_, Start::From(c))) => format!("from {} {}", c.step(), c.tensors_sha256),
            Ok(_) => "again".to_string(),
            Err(_) => "refused".to_string(),
        };
        super::parallel::share_text(&dp.group, Some(&word))?;
        return opened;
    }
    let word = super::parallel::share_text(&dp.group, None)?;
    let run_dir = RunDir::open_unlocked(dir)?;
    let mut parts = word.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("from"), Some(step), Some(sha)) => {
            let step: u64 = step.parse().map_err(|_| {
                TrainError::Other(format!("rank 0 sent a bad checkpoint step `{word}`"))
            })?;
            let ckpt = crate::checkpoint::Checkpoints::of_run(dir)
                .load(step)
                .map_err(|e| TrainError::Other(format!("checkpoint chosen by rank 0: {e}")))?;
            if ckpt.tensors_sha256 != sha {
                return Err(TrainError::Resume {
                    run_dir: dir.display().to_string(),
                    why: format!(
                        "rank {} reads a different checkpoint at step {step} than rank 0 (sha256 {} vs {sha}): \
                         every process must see the same run directory (a shared filesystem)",
                        dp.rank(),
                        ckpt.tensors_sha256
                    ),
                });
            }
            tracing::debug!(
                "rank {}: resuming from step {step} as rank 0 chose",
                dp.rank()
            );
            Ok((run_dir, Start::From(Box::new(ckpt))))
        }
        (Some("again"), _, _) => Ok((run_dir, Start::Again)),
        _ => Err(TrainError::Resume {
            run_dir: dir.display().to_string(),
            why: "rank 0 refused to resume it (its message says why)".into(),
        }),
    }
}
