//! Typed access to one block's entries: each getter evaluates the value, checks its type and
//! range, and reports what is wrong. `finish` reports keys nobody asked for, with "did you mean".

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ast::{Block, Entry, Expr, ExprKind, Span, StrPart};
use crate::diag::{Code, Problem, Sink};
use crate::eval::Scope;
use crate::source::FileId;
use crate::suggest;

/// What every checker needs: where problems go, the variables, and where relative paths start.
pub struct Ctx<'a> {
    pub sink: &'a mut Sink,
    pub scope: &'a mut Scope,
    pub base_dirs: &'a HashMap<FileId, PathBuf>,
    /// Whether "missing block/key" errors are reported (off when syntax errors dropped items).
    pub complete: bool,
    /// Every training-time position written, to check none lies past the end of training.
    pub positions: Vec<(crate::pipeline::Position, Span)>,
    /// Every plugin named by a loader or metric, to check it is declared.
    pub plugin_refs: Vec<(String, Span)>,
    /// Where each plugin use and its options are written (for the run's plugin errors).
    pub plugin_uses: Vec<crate::plugin_uses::PluginUse>,
}

impl Ctx<'_> {
    pub fn push(&mut self, p: Problem) {
        self.sink.push(p);
    }

    pub fn eval(&mut self, e: &Expr) -> Option<Expr> {
        self.scope.eval(e, self.sink)
    }

    /// A path as written, made absolute against the directory of the file it was written in.
    pub fn resolve_path(&self, s: &str, span: Span) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            return crate::load::normalize(p);
        }
        match self.base_dirs.get(&span.file) {
            Some(dir) => crate::load::normalize(&dir.join(p)),
            None => p.to_path_buf(),
        }
    }

    pub fn missing(&mut self, span: Span, what: &str, help: &str) {
        if self.complete {
            self.push(
                Problem::error(Code::Missing, span, format!("missing {what}"))
                    .label(format!("needs {what}"))
                    .help(help.to_string()),
            );
        }
    }
}

pub struct Reader<'b> {
    pub block: &'b Block,
    entries: Vec<&'b Entry>,
    used: Vec<bool>,
    blocks_used: Vec<bool>,
}

impl<'b> Reader<'b> {
    /// Reports duplicate keys and nested blocks right away (the first one wins).
    pub fn new(block: &'b Block, cx: &mut Ctx) -> Reader<'b> {
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut entries = Vec::new();
        for e in block.entries() {
            let k = e.key_text();
            if let Some(first) = seen.get(&k) {
                let (l, _) = (first.start, 0);
                cx.push(
                    Problem::error(Code::Duplicate, e.key_span(), format!("`{k}` is set twice"))
                        .label("set again here")
                        .help(format!(
                            "remove one of the two (the first is earlier in this block, byte {l})"
                        )),
                );
                continue;
            }
            seen.insert(k, e.key_span());
            entries.push(e);
        }
        let n = entries.len();
        Reader {
            block,
            entries,
            used: vec![false; n],
            blocks_used: vec![false; block.blocks().count()],
        }
    }

    pub fn span(&self) -> Span {
        self.block.kind.span
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key_text() == key)
    }

