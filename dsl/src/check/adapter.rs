//! `adapter NAME { ... }`: where adapters go and which method trains them, with every knob of
//! each method and its default (the tables of docs/LANGUAGE.md, `adapter NAME`).

use crate::ast::{Block, ExprKind};
use crate::diag::{Code, Problem};
use crate::pipeline::*;
use crate::reader::{Ctx, Reader, as_number, as_symbol, wrong_type};

use super::values::{Args, indices, position, schedule, selectors};

pub const METHODS: &[&str] = &["ard_lora", "lora", "dora", "adalora", "full", "head_only"];
pub(super) const PLACEMENT: &[&str] = &["method", "modules", "layers", "heads", "exclude"];
pub(super) const ARD_KEYS: &[&str] = &["r0", "scale", "dropout", "groups", "meta"];
pub(super) const ARD_BLOCKS: &[&str] = &["alpha", "compaction", "regularize"];
pub(super) const LORA_KEYS: &[&str] = &["rank", "scale", "dropout"];
pub(super) const ADALORA_KEYS: &[&str] = &[
    "init_r", "target_r", "tinit", "tfinal", "delta_t", "beta1", "beta2", "orth_reg", "scale",
    "dropout",
];

pub(super) const ALPHA_KEYS: &[&str] = &["init", "min", "max", "update"];
pub(super) const ALPHA_UPDATES: &[&str] = &["proximal", "penalty"];
pub(super) const COMPACTION_KEYS: &[&str] = &["every", "margin"];
pub(super) const REGULARIZE_KEYS: &[&str] = &["lambda", "beta", "gamma", "tv"];

pub(super) fn keys_of(method: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match method {
        "ard_lora" => (ARD_KEYS, ARD_BLOCKS),
        "lora" | "dora" => (LORA_KEYS, &[]),
        "adalora" => (ADALORA_KEYS, &[]),
        _ => (&[], &[]),
    }
}

/// Which method owns a knob that is not valid for `method` (for "contradictory settings").
fn owner(key: &str, method: &str) -> Option<String> {
    let owners: Vec<&str> = METHODS
        .iter()
        .copied()
        .filter(|m| *m != method)
        .filter(|m| {
            let (k, b) = keys_of(m);
            k.contains(&key) || b.contains(&key)
        })
        .collect();
    (!owners.is_empty()).then(|| {
        format!(
            "`{key}` is a knob of {} but this adapter's method is `{method}`: remove it or change the method",
            owners.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(" / ")
        )
    })
}

pub fn check(b: &Block, name: &str, cx: &mut Ctx) -> Option<Adapter> {
    let mut r = Reader::new(b, cx);
    let method = r.symbol("method", METHODS, cx);
    if !r.has("method") {
        cx.missing(
            r.span(),
            "`method`",
            "choose one: `method = ard_lora`, `lora`, `dora`, `adalora`, `full` or `head_only`",
        );
    }
    if method == Some("head_only") {
        return head_only(r, name, cx);
    }
    let modules = match r.value("modules", cx) {
        Some(v) => selectors(&v, "modules", cx),
        None if method == Some("full") => Some(vec![Selector::Glob("**".into())]),
        None => {
            cx.missing(
                r.span(),
                "`modules`",
                "say which modules to adapt, e.g. `modules = [query, value]`",
            );
            None
        }
    };
    let layers = r
        .value("layers", cx)
        .map_or(Some(Indices::All), |v| indices(&v, "layers", cx));
    let heads_entry = r.entry("heads");
    let heads = heads_entry
        .and_then(|e| cx.eval(&e.value))
        .map_or(Some(Indices::All), |v| indices(&v, "heads", cx));
    if let (Some(e), Some(m)) = (heads_entry, method)
        && m != "ard_lora"
    {
        cx.push(
            Problem::error(
                Code::Contradiction,
                e.key_span(),
                format!("`heads` applies to `ard_lora` only, not `{m}`"),
            )
            .label("no per-head units here")
            .help("only ARD-LoRA splits modules into per-head units; remove `heads`"),
        );
    }
    let exclude = r
        .value("exclude", cx)
        .map_or(Some(Vec::new()), |v| selectors(&v, "exclude", cx));
    let m = method?;
    let method = match m {
        "ard_lora" => ard_lora(&mut r, cx).map(Method::ArdLora),
        "lora" => lora(&mut r, cx).map(Method::Lora),
        "dora" => lora(&mut r, cx).map(Method::Dora),
        "adalora" => adalora(&mut r, cx).map(Method::AdaLora),
        _ => Some(Method::Full(Full {})),
    };
    let (k, bl) = keys_of(m);
    let mut all_keys: Vec<&str> = PLACEMENT.to_vec();
    all_keys.extend(k);
    r.finish(&all_keys, bl, &|key| owner(key, m), cx);
    Some(Adapter {
        name: name.to_string(),
        targets: Targets {
            modules: modules?,
            layers: layers?,
            heads: heads?,
            exclude: exclude?,
        },
        method: method?,
    })
}

