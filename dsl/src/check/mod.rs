//! Checker: top-level blocks → one resolved [`Pipeline`], every problem reported.

mod adapter;
mod dataset;
mod distributed;
mod evaluate;
pub mod keys;
mod model;
mod train;
pub mod values;

use std::collections::HashMap;
use std::path::Path;

use crate::ast::{Block, Item, Span};
use crate::diag::{Code, Problem};
use crate::pipeline::*;
use crate::reader::{Ctx, Reader};
use crate::suggest;

pub const TOP_BLOCKS: &[&str] = &[
    "pipeline",
    "dataset",
    "model",
    "adapter",
    "train",
    "evaluate",
    "output",
    "distributed",
    "plugin",
    "variant",
];
/// Blocks that carry a name (`dataset tweets { ... }`).
pub const NAMED_BLOCKS: &[&str] = &["dataset", "adapter", "plugin", "variant"];

/// Every word the language gives a meaning; a `let` may not take one of these names.
pub const VOCABULARY: &[&str] = &[
    "all",
    "auto",
    "true",
    "false",
    "jsonl",
    "csv",
    "text",
    "parquet",
    "folders",
    "image_folders",
    "plugin",
    "lines",
    "documents",
    "separator",
    "fail",
    "skip",
    "completions",
    "left",
    "right",
    "hf_folder",
    "gguf",
    "causal_lm",
    "sequence_classification",
    "embedding",
    "mean",
    "cls",
    "f32",
    "f16",
    "bf16",
    "cpu",
    "cuda",
    "ard_lora",
    "lora",
    "dora",
    "adalora",
    "full",
    "joint",
    "alternating",
    "depth",
    "time",
    "adamw",
    "adam",
    "sgd",
    "min",
    "max",
    "loss",
    "perplexity",
    "accuracy",
    "macro_f1",
    "exact_match",
    "validation",
    "test",
    "train",
    "peft",
    "merged",
    "regex",
    "gloo",
    "nccl",
];