    /// The entry for `key` (marked as used), unevaluated.
    pub fn entry(&mut self, key: &str) -> Option<&'b Entry> {
        let i = self.entries.iter().position(|e| e.key_text() == key)?;
        self.used[i] = true;
        Some(self.entries[i])
    }

    /// The evaluated value of `key`.
    pub fn value(&mut self, key: &str, cx: &mut Ctx) -> Option<Expr> {
        let e = self.entry(key)?;
        cx.eval(&e.value)
    }

    /// The one nested block named `kind` (a second one is an error).
    pub fn block(&mut self, kind: &str, cx: &mut Ctx) -> Option<&'b Block> {
        let mut found: Option<&'b Block> = None;
        for (i, b) in self.block.blocks().enumerate() {
            if b.kind.name != kind {
                continue;
            }
            self.blocks_used[i] = true;
            if found.is_some() {
                cx.push(
                    Problem::error(
                        Code::Duplicate,
                        b.kind.span,
                        format!("second `{kind}` block"),
                    )
                    .label("duplicate")
                    .help(format!("merge the two `{kind}` blocks into one")),
                );
            } else {
                if let Some(l) = &b.label {
                    cx.push(
                        Problem::error(
                            Code::Syntax,
                            l.span,
                            format!("a `{kind}` block takes no name"),
                        )
                        .label("unexpected name")
                        .help(format!("write `{kind} {{ ... }}`")),
                    );
                }
                found = Some(b);
            }
        }
        found
    }

    /// Reports entries and blocks nobody read. `foreign` explains keys that are real but do
    /// not belong here (e.g. AdaLoRA knobs on a LoRA adapter).
    pub fn finish(
        self,
        keys: &[&str],
        blocks: &[&str],
        foreign: &dyn Fn(&str) -> Option<String>,
        cx: &mut Ctx,
    ) {
        let what = if let Some(l) = &self.block.label {
            format!("`{} {}`", self.block.kind.name, l.name)
        } else {
            format!("`{}`", self.block.kind.name)
        };
        for (e, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let k = e.key_text();
            if let Some(why) = foreign(&k) {
                cx.push(
                    Problem::error(
                        Code::Contradiction,
                        e.key_span(),
                        format!("`{k}` does not apply here"),
                    )
                    .label("contradicts the settings of this block")
                    .help(why),
                );
                continue;
            }
            let help = if blocks.contains(&k.as_str()) {
                format!("`{k}` is a block here: write `{k} {{ ... }}`")
            } else {
                suggest::help_for(&k, "the keys here are", keys)
            };
            cx.push(
                Problem::error(
                    Code::UnknownKey,
                    e.key_span(),
                    format!("unknown key `{k}` in {what}"),
                )
                .label("unknown key")
                .help(help),
            );
        }
        for (b, used) in self.block.blocks().zip(&self.blocks_used) {
            if *used {
                continue;
            }
            let k = &b.kind.name;
            if let Some(why) = foreign(k) {
                cx.push(
                    Problem::error(
                        Code::Contradiction,
                        b.kind.span,
                        format!("`{k}` does not apply here"),
                    )
                    .label("contradicts the settings of this block")
                    .help(why),
                );
                continue;
            }
            let help = if keys.contains(&k.as_str()) {
                format!("`{k}` is a key here: write `{k} = ...`")
            } else if blocks.is_empty() {
                format!("{what} has no nested blocks")
            } else {
                suggest::help_for(k, "the blocks here are", blocks)
            };
            cx.push(
                Problem::error(
                    Code::UnknownBlock,
                    b.kind.span,
                    format!("unknown block `{k}` in {what}"),
                )
                .label("unknown block")
                .help(help),
            );
        }
    }

    // ---- typed getters: `None` when absent or wrong (the error is already reported) ----

    pub fn string(&mut self, key: &str, cx: &mut Ctx) -> Option<String> {
        let v = self.value(key, cx)?;
        as_string(&v, key, cx)
    }

    pub fn path(&mut self, key: &str, cx: &mut Ctx) -> Option<PathBuf> {
        let v = self.value(key, cx)?;
        let s = as_string(&v, key, cx)?;
        if s.is_empty() {
            cx.push(
                Problem::error(
                    Code::OutOfRange,
                    v.span,
                    format!("`{key}` is an empty path"),
                )
                .label("empty")
                .help("write the path of a file or folder, relative to this pipeline file"),
            );
            return None;
        }
        Some(cx.resolve_path(&s, v.span))
    }

    /// One path or a list of paths (each may be a glob), resolved like [`Reader::path`].
    pub fn paths(&mut self, key: &str, cx: &mut Ctx) -> Option<Vec<PathBuf>> {
        let v = self.value(key, cx)?;
        as_paths(&v, key, cx)
    }

    pub fn bool(&mut self, key: &str, cx: &mut Ctx) -> Option<bool> {
        let v = self.value(key, cx)?;
        match v.kind {
            ExprKind::Bool(b) => Some(b),
            _ => {
                wrong_type(&v, key, "true or false", cx);
                None
            }
        }
    }

    pub fn number(&mut self, key: &str, min: f64, max: f64, cx: &mut Ctx) -> Option<f64> {
        let v = self.value(key, cx)?;
        as_number(&v, key, min, max, cx)
    }

    pub fn int(&mut self, key: &str, min: u64, max: u64, cx: &mut Ctx) -> Option<u64> {
        let v = self.value(key, cx)?;
        as_int(&v, key, min, max, cx)
    }

    /// One word out of `allowed`, e.g. `method = lora`.
    pub fn symbol(
        &mut self,
        key: &str,
        allowed: &[&'static str],
        cx: &mut Ctx,
    ) -> Option<&'static str> {
        let v = self.value(key, cx)?;
        as_symbol(&v, key, allowed, cx)
    }
}