/// `method = head_only`: no module is adapted, only the model's task head trains (a linear
/// probe). Placement keys would place nothing, and every method knob belongs to another method.
fn head_only(mut r: Reader, name: &str, cx: &mut Ctx) -> Option<Adapter> {
    let mut ok = true;
    for key in &PLACEMENT[1..] {
        if let Some(e) = r.entry(key) {
            ok = false;
            cx.push(
                Problem::error(
                    Code::Contradiction,
                    e.key_span(),
                    format!(
                        "`{key}` places adapters on modules, but `head_only` adapts no module: only the model's task head trains"
                    ),
                )
                .label("nothing to place")
                .help(format!(
                    "remove `{key}`, or choose a method that adapts modules (e.g. `method = lora`)"
                )),
            );
        }
    }
    r.finish(PLACEMENT, &[], &|key| owner(key, "head_only"), cx);
    ok.then(|| Adapter {
        name: name.to_string(),
        targets: Targets {
            modules: Vec::new(),
            layers: Indices::All,
            heads: Indices::All,
            exclude: Vec::new(),
        },
        method: Method::HeadOnly(HeadOnly {}),
    })
}

fn lora(r: &mut Reader, cx: &mut Ctx) -> Option<Lora> {
    let rank = r.int("rank", 1, 4096, cx).unwrap_or(8) as u32;
    let scale = r
        .number("scale", f64::MIN_POSITIVE, 1e6, cx)
        .unwrap_or(2.0 * rank as f64);
    let dropout = r.number("dropout", 0.0, 0.99, cx).unwrap_or(0.0);
    Some(Lora {
        rank,
        scale,
        dropout,
    })
}

fn ard_lora(r: &mut Reader, cx: &mut Ctx) -> Option<ArdLora> {
    let r0 = r.int("r0", 1, 4096, cx).unwrap_or(8) as u32;
    let scale = r
        .number("scale", f64::MIN_POSITIVE, 1e6, cx)
        .unwrap_or(2.0 * r0 as f64);
    let dropout = r.number("dropout", 0.0, 0.99, cx).unwrap_or(0.0);
    let groups = r.int("groups", 1, 4096, cx).unwrap_or(1) as u32;
    let alpha = match r.block("alpha", cx) {
        Some(b) => alpha(b, r0, cx),
        None => Some(AlphaBounds {
            init: 1.0,
            min: 0.0,
            max: 4.0,
            update: AlphaUpdate::Proximal,
        }),
    };
    let compaction = match r.block("compaction", cx) {
        Some(b) => {
            let mut cr = Reader::new(b, cx);
            let every = match cr.value("every", cx) {
                Some(v) => position(&v, "every", cx),
                None => Some(Position::Steps(50)),
            };
            let margin = cr.int("margin", 0, 4096, cx).unwrap_or(1) as u32;
            cr.finish(COMPACTION_KEYS, &[], &|_| None, cx);
            Some(Compaction {
                every: every?,
                margin,
            })
        }
        None => None,
    };
    // α steps with A and B on every training batch; bi-level schemes (α on held-out batches)
    // are not part of the language.
    let meta = match r.value("meta", cx) {
        None => Some(MetaMode::Joint),
        Some(v) => match &v.kind {
            ExprKind::Symbol(s) if s == "joint" => Some(MetaMode::Joint),
            _ => {
                cx.push(
                    Problem::error(
                        Code::WrongType,
                        v.span,
                        "`meta` takes only `joint`: α steps with A and B on every training batch",
                    )
                    .label("not `joint`")
                    .help("remove `meta` (joint is the default and the only mode); α on held-out batches (`alternating`) is not part of ardpipe"),
                );
                None
            }
        },
    };
    let regularizer = match r.block("regularize", cx) {
        Some(b) => regularizer(b, cx),
        None => Some(default_regularizer()),
    };
    let (alpha, regularizer, meta) = (alpha?, regularizer?, meta?);
    Some(ArdLora {
        r0,
        alpha,
        scale,
        dropout,
        groups,
        compaction,
        meta,
        regularizer,
    })
}

