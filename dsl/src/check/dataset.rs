//! `dataset NAME { ... }`: where examples come from and how they become text and labels.

use std::collections::BTreeMap;

use crate::ast::{Block, ExprKind};
use crate::diag::{Code, Problem};
use crate::pipeline::*;
use crate::plugin_uses::{PluginSite, PluginUse};
use crate::reader::{Ctx, Reader, as_paths, as_string, wrong_type};
use crate::suggest;

use super::values::{option_value, regex_ok};

pub(super) const KEYS: &[&str] = &[
    "format",
    "path",
    "delimiter",
    "header",
    "mode",
    "separator",
    "text",
    "text_pair",
    "label",
    "label_regex",
    "prompt",
    "completion",
    "messages",
    "image",
    "question",
    "answer",
    "max_rows",
    "on_bad_row",
    "max_bad_rows",
];
pub(super) const BLOCKS: &[&str] = &["split", "preprocess"];
pub(super) const FORMATS: &[&str] = &[
    "jsonl",
    "csv",
    "text",
    "parquet",
    "folders",
    "image_folders",
    "plugin",
];
/// Keys that make the records supervised causal-LM data.
pub(super) const SUPERVISED: &[&str] = &["prompt", "completion", "messages"];
/// Keys of plain-text and classification records, which supervised records replace.
const PLAIN: &[&str] = &["text", "text_pair", "label", "label_regex"];
pub(super) const ON_BAD_ROW: &[&str] = &["fail", "skip"];
pub(super) const TEXT_MODES: &[&str] = &["lines", "documents", "separator"];
pub(super) const SPLIT_KEYS: &[&str] = &["validation", "test", "seed", "contiguous"];
pub(super) const PREPROCESS_KEYS: &[&str] = &[
    "max_length",
    "truncation",
    "strip",
    "lowercase",
    "block_size",
    "train_on",
    "packing",
];
pub(super) const TRUNCATIONS: &[&str] = &["left", "right"];
pub(super) const TRAIN_ON: &[&str] = &["completions", "all"];

