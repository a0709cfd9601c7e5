//! CSV with a header row; columns picked by name.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::error::{DataError, ErrorKind, suggest_from};
use crate::record::{Origin, Record};
use crate::spec::FieldMap;

pub struct CsvSource {
    file: Arc<Path>,
    reader: csv::Reader<File>,
    row: csv::StringRecord,
    text: usize,
    pair: Option<usize>,
    label: Option<usize>,
    extra: Vec<(String, usize)>,
    done: bool,
}

impl CsvSource {
    pub fn open(path: &Path, delimiter: char, fields: &FieldMap) -> Result<Self, DataError> {
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
        Ok(Self {
            file: Arc::from(path),
            text: col(&fields.text)?,
            pair: fields.text_pair.as_deref().map(col).transpose()?,
            label: fields.label.as_deref().map(col).transpose()?,
            extra: fields
                .extra
                .iter()
                .map(|n| col(n).map(|i| (n.clone(), i)))
                .collect::<Result<_, _>>()?,
            reader,
            row: csv::StringRecord::new(),
            done: false,
        })
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
                let get = |i: usize| self.row.get(i).unwrap_or_default().to_string();
                let mut rec = Record::new(
                    get(self.text),
                    Origin {
                        file: self.file.clone(),
                        line,
                    },
                );
                rec.text_pair = self.pair.map(get);
                rec.label = self.label.map(get);
                for (name, i) in &self.extra {
                    rec.extra.insert(name.clone(), get(*i));
                }
                Some(Ok(rec))
            }
        }
    }
}
