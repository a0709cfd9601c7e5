//! pest grammar → owned, spanned AST. The only module that sees pest types.

use pest::Parser as _;
use pest::iterators::Pair;

use crate::ast::*;
use crate::diag::{Code, Problem, Sink};
use crate::scan::{self, MAX_DEPTH, MAX_FILE_BYTES};
use crate::source::FileId;

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct Grammar;

/// Syntax errors reported per file before the rest are summarised (each costs a re-parse).
const MAX_SYNTAX_ERRORS: usize = 10;

/// Parses a whole file. Syntax errors go to `sink`; the items that parsed are still returned
/// (parsing resumes at the next top-level item after an error).
pub fn parse_file(text: &str, file: FileId, sink: &mut Sink) -> File {
    let whole = Span::new(file, 0, text.len().min(1));
    if text.len() > MAX_FILE_BYTES {
        sink.push(
            Problem::error(
                Code::TooLarge,
                whole,
                format!(
                    "this file is {} bytes; pipeline files are limited to {} bytes",
                    text.len(),
                    MAX_FILE_BYTES
                ),
            )
            .label("file starts here")
            .help("split it into smaller files joined with `import`"),
        );
        return File::default();
    }
    let scanned = scan::scan(text, file);
    if let Some(at) = scanned.too_deep_at {
        sink.push(
            Problem::error(
                Code::TooDeep,
                Span::new(file, at, at + 1),
                format!("brackets are nested more than {MAX_DEPTH} deep"),
            )
            .label("too deep here")
            .help("flatten the structure: no pipeline needs this much nesting"),
        );
        return File {
            items: Vec::new(),
            comments: scanned.comments,
        };
    }
    set_call_limit(text.len());

    let mut items = Vec::new();
    let mut pos = 0;
    let mut errors = 0;
    while pos < text.len() {
        match Grammar::parse(Rule::file, &text[pos..]) {
            Ok(mut pairs) => {
                let b = Builder { file, offset: pos };
                if let Some(p) = pairs.next() {
                    items.extend(b.items(p, sink));
                }
                break;
            }
            Err(e) => {
                let at = pos + error_pos(&e);
                errors += 1;
                if errors > MAX_SYNTAX_ERRORS {
                    sink.push(
                        Problem::error(
                            Code::Syntax,
                            Span::new(file, at, at),
                            "more syntax errors follow",
                        )
                        .help("fix the errors above first"),
                    );
                    break;
                }
                sink.push(syntax_problem(&e, text, pos, file, &scanned));
                // Keep the items before the broken one, then resume at the next top-level line.
                let item_start = item_start_before(text, pos, at);
                if item_start > pos
                    && let Ok(mut pairs) = Grammar::parse(Rule::file, &text[pos..item_start])
                {
                    let b = Builder { file, offset: pos };
                    if let Some(p) = pairs.next() {
                        items.extend(b.items(p, sink));
                    }
                }
                match next_item_start(text, at) {
                    Some(next) => pos = next,
                    None => break,
                }
            }
        }
    }
    File {
        items,
        comments: scanned.comments,
    }
}

/// Parses one `--set key.path=value` override.
pub fn parse_override(text: &str, file: FileId, sink: &mut Sink) -> Option<Entry> {
    let scanned = scan::scan(text, file);
    if let Some(at) = scanned.too_deep_at {
        sink.push(
            Problem::error(
                Code::TooDeep,
                Span::new(file, at, at + 1),
                "the override is nested too deep",
            )
            .label("too deep here"),
        );
        return None;
    }
    set_call_limit(text.len());
    match Grammar::parse(Rule::override_entry, text) {
        Ok(mut pairs) => {
            let b = Builder { file, offset: 0 };
            let mut inner = pairs.next()?.into_inner();
            let key = inner.next()?;
            let value = inner.next()?;
            Some(Entry {
                key: b.key_path(key),
                value: b.expr(value, sink),
                span: Span::new(file, 0, text.len()),
            })
        }
        Err(e) => {
            sink.push(
                syntax_problem(&e, text, 0, file, &scanned)
                    .help("write an override as `path.to.key=value`, e.g. `--set train.steps=100`"),
            );
            None
        }
    }
}