fn alpha(b: &Block, r0: u32, cx: &mut Ctx) -> Option<AlphaBounds> {
    let mut r = Reader::new(b, cx);
    let init = r.number("init", 0.0, 1e3, cx);
    let min = r.number("min", 0.0, 1e3, cx);
    let max = r.number("max", 0.0, 1e3, cx);
    let update = match r.value("update", cx) {
        None => Some(AlphaUpdate::Proximal),
        Some(v) => match as_symbol(&v, "update", ALPHA_UPDATES, cx)? {
            "penalty" => Some(AlphaUpdate::Penalty),
            _ => Some(AlphaUpdate::Proximal),
        },
    };
    r.finish(ALPHA_KEYS, &[], &|_| None, cx);
    let update = update?;
    let (min, max) = (min.unwrap_or(0.0), max.unwrap_or(4.0));
    // The default init is 1 within the bounds; with min > max there are no bounds to clamp to
    // (f64::clamp would panic) and the error below says so.
    let init = init.unwrap_or(if min < max {
        1.0_f64.clamp(min, max)
    } else {
        min
    });
    if min >= max || init < min || init > max {
        cx.push(
            Problem::error(Code::Contradiction, b.kind.span, format!(
                "α must satisfy min ≤ init ≤ max with min < max; here min = {min}, init = {init}, max = {max}"
            ))
            .label("inconsistent bounds")
            .help("e.g. `alpha { init = 1 min = 0 max = 2 }`"),
        );
        return None;
    }
    if (r0 as f64 * max).ceil() > 65536.0 {
        cx.push(
            Problem::error(
                Code::OutOfRange,
                b.kind.span,
                format!("r0 · α_max = {} is too large a rank", r0 as f64 * max),
            )
            .label("rank too large")
            .help("lower `r0` or `alpha.max`"),
        );
        return None;
    }
    Some(AlphaBounds {
        init,
        min,
        max,
        update,
    })
}

/// λ = warmup(0.1, over = 20%): with the proximal update λ is a threshold on the normalised task
/// pull; 0.1 pruned MiniLM's per-head ranks lightly at the best accuracy of the study's λ curve
/// (docs/METHOD.md, docs/RESULTS.md).
pub fn default_regularizer() -> Regularizer {
    Regularizer {
        lambda: Schedule::WarmUp {
            over: Position::Fraction(0.2),
            then: Box::new(Schedule::Constant { value: 0.1 }),
        },
        beta: Schedule::Constant { value: 1.0 },
        gamma: Schedule::Constant { value: 0.5 },
        tv: TvAxis::Depth,
    }
}

