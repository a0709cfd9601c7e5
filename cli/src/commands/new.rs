//! `ardpipe new FILE --model PATH [--task T]`: a commented pipeline for one model and task that
//! `check`, `plan` and `run` accept as written. The adapter blocks come from the model reading
//! `ardpipe inspect` uses (`describe`: module names, heads, towers), the data block reads the
//! task's example data (`${assets}`, as pipelines/*.ard do) and the ARD-LoRA knobs are the
//! defaults docs/LANGUAGE.md gives, spelled out so that they can be edited.

use std::path::{Path, PathBuf};

use ardpipe_dsl::pipeline::{Classes, Head};
use ardpipe_engine::adapters::HeadAxis;
use ardpipe_engine::models::arch::{ArchConfig, ModuleSpec};
use ardpipe_engine::models::{ModelDescription, ModelLocation, describe};
use ardpipe_engine::plan::model_modules;

use crate::args::{Overrides, TaskArg};
use crate::exit::Code;

pub fn run(file: &Path, model: &Path, task: Option<TaskArg>, force: bool) -> miette::Result<Code> {
    if file.exists() && !force {
        return Err(miette::miette!(
            help = "choose another name, or pass --force to replace it",
            "{} exists",
            file.display()
        ));
    }
    let dir = parent_dir(file);
    if !dir.is_dir() {
        return Err(miette::miette!(
            help = "create the folder first, or write the pipeline elsewhere",
            "the folder {} does not exist",
            dir.display()
        ));
    }
    let desc = describe(model).map_err(|e| {
        miette::miette!(
            help = "`ardpipe inspect model PATH` reads the same model: a Hugging Face folder, a \
                    .gguf file or hf:ORG/NAME",
            "{e}"
        )
    })?;
    let task = task.unwrap_or(match desc.config {
        ArchConfig::Bert(_) => TaskArg::Classification,
        ArchConfig::Llama(_) => TaskArg::CausalLm,
        ArchConfig::PaliGemma(_) => TaskArg::Vqa,
    });
    fits(&desc, model, task)?;
    let text = render(&desc, &model_path_text(model, &dir)?, task, &name_of(file));
    // In `ardpipe fmt`'s layout (long selector lists one per line), so `fmt --check` passes.
    let text = ardpipe_dsl::format_source(&file.display().to_string(), &text).unwrap_or(text);
    // What `check` will say: a generated pipeline that does not check is ardpipe's bug, and is
    // not written.
    let ctx = super::check::context(&Overrides::default());
    if let Err(d) = ardpipe_dsl::check_source(file, &text, &ctx) {
        super::check::print_diagnostics(d);
        return Err(miette::miette!(
            "the pipeline ardpipe new generated for {} does not check (a bug in ardpipe: please \
             report it with the model's config)",
            model.display()
        ));
    }
    ardpipe_engine::rundir::write_atomic(file, text.as_bytes())
        .map_err(|e| miette::miette!("{e}"))?;
    let f = file.display();
    println!(
        "wrote {f}: {} on {} ({})",
        task_name(task),
        model.display(),
        desc.config.name()
    );
    println!("next: ardpipe check {f} && ardpipe plan {f} && ardpipe run {f}");
    Ok(Code::Success)
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn task_name(t: TaskArg) -> &'static str {
    match t {
        TaskArg::Classification => "classification",
        TaskArg::CausalLm => "causal_lm",
        TaskArg::Instruct => "instruct",
        TaskArg::Vqa => "vqa",
    }
}

