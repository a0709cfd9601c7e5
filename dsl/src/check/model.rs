//! `model { ... }`: the base model, its task head, dtype and device.

use crate::ast::{Block, ExprKind};
use crate::diag::{Code, Problem};
use crate::pipeline::*;
use crate::reader::{Ctx, Reader, as_int, as_string, wrong_type};

const KEYS: &[&str] = &[
    "path",
    "format",
    "head",
    "classes",
    "pooling",
    "dtype",
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
    let path = r.path("path", cx);
    if !r.has("path") {
        cx.missing(r.span(), "`path`", "name the model: a Hugging Face folder or a `.gguf` file, e.g. `path = \"${assets}/minilm\"`");
    }
    // Without `format`, the file name decides: `.gguf` is GGUF, anything else a HF folder.
    let format = match r.symbol("format", &["hf_folder", "gguf"], cx) {
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
                Some(v) => match crate::reader::as_symbol(&v, "pooling", &["mean", "cls"], cx)? {
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
                r.symbol("dtype", &["f32", "f16", "bf16"], cx),
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
    let dtype = match r.symbol("dtype", &["f32", "f16", "bf16"], cx) {
        Some("f16") => DType::F16,
        Some("bf16") => DType::Bf16,
        _ => DType::F32,
    };
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
        device,
        chat_template,
    })
}