pub fn check(b: &Block, name: &str, seed: u64, cx: &mut Ctx) -> Option<Dataset> {
    let mut r = Reader::new(b, cx);
    let source = source(&mut r, name, cx);
    // The format as written, for the checks below when the source itself has an error.
    let written = b
        .entries()
        .find(|e| e.key_text() == "format")
        .and_then(|e| match &e.value.kind {
            ExprKind::Symbol(s) => Some(s.clone()),
            ExprKind::Call { name, .. } if name.name == "plugin" => Some("plugin".to_string()),
            _ => None,
        });
    let fmt = source.as_ref().map(Source::format).or(written.as_deref());
    let columns = matches!(fmt, Some("jsonl" | "csv" | "parquet" | "plugin"));
    let image_folders = fmt == Some("image_folders");
    let supervised = SUPERVISED.iter().any(|k| r.has(k));
    let text = r
        .string("text", cx)
        .or_else(|| (columns && !supervised).then(|| "text".to_string()));
    let text_pair = r.string("text_pair", cx);
    let label = r.string("label", cx);
    let label_regex = match r.entry("label_regex") {
        Some(e) => cx.eval(&e.value).and_then(|v| {
            let s = as_string(&v, "label_regex", cx)?;
            let re = regex_ok(&s, v.span, cx)?;
            if re.captures_len() < 2 {
                cx.push(
                    Problem::error(
                        Code::BadPattern,
                        v.span,
                        "`label_regex` has no capture group",
                    )
                    .label("nothing to capture")
                    .help("the label is the first group in parentheses, e.g. '^(.*)-[^-]*$'"),
                );
                return None;
            }
            if label.is_none() && !matches!(fmt, Some("folders" | "image_folders")) {
                cx.push(
                    Problem::error(
                        Code::Contradiction,
                        e.key_span(),
                        "`label_regex` without a `label` column",
                    )
                    .label("applies to nothing")
                    .help("name the column it applies to: `label = \"source_id\"`"),
                );
            }
            Some(s)
        }),
        None => None,
    };
    let prompt = r.string("prompt", cx);
    let completion = r.string("completion", cx);
    let messages = r.string("messages", cx);
    let image = r.string("image", cx);
    if image_folders {
        image_folder_fields(b, cx);
    } else if image.is_some() {
        image_fields(b, fmt, cx);
    }
    if !columns && !image_folders {
        for key in ["text", "text_pair"] {
            if let Some(e) = b.entries().find(|e| e.key_text() == key) {
                cx.push(
                    Problem::error(Code::Contradiction, e.key_span(), format!("`{key}` needs a format with columns"))
                        .label(format!("no columns in `{}` sources", fmt.unwrap_or("?")))
                        .help("`text`, `text_pair` and `label` name columns of `jsonl`, `csv`, `parquet` or plugin records"),
                );
            }
        }
    }
    if supervised && !image_folders {
        supervised_fields(b, fmt, cx);
    }
    let max_rows = r.int("max_rows", 1, u64::MAX, cx);
    let policy = r.symbol("on_bad_row", ON_BAD_ROW, cx);
    let max_bad = r.entry("max_bad_rows");
    let on_bad_row = match policy {
        Some("skip") => BadRowPolicy::Skip {
            max: max_bad.and_then(|e| {
                let v = cx.eval(&e.value)?;
                crate::reader::as_int(&v, "max_bad_rows", 0, u64::MAX, cx)
            }),
        },
        _ => {
            if let Some(e) = max_bad {
                cx.push(
                    Problem::error(Code::Contradiction, e.key_span(), "`max_bad_rows` without `on_bad_row = skip`")
                        .label("nothing is skipped")
                        .help("bad rows stop the run by default; add `on_bad_row = skip` to skip and count them"),
                );
            }
            BadRowPolicy::Fail
        }
    };
    let split = match r.block("split", cx) {
        Some(sb) => split(sb, seed, cx),
        None => Some(Split {
            validation: None,
            test: None,
            seed,
            contiguous: 1,
        }),
    };
    let preprocess = match r.block("preprocess", cx) {
        // Image folders are image questions: a question and an answer per image.
        Some(pb) => preprocess(
            pb,
            supervised || image_folders,
            image.is_some() || image_folders,
            cx,
        ),
        None => Some(default_preprocess(supervised || image_folders)),
    };
    r.finish(KEYS, BLOCKS, &|_| None, cx);
    Some(Dataset {
        name: name.to_string(),
        source: source?,
        fields: Fields {
            text,
            text_pair,
            label,
            label_regex,
            prompt,
            completion,
            messages,
            image,
        },
        split: split?,
        preprocess: preprocess?,
        on_bad_row,
        max_rows,
    })
}