/// Refuse a task the model cannot do, saying which task it can.
fn fits(desc: &ModelDescription, model: &Path, task: TaskArg) -> miette::Result<()> {
    let m = model.display();
    let arch = desc.config.name();
    let refuse = |why: String, help: &str| Err(miette::miette!(help = help.to_string(), "{why}"));
    match (&desc.config, task) {
        (ArchConfig::Bert(_), TaskArg::Classification) => Ok(()),
        (ArchConfig::Bert(_), _) => refuse(
            format!(
                "{m} is an encoder ({arch}): it does not generate text, so it cannot do {}",
                task_name(task)
            ),
            "use --task classification, or a decoder for causal_lm and instruct",
        ),
        (ArchConfig::Llama(_), TaskArg::CausalLm) => Ok(()),
        (ArchConfig::Llama(_), TaskArg::Instruct) => {
            let tok = ardpipe_engine::models::tokenizer::load_tokenizer(&desc.location)
                .map_err(|e| miette::miette!("{e}"))?;
            if tok.chat.is_none() {
                return refuse(
                    format!("{m} has no chat template: instruct renders each conversation with it"),
                    "use a model that ships one (tokenizer_config.json's chat_template or the \
                     GGUF's tokenizer.chat_template), or write the pipeline with --task causal_lm \
                     and add `model.chat_template = \"FILE.jinja\"` by hand",
                );
            }
            Ok(())
        }
        (ArchConfig::Llama(_), TaskArg::Classification) => {
            ardpipe_engine::models::model::seq_cls_fields(&desc.location).map_err(|e| {
                miette::miette!(
                    help = "use an encoder (e.g. MiniLM) for classification, or a decoder that \
                            has a padding token",
                    "--task classification on a decoder ({arch}) needs its padding id: {e}"
                )
            })?;
            Ok(())
        }
        (ArchConfig::Llama(_), TaskArg::Vqa) => refuse(
            format!("{m} is a text-only decoder ({arch}): vqa needs a vision-language model"),
            "compose one with `ardpipe compose --decoder MODEL --out DIR` (see \
             scripts/vqa_model.sh), or use --task causal_lm or instruct",
        ),
        (ArchConfig::PaliGemma(_), TaskArg::Vqa) => Ok(()),
        (ArchConfig::PaliGemma(_), _) => refuse(
            format!(
                "{m} is a vision-language model: every example needs an image, so it cannot do {}",
                task_name(task)
            ),
            "use --task vqa, or the decoder it was composed from for text tasks",
        ),
    }
}

/// The model path as the pipeline should say it: an `hf:` name as given; inside the example
/// assets as `${assets}/...`; inside the pipeline's folder relative to it; otherwise absolute.
fn model_path_text(model: &Path, dir: &Path) -> miette::Result<String> {
    let given = model.to_string_lossy();
    if ardpipe_dsl::HfRef::parse(&given).is_some() {
        return Ok(given.into_owned());
    }
    let abs = model
        .canonicalize()
        .map_err(|e| miette::miette!("cannot read {}: {e}", model.display()))?;
    let assets = ardpipe_engine::models::assets::cache_root()
        .join("assets")
        .canonicalize()
        .ok();
    let text = if let Some(rel) = assets.as_ref().and_then(|a| abs.strip_prefix(a).ok()) {
        format!("${{assets}}/{}", rel.display())
    } else if let Some(rel) = dir
        .canonicalize()
        .ok()
        .and_then(|d| abs.strip_prefix(d).ok().map(Path::to_path_buf))
    {
        rel.display().to_string()
    } else {
        abs.display().to_string()
    };
    let raw = text.replacen("${assets}", "", 1);
    if raw.contains(['"', '\\', '$']) {
        return Err(miette::miette!(
            help = "move or link the model to a path without `\"`, `\\` or `$`",
            "{} cannot be written into a pipeline string",
            abs.display()
        ));
    }
    Ok(text)
}

/// The pipeline's name: the file name without `.ard`.
fn name_of(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into())
        .replace(['"', '\\', '$'], "_")
}

/// One adapter block: a name and its selectors.
struct Placement {
    name: String,
    selectors: Vec<String>,
}

