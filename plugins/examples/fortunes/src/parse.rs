//! The fortunes file format: items separated by lines holding only `%`.

use std::path::Path;

use ardpipe_plugin_sdk::{PluginError, Record};

/// One fortune with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub text: String,
    pub label: String,
    pub file: String,
    /// 1-based line of the item's first line.
    pub line: usize,
}

impl Item {
    pub fn to_record(&self) -> Record {
        Record::new(self.text.clone())
            .with_label(self.label.clone())
            .with_extra("file", self.file.clone())
            .with_extra("line", self.line.to_string())
    }
}

/// The label of a fortune file: its file name.
pub fn category(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<Item>, PluginError> {
    let bytes = std::fs::read(path)
        .map_err(|e| PluginError::new(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        PluginError::new(format!(
            "{}:{line}: not valid UTF-8 (fortunes files must be UTF-8; convert with `iconv -f latin1 -t utf-8`)",
            path.display()
        ))
    })?;
    Ok(parse_fortunes(
        &text,
        &category(path),
        &path.display().to_string(),
    ))
}

/// Splits `text` into items; empty items (e.g. after a trailing `%`) are dropped.
pub fn parse_fortunes(text: &str, label: &str, file: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "%" {
            push(&mut items, &current, label, file, start);
            current.clear();
            start = i + 2;
        } else {
            current.push(line);
        }
    }
    push(&mut items, &current, label, file, start);
    items
}

fn push(items: &mut Vec<Item>, lines: &[&str], label: &str, file: &str, line: usize) {
    let text = lines.join("\n");
    let text = text.trim_end();
    if !text.trim().is_empty() {
        items.push(Item {
            text: text.to_string(),
            label: label.to_string(),
            file: file.to_string(),
            line,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_percent_lines_and_keeps_line_numbers() {
        let items = parse_fortunes("one\n%\ntwo\nlines\n%\n\n%\nthree 100%\n", "x", "f");
        let got: Vec<(&str, usize)> = items.iter().map(|i| (i.text.as_str(), i.line)).collect();
        assert_eq!(got, vec![("one", 1), ("two\nlines", 3), ("three 100%", 8)]);
    }

    #[test]
    fn crlf_separators_count() {
        let items = parse_fortunes("a\r\n%\r\nb\r\n", "x", "f");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].text, "b");
    }
}
