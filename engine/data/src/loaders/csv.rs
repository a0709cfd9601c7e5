//! CSV, with a header row (columns picked by name) or without (columns picked by number).

use std::fs::File;
use std::io::{BufReader, Read};
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
    /// The first row names the columns; without it columns are named `"0"`, `"1"`, ….
    header: bool,
    /// The line of the row whose quoted field is still open at the end of the file (checked
    /// when the file is read from its start).
    open_quote: Option<u64>,
    delimiter: char,
    fields: FieldMap,
    kind: RecordKind,
    /// Byte offset of the last record returned.
    start: u64,
    done: bool,
}

impl CsvSource {
    pub fn open(
        path: &Path,
        delimiter: char,
        header: bool,
        fields: &FieldMap,
    ) -> Result<Self, DataError> {
        Self::open_at(path, delimiter, header, fields, 0, 1)
    }

    /// Read the header, then go on from byte `offset`, the start of the record on 1-based line
    /// `line` (an offset a scan recorded); 0 reads from the first row.
    pub fn open_at(
        path: &Path,
        delimiter: char,
        header: bool,
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
            .has_headers(header)
            // Every row must have the header's number of fields: a row with one more or one less
            // (an unquoted delimiter inside a field, a cut line) is a bad row, not a row read
            // with its fields shifted.
            .flexible(false)
            .from_reader(file);
        let headers: Vec<String> = if header {
            reader
                .headers()
                .map_err(|e| bad_csv(path, &e, header, delimiter))?
                .iter()
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        if header && headers.iter().all(|h| h.is_empty()) {
            return Err(
                DataError::new(ErrorKind::Empty, "the CSV file has no header row")
                    .in_file(path)
                    .with_help("the first line must name the columns, e.g. `text,label`"),
            );
        }
        // Header problems are not row problems: no line number, so the skip policy never skips them.
        let col = |name: &str| -> Result<usize, DataError> {
            if !header {
                return name.parse::<usize>().map_err(|_| {
                    DataError::config(format!(
                        "without a header, columns are numbers, not {name:?}"
                    ))
                    .in_file(path)
                    .with_help("name the columns by their 0-based number, e.g. `text = \"0\"`, or give the file a header row")
                });
            }
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
        wanted.extend(
            fields
                .prompt
                .iter()
                .chain(&fields.completion)
                .chain(&fields.image),
        );
        if kind == RecordKind::Plain {
            wanted.push(&fields.text);
        }
        for name in wanted {
            col(name)?;
        }
        // The csv reader ends a quoted field that is never closed at the end of the file with
        // no error: every row after the stray quote would be read into that one field in silence.
        // Checked on a read from the start; a record found by a scan is read again as it was.
        let open_quote = if offset == 0 {
            unclosed_quote(path, delimiter as u8)?
        } else {
            None
        };
        if offset > 0 {
            let mut pos = csv::Position::new();
            pos.set_byte(offset).set_line(line);
            reader
                .seek(pos)
                .map_err(|e| bad_csv(path, &e, header, delimiter))?;
        }
        Ok(Self {
            file: Arc::from(path),
            reader,
            row: csv::StringRecord::new(),
            headers,
            header,
            open_quote,
            delimiter,
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
    header: bool,
    row: &'a csv::StringRecord,
}

impl Fields for CsvRow<'_> {
    fn text(&self, key: &str) -> Result<String, DataError> {
        let i = if self.header {
            self.headers.iter().position(|h| h == key)
        } else {
            key.parse::<usize>().ok()
        };
        match i.and_then(|i| self.row.get(i)) {
            Some(v) => Ok(v.to_string()),
            None => Err(DataError::new(
                ErrorKind::BadRow,
                format!("the row has {} fields, no column {key}", self.row.len()),
            )
            .with_help("columns without a header are numbered from 0")),
        }
    }

    fn messages(&self, key: &str) -> Result<Vec<ChatMessage>, DataError> {
        Err(DataError::config(format!(
            "`{key}`: a CSV cell cannot hold a list of messages"
        )))
    }
}

fn bad_csv(path: &Path, e: &csv::Error, header: bool, delimiter: char) -> DataError {
    let line = e.position().map(|p| p.line());
    let (msg, help) = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => (
            format!(
                "the row has {len} fields where {} has {expected_len} (quote a field that \
                 contains the delimiter {delimiter:?})",
                if header {
                    "the header"
                } else {
                    "the first row"
                }
            ),
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

/// The error for the row whose quoted field opened on `line` and never closed.
fn never_closed(path: &Path, line: u64) -> DataError {
    DataError::new(
        ErrorKind::BadRow,
        "a quoted field opened on this row is never closed, so the rest of the file was read \
         into it",
    )
    .at(path, line)
    .with_help("close the quote, or double a quote inside a quoted field: \"\"")
}

/// The line of the row whose quoted field is still open at the end of `path`, if one is, read as
/// the csv crate reads it (a field is quoted when it starts with `"`; `""` inside is a quote).
/// Streams the file: memory stays flat however large it is.
fn unclosed_quote(path: &Path, delim: u8) -> Result<Option<u64>, DataError> {
    #[derive(PartialEq)]
    enum At {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let file = File::open(path).map_err(|e| DataError::io(path, &e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut buf = vec![0u8; 1 << 16];
    let mut at = At::FieldStart;
    let (mut line, mut row_line, mut row_start) = (1u64, 1u64, true);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::io(path, &e)),
        };
        for &b in &buf[..n] {
            let ends_row = b == b'\n' || b == b'\r';
            if row_start && !ends_row {
                row_line = line;
                row_start = false;
            }
            if b == b'\n' {
                line += 1;
            }
            at = match at {
                At::FieldStart if b == b'"' => At::Quoted,
                At::FieldStart | At::Unquoted | At::QuoteInQuoted if ends_row || b == delim => {
                    row_start |= ends_row;
                    At::FieldStart
                }
                At::FieldStart | At::Unquoted => At::Unquoted,
                At::Quoted if b == b'"' => At::QuoteInQuoted,
                At::Quoted => At::Quoted,
                At::QuoteInQuoted if b == b'"' => At::Quoted,
                At::QuoteInQuoted => At::Unquoted,
            };
        }
    }
    Ok((at == At::Quoted).then_some(row_line))
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
                let line = e.position().map(|p| p.line());
                if let Some(q) = self.open_quote.filter(|&q| Some(q) == line) {
                    return Some(Err(never_closed(&self.file, q)));
                }
                Some(Err(bad_csv(&self.file, &e, self.header, self.delimiter)))
            }
            Ok(true) => {
                let line = self.row.position().map_or(0, |p| p.line());
                if let Some(q) = self.open_quote.filter(|&q| q == line) {
                    if let Some(p) = self.row.position() {
                        self.start = p.byte();
                    }
                    return Some(Err(never_closed(&self.file, q)));
                }
                if let Some(p) = self.row.position() {
                    self.start = p.byte();
                }
                let origin = Origin {
                    file: self.file.clone(),
                    line,
                };
                let row = CsvRow {
                    headers: &self.headers,
                    header: self.header,
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
