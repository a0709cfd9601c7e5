//! The texts being checked: pipeline files, their imports and `--set` overrides, each with a name
//! for diagnostics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct FileId(pub u32);

#[derive(Debug, Clone)]
pub struct SourceFile {
    /// What diagnostics call it: the path as given, or `--set #2`.
    pub name: String,
    /// The file on disk (absolute), when it is one.
    pub path: Option<PathBuf>,
    pub text: Arc<str>,
}

#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, name: String, path: Option<PathBuf>, text: &str) -> FileId {
        self.files.push(SourceFile {
            name,
            path,
            text: Arc::from(text),
        });
        FileId((self.files.len() - 1) as u32)
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// The file `id` names, if this map holds it.
    pub fn lookup(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    pub fn find_path(&self, path: &Path) -> Option<FileId> {
        self.files
            .iter()
            .position(|f| f.path.as_deref() == Some(path))
            .map(|i| FileId(i as u32))
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        line_col(&self.get(id).text, offset)
    }
}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The Language Server Protocol's position of a byte offset: the 0-based line and the column in
/// UTF-16 code units (the unit LSP counts in unless a client negotiates another).
pub fn utf16_position(text: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col: usize = before[line_start..].chars().map(char::len_utf16).sum();
    (line as u32, col as u32)
}

/// The byte offset of an LSP position (0-based line, UTF-16 column): a column past the end of its
/// line is the line's end (before any `\r\n`), a line past the text is the text's end, and a
/// column inside a surrogate pair is the character's start.
pub fn utf16_offset(text: &str, line: u32, col: u32) -> usize {
    let mut start = 0;
    for _ in 0..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let end = text[start..]
        .find('\n')
        .map(|i| start + i)
        .unwrap_or(text.len());
    let line_text = text[start..end]
        .strip_suffix('\r')
        .unwrap_or(&text[start..end]);
    let mut units = 0u32;
    for (i, c) in line_text.char_indices() {
        units += c.len_utf16() as u32;
        if units > col {
            return start + i;
        }
    }
    start + line_text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_positions_round_trip() {
        // `α` is one UTF-16 unit (two bytes), `😀` two units (four bytes).
        let text = "a = \"α😀b\"\r\nx\n";
        let b = text.find('b').unwrap();
        assert_eq!(utf16_position(text, b), (0, 8));
        assert_eq!(utf16_offset(text, 0, 8), b);
        assert_eq!(utf16_offset(text, 0, 99), text.find('\r').unwrap());
        assert_eq!(utf16_position(text, text.find('x').unwrap()), (1, 0));
        assert_eq!(utf16_offset(text, 7, 0), text.len());
        // Inside the surrogate pair: the emoji's start.
        assert_eq!(utf16_offset(text, 0, 7), text.find('😀').unwrap());
    }
}
