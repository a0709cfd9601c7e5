//! Canonical formatting: one entry per line, four-space indents, one blank line between top-level
//! blocks, blank lines inside blocks kept (at most one), comments kept where they were (a comment
//! inside a multi-line value moves to the line above its entry). Numbers and names are kept as
//! written, so formatting never changes meaning; formatting formatted text changes nothing.

use std::sync::Arc;

use crate::ast::*;
use crate::diag::{Diagnostics, Sink};
use crate::parse;
use crate::source::{FileId, SourceMap};

const WIDTH: usize = 100;
const INDENT: &str = "    ";

/// Formats pipeline text; syntax errors come back as diagnostics (nothing is guessed).
pub fn format_source(name: &str, text: &str) -> Result<String, Diagnostics> {
    let mut sources = SourceMap::default();
    let id = sources.add(name.to_string(), None, text);
    let mut sink = Sink::default();
    let file = parse::parse_file(text, id, &mut sink);
    if sink.has_errors() {
        return Err(Diagnostics::new(sink.problems, Arc::new(sources)));
    }
    let mut f = Formatter {
        text,
        comments: file.comments,
        next_comment: 0,
        out: String::new(),
        last_end: 0,
        _file: id,
    };
    f.items(&file.items);
    let mut out = f.out.trim_end().to_string();
    out.push('\n');
    if out.trim().is_empty() {
        return Ok(String::new());
    }
    Ok(out)
}

struct Formatter<'t> {
    text: &'t str,
    comments: Vec<Comment>,
    next_comment: usize,
    out: String,
    /// Source offset of the last thing written (for blank-line detection).
    last_end: usize,
    _file: FileId,
}

