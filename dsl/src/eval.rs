//! `let` variables and string interpolation: turns an expression as written into the value it
//! stands for. Variables may be used before their `let` (any order); cycles are errors.

use std::collections::{HashMap, HashSet};

use crate::ast::{Expr, ExprKind, Ident, Let, Span, StrPart};
use crate::diag::{Code, Problem, Sink};
use crate::suggest;

/// Variables the caller provides; `${assets}` is where the example assets are installed.
pub const BUILTINS: &[&str] = &["assets", "pipeline_dir"];

/// The most one value may grow to once its variables are substituted (bytes of text, plus one per
/// list item or call argument). A few `let`s that each double the one before would otherwise
/// grow a value exponentially, past any memory.
pub const MAX_VALUE_SIZE: usize = 1 << 20;

/// The most all substitutions of one pipeline may produce together, so that many references to a
/// large value cannot add up to the same blow-up.
pub const MAX_TOTAL_EXPANSION: usize = 16 << 20;

/// The longest chain of variables defined through one another (`let b = a`, `let c = b`, …):
/// resolving one is a recursion, and a chain of 200,000 overflowed the stack.
pub const MAX_VARIABLE_DEPTH: usize = 100;

/// How deep lists and calls may nest once variables are substituted (`let b = [a]`, `let c = [b]`
/// nests one deeper each time, past what the text's own bracket limit allows).
pub const MAX_VALUE_DEPTH: usize = 64;

