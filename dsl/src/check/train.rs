//! `train { ... }`: optimizers, learning-rate schedules, batch, duration, cadence, stopping.

use crate::ast::{Block, Expr, ExprKind, Span};
use crate::diag::{Code, Problem};
use crate::pipeline::*;
use crate::reader::{Ctx, Reader, wrong_type};

use super::values::{Args, position, schedule};

pub(super) const KEYS: &[&str] = &[
    "dataset",
    "optimizer",
    "lr",
    "head_lr",
    "lr_scale",
    "alpha_optimizer",
    "alpha_lr",
    "batch_size",
    "grad_accum",
    "steps",
    "epochs",
    "clip",
    "precision",
    "checkpointing",
    "seed",
    "log_every",
    "eval_every",
    "checkpoint_every",
];
pub(super) const BLOCKS: &[&str] = &["early_stopping"];
pub(super) const PRECISIONS: &[&str] = &["f32", "bf16", "f16"];
pub(super) const CHECKPOINTING: &[&str] = &["none", "layers"];
pub(super) const EARLY_STOPPING_KEYS: &[&str] = &["metric", "mode", "patience", "min_delta"];
pub(super) const EARLY_MODES: &[&str] = &["min", "max"];

/// The parts of `train` the top level cross-checks against other blocks.
pub struct TrainSpans {
    pub dataset: Option<Span>,
    pub alpha_keys: Vec<Span>,
    pub eval_every: Option<Span>,
    pub early_metric: Option<Span>,
    pub duration: Option<Span>,
    pub length: Option<Duration>,
}