fn source(r: &mut Reader, dataset: &str, cx: &mut Ctx) -> Option<Source> {
    let Some(e) = r.entry("format") else {
        cx.missing(r.span(), "`format`", "say how to read the data: `format = jsonl`, `csv`, `text`, `parquet`, `folders`, `image_folders` or `plugin(NAME)`");
        return None;
    };
    let v = cx.eval(&e.value)?;
    let (fmt, plugin_args) = match &v.kind {
        ExprKind::Symbol(s) => (s.clone(), None),
        ExprKind::Call { name, args } if name.name == "plugin" => {
            ("plugin".to_string(), Some(args.clone()))
        }
        _ => {
            wrong_type(
                &v,
                "format",
                &format!("one of {} or `plugin(NAME)`", suggest::list(FORMATS)),
                cx,
            );
            return None;
        }
    };
    let foreign = |key: &str, fmt_needed: &str, r: &mut Reader, cx: &mut Ctx| {
        if let Some(e) = r.entry(key) {
            cx.push(
                Problem::error(
                    Code::Contradiction,
                    e.key_span(),
                    format!("`{key}` applies to `{fmt_needed}` sources only"),
                )
                .label(format!("this source is `{fmt}`"))
                .help(format!("remove `{key}`")),
            );
        }
    };
    if fmt != "csv" {
        foreign("delimiter", "csv", r, cx);
        foreign("header", "csv", r, cx);
    }
    if fmt != "text" {
        foreign("mode", "text", r, cx);
        foreign("separator", "text", r, cx);
    }
    if fmt != "image_folders" {
        for key in ["question", "answer"] {
            if let Some(e) = r.entry(key) {
                cx.push(
                    Problem::error(
                        Code::Contradiction,
                        e.key_span(),
                        format!("`{key}` applies to `image_folders` sources only"),
                    )
                    .label(format!("this source is `{fmt}`"))
                    .help(match (key, fmt.as_str()) {
                        ("question", "jsonl" | "csv" | "parquet") => {
                            "`question` is asked about every image of `format = image_folders`; \
                             here name the question column: `prompt = \"question\"`"
                                .to_string()
                        }
                        (_, "jsonl" | "csv" | "parquet") => {
                            "`answer` answers every image of `format = image_folders` with its \
                             class; here name the answer column: `completion = \"answer\"`"
                                .to_string()
                        }
                        _ => format!("remove `{key}`"),
                    }),
                );
            }
        }
    }
    let (path, paths) = if fmt == "plugin" {
        (r.path("path", cx), None)
    } else {
        let p = r.paths("path", cx);
        if p.is_none() && !r.has("path") {
            cx.missing(
                r.span(),
                "`path`",
                "name the data file or folder (or a list of them; globs allowed), relative to this pipeline file",
            );
        }
        (None, p)
    };
    match fmt.as_str() {
        "jsonl" => Some(Source::Jsonl { paths: paths? }),
        "parquet" => Some(Source::Parquet { paths: paths? }),
        "folders" => Some(Source::Folders { paths: paths? }),
        "image_folders" => {
            let question = image_question(r, cx);
            let answer = answer_template(r, cx);
            Some(Source::ImageFolders {
                paths: paths?,
                question: question?,
                answer: answer?,
            })
        }
        "csv" => {
            let delimiter = match r.entry("delimiter") {
                Some(e) => {
                    let v = cx.eval(&e.value)?;
                    let s = as_string(&v, "delimiter", cx)?;
                    let mut chars = s.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) if c != '"' && c != '\n' => c,
                        _ => {
                            cx.push(
                                Problem::error(
                                    Code::OutOfRange,
                                    v.span,
                                    "`delimiter` must be one character",
                                )
                                .label("not one character")
                                .help("e.g. `delimiter = \",\"` or `delimiter = \"\\t\"`"),
                            );
                            return None;
                        }
                    }
                }
                None => ',',
            };
            let header = r.bool("header", cx).unwrap_or(true);
            Some(Source::Csv {
                paths: paths?,
                delimiter,
                header,
            })
        }
        "text" => {
            let mode = r.symbol("mode", TEXT_MODES, cx).unwrap_or("lines");
            let sep = r.entry("separator");
            let mode = match mode {
                "separator" => {
                    let Some(e) = sep else {
                        cx.missing(
                            r.span(),
                            "`separator`",
                            "name the line that separates examples, e.g. `separator = \"%\"`",
                        );
                        return None;
                    };
                    let v = cx.eval(&e.value)?;
                    let line = as_string(&v, "separator", cx)?;
                    if line.is_empty() || line.contains('\n') {
                        cx.push(
                            Problem::error(
                                Code::OutOfRange,
                                v.span,
                                "`separator` must be a non-empty single line",
                            )
                            .label("bad separator")
                            .help("e.g. `separator = \"%\"`"),
                        );
                        return None;
                    }
                    TextMode::Separator { line }
                }
                m => {
                    if let Some(e) = sep {
                        cx.push(
                            Problem::error(
                                Code::Contradiction,
                                e.key_span(),
                                "`separator` without `mode = separator`",
                            )
                            .label(format!("mode is `{m}`"))
                            .help("add `mode = separator` or remove `separator`"),
                        );
                    }
                    if m == "documents" {
                        TextMode::Documents
                    } else {
                        TextMode::Lines
                    }
                }
            };
            Some(Source::Text {
                paths: paths?,
                mode,
            })
        }
        "plugin" => {
            let args = plugin_args.unwrap_or_default();
            let Some(first) = args.first().filter(|a| a.name.is_none()) else {
                cx.push(
                    Problem::error(Code::Missing, v.span, "`plugin(...)` needs the plugin's name first")
                        .label("which plugin?")
                        .help("write `format = plugin(my_loader, option = value)` with a `plugin my_loader { ... }` block"),
                );
                return None;
            };
            let ExprKind::Symbol(plugin) = &first.value.kind else {
                wrong_type(&first.value, "plugin", "the name of a `plugin` block", cx);
                return None;
            };
            cx.plugin_refs.push((plugin.clone(), first.value.span));
            let site = PluginSite::Dataset {
                name: dataset.to_string(),
            };
            let mut used = PluginUse::new(site, plugin, v.span, &args[1..]);
            if let Some(e) = r.entry("path") {
                used.options.push(("path".into(), e.value.span));
            }
            cx.plugin_uses.push(used);
            let mut options = BTreeMap::new();
            for a in &args[1..] {
                match &a.name {
                    Some(n) => {
                        if let Some(o) = option_value(&a.value, cx) {
                            options.insert(n.name.clone(), o);
                        }
                    }
                    None => {
                        cx.push(
                            Problem::error(
                                Code::WrongType,
                                a.value.span,
                                "plugin options need names",
                            )
                            .label("unnamed option")
                            .help("write `plugin(my_loader, key = value)`"),
                        );
                    }
                }
            }
            Some(Source::Plugin {
                plugin: plugin.clone(),
                path,
                options,
            })
        }
        other => {
            cx.push(
                Problem::error(
                    Code::WrongType,
                    v.span,
                    format!("`{other}` is not a data format"),
                )
                .label("unknown format")
                .help(suggest::help_for(other, "formats are", FORMATS)),
            );
            None
        }
    }
}

