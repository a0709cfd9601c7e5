//! Nothing parsed and ignored: every key of the resolved pipeline's JSON Schema
//! (`schemas/pipeline.schema.json`: each field of each type, each variant of each enum) has an
//! entry below saying how it reaches the engine, or that `check` refuses it, and the entry is
//! verified. A key added to the schema without an entry fails this test, and so does an entry
//! whose key left the schema.
//!
//! The kinds of evidence, strongest first:
//! - [`Reach::Plan`]: behavioural. `ardpipe plan --format json` of `pipelines/quickstart.ard`
//!   with these `--set`s plans differently (the engine's plan, not the resolved pipeline).
//! - [`Reach::Refused`]: `ardpipe plan` (the checker, then the engine's planner) of the
//!   quickstart with this text appended and these `--set`s fails, saying this.
//! - [`Reach::Destructures`]: `needle` in `file` opens a pattern of this variant that names
//!   every field and has no `..`: adding a field breaks the build, and rustc's unused-variable
//!   lint (an error under clippy `-D warnings`) makes every bound field used. It covers the
//!   variant's fields too; the test checks that each one is named in the pattern.
//! - [`Reach::Reads`]: static. The engine (a file outside `dsl/`) reads the key where `needle`
//!   stands; deleting that read without updating this table fails the test.
//! - [`Reach::Holds`]: the value is a block, a list or a variant of other keys, each with its
//!   own entry (checked: the schema must show a composite value, never a scalar).
//! - [`Reach::Label`]: identifies the pipeline or run and is deliberately not a setting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use crate::{ardpipe, stderr, stdout};

