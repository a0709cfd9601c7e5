//! The execution plan: a checked pipeline resolved against the real model's configuration
//! (no weights read): which modules and heads every adapter selector reaches, trainable
//! parameters, rank budgets, a memory estimate and the schedules at concrete steps.

use std::path::Path;

pub use crate::memory::MemoryEstimate;
use ardpipe_adapters::{HeadAxis, MethodConfig};
use ardpipe_dsl::pipeline as p;
use ardpipe_models::arch::PaliGemmaConfig;
use ardpipe_models::arch::config::{ArchConfig, ModuleSpec};
use ardpipe_models::{ModelDescription, describe};
use serde::Serialize;

use crate::convert;
use crate::schedule::ResolvedSchedule;

/// Why a pipeline cannot be planned against its model, with the fix.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read the model at {path}: {message}")]
    Model { path: String, message: String },
    #[error("adapter `{adapter}`: {message}")]
    Targets {
        adapter: String,
        message: String,
        help: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl PlanError {
    pub fn help(&self) -> Option<&str> {
        match self {
            PlanError::Targets { help, .. } => Some(help),
            PlanError::Model { .. } => {
                Some("check `model.path`; `ardpipe inspect model PATH` shows what is there")
            }
            PlanError::Invalid(_) => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ExecutionPlan {
    pub pipeline: String,
    pub model: ModelSummary,
    pub adapters: Vec<AdapterPlan>,
    /// Parameters of a new task head that trains too (classifier, pooler).
    pub head_parameters: usize,
    /// All trainable parameters at the initial ranks (adapters + head).
    pub trainable_initial: usize,
    /// All trainable parameters at the maximum ranks (what is allocated before compaction).
    pub trainable_max: usize,
    /// `trainable_initial` as a percentage of the base model's parameters.
    pub trainable_percent: f64,
    pub memory: MemoryEstimate,
    pub training: TrainingPlan,
    /// The data the run trains and evaluates on, as read and counted at compile time.
    pub data: DataPlan,
    /// The settings the trainer applies as written (hyper-parameters, model, output); what
    /// derives from them is resolved in the sections above.
    pub settings: RunSettings,
    pub warnings: Vec<String>,
}

impl ExecutionPlan {
    /// A resolved schedule by its name in [`TrainingPlan::schedules`] (`train.lr`, `NAME.lambda`).
    pub fn schedule(&self, name: &str) -> Result<ResolvedSchedule, PlanError> {
        self.training
            .schedules
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.schedule.clone())
            .ok_or_else(|| PlanError::Invalid(format!("the plan has no schedule `{name}`")))
    }
}

/// The pipeline's settings that a run executes as they are. The trainer reads these, never the
/// pipeline: datasets become [`DataPlan`], selectors become [`AdapterPlan::modules`], durations
/// and schedules become [`TrainingPlan`].
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunSettings {
    pub name: String,
    /// The pipeline file (absolute).
    pub file: std::path::PathBuf,
    pub seed: u64,
    pub plugins: Vec<p::Plugin>,
    pub model: p::Model,
    pub adapters: Vec<p::Adapter>,
    pub train: p::Train,
    pub evaluate: Option<p::Evaluate>,
    pub output: p::Output,
    pub distributed: p::Distributed,
}

impl RunSettings {
    /// The dtype frozen base weights are stored in, `dtype = auto` resolved.
    pub fn base_dtype(&self) -> p::DType {
        base_dtype(&self.model, &self.train, &self.adapters)
    }

    pub fn of(pipeline: &p::Pipeline) -> RunSettings {
        RunSettings {
            name: pipeline.name.clone(),
            file: pipeline.file.clone(),
            seed: pipeline.seed,
            plugins: pipeline.plugins.clone(),
            model: pipeline.model.clone(),
            adapters: pipeline.adapters.clone(),
            train: pipeline.train.clone(),
            evaluate: pipeline.evaluate.clone(),
            output: pipeline.output.clone(),
            distributed: pipeline.distributed.clone(),
        }
    }
}

/// The training dataset as compiled: what its examples are, how they become batches, and
/// what counting them found.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DataPlan {
    pub dataset: String,
    /// The source format (`jsonl`, `csv`, `text`, `folders`, `image_folders`, `parquet`,
    /// `plugin`).
    pub format: String,
    /// The files read (globs expanded), per split that has its own.
    pub files: Vec<String>,
    /// What an example is: `text`, `text_pair`, `prompt_completion`, `chat` or
    /// `image_question`.
    pub records: String,
    pub batching: Batching,
    /// Units an epoch goes through: examples, or packed blocks/rows for a causal LM.
    pub train_units: usize,
    pub eval_units: usize,
    /// The split evaluation reads (`validation`, `test` or `train`).
    pub eval_split: String,
    /// Class names in id order (classification); empty otherwise.
    pub classes: Vec<String>,
    /// Rows the bad-row policy skipped, over every split read.
    pub skipped_rows: usize,
    /// Optimiser steps per epoch (the last partial batch of an epoch is dropped).
    pub steps_per_epoch: u64,
}

/// How examples become model inputs.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Batching {
    /// One example per row, padded to the batch's longest, cut at `max_length` tokens.
    Padded {
        max_length: u32,
        truncation: p::Side,
    },
    /// Texts joined with EOS and cut into blocks of `block_size` tokens.
    Blocks { block_size: u32 },
    /// Supervised examples (loss on `train_on`), cut at `max_length` tokens from the
    /// `truncation` side; packed several to a row without attention across them, or one per
    /// row padded with batches of similar length.
    Supervised {
        max_length: u32,
        truncation: p::Side,
        train_on: String,
        packing: bool,
    },
    /// Image questions: one per row, padded; `image_tokens` of the image, BOS and the question
    /// (attending both ways), then the answer and EOS, which carry the loss. Never cut: an
    /// example over `max_length` tokens is a bad row.
    Images { max_length: u32, image_tokens: u32 },
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ModelSummary {
    pub path: String,
    pub architecture: String,
    pub parameters: usize,
    pub layers: usize,
    pub hidden_size: usize,
    pub attention_heads: usize,
    pub kv_heads: usize,
    pub head: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AdapterPlan {
    pub name: String,
    pub method: String,
    pub selectors: Vec<SelectorMatch>,
    pub modules: Vec<TargetModule>,
    /// Σ over units of the initial rank (r0·α_init for ARD-LoRA, r for LoRA, init_r for AdaLoRA).
    pub rank_budget_initial: usize,
    pub rank_budget_max: usize,
    pub trainable_initial: usize,
    pub trainable_max: usize,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SelectorMatch {
    pub selector: String,
    pub modules: usize,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TargetModule {
    pub path: String,
    pub layer: usize,
    pub d_out: usize,
    pub d_in: usize,
    /// `output`, `input` or `none` (head-less: groups along the output axis).
    pub head_axis: String,
    /// Units the adapter splits this module into (heads, or groups for head-less linears).
    pub units: usize,
    pub rank_initial: usize,
    pub rank_max: usize,
    pub trainable_initial: usize,
    pub trainable_max: usize,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TrainingPlan {
    pub total_steps: u64,
    /// 0 when unknown (the data were not counted).
    pub steps_per_epoch: u64,
    pub batch_size: u32,
    pub grad_accum: u32,
    pub sequence_length: u32,
    pub schedules: Vec<NamedSchedule>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NamedSchedule {
    pub name: String,
    pub schedule: ResolvedSchedule,
}

/// Does `selector` pick the module at `path`?
pub fn selector_matches(selector: &p::Selector, path: &str) -> bool {
    match selector {
        // A name matches the last component(s): `query`, or `attention.output.dense`.
        p::Selector::Name(n) => path == n || path.ends_with(&format!(".{n}")),
        p::Selector::Glob(g) => glob_regex(g).is_some_and(|re| re.is_match(path)),
        p::Selector::Regex(r) => {
            regex::Regex::new(&format!("^(?:{r})$")).is_ok_and(|re| re.is_match(path))
        }
    }
}

fn glob_regex(glob: &str) -> Option<regex::Regex> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^.]*"),
            '?' => re.push_str("[^.]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).ok()
}

pub fn selector_text(s: &p::Selector) -> String {
    match s {
        p::Selector::Name(n) => n.clone(),
        p::Selector::Glob(g) => format!("glob({g:?})"),
        p::Selector::Regex(r) => format!("regex({r:?})"),
    }
}

fn in_indices(ix: &p::Indices, i: usize) -> bool {
    match ix {
        p::Indices::All => true,
        p::Indices::Only(v) => v.contains(&(i as u32)),
    }
}

/// The model's adaptable modules as the trainer will address them (encoders with a
/// classification head live under `bert.` / `roberta.`, as transformers names them; a decoder's
/// stay under `model.`, in `*ForSequenceClassification` as in `*ForCausalLM`).
pub fn model_modules(desc: &ModelDescription, head: &p::Head) -> Vec<ModuleSpec> {
    match (&desc.config, head) {
        (ArchConfig::Bert(c), p::Head::SequenceClassification { .. }) => {
            c.modules(c.family.prefix())
        }
        _ => desc.modules.clone(),
    }
}

/// Resolve one adapter's targets to concrete modules; every selector must match something.
pub fn resolve_targets(
    adapter: &p::Adapter,
    modules: &[ModuleSpec],
) -> Result<(Vec<ModuleSpec>, Vec<SelectorMatch>), PlanError> {
    let t = &adapter.targets;
    let mut selected = Vec::new();
    let mut matches = Vec::new();
    for sel in &t.modules {
        let hits: Vec<&ModuleSpec> = modules
            .iter()
            .filter(|m| selector_matches(sel, &m.path))
            .filter(|m| in_indices(&t.layers, m.layer))
            .filter(|m| !t.exclude.iter().any(|x| selector_matches(x, &m.path)))
            .collect();
        if hits.is_empty() {
            let mut names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
            names.sort();
            names.dedup();
            return Err(PlanError::Targets {
                adapter: adapter.name.clone(),
                message: format!(
                    "selector `{}` matches no module of this model (after layers and excludes)",
                    selector_text(sel)
                ),
                help: format!(
                    "this model's adaptable modules are named {} (e.g. `{}`); `ardpipe inspect model PATH` lists them all",
                    names.join(", "),
                    modules.first().map(|m| m.path.as_str()).unwrap_or("")
                ),
            });
        }
        matches.push(SelectorMatch {
            selector: selector_text(sel),
            modules: hits.len(),
        });
        for h in hits {
            if !selected.iter().any(|m: &ModuleSpec| m.path == h.path) {
                selected.push(h.clone());
            }
        }
    }
    selected.sort_by(|a, b| (a.layer, &a.path).cmp(&(b.layer, &b.path)));
    Ok((selected, matches))
}

/// Units, initial rank and maximum rank of one module under a method.
fn module_budget(m: &ModuleSpec, method: &MethodConfig) -> (usize, usize, usize, usize, usize) {
    let (d_out, d_in) = (m.d_out, m.d_in);
    match method {
        MethodConfig::ArdLora(c) => {
            let units = match m.heads.axis {
                HeadAxis::None => c.groups,
                _ => m.heads.n_heads,
            };
            let (dout_u, din_u) = match m.heads.axis {
                HeadAxis::Output => (m.heads.head_dim, d_in),
                HeadAxis::Input => (d_out, m.heads.head_dim),
                HeadAxis::None => (d_out / c.groups.max(1), d_in),
            };
            let r_init = ((c.r0 as f64 * c.alpha_init.clamp(c.alpha_min, c.alpha_max)).round()
                as usize)
                .max(1);
            let r_max = c.r_max();
            let per_rank = dout_u + din_u;
            (
                units,
                units * r_init,
                units * r_max,
                units * (r_init * per_rank + 1),
                units * (r_max * per_rank + 1),
            )
        }
        MethodConfig::Lora(c) => (1, c.r, c.r, c.r * (d_in + d_out), c.r * (d_in + d_out)),
        MethodConfig::Dora(c) => (
            1,
            c.r,
            c.r,
            c.r * (d_in + d_out) + d_out,
            c.r * (d_in + d_out) + d_out,
        ),
        MethodConfig::Adalora(c) => {
            let n = c.init_r * (d_in + d_out + 1);
            (1, c.init_r, c.init_r, n, n)
        }
        MethodConfig::Full(c) => {
            let n = d_out * d_in + if c.train_bias && m.bias { d_out } else { 0 };
            (1, 0, 0, n, n)
        }
        // Selects no module (the checker gives it no selectors).
        MethodConfig::HeadOnly => (0, 0, 0, 0, 0),
    }
}

/// What `ardpipe plan --format json|yaml` prints: the resolved pipeline and its plan.
/// Its schema is checked in as `schemas/plan.schema.json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PlanDocument {
    /// The pipeline after imports, defaults, `--set` overrides and variant expansion.
    pub pipeline: p::Pipeline,
    /// One plan per run: the pipeline itself, or each of its variants.
    pub runs: Vec<RunPlan>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunPlan {
    /// The pipeline's name, or the variant's.
    pub run: String,
    pub plan: ExecutionPlan,
    /// `ardpipe plan --fit DEVICE`: whether a process of this run fits the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<crate::memory::Fit>,
}

/// The JSON Schema of [`PlanDocument`].
pub fn plan_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PlanDocument)).unwrap_or_default()
}

/// The plan from the pipeline, the model's configuration and what compiling the data found.
pub fn plan_with_data(pipeline: &p::Pipeline, data: DataPlan) -> Result<ExecutionPlan, PlanError> {
    let steps_per_epoch = data.steps_per_epoch;
    let desc = describe(&pipeline.model.path).map_err(|e| PlanError::Model {
        path: pipeline.model.path.display().to_string(),
        message: e.to_string(),
    })?;
    check_format(&desc, pipeline.model.format, &pipeline.model.path)?;
    check_head(&desc, &pipeline.model.head, &pipeline.model.path)?;
    image_model(&desc, pipeline)?;
    if pipeline.train.checkpointing == p::Checkpointing::Layers
        && matches!(desc.config, ArchConfig::Bert(_))
    {
        return Err(PlanError::Invalid(encoder_checkpointing(
            &pipeline.model.path,
            desc.config.name(),
        )));
    }
    let modules = model_modules(&desc, &pipeline.model.head);
    let mut warnings = Vec::new();
    let mut adapters = Vec::new();
    let mut claimed: Vec<(String, String)> = Vec::new();
    for a in &pipeline.adapters {
        let method = convert::method_config(&a.method, 1);
        if !matches!(a.targets.heads, p::Indices::All) && !matches!(a.method, p::Method::ArdLora(_))
        {
            return Err(PlanError::Targets {
                adapter: a.name.clone(),
                message: format!(
                    "`heads` selects heads, but {} adapts whole modules",
                    a.method.name()
                ),
                help: "remove `heads` (per-head placement is an ARD-LoRA feature)".into(),
            });
        }
        if !matches!(a.targets.heads, p::Indices::All) {
            return Err(PlanError::Targets {
                adapter: a.name.clone(),
                message:
                    "placing ARD-LoRA units on a subset of heads is not supported by this version"
                        .into(),
                help: "remove `heads` (all heads get units; ℓ1 shrinks the ones that do not help)"
                    .into(),
            });
        }
        let (selected, selectors) = resolve_targets(a, &modules)?;
        for m in &selected {
            if let Some((other, _)) = claimed.iter().find(|(_, path)| path == &m.path) {
                return Err(PlanError::Targets {
                    adapter: a.name.clone(),
                    message: format!("module `{}` is already adapted by adapter `{other}`", m.path),
                    help: "a module takes one adapter: narrow one of the selectors or add an `exclude`".into(),
                });
            }
            claimed.push((a.name.clone(), m.path.clone()));
        }
        uneven_layers_warning(a, &selected, &mut warnings);
        let mut plan = AdapterPlan {
            name: a.name.clone(),
            method: a.method.name().into(),
            selectors,
            modules: vec![],
            rank_budget_initial: 0,
            rank_budget_max: 0,
            trainable_initial: 0,
            trainable_max: 0,
        };
        for m in &selected {
            let (units, r_init, r_max, n_init, n_max) = module_budget(m, &method);
            plan.rank_budget_initial += r_init;
            plan.rank_budget_max += r_max;
            plan.trainable_initial += n_init;
            plan.trainable_max += n_max;
            plan.modules.push(TargetModule {
                path: m.path.clone(),
                layer: m.layer,
                d_out: m.d_out,
                d_in: m.d_in,
                head_axis: format!("{:?}", m.heads.axis).to_lowercase(),
                units,
                rank_initial: r_init,
                rank_max: r_max,
                trainable_initial: n_init,
                trainable_max: n_max,
            });
        }
        adapters.push(plan);
    }

    let classes = match &pipeline.model.head {
        p::Head::SequenceClassification { classes } => match classes {
            p::Classes::Names { names } => names.len(),
            p::Classes::FromData => data.classes.len(),
        },
        _ => 0,
    };
    let head_parameters = match (&desc.config, &pipeline.model.head) {
        (ArchConfig::Bert(c), p::Head::SequenceClassification { .. }) => {
            // BERT's pooler.dense / RoBERTa's classifier.dense trains with the output layer
            // (PEFT's modules_to_save for SEQ_CLS).
            c.hidden_size * c.hidden_size + c.hidden_size + classes * c.hidden_size + classes
        }
        // A decoder's `score`: one row per class, no bias.
        (ArchConfig::Llama(c), p::Head::SequenceClassification { .. }) => classes * c.hidden_size,
        _ => 0,
    };
    let trainable_initial: usize =
        adapters.iter().map(|a| a.trainable_initial).sum::<usize>() + head_parameters;
    let trainable_max: usize =
        adapters.iter().map(|a| a.trainable_max).sum::<usize>() + head_parameters;
    let training = training_plan(pipeline, steps_per_epoch)?;
    let adapted: Vec<String> = adapters
        .iter()
        .flat_map(|a: &AdapterPlan| a.modules.iter().map(|m| m.path.clone()))
        .collect();
    let settings = RunSettings::of(pipeline);
    let memory = crate::memory::estimate(
        &desc,
        &settings,
        &adapted,
        trainable_max,
        &training,
        crate::memory::Target::of(&settings),
    );
    let (layers, hidden, heads, kv) = match &desc.config {
        ArchConfig::Llama(c) => (
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
        ),
        ArchConfig::Bert(c) => (
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_attention_heads,
        ),
        // The decoder's: the summary line is about the language model (the vision tower's
        // modules are listed with the adapters).
        ArchConfig::PaliGemma(c) => (
            c.text.num_hidden_layers,
            c.text.hidden_size,
            c.text.num_attention_heads,
            c.text.num_key_value_heads,
        ),
    };
    Ok(ExecutionPlan {
        pipeline: pipeline.name.clone(),
        model: ModelSummary {
            path: pipeline.model.path.display().to_string(),
            architecture: desc.config.name().into(),
            parameters: desc.parameters,
            layers,
            hidden_size: hidden,
            attention_heads: heads,
            kv_heads: kv,
            head: head_name(&pipeline.model.head).into(),
        },
        adapters,
        head_parameters,
        trainable_initial,
        trainable_max,
        trainable_percent: 100.0 * trainable_initial as f64 / desc.parameters.max(1) as f64,
        memory,
        training,
        data,
        settings,
        warnings,
    })
}

/// Why `train.checkpointing = layers` is refused for the encoder at `path`.
pub(crate) fn encoder_checkpointing(path: &Path, architecture: &str) -> String {
    format!(
        "`train.checkpointing = layers` recomputes decoder layers (Llama, Qwen, Mistral, Gemma, \
         PaliGemma's decoder); {} is an encoder ({architecture}), whose layers keep their \
         activations: remove the key",
        path.display()
    )
}

fn head_name(h: &p::Head) -> &'static str {
    match h {
        p::Head::CausalLm => "causal_lm",
        p::Head::SequenceClassification { .. } => "sequence_classification",
        p::Head::Embedding { .. } => "embedding",
    }
}

/// `model.format` says what the path holds; the path decides what is read, so they must agree.
fn check_format(
    desc: &ModelDescription,
    format: p::ModelFormat,
    path: &Path,
) -> Result<(), PlanError> {
    let found = match desc.location {
        ardpipe_models::ModelLocation::Gguf(_) => p::ModelFormat::Gguf,
        ardpipe_models::ModelLocation::HfFolder(_) => p::ModelFormat::HfFolder,
    };
    if found == format {
        return Ok(());
    }
    let name = |f: p::ModelFormat| match f {
        p::ModelFormat::Gguf => "gguf",
        p::ModelFormat::HfFolder => "hf_folder",
    };
    Err(PlanError::Invalid(format!(
        "model.format = {} but {} is {}: remove `format` (the path decides) or set `format = {}`",
        name(format),
        path.display(),
        match found {
            p::ModelFormat::Gguf => "a GGUF file",
            p::ModelFormat::HfFolder => "a Hugging Face folder",
        },
        name(found)
    )))
}

/// A vision-language model reads an image with every example, and only it reads images.
/// Returns the vision-language model's config when the training data has images.
pub(crate) fn image_model<'d>(
    desc: &'d ModelDescription,
    pipeline: &p::Pipeline,
) -> Result<Option<&'d PaliGemmaConfig>, PlanError> {
    let images = pipeline_dataset(pipeline).is_some_and(p::Dataset::images);
    let path = pipeline.model.path.display();
    match (&desc.config, images) {
        (ArchConfig::PaliGemma(c), true) => Ok(Some(c)),
        (ArchConfig::PaliGemma(_), false) => Err(PlanError::Invalid(format!(
            "{path} is a vision-language model: every example needs an image; map the dataset's \
             `image` column (with `prompt` and `completion`), or read `format = image_folders`"
        ))),
        (_, true) => Err(PlanError::Invalid(format!(
            "dataset `{}` has images, but {path} (a {} model) reads no image: use a \
             vision-language model (model_type paligemma; `ardpipe compose` makes one from a \
             decoder)",
            pipeline.train.dataset,
            desc.config.name()
        ))),
        (_, false) => Ok(None),
    }
}

