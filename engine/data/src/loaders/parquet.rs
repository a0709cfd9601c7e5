//! Apache Parquet (Hugging Face Hub datasets), read with the `parquet` crate's row API (no
//! arrow). Columns are picked by name, dotted for fields of nested structs; string, integer and
//! boolean columns read as text; `messages` is a `list<struct<role, content>>`. Rows are counted
//! from 1 over the whole file, and errors say `file: row N`.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use parquet::schema::types::{Type, TypePtr};

use crate::chat::ChatMessage;
use crate::error::{DataError, ErrorKind, suggest_from};
use crate::record::{Origin, Record};
use crate::spec::{FieldMap, RecordKind};

use super::fields::{Fields, bad_message, build};

/// What every reader of one Parquet file needs: the mapping, the projection of the columns it
/// reads, and where each row group starts.
#[derive(Debug)]
pub struct ParquetLayout {
    file: Arc<Path>,
    fields: FieldMap,
    kind: RecordKind,
    /// The file's schema reduced to the top-level columns the mapping reads.
    projection: Type,
    /// First row (0-based, over the file) of each row group, then the total row count.
    group_starts: Vec<u64>,
}

fn parquet_error(path: &Path, e: &parquet::errors::ParquetError) -> DataError {
    DataError::new(ErrorKind::Io, format!("cannot read as Parquet: {e}"))
        .in_file(path)
        .with_help(
            "check that the file is a complete Parquet file (e.g. `pyarrow.parquet.read_table`)",
        )
}

fn open_reader(path: &Path) -> Result<SerializedFileReader<File>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, &e))?;
    SerializedFileReader::new(file).map_err(|e| parquet_error(path, &e))
}

impl ParquetLayout {
    fn new(
        path: &Path,
        fields: &FieldMap,
        reader: &SerializedFileReader<File>,
    ) -> Result<Self, DataError> {
        let kind = fields.kind()?;
        let root = reader.metadata().file_metadata().schema();
        let mut keys: Vec<&String> = fields.text_pair.iter().chain(&fields.label).collect();
        keys.extend(&fields.extra);
        keys.extend(
            fields
                .prompt
                .iter()
                .chain(&fields.completion)
                .chain(&fields.messages)
                .chain(&fields.image),
        );
        if kind == RecordKind::Plain {
            keys.push(&fields.text);
        }
        for key in &keys {
            check_column(path, root, key)?;
        }
        let top: Vec<TypePtr> = root
            .get_fields()
            .iter()
            .filter(|f| keys.iter().any(|k| k.split('.').next() == Some(f.name())))
            .cloned()
            .collect();
        let projection = Type::group_type_builder(root.name())
            .with_fields(top)
            .build()
            .map_err(|e| parquet_error(path, &e))?;
        let mut group_starts = vec![0u64];
        for g in reader.metadata().row_groups() {
            let last = group_starts.last().copied().unwrap_or(0);
            group_starts.push(last + u64::try_from(g.num_rows()).unwrap_or(0));
        }
        Ok(Self {
            file: Arc::from(path),
            fields: fields.clone(),
            kind,
            projection,
            group_starts,
        })
    }

    /// Rows in the file.
    pub fn rows(&self) -> u64 {
        self.group_starts.last().copied().unwrap_or(0)
    }

    /// The record of a decoded row; `index` is its 0-based row in the file.
    fn record(&self, row: &Row, index: u64) -> Result<Record, DataError> {
        let origin = Origin {
            file: self.file.clone(),
            line: index + 1,
        };
        build(&ParquetRow(row), &self.fields, self.kind, origin)
            .map_err(|e| e.at_row(&self.file, index + 1))
    }
}

