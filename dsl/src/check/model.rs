//! `model { ... }`: the base model, its task head, dtype and device.

use crate::ast::{Block, ExprKind};
use crate::diag::{Code, Problem};
use crate::pipeline::*;
use crate::reader::{Ctx, Reader, as_int, as_string, wrong_type};

pub(super) const KEYS: &[&str] = &[
    "path",
    "format",
    "head",
    "classes",
    "pooling",
    "dtype",
    "quantize",
    "quantize_group",
    "device",
    "chat_template",
];
pub const HEADS: &[&str] = &["causal_lm", "sequence_classification", "embedding"];

pub fn check(b: &Block, cx: &mut Ctx) -> Option<Model> {
    let mut r = Reader::new(b, cx);
    let path_text = r
        .entry("path")
        .and_then(|e| cx.eval(&e.value))
        .and_then(|v| as_string(&v, "path", cx));
    // `hf:ORG/NAME` names a model in the local Hugging Face cache: kept as written (the engine
    // looks it up, engine/models/src/hf/hub_cache.rs), never joined to the pipeline's folder.
    let path = match path_text.as_deref().and_then(crate::hf_ref::HfRef::parse) {
        Some(parsed) => {
            let v = r.value("path", cx);
            match (parsed, v) {
                (Ok(_), _) => path_text.as_deref().map(std::path::PathBuf::from),
                (Err(why), Some(v)) => {
                    cx.push(
                        Problem::error(Code::OutOfRange, v.span, why)
                            .label("not a Hugging Face model name")
                            .help("a path without `hf:` names a folder or a `.gguf` file"),
                    );
                    None
                }
                (Err(_), None) => None,
            }
        }
        None => r.path("path", cx),
    };
    if !r.has("path") {
        cx.missing(r.span(), "`path`", "name the model: a Hugging Face folder or a `.gguf` file, e.g. `path = \"${assets}/minilm\"`");
    }
    // Without `format`, the file name decides: `.gguf` is GGUF, anything else a HF folder.
    let format = match r.symbol("format", FORMATS, cx) {
        Some("gguf") => ModelFormat::Gguf,
        Some(_) => ModelFormat::HfFolder,
        None if path_text.as_deref().is_some_and(|p| p.ends_with(".gguf")) => ModelFormat::Gguf,
        None => ModelFormat::HfFolder,
    };
    let head_word = r.symbol("head", HEADS, cx);
    if !r.has("head") {
        cx.missing(
            r.span(),
            "`head`",
            "say what the model does: `head = causal_lm`, `sequence_classification` or `embedding`",
        );
    }
    let classes = r.entry("classes");
    let pooling = r.entry("pooling");
    let head = match head_word {
        Some("sequence_classification") => {
            let classes = match classes {
                None => Classes::FromData,
                Some(e) => {
                    let v = cx.eval(&e.value)?;
                    match &v.kind {
                        ExprKind::Symbol(s) if s == "auto" => Classes::FromData,
                        ExprKind::List(l) if !l.is_empty() => {
                            let mut names = Vec::new();
                            for i in l {
                                let n = as_string(i, "classes", cx)?;
                                if names.contains(&n) {
                                    cx.push(
                                        Problem::error(
                                            Code::Duplicate,
                                            i.span,
                                            format!("class `{n}` is listed twice"),
                                        )
                                        .label("duplicate")
                                        .help("list each class once"),
                                    );
                                    return None;
                                }
                                names.push(n);
                            }
                            if names.len() < 2 {
                                cx.push(
                                    Problem::error(Code::OutOfRange, v.span, "a classifier needs at least two classes")
                                        .label("one class")
                                        .help("list every class, or write `classes = auto` to take them from the data"),
                                );
                                return None;
                            }
                            Classes::Names { names }
                        }
                        _ => {
                            wrong_type(&v, "classes", "`auto` or a list of class names", cx);
                            return None;
                        }
                    }
                }
            };
            Head::SequenceClassification { classes }
        }
        Some("embedding") => {
            // Parsed in full (so its own mistakes are reported too), then refused: the trainer
            // has no contrastive objective to train an embedding head with.
            if let Some(e) = r.entry("head") {
                cx.push(
                    Problem::error(
                        Code::NotImplemented,
                        e.value.span,
                        "training an embedding head is not implemented (it needs a contrastive objective)",
                    )
                    .label("no trainer for this head")
                    .help(
                        "train `head = sequence_classification` or `causal_lm`; `ardpipe embed` computes \
                         embeddings with the base model",
                    ),
                );
            }
            let pooling = match pooling.and_then(|e| cx.eval(&e.value)) {
                Some(v) => match crate::reader::as_symbol(&v, "pooling", POOLINGS, cx)? {
                    "cls" => Pooling::Cls,
                    _ => Pooling::Mean,
                },
                None => Pooling::Mean,
            };
            Head::Embedding { pooling }
        }
        Some(_) => Head::CausalLm,
        // Unknown or missing head: read the other keys anyway so their problems are reported too.
        None => {
            let _ = (
                r.symbol("dtype", DTYPES, cx),
                r.symbol("quantize", QUANTIZE, cx),
                r.int("quantize_group", 1, u64::MAX, cx),
                r.value("device", cx),
            );
            r.finish(KEYS, &[], &|_| None, cx);
            return None;
        }
    };
    if !matches!(head, Head::SequenceClassification { .. })
        && let Some(e) = classes
    {
        cx.push(
            Problem::error(
                Code::Contradiction,
                e.key_span(),
                "`classes` applies to `head = sequence_classification` only",
            )
            .label("this head has no classes")
            .help("remove `classes`, or change the head"),
        );
    }
    if !matches!(head, Head::Embedding { .. })
        && let Some(e) = pooling
    {
        cx.push(
            Problem::error(
                Code::Contradiction,
                e.key_span(),
                "`pooling` applies to `head = embedding` only",
            )
            .label("this head does not pool")
            .help("remove `pooling`, or change the head"),
        );
    }
    let dtype = match r.symbol("dtype", DTYPES, cx) {
        Some("f32") => DType::F32,
        Some("f16") => DType::F16,
        Some("bf16") => DType::Bf16,
        _ => DType::Auto,
    };
    let quantize = quantize(&mut r, cx)?;
    let device = match r.value("device", cx) {
        None => Device::Auto,
        Some(v) => match &v.kind {
            ExprKind::Symbol(s) if s == "auto" => Device::Auto,
            ExprKind::Symbol(s) if s == "cpu" => Device::Cpu,
            ExprKind::Symbol(s) if s == "cuda" => Device::Cuda { index: 0 },
            ExprKind::Call { name, args }
                if name.name == "cuda" && args.len() == 1 && args[0].name.is_none() =>
            {
                Device::Cuda {
                    index: as_int(&args[0].value, "cuda", 0, 1023, cx)? as u32,
                }
            }
            _ => {
                wrong_type(&v, "device", "`auto`, `cpu`, `cuda` or `cuda(INDEX)`", cx);
                return None;
            }
        },
    };
    let chat_template = r.path("chat_template", cx);
    r.finish(KEYS, &[], &|_| None, cx);
    Some(Model {
        path: path?,
        format,
        head,
        dtype,
        quantize,
        device,
        chat_template,
    })
}