/// Checks the top-level items of one run (the base pipeline or one variant).
pub fn check_run(items: &[Item], file: &Path, cx: &mut Ctx) -> Option<Pipeline> {
    let whole = items.first().map(|i| i.span()).unwrap_or_default();
    let mut singles: HashMap<&str, &Block> = HashMap::new();
    let mut named: HashMap<&str, Vec<&Block>> = HashMap::new();
    for item in items {
        let Item::Block(b) = item else { continue };
        let kind = b.kind.name.as_str();
        if !TOP_BLOCKS.contains(&kind) {
            cx.push(
                Problem::error(
                    Code::UnknownBlock,
                    b.kind.span,
                    format!("unknown block `{kind}`"),
                )
                .label("unknown block")
                .help(suggest::help_for(kind, "top-level blocks are", TOP_BLOCKS)),
            );
            continue;
        }
        if NAMED_BLOCKS.contains(&kind) {
            let Some(label) = &b.label else {
                cx.push(
                    Problem::error(
                        Code::Missing,
                        b.kind.span,
                        format!("a `{kind}` block needs a name"),
                    )
                    .label("no name")
                    .help(format!(
                        "write `{kind} NAME {{ ... }}`; other blocks refer to it by that name"
                    )),
                );
                continue;
            };
            let list = named.entry(kind).or_default();
            if list
                .iter()
                .any(|o| o.label.as_ref().map(|l| &l.name) == Some(&label.name))
            {
                cx.push(
                    Problem::error(
                        Code::Duplicate,
                        label.span,
                        format!("there is already a {kind} named `{}`", label.name),
                    )
                    .label("duplicate name")
                    .help(format!("rename one of them; {kind} names must be unique")),
                );
                continue;
            }
            list.push(b);
        } else {
            if let Some(l) = &b.label {
                cx.push(
                    Problem::error(
                        Code::Syntax,
                        l.span,
                        format!("a `{kind}` block takes no name"),
                    )
                    .label("unexpected name")
                    .help(format!("write `{kind} {{ ... }}`")),
                );
            }
            if singles.contains_key(kind) {
                cx.push(
                    Problem::error(Code::Duplicate, b.kind.span, format!("second `{kind}` block"))
                        .label("duplicate")
                        .help(format!("a pipeline has one `{kind}` block; merge them (use `variant` for side-by-side runs)")),
                );
                continue;
            }
            singles.insert(kind, b);
        }
    }
    let blocks = |k: &str| named.get(k).cloned().unwrap_or_default();
    let label = |b: &Block| b.label.as_ref().map(|l| l.name.clone()).unwrap_or_default();

    // pipeline { name seed description }
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline")
        .to_string();
    let (name, seed, description, language) = match singles.get("pipeline") {
        Some(b) => {
            let mut r = Reader::new(b, cx);
            let name = r.string("name", cx).unwrap_or(stem);
            let seed = r.int("seed", 0, u64::MAX, cx).unwrap_or(0);
            let description = r.string("description", cx);
            let language = language_version(&mut r, cx);
            r.finish(PIPELINE_KEYS, &[], &|_| None, cx);
            (name, seed, description, language)
        }
        None => (stem, 0, None, crate::language::CURRENT),
    };

    let plugins: Vec<Plugin> = blocks("plugin")
        .into_iter()
        .filter_map(|b| {
            let mut r = Reader::new(b, cx);
            let library = r.path("library", cx);
            if !r.has("library") {
                cx.missing(
                    r.span(),
                    "`library`",
                    "name the plugin's shared library, relative to this pipeline file",
                );
            }
            let abi = r.int("abi", 1, u32::MAX as u64, cx).unwrap_or(1) as u32;
            r.finish(PLUGIN_KEYS, &[], &|_| None, cx);
            Some(Plugin {
                name: label(b),
                library: library?,
                abi,
            })
        })
        .collect();

    let datasets: Vec<Dataset> = blocks("dataset")
        .into_iter()
        .filter_map(|b| dataset::check(b, &label(b), seed, cx))
        .collect();
    if blocks("dataset").is_empty() {
        cx.missing(
            whole,
            "a `dataset` block",
            "declare the data: `dataset NAME { format = jsonl path = \"...\" }`",
        );
    }

    let model = match singles.get("model") {
        Some(b) => model::check(b, cx),
        None => {
            cx.missing(
                whole,
                "a `model` block",
                "declare the base model: `model { path = \"...\" head = causal_lm }`",
            );
            None
        }
    };

    let adapters: Vec<Adapter> = blocks("adapter")
        .into_iter()
        .filter_map(|b| adapter::check(b, &label(b), cx))
        .collect();
    if blocks("adapter").is_empty() {
        cx.missing(
            whole,
            "an `adapter` block",
            "say what trains: `adapter NAME { method = ard_lora modules = [query, value] }`",
        );
    }
    let has_ard = adapters
        .iter()
        .any(|a| matches!(a.method, Method::ArdLora(_)));
    head_only_fits(&blocks("adapter"), &adapters, model.as_ref(), cx);
    quantized_base_is_frozen(singles.get("model").copied(), &adapters, model.as_ref(), cx);

    let (train, tspans) = match singles.get("train") {
        Some(b) => {
            let (t, s) = train::check(b, seed, cx);
            (t, Some(s))
        }
        None => {
            cx.missing(
                whole,
                "a `train` block",
                "say how to train: `train { lr = 3e-4 steps = 300 }`",
            );
            (None, None)
        }
    };
    let dataset_names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
    let all_dataset_names: Vec<String> = blocks("dataset").iter().map(|b| label(b)).collect();
    let train = train.and_then(|mut t| {
        let tspans = tspans.as_ref()?;
        // Which dataset trains: the named one, else the only one.
        if t.dataset.is_empty() {
            match all_dataset_names.as_slice() {
                [one] => t.dataset = one.clone(),
                [] => return None,
                _ => {
                    cx.push(
                        Problem::error(
                            Code::Missing,
                            singles["train"].kind.span,
                            "which dataset does `train` use?",
                        )
                        .label("several datasets")
                        .help(format!(
                            "add `dataset = NAME` with one of {}",
                            all_dataset_names.join(", ")
                        )),
                    );
                    return None;
                }
            }
        } else if !all_dataset_names.contains(&t.dataset) {
            unresolved(cx, tspans.dataset?, "dataset", &t.dataset, &dataset_names);
            return None;
        }
        Some(t)
    });

    let evaluate = singles.get("evaluate").and_then(|b| {
        let (e, spans) = evaluate::check(b, cx);
        let (ds, split, metrics, batch, max_examples) = e?;
        if let Some(m) = &model {
            for (metric, span) in metrics.iter().zip(&spans.metrics) {
                head_allows(metric, &m.head, *span, cx);
            }
        }
        let dataset = match ds {
            Some(d) => {
                if !all_dataset_names.contains(&d) {
                    unresolved(cx, spans.dataset?, "dataset", &d, &dataset_names);
                    return None;
                }
                if let Some(t) = &train
                    && t.dataset != d
                {
                    // The trainer evaluates a split of the dataset it trains on.
                    cx.push(
                        Problem::error(
                            Code::NotImplemented,
                            spans.dataset?,
                            format!(
                                "evaluating dataset `{d}` while training on `{}` is not implemented",
                                t.dataset
                            ),
                        )
                        .label("not the training dataset")
                        .help(format!(
                            "evaluate a split of `{}` (`split = validation`, `test` or `train`): write `dataset = {}` or leave `dataset` out",
                            t.dataset, t.dataset
                        )),
                    );
                    return None;
                }
                d
            }
            None => train.as_ref().map(|t| t.dataset.clone())?,
        };
        if let Some(d) = datasets.iter().find(|x| x.name == dataset) {
            let missing = match split {
                SplitName::Validation => d.split.validation.is_none(),
                SplitName::Test => d.split.test.is_none(),
                SplitName::Train => false,
            };
            if missing {
                let word = if split == SplitName::Test { "test" } else { "validation" };
                cx.push(
                    Problem::error(Code::Contradiction, spans.split.unwrap_or(b.kind.span), format!("dataset `{dataset}` has no {word} split"))
                        .label(format!("no {word} data"))
                        .help(format!("add `split {{ {word} = 10% }}` to dataset `{dataset}`, or evaluate another split")),
                );
            }
        }
        Some(Evaluate {
            dataset,
            split,
            metrics,
            batch_size: batch.or(train.as_ref().map(|t| t.batch_size)).unwrap_or(16),
            max_examples,
        })
    });

    // Cross-checks that need several blocks.
    if let Some(ts) = &tspans {
        if !has_ard && blocks("adapter").len() == adapters.len() {
            for s in &ts.alpha_keys {
                cx.push(
                    Problem::error(
                        Code::Contradiction,
                        *s,
                        "α settings without an `ard_lora` adapter",
                    )
                    .label("no α to train")
                    .help("only ARD-LoRA learns α; remove this or add an `ard_lora` adapter"),
                );
            }
        }
        if let Some(d) = ts.length {
            past_the_end(d, ts.duration, cx);
        }
    }
    if let (Some(t), Some(ts)) = (&train, &tspans) {
        if let Some(s) = ts.eval_every
            && evaluate.is_none()
            && cx.complete
        {
            cx.push(
                Problem::error(
                    Code::Contradiction,
                    s,
                    "`eval_every` without an `evaluate` block",
                )
                .label("nothing to evaluate")
                .help("add `evaluate { metrics = [loss] }` or remove `eval_every`"),
            );
        }
        if let (Some(es), Some(span)) = (&t.early_stopping, ts.early_metric) {
            match &evaluate {
                Some(e) if e.metrics.contains(&es.metric) => {}
                Some(_) => cx.push(
                    Problem::error(
                        Code::Contradiction,
                        span,
                        "early stopping watches a metric that is not evaluated",
                    )
                    .label("not in `evaluate.metrics`")
                    .help("add it to `evaluate { metrics = [...] }`"),
                ),
                None => cx.push(
                    Problem::error(
                        Code::Contradiction,
                        span,
                        "early stopping without an `evaluate` block",
                    )
                    .label("never measured")
                    .help("add an `evaluate` block that measures this metric"),
                ),
            }
        }
    }
    if let (Some(m), Some(t)) = (&model, &train)
        && let Some(d) = datasets.iter().find(|d| d.name == t.dataset)
        && matches!(m.head, Head::SequenceClassification { .. })
        && d.fields.label.is_none()
        && !d.fields.supervised()
        && !matches!(
            d.source,
            Source::Folders { .. } | Source::ImageFolders { .. } | Source::Plugin { .. }
        )
        && let Some(b) = blocks("dataset").into_iter().find(|b| label(b) == d.name)
    {
        cx.push(
            Problem::error(
                Code::Missing,
                b.kind.span,
                format!("dataset `{}` has no labels for the classifier", d.name),
            )
            .label("no `label`")
            .help("name the label column: `label = \"label\"` (with `label_regex` to extract it)"),
        );
    }
    // A chat template renders chat records; without them it would be read and ignored.
    if let (Some(m), Some(t)) = (&model, &train)
        && m.chat_template.is_some()
        && datasets
            .iter()
            .find(|d| d.name == t.dataset)
            .is_some_and(|d| d.fields.messages.is_none())
        && let Some(b) = singles.get("model")
        && let Some(e) = b.entries().find(|e| e.key_text() == "chat_template")
    {
        cx.push(
            Problem::error(
                Code::Contradiction,
                e.key_span(),
                "`chat_template` renders chat records, but the training dataset has none",
            )
            .label("nothing to render")
            .help(format!(
                "map the dataset's chat column (`messages = \"messages\"` in dataset `{}`), or remove `chat_template`",
                t.dataset
            )),
        );
    }
    // Packing into blocks serves a causal LM on plain text; cutting examples at max_length
    // serves a classifier and supervised causal-LM data (prompt/completion or chat), whose
    // examples are padded or packed into rows of max_length. A key the model's head (or the
    // data) does not use would be parsed and ignored.
    if let (Some(m), Some(t)) = (&model, &train)
        && let Some(b) = blocks("dataset")
            .into_iter()
            .find(|b| label(b) == t.dataset)
    {
        // An image folder's `question` makes its examples supervised too (image questions).
        let supervised = b.entries().find(|e| {
            dataset::SUPERVISED.contains(&e.key_text().as_str()) || e.key_text() == "question"
        });
        let causal = matches!(m.head, Head::CausalLm);
        if let Some(e) = supervised.filter(|_| !causal) {
            cx.push(
                Problem::error(
                    Code::Contradiction,
                    e.key_span(),
                    format!(
                        "`{}` (supervised data) needs `head = causal_lm`",
                        e.key_text()
                    ),
                )
                .label("the model's head does not generate text")
                .help(
                    "train a causal LM on prompt/completion or chat data (`head = causal_lm`), \
                     or name `text` and `label` columns for this head",
                ),
            );
        }
        let (unused, head): (&[&str], &str) = match (&m.head, supervised.is_some()) {
            (Head::CausalLm, false) => (&["max_length", "truncation"], "causal_lm"),
            (Head::CausalLm, true) => (&["block_size"], "causal_lm"),
            // Refused above: no second error for the keys of a head that cannot train it.
            (_, true) => (&[], ""),
            _ => (&["block_size"], "sequence_classification"),
        };
        for p in b.blocks().filter(|p| p.kind.name == "preprocess") {
            for e in p
                .entries()
                .filter(|e| unused.contains(&e.key_text().as_str()))
            {
                let key = e.key_text();
                let (why, fix) = match (key.as_str(), supervised.is_some()) {
                    ("block_size", true) => (
                        "supervised examples are cut at `max_length` (and packed into rows of `max_length`)",
                        "remove `block_size` and set `max_length` instead",
                    ),
                    ("block_size", false) => (
                        "only a causal LM packs text into blocks",
                        "remove `block_size` (examples are cut at `max_length`)",
                    ),
                    _ => (
                        "a causal LM packs text into `block_size` blocks",
                        "remove it and set `block_size` instead",
                    ),
                };
                let data = if supervised.is_some() {
                    " on supervised data"
                } else {
                    ""
                };
                cx.push(
                    Problem::error(
                        Code::Contradiction,
                        e.key_span(),
                        format!("`{key}` has no effect with `head = {head}`{data}: {why}"),
                    )
                    .label("unused by this head")
                    .help(fix),
                );
            }
        }
    }
    let declared: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
    let all_plugins: Vec<String> = blocks("plugin").iter().map(|b| label(b)).collect();
    for (p, span) in std::mem::take(&mut cx.plugin_refs) {
        if !all_plugins.contains(&p) {
            unresolved(cx, span, "plugin", &p, &declared);
        }
    }

    let output = match singles.get("output") {
        Some(b) => output(b, &adapters, cx),
        None => Some(Output {
            dir: cx
                .resolve_path("runs/{name}-{timestamp}", whole)
                .to_string_lossy()
                .into_owned(),
            export: vec![default_export(&adapters)],
            report: true,
        }),
    };

    let distributed = match singles.get("distributed") {
        Some(b) => distributed::check(b, model.as_ref().map(|m| m.device), cx),
        None => Some(Distributed::default()),
    };

    Some(Pipeline {
        format: PIPELINE_FORMAT,
        language,
        name,
        description,
        seed,
        file: file.to_path_buf(),
        plugins,
        datasets,
        model: model?,
        adapters,
        train: train?,
        evaluate,
        output: output?,
        distributed: distributed?,
        variants: Vec::new(),
    })
}