/// A mapped column must exist; a dotted name walks into struct columns.
fn check_column(path: &Path, root: &Type, key: &str) -> Result<(), DataError> {
    let mut cur = root;
    let mut walked = String::new();
    for part in key.split('.') {
        if !cur.is_group() {
            return Err(DataError::new(
                ErrorKind::MissingField,
                format!("column `{key}`: `{walked}` is not a struct"),
            )
            .in_file(path)
            .with_help("dotted names walk into struct columns only"));
        }
        let Some(next) = cur.get_fields().iter().find(|f| f.name() == part) else {
            let names: Vec<String> = cur
                .get_fields()
                .iter()
                .map(|f| f.name().to_string())
                .collect();
            let place = if walked.is_empty() {
                "the file".to_string()
            } else {
                format!("struct `{walked}`")
            };
            return Err(DataError::new(
                ErrorKind::MissingField,
                format!("column `{key}` is missing ({place} has no `{part}`)"),
            )
            .in_file(path)
            .with_help(suggest_from("columns", part, &names)));
        };
        cur = next;
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
    }
    Ok(())
}

/// The records of one Parquet file, row after row (one row group decoded at a time).
pub struct ParquetSource {
    layout: Arc<ParquetLayout>,
    rows: RowIter<'static>,
    /// 0-based index of the next row.
    next: u64,
    done: bool,
}

impl ParquetSource {
    pub fn open(path: &Path, fields: &FieldMap) -> Result<Self, DataError> {
        let reader = open_reader(path)?;
        let layout = ParquetLayout::new(path, fields, &reader)?;
        let rows = RowIter::from_file_into(Box::new(reader))
            .project(Some(layout.projection.clone()))
            .map_err(|e| parquet_error(path, &e))?;
        Ok(Self {
            layout: Arc::new(layout),
            rows,
            next: 0,
            done: false,
        })
    }

    /// 0-based row of the last record (or error) returned.
    pub fn last_start(&self) -> u64 {
        self.next.saturating_sub(1)
    }
}

impl Iterator for ParquetSource {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.rows.next() {
            None => {
                self.done = true;
                None
            }
            Some(Err(e)) => {
                self.done = true;
                Some(Err(parquet_error(&self.layout.file, &e)))
            }
            Some(Ok(row)) => {
                self.next += 1;
                Some(self.layout.record(&row, self.next - 1))
            }
        }
    }
}

/// Random access to the rows of one Parquet file: the row group holding a row is decoded whole
/// and kept until a row of another group is asked for.
pub struct ParquetRows {
    layout: ParquetLayout,
    reader: SerializedFileReader<File>,
    cached: Option<(usize, Vec<Row>)>,
}

impl ParquetRows {
    pub fn open(path: &Path, fields: &FieldMap) -> Result<Self, DataError> {
        let reader = open_reader(path)?;
        Ok(Self {
            layout: ParquetLayout::new(path, fields, &reader)?,
            reader,
            cached: None,
        })
    }

    /// The record of 0-based row `index` of the file.
    pub fn get(&mut self, index: u64) -> Result<Record, DataError> {
        let starts = &self.layout.group_starts;
        if index >= self.layout.rows() {
            return Err(DataError::new(
                ErrorKind::Io,
                format!(
                    "row {} is past the end ({} rows)",
                    index + 1,
                    self.layout.rows()
                ),
            )
            .in_file(&self.layout.file)
            .with_help("the file changed since the dataset was indexed; index it again"));
        }
        let group = starts.partition_point(|&s| s <= index) - 1;
        if self.cached.as_ref().map(|(g, _)| *g) != Some(group) {
            self.cached = None;
            let path = &self.layout.file;
            let rows = self
                .reader
                .get_row_group(group)
                .and_then(|g| {
                    g.get_row_iter(Some(self.layout.projection.clone()))?
                        .collect()
                })
                .map_err(|e| parquet_error(path, &e))?;
            self.cached = Some((group, rows));
        }
        let rows = self
            .cached
            .as_ref()
            .map(|(_, r)| r.as_slice())
            .unwrap_or_default();
        let within = usize::try_from(index - starts[group]).unwrap_or(usize::MAX);
        match rows.get(within) {
            Some(row) => self.layout.record(row, index),
            None => Err(DataError::new(
                ErrorKind::Io,
                format!("row group {group} holds fewer rows than its metadata says"),
            )
            .in_file(&self.layout.file)
            .with_help("the file is damaged; write it again")),
        }
    }
}