fn split(block: &Block, seed: u64, cx: &mut Ctx) -> Option<Split> {
    let mut r = Reader::new(block, cx);
    let part = |key: &str, r: &mut Reader, cx: &mut Ctx| -> Option<Option<SplitPart>> {
        let Some(v) = r.value(key, cx) else {
            return Some(None);
        };
        match &v.kind {
            ExprKind::Str(_) | ExprKind::RawStr(_) | ExprKind::List(_) => {
                Some(Some(SplitPart::File {
                    paths: as_paths(&v, key, cx)?,
                }))
            }
            ExprKind::Number { .. } | ExprKind::Quantity { .. } => {
                let f = crate::reader::as_number(&v, key, 0.0, 1.0, cx)?;
                if f <= 0.0 || f >= 1.0 {
                    cx.push(
                        Problem::error(
                            Code::OutOfRange,
                            v.span,
                            format!("`{key}` must be a fraction strictly between 0 and 1"),
                        )
                        .label("out of range")
                        .help(format!("e.g. `{key} = 10%` or `{key} = 0.1`")),
                    );
                    return None;
                }
                Some(Some(SplitPart::Fraction { fraction: f }))
            }
            _ => {
                wrong_type(
                    &v,
                    key,
                    "a fraction (`10%`), a file path in quotes or a list of paths",
                    cx,
                );
                None
            }
        }
    };
    let validation = part("validation", &mut r, cx);
    let test = part("test", &mut r, cx);
    let seed = r.int("seed", 0, u64::MAX, cx).unwrap_or(seed);
    let contiguous = r.int("contiguous", 1, 1 << 30, cx).unwrap_or(1) as u32;
    r.finish(
        SPLIT_KEYS,
        &[],
        &|k| {
            (k == "train").then(|| {
                "the train split is what `validation` and `test` leave of `path`".to_string()
            })
        },
        cx,
    );
    let (validation, test) = (validation?, test?);
    if let (Some(SplitPart::Fraction { fraction: a }), Some(SplitPart::Fraction { fraction: b })) =
        (&validation, &test)
        && a + b >= 1.0
    {
        cx.push(
            Problem::error(Code::Contradiction, block.kind.span, format!(
                "`validation` and `test` take {:.0}% of the data together: nothing is left to train on",
                (a + b) * 100.0
            ))
            .label("no training data left")
            .help("make the two fractions add up to less than 100%"),
        );
        return None;
    }
    Some(Split {
        validation,
        test,
        seed,
        contiguous,
    })
}