/// The attention modules (those with heads, where ARD-LoRA learns a rank per head), one block per
/// stack of layers (a vision-language model has two). A module is named by its last path
/// component when that names no other module; otherwise by a glob over its path.
fn placements(modules: &[ModuleSpec]) -> Vec<Placement> {
    let layered = |m: &ModuleSpec| m.path.contains(&format!(".{}.", m.layer));
    let headed: Vec<&ModuleSpec> = modules
        .iter()
        .filter(|m| m.heads.axis != HeadAxis::None && layered(m))
        .collect();
    // (stack, glob, name) per module kind, in the model's order.
    let mut kinds: Vec<(String, String, String)> = Vec::new();
    for m in &headed {
        let glob = m.path.replacen(&format!(".{}.", m.layer), ".*.", 1);
        let stack = glob.split(".*.").next().unwrap_or_default().to_string();
        if !kinds.iter().any(|k| k.1 == glob) {
            kinds.push((stack, glob, m.name.clone()));
        }
    }
    let mut stacks: Vec<String> = Vec::new();
    for (s, _, _) in &kinds {
        if !stacks.contains(s) {
            stacks.push(s.clone());
        }
    }
    let identifier = |n: &str| {
        n != "all"
            && n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let names = stack_names(&stacks);
    stacks
        .iter()
        .zip(names)
        .map(|(stack, name)| {
            let selectors = kinds
                .iter()
                .filter(|k| &k.0 == stack)
                .map(|(_, glob, n)| {
                    let only_these = modules
                        .iter()
                        .filter(|m| &m.name == n)
                        .all(|m| m.path.replacen(&format!(".{}.", m.layer), ".*.", 1) == *glob);
                    if stacks.len() == 1 && only_these && identifier(n.as_str()) {
                        n.clone()
                    } else {
                        format!("\"{glob}\"")
                    }
                })
                .collect();
            Placement { name, selectors }
        })
        .collect()
}

/// `attention` for one stack; for several, the path component that tells them apart
/// (`vision_tower`, `language_model`).
fn stack_names(stacks: &[String]) -> Vec<String> {
    if stacks.len() == 1 {
        return vec!["attention".into()];
    }
    let parts: Vec<Vec<&str>> = stacks.iter().map(|s| s.split('.').collect()).collect();
    let common = (0..)
        .take_while(|&i| parts.iter().all(|p| i < p.len() && p[i] == parts[0][i]))
        .count();
    let mut names: Vec<String> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let word: String = p
            .get(common)
            .unwrap_or(&"")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let ok = word.starts_with(|c: char| c.is_ascii_alphabetic()) && !names.contains(&word);
        names.push(if ok { word } else { format!("stack{i}") });
    }
    names
}

fn render(desc: &ModelDescription, model_path: &str, task: TaskArg, name: &str) -> String {
    let head = match task {
        TaskArg::Classification => Head::SequenceClassification {
            classes: Classes::FromData,
        },
        _ => Head::CausalLm,
    };
    let modules = model_modules(desc, &head);
    let format = match desc.location {
        ModelLocation::Gguf(_) => "gguf",
        ModelLocation::HfFolder(_) => "hf_folder",
    };
    let arch = desc.config.name();
    let params = desc.parameters as f64 / 1e6;
    let what = match task {
        TaskArg::Classification => "sequence classification of health tweets by news outlet",
        TaskArg::CausalLm => "causal language modelling on Shakespeare",
        TaskArg::Instruct => "instruction tuning on ChatterBot conversations",
        TaskArg::Vqa => "visual question answering on easy-VQA",
    };
    let mut s = format!(
        "# ARD-LoRA on {model_path} ({arch}, {params:.1}M parameters): {what}.\n\
         # Written by `ardpipe new --task {task}`. Check it with `ardpipe check FILE`, see what it\n\
         # will do with `ardpipe plan FILE` and train it with `ardpipe run FILE`.\n\
         # The dataset block reads ardpipe's example data (installed by `python3 scripts/setup.py`):\n\
         # point it at your own; docs/LANGUAGE.md lists every key.\n\n\
         pipeline {{\n    name = \"{name}\"\n    seed = 0\n    description = \"ARD-LoRA on {arch}: {what}\"\n}}\n\n",
        task = task_name(task)
    );
    s += data_block(task);
    s += &format!(
        "\nmodel {{\n    path = \"{model_path}\"\n    format = {format}\n{}    dtype = auto\n}}\n",
        match task {
            TaskArg::Classification => {
                "    # A new classifier on top, trained in full with the adapters (at `train.head_lr`).\n    \
                 head = sequence_classification\n    classes = auto\n"
            }
            _ => "    head = causal_lm\n",
        }
    );
    for p in placements(&modules) {
        s += &format!(
            "\n# One rank per (layer, head) of the attention projections, learned through α: r = max(1,\n\
             # round(r0·α)). λ sets the rank budget (docs/LANGUAGE.md, `method = ard_lora`).\n\
             adapter {} {{\n    method = ard_lora\n    modules = [{}]\n    layers = all\n    heads = all\n    \
             r0 = 8\n    scale = 16\n    dropout = 0.0\n\n    alpha {{\n        init = 1\n        min = 0\n        \
             max = 4\n    }}\n\n    regularize {{\n        lambda = warmup(0.1, over = 20%)\n        beta = 1\n        \
             gamma = 0.5\n        tv = depth\n    }}\n}}\n",
            p.name,
            p.selectors.join(", ")
        );
    }
    if let ArchConfig::PaliGemma(_) = desc.config
        && let Some(proj) = modules
            .iter()
            .find(|m| !m.path.contains(&format!(".{}.", m.layer)))
    {
        s += &format!(
            "\n# The projector joins the towers; a composed model's starts random, so it trains in full\n\
             # (LLaVA's first stage). With a pretrained projector, remove this block to keep it frozen.\n\
             adapter projector {{\n    method = full\n    modules = [\"{}\"]\n}}\n",
            proj.path
        );
    }
    s += train_block(task);
    s += "\noutput {\n    dir = \"runs/{name}-{timestamp}\"\n    export = [peft]\n}\n";
    s
}