fn kind_of(f: &Field) -> &'static str {
    match f {
        Field::Null => "null",
        Field::Group(_) => "a struct",
        Field::ListInternal(_) => "a list",
        Field::MapInternal(_) => "a map",
        Field::Float16(_) | Field::Float(_) | Field::Double(_) | Field::Decimal(_) => {
            "a floating-point number"
        }
        Field::Bytes(_) => "binary data that is not UTF-8",
        Field::Str(_) => "a string",
        Field::Bool(_) => "a boolean",
        Field::Byte(_)
        | Field::Short(_)
        | Field::Int(_)
        | Field::Long(_)
        | Field::UByte(_)
        | Field::UShort(_)
        | Field::UInt(_)
        | Field::ULong(_) => "an integer",
        Field::Date(_)
        | Field::TimeMillis(_)
        | Field::TimeMicros(_)
        | Field::TimestampMillis(_)
        | Field::TimestampMicros(_) => "a date or time",
    }
}

struct ParquetRow<'a>(&'a Row);

/// The field `name` of a struct row (present: the schema was checked when the file was opened).
fn column<'a>(row: &'a Row, name: &str, key: &str) -> Result<&'a Field, DataError> {
    row.get_column_iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, f)| f)
        .ok_or_else(|| {
            DataError::new(
                ErrorKind::MissingField,
                format!("column `{key}` is missing"),
            )
            .with_help("check the column names (e.g. `pyarrow.parquet.read_schema`)")
        })
}

fn lookup<'a>(row: &'a Row, key: &str) -> Result<&'a Field, DataError> {
    let mut parts = key.split('.');
    let mut cur = column(row, parts.next().unwrap_or_default(), key)?;
    for part in parts {
        cur = match cur {
            Field::Group(r) => column(r, part, key)?,
            other => {
                return Err(DataError::new(
                    ErrorKind::BadRow,
                    format!(
                        "column `{key}`: found {} where a struct was expected",
                        kind_of(other)
                    ),
                )
                .with_help("dotted names walk into struct columns only"));
            }
        };
    }
    Ok(cur)
}

/// A text cell: strings, integers and booleans (labels are often integers).
fn text_of(f: &Field) -> Option<String> {
    Some(match f {
        Field::Str(s) => s.clone(),
        Field::Bytes(b) => std::str::from_utf8(b.data()).ok()?.to_string(),
        Field::Bool(v) => v.to_string(),
        Field::Byte(v) => v.to_string(),
        Field::Short(v) => v.to_string(),
        Field::Int(v) => v.to_string(),
        Field::Long(v) => v.to_string(),
        Field::UByte(v) => v.to_string(),
        Field::UShort(v) => v.to_string(),
        Field::UInt(v) => v.to_string(),
        Field::ULong(v) => v.to_string(),
        _ => return None,
    })
}

impl Fields for ParquetRow<'_> {
    fn text(&self, key: &str) -> Result<String, DataError> {
        let f = lookup(self.0, key)?;
        text_of(f).ok_or_else(|| {
            DataError::new(
                ErrorKind::BadRow,
                format!("column `{key}` is {}, expected a string", kind_of(f)),
            )
            .with_help("map a column that holds text (or an integer/boolean used as a label)")
        })
    }

    fn messages(&self, key: &str) -> Result<Vec<ChatMessage>, DataError> {
        let items = match lookup(self.0, key)? {
            Field::ListInternal(list) => list.elements(),
            other => {
                return Err(DataError::new(
                    ErrorKind::BadRow,
                    format!(
                        "column `{key}` is {}, expected a list of messages",
                        kind_of(other)
                    ),
                )
                .with_help("`messages` is a list<struct<role: string, content: string>> column"));
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let Field::Group(m) = item else {
                    return Err(bad_message(
                        key,
                        i,
                        format!("is {}, not a struct", kind_of(item)),
                    ));
                };
                let get = |name: &str| {
                    let Some((_, f)) = m.get_column_iter().find(|(n, _)| n.as_str() == name) else {
                        return Err(bad_message(key, i, format!("has no `{name}`")));
                    };
                    match f {
                        Field::Str(s) => Ok(s.clone()),
                        other => Err(bad_message(
                            key,
                            i,
                            format!("has `{name}` {}, not a string", kind_of(other)),
                        )),
                    }
                };
                Ok(ChatMessage::new(get("role")?, get("content")?))
            })
            .collect()
    }
}