/// Tokens per example of supervised causal-LM data when `max_length` is not written.
pub const SUPERVISED_MAX_LENGTH: u32 = 512;

/// The preprocessing of a dataset without a `preprocess` block; `supervised` data (prompt and
/// completion, or chat) is cut at [`SUPERVISED_MAX_LENGTH`] tokens instead of 128.
pub fn default_preprocess(supervised: bool) -> Preprocess {
    Preprocess {
        max_length: if supervised {
            SUPERVISED_MAX_LENGTH
        } else {
            128
        },
        truncation: Side::Right,
        strip: Vec::new(),
        lowercase: false,
        block_size: 256,
        train_on: TrainOn::Completions,
        packing: false,
    }
}

fn preprocess(b: &Block, supervised: bool, images: bool, cx: &mut Ctx) -> Option<Preprocess> {
    let d = default_preprocess(supervised);
    let mut r = Reader::new(b, cx);
    let max_length = r
        .int("max_length", 1, 1 << 20, cx)
        .map(|v| v as u32)
        .unwrap_or(d.max_length);
    let truncation = match r.symbol("truncation", TRUNCATIONS, cx) {
        Some("left") => Side::Left,
        _ => Side::Right,
    };
    let mut strip = Vec::new();
    if let Some(v) = r.value("strip", cx) {
        let items: Vec<_> = match &v.kind {
            ExprKind::List(l) => l.clone(),
            _ => vec![v.clone()],
        };
        for e in items {
            if let Some(s) = as_string(&e, "strip", cx)
                && regex_ok(&s, e.span, cx).is_some()
            {
                strip.push(s);
            }
        }
    }
    let lowercase = r.bool("lowercase", cx).unwrap_or(false);
    let block_size = r
        .int("block_size", 2, 1 << 20, cx)
        .map(|v| v as u32)
        .unwrap_or(d.block_size);
    let train_on = match r.symbol("train_on", TRAIN_ON, cx) {
        Some("all") => TrainOn::All,
        _ => d.train_on,
    };
    let packing = r.bool("packing", cx).unwrap_or(d.packing);
    if images {
        // An image question is one row: its image tokens lead the row, and it is never cut.
        for (key, why, help) in [
            (
                "packing",
                "each row holds one image and its question",
                "remove `packing`: image questions are padded, one per row",
            ),
            (
                "truncation",
                "an image question is never cut",
                "remove `truncation`: an example longer than max_length is a bad row (raise \
                 max_length, or `on_bad_row = skip`)",
            ),
        ] {
            if let Some(e) = b.entries().find(|e| e.key_text() == key) {
                cx.push(
                    Problem::error(
                        Code::Contradiction,
                        e.key_span(),
                        format!("`{key}` does not apply to image questions"),
                    )
                    .label(why)
                    .help(help),
                );
            }
        }
    }
    if !supervised {
        for key in ["train_on", "packing"] {
            if let Some(e) = b.entries().find(|e| e.key_text() == key) {
                cx.push(
                    Problem::error(
                        Code::Contradiction,
                        e.key_span(),
                        format!("`{key}` applies to supervised data only"),
                    )
                    .label("this dataset has no `prompt`/`completion` or `messages`")
                    .help(format!(
                        "name the supervised columns (`prompt = \"prompt\"` and `completion = \"completion\"`, or `messages = \"messages\"`), or remove `{key}`"
                    )),
                );
            }
        }
    }
    r.finish(PREPROCESS_KEYS, &[], &|_| None, cx);
    Some(Preprocess {
        max_length,
        truncation,
        strip,
        lowercase,
        block_size,
        train_on,
        packing,
    })
}