fn data_block(task: TaskArg) -> &'static str {
    match task {
        TaskArg::Classification => {
            r#"dataset tweets {
    format = csv
    path = "${assets}/healthtweets/healthtweets.csv"
    text = "text"
    # `source_id` looks like `bbchealth-12345`: the label is the part before the last `-`.
    label = "source_id"
    label_regex = '^(.*)-[^-]*$'
    on_bad_row = skip
    max_bad_rows = 100

    split {
        validation = 3%
        seed = 7
    }

    preprocess {
        max_length = 64
        # URLs are shortener links: the model would learn them instead of the text.
        strip = ['http\S+']
    }
}
"#
        }
        TaskArg::CausalLm => {
            r#"dataset shakespeare {
    format = text
    path = "${assets}/shakespeare/*.txt"
    # One example per line; the first 5,000 lines (remove `max_rows` to read everything).
    mode = lines
    max_rows = 5000

    split {
        validation = 5%
    }

    preprocess {
        block_size = 128
    }
}
"#
        }
        TaskArg::Instruct => {
            r#"dataset chat {
    format = jsonl
    path = "${assets}/chatterbot/chat.jsonl"
    # Each record's `messages`, rendered with the model's chat template.
    messages = "messages"

    split {
        validation = 10%
        seed = 11
    }

    preprocess {
        max_length = 256
        packing = true
        # The loss covers the assistant's answers only.
        train_on = completions
    }
}
"#
        }
        TaskArg::Vqa => {
            r#"dataset easyvqa {
    format = jsonl
    # {"image": "train/images/0.png", "question": "...", "answer": "..."}; image paths are
    # relative to the JSONL file.
    path = "${assets}/easyvqa/train.jsonl"
    image = "image"
    prompt = "question"
    completion = "answer"
    max_rows = 3000

    split {
        test = "${assets}/easyvqa/test.jsonl"
        seed = 5
    }

    # Tokens per example, the image's included.
    preprocess {
        max_length = 288
    }
}
"#
        }
    }
}

fn train_block(task: TaskArg) -> &'static str {
    match task {
        TaskArg::Classification => {
            r#"
train {
    optimizer = adamw(weight_decay = 0.01)
    lr = warmup(cosine(from = 1e-3, to = 1e-4), over = 10%)
    alpha_lr = 5e-2
    batch_size = 32
    steps = 200
    clip = 1.0
    precision = f32
    # A share of training, so that `--set train.steps=N` keeps it inside.
    eval_every = 50%
}

evaluate {
    split = validation
    metrics = [loss, accuracy, macro_f1]
    batch_size = 64
}
"#
        }
        TaskArg::CausalLm => {
            r#"
train {
    lr = warmup(cosine(from = 5e-4, to = 5e-5), over = 5%)
    batch_size = 4
    grad_accum = 2
    steps = 100
    precision = bf16
    # A share of training, so that `--set train.steps=N` keeps it inside.
    eval_every = 50%
}

evaluate {
    metrics = [loss, perplexity]
    batch_size = 16
}
"#
        }
        TaskArg::Instruct => {
            r#"
train {
    lr = warmup(cosine(from = 1e-3, to = 1e-4), over = 5%)
    batch_size = 2
    steps = 30
    precision = bf16
}

evaluate {
    metrics = [loss, accuracy, exact_match]
    batch_size = 8
}
"#
        }
        TaskArg::Vqa => {
            r#"
train {
    lr = warmup(cosine(from = 2e-3, to = 2e-4), over = 5%)
    batch_size = 8
    steps = 300
    precision = bf16
}

evaluate {
    split = test
    # The test split's first 500 questions, before and after training.
    max_examples = 500
    metrics = [loss, accuracy, exact_match]
    batch_size = 32
}
"#
        }
    }
}
