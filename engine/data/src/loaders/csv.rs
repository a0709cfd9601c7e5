//! CSV with a header row; columns picked by name.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::chat::ChatMessage;
use crate::error::{DataError, ErrorKind, suggest_from};
use crate::record::{Origin, Record};
use crate::spec::{FieldMap, RecordKind};

use super::fields::{Fields, build};

pub struct CsvSource {
    file: Arc<Path>,
    reader: csv::Reader<File>,
    row: csv::StringRecord,
    headers: Vec<String>,
    fields: FieldMap,
    kind: RecordKind,
    /// Byte offset of the last record returned.
    start: u64,
    done: bool,
}

impl CsvSource {
    pub fn open(path: &Path, delimiter: char, fields: &FieldMap) -> Result<Self, DataError> {
        Self::open_at(path, delimiter, fields, 0, 1)
    }

    /// Read the header, then go on from byte `offset`, the start of the record on 1-based line
    /// `line` (an offset a scan recorded); 0 reads from the first row.
    pub fn open_at(
        path: &Path,
        delimiter: char,
        fields: &FieldMap,
        offset: u64,
        line: u64,
    ) -> Result<Self, DataError> {
        let kind = fields.kind()?;
        if let Some(m) = &fields.messages {
            return Err(DataError::config(format!(
                "`messages` = `{m}`: a CSV cell cannot hold a list of messages"
            ))
            .in_file(path)
            .with_help(
                "store conversations as JSONL or Parquet, or map `prompt` and `completion` columns",
            ));
        }
        if !delimiter.is_ascii() {
            return Err(DataError::config(format!(
                "CSV delimiter {delimiter:?} is not a single ASCII character"
            ))
            .with_help("use e.g. ',', ';', '\\t' or '|'"));
        }
        let file = File::open(path).map_err(|e| DataError::io(path, &e))?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter as u8)
            .has_headers(true)
            .from_reader(file);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| bad_csv(path, &e))?
            .iter()
            .map(str::to_string)
            .collect();
        if headers.iter().all(|h| h.is_empty()) {
            return Err(
                DataError::new(ErrorKind::Empty, "the CSV file has no header row")
                    .in_file(path)
                    .with_help("the first line must name the columns, e.g. `text,label`"),
            );
        }
        // Header problems are not row problems: no line number, so the skip policy never skips them.
        let col = |name: &str| -> Result<usize, DataError> {
            headers.iter().position(|h| h == name).ok_or_else(|| {
                DataError::new(
                    ErrorKind::MissingField,
                    format!("column `{name}` is not in the header (line 1)"),
                )
                .in_file(path)
                .with_help(suggest_from("columns", name, &headers))
            })
        };
        let mut wanted: Vec<&String> = fields.text_pair.iter().chain(&fields.label).collect();
        wanted.extend(&fields.extra);
        wanted.extend(fields.prompt.iter().chain(&fields.completion));
        if kind == RecordKind::Plain {
            wanted.push(&fields.text);
        }
        for name in wanted {
            col(name)?;
        }
        if offset > 0 {
            let mut pos = csv::Position::new();
            pos.set_byte(offset).set_line(line);
            reader.seek(pos).map_err(|e| bad_csv(path, &e))?;
        }
        Ok(Self {
            file: Arc::from(path),
            reader,
            row: csv::StringRecord::new(),
            headers,
            fields: fields.clone(),
            kind,
            start: offset,
            done: false,
        })
    }

    /// Byte offset of the last record (or error) returned.
    pub fn last_start(&self) -> u64 {
        self.start
    }
}

/// A row with its header; every mapped column was checked to exist when the file was opened.
struct CsvRow<'a> {
    headers: &'a [String],
    row: &'a csv::StringRecord,
}

impl Fields for CsvRow<'_> {
    fn text(&self, key: &str) -> Result<String, DataError> {
        let i = self.headers.iter().position(|h| h == key);
        Ok(i.and_then(|i| self.row.get(i))
            .unwrap_or_default()
            .to_string())
    }

    fn messages(&self, key: &str) -> Result<Vec<ChatMessage>, DataError> {
        Err(DataError::config(format!(
            "`{key}`: a CSV cell cannot hold a list of messages"
        )))
    }
}

fn bad_csv(path: &Path, e: &csv::Error) -> DataError {
    let line = e.position().map(|p| p.line());
    let (msg, help) = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => (
            format!("row has {len} fields, the header has {expected_len}"),
            "quote fields that contain the delimiter or line breaks with \"…\" (and double \"\" \
             inside them)",
        ),
        csv::ErrorKind::Utf8 { .. } => (
            "invalid UTF-8".to_string(),
            "convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ),
        csv::ErrorKind::Io(err) => return DataError::io(path, err),
        _ => (format!("malformed CSV: {e}"), "check the row's quoting"),
    };
    let err = DataError::new(ErrorKind::BadRow, msg).with_help(help);
    match line {
        Some(l) => err.at(path, l),
        None => err.in_file(path),
    }
}

impl Iterator for CsvSource {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.start = self.reader.position().byte();
        match self.reader.read_record(&mut self.row) {
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    self.done = true;
                }
                Some(Err(bad_csv(&self.file, &e)))
            }
            Ok(true) => {
                let line = self.row.position().map_or(0, |p| p.line());
                if let Some(p) = self.row.position() {
                    self.start = p.byte();
                }
                let origin = Origin {
                    file: self.file.clone(),
                    line,
                };
                let row = CsvRow {
                    headers: &self.headers,
                    row: &self.row,
                };
                Some(
                    build(&row, &self.fields, self.kind, origin)
                        .map_err(|e| e.at(&self.file, line)),
                )
            }
        }
    }
}
