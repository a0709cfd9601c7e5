//! Value shapes shared by several blocks: positions in training time, schedules, module
//! selectors, index sets, call arguments.

use std::collections::BTreeMap;

use crate::ast::{Arg, Expr, ExprKind, Span};
use crate::diag::{Code, Problem};
use crate::pipeline::{Indices, OptionValue, Position, Schedule, SchedulePoint, Selector};
use crate::reader::{Ctx, as_number, as_string, wrong_type};
use crate::suggest;

/// `300 steps`, `2 epochs`, `20%`.
pub fn position(v: &Expr, key: &str, cx: &mut Ctx) -> Option<Position> {
    let p = match &v.kind {
        ExprKind::Quantity { value, unit, text } => match unit.name.as_str() {
            "steps" | "step" => {
                if value.fract() != 0.0 || *value < 0.0 {
                    cx.push(
                        Problem::error(
                            Code::OutOfRange,
                            v.span,
                            format!("`{key}`: {text} is not a whole number of steps"),
                        )
                        .label("not a whole number")
                        .help("steps count whole optimizer steps, e.g. `100 steps`"),
                    );
                    return None;
                }
                Position::Steps(*value as u64)
            }
            "epochs" | "epoch" => {
                if *value < 0.0 {
                    cx.push(
                        Problem::error(
                            Code::OutOfRange,
                            v.span,
                            format!("`{key}` cannot be negative"),
                        )
                        .label("negative"),
                    );
                    return None;
                }
                Position::Epochs(*value)
            }
            "%" => {
                if !(0.0..=100.0).contains(value) {
                    cx.push(
                        Problem::error(
                            Code::OutOfRange,
                            v.span,
                            format!("`{key}` must be between 0% and 100% of training"),
                        )
                        .label("outside training")
                        .help("a percentage of training lies in 0%..100%"),
                    );
                    return None;
                }
                Position::Fraction(*value / 100.0)
            }
            other => {
                cx.push(
                    Problem::error(
                        Code::BadUnit,
                        unit.span,
                        format!("`{other}` is not a unit of training time"),
                    )
                    .label("unknown unit")
                    .help(suggest::help_for(
                        other,
                        "use one of",
                        &["steps", "epochs", "%"],
                    )),
                );
                return None;
            }
        },
        ExprKind::Number { text, .. } => {
            cx.push(
                Problem::error(
                    Code::BadUnit,
                    v.span,
                    format!("`{key}`: a point in training needs a unit"),
                )
                .label("no unit")
                .help(format!(
                    "write `{text} steps`, `{text} epochs` or a percentage such as `20%`"
                )),
            );
            return None;
        }
        _ => {
            wrong_type(
                v,
                key,
                "a point in training such as `100 steps`, `1 epoch` or `20%`",
                cx,
            );
            return None;
        }
    };
    cx.positions.push((p, v.span));
    Some(p)
}

/// Named and positional arguments of a call, matched against its parameter names.
pub struct Args<'a> {
    call: &'a str,
    span: Span,
    values: BTreeMap<&'static str, &'a Expr>,
}

impl<'a> Args<'a> {
    pub fn new(
        call: &'a str,
        span: Span,
        args: &'a [Arg],
        params: &[&'static str],
        cx: &mut Ctx,
    ) -> Option<Args<'a>> {
        let mut values = BTreeMap::new();
        let mut ok = true;
        let mut next_pos = 0;
        for a in args {
            let param =
                match &a.name {
                    Some(n) => {
                        match params.iter().find(|p| **p == n.name) {
                            Some(p) => *p,
                            None => {
                                cx.push(
                                    Problem::error(
                                        Code::UnknownKey,
                                        n.span,
                                        format!("`{call}` has no argument `{}`", n.name),
                                    )
                                    .label("unknown argument")
                                    .help(suggest::help_for(&n.name, "its arguments are", params)),
                                );
                                ok = false;
                                continue;
                            }
                        }
                    }
                    None => match params.get(next_pos) {
                        Some(p) => {
                            next_pos += 1;
                            *p
                        }
                        None => {
                            cx.push(
                                Problem::error(
                                    Code::WrongType,
                                    a.value.span,
                                    format!("too many arguments to `{call}`"),
                                )
                                .label("extra argument")
                                .help(format!("`{call}` takes {}", suggest::list(params))),
                            );
                            ok = false;
                            continue;
                        }
                    },
                };
            if values.insert(param, &a.value).is_some() {
                cx.push(
                    Problem::error(
                        Code::Duplicate,
                        a.value.span,
                        format!("`{param}` is given twice to `{call}`"),
                    )
                    .label("given again")
                    .help("give each argument once"),
                );
                ok = false;
            }
        }
        ok.then_some(Args { call, span, values })
    }

