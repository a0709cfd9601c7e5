//! Plain text: one record per line, per blank-line-separated document, per separator-delimited
//! block (fortunes' `%`), or per file.

use std::path::Path;
use std::sync::Arc;

use crate::error::{DataError, ErrorKind};
use crate::record::{Origin, Record};
use crate::spec::TextMode;

use super::files::stem;
use super::lines::ByteLines;

pub struct TextSource {
    file: Arc<Path>,
    lines: ByteLines,
    mode: TextMode,
    label: Option<String>,
    /// Byte offset of the first line of the last record returned.
    start: u64,
}

impl TextSource {
    pub fn open(path: &Path, mode: TextMode, label_from_stem: bool) -> Result<Self, DataError> {
        Self::open_at(path, mode, label_from_stem, 0, 1)
    }

    /// Read from byte `offset`, the start of 1-based line `line` (where a scan saw a record begin).
    pub fn open_at(
        path: &Path,
        mode: TextMode,
        label_from_stem: bool,
        offset: u64,
        line: u64,
    ) -> Result<Self, DataError> {
        Ok(Self {
            file: Arc::from(path),
            lines: ByteLines::open_at(path, offset, line)?,
            mode,
            label: label_from_stem.then(|| stem(path)),
            start: offset,
        })
    }

    /// Byte offset of the first line of the last record (or error) returned.
    pub fn last_start(&self) -> u64 {
        self.start
    }

    fn record(&self, text: String, line: u64) -> Record {
        let mut rec = Record::new(
            text,
            Origin {
                file: self.file.clone(),
                line,
            },
        );
        rec.label = self.label.clone();
        rec
    }

    /// Whether `line` ends the current block in this mode.
    fn is_boundary(&self, line: &str) -> bool {
        match &self.mode {
            TextMode::Lines => true,
            TextMode::Documents => line.trim().is_empty(),
            TextMode::Separator(sep) => line.trim_end() == sep,
            TextMode::File => false,
        }
    }
}

impl Iterator for TextSource {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut block = String::new();
        let mut start = 0;
        // A bad line (invalid UTF-8) spoils its whole block: the block is read to its end and
        // returned as that error, so that no part of it becomes a record of its own.
        let mut bad: Option<DataError> = None;
        loop {
            let before = self.lines.offset();
            let Some(item) = self.lines.next() else {
                // End of file: flush what is collected.
                if let Some(e) = bad {
                    return Some(Err(e));
                }
                return (!block.trim().is_empty())
                    .then(|| Ok(self.record(block.trim_end().to_string(), start)));
            };
            let (line, text) = match item {
                Ok(x) => x,
                // In `lines` mode a file that is not UTF-8 is not text: the whole file is an
                // error (as the trainer always had it), not one bad row per broken line.
                Err(e) if self.mode == TextMode::Lines => {
                    self.start = before;
                    let e = match (e.kind, e.line) {
                        (ErrorKind::BadRow, Some(line)) => DataError::new(
                            ErrorKind::Io,
                            format!(
                                "cannot read {} as UTF-8 text: line {line} is {}",
                                self.file.display(),
                                e.message
                            ),
                        )
                        .with_help("convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"),
                        _ => e,
                    };
                    return Some(Err(e));
                }
                Err(e) => {
                    if bad.is_none() {
                        if block.is_empty() {
                            self.start = before;
                        }
                        bad = Some(e);
                    }
                    continue;
                }
            };
            if self.mode == TextMode::Lines {
                if text.trim().is_empty() {
                    continue;
                }
                self.start = before;
                return Some(Ok(self.record(text, line)));
            }
            if self.is_boundary(&text) {
                if let Some(e) = bad {
                    return Some(Err(e));
                }
                if block.trim().is_empty() {
                    block.clear();
                    continue;
                }
                return Some(Ok(self.record(block.trim_end().to_string(), start)));
            }
            if block.is_empty() {
                if text.trim().is_empty() {
                    continue; // leading blank lines belong to no record
                }
                start = line;
                self.start = before;
            } else {
                block.push('\n');
            }
            block.push_str(&text);
        }
    }
}