#[derive(Debug, Default)]
pub struct Scope {
    lets: HashMap<String, Let>,
    builtins: HashMap<String, Option<String>>,
    resolved: HashMap<String, Expr>,
    /// Variables being resolved right now (cycle detection).
    active: Vec<String>,
    /// Variables whose value was an error, already reported: each is reported once, and a value
    /// that uses one twice is not evaluated twice (which could take exponential time).
    failed: HashSet<String>,
    /// Size of everything substituted so far (see `MAX_TOTAL_EXPANSION`).
    expanded: usize,
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
                    let piece = match p {
                        StrPart::Text(t) => t.as_str(),
                        StrPart::Interp(id) => match self.interpolate(id, sink) {
                            Some(v) => {
                                if s.len().saturating_add(v.len()) > MAX_VALUE_SIZE {
                                    too_large(e.span, "this string", sink);
                                    return None;
                                }
                                s.push_str(&v);
                                continue;
                            }
                            None => {
                                ok = false;
                                continue;
                            }
                        },
                    };
                    if s.len().saturating_add(piece.len()) > MAX_VALUE_SIZE {
                        too_large(e.span, "this string", sink);
                        return None;
                    }
                    s.push_str(piece);
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
                if out.iter().map(size).fold(1, usize::saturating_add) > MAX_VALUE_SIZE {
                    too_large(e.span, "this list", sink);
                    return None;
                }
                if out.iter().map(depth).max().unwrap_or(0) >= MAX_VALUE_DEPTH {
                    too_deep(e.span, sink);
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
                if out
                    .iter()
                    .map(|a| size(&a.value))
                    .fold(1, usize::saturating_add)
                    > MAX_VALUE_SIZE
                {
                    too_large(e.span, "this call", sink);
                    return None;
                }
                if out.iter().map(|a| depth(&a.value)).max().unwrap_or(0) >= MAX_VALUE_DEPTH {
                    too_deep(e.span, sink);
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
        if self.failed.contains(name) {
            return None;
        }
        if let Some(v) = self.resolved.get(name) {
            let grown = self.expanded.saturating_add(size(v));
            if grown > MAX_TOTAL_EXPANSION {
                sink.push(
                    Problem::error(
                        Code::TooLarge,
                        at,
                        format!(
                            "variables expand to more than {} MiB in all",
                            MAX_TOTAL_EXPANSION >> 20
                        ),
                    )
                    .label(format!("`{name}` used once too many"))
                    .help("a pipeline is a configuration: use fewer or smaller variables"),
                );
                // Report it once, not at every later use.
                self.failed.insert(name.to_string());
                return None;
            }
            self.expanded = grown;
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
        if self.active.len() >= MAX_VARIABLE_DEPTH {
            sink.push(
                Problem::error(
                    Code::TooDeep,
                    at,
                    format!(
                        "variables are defined through more than {MAX_VARIABLE_DEPTH} others \
                         ({} → … → {name})",
                        self.active[0]
                    ),
                )
                .label("too deep")
                .help("give some of these variables a plain value"),
            );
            self.failed.insert(name.to_string());
            return None;
        }
        let def = self.lets.get(name)?.value.clone();
        self.active.push(name.to_string());
        let v = self.eval(&def, sink);
        self.active.pop();
        let Some(v) = v else {
            self.failed.insert(name.to_string());
            return None;
        };
        self.resolved.insert(name.to_string(), v.clone());
        self.expanded = self.expanded.saturating_add(size(&v));
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

/// How big a value is, as `MAX_VALUE_SIZE` counts it.
fn size(e: &Expr) -> usize {
    match &e.kind {
        ExprKind::Str(parts) => parts.iter().fold(1, |n, p| match p {
            StrPart::Text(t) => n.saturating_add(t.len()),
            StrPart::Interp(id) => n.saturating_add(id.name.len()),
        }),
        ExprKind::RawStr(s) | ExprKind::Symbol(s) => s.len().saturating_add(1),
        ExprKind::Number { text, .. } | ExprKind::Quantity { text, .. } => {
            text.len().saturating_add(1)
        }
        ExprKind::List(items) => items.iter().map(size).fold(1, usize::saturating_add),
        ExprKind::Call { args, .. } => args
            .iter()
            .map(|a| size(&a.value))
            .fold(1, usize::saturating_add),
        ExprKind::Bool(_) | ExprKind::Range { .. } => 1,
    }
}

/// How deep lists and calls nest in a value (0 for a plain value).
fn depth(e: &Expr) -> usize {
    match &e.kind {
        ExprKind::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        ExprKind::Call { args, .. } => 1 + args.iter().map(|a| depth(&a.value)).max().unwrap_or(0),
        _ => 0,
    }
}

fn too_deep(at: Span, sink: &mut Sink) {
    sink.push(
        Problem::error(
            Code::TooDeep,
            at,
            format!("this value nests more than {MAX_VALUE_DEPTH} lists or calls deep once its variables are substituted"),
        )
        .label("too deep")
        .help("a pipeline is a configuration: flatten the variables used here"),
    );
}

fn too_large(at: Span, what: &str, sink: &mut Sink) {
    sink.push(
        Problem::error(
            Code::TooLarge,
            at,
            format!(
                "{what} grows past {} MiB once its variables are substituted",
                MAX_VALUE_SIZE >> 20
            ),
        )
        .label(format!("larger than {MAX_VALUE_SIZE} bytes"))
        .help("a pipeline is a configuration: check the variables used here for repetition"),
    );
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    fn check(text: &str) -> String {
        let ctx = crate::Context {
            assets: Some("/assets".into()),
            ..Default::default()
        };
        match crate::check_source(std::path::Path::new("/p/doubling.ard"), text, &ctx) {
            Ok(_) => "ok".into(),
            Err(d) => d
                .problems
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// `let`s that each double the one before: 2^40 bytes if expanded.
    fn doubling(first: &str, levels: usize, last: &str) -> String {
        let mut t = format!("let a0 = {first}\n");
        for i in 1..=levels {
            writeln!(
                t,
                "let a{i} = {}",
                last.replace('X', &format!("a{}", i - 1))
            )
            .unwrap();
        }
        writeln!(t, "output {{\n    dir = a{levels}\n}}").unwrap();
        t
    }

    #[test]
    fn doubling_strings_stop_at_the_size_limit() {
        let out = check(&doubling("\"ab\"", 40, "\"${X}${X}\""));
        assert!(out.contains("grows past 1 MiB"), "{out}");
        // Reported once, where the limit was crossed, not once per later variable.
        assert_eq!(out.matches("grows past").count(), 1, "{out}");
    }

    #[test]
    fn doubling_lists_stop_at_the_size_limit() {
        let out = check(&doubling("[1, 2]", 40, "[X, X]"));
        assert!(out.contains("this list grows past 1 MiB"), "{out}");
    }

    #[test]
    fn many_uses_of_a_large_value_stop_at_the_total_limit() {
        let mut t = doubling("\"abcdefgh\"", 16, "\"${X}${X}\"");
        // 64 values of 512 KiB each: every one is under the per-value limit, together they are not.
        for i in 0..64 {
            writeln!(t, "dataset d{i} {{\n    format = csv\n    path = a16\n}}").unwrap();
        }
        let out = check(&t);
        assert!(out.contains("MiB in all"), "{out}");
    }

    #[test]
    fn a_long_chain_of_variables_is_an_error_not_a_stack_overflow() {
        let out = check(&doubling("\"x\"", 200_000, "X"));
        assert!(
            out.contains("variables are defined through more than 100 others"),
            "{}",
            &out[..out.len().min(2000)]
        );
    }

    #[test]
    fn nesting_through_variables_is_bounded() {
        let out = check(&doubling("1", 90, "[X]"));
        assert!(
            out.contains("this value nests more than 64 lists or calls deep"),
            "{}",
            &out[..out.len().min(2000)]
        );
    }

    /// An error deep in a doubling chain is reported once and does not take exponential time.
    #[test]
    fn an_error_under_doubling_is_reported_once() {
        let out = check(&doubling("\"${nope}\"", 60, "\"${X}${X}\""));
        assert_eq!(out.matches("unknown variable `nope`").count(), 1, "{out}");
    }
}