impl Formatter<'_> {
    fn items(&mut self, items: &[Item]) {
        let mut prev_block = false;
        for (i, item) in items.iter().enumerate() {
            let is_block = matches!(item, Item::Block(_));
            // Blocks always stand apart; imports and lets keep the user's grouping.
            let force_blank = i > 0 && (is_block || prev_block);
            self.leading(item.span().start, 0, force_blank, i == 0);
            match item {
                Item::Import(imp) => {
                    let line = format!("import {}", self.expr(&imp.path, 7, 0));
                    self.line(0, &line, imp.span.end);
                }
                Item::Let(l) => {
                    let head = format!("let {} = ", l.name.name);
                    let v = self.expr(&l.value, head.len(), 0);
                    self.line(0, &format!("{head}{v}"), l.span.end);
                }
                Item::Block(b) => self.block(b, 0),
            }
            prev_block = is_block;
        }
        self.leading(self.text.len(), 0, false, false);
    }

    fn block(&mut self, b: &Block, depth: usize) {
        let mut head = b.kind.name.clone();
        if let Some(l) = &b.label {
            head.push(' ');
            head.push_str(&l.name);
        }
        let empty = b.body.is_empty()
            && !self.comments[self.next_comment..]
                .iter()
                .any(|c| c.span.start < b.close.start);
        if empty {
            self.line(depth, &format!("{head} {{}}"), b.span.end);
            return;
        }
        let open = b
            .body
            .first()
            .map(|x| x.span().start)
            .unwrap_or(b.close.start);
        let brace = self.text[b.kind.span.end..open]
            .find('{')
            .map(|i| b.kind.span.end + i + 1)
            .unwrap_or(b.kind.span.end);
        self.line_before(depth, &format!("{head} {{"), brace, open);
        for (i, item) in b.body.iter().enumerate() {
            self.leading(item.span().start, depth + 1, false, i == 0);
            match item {
                BodyItem::Entry(e) => self.entry(e, depth + 1),
                BodyItem::Block(nb) => self.block(nb, depth + 1),
            }
        }
        self.leading(b.close.start, depth + 1, false, b.body.is_empty());
        self.last_end = b.close.start;
        self.line(depth, "}", b.span.end);
    }

    fn entry(&mut self, e: &Entry, depth: usize) {
        // Comments written inside a multi-line value go above the entry.
        self.leading_inside(e.span, depth);
        let key = e.key_text();
        let prefix = INDENT.len() * depth + key.len() + 3;
        let v = self.expr(&e.value, prefix, depth);
        self.line(depth, &format!("{key} = {v}"), e.span.end);
    }

    /// Writes the comments before `upto` on their own lines, with blank lines as the source had.
    fn leading(&mut self, upto: usize, depth: usize, force_blank: bool, first_in_scope: bool) {
        let mut blank = force_blank;
        // Right after `{` (or at the top of the file) a blank line is dropped; after a comment
        // the source's blank lines count again.
        let mut keep_blanks = !first_in_scope;
        while let Some(c) = self.comments.get(self.next_comment).cloned() {
            if c.span.start >= upto {
                break;
            }
            self.next_comment += 1;
            blank |= keep_blanks && self.blank_before(c.span.start);
            if blank && !self.out.is_empty() {
                self.out.push('\n');
            }
            blank = false;
            keep_blanks = true;
            self.push_line(depth, &c.text);
            self.last_end = c.span.end;
        }
        blank |= keep_blanks && self.blank_before(upto);
        if blank && !self.out.is_empty() && upto < self.text.len() {
            self.out.push('\n');
        }
    }

    fn leading_inside(&mut self, span: Span, depth: usize) {
        while let Some(c) = self.comments.get(self.next_comment).cloned() {
            if c.span.start >= span.end || c.span.start < span.start {
                break;
            }
            self.next_comment += 1;
            self.push_line(depth, &c.text);
        }
    }

    fn blank_before(&self, at: usize) -> bool {
        let from = self.last_end.min(at);
        self.text[from..at].matches('\n').count() >= 2
    }

    /// Writes one line for a node ending at `end`, with a comment that follows on the same line.
    fn line(&mut self, depth: usize, s: &str, end: usize) {
        self.line_before(depth, s, end, usize::MAX);
    }

    /// As `line`, taking a same-line comment only when it starts before `limit` (a block
    /// header must not take a comment that follows its first entry on the same line).
    fn line_before(&mut self, depth: usize, s: &str, end: usize, limit: usize) {
        let mut line = s.to_string();
        if let Some(c) = self.comments.get(self.next_comment)
            && c.span.start >= end
            && c.span.start < limit
            && !self.text[end..c.span.start].contains('\n')
        {
            line.push_str("  ");
            line.push_str(&c.text);
            self.last_end = c.span.end;
            self.next_comment += 1;
        } else {
            self.last_end = end;
        }
        self.push_line(depth, &line);
    }

    fn push_line(&mut self, depth: usize, s: &str) {
        for _ in 0..depth {
            self.out.push_str(INDENT);
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    /// A value, on one line when it fits, else broken one element per line.
    fn expr(&self, e: &Expr, col: usize, depth: usize) -> String {
        let flat = flat(e);
        if col + flat.chars().count() <= WIDTH || !flat.contains(", ") {
            return flat;
        }
        let indent = INDENT.repeat(depth + 1);
        let close_indent = INDENT.repeat(depth);
        match &e.kind {
            ExprKind::List(items) => {
                let mut s = "[\n".to_string();
                for i in items {
                    s.push_str(&format!(
                        "{indent}{},\n",
                        self.expr(i, indent.len(), depth + 1)
                    ));
                }
                s.push_str(&close_indent);
                s.push(']');
                s
            }
            ExprKind::Call { name, args } => {
                let mut s = format!("{}(\n", name.name);
                for a in args {
                    let prefix = a
                        .name
                        .as_ref()
                        .map(|n| format!("{} = ", n.name))
                        .unwrap_or_default();
                    let v = self.expr(&a.value, indent.len() + prefix.len(), depth + 1);
                    s.push_str(&format!("{indent}{prefix}{v},\n"));
                }
                s.push_str(&close_indent);
                s.push(')');
                s
            }
            _ => flat,
        }
    }
}

/// A value on one line.
pub fn flat(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number { text, .. } => text.clone(),
        ExprKind::Quantity { text, unit, .. } if unit.name == "%" => format!("{text}%"),
        ExprKind::Quantity { text, unit, .. } => format!("{text} {}", unit.name),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(parts) => {
            let mut s = String::from("\"");
            for p in parts {
                match p {
                    StrPart::Text(t) => {
                        let mut chars = t.chars().peekable();
                        while let Some(c) = chars.next() {
                            match c {
                                '"' => s.push_str("\\\""),
                                '\\' => s.push_str("\\\\"),
                                '\n' => s.push_str("\\n"),
                                '\t' => s.push_str("\\t"),
                                '$' if chars.peek() == Some(&'{') => s.push_str("\\$"),
                                c => s.push(c),
                            }
                        }
                    }
                    StrPart::Interp(id) => {
                        s.push_str("${");
                        s.push_str(&id.name);
                        s.push('}');
                    }
                }
            }
            s.push('"');
            s
        }
        ExprKind::RawStr(s) => format!("'{s}'"),
        ExprKind::Symbol(s) => s.clone(),
        ExprKind::List(items) => format!(
            "[{}]",
            items.iter().map(flat).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Range {
            start,
            end,
            inclusive,
        } => {
            format!("{start}{}{end}", if *inclusive { "..=" } else { ".." })
        }
        ExprKind::Call { name, args } => format!(
            "{}({})",
            name.name,
            args.iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{} = {}", n.name, flat(&a.value)),
                    None => flat(&a.value),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