pub(super) const FORMATS: &[&str] = &["hf_folder", "gguf"];
pub(super) const POOLINGS: &[&str] = &["mean", "cls"];
pub(super) const DTYPES: &[&str] = &["auto", "f32", "f16", "bf16"];
pub(super) const QUANTIZE: &[&str] = &["none", "int8", "int4"];
/// Group sizes libtorch's int4 kernels take (columns sharing one scale).
const INT4_GROUPS: &[u64] = &[32, 64, 128, 256];

/// `quantize = none | int8 | int4` and, for int4, `quantize_group` (32 when absent).
fn quantize(r: &mut Reader, cx: &mut Ctx) -> Option<Quantize> {
    let kind = r.symbol("quantize", QUANTIZE, cx);
    let group_entry = r
        .entry("quantize_group")
        .map(|e| (e.key_span(), e.value.span));
    let group = r.int("quantize_group", 1, 1 << 20, cx);
    match kind {
        Some("int4") => {
            let group = group.unwrap_or(32);
            if !INT4_GROUPS.contains(&group) {
                let span = group_entry.map(|(_, v)| v).unwrap_or(r.span());
                cx.push(
                    Problem::error(
                        Code::OutOfRange,
                        span,
                        format!("`quantize_group = {group}` is not an int4 group size"),
                    )
                    .label("not 32, 64, 128 or 256")
                    .help("use 32, 64, 128 or 256 columns per scale (smaller is more exact, larger smaller)"),
                );
                return None;
            }
            Some(Quantize::Int4 {
                group: group as u32,
            })
        }
        other => {
            if let Some((key, _)) = group_entry {
                cx.push(
                    Problem::error(
                        Code::Contradiction,
                        key,
                        "`quantize_group` applies to `quantize = int4` only",
                    )
                    .label("no groups here")
                    .help("int8 keeps one scale per output channel: remove `quantize_group`, or use `quantize = int4`"),
                );
                return None;
            }
            Some(match other {
                Some("int8") => Quantize::Int8,
                _ => Quantize::None,
            })
        }
    }
}