pub fn as_string(v: &Expr, key: &str, cx: &mut Ctx) -> Option<String> {
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
        ExprKind::RawStr(s) => Some(s.clone()),
        _ => {
            wrong_type(v, key, "a string in quotes", cx);
            None
        }
    }
}

pub fn as_number(v: &Expr, key: &str, min: f64, max: f64, cx: &mut Ctx) -> Option<f64> {
    let x = match &v.kind {
        ExprKind::Number { value, .. } => *value,
        ExprKind::Quantity { value, unit, .. } if unit.name == "%" => *value / 100.0,
        ExprKind::Quantity { unit, .. } => {
            cx.push(
                Problem::error(
                    Code::BadUnit,
                    unit.span,
                    format!("`{key}` takes a plain number, not `{}`", unit.name),
                )
                .label("unexpected unit")
                .help("remove the unit"),
            );
            return None;
        }
        _ => {
            wrong_type(v, key, "a number", cx);
            return None;
        }
    };
    in_range(x, v, key, min, max, cx)
}

pub fn in_range(x: f64, v: &Expr, key: &str, min: f64, max: f64, cx: &mut Ctx) -> Option<f64> {
    if x < min || x > max {
        // A lower bound of the smallest positive number means "greater than 0": printed as such,
        // not as its 300 decimal places.
        let range = match (min == f64::MIN, max == f64::MAX) {
            _ if min == f64::MIN_POSITIVE && max == f64::MAX => "greater than 0".to_string(),
            _ if min == f64::MIN_POSITIVE => format!("greater than 0 and at most {}", short(max)),
            (true, true) => "any number".to_string(),
            (true, false) => format!("at most {}", short(max)),
            (false, true) => format!("at least {}", short(min)),
            (false, false) => format!("between {} and {}", short(min), short(max)),
        };
        cx.push(
            Problem::error(
                Code::OutOfRange,
                v.span,
                format!("`{key}` must be {range}, not {}", short(x)),
            )
            .label("out of range")
            .help(format!("use a value {range}")),
        );
        return None;
    }
    Some(x)
}