/// An image column: the records are image questions, read from a format with columns, with
/// `prompt` (the question) and `completion` (the answer).
fn image_fields(b: &Block, fmt: Option<&str>, cx: &mut Ctx) {
    let entry = |key: &str| b.entries().find(|e| e.key_text() == key);
    let Some(e) = entry("image") else { return };
    if !matches!(fmt, Some("jsonl" | "csv" | "parquet")) {
        cx.push(
            Problem::error(
                Code::Contradiction,
                e.key_span(),
                format!(
                    "`image` is not available for `{}` sources",
                    fmt.unwrap_or("?")
                ),
            )
            .label("needs a column with each example's image file")
            .help("read image questions from `format = jsonl`, `csv` or `parquet`"),
        );
    }
    if let Some(m) = entry("messages") {
        cx.push(
            Problem::error(
                Code::Contradiction,
                m.key_span(),
                "`messages` with `image`: an image question is a question and an answer",
            )
            .label("a chat cannot carry the image")
            .help("name the question and answer columns: `prompt = \"question\"`, `completion = \"answer\"`"),
        );
    } else if entry("prompt").is_none() && entry("completion").is_none() {
        cx.push(
            Problem::error(
                Code::Missing,
                e.key_span(),
                "`image` without `prompt` and `completion`",
            )
            .label("the image needs its question and answer")
            .help("name their columns: `prompt = \"question\"`, `completion = \"answer\"`"),
        );
    }
}

/// `question` of an image folder per class: required, asked as written (so it cannot name the
/// answer's `{label}`).
fn image_question(r: &mut Reader, cx: &mut Ctx) -> Option<String> {
    let Some(e) = r.entry("question") else {
        cx.missing(
            r.span(),
            "`question`",
            "image folders are image questions: write the question asked about every image, e.g. \
             `question = \"what shape is in the image?\"` (the class is the answer)",
        );
        return None;
    };
    let v = cx.eval(&e.value)?;
    let question = as_string(&v, "question", cx)?;
    let problem = if question.trim().is_empty() {
        Some(("`question` is empty", "nothing is asked"))
    } else if question.contains("{label}") {
        Some((
            "`question` names `{label}`: it would give the answer away",
            "the question is asked as written",
        ))
    } else {
        None
    };
    if let Some((msg, label)) = problem {
        cx.push(
            Problem::error(Code::OutOfRange, v.span, msg)
                .label(label)
                .help("ask about the image, e.g. `question = \"what shape is in the image?\"`; the class goes into `answer`"),
        );
        return None;
    }
    Some(question)
}

/// `answer` of an image folder per class: a template with `{label}` (default `{label}`).
fn answer_template(r: &mut Reader, cx: &mut Ctx) -> Option<String> {
    let Some(e) = r.entry("answer") else {
        return Some("{label}".to_string());
    };
    let v = cx.eval(&e.value)?;
    let answer = as_string(&v, "answer", cx)?;
    if !answer.contains("{label}") {
        cx.push(
            Problem::error(
                Code::OutOfRange,
                v.span,
                "`answer` has no `{label}`",
            )
            .label("every image would get the same answer")
            .help("write where the class (the folder's name) goes: `answer = \"{label}\"` (the default) or `answer = \"a {label}\"`"),
        );
        return None;
    }
    Some(answer)
}