fn check_head(desc: &ModelDescription, head: &p::Head, path: &Path) -> Result<(), PlanError> {
    let ok = matches!(
        (&desc.config, head),
        (ArchConfig::Llama(_), p::Head::CausalLm)
            | (ArchConfig::Llama(_), p::Head::SequenceClassification { .. })
            | (ArchConfig::Bert(_), p::Head::SequenceClassification { .. })
            | (ArchConfig::Bert(_), p::Head::Embedding { .. })
            | (ArchConfig::PaliGemma(_), p::Head::CausalLm)
    );
    if ok {
        Ok(())
    } else {
        Err(PlanError::Invalid(format!(
            "model.head = {} does not fit {} (a {} model): use {}",
            head_name(head),
            path.display(),
            desc.config.name(),
            match desc.config {
                ArchConfig::Llama(_) => "head = causal_lm or sequence_classification",
                ArchConfig::Bert(_) => "head = sequence_classification or embedding",
                ArchConfig::PaliGemma(_) => "head = causal_lm (it answers in text)",
            }
        )))
    }
}

fn uneven_layers_warning(a: &p::Adapter, selected: &[ModuleSpec], warnings: &mut Vec<String>) {
    let mut per_layer = std::collections::BTreeMap::<usize, usize>::new();
    for m in selected {
        *per_layer.entry(m.layer).or_default() += 1;
    }
    let (min, max) = (per_layer.values().min(), per_layer.values().max());
    if let (Some(min), Some(max)) = (min, max)
        && min != max
    {
        warnings.push(format!(
            "adapter `{}`: layers get uneven numbers of modules ({min} to {max}); total variation across depth compares only layers that share a module",
            a.name
        ));
    }
}