    pub fn get(&self, p: &str) -> Option<&'a Expr> {
        self.values.get(p).copied()
    }

    pub fn require(&self, p: &str, cx: &mut Ctx) -> Option<&'a Expr> {
        let v = self.get(p);
        if v.is_none() {
            cx.push(
                Problem::error(
                    Code::Missing,
                    self.span,
                    format!("`{}` needs `{p}`", self.call),
                )
                .label(format!("no `{p}`"))
                .help(format!("add `{p} = ...` inside the parentheses")),
            );
        }
        v
    }

    pub fn number(&self, p: &str, min: f64, max: f64, cx: &mut Ctx) -> Option<f64> {
        as_number(self.require(p, cx)?, p, min, max, cx)
    }

    pub fn number_or(
        &self,
        p: &str,
        default: f64,
        min: f64,
        max: f64,
        cx: &mut Ctx,
    ) -> Option<f64> {
        match self.get(p) {
            Some(v) => as_number(v, p, min, max, cx),
            None => Some(default),
        }
    }

    pub fn bool_or(&self, p: &str, default: bool, cx: &mut Ctx) -> Option<bool> {
        match self.get(p).map(|v| &v.kind) {
            None => Some(default),
            Some(ExprKind::Bool(b)) => Some(*b),
            Some(_) => {
                crate::reader::wrong_type(self.get(p)?, p, "true or false", cx);
                None
            }
        }
    }

    pub fn position_or(&self, p: &str, default: Position, cx: &mut Ctx) -> Option<Position> {
        match self.get(p) {
            Some(v) => position(v, p, cx),
            None => Some(default),
        }
    }
}

pub const SCHEDULES: &[&str] = &[
    "constant",
    "linear",
    "cosine",
    "warmup",
    "step",
    "piecewise",
];

/// A schedule whose values must lie in `[min, max]`. A plain number is a constant.
pub fn schedule(v: &Expr, key: &str, min: f64, max: f64, cx: &mut Ctx) -> Option<Schedule> {
    match &v.kind {
        ExprKind::Number { .. } | ExprKind::Quantity { .. } => Some(Schedule::Constant {
            value: as_number(v, key, min, max, cx)?,
        }),
        ExprKind::Call { name, args } => {
            let n = name.name.as_str();
            let span = v.span;
            match n {
                "constant" => {
                    let a = Args::new(n, span, args, &["value"], cx)?;
                    Some(Schedule::Constant {
                        value: a.number("value", min, max, cx)?,
                    })
                }
                "linear" | "cosine" => {
                    let a = Args::new(n, span, args, &["from", "to", "start", "end"], cx)?;
                    let from = a.number("from", min, max, cx);
                    let to = a.number("to", min, max, cx);
                    let start = a.position_or("start", Position::Fraction(0.0), cx);
                    let end = a.position_or("end", Position::Fraction(1.0), cx);
                    let (from, to, start, end) = (from?, to?, start?, end?);
                    ordered(start, end, span, n, cx)?;
                    Some(if n == "linear" {
                        Schedule::Linear {
                            from,
                            to,
                            start,
                            end,
                        }
                    } else {
                        Schedule::Cosine {
                            from,
                            to,
                            start,
                            end,
                        }
                    })
                }
                "warmup" => {
                    let a = Args::new(n, span, args, &["then", "over"], cx)?;
                    let then = a
                        .require("then", cx)
                        .and_then(|t| schedule(t, key, min, max, cx));
                    let over = a.require("over", cx).and_then(|o| position(o, "over", cx));
                    Some(Schedule::WarmUp {
                        over: over?,
                        then: Box::new(then?),
                    })
                }
                "step" => {
                    let a = Args::new(n, span, args, &["from", "factor", "every"], cx)?;
                    let from = a.number("from", min, max, cx);
                    let factor = a.number("factor", 0.0, f64::MAX, cx);
                    let every = a
                        .require("every", cx)
                        .and_then(|e| position(e, "every", cx));
                    let every = every?;
                    if matches!(every, Position::Steps(0))
                        || matches!(every, Position::Epochs(e) | Position::Fraction(e) if e == 0.0)
                    {
                        cx.push(
                            Problem::error(
                                Code::OutOfRange,
                                span,
                                "`step` needs a positive `every`",
                            )
                            .label("never steps")
                            .help("e.g. `every = 100 steps`"),
                        );
                        return None;
                    }
                    Some(Schedule::Step {
                        from: from?,
                        factor: factor?,
                        every,
                    })
                }
                "piecewise" => {
                    let a = Args::new(n, span, args, &["at", "values"], cx)?;
                    let at = a.require("at", cx);
                    let values = a.require("values", cx);
                    let (at, values) = (at?, values?);
                    let (ExprKind::List(at_l), ExprKind::List(val_l)) = (&at.kind, &values.kind)
                    else {
                        let bad = if matches!(at.kind, ExprKind::List(_)) {
                            values
                        } else {
                            at
                        };
                        wrong_type(bad, "piecewise", "a list", cx);
                        return None;
                    };
                    if at_l.len() != val_l.len() || at_l.is_empty() {
                        cx.push(
                            Problem::error(Code::WrongType, span, format!(
                                "`piecewise` needs as many `values` as points in `at` ({} and {})",
                                val_l.len(),
                                at_l.len()
                            ))
                            .label("lengths differ")
                            .help("write one value per point: `piecewise(at = [0%, 50%], values = [0, 1e-3])`"),
                        );
                        return None;
                    }
                    let mut points = Vec::new();
                    for (p, val) in at_l.iter().zip(val_l) {
                        let pos = position(p, "at", cx);
                        let value = as_number(val, key, min, max, cx);
                        if let (Some(at), Some(value)) = (pos, value) {
                            if let Some(prev) = points.last().map(|p: &SchedulePoint| p.at) {
                                ordered(prev, at, p.span, "piecewise", cx)?;
                            }
                            points.push(SchedulePoint { at, value });
                        }
                    }
                    (points.len() == at_l.len()).then_some(Schedule::Piecewise { points })
                }
                other => {
                    cx.push(
                        Problem::error(
                            Code::UnknownKey,
                            name.span,
                            format!("`{other}` is not a schedule"),
                        )
                        .label("unknown schedule")
                        .help(suggest::help_for(
                            other,
                            "schedules are",
                            SCHEDULES,
                        )),
                    );
                    None
                }
            }
        }
        _ => {
            wrong_type(
                v,
                key,
                "a number or a schedule such as `cosine(from = 3e-4, to = 0)`",
                cx,
            );
            None
        }
    }
}