#[derive(Debug, Clone, Copy)]
enum Reach {
    Plan(&'static [&'static str]),
    Refused(&'static str, &'static [&'static str], &'static str),
    Destructures(&'static str, &'static str),
    Reads(&'static str, &'static str),
    Holds,
    Label(&'static str),
}

use Reach::*;

const CONVERT: &str = "engine/core/src/convert.rs";
const SETUP: &str = "engine/core/src/train/setup.rs";
const DATASET: &str = "engine/core/src/train/dataset.rs";
const PLUGINS: &str = "engine/core/src/train/plugins.rs";
const PLUGIN_RECORDS: &str = "engine/core/src/train/plugin_records.rs";
const BATCHES: &str = "engine/core/src/train/batches.rs";
const RUN_LOOP: &str = "engine/core/src/train/run_loop.rs";
const PLAN: &str = "engine/core/src/plan.rs";
const MEMORY: &str = "engine/core/src/memory.rs";

/// Every key of the schema, and how it reaches the engine.
#[rustfmt::skip]
const KEYS: &[(&str, Reach)] = &[
    // The pipeline itself.
    ("Pipeline.adapters", Holds),
    ("Pipeline.datasets", Holds),
    ("Pipeline.description", Label("documentation; kept in the run's resolved pipeline")),
    ("Pipeline.distributed", Holds),
    ("Pipeline.evaluate", Holds),
    ("Pipeline.file", Reads(SETUP, "pipeline_file: Some(&settings.file)")),
    ("Pipeline.format", Label("the version of this structure, set by the checker itself")),
    ("Pipeline.language", Label("the language version the file is written in: the checker refuses a newer one and `ardpipe migrate` upgrades an older one (tests/cli/migrate.rs)")),
    ("Pipeline.model", Holds),
    ("Pipeline.name", Reads(SETUP, "(\"name\", settings.name.as_str())")),
    ("Pipeline.output", Holds),
    ("Pipeline.plugins", Holds),
    ("Pipeline.seed", Reads(SETUP, "seeds.insert(\"pipeline\".to_string(), settings.seed)")),
    ("Pipeline.train", Holds),
    ("Pipeline.variants", Holds),
    ("Variant.name", Reads("cli/src/commands/run.rs", "variant.to_string()")),
    ("Variant.pipeline", Holds),
    // Plugins.
    ("Plugin.abi", Reads("engine/core/src/train/plugins.rs", "block.abi != ABI_VERSION")),
    ("Plugin.library", Reads("engine/core/src/train/plugins.rs", "load_kind(&block.library, kind)")),
    ("Plugin.name", Reads(PLUGINS, "plugins.iter().find(|b| b.name == name)")),
    // Data.
    ("Dataset.fields", Holds),
    ("Dataset.max_rows", Reads(DATASET, "spec.preprocess.max_rows = ds\n        .max_rows")),
    ("Dataset.name", Reads(BATCHES, "label_vocabulary(classes, &train_raw, &ds.name)")),
    ("Dataset.on_bad_row", Holds),
    ("Dataset.preprocess", Holds),
    ("Dataset.source", Holds),
    ("Dataset.split", Holds),
    ("Fields.label", Reads(DATASET, "label: f.label.clone()")),
    ("Fields.label_regex", Reads(DATASET, "spec.preprocess.label_regex = f.label_regex.clone()")),
    ("Fields.text", Reads(DATASET, "text: f.text.clone()")),
    ("Fields.text_pair", Reads(DATASET, "text_pair: f.text_pair.clone()")),
    ("Fields.prompt", Reads(DATASET, "prompt: f.prompt.clone()")),
    ("Fields.completion", Reads(DATASET, "completion: f.completion.clone()")),
    ("Fields.messages", Reads(DATASET, "messages: f.messages.clone()")),
    ("Fields.image", Reads(DATASET, "image: f.image.clone()")),
    ("Preprocess.train_on", Reads(BATCHES, "let train_on = match pre.train_on {")),
    ("Preprocess.packing", Reads(BATCHES, "packing: pre.packing,")),
    ("TrainOn=completions", Reads(BATCHES, "p::TrainOn::Completions => ardpipe_data::TrainOn::Completions")),
    ("TrainOn=all", Reads(BATCHES, "p::TrainOn::All => ardpipe_data::TrainOn::All")),
    ("BadRowPolicy{policy=fail}", Reads(DATASET, "p::BadRowPolicy::Fail => (OnError::Stop, None)")),
    ("BadRowPolicy{policy=skip}", Reads(DATASET, "p::BadRowPolicy::Skip { max } => (")),
    ("BadRowPolicy{policy=skip}.max", Reads(DATASET, "p::BadRowPolicy::Skip { max } => (")),
    ("Preprocess.block_size", Reads(BATCHES, "let block = pre.block_size as usize")),
    ("Preprocess.lowercase", Reads(DATASET, "spec.preprocess.lowercase = ds.preprocess.lowercase")),
    ("Preprocess.max_length", Plan(&["dataset.tweets.preprocess.max_length=32"])),
    ("Preprocess.strip", Reads(DATASET, "spec.preprocess.strip = ds.preprocess.strip.clone()")),
    ("Preprocess.truncation", Reads(BATCHES, "side(pre.truncation)")),
    ("Side=left", Reads(BATCHES, "p::Side::Left => TruncationSide::Left")),
    ("Side=right", Reads(BATCHES, "p::Side::Right => TruncationSide::Right")),
    ("Source{format=csv}", Reads(DATASET, "} => Format::Csv {")),
    ("Source{format=csv}.delimiter", Reads(DATASET, "delimiter: *delimiter,")),
    ("Source{format=csv}.header", Reads(DATASET, "header: *header,")),
    ("Source{format=csv}.paths", Reads(DATASET, "read(pipeline, ds, ds.source.paths(), &mut skipped)")),
    ("Source{format=jsonl}", Reads(DATASET, "p::Source::Jsonl { .. } | p::Source::Plugin { .. } => Format::Jsonl")),
    ("Source{format=jsonl}.paths", Reads(DATASET, "read(pipeline, ds, ds.source.paths(), &mut skipped)")),
    ("Source{format=text}", Reads(DATASET, "p::Source::Text { mode, .. } => Format::Text {")),
    ("Source{format=text}.mode", Reads(DATASET, "mode: match mode {")),
    ("Source{format=text}.paths", Reads(DATASET, "read(pipeline, ds, ds.source.paths(), &mut skipped)")),
    ("Source{format=folders}", Reads(DATASET, "p::Source::Folders { .. } => Format::FolderPerClass")),
    ("Source{format=folders}.paths", Reads(DATASET, "read(pipeline, ds, ds.source.paths(), &mut skipped)")),
    ("Source{format=image_folders}", Reads(DATASET, "p::Source::ImageFolders { .. } => Format::ImageFolderPerClass")),
    ("Source{format=image_folders}.paths", Reads(DATASET, "read(pipeline, ds, ds.source.paths(), &mut skipped)")),
    ("Source{format=image_folders}.question", Reads(DATASET, "} => class_questions(&store, question, answer)?")),
    ("Source{format=image_folders}.answer", Reads(DATASET, "} => class_questions(&store, question, answer)?")),
    ("Source{format=parquet}", Reads(DATASET, "p::Source::Parquet { .. } => Format::Parquet")),
    ("Source{format=parquet}.paths", Reads(DATASET, "read(pipeline, ds, ds.source.paths(), &mut skipped)")),
    ("Source{format=plugin}", Reads(DATASET, "} => super::plugin_records::read(pipeline, ds, plugin, options, paths.first(), &spec)?")),
    ("Source{format=plugin}.options", Reads(PLUGIN_RECORDS, "plugins::options_json(options, path.map(PathBuf::as_path), &site)")),
    ("Source{format=plugin}.path", Reads(PLUGIN_RECORDS, "plugins::options_json(options, path.map(PathBuf::as_path), &site)")),
    ("Source{format=plugin}.plugin", Reads(PLUGIN_RECORDS, "plugins::load(&pipeline.plugins, plugin, Kind::Loader, &site)")),
    ("TextMode{mode=lines}", Reads(DATASET, "p::TextMode::Lines => TextMode::Lines")),
    ("TextMode{mode=documents}", Reads(DATASET, "p::TextMode::Documents => TextMode::File")),
    ("TextMode{mode=separator}", Reads(DATASET, "p::TextMode::Separator { line } => TextMode::Separator(line.clone())")),
    ("TextMode{mode=separator}.line", Reads(DATASET, "p::TextMode::Separator { line } => TextMode::Separator(line.clone())")),
    ("Split.seed", Reads(DATASET, "fraction(&ds.split.test),\n        ds.split.seed,")),
    ("Split.contiguous", Reads(DATASET, "ds.split.contiguous as usize")),
    ("Split.test", Reads(DATASET, "fraction(&ds.split.test)")),
    ("Split.validation", Reads(DATASET, "fraction(&ds.split.validation)")),
    ("SplitPart{kind=fraction}", Reads(DATASET, "Some(p::SplitPart::Fraction { fraction }) => *fraction")),
    ("SplitPart{kind=fraction}.fraction", Reads(DATASET, "Some(p::SplitPart::Fraction { fraction }) => *fraction")),
    ("SplitPart{kind=file}", Reads(DATASET, "Some(p::SplitPart::File { paths }) => {")),
    ("SplitPart{kind=file}.paths", Reads(DATASET, "read(pipeline, ds, paths, &mut skipped)")),
    ("SplitName=train", Reads(DATASET, "p::SplitName::Train => (&None, &split.train)")),
    ("SplitName=validation", Reads(DATASET, "p::SplitName::Validation => (&ds.split.validation, &split.validation)")),
    ("SplitName=test", Reads(DATASET, "p::SplitName::Test => (&ds.split.test, &split.test)")),
    // The model.
    ("Model.chat_template", Reads(BATCHES, "if let Some(path) = &pipeline.model.chat_template {")),
    ("Model.device", Reads(SETUP, "device(&settings.model.device)")),
    ("Model.dtype", Plan(&["model.dtype=bf16", "train.precision=bf16"])),
    ("Model.format", Refused("", &["model.format=gguf"], "model.format = gguf but")),
    ("Model.quantize", Plan(&["model.quantize=int8"])),
    ("Quantize{kind=none}", Reads(CONVERT, "p::Quantize::None => None")),
    ("Quantize{kind=int8}", Reads(CONVERT, "p::Quantize::Int8 => Some(QuantScheme::Int8)")),
    ("Quantize{kind=int4}", Destructures(CONVERT, "p::Quantize::Int4 { group }")),
    ("Model.head", Holds),
    ("Model.path", Reads(PLAN, "describe(&pipeline.model.path)")),
    ("ModelFormat=gguf", Reads(PLAN, "p::ModelFormat::Gguf")),
    ("ModelFormat=hf_folder", Reads(PLAN, "p::ModelFormat::HfFolder")),
    ("DType=auto", Reads(PLAN, "p::DType::Auto => match train.precision {")),
    ("DType=f32", Reads(SETUP, "p::DType::F32 | p::DType::Auto => StorageDtype::F32")),
    ("DType=f16", Reads(SETUP, "p::DType::F16 => StorageDtype::F16")),
    ("DType=bf16", Reads(SETUP, "p::DType::Bf16 => StorageDtype::Bf16")),
    ("Device{kind=auto}", Reads(SETUP, "p::Device::Auto =>")),
    ("Device{kind=cpu}", Reads(SETUP, "p::Device::Cpu =>")),
    ("Device{kind=cuda}", Destructures(SETUP, "p::Device::Cuda { index }")),
    ("Head{kind=causal_lm}", Reads(SETUP, "p::Head::CausalLm =>")),
    ("Head{kind=sequence_classification}", Reads(SETUP, "p::Head::SequenceClassification { .. } =>")),
    // The quickstart data's 16 labels and one more class: a 17-way head (the plan compiles the
    // data, so every training label must be among the classes).
    ("Head{kind=sequence_classification}.classes", Plan(&["model.classes=[\"KaiserHealthNews\", \"NBChealth\", \"bbchealth\", \"cbchealth\", \"cnnhealth\", \"everydayhealth\", \"foxnewshealth\", \"gdnhealthcare\", \"goodhealth\", \"latimeshealth\", \"msnhealthnews\", \"nprhealth\", \"nytimeshealth\", \"reuters_health\", \"usnewshealth\", \"wsjhealth\", \"other\"]"])),
    ("Head{kind=embedding}", Refused("", &["model.head=embedding"], "ardpipe::dsl::not_implemented")),
    ("Head{kind=embedding}.pooling", Refused("", &["model.head=embedding", "model.pooling=cls"], "ardpipe::dsl::not_implemented")),
    ("Pooling=mean", Refused("", &["model.head=embedding", "model.pooling=mean"], "ardpipe::dsl::not_implemented")),
    ("Pooling=cls", Refused("", &["model.head=embedding", "model.pooling=cls"], "ardpipe::dsl::not_implemented")),
    ("Classes{kind=from_data}", Reads(BATCHES, "p::Classes::FromData =>")),
    ("Classes{kind=names}", Destructures(BATCHES, "p::Classes::Names { names }")),
    // Adapters.
    ("Adapter.method", Holds),
    ("Adapter.name", Reads(SETUP, "blocks.push((a.name.clone(), method, paths))")),
    ("Adapter.targets", Holds),
    ("Targets.exclude", Plan(&["adapter.qv.exclude=[\"bert.encoder.layer.0.attention.self.query\"]"])),
    ("Targets.heads", Refused("", &["adapter.qv.heads=0..6"], "placing ARD-LoRA units on a subset of heads is not supported")),
    ("Targets.layers", Plan(&["adapter.qv.layers=0..3"])),
    ("Targets.modules", Plan(&["adapter.qv.modules=[query]"])),
    ("Indices{kind=all}", Reads(PLAN, "p::Indices::All")),
    ("Indices{kind=only}", Plan(&["adapter.qv.layers=0..3"])),
    ("Indices{kind=only}.indices", Plan(&["adapter.qv.layers=0..3"])),
    ("Selector{kind=name}", Destructures(PLAN, "p::Selector::Name(n)")),
    ("Selector{kind=name}.pattern", Plan(&["adapter.qv.modules=[query]"])),
    ("Selector{kind=glob}", Plan(&["adapter.qv.modules=[\"bert.encoder.layer.1.*.self.query\"]"])),
    ("Selector{kind=glob}.pattern", Plan(&["adapter.qv.modules=[\"bert.encoder.layer.1.*.self.query\"]"])),
    ("Selector{kind=regex}", Plan(&["adapter.qv.modules=[regex('.*layer\\.2.*query')]"])),
    ("Selector{kind=regex}.pattern", Plan(&["adapter.qv.modules=[regex('.*layer\\.2.*query')]"])),
    ("Method{method=ard_lora}", Reads(CONVERT, "p::Method::ArdLora(c) => MethodConfig::ArdLora")),
    ("Method{method=ard_lora}.alpha", Holds),
    ("Method{method=ard_lora}.compaction", Holds),
    ("Method{method=ard_lora}.dropout", Reads(CONVERT, "dropout: c.dropout")),
    ("Method{method=ard_lora}.groups", Reads(CONVERT, "groups: c.groups as usize")),
    ("Method{method=ard_lora}.meta", Holds),
    ("Method{method=ard_lora}.r0", Plan(&["adapter.qv.r0=4"])),
    ("Method{method=ard_lora}.regularizer", Holds),
    ("Method{method=ard_lora}.scale", Reads(CONVERT, "scale: c.scale")),
    ("AlphaBounds.init", Plan(&["adapter.qv.alpha.init=0.5"])),
    ("AlphaBounds.max", Plan(&["adapter.qv.alpha.max=3"])),
    ("AlphaBounds.min", Reads(CONVERT, "alpha_min: c.alpha.min")),
    ("AlphaBounds.update", Reads(CONVERT, "alpha_update: match c.alpha.update {")),
    ("AlphaUpdate=proximal", Reads(CONVERT, "p::AlphaUpdate::Proximal => AlphaUpdate::Proximal")),
    ("AlphaUpdate=penalty", Reads(CONVERT, "p::AlphaUpdate::Penalty => AlphaUpdate::Penalty")),
    ("Compaction.every", Reads(CONVERT, "position_steps(&k.every, total, per_epoch)")),
    ("Compaction.margin", Reads(CONVERT, "k.margin as usize")),
    ("MetaMode{mode=joint}", Label("the one mode of the language and the trainer (train/mod.rs): α steps with A and B on every batch; any other value is refused by check")),
    ("Regularizer.beta", Reads(PLAN, "&c.regularizer.beta, 1.0)")),
    ("Regularizer.gamma", Reads(PLAN, "&c.regularizer.gamma, 1.0)")),
    ("Regularizer.lambda", Reads(PLAN, "&c.regularizer.lambda, 1.0)")),
    ("Regularizer.tv", Holds),
    ("TvAxis{axis=depth}", Reads(CONVERT, "p::TvAxis::Depth => TvMode::Depth")),
    ("TvAxis{axis=time}", Reads(CONVERT, "p::TvAxis::Time { .. } => TvMode::Time")),
    ("TvAxis{axis=time}.ema_decay", Destructures(CONVERT, "p::TvAxis::Time { ema_decay }")),
    ("Method{method=lora}", Reads(CONVERT, "p::Method::Lora(c) => MethodConfig::Lora(lora(c))")),
    ("Method{method=lora}.dropout", Reads(CONVERT, "dropout: c.dropout")),
    ("Method{method=lora}.rank", Reads(CONVERT, "r: c.rank as usize")),
    ("Method{method=lora}.scale", Reads(CONVERT, "lora_alpha: c.scale")),
    ("Method{method=dora}", Reads(CONVERT, "p::Method::Dora(c) => MethodConfig::Dora(lora(c))")),
    ("Method{method=dora}.dropout", Reads(CONVERT, "dropout: c.dropout")),
    ("Method{method=dora}.rank", Reads(CONVERT, "r: c.rank as usize")),
    ("Method{method=dora}.scale", Reads(CONVERT, "lora_alpha: c.scale")),
    ("Method{method=adalora}", Reads(CONVERT, "p::Method::AdaLora(c) => MethodConfig::Adalora")),
    ("Method{method=adalora}.beta1", Reads(CONVERT, "beta1: c.beta1")),
    ("Method{method=adalora}.beta2", Reads(CONVERT, "beta2: c.beta2")),
    ("Method{method=adalora}.delta_t", Reads(CONVERT, "position_steps(&c.delta_t, total, per_epoch)")),
    ("Method{method=adalora}.dropout", Reads(CONVERT, "dropout: c.dropout")),
    ("Method{method=adalora}.init_r", Reads(CONVERT, "init_r: c.init_r as usize")),
    ("Method{method=adalora}.orth_reg", Reads(CONVERT, "orth_reg_weight: c.orth_reg")),
    ("Method{method=adalora}.scale", Reads(CONVERT, "lora_alpha: c.scale")),
    ("Method{method=adalora}.target_r", Reads(CONVERT, "target_r: c.target_r as usize")),
    ("Method{method=adalora}.tfinal", Reads(CONVERT, "position_steps(&c.tfinal, total, per_epoch)")),
    ("Method{method=adalora}.tinit", Reads(CONVERT, "position_steps(&c.tinit, total, per_epoch)")),
    ("Method{method=full}", Reads(CONVERT, "p::Method::Full(_) => MethodConfig::Full")),
    ("Method{method=head_only}", Reads(CONVERT, "p::Method::HeadOnly(_) => MethodConfig::HeadOnly")),
    // Schedules and positions.
    ("Schedule{kind=constant}", Destructures(CONVERT, "p::Schedule::Constant { value }")),
    ("Schedule{kind=linear}", Destructures(CONVERT, "p::Schedule::Linear {")),
    ("Schedule{kind=cosine}", Destructures(CONVERT, "p::Schedule::Cosine {")),
    ("Schedule{kind=warmup}", Destructures(CONVERT, "p::Schedule::WarmUp { over, then }")),
    ("Schedule{kind=step}", Destructures(CONVERT, "p::Schedule::Step {")),
    ("Schedule{kind=piecewise}", Destructures(CONVERT, "p::Schedule::Piecewise { points }")),
    ("SchedulePoint.at", Reads(CONVERT, "at: position(&pt.at)")),
    ("SchedulePoint.value", Reads(CONVERT, "value: pt.value")),
    ("Position{unit=steps}", Destructures(CONVERT, "p::Position::Steps(s) => Position::Steps(s)")),
    ("Position{unit=epochs}", Destructures(CONVERT, "p::Position::Epochs(e) => Position::Epochs(e)")),
    ("Position{unit=fraction}", Destructures(CONVERT, "p::Position::Fraction(f) => Position::Fraction(f)")),
    ("Duration{unit=steps}", Plan(&["train.steps=300"])),
    ("Duration{unit=steps}.value", Plan(&["train.steps=300"])),
    ("Duration{unit=epochs}", Destructures(PLAN, "p::Duration::Epochs(e) if")),
    // Training.
    ("Train.alpha_lr", Reads(PLAN, "add(\"train.alpha_lr\", &t.alpha_lr, 1.0)")),
    ("Train.head_lr", Plan(&["train.head_lr=1e-2"])),
    ("Train.lr_scale", Plan(&["train.lr_scale=2"])),
    ("Train.alpha_optimizer", Reads(SETUP, "&settings.train.alpha_optimizer")),
    ("Train.batch_size", Plan(&["train.batch_size=8"])),
    ("Train.checkpoint_every", Reads(SETUP, ".checkpoint_every")),
    ("Train.clip", Reads("engine/core/src/train/mod.rs", "self.plan.settings.train.clip")),
    ("Train.dataset", Reads(PLAN, "d.name == pipeline.train.dataset")),
    ("Train.duration", Holds),
    ("Train.early_stopping", Holds),
    ("Train.eval_every", Reads(SETUP, "eval_every: t.eval_every.as_ref().map(pos)")),
    ("Train.grad_accum", Plan(&["train.grad_accum=2"])),
    ("Train.log_every", Reads(SETUP, "log_every: pos(&t.log_every)")),
    ("Train.lr", Plan(&["train.lr=1e-4"])),
    ("Train.optimizer", Reads(SETUP, "&settings.train.optimizer")),
    ("Train.precision", Reads(SETUP, "match settings.train.precision {")),
    ("Train.checkpointing", Reads(SETUP, "if settings.train.checkpointing == p::Checkpointing::Layers {")),
    ("Checkpointing=none", Reads(MEMORY, "pipeline.train.checkpointing == p::Checkpointing::Layers")),
    ("Checkpointing=layers", Refused("", &["train.checkpointing=layers"], "recomputes decoder layers")),
    ("Train.seed", Reads("engine/core/src/train/mod.rs", "seed_torch_for_step(self.plan.settings.train.seed")),
    ("Precision=f32", Reads(SETUP, "p::Precision::F32 => None")),
    ("Precision=bf16", Reads(SETUP, "p::Precision::Bf16 => Some(StorageDtype::Bf16)")),
    ("Precision=f16", Reads("engine/core/src/train/loss_scale.rs", "p::Precision::F16")),
    ("Optimizer{kind=adamw}", Reads(SETUP, "p::Optimizer::AdamW {\n            beta1, beta2, eps, ..")),
    ("Optimizer{kind=adamw}.beta1", Reads(SETUP, "p::Optimizer::AdamW {\n            beta1, beta2, eps, ..")),
    ("Optimizer{kind=adamw}.beta2", Reads(SETUP, "p::Optimizer::AdamW {\n            beta1, beta2, eps, ..")),
    ("Optimizer{kind=adamw}.eps", Reads(SETUP, "p::Optimizer::AdamW {\n            beta1, beta2, eps, ..")),
    ("Optimizer{kind=adamw}.weight_decay", Reads(SETUP, "p::Optimizer::AdamW { weight_decay, .. } | p::Optimizer::Sgd { weight_decay, .. }")),
    ("Optimizer{kind=adam}", Destructures(SETUP, "p::Optimizer::Adam {\n            beta1,\n            beta2,\n            eps,\n            pooled,\n        }")),
    ("Optimizer{kind=sgd}", Reads(SETUP, "p::Optimizer::Sgd { momentum, .. }")),
    ("Optimizer{kind=sgd}.momentum", Reads(SETUP, "p::Optimizer::Sgd { momentum, .. }")),
    ("Optimizer{kind=sgd}.weight_decay", Reads(SETUP, "p::Optimizer::AdamW { weight_decay, .. } | p::Optimizer::Sgd { weight_decay, .. }")),
    ("EarlyStopping.metric", Holds),
    ("EarlyStopping.min_delta", Reads(RUN_LOOP, "v > b + es.min_delta")),
    ("EarlyStopping.mode", Reads(RUN_LOOP, "match (self.state.best_metric, es.mode)")),
    ("EarlyStopping.patience", Reads(RUN_LOOP, ">= es.patience")),
    ("Goal=min", Reads(RUN_LOOP, "p::Goal::Min")),
    ("Goal=max", Reads(RUN_LOOP, "p::Goal::Max")),
    // Evaluation.
    ("Evaluate.batch_size", Reads(BATCHES, ".map(|e| e.batch_size)")),
    ("Evaluate.max_examples", Plan(&["evaluate.max_examples=5"])),
    ("Evaluate.dataset", Refused("dataset other {\n    format = jsonl\n    path = \"x.jsonl\"\n}\n", &["train.dataset=tweets", "evaluate.dataset=other"], "ardpipe::dsl::not_implemented")),
    ("Evaluate.metrics", Reads("engine/core/src/train/metric_plugins.rs", "evaluate.metrics.iter()")),
    ("Evaluate.split", Reads(DATASET, ".map(|e| e.split)")),
    ("Metric{kind=loss}", Reads(RUN_LOOP, "p::Metric::Loss")),
    ("Metric{kind=perplexity}", Reads(RUN_LOOP, "p::Metric::Perplexity")),
    ("Metric{kind=accuracy}", Reads(RUN_LOOP, "p::Metric::Accuracy")),
    ("Metric{kind=exact_match}", Reads(RUN_LOOP, "p::Metric::ExactMatch =>")),
    ("Metric{kind=macro_f1}", Reads(RUN_LOOP, "p::Metric::MacroF1")),
    ("Metric{kind=plugin}", Reads("engine/core/src/train/metric_plugins.rs", "p::Metric::Plugin {")),
    ("Metric{kind=plugin}.name", Reads("engine/core/src/train/metric_plugins.rs", "p::Metric::Plugin {")),
    ("Metric{kind=plugin}.options", Reads("engine/core/src/train/metric_plugins.rs", "p::Metric::Plugin {")),
    ("Metric{kind=plugin}.plugin", Reads("engine/core/src/train/metric_plugins.rs", "p::Metric::Plugin {")),
    // Outputs.
    ("Output.dir", Reads(SETUP, "&settings.output.dir")),
    ("Output.export", Reads("engine/core/src/train/export.rs", "self.plan.settings.output.export")),
    ("Output.report", Reads("engine/core/src/train/export.rs", "!self.plan.settings.output.report")),
    ("Export=peft", Reads("engine/core/src/train/export.rs", "p::Export::Peft => self.export_peft()")),
    ("Export=merged", Reads("engine/core/src/train/export.rs", "p::Export::Merged => self.export_merged()")),
    // Data parallelism.
    ("Distributed.backend", Reads("cli/src/commands/launch.rs", "match d.backend {")),
    ("Distributed.bucket_mb", Reads(SETUP, "DataParallel::new(g, settings.distributed.bucket_mb)")),
    ("Distributed.timeout_seconds", Reads("cli/src/commands/launch.rs", "Duration::from_secs_f64(d.timeout_seconds)")),
    ("DistBackend=auto", Reads("cli/src/commands/launch.rs", "DistBackend::Auto")),
    ("DistBackend=gloo", Reads("cli/src/commands/launch.rs", "DistBackend::Gloo")),
    ("DistBackend=nccl", Reads("cli/src/commands/launch.rs", "DistBackend::Nccl")),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The keys of a JSON Schema: `Type.field` for each field of each type, `Enum=value` for each
/// unit variant, `Enum{tag=value}` (and `Enum{tag=value}.field`) for each tagged variant.
/// Untagged unions of plain values (plugin options) are values, not keys.
fn schema_keys(schema: &Value) -> BTreeMap<String, Value> {
    let mut keys = BTreeMap::new();
    let mut types: Vec<(String, &Value)> = vec![("Pipeline".into(), schema)];
    for (name, def) in schema["$defs"].as_object().expect("$defs") {
        types.push((name.clone(), def));
    }
    for (name, def) in types {
        for alt in ["oneOf", "anyOf"] {
            for v in def[alt].as_array().into_iter().flatten() {
                if let Some(c) = v.get("const") {
                    keys.insert(format!("{name}={}", c.as_str().unwrap()), v.clone());
                }
                for e in v["enum"].as_array().into_iter().flatten() {
                    keys.insert(format!("{name}={}", e.as_str().unwrap()), v.clone());
                }
                let props = v["properties"].as_object();
                let tag = props.and_then(|p| {
                    p.iter()
                        .find_map(|(k, s)| s.get("const").map(|c| (k.clone(), c.clone())))
                });
                if let (Some((tag, value)), Some(props)) = (tag, props) {
                    let variant = format!("{name}{{{tag}={}}}", value.as_str().unwrap());
                    keys.insert(variant.clone(), v.clone());
                    for (field, s) in props {
                        if *field != tag {
                            keys.insert(format!("{variant}.{field}"), s.clone());
                        }
                    }
                }
            }
        }
        for e in def["enum"].as_array().into_iter().flatten() {
            keys.insert(format!("{name}={}", e.as_str().unwrap()), Value::Null);
        }
        for (field, s) in def["properties"].as_object().into_iter().flatten() {
            keys.insert(format!("{name}.{field}"), s.clone());
        }
    }
    keys
}

fn schema() -> Value {
    let text = std::fs::read_to_string(repo().join("schemas/pipeline.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_schema_key_has_an_entry_and_no_entry_is_stale() {
    let keys = schema_keys(&schema());
    let table: BTreeSet<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    assert_eq!(table.len(), KEYS.len(), "a key is listed twice in KEYS");
    let covered_by_variant = |k: &str| {
        KEYS.iter().any(|(v, r)| {
            matches!(r, Destructures(..)) && k.strip_prefix(v).is_some_and(|f| f.starts_with('.'))
        })
    };
    let missing: Vec<&String> = keys
        .keys()
        .filter(|k| !table.contains(k.as_str()) && !covered_by_variant(k))
        .collect();
    assert!(
        missing.is_empty(),
        "schema keys with no entry in tests/cli/pipeline_keys.rs: {missing:#?}\n\
         say how the engine reads each (or make `check` refuse it)"
    );
    let stale: Vec<&&str> = table.iter().filter(|k| !keys.contains_key(**k)).collect();
    assert!(
        stale.is_empty(),
        "entries for keys the schema no longer has: {stale:#?}"
    );
}

/// The pattern that starts at `needle` in `text`, up to its closing bracket.
fn pattern_at<'a>(text: &'a str, needle: &str) -> &'a str {
    let start = text.find(needle).unwrap();
    let rest = &text[start..];
    let Some(open) = rest.find(['{', '(']) else {
        return rest.lines().next().unwrap();
    };
    let mut depth = 0;
    for (i, c) in rest[open..].char_indices() {
        match c {
            '{' | '(' => depth += 1,
            '}' | ')' => {
                depth -= 1;
                if depth == 0 {
                    return &rest[..open + i + 1];
                }
            }
            _ => {}
        }
    }
    rest
}

#[test]
fn every_static_entry_points_at_a_real_read() {
    let keys = schema_keys(&schema());
    let mut failures = Vec::new();
    for (key, reach) in KEYS {
        match *reach {
            Reads(file, needle) | Destructures(file, needle) => {
                assert!(
                    !file.starts_with("dsl/"),
                    "{key}: the dsl is not the engine"
                );
                let text = std::fs::read_to_string(repo().join(file))
                    .unwrap_or_else(|e| panic!("{key}: {file}: {e}"));
                if !text.contains(needle) {
                    failures.push(format!("{key}: {file} no longer contains {needle:?}"));
                    continue;
                }
                if let Destructures(..) = reach {
                    let pattern = pattern_at(&text, needle);
                    if pattern.contains("..") || pattern.contains("(_") || pattern.contains(": _") {
                        failures.push(format!("{key}: {pattern:?} skips fields (`..` or `_`)"));
                    }
                    // A tuple variant (`Steps(s)`, its one field named `value` in the schema)
                    // binds by position; a struct variant must name each field.
                    let tuple = pattern
                        .find(['{', '('])
                        .is_some_and(|i| &pattern[i..i + 1] == "(");
                    for k in keys.keys() {
                        if let Some(field) = k.strip_prefix(key).and_then(|f| f.strip_prefix('.'))
                            && !tuple
                            && !pattern.contains(field)
                        {
                            failures.push(format!("{key}: {pattern:?} does not bind `{field}`"));
                        }
                    }
                }
            }
            Holds => {
                let s = keys.get(*key).map(Value::to_string).unwrap_or_default();
                let composite = s.contains("$ref")
                    || s.contains("\"array\"")
                    || s.contains("additionalProperties");
                if !composite {
                    failures.push(format!("{key}: a scalar cannot hold other keys: {s}"));
                }
            }
            Label(why) => {
                if why.split_whitespace().count() < 3 {
                    failures.push(format!("{key}: say why it is not a setting, not {why:?}"));
                }
            }
            Plan(_) | Refused(..) => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn plan_of(sets: &[&str]) -> Value {
    let q = repo().join("pipelines/quickstart.ard");
    let mut args = vec!["plan", q.to_str().unwrap(), "--format", "json"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = ardpipe(&args);
    assert_eq!(out.status.code(), Some(0), "{sets:?}: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["runs"][0]["plan"].clone()
}

#[test]
fn plan_entries_change_the_engines_plan() {
    let base = plan_of(&[]);
    for (key, reach) in KEYS {
        if let Plan(sets) = reach {
            let changed = plan_of(sets);
            assert!(
                changed != base,
                "{key}: `--set {sets:?}` leaves `ardpipe plan` unchanged: the engine ignores it"
            );
        }
    }
}

#[test]
fn refused_entries_are_refused() {
    let quickstart = std::fs::read_to_string(repo().join("pipelines/quickstart.ard")).unwrap();
    for (i, (key, reach)) in KEYS.iter().enumerate() {
        if let Refused(append, sets, want) = reach {
            let q = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("pipeline-keys-{}-{i}.ard", std::process::id()));
            std::fs::write(&q, format!("{quickstart}\n{append}")).unwrap();
            let _cleanup = Remove(q.clone());
            let mut args = vec!["plan", q.to_str().unwrap()];
            for s in *sets {
                args.extend(["--set", s]);
            }
            let out = ardpipe(&args);
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{key}: {sets:?} was accepted: {err}"
            );
            assert!(
                err.contains(want),
                "{key}: {sets:?} refused without {want:?}: {err}"
            );
        }
    }
}

/// Removes a file when dropped (also when an assertion fails).
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The walk itself can fail: a key the engine ignores is reported.
#[test]
fn a_new_schema_key_without_an_entry_fails() {
    let mut s = schema();
    s["$defs"]["Train"]["properties"]["shiny_new_knob"] = serde_json::json!({"type": "number"});
    let keys = schema_keys(&s);
    assert!(keys.contains_key("Train.shiny_new_knob"));
    assert!(!KEYS.iter().any(|(k, _)| *k == "Train.shiny_new_knob"));
    // And `meta = alternating` (not part of the language) is refused, not planned.
    let q = repo().join("pipelines/quickstart.ard");
    let out = ardpipe(&[
        "check",
        q.to_str().unwrap(),
        "--set",
        "adapter.qv.meta=alternating",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ardpipe::dsl::wrong_type"), "{err}");
    assert!(err.contains("`meta` takes only `joint`"), "{err}");
}