/// Total optimiser steps; `steps_per_epoch` (0 = unknown) is needed when training is in epochs.
pub fn total_steps(pipeline: &p::Pipeline, steps_per_epoch: u64) -> Result<u64, PlanError> {
    match pipeline.train.duration {
        p::Duration::Steps(s) => Ok(s),
        p::Duration::Epochs(e) if steps_per_epoch > 0 => Ok(e as u64 * steps_per_epoch),
        p::Duration::Epochs(_) => Err(PlanError::Invalid(
            "training is given in epochs but the training set's size is unknown".into(),
        )),
    }
}

fn training_plan(pipeline: &p::Pipeline, steps_per_epoch: u64) -> Result<TrainingPlan, PlanError> {
    let total = total_steps(pipeline, steps_per_epoch)?;
    let mut schedules = Vec::new();
    let mut add = |name: &str, s: &p::Schedule, scale: f64| -> Result<(), PlanError> {
        let r = convert::resolve_schedule(s, total, steps_per_epoch)
            .map_err(|e| PlanError::Invalid(format!("schedule `{name}`: {e}")))?;
        schedules.push(NamedSchedule {
            name: name.into(),
            schedule: if scale == 1.0 { r } else { r.scaled(scale) },
        });
        Ok(())
    };
    let t = &pipeline.train;
    add("train.lr", &t.lr, t.lr_scale)?;
    add(
        "train.head_lr",
        t.head_lr.as_ref().unwrap_or(&t.lr),
        t.lr_scale,
    )?;
    for a in &pipeline.adapters {
        if let p::Method::ArdLora(c) = &a.method {
            add("train.alpha_lr", &t.alpha_lr, 1.0)?;
            add(&format!("{}.lambda", a.name), &c.regularizer.lambda, 1.0)?;
            add(&format!("{}.beta", a.name), &c.regularizer.beta, 1.0)?;
            add(&format!("{}.gamma", a.name), &c.regularizer.gamma, 1.0)?;
        }
    }
    let sequence_length = match pipeline.model.head {
        // Plain text is cut into blocks; examples (supervised, image questions) are rows of at
        // most max_length.
        p::Head::CausalLm => pipeline_dataset(pipeline)
            .map(|d| {
                if d.fields.supervised() || d.images() {
                    d.preprocess.max_length
                } else {
                    d.preprocess.block_size
                }
            })
            .unwrap_or(0),
        _ => pipeline_dataset(pipeline)
            .map(|d| d.preprocess.max_length)
            .unwrap_or(0),
    };
    Ok(TrainingPlan {
        total_steps: total,
        steps_per_epoch,
        batch_size: pipeline.train.batch_size,
        grad_accum: pipeline.train.grad_accum,
        sequence_length,
        schedules,
    })
}