/// `pipeline { language = N }`: the current version, or an error. A newer one never gets here
/// (the whole file is refused first, `language::too_new`); an older one must be migrated.
fn language_version(r: &mut Reader, cx: &mut Ctx) -> u32 {
    use crate::language::CURRENT;
    let span = r.entry("language").map(|e| e.value.span);
    if let (Some(v), Some(span)) = (r.int("language", 1, CURRENT as u64, cx), span)
        && (v as u32) < CURRENT
    {
        cx.push(
            Problem::error(
                Code::OutOfRange,
                span,
                format!(
                    "this pipeline is written in language version {v}; this ardpipe reads version {CURRENT}"
                ),
            )
            .label("an older language version")
            .help("upgrade the file: `ardpipe migrate FILE --write`"),
        );
    }
    CURRENT
}

fn unresolved(cx: &mut Ctx, span: Span, what: &str, name: &str, known: &[&str]) {
    let help = match suggest::closest(name, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => format!("declare it: `{what} {name} {{ ... }}`"),
        None => format!("declared {what}s: {}", suggest::list(known)),
    };
    cx.push(
        Problem::error(Code::Unresolved, span, format!("no {what} named `{name}`"))
            .label("not declared")
            .help(help),
    );
}

fn head_allows(metric: &Metric, head: &Head, span: Span, cx: &mut Ctx) {
    let bad = match (metric, head) {
        (Metric::Perplexity, Head::CausalLm) => None,
        (Metric::Perplexity, _) => Some("perplexity needs `head = causal_lm`"),
        (Metric::Accuracy | Metric::MacroF1, Head::SequenceClassification { .. }) => None,
        // A causal LM's accuracy is over the tokens it trains on.
        (Metric::Accuracy | Metric::ExactMatch, Head::CausalLm) => None,
        (Metric::ExactMatch, _) => Some("exact_match needs `head = causal_lm`"),
        (Metric::MacroF1, _) => Some("macro-F1 needs `head = sequence_classification`"),
        (Metric::Accuracy, _) => {
            Some("accuracy needs `head = sequence_classification` or `causal_lm`")
        }
        _ => None,
    };
    if let Some(why) = bad {
        cx.push(
            Problem::error(Code::Contradiction, span, format!("this metric does not fit the model's head: {why}"))
                .label("wrong metric for this head")
                .help("classifiers use `accuracy`/`macro_f1`, language models `perplexity`, `accuracy` (answer tokens) and `exact_match`; `loss` fits both"),
        );
    }
}

