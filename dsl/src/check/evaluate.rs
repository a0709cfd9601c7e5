//! `evaluate { ... }` and metric names.

use std::collections::BTreeMap;

use crate::ast::{Block, Expr, ExprKind, Span};
use crate::diag::{Code, Problem};
use crate::pipeline::*;
use crate::plugin_uses::{PluginSite, PluginUse};
use crate::reader::{Ctx, Reader, as_string, wrong_type};
use crate::suggest;

use super::values::option_value;

pub const METRICS: &[&str] = &["loss", "perplexity", "accuracy", "macro_f1", "exact_match"];
pub(super) const KEYS: &[&str] = &["dataset", "split", "metrics", "batch_size", "max_examples"];
pub(super) const SPLITS: &[&str] = &["validation", "test", "train"];

pub struct EvalSpans {
    pub dataset: Option<Span>,
    pub split: Option<Span>,
    /// Each metric with where it was written.
    pub metrics: Vec<Span>,
}

/// The evaluate block as read: dataset (when named), split, metrics, batch size, the most
/// examples evaluated.
pub type EvalParts = (
    Option<String>,
    SplitName,
    Vec<Metric>,
    Option<u32>,
    Option<u64>,
);

pub fn check(b: &Block, cx: &mut Ctx) -> (Option<EvalParts>, EvalSpans) {
    let mut r = Reader::new(b, cx);
    let mut spans = EvalSpans {
        dataset: None,
        split: None,
        metrics: Vec::new(),
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
    spans.split = r
        .block
        .entries()
        .find(|e| e.key_text() == "split")
        .map(|e| e.value.span);
    let split = match r.symbol("split", SPLITS, cx) {
        Some("test") => SplitName::Test,
        Some("train") => SplitName::Train,
        _ => SplitName::Validation,
    };
    let mut metrics = Vec::new();
    let mut ok = true;
    match r.value("metrics", cx) {
        Some(v) => {
            let items = match &v.kind {
                ExprKind::List(l) => l.clone(),
                _ => vec![v.clone()],
            };
            for e in &items {
                match metric(e, cx) {
                    Some(m) => {
                        if metrics.contains(&m) {
                            cx.push(
                                Problem::error(
                                    Code::Duplicate,
                                    e.span,
                                    "this metric is listed twice",
                                )
                                .label("duplicate")
                                .help("list each metric once"),
                            );
                        } else {
                            if let (Metric::Plugin { plugin, .. }, ExprKind::Call { args, .. }) =
                                (&m, &e.kind)
                            {
                                let site = PluginSite::Metric {
                                    index: metrics.len(),
                                };
                                let args = args.get(1..).unwrap_or_default();
                                cx.plugin_uses
                                    .push(PluginUse::new(site, plugin, e.span, args));
                            }
                            metrics.push(m);
                            spans.metrics.push(e.span);
                        }
                    }
                    None => ok = false,
                }
            }
        }
        None => {
            metrics.push(Metric::Loss);
            spans.metrics.push(b.kind.span);
        }
    }
    let batch_size = r.int("batch_size", 1, 1 << 20, cx).map(|v| v as u32);
    let max_examples = r.int("max_examples", 1, u64::MAX, cx);
    r.finish(KEYS, &[], &|_| None, cx);
    let _ = ok;
    (
        Some((dataset, split, metrics, batch_size, max_examples)),
        spans,
    )
}

/// `accuracy`, or `plugin(NAME, metric = "name", option = value, ...)`.
pub fn metric(e: &Expr, cx: &mut Ctx) -> Option<Metric> {
    match &e.kind {
        ExprKind::Symbol(s) => match s.as_str() {
            "loss" => Some(Metric::Loss),
            "perplexity" => Some(Metric::Perplexity),
            "accuracy" => Some(Metric::Accuracy),
            "macro_f1" => Some(Metric::MacroF1),
            "exact_match" => Some(Metric::ExactMatch),
            other => {
                cx.push(
                    Problem::error(
                        Code::UnknownKey,
                        e.span,
                        format!("`{other}` is not a built-in metric"),
                    )
                    .label("unknown metric")
                    .help(
                        match suggest::closest(other, METRICS.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "built-in metrics are {}; a plugin's metric is `plugin(NAME)`",
                                suggest::list(METRICS)
                            ),
                        },
                    ),
                );
                None
            }
        },
        ExprKind::Call { name, args } if name.name == "plugin" => {
            let Some(first) = args.first().filter(|a| a.name.is_none()) else {
                cx.push(
                    Problem::error(
                        Code::Missing,
                        e.span,
                        "`plugin(...)` needs the plugin's name first",
                    )
                    .label("which plugin?")
                    .help("write `plugin(my_metrics)` with a `plugin my_metrics { ... }` block"),
                );
                return None;
            };
            let ExprKind::Symbol(plugin) = &first.value.kind else {
                wrong_type(&first.value, "plugin", "the name of a `plugin` block", cx);
                return None;
            };
            cx.plugin_refs.push((plugin.clone(), first.value.span));
            let mut name_opt = None;
            let mut options = BTreeMap::new();
            for a in &args[1..] {
                match &a.name {
                    Some(n) if n.name == "metric" => name_opt = as_string(&a.value, "metric", cx),
                    Some(n) => {
                        if let Some(o) = option_value(&a.value, cx) {
                            options.insert(n.name.clone(), o);
                        }
                    }
                    None => cx.push(
                        Problem::error(Code::WrongType, a.value.span, "plugin options need names")
                            .label("unnamed option")
                            .help("write `plugin(my_metrics, metric = \"bleu\", key = value)`"),
                    ),
                }
            }
            Some(Metric::Plugin {
                plugin: plugin.clone(),
                name: name_opt,
                options,
            })
        }
        _ => {
            wrong_type(
                e,
                "metrics",
                "a metric name such as `accuracy` or `plugin(NAME)`",
                cx,
            );
            None
        }
    }
}