pub fn pipeline_dataset(pipeline: &p::Pipeline) -> Option<&p::Dataset> {
    pipeline
        .datasets
        .iter()
        .find(|d| d.name == pipeline.train.dataset)
}

/// `model.dtype` resolved: `auto` stores the base in bf16 under `precision = bf16` (cast once at
/// load, so no step casts a frozen weight), except when the base itself trains (`method = full`):
/// the optimiser then needs f32 master weights. f16 keeps an f32 base unless asked: f16's range
/// (65,504) is narrower than some checkpoints' weights and products.
pub fn base_dtype(model: &p::Model, train: &p::Train, adapters: &[p::Adapter]) -> p::DType {
    match model.dtype {
        p::DType::Auto
            if adapters
                .iter()
                .any(|a| matches!(a.method, p::Method::Full(_))) =>
        {
            p::DType::F32
        }
        p::DType::Auto => match train.precision {
            p::Precision::Bf16 => p::DType::Bf16,
            p::Precision::F32 | p::Precision::F16 => p::DType::F32,
        },
        d => d,
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// The plan as a person reads it.
pub fn render_text(plan: &ExecutionPlan) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let m = &plan.model;
    let _ = writeln!(o, "pipeline   {}", plan.pipeline);
    let _ = writeln!(
        o,
        "model      {} ({}, {:.1}M parameters, {} layers, hidden {}, {} heads / {} KV heads), head {}",
        m.path,
        m.architecture,
        m.parameters as f64 / 1e6,
        m.layers,
        m.hidden_size,
        m.attention_heads,
        m.kv_heads,
        m.head
    );
    let d = &plan.data;
    let batching = match &d.batching {
        Batching::Padded {
            max_length,
            truncation,
        } => format!("padded, at most {max_length} tokens (cut on the {truncation:?} side)"),
        Batching::Blocks { block_size } => format!("blocks of {block_size} tokens"),
        Batching::Supervised {
            max_length,
            truncation,
            train_on,
            packing,
        } => format!(
            "{}, at most {max_length} tokens (cut on the {truncation:?} side), loss on {train_on}",
            if *packing {
                "packed without attention across examples"
            } else {
                "padded in length buckets"
            }
        ),
        Batching::Images {
            max_length,
            image_tokens,
        } => format!(
            "one image question per row, padded: {image_tokens} image tokens, then the question \
             (both attending both ways), then the answer (the loss); at most {max_length} tokens"
        ),
    }
    .to_lowercase();
    let _ = writeln!(
        o,
        "data       {} ({}, {} records): {} training and {} {} units, {batching}{}{}",
        d.dataset,
        d.format,
        d.records,
        d.train_units,
        d.eval_units,
        d.eval_split,
        if d.classes.is_empty() {
            String::new()
        } else {
            format!(", {} classes", d.classes.len())
        },
        if d.skipped_rows > 0 {
            format!(", {} bad rows skipped", d.skipped_rows)
        } else {
            String::new()
        }
    );
    for a in &plan.adapters {
        let _ = writeln!(
            o,
            "adapter    {} ({}): {} modules",
            a.name,
            a.method,
            a.modules.len()
        );
        for s in &a.selectors {
            let _ = writeln!(o, "  selector {:<28} {} modules", s.selector, s.modules);
        }
        if a.method == "head_only" {
            let _ = writeln!(o, "  no module adapted: only the task head trains");
            continue;
        }
        let _ = writeln!(
            o,
            "  rank budget {} initial, {} max; trainable {} initial, {} max",
            a.rank_budget_initial, a.rank_budget_max, a.trainable_initial, a.trainable_max
        );
        for t in &a.modules {
            let _ = writeln!(
                o,
                "    {:<48} [{}×{}] heads {:<6} units {:>2}  rank {:>3} → max {:>3}",
                t.path, t.d_out, t.d_in, t.head_axis, t.units, t.rank_initial, t.rank_max
            );
        }
    }
    if plan.head_parameters > 0 {
        let _ = writeln!(
            o,
            "head       {} trainable parameters (classification head)",
            plan.head_parameters
        );
    }
    let _ = writeln!(
        o,
        "trainable  {} ({:.3}% of the base), {} at maximum ranks",
        plan.trainable_initial, plan.trainable_percent, plan.trainable_max
    );
    let mem = &plan.memory;
    let _ = writeln!(
        o,
        "memory     ~{} per process (base {} in {}, adapters {}, gradients {}, optimizer {}, \
         activations {}{}, runtime {})",
        mib(mem.total),
        mib(mem.weights),
        mem.base_storage,
        mib(mem.adapters),
        mib(mem.gradients),
        mib(mem.optimizer_state),
        mib(mem.activations),
        if mem.checkpointing {
            " with layer checkpointing"
        } else {
            ""
        },
        mib(mem.runtime)
    );
    let t = &plan.training;
    let _ = writeln!(
        o,
        "training   {} steps ({} per epoch), batch {} × {} accumulation, sequence {}",
        t.total_steps,
        if t.steps_per_epoch == 0 {
            "?".to_string()
        } else {
            t.steps_per_epoch.to_string()
        },
        t.batch_size,
        t.grad_accum,
        t.sequence_length
    );
    for s in &t.schedules {
        let _ = writeln!(o, "  {:<20} {}", s.name, s.schedule);
    }
    for w in &plan.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_schema_file_has_not_drifted() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/plan.schema.json"
        );
        let generated = serde_json::to_string_pretty(&plan_schema()).unwrap() + "\n";
        if std::env::var_os("ARDPIPE_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let on_disk: Option<serde_json::Value> = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        assert!(
            on_disk.as_ref() == Some(&plan_schema()),
            "schemas/plan.schema.json is out of date with PlanDocument; regenerate it with `ARDPIPE_BLESS=1 cargo test -p ardpipe-engine plan_schema` and commit it"
        );
    }
}