pub fn check(b: &Block, seed: u64, cx: &mut Ctx) -> (Option<Train>, TrainSpans) {
    let mut r = Reader::new(b, cx);
    let mut spans = TrainSpans {
        dataset: None,
        alpha_keys: Vec::new(),
        eval_every: None,
        early_metric: None,
        duration: None,
        length: None,
    };
    let dataset = r.entry("dataset").and_then(|e| {
        spans.dataset = Some(e.value.span);
        let v = cx.eval(&e.value)?;
        match &v.kind {
            ExprKind::Symbol(s) => Some(s.clone()),
            _ => {
                wrong_type(&v, "dataset", "the name of a `dataset` block", cx);
                None
            }
        }
    });
    let optimizer = match r.value("optimizer", cx) {
        Some(v) => parse_optimizer(&v, cx),
        None => Some(default_adamw(0.01)),
    };
    for k in ["alpha_optimizer", "alpha_lr"] {
        if let Some(e) = r.block.entries().find(|e| e.key_text() == k) {
            spans.alpha_keys.push(e.key_span());
        }
    }
    let alpha_optimizer = match r.value("alpha_optimizer", cx) {
        Some(v) => parse_optimizer(&v, cx),
        // Pooled: a unit whose task gradient is larger moves further (per-element Adam would
        // move every α by about alpha_lr per step whatever its pull).
        None => Some(Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            pooled: true,
        }),
    };
    if let Some(Optimizer::AdamW { weight_decay, .. } | Optimizer::Sgd { weight_decay, .. }) =
        alpha_optimizer
        && weight_decay != 0.0
        && let Some(e) = r
            .block
            .entries()
            .find(|e| e.key_text() == "alpha_optimizer")
    {
        cx.push(
            Problem::error(Code::Contradiction, e.value.span, "α takes no weight decay")
                .label("weight decay on α")
                .help("weight decay would pull every rank towards zero regardless of λ; set `weight_decay = 0` or use `adam`"),
        );
    }
    let lr = match r.value("lr", cx) {
        Some(v) => schedule(&v, "lr", 0.0, 10.0, cx),
        None => {
            cx.missing(r.span(), "`lr`", "set the learning rate, e.g. `lr = 3e-4` or `lr = warmup(cosine(from = 3e-4, to = 0), over = 10%)`");
            None
        }
    };
    let head_lr = match r.value("head_lr", cx) {
        Some(v) => schedule(&v, "head_lr", 0.0, 10.0, cx).map(Some),
        None => Some(None),
    };
    let lr_scale = r.number("lr_scale", 1e-6, 1e6, cx).unwrap_or(1.0);
    let alpha_lr = match r.value("alpha_lr", cx) {
        Some(v) => schedule(&v, "alpha_lr", 0.0, 10.0, cx),
        // 5e-2: a run of a hundred steps can move α across its range, so that λ rather than
        // the step count decides where ranks settle (docs/METHOD.md).
        None => Some(Schedule::Constant { value: 5e-2 }),
    };
    let batch_size = r.int("batch_size", 1, 1 << 20, cx).unwrap_or(16) as u32;
    let grad_accum = r.int("grad_accum", 1, 1 << 16, cx).unwrap_or(1) as u32;
    let steps_e = r.entry("steps");
    let epochs_e = r.entry("epochs");
    let duration = match (steps_e, epochs_e) {
        (Some(s), Some(e)) => {
            cx.push(
                Problem::error(Code::Contradiction, e.key_span(), "`steps` and `epochs` are both set")
                    .label("second length of training")
                    .help(format!("keep one: training stops after `steps` or after `epochs` (steps was set at byte {})", s.span.start)),
            );
            None
        }
        (Some(s), None) => {
            spans.duration = Some(s.value.span);
            cx.eval(&s.value)
                .and_then(|v| count(&v, "steps", &["steps", "step"], cx))
                .map(Duration::Steps)
        }
        (None, Some(e)) => {
            spans.duration = Some(e.value.span);
            cx.eval(&e.value)
                .and_then(|v| count(&v, "epochs", &["epochs", "epoch"], cx))
                .map(|n| Duration::Epochs(n.min(u32::MAX as u64) as u32))
        }
        (None, None) => {
            cx.missing(
                r.span(),
                "`steps` or `epochs`",
                "say how long to train, e.g. `steps = 300` or `epochs = 3`",
            );
            None
        }
    };
    spans.length = duration;
    let clip = r.number("clip", f64::MIN_POSITIVE, 1e9, cx);
    let precision = match r.symbol("precision", PRECISIONS, cx) {
        Some("bf16") => Precision::Bf16,
        Some("f16") => Precision::F16,
        _ => Precision::F32,
    };
    let checkpointing = match r.symbol("checkpointing", CHECKPOINTING, cx) {
        Some("layers") => Checkpointing::Layers,
        _ => Checkpointing::None,
    };
    let seed = r.int("seed", 0, u64::MAX, cx).unwrap_or(seed);
    let cadence = |key: &str, r: &mut Reader, cx: &mut Ctx| -> Option<Option<Position>> {
        match r.value(key, cx) {
            None => Some(None),
            Some(v) => {
                let p = position(&v, key, cx)?;
                if matches!(p, Position::Steps(0))
                    || matches!(p, Position::Epochs(x) | Position::Fraction(x) if x == 0.0)
                {
                    cx.push(
                        Problem::error(
                            Code::OutOfRange,
                            v.span,
                            format!("`{key}` must be positive"),
                        )
                        .label("never")
                        .help(format!("remove `{key}` to turn it off")),
                    );
                    return None;
                }
                Some(Some(p))
            }
        }
    };
    let log_every = cadence("log_every", &mut r, cx).map(|p| p.unwrap_or(Position::Steps(10)));
    spans.eval_every = r
        .block
        .entries()
        .find(|e| e.key_text() == "eval_every")
        .map(|e| e.key_span());
    let eval_every = cadence("eval_every", &mut r, cx);
    let checkpoint_every = cadence("checkpoint_every", &mut r, cx);
    let early_stopping = match r.block("early_stopping", cx) {
        Some(b) => {
            let mut er = Reader::new(b, cx);
            let metric = er.entry("metric");
            spans.early_metric = metric.map(|m| m.value.span);
            let metric = match metric {
                Some(e) => cx
                    .eval(&e.value)
                    .and_then(|v| super::evaluate::metric(&v, cx)),
                None => Some(Metric::Loss),
            };
            let mode = er.symbol("mode", EARLY_MODES, cx);
            let patience = er.int("patience", 1, 1 << 20, cx).unwrap_or(3) as u32;
            let min_delta = er.number("min_delta", 0.0, f64::MAX, cx).unwrap_or(0.0);
            er.finish(EARLY_STOPPING_KEYS, &[], &|_| None, cx);
            metric.map(|metric| {
                let mode = match mode {
                    Some("min") => Goal::Min,
                    Some(_) => Goal::Max,
                    None => match metric {
                        Metric::Loss | Metric::Perplexity => Goal::Min,
                        _ => Goal::Max,
                    },
                };
                Some(EarlyStopping {
                    metric,
                    mode,
                    patience,
                    min_delta,
                })
            })
        }
        None => Some(None),
    };
    r.finish(KEYS, BLOCKS, &|_| None, cx);
    let train = (|| {
        Some(Train {
            dataset: dataset.unwrap_or_default(),
            optimizer: optimizer?,
            lr: lr?,
            head_lr: head_lr?,
            lr_scale,
            alpha_optimizer: alpha_optimizer?,
            alpha_lr: alpha_lr?,
            batch_size,
            grad_accum,
            duration: duration?,
            clip,
            precision,
            checkpointing,
            seed,
            log_every: log_every?,
            eval_every: eval_every?,
            checkpoint_every: checkpoint_every?,
            early_stopping: early_stopping?,
        })
    })();
    (train, spans)
}