/// Positions that can be compared (same unit) must not go backwards.
fn ordered(a: Position, b: Position, span: Span, what: &str, cx: &mut Ctx) -> Option<()> {
    let backwards = match (a, b) {
        (Position::Steps(x), Position::Steps(y)) => y < x,
        (Position::Epochs(x), Position::Epochs(y))
        | (Position::Fraction(x), Position::Fraction(y)) => y < x,
        _ => false,
    };
    if backwards {
        cx.push(
            Problem::error(
                Code::Contradiction,
                span,
                format!("`{what}` goes backwards in time"),
            )
            .label("ends before it starts")
            .help("put the points in increasing order of training time"),
        );
        return None;
    }
    Some(())
}

/// `query`, `"encoder.layer.*.attention.self.query"`, `regex('...')`, or a list of them.
pub fn selectors(v: &Expr, key: &str, cx: &mut Ctx) -> Option<Vec<Selector>> {
    let items: Vec<&Expr> = match &v.kind {
        ExprKind::List(l) => l.iter().collect(),
        _ => vec![v],
    };
    let mut out = Vec::new();
    let mut ok = true;
    for e in items {
        match selector(e, key, cx) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    if ok && out.is_empty() {
        cx.push(
            Problem::error(Code::Missing, v.span, format!("`{key}` is empty"))
                .label("selects nothing")
                .help("name at least one module, e.g. `[query, value]`"),
        );
        return None;
    }
    ok.then_some(out)
}

fn selector(e: &Expr, key: &str, cx: &mut Ctx) -> Option<Selector> {
    match &e.kind {
        ExprKind::Symbol(s) if s == "all" => Some(Selector::Glob("**".into())),
        ExprKind::Symbol(s) => Some(Selector::Name(s.clone())),
        ExprKind::Str(_) | ExprKind::RawStr(_) => {
            let s = as_string(e, key, cx)?;
            if s.is_empty() || s.contains(char::is_whitespace) {
                cx.push(
                    Problem::error(
                        Code::BadPattern,
                        e.span,
                        "a module pattern cannot be empty or contain spaces",
                    )
                    .label("bad pattern")
                    .help("module paths look like `encoder.layer.3.attention.self.query`"),
                );
                return None;
            }
            Some(Selector::Glob(s))
        }
        ExprKind::Call { name, args } if name.name == "regex" => {
            let a = Args::new("regex", e.span, args, &["pattern"], cx)?;
            let p = a.require("pattern", cx)?;
            let s = as_string(p, "regex", cx)?;
            regex_ok(&s, p.span, cx)?;
            Some(Selector::Regex(s))
        }
        ExprKind::Call { name, .. } => {
            cx.push(
                Problem::error(Code::UnknownKey, name.span, format!("`{}` is not a selector", name.name))
                    .label("unknown")
                    .help("select modules by name (`query`), glob (\"encoder.layer.*.output.dense\") or `regex('...')`"),
            );
            None
        }
        _ => {
            wrong_type(e, key, "module names, glob strings or `regex('...')`", cx);
            None
        }
    }
}

/// Compiles a regex to check it; the error says where it broke.
pub fn regex_ok(s: &str, span: Span, cx: &mut Ctx) -> Option<regex::Regex> {
    match regex::RegexBuilder::new(s).size_limit(1 << 20).build() {
        Ok(r) => Some(r),
        Err(e) => {
            let msg = e.to_string();
            let last = msg.lines().last().unwrap_or("invalid").trim().to_string();
            cx.push(
                Problem::error(Code::BadPattern, span, format!("invalid regular expression: {last}"))
                    .label("does not compile")
                    .help("regexes use Rust `regex` syntax; write them in single quotes so backslashes stay as they are"),
            );
            None
        }
    }
}

const MAX_INDEX: i64 = 100_000;

/// `all`, `3`, `0..6`, `0..=5`, or a list of numbers and ranges.
pub fn indices(v: &Expr, key: &str, cx: &mut Ctx) -> Option<Indices> {
    if matches!(&v.kind, ExprKind::Symbol(s) if s == "all") {
        return Some(Indices::All);
    }
    let items: Vec<&Expr> = match &v.kind {
        ExprKind::List(l) => l.iter().collect(),
        _ => vec![v],
    };
    let mut spans: Vec<(u32, u32)> = Vec::new();
    for e in items {
        let (a, b) = match &e.kind {
            ExprKind::Number { value, .. } if value.fract() == 0.0 => {
                (*value as i64, *value as i64)
            }
            ExprKind::Range {
                start,
                end,
                inclusive,
            } => (
                *start,
                if *inclusive {
                    *end
                } else {
                    end.saturating_sub(1)
                },
            ),
            _ => {
                wrong_type(
                    e,
                    key,
                    "`all`, an index, a range such as `0..6`, or a list of them",
                    cx,
                );
                return None;
            }
        };
        if a < 0 || b > MAX_INDEX {
            cx.push(
                Problem::error(
                    Code::OutOfRange,
                    e.span,
                    format!("`{key}` indices run from 0 to {MAX_INDEX}"),
                )
                .label("out of range")
                .help("layers and heads are counted from 0"),
            );
            return None;
        }
        if b < a {
            cx.push(
                Problem::error(
                    Code::OutOfRange,
                    e.span,
                    format!("`{key}`: this range is empty"),
                )
                .label("selects nothing")
                .help("`a..b` stops before b; `a..=b` includes b"),
            );
            return None;
        }
        spans.push((a as u32, b as u32));
    }
    // Merge the spans before expanding them: a list repeating `0..=100000` many times must cost
    // what one does, not one index per repetition.
    spans.sort_unstable();
    let mut out: Vec<u32> = Vec::new();
    let mut next = 0u32; // the first index not yet in `out`
    for (a, b) in spans {
        let from = a.max(next);
        if from <= b {
            out.extend(from..=b);
            next = b + 1;
        }
    }
    Some(Indices::Only(out))
}

/// A plugin's free-form options.
pub fn option_value(v: &Expr, cx: &mut Ctx) -> Option<OptionValue> {
    Some(match &v.kind {
        ExprKind::Bool(b) => OptionValue::Bool(*b),
        ExprKind::Number { value, .. } => OptionValue::Number(*value),
        ExprKind::Quantity { value, unit, .. } if unit.name == "%" => {
            OptionValue::Number(value / 100.0)
        }
        ExprKind::Str(_) | ExprKind::RawStr(_) => OptionValue::String(as_string(v, "option", cx)?),
        ExprKind::Symbol(s) => OptionValue::String(s.clone()),
        ExprKind::List(l) => {
            let mut out = Vec::new();
            for e in l {
                out.push(option_value(e, cx)?);
            }
            OptionValue::List(out)
        }
        _ => {
            wrong_type(v, "option", "a boolean, number, string or list", cx);
            return None;
        }
    })
}