fn set_call_limit(len: usize) {
    // Bounds the work on hostile input: the grammar needs far fewer calls than this per byte.
    pest::set_call_limit(std::num::NonZeroUsize::new(
        1_000_000 + len.saturating_mul(400),
    ));
}

fn error_pos(e: &pest::error::Error<Rule>) -> usize {
    match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((a, _)) => a,
    }
}

/// Start of the top-level line (column 0, a letter) at or before `at`, not before `floor`.
fn item_start_before(text: &str, floor: usize, at: usize) -> usize {
    let mut best = floor;
    let mut line_start = floor;
    for (i, c) in text[floor..at.min(text.len())].char_indices() {
        let i = floor + i;
        if i == line_start && (c.is_ascii_alphabetic() || c == '_') {
            best = i;
        }
        if c == '\n' {
            line_start = i + 1;
        }
    }
    best
}

/// The next line after `at` that starts in column 0 with a letter: where a new item begins.
fn next_item_start(text: &str, at: usize) -> Option<usize> {
    let mut i = text[at.min(text.len())..].find('\n')? + at + 1;
    while i < text.len() {
        let c = text[i..].chars().next()?;
        if c.is_ascii_alphabetic() || c == '_' {
            return Some(i);
        }
        i += text[i..].find('\n')? + 1;
    }
    None
}

fn syntax_problem(
    e: &pest::error::Error<Rule>,
    text: &str,
    offset: usize,
    file: FileId,
    scanned: &scan::Scan,
) -> Problem {
    let at = offset + error_pos(e);
    let found = match text[at.min(text.len())..].chars().next() {
        None => "the end of the file".to_string(),
        Some('\n') => "the end of the line".to_string(),
        Some(c) => {
            let word: String = text[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if word.is_empty() {
                format!("`{c}`")
            } else {
                format!("`{word}`")
            }
        }
    };
    let end = text[at.min(text.len())..]
        .chars()
        .next()
        .map(|c| at + c.len_utf8())
        .unwrap_or(at);
    let span = Span::new(file, at, end);
    let message = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } if !positives.is_empty() => {
            let mut names: Vec<&str> = positives.iter().map(|r| rule_name(*r)).collect();
            names.sort();
            names.dedup();
            format!("expected {}, found {found}", or_list(&names))
        }
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
        _ => format!("unexpected {found}"),
    };
    let mut p = Problem::error(Code::Syntax, span, message).label("here");
    if at >= text.len()
        && let Some((open, o)) = scanned.unclosed
    {
        let close = match open {
            '{' => '}',
            '[' => ']',
            _ => ')',
        };
        return Problem::error(
            Code::Syntax,
            Span::new(file, o, o + 1),
            format!("this `{open}` is never closed"),
        )
        .label("opened here")
        .help(format!("add the matching `{close}`"));
    }
    if found.starts_with("`\"") || found.starts_with("`'") {
        p = p.help("strings end on the line they start: close the quote");
    } else if message_mentions_entry(&p.message) {
        p = p.help("each line in a block is `key = value` or a nested block `name { ... }`");
    }
    p
}

fn message_mentions_entry(m: &str) -> bool {
    m.contains("`=`") || m.contains("a key")
}

fn or_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn rule_name(r: Rule) -> &'static str {
    match r {
        Rule::EOI => "the end of the file",
        Rule::import => "`import`",
        Rule::let_stmt => "`let`",
        Rule::block | Rule::item | Rule::body_item => "a block",
        Rule::entry | Rule::key_path | Rule::ident => "a key",
        Rule::list
        | Rule::call
        | Rule::range
        | Rule::quantity
        | Rule::number
        | Rule::boolean
        | Rule::raw_string
        | Rule::string
        | Rule::symbol
        | Rule::value
        | Rule::arg
        | Rule::named_arg => "a value",
        Rule::integer => "an integer",
        Rule::range_op => "`..`",
        Rule::unit | Rule::percent => "a unit",
        Rule::interpolation => "`${name}`",
        Rule::escape => "an escape",
        Rule::text | Rule::raw_text => "text",
        _ => "something else",
    }
}