/// `300` or `300 steps` (the unit, when written, must be the key's own).
fn count(v: &Expr, key: &str, units: &[&str], cx: &mut Ctx) -> Option<u64> {
    let plain = match &v.kind {
        ExprKind::Quantity { value, text, unit } => {
            if !units.contains(&unit.name.as_str()) {
                cx.push(
                    Problem::error(
                        Code::BadUnit,
                        unit.span,
                        format!("`{key}` counts {key}, not `{}`", unit.name),
                    )
                    .label("wrong unit")
                    .help(format!("write `{key} = {text}`")),
                );
                return None;
            }
            Expr {
                kind: ExprKind::Number {
                    value: *value,
                    text: text.clone(),
                },
                span: v.span,
            }
        }
        _ => v.clone(),
    };
    crate::reader::as_int(&plain, key, 1, 1 << 40, cx)
}

pub fn default_adamw(weight_decay: f64) -> Optimizer {
    Optimizer::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay,
    }
}

/// `adamw`, `adamw(weight_decay = 0.1)`, `adam(beta2 = 0.99)`, `sgd(momentum = 0.9)`.
fn parse_optimizer(v: &Expr, cx: &mut Ctx) -> Option<Optimizer> {
    let (name, args) = match &v.kind {
        ExprKind::Symbol(s) => (s.as_str(), &[][..]),
        ExprKind::Call { name, args } => (name.name.as_str(), &args[..]),
        _ => {
            wrong_type(
                v,
                "optimizer",
                "`adamw`, `adam` or `sgd`, optionally with arguments",
                cx,
            );
            return None;
        }
    };
    match name {
        "adamw" => {
            let a = Args::new(
                name,
                v.span,
                args,
                &["beta1", "beta2", "eps", "weight_decay"],
                cx,
            )?;
            Some(Optimizer::AdamW {
                beta1: a.number_or("beta1", 0.9, 0.0, 0.999_999, cx)?,
                beta2: a.number_or("beta2", 0.999, 0.0, 0.999_999_9, cx)?,
                eps: a.number_or("eps", 1e-8, 0.0, 1.0, cx)?,
                weight_decay: a.number_or("weight_decay", 0.01, 0.0, 10.0, cx)?,
            })
        }
        "adam" => {
            let a = Args::new(name, v.span, args, &["beta1", "beta2", "eps", "pooled"], cx)?;
            Some(Optimizer::Adam {
                beta1: a.number_or("beta1", 0.9, 0.0, 0.999_999, cx)?,
                beta2: a.number_or("beta2", 0.999, 0.0, 0.999_999_9, cx)?,
                eps: a.number_or("eps", 1e-8, 0.0, 1.0, cx)?,
                pooled: a.bool_or("pooled", false, cx)?,
            })
        }
        "sgd" => {
            let a = Args::new(name, v.span, args, &["momentum", "weight_decay"], cx)?;
            Some(Optimizer::Sgd {
                momentum: a.number_or("momentum", 0.0, 0.0, 0.999_999, cx)?,
                weight_decay: a.number_or("weight_decay", 0.0, 0.0, 10.0, cx)?,
            })
        }
        other => {
            cx.push(
                Problem::error(
                    Code::WrongType,
                    v.span,
                    format!("`{other}` is not an optimizer"),
                )
                .label("unknown optimizer")
                .help(crate::suggest::help_for(
                    other,
                    "optimizers are",
                    &["adamw", "adam", "sgd"],
                )),
            );
            None
        }
    }
}
