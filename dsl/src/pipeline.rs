//! The checked, resolved pipeline: what the engine consumes. Every knob is explicit with its
//! default filled in, every path is absolute, every schedule is typed. Serialised as the run
//! directory's `pipeline.json`; its JSON Schema is `schemas/pipeline.schema.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of this structure; bumped when a field changes meaning.
pub const PIPELINE_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub format: u32,
    /// The language version the file is written in (`pipeline { language = N }`): always the
    /// current one once checked (a newer file is refused, an older one must be migrated).
    /// Absent from pipelines resolved before the key existed.
    #[serde(default = "crate::language::current")]
    pub language: u32,
    pub name: String,
    pub description: Option<String>,
    /// The seed every other seed defaults to.
    pub seed: u64,
    /// The pipeline file (absolute).
    pub file: PathBuf,
    pub plugins: Vec<Plugin>,
    pub datasets: Vec<Dataset>,
    pub model: Model,
    pub adapters: Vec<Adapter>,
    pub train: Train,
    pub evaluate: Option<Evaluate>,
    pub output: Output,
    /// Data-parallel settings; the same pipeline runs on one process or on N. Absent from
    /// pipelines resolved before the `distributed` block existed (the defaults then apply).
    #[serde(default)]
    pub distributed: Distributed,
    /// Side-by-side runs: each variant is this pipeline with some blocks replaced.
    pub variants: Vec<Variant>,
}

impl Pipeline {
    /// The runs this pipeline asks for: itself when it has no variants, else each variant.
    pub fn runs(&self) -> Vec<(&str, &Pipeline)> {
        if self.variants.is_empty() {
            vec![(self.name.as_str(), self)]
        } else {
            self.variants
                .iter()
                .map(|v| (v.name.as_str(), v.pipeline.as_ref()))
                .collect()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// The complete pipeline of this run (its own `variants` is empty).
    pub pipeline: Box<Pipeline>,
}

// ---------------------------------------------------------------------------------------------
// Plugins

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    pub name: String,
    /// The shared library (absolute; written relative to the pipeline file).
    pub library: PathBuf,
    /// The plugin ABI version the pipeline expects; the host refuses a mismatch.
    pub abi: u32,
}

/// Free-form options handed to a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OptionValue {
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<OptionValue>),
}

// ---------------------------------------------------------------------------------------------
// Datasets

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: String,
    pub source: Source,
    pub fields: Fields,
    pub split: Split,
    pub preprocess: Preprocess,
    pub on_bad_row: BadRowPolicy,
    /// Read at most this many rows (records) from the source.
    pub max_rows: Option<u64>,
}

impl Dataset {
    /// Whether the examples are image questions: an `image` column, or image folders per class.
    pub fn images(&self) -> bool {
        self.fields.image.is_some() || matches!(self.source, Source::ImageFolders { .. })
    }
}

/// Where a dataset's records come from. Every `paths` entry is absolute (written relative to the
/// pipeline file) and may contain glob wildcards (`*`, `?`, `[..]`); the files of all entries
/// together are the source, read in the order written (each glob's matches sorted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// One JSON object per line.
    Jsonl {
        paths: Vec<PathBuf>,
    },
    Csv {
        paths: Vec<PathBuf>,
        delimiter: char,
        /// Whether the first row names the columns (else columns are `0`, `1`, …).
        header: bool,
    },
    Text {
        paths: Vec<PathBuf>,
        mode: TextMode,
    },
    /// Apache Parquet files (how Hugging Face datasets are published); fields name columns,
    /// dotted names reach into nested (struct) columns.
    Parquet {
        paths: Vec<PathBuf>,
    },
    /// One sub-folder per class, one text file per example; the folder name is the label.
    Folders {
        paths: Vec<PathBuf>,
    },
    /// One sub-folder per class of PNG and JPEG images (other files are not read): image
    /// questions, each image asked `question` and answered `answer` with its class.
    ImageFolders {
        paths: Vec<PathBuf>,
        /// The question asked about every image, as written.
        question: String,
        /// The answer: this template with `{label}` replaced by the image's class (its folder's
        /// name).
        answer: String,
    },
    /// Records streamed by a loader plugin.
    Plugin {
        plugin: String,
        path: Option<PathBuf>,
        options: BTreeMap<String, OptionValue>,
    },
}