/// A number as a person writes it: `1e300`, not its 301 digits.
fn short(x: f64) -> String {
    if x != 0.0 && !(1e-6..1e16).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

pub fn as_int(v: &Expr, key: &str, min: u64, max: u64, cx: &mut Ctx) -> Option<u64> {
    match &v.kind {
        ExprKind::Number { value, text } => {
            if value.fract() != 0.0
                || text.contains('.')
                || text.contains(['e', 'E']) && *value < 1.0
            {
                cx.push(
                    Problem::error(
                        Code::WrongType,
                        v.span,
                        format!("`{key}` must be a whole number, not {text}"),
                    )
                    .label("not a whole number")
                    .help(format!(
                        "write e.g. `{key} = {}`",
                        value.round().max(min as f64)
                    )),
                );
                return None;
            }
            if *value < min as f64 || *value > max as f64 {
                let range = if max == u64::MAX {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                cx.push(
                    Problem::error(
                        Code::OutOfRange,
                        v.span,
                        format!("`{key}` must be {range}, not {text}"),
                    )
                    .label("out of range")
                    .help(format!("use a whole number {range}")),
                );
                return None;
            }
            Some(*value as u64)
        }
        ExprKind::Quantity { unit, .. } => {
            cx.push(
                Problem::error(
                    Code::BadUnit,
                    unit.span,
                    format!("`{key}` takes a plain whole number, not `{}`", unit.name),
                )
                .label("unexpected unit")
                .help("remove the unit"),
            );
            None
        }
        _ => {
            wrong_type(v, key, "a whole number", cx);
            None
        }
    }
}

pub fn as_symbol(
    v: &Expr,
    key: &str,
    allowed: &[&'static str],
    cx: &mut Ctx,
) -> Option<&'static str> {
    let word = match &v.kind {
        ExprKind::Symbol(s) => s.as_str(),
        ExprKind::Str(_) | ExprKind::RawStr(_) => {
            let s = as_string(v, key, cx)?;
            let hit = allowed.iter().find(|a| **a == s);
            cx.push(
                Problem::error(
                    Code::WrongType,
                    v.span,
                    format!("`{key}` takes a name, not a string"),
                )
                .label("remove the quotes")
                .help(match hit {
                    Some(a) => format!("write `{key} = {a}`"),
                    None => format!("one of: {}", suggest::list(allowed)),
                }),
            );
            return None;
        }
        _ => {
            wrong_type(v, key, &format!("one of {}", suggest::list(allowed)), cx);
            return None;
        }
    };
    match allowed.iter().find(|a| **a == word) {
        Some(a) => Some(a),
        None => {
            let mut help = suggest::help_for(word, "one of", allowed);
            if cx.scope.names().is_empty() || !help.starts_with("did") {
                // Nothing close among the allowed words: maybe a variable was meant.
                if let Some(var) = suggest::closest(word, cx.scope.names()) {
                    help = format!("did you mean the variable `{var}`?");
                }
            }
            cx.push(
                Problem::error(
                    Code::WrongType,
                    v.span,
                    format!("`{word}` is not a valid `{key}`"),
                )
                .label("unknown value")
                .help(help),
            );
            None
        }
    }
}

/// `"a.jsonl"` or `["a.jsonl", "more/*.jsonl"]`: a path or a non-empty list of paths (or globs),
/// each made absolute against the file it is written in.
pub fn as_paths(v: &Expr, key: &str, cx: &mut Ctx) -> Option<Vec<PathBuf>> {
    let items: &[Expr] = match &v.kind {
        ExprKind::List(l) => l,
        ExprKind::Str(_) | ExprKind::RawStr(_) => std::slice::from_ref(v),
        _ => {
            wrong_type(v, key, "a path in quotes or a list of paths", cx);
            return None;
        }
    };
    if items.is_empty() {
        cx.push(
            Problem::error(Code::OutOfRange, v.span, format!("`{key}` is an empty list"))
                .label("no paths")
                .help(format!(
                    "name at least one file, folder or glob: `{key} = \"data.jsonl\"` or `{key} = [\"a.jsonl\", \"more/*.jsonl\"]`"
                )),
        );
        return None;
    }
    let mut paths = Vec::with_capacity(items.len());
    let mut ok = true;
    for e in items {
        let Some(s) = as_string(e, key, cx) else {
            ok = false;
            continue;
        };
        if s.is_empty() {
            cx.push(
                Problem::error(Code::OutOfRange, e.span, format!("`{key}` has an empty path"))
                    .label("empty")
                    .help("write the path of a file or folder (or a glob), relative to this pipeline file"),
            );
            ok = false;
            continue;
        }
        paths.push(cx.resolve_path(&s, e.span));
    }
    ok.then_some(paths)
}

pub fn wrong_type(v: &Expr, key: &str, expected: &str, cx: &mut Ctx) {
    let example = match expected {
        "a string in quotes" => format!("write `{key} = \"...\"`"),
        "true or false" => format!("write `{key} = true` or `{key} = false`"),
        _ => format!("`{key}` expects {expected}"),
    };
    cx.push(
        Problem::error(
            Code::WrongType,
            v.span,
            format!("`{key}` must be {expected}, found {}", v.kind.describe()),
        )
        .label(v.kind.describe())
        .help(example),
    );
}