fn regularizer(b: &Block, cx: &mut Ctx) -> Option<Regularizer> {
    let d = default_regularizer();
    let mut r = Reader::new(b, cx);
    let sched = |key: &str, default: Schedule, r: &mut Reader, cx: &mut Ctx| match r.value(key, cx)
    {
        Some(v) => schedule(&v, key, 0.0, 1e6, cx),
        None => Some(default),
    };
    let lambda = sched("lambda", d.lambda, &mut r, cx);
    let beta = sched("beta", d.beta, &mut r, cx);
    let gamma = sched("gamma", d.gamma, &mut r, cx);
    let tv = match r.value("tv", cx) {
        None => Some(TvAxis::Depth),
        Some(v) => match &v.kind {
            ExprKind::Symbol(s) if s == "depth" => Some(TvAxis::Depth),
            ExprKind::Symbol(s) if s == "time" => Some(TvAxis::Time { ema_decay: 0.99 }),
            ExprKind::Call { name, args } if name.name == "time" => {
                let a = Args::new("time", v.span, args, &["ema"], cx)?;
                let ema = match a.get("ema") {
                    Some(e) => as_number(e, "ema", 0.0, 0.999_999, cx)?,
                    None => 0.99,
                };
                Some(TvAxis::Time { ema_decay: ema })
            }
            _ => {
                wrong_type(&v, "tv", "`depth`, `time` or `time(ema = 0.99)`", cx);
                None
            }
        },
    };
    r.finish(
        REGULARIZE_KEYS,
        &[],
        &|k| (k == "l1").then(|| "the ℓ1 weight is `beta`".to_string()),
        cx,
    );
    Some(Regularizer {
        lambda: lambda?,
        beta: beta?,
        gamma: gamma?,
        tv: tv?,
    })
}

fn adalora(r: &mut Reader, cx: &mut Ctx) -> Option<AdaLora> {
    let init_r = r.int("init_r", 1, 4096, cx).unwrap_or(12) as u32;
    let target_e = r.entry("target_r");
    let target_r = r.int("target_r", 1, 4096, cx).unwrap_or(8) as u32;
    let pos = |key: &str, default: Position, r: &mut Reader, cx: &mut Ctx| match r.value(key, cx) {
        Some(v) => position(&v, key, cx),
        None => Some(default),
    };
    let tinit = pos("tinit", Position::Fraction(0.1), r, cx);
    let tfinal = pos("tfinal", Position::Fraction(0.2), r, cx);
    let delta_t = pos("delta_t", Position::Steps(10), r, cx);
    let beta1 = r.number("beta1", 0.0, 0.999_999, cx).unwrap_or(0.85);
    let beta2 = r.number("beta2", 0.0, 0.999_999, cx).unwrap_or(0.85);
    let orth_reg = r.number("orth_reg", 0.0, 1e6, cx).unwrap_or(0.5);
    let scale = r
        .number("scale", f64::MIN_POSITIVE, 1e6, cx)
        .unwrap_or(2.0 * target_r as f64);
    let dropout = r.number("dropout", 0.0, 0.99, cx).unwrap_or(0.0);
    if target_r > init_r {
        cx.push(
            Problem::error(Code::Contradiction, target_e.map_or(r.span(), |e| e.value.span), format!(
                "AdaLoRA prunes from `init_r` down to `target_r`, but target_r = {target_r} > init_r = {init_r}"
            ))
            .label("larger than init_r")
            .help("make `target_r` at most `init_r`"),
        );
        return None;
    }
    let (tinit, tfinal, delta_t) = (tinit?, tfinal?, delta_t?);
    if let (Position::Fraction(a), Position::Fraction(b)) = (tinit, tfinal)
        && a + b >= 1.0
    {
        cx.push(
            Problem::error(
                Code::Contradiction,
                r.span(),
                "`tinit` + `tfinal` leave no steps for AdaLoRA to prune",
            )
            .label("no budget phase")
            .help("make the two add up to less than 100% of training"),
        );
        return None;
    }
    Some(AdaLora {
        init_r,
        target_r,
        tinit,
        tfinal,
        delta_t,
        beta1,
        beta2,
        orth_reg,
        scale,
        dropout,
    })
}