/// Keys an image folder per class has no use for: its examples are the image files, labelled by
/// their folder, asked `question` and answered `answer`.
fn image_folder_fields(b: &Block, cx: &mut Ctx) {
    for e in b.entries() {
        let key = e.key_text();
        let (label, help) = match key.as_str() {
            "text" | "text_pair" => (
                "image folders have no text columns: each image file is an example",
                format!("remove `{key}`"),
            ),
            "label" => (
                "the class is the name of the image's folder",
                "remove `label` (`label_regex` extracts the class from the folder's name)"
                    .to_string(),
            ),
            "prompt" | "completion" | "messages" => (
                "the question and answer are written with `question` and `answer`",
                format!(
                    "remove `{key}`; write `question = \"what shape is in the image?\"` and, to \
                     answer more than the class, `answer = \"a {{label}}\"`"
                ),
            ),
            "image" => (
                "each PNG or JPEG file in a class folder is an example's image",
                "remove `image`".to_string(),
            ),
            _ => continue,
        };
        cx.push(
            Problem::error(
                Code::Contradiction,
                e.key_span(),
                format!("`{key}` does not apply to `image_folders` sources"),
            )
            .label(label)
            .help(help),
        );
    }
}

/// Supervised columns (`prompt`/`completion` or `messages`): the format must have such columns,
/// `prompt` and `completion` come together, and they replace the plain-text keys.
fn supervised_fields(b: &Block, fmt: Option<&str>, cx: &mut Ctx) {
    let entry = |key: &str| b.entries().find(|e| e.key_text() == key);
    for key in SUPERVISED {
        let Some(e) = entry(key) else { continue };
        let refusal = match fmt {
            Some("plugin") => Some((
                "loader plugins yield text records".to_string(),
                "read prompt/completion or chat data from `format = jsonl` or `parquet`".to_string(),
            )),
            Some("text" | "folders") => Some((
                format!("no columns in `{}` sources", fmt.unwrap_or("?")),
                "supervised columns are read from `jsonl` or `parquet` (or `csv` for `prompt`/`completion`)"
                    .to_string(),
            )),
            Some("csv") if *key == "messages" => Some((
                "a CSV cell holds no list of messages".to_string(),
                "read chat data from `format = jsonl` or `parquet`, or name `prompt` and `completion` columns"
                    .to_string(),
            )),
            _ => None,
        };
        if let Some((label, help)) = refusal {
            cx.push(
                Problem::error(
                    Code::Contradiction,
                    e.key_span(),
                    format!(
                        "`{key}` is not available for `{}` sources",
                        fmt.unwrap_or("?")
                    ),
                )
                .label(label)
                .help(help),
            );
        }
    }
    match (entry("prompt"), entry("completion")) {
        (Some(e), None) | (None, Some(e)) => {
            let (have, lack) = if e.key_text() == "prompt" {
                ("prompt", "completion")
            } else {
                ("completion", "prompt")
            };
            cx.push(
                Problem::error(
                    Code::Missing,
                    e.key_span(),
                    format!("`{have}` without `{lack}`"),
                )
                .label(format!("needs `{lack}` too"))
                .help(format!(
                    "a prompt/completion record names both columns: add `{lack} = \"{lack}\"`"
                )),
            );
        }
        _ => {}
    }
    if let Some(m) = entry("messages")
        && let Some(pc) = entry("prompt").or_else(|| entry("completion"))
    {
        cx.push(
            Problem::error(
                Code::Contradiction,
                m.key_span(),
                format!("`messages` together with `{}`", pc.key_text()),
            )
            .label("a chat and a prompt/completion pair")
            .help("a record is either a chat (`messages`) or a prompt/completion pair: keep one"),
        );
    }
    for key in PLAIN {
        if let Some(e) = entry(key) {
            cx.push(
                Problem::error(
                    Code::Contradiction,
                    e.key_span(),
                    format!("`{key}` with supervised columns"),
                )
                .label("supervised records have no plain text or label")
                .help(format!(
                    "the records are `prompt`/`completion` pairs or `messages` chats: remove `{key}`, or remove the supervised columns to train on `{key}`"
                )),
            );
        }
    }
}
