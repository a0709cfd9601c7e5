//! `let` variables and string interpolation: turns an expression as written into the value it
//! stands for. Variables may be used before their `let` (any order); cycles are errors.

use std::collections::{HashMap, HashSet};

use crate::ast::{Expr, ExprKind, Ident, Let, Span, StrPart};
use crate::diag::{Code, Problem, Sink};
use crate::suggest;

/// Variables the caller provides; `${assets}` is where the example assets are installed.
pub const BUILTINS: &[&str] = &["assets", "pipeline_dir"];

#[derive(Debug, Default)]
pub struct Scope {
    lets: HashMap<String, Let>,
    builtins: HashMap<String, Option<String>>,
    resolved: HashMap<String, Expr>,
    /// Variables being resolved right now (cycle detection).
    active: Vec<String>,
    pub used: HashSet<String>,
}

impl Scope {
    pub fn new(builtins: HashMap<String, Option<String>>) -> Scope {
        Scope {
            builtins,
            ..Scope::default()
        }
    }

    /// Adds a `let`; a second one with the same name is an error.
    pub fn define(&mut self, l: &Let, sink: &mut Sink) {
        if BUILTINS.contains(&l.name.name.as_str()) {
            sink.push(
                Problem::error(
                    Code::Duplicate,
                    l.name.span,
                    format!("`{}` is a built-in variable", l.name.name),
                )
                .label("cannot be redefined")
                .help("pick another name for this variable"),
            );
            return;
        }
        if let Some(first) = self.lets.get(&l.name.name) {
            sink.push(
                Problem::error(
                    Code::Duplicate,
                    l.name.span,
                    format!("variable `{}` is defined twice", l.name.name),
                )
                .label("second definition")
                .help(format!(
                    "the first is at byte {} of its file; remove or rename one",
                    first.name.span.start
                )),
            );
            return;
        }
        self.lets.insert(l.name.name.clone(), l.clone());
    }

    /// Replaces a variable's value (a `--set let.NAME=...` override).
    pub fn redefine(&mut self, name: &Ident, value: Expr) -> bool {
        match self.lets.get_mut(&name.name) {
            Some(l) => {
                l.value = value;
                true
            }
            None => false,
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.lets.keys().map(|s| s.as_str()).collect()
    }

    pub fn lets(&self) -> impl Iterator<Item = &Let> {
        self.lets.values()
    }

    /// The value `e` stands for: variables substituted, strings interpolated. `None` when an
    /// error was reported.
    pub fn eval(&mut self, e: &Expr, sink: &mut Sink) -> Option<Expr> {
        let kind = match &e.kind {
            ExprKind::Symbol(name) if self.lets.contains_key(name) => {
                let v = self.variable(name, e.span, sink)?;
                return Some(Expr {
                    kind: v.kind,
                    span: e.span,
                });
            }
            ExprKind::Str(parts) => {
                let mut s = String::new();
                let mut ok = true;
                for p in parts {
                    match p {
                        StrPart::Text(t) => s.push_str(t),
                        StrPart::Interp(id) => match self.interpolate(id, sink) {
                            Some(v) => s.push_str(&v),
                            None => ok = false,
                        },
                    }
                }
                if !ok {
                    return None;
                }
                ExprKind::Str(vec![StrPart::Text(s)])
            }
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for i in items {
                    match self.eval(i, sink) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                ExprKind::List(out)
            }
            ExprKind::Call { name, args } => {
                let mut out = Vec::with_capacity(args.len());
                let mut ok = true;
                for a in args {
                    match self.eval(&a.value, sink) {
                        Some(v) => out.push(crate::ast::Arg {
                            name: a.name.clone(),
                            value: v,
                        }),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                ExprKind::Call {
                    name: name.clone(),
                    args: out,
                }
            }
            other => other.clone(),
        };
        Some(Expr { kind, span: e.span })
    }

    fn variable(&mut self, name: &str, at: Span, sink: &mut Sink) -> Option<Expr> {
        self.used.insert(name.to_string());
        if let Some(v) = self.resolved.get(name) {
            return Some(v.clone());
        }
        if self.active.iter().any(|a| a == name) {
            let chain = self.active.join(" → ");
            sink.push(
                Problem::error(
                    Code::Unresolved,
                    at,
                    format!("variable `{name}` depends on itself ({chain} → {name})"),
                )
                .label("cycle closes here")
                .help("give one of these variables a plain value"),
            );
            return None;
        }
        let def = self.lets.get(name)?.value.clone();
        self.active.push(name.to_string());
        let v = self.eval(&def, sink);
        self.active.pop();
        let v = v?;
        self.resolved.insert(name.to_string(), v.clone());
        Some(v)
    }

    fn interpolate(&mut self, id: &Ident, sink: &mut Sink) -> Option<String> {
        if let Some(b) = self.builtins.get(&id.name) {
            return match b {
                Some(v) => Some(v.clone()),
                None => {
                    sink.push(
                        Problem::error(
                            Code::Unresolved,
                            id.span,
                            format!("`${{{}}}` has no value here", id.name),
                        )
                        .label("not provided")
                        .help(
                            "the ardpipe command line provides `${assets}` (the example assets \
                             installed by `python3 scripts/setup.py`); library callers pass it \
                             in the check context",
                        ),
                    );
                    None
                }
            };
        }
        if !self.lets.contains_key(&id.name) {
            let mut names: Vec<&str> = self.names();
            names.extend(BUILTINS);
            sink.push(
                Problem::error(
                    Code::Unresolved,
                    id.span,
                    format!("unknown variable `{}`", id.name),
                )
                .label("not defined")
                .help(match suggest::closest(&id.name, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("define it with `let {} = ...`", id.name),
                }),
            );
            return None;
        }
        let v = self.variable(&id.name, id.span, sink)?;
        match &v.kind {
            ExprKind::Str(parts) => Some(
                parts
                    .iter()
                    .map(|p| match p {
                        StrPart::Text(t) => t.as_str(),
                        StrPart::Interp(_) => "",
                    })
                    .collect(),
            ),
            ExprKind::RawStr(s) | ExprKind::Symbol(s) => Some(s.clone()),
            ExprKind::Number { text, .. } => Some(text.clone()),
            ExprKind::Bool(b) => Some(b.to_string()),
            ExprKind::Quantity { text, unit, .. } if unit.name == "%" => Some(format!("{text}%")),
            ExprKind::Quantity { text, unit, .. } => Some(format!("{text} {}", unit.name)),
            other => {
                sink.push(
                    Problem::error(
                        Code::WrongType,
                        id.span,
                        format!(
                            "`{}` is {} and cannot be put inside a string",
                            id.name,
                            other.describe()
                        ),
                    )
                    .label("not text")
                    .help("interpolate strings, numbers, names or booleans only"),
                );
                None
            }
        }
    }
}
