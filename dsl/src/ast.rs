//! The owned syntax tree. Every node carries the span of its text, so every later error can point
//! at it. Nothing here knows about pest.

use crate::source::FileId;

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start, end }
    }
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The smallest span covering both (same file assumed).
    pub fn to(&self, other: Span) -> Span {
        Span::new(
            self.file,
            self.start.min(other.start),
            self.end.max(other.end),
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One parsed file.
#[derive(Debug, Clone, Default)]
pub struct File {
    pub items: Vec<Item>,
    /// Comments with their spans, in source order; the formatter re-attaches them.
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Item {
    Import(Import),
    Let(Let),
    Block(Block),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Import(i) => i.span,
            Item::Let(l) => l.span,
            Item::Block(b) => b.span,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Import {
    pub path: Expr,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Let {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

/// `kind label? { ... }`, e.g. `dataset tweets { ... }` or `train { ... }`.
#[derive(Debug, Clone)]
pub struct Block {
    pub kind: Ident,
    pub label: Option<Ident>,
    pub body: Vec<BodyItem>,
    pub span: Span,
    /// Span of the closing brace (comments before it stay inside the block).
    pub close: Span,
}

impl Block {
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.body.iter().filter_map(|b| match b {
            BodyItem::Entry(e) => Some(e),
            BodyItem::Block(_) => None,
        })
    }
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.body.iter().filter_map(|b| match b {
            BodyItem::Block(b) => Some(b),
            BodyItem::Entry(_) => None,
        })
    }
}

#[derive(Debug, Clone)]
pub enum BodyItem {
    Entry(Entry),
    Block(Block),
}

impl BodyItem {
    pub fn span(&self) -> Span {
        match self {
            BodyItem::Entry(e) => e.span,
            BodyItem::Block(b) => b.span,
        }
    }
}

/// `key = value`; the key is a dotted path only inside `variant` blocks and in overrides.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Vec<Ident>,
    pub value: Expr,
    pub span: Span,
}

impl Entry {
    pub fn key_span(&self) -> Span {
        match (self.key.first(), self.key.last()) {
            (Some(a), Some(b)) => a.span.to(b.span),
            _ => self.span,
        }
    }
    pub fn key_text(&self) -> String {
        self.key
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    /// A number as written (the text is kept so the formatter never rewrites `3e-4`).
    Number {
        value: f64,
        text: String,
    },
    /// `300 steps`, `2 epochs`; `20%` has the unit `%`.
    Quantity {
        value: f64,
        text: String,
        unit: Ident,
    },
    Bool(bool),
    /// `"..."`: literal pieces and `${name}` interpolations.
    Str(Vec<StrPart>),
    /// `'...'`: taken verbatim.
    RawStr(String),
    /// A bare word: a `let` variable if one has this name, else a symbol such as `lora`.
    Symbol(String),
    List(Vec<Expr>),
    /// `a..b` (exclusive) or `a..=b`.
    Range {
        start: i64,
        end: i64,
        inclusive: bool,
    },
    Call {
        name: Ident,
        args: Vec<Arg>,
    },
}

#[derive(Debug, Clone)]
pub enum StrPart {
    Text(String),
    Interp(Ident),
}

#[derive(Debug, Clone)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

impl ExprKind {
    /// A short word for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ExprKind::Number { .. } => "a number",
            ExprKind::Quantity { unit, .. } if unit.name == "%" => "a percentage",
            ExprKind::Quantity { .. } => "a number with a unit",
            ExprKind::Bool(_) => "a boolean",
            ExprKind::Str(_) | ExprKind::RawStr(_) => "a string",
            ExprKind::Symbol(_) => "a name",
            ExprKind::List(_) => "a list",
            ExprKind::Range { .. } => "a range",
            ExprKind::Call { .. } => "a call",
        }
    }
}