/// A schedule or cadence that points past the end of training is an error (when comparable).
fn past_the_end(d: Duration, dspan: Option<Span>, cx: &mut Ctx) {
    let positions = std::mem::take(&mut cx.positions);
    for (p, span) in positions {
        let past = match (p, d) {
            (Position::Steps(s), Duration::Steps(n)) => s > n,
            (Position::Epochs(e), Duration::Epochs(n)) => e > n as f64,
            _ => false,
        };
        if past {
            let end = match d {
                Duration::Steps(n) => format!("{n} steps"),
                Duration::Epochs(n) => format!("{n} epochs"),
            };
            let mut p = Problem::error(
                Code::Contradiction,
                span,
                format!("this lies after training ends ({end})"),
            )
            .label("past the end of training")
            .help("use a point within training, or a percentage of it such as `20%`");
            if dspan.is_none() {
                p = p.help("use a point within training, or a percentage of it");
            }
            cx.push(p);
        }
    }
}

const PLACEHOLDERS: &[&str] = &["name", "variant", "seed", "timestamp"];
/// The keys of `pipeline`, `plugin NAME` and `output` (editors list them too: keys.rs).
pub(super) const PIPELINE_KEYS: &[&str] = &["name", "seed", "description", "language"];
pub(super) const PLUGIN_KEYS: &[&str] = &["library", "abi"];
pub(super) const OUTPUT_KEYS: &[&str] = &["dir", "export", "report"];
pub(super) const EXPORTS: &[&str] = &["peft", "merged"];

