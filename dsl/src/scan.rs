//! A quick lexical pass before the grammar runs: it finds comments (for the formatter), measures
//! bracket nesting (so deep input stops with a clear error instead of exhausting the stack) and
//! remembers unclosed brackets (so "unexpected end of file" can point at the opener).

use crate::ast::{Comment, Span};
use crate::source::FileId;

/// Deeper nesting than this is refused before parsing.
pub const MAX_DEPTH: usize = 48;
/// Larger files are refused before parsing.
pub const MAX_FILE_BYTES: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct Scan {
    pub comments: Vec<Comment>,
    /// Offset of the first opener that went past `MAX_DEPTH`.
    pub too_deep_at: Option<usize>,
    /// The innermost bracket still open at the end of the text.
    pub unclosed: Option<(char, usize)>,
}

pub fn scan(text: &str, file: FileId) -> Scan {
    let mut out = Scan::default();
    let mut stack: Vec<(char, usize)> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                let end = text[i..].find('\n').map(|n| i + n).unwrap_or(text.len());
                out.comments.push(Comment {
                    text: text[i..end].trim_end().to_string(),
                    span: Span::new(file, i, end),
                });
                i = end;
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'\'' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'\'' && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            c @ (b'{' | b'[' | b'(') => {
                stack.push((c as char, i));
                if stack.len() > MAX_DEPTH && out.too_deep_at.is_none() {
                    out.too_deep_at = Some(i);
                }
            }
            c @ (b'}' | b']' | b')') => {
                let open = match c {
                    b'}' => '{',
                    b']' => '[',
                    _ => '(',
                };
                if stack.last().map(|s| s.0) == Some(open) {
                    stack.pop();
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.unclosed = stack.last().copied();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_inside_strings_are_not_comments() {
        let s = scan("a = \"x # y\" # real\n", FileId(0));
        assert_eq!(s.comments.len(), 1);
        assert_eq!(s.comments[0].text, "# real");
    }

    #[test]
    fn finds_deep_nesting_and_unclosed_brackets() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        let s = scan(&deep, FileId(0));
        assert_eq!(s.too_deep_at, Some(MAX_DEPTH));
        assert_eq!(s.unclosed, Some(('[', MAX_DEPTH)));
    }
}