impl Source {
    /// The paths (or globs) this source reads: empty for a plugin given no `path`.
    pub fn paths(&self) -> &[PathBuf] {
        match self {
            Source::Jsonl { paths }
            | Source::Csv { paths, .. }
            | Source::Text { paths, .. }
            | Source::Parquet { paths }
            | Source::Folders { paths }
            | Source::ImageFolders { paths, .. } => paths,
            Source::Plugin { path, .. } => path.as_slice(),
        }
    }

    /// The `format` this source was written with (`plugin` for any plugin).
    pub fn format(&self) -> &'static str {
        match self {
            Source::Jsonl { .. } => "jsonl",
            Source::Csv { .. } => "csv",
            Source::Text { .. } => "text",
            Source::Parquet { .. } => "parquet",
            Source::Folders { .. } => "folders",
            Source::ImageFolders { .. } => "image_folders",
            Source::Plugin { .. } => "plugin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum TextMode {
    /// Each non-empty line is one example.
    Lines,
    /// Each file is one example.
    Documents,
    /// Examples are separated by a line that is exactly `line` (e.g. `%` in fortune files).
    Separator { line: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// The text column (JSONL key / CSV column); `None` for text and folder sources, and for
    /// supervised data (`prompt`/`completion` or `messages`).
    pub text: Option<String>,
    /// A second text for pair tasks.
    pub text_pair: Option<String>,
    /// The label column.
    pub label: Option<String>,
    /// The label is the first capture group of this regex applied to the label column.
    pub label_regex: Option<String>,
    /// Supervised causal-LM data: the prompt column (given together with `completion`).
    pub prompt: Option<String>,
    /// Supervised causal-LM data: the completion (answer) column (given together with `prompt`).
    pub completion: Option<String>,
    /// Supervised causal-LM data: the chat column, a list of `{role, content}` messages.
    pub messages: Option<String>,
    /// Image questions (a vision-language model): the column holding each example's image
    /// file, relative to the data file's folder; `prompt` is the question, `completion` the
    /// answer.
    #[serde(default)]
    pub image: Option<String>,
}

impl Fields {
    /// Whether the records are supervised turns (prompt/completion or chat) rather than text.
    pub fn supervised(&self) -> bool {
        self.prompt.is_some() || self.completion.is_some() || self.messages.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub validation: Option<SplitPart>,
    pub test: Option<SplitPart>,
    /// Seed of the shuffle that carves fractions out of the source.
    pub seed: u64,
    /// Fractions are carved in runs of this many consecutive rows (1: single rows), so that
    /// neighbouring rows of one text (lines of a play) land in the same split.
    #[serde(default = "one_row")]
    pub contiguous: u32,
}

fn one_row() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SplitPart {
    /// This fraction of the source's rows (after `max_rows`), drawn with the split seed.
    Fraction { fraction: f64 },
    /// Separate files in the source's format (paths or globs, absolute).
    File { paths: Vec<PathBuf> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Tokens per example before truncation: classification, and supervised causal-LM data
    /// (where it is also the length of a packed row).
    pub max_length: u32,
    pub truncation: Side,
    /// Regexes removed from every text before tokenising (e.g. `http\S+`).
    pub strip: Vec<String>,
    pub lowercase: bool,
    /// Causal LM on plain text: texts are concatenated and cut into blocks of this many tokens.
    pub block_size: u32,
    /// Supervised causal-LM data: which tokens carry the loss.
    pub train_on: TrainOn,
    /// Supervised causal-LM data: pack several examples into one row of `max_length` tokens
    /// without attention across them (`true`), or one padded example per row (`false`).
    pub packing: bool,
}

/// Which tokens of a supervised example carry the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrainOn {
    /// The completion, or the assistant's messages of a chat, only.
    Completions,
    /// Every token of the example.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum BadRowPolicy {
    /// Stop at the first bad row, naming file and line.
    Fail,
    /// Skip bad rows and count them; stop when more than `max` were skipped.
    Skip { max: Option<u64> },
}

// ---------------------------------------------------------------------------------------------
// Model

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub head: Head,
    pub dtype: DType,
    /// Weight-only quantisation of the frozen base linears (kept quantised in memory).
    #[serde(default)]
    pub quantize: Quantize,
    pub device: Device,
    /// A Jinja chat template (a file, absolute) that chat records are rendered with, instead of
    /// the model's own (for a model that ships none, or to render differently).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// `config.json` + `*.safetensors` + `tokenizer.json`.
    HfFolder,
    Gguf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Head {
    CausalLm,
    SequenceClassification { classes: Classes },
    Embedding { pooling: Pooling },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Classes {
    /// The distinct labels of the training data, sorted.
    FromData,
    Names {
        names: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    Mean,
    Cls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// bf16 under `train.precision = bf16`, f32 otherwise (and always f32 when the base itself
    /// trains: `method = full`).
    #[default]
    Auto,
    F32,
    F16,
    Bf16,
}

/// How the frozen base's linear weights are stored: as loaded, or quantised weight-only
/// (int8: symmetric, per output channel; int4: asymmetric, a step and a minimum per group of
/// `group` input columns) and dequantised on the fly in the forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Quantize {
    #[default]
    None,
    Int8,
    Int4 {
        group: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Device {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda {
        index: u32,
    },
}

// ---------------------------------------------------------------------------------------------
// Adapters

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Adapter {
    pub name: String,
    pub targets: Targets,
    pub method: Method,
}

/// Where an adapter goes, kept symbolic: the engine matches it against a real model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// A module is adapted when any selector matches its path…
    pub modules: Vec<Selector>,
    /// …its layer index is in `layers`…
    pub layers: Indices,
    /// …and (for per-head methods) only these heads get units.
    pub heads: Indices,
    /// …unless an exclude selector matches it.
    pub exclude: Vec<Selector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "pattern", rename_all = "snake_case")]
pub enum Selector {
    /// Matches the last component of a module path (`query` matches `…attention.self.query`).
    Name(String),
    /// Matches the whole module path; `*` stays within one component, `**` spans several.
    Glob(String),
    /// Matches the whole module path (anchored).
    Regex(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "indices", rename_all = "snake_case")]
pub enum Indices {
    All,
    /// Sorted, without duplicates.
    Only(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    ArdLora(ArdLora),
    Lora(Lora),
    Dora(Lora),
    #[serde(rename = "adalora")]
    AdaLora(AdaLora),
    Full(Full),
    /// No module is adapted: only the model's task head trains (a linear probe).
    HeadOnly(HeadOnly),
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::ArdLora(_) => "ard_lora",
            Method::Lora(_) => "lora",
            Method::Dora(_) => "dora",
            Method::AdaLora(_) => "adalora",
            Method::Full(_) => "full",
            Method::HeadOnly(_) => "head_only",
        }
    }
}

/// ARD-LoRA as docs/LANGUAGE.md (`method = ard_lora`) defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArdLora {
    /// Base rank: effective rank r = max(1, round(r0·α)).
    pub r0: u32,
    pub alpha: AlphaBounds,
    /// LoRA scale s: ΔW = (s / r0) · B · diag(m) · A.
    pub scale: f64,
    pub dropout: f64,
    /// Units per head-less linear (MLP), split along the output axis.
    pub groups: u32,
    /// Physically shrink r_max as α falls; `None` keeps r_max = ceil(r0·α_max).
    pub compaction: Option<Compaction>,
    pub meta: MetaMode,
    pub regularizer: Regularizer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlphaBounds {
    pub init: f64,
    pub min: f64,
    pub max: f64,
    /// How λ·R(α) moves α.
    #[serde(default)]
    pub update: AlphaUpdate,
}

/// `alpha { update }`: how the regulariser moves α.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlphaUpdate {
    /// α's optimiser steps on the task gradient; then λ·R(α) acts as a proximal step of size
    /// lr_α·λ (TV subgradient, then the ℓ1 soft threshold).
    #[default]
    Proximal,
    /// λ·R(α) is part of the loss; α's optimiser steps on its gradient with the task's.
    Penalty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Compaction {
    pub every: Position,
    /// Ranks kept above what α reaches now.
    pub margin: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetaMode {
    /// α steps together with A and B on every batch (the only mode the trainer implements:
    /// the checker refuses `meta = alternating`).
    Joint,
}

/// R(α) = β·Σ c_u α_u + γ·TV(α), weighted by λ(t) in the objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Regularizer {
    pub lambda: Schedule,
    pub beta: Schedule,
    pub gamma: Schedule,
    pub tv: TvAxis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "axis", rename_all = "snake_case", deny_unknown_fields)]
pub enum TvAxis {
    /// Σ |α_{l+1,h} − α_{l,h}| across layers.
    Depth,
    /// Σ |α_u(t) − EMA(α_u)| with this EMA decay.
    Time { ema_decay: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lora {
    pub rank: u32,
    /// LoRA scale s (PEFT's `lora_alpha`): ΔW = (s / rank) · B · A.
    pub scale: f64,
    pub dropout: f64,
}

/// AdaLoRA, driven automatically by the trainer (PEFT's knobs, same meaning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdaLora {
    pub init_r: u32,
    pub target_r: u32,
    /// Steps of warm-up before pruning starts.
    pub tinit: Position,
    /// Steps at the end with the budget fixed.
    pub tfinal: Position,
    /// Prune every this many steps.
    pub delta_t: Position,
    pub beta1: f64,
    pub beta2: f64,
    pub orth_reg: f64,
    pub scale: f64,
    pub dropout: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Full {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadOnly {}

// ---------------------------------------------------------------------------------------------
// Schedules

/// A value over training time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    Constant {
        value: f64,
    },
    /// `from` until `start`, straight to `to` at `end`, `to` after.
    Linear {
        from: f64,
        to: f64,
        start: Position,
        end: Position,
    },
    /// Half-cosine from `from` at `start` to `to` at `end`.
    Cosine {
        from: f64,
        to: f64,
        start: Position,
        end: Position,
    },
    /// Linear from 0 at step 0 to `then`'s value at `over`, then `then`.
    #[serde(rename = "warmup")]
    WarmUp {
        over: Position,
        then: Box<Schedule>,
    },
    /// `from`, multiplied by `factor` every `every`.
    Step {
        from: f64,
        factor: f64,
        every: Position,
    },
    /// Straight lines between points; constant before the first and after the last.
    Piecewise {
        points: Vec<SchedulePoint>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulePoint {
    pub at: Position,
    pub value: f64,
}

/// A point in training time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
pub enum Position {
    Steps(u64),
    Epochs(f64),
    /// Fraction of the whole training run, 0..=1.
    Fraction(f64),
}

// ---------------------------------------------------------------------------------------------
// Training

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// The dataset whose train split is trained on.
    pub dataset: String,
    pub optimizer: Optimizer,
    pub lr: Schedule,
    /// The task head's learning rate (classification heads); `lr` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_lr: Option<Schedule>,
    /// Multiplies `lr` and `head_lr` (not `alpha_lr`): the knob `ardpipe study --lr-grid` tunes.
    #[serde(default = "one")]
    pub lr_scale: f64,
    /// Optimizer of the ARD α parameters (no weight decay).
    pub alpha_optimizer: Optimizer,
    pub alpha_lr: Schedule,
    pub batch_size: u32,
    pub grad_accum: u32,
    pub duration: Duration,
    /// Global gradient-norm clipping.
    pub clip: Option<f64>,
    pub precision: Precision,
    /// Recompute activations in the backward pass instead of keeping them.
    #[serde(default)]
    pub checkpointing: Checkpointing,
    pub seed: u64,
    pub log_every: Position,
    pub eval_every: Option<Position>,
    pub checkpoint_every: Option<Position>,
    pub early_stopping: Option<EarlyStopping>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    #[serde(rename = "adamw")]
    AdamW {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        /// One second moment for the whole group (the mean of g² over all its elements), so
        /// steps keep the gradients' relative sizes: α's default.
        #[serde(default)]
        pooled: bool,
    },
    Sgd {
        momentum: f64,
        weight_decay: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
pub enum Duration {
    Steps(u64),
    Epochs(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    /// bf16 autocast, f32 master weights.
    Bf16,
    /// f16 autocast with dynamic loss scaling (engine/adapters/src/optim/loss_scale.rs).
    F16,
}

/// Gradient checkpointing: what the forward pass keeps for the backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Checkpointing {
    /// Every activation the backward pass needs is kept.
    #[default]
    None,
    /// Only each decoder layer's input is kept; the layer runs again in the backward pass.
    Layers,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    pub metric: Metric,
    pub mode: Goal,
    /// Evaluations without improvement before stopping.
    pub patience: u32,
    pub min_delta: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    Min,
    Max,
}

// ---------------------------------------------------------------------------------------------
// Evaluation and output

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluate {
    pub dataset: String,
    pub split: SplitName,
    pub metrics: Vec<Metric>,
    pub batch_size: u32,
    /// Evaluate the split's first this many examples (units) only; `None`: all of them.
    #[serde(default)]
    pub max_examples: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SplitName {
    Train,
    Validation,
    Test,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Metric {
    Loss,
    Perplexity,
    /// Classification: the share of examples classified right. Causal LM: the share of
    /// trained-on (answer) tokens predicted right, teacher-forced.
    Accuracy,
    MacroF1,
    /// Causal LM: the share of examples whose every answer token is the model's greedy choice
    /// given the tokens before it, i.e. whose answer greedy decoding reproduces exactly.
    ExactMatch,
    /// A named scalar reported by a metric plugin.
    Plugin {
        plugin: String,
        /// Which of the plugin's scalars (`None`: all of them, the first for early stopping).
        name: Option<String>,
        options: BTreeMap<String, OptionValue>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Run directory template (absolute); `{name}`, `{variant}`, `{seed}` and `{timestamp}`
    /// are filled in when the run starts.
    pub dir: String,
    pub export: Vec<Export>,
    pub report: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Export {
    /// A Hugging Face PEFT LoRA adapter (ARD folds into per-module `rank_pattern`).
    Peft,
    /// `merged/`: the model with its adapters folded in (and the trained head), as a complete
    /// Hugging Face folder (config.json, tokenizer files, safetensors in the base model's dtype,
    /// f32 for a GGUF base) that transformers loads with `from_pretrained`.
    Merged,
}

// ---------------------------------------------------------------------------------------------
// Distributed (data-parallel) training

/// How the processes of a data-parallel run talk to each other. One process ignores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Distributed {
    pub backend: DistBackend,
    /// Gradient all-reduce bucket size, in MiB (0 < bucket_mb <= 1024).
    pub bucket_mb: f64,
    /// How long a collective or the rendezvous may wait before the run fails, in seconds.
    pub timeout_seconds: f64,
}

impl Default for Distributed {
    fn default() -> Distributed {
        Distributed {
            backend: DistBackend::Auto,
            bucket_mb: 25.0,
            timeout_seconds: 1800.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DistBackend {
    /// NCCL when the model's device is CUDA, Gloo on the CPU.
    Auto,
    /// CPU and CUDA.
    Gloo,
    /// CUDA only.
    Nccl,
}