/// What `output.export` defaults to: `merged` where an adapter has no PEFT form (`full`,
/// `head_only`), else `peft`.
fn default_export(adapters: &[Adapter]) -> Export {
    if adapters
        .iter()
        .any(|a| matches!(a.method, Method::Full(_) | Method::HeadOnly(_)))
    {
        Export::Merged
    } else {
        Export::Peft
    }
}

/// `method = head_only` trains the task head alone: it needs a head with parameters of its own
/// (a classifier), and it is the only adapter block (beside another block the head trains
/// anyway, so `head_only` would add nothing).
fn head_only_fits(blocks: &[&Block], adapters: &[Adapter], model: Option<&Model>, cx: &mut Ctx) {
    let Some(a) = adapters
        .iter()
        .find(|a| matches!(a.method, Method::HeadOnly(_)))
    else {
        return;
    };
    // Point at its `method = head_only`.
    let Some(span) = blocks
        .iter()
        .find(|b| b.label.as_ref().is_some_and(|l| l.name == a.name))
        .map(|b| {
            b.entries()
                .find(|e| e.key_text() == "method")
                .map_or(b.kind.span, |e| e.value.span)
        })
    else {
        return;
    };
    if let Some(m) = model {
        let why = match &m.head {
            Head::CausalLm => Some(
                "a causal LM's head is its `lm_head`, a base weight (often tied to the embeddings): with `head_only` nothing would train",
            ),
            Head::Embedding { .. } => Some("an embedding model has no task head to train"),
            Head::SequenceClassification { .. } => None,
        };
        if let Some(why) = why {
            cx.push(
                Problem::error(Code::Contradiction, span, why)
                    .label("`head_only` needs `head = sequence_classification`")
                    .help("train a classifier (`model { head = sequence_classification }`), or adapt modules with another method (e.g. `method = lora modules = [q_proj, v_proj]`)"),
            );
        }
    }
    if blocks.len() > 1 {
        cx.push(
            Problem::error(
                Code::Contradiction,
                span,
                "`head_only` beside other adapter blocks: the task head trains with any adapter, so this block adds nothing",
            )
            .label("not the only adapter")
            .help("keep `head_only` as the pipeline's one adapter block (a variant replaces a block of the same name), or remove it"),
        );
    }
}