struct Builder {
    file: FileId,
    offset: usize,
}

impl Builder {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, self.offset + s.start(), self.offset + s.end())
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            span: self.span(&p),
            name: p.as_str().to_string(),
        }
    }

    fn items(&self, file: Pair<Rule>, sink: &mut Sink) -> Vec<Item> {
        let mut items = Vec::new();
        for p in file.into_inner() {
            match p.as_rule() {
                Rule::import => {
                    let span = self.span(&p);
                    if let Some(s) = p.into_inner().next() {
                        items.push(Item::Import(Import {
                            path: self.expr(s, sink),
                            span,
                        }));
                    }
                }
                Rule::let_stmt => {
                    let span = self.span(&p);
                    let mut inner = p.into_inner();
                    if let (Some(n), Some(v)) = (inner.next(), inner.next()) {
                        items.push(Item::Let(Let {
                            name: self.ident(n),
                            value: self.expr(v, sink),
                            span,
                        }));
                    }
                }
                Rule::block => items.push(Item::Block(self.block(p, sink))),
                _ => {}
            }
        }
        items
    }

    fn block(&self, p: Pair<Rule>, sink: &mut Sink) -> Block {
        let span = self.span(&p);
        let close = Span::new(self.file, span.end.saturating_sub(1), span.end);
        let mut kind = None;
        let mut label = None;
        let mut body = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::ident if kind.is_none() => kind = Some(self.ident(c)),
                Rule::ident => label = Some(self.ident(c)),
                Rule::entry => body.push(BodyItem::Entry(self.entry(c, sink))),
                Rule::block => body.push(BodyItem::Block(self.block(c, sink))),
                _ => {}
            }
        }
        Block {
            kind: kind.unwrap_or(Ident {
                name: String::new(),
                span,
            }),
            label,
            body,
            span,
            close,
        }
    }

    fn entry(&self, p: Pair<Rule>, sink: &mut Sink) -> Entry {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let key = inner.next().map(|k| self.key_path(k)).unwrap_or_default();
        let value = match inner.next() {
            Some(v) => self.expr(v, sink),
            None => Expr {
                kind: ExprKind::List(Vec::new()),
                span,
            },
        };
        Entry { key, value, span }
    }

    fn key_path(&self, p: Pair<Rule>) -> Vec<Ident> {
        p.into_inner().map(|i| self.ident(i)).collect()
    }

    fn expr(&self, p: Pair<Rule>, sink: &mut Sink) -> Expr {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::number => number(p.as_str(), span, sink),
            Rule::quantity => {
                let mut inner = p.into_inner();
                let n = inner.next();
                let u = inner.next();
                match (n, u) {
                    (Some(n), Some(u)) => {
                        let ExprKind::Number { value, text } = number(n.as_str(), span, sink)
                        else {
                            unreachable!("number() always returns a Number")
                        };
                        let unit = if u.as_rule() == Rule::percent {
                            Ident {
                                name: "%".into(),
                                span: self.span(&u),
                            }
                        } else {
                            self.ident(u)
                        };
                        ExprKind::Quantity { value, text, unit }
                    }
                    _ => ExprKind::List(Vec::new()),
                }
            }
            Rule::boolean => ExprKind::Bool(p.as_str() == "true"),
            Rule::symbol => ExprKind::Symbol(p.as_str().to_string()),
            Rule::raw_string => ExprKind::RawStr(
                p.into_inner()
                    .next()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
            ),
            Rule::string => ExprKind::Str(self.string_parts(p, sink)),
            Rule::list => ExprKind::List(p.into_inner().map(|v| self.expr(v, sink)).collect()),
            Rule::range => {
                let mut inner = p.into_inner();
                let a = inner.next();
                let op = inner.next();
                let b = inner.next();
                match (a, op, b) {
                    (Some(a), Some(op), Some(b)) => ExprKind::Range {
                        start: integer(a.as_str(), self.span(&a), sink),
                        end: integer(b.as_str(), self.span(&b), sink),
                        inclusive: op.as_str() == "..=",
                    },
                    _ => ExprKind::List(Vec::new()),
                }
            }
            Rule::call => {
                let mut inner = p.into_inner();
                let name = match inner.next() {
                    Some(n) => self.ident(n),
                    None => Ident {
                        name: String::new(),
                        span,
                    },
                };
                let args = inner
                    .map(|a| {
                        if a.as_rule() == Rule::named_arg {
                            let mut ai = a.into_inner();
                            let n = ai.next().map(|n| self.ident(n));
                            let v = ai.next().map(|v| self.expr(v, sink));
                            Arg {
                                name: n,
                                value: v.unwrap_or(Expr {
                                    kind: ExprKind::List(Vec::new()),
                                    span,
                                }),
                            }
                        } else {
                            Arg {
                                name: None,
                                value: self.expr(a, sink),
                            }
                        }
                    })
                    .collect();
                ExprKind::Call { name, args }
            }
            _ => ExprKind::Symbol(p.as_str().to_string()),
        };
        Expr { kind, span }
    }

    fn string_parts(&self, p: Pair<Rule>, sink: &mut Sink) -> Vec<StrPart> {
        let mut parts: Vec<StrPart> = Vec::new();
        let push_text = |parts: &mut Vec<StrPart>, s: &str| {
            if let Some(StrPart::Text(t)) = parts.last_mut() {
                t.push_str(s);
            } else {
                parts.push(StrPart::Text(s.to_string()));
            }
        };
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::text => push_text(&mut parts, c.as_str()),
                Rule::escape => {
                    let span = self.span(&c);
                    let ch = c.as_str().chars().nth(1).unwrap_or('\\');
                    let unescaped = match ch {
                        'n' => "\n",
                        't' => "\t",
                        '"' => "\"",
                        '\\' => "\\",
                        '$' => "$",
                        _ => {
                            sink.push(
                                Problem::error(
                                    Code::Syntax,
                                    span,
                                    format!("unknown escape `\\{ch}` in a string"),
                                )
                                .label("not an escape")
                                .help(
                                    "escapes are \\n \\t \\\" \\\\ \\$; for a regular expression \
                                     use single quotes: '^(.*)-[^-]*$'",
                                ),
                            );
                            ""
                        }
                    };
                    push_text(&mut parts, unescaped);
                }
                Rule::interpolation => {
                    if let Some(i) = c.into_inner().next() {
                        parts.push(StrPart::Interp(self.ident(i)));
                    }
                }
                _ => {}
            }
        }
        parts
    }
}

fn number(text: &str, span: Span, sink: &mut Sink) -> ExprKind {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let value = match clean.parse::<f64>() {
        Ok(v) if v.is_finite() => v,
        _ => {
            sink.push(
                Problem::error(
                    Code::OutOfRange,
                    span,
                    format!("`{text}` is not a finite number"),
                )
                .label("too large")
                .help("use a number between -1.7e308 and 1.7e308"),
            );
            0.0
        }
    };
    ExprKind::Number {
        value,
        text: text.to_string(),
    }
}

fn integer(text: &str, span: Span, sink: &mut Sink) -> i64 {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    clean.parse::<i64>().unwrap_or_else(|_| {
        sink.push(
            Problem::error(
                Code::OutOfRange,
                span,
                format!("`{text}` does not fit in an integer"),
            )
            .label("too large"),
        );
        0
    })
}