/// A quantised base is frozen: `method = full` would train the very weights it rounds.
fn quantized_base_is_frozen(
    block: Option<&Block>,
    adapters: &[Adapter],
    model: Option<&Model>,
    cx: &mut Ctx,
) {
    let (Some(b), Some(m)) = (block, model) else {
        return;
    };
    if m.quantize == Quantize::None || !adapters.iter().any(|a| matches!(a.method, Method::Full(_)))
    {
        return;
    }
    let span = b
        .entries()
        .find(|e| e.key_text() == "quantize")
        .map_or(b.kind.span, |e| e.value.span);
    cx.push(
        Problem::error(
            Code::Contradiction,
            span,
            "a quantised base cannot train: `method = full` updates the base weights",
        )
        .label("the base is quantised")
        .help("remove `quantize` to fine-tune every weight, or train adapters (`method = ard_lora`, `lora`, …) on the quantised base"),
    );
}

fn output(b: &Block, adapters: &[Adapter], cx: &mut Ctx) -> Option<Output> {
    let mut r = Reader::new(b, cx);
    let dir_e = r.entry("dir");
    let dir = match dir_e.and_then(|e| cx.eval(&e.value)) {
        Some(v) => {
            let s = crate::reader::as_string(&v, "dir", cx)?;
            for part in s.split('{').skip(1) {
                let name = part.split('}').next().unwrap_or("");
                if !PLACEHOLDERS.contains(&name) {
                    cx.push(
                        Problem::error(
                            Code::Unresolved,
                            v.span,
                            format!("unknown placeholder `{{{name}}}` in the run directory"),
                        )
                        .label("unknown placeholder")
                        .help(suggest::help_for(
                            name,
                            "placeholders are",
                            PLACEHOLDERS,
                        )),
                    );
                    return None;
                }
            }
            cx.resolve_path(&s, v.span).to_string_lossy().into_owned()
        }
        None => cx
            .resolve_path("runs/{name}-{timestamp}", b.kind.span)
            .to_string_lossy()
            .into_owned(),
    };
    let export_e = r.entry("export");
    let mut export = Vec::new();
    if let Some(v) = export_e.and_then(|e| cx.eval(&e.value)) {
        let items = match &v.kind {
            crate::ast::ExprKind::List(l) => l.clone(),
            _ => vec![v.clone()],
        };
        for e in items {
            match crate::reader::as_symbol(&e, "export", EXPORTS, cx) {
                Some("peft") => {
                    // Fully trained modules ride along in PEFT's `modules_to_save`; with no low-rank
                    // adapter at all there is nothing PEFT could load.
                    if !adapters.is_empty()
                        && adapters.iter().all(|a| matches!(a.method, Method::Full(_)))
                    {
                        cx.push(
                            Problem::error(Code::Contradiction, e.span, "every adapter trains full weights: there is no PEFT adapter to export")
                                .label("nothing to export as PEFT")
                                .help("export `merged` weights for full fine-tuning"),
                        );
                    }
                    // PEFT refuses to load an adapter that targets no module (its
                    // `inject_adapter` raises "No modules were targeted for adaptation"), even
                    // with the head in `modules_to_save`.
                    if adapters
                        .iter()
                        .any(|a| matches!(a.method, Method::HeadOnly(_)))
                    {
                        cx.push(
                            Problem::error(Code::Contradiction, e.span, "`head_only` adapts no module: a PEFT adapter with no LoRA module is one PEFT cannot load")
                                .label("nothing to export as PEFT")
                                .help("export `merged` (the base model with the trained head, a complete Hugging Face folder)"),
                        );
                    }
                    export.push(Export::Peft)
                }
                Some(_) => export.push(Export::Merged),
                None => {}
            }
        }
    } else {
        export.push(default_export(adapters));
    }
    export.dedup();
    let report = r.bool("report", cx).unwrap_or(true);
    r.finish(OUTPUT_KEYS, &[], &|_| None, cx);
    Some(Output {
        dir,
        export,
        report,
    })
}
