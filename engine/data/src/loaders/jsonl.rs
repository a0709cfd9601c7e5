//! JSON Lines: one object per line; fields picked by (optionally dotted) key.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::chat::ChatMessage;
use crate::error::{DataError, ErrorKind, suggest_from};
use crate::record::{Origin, Record};
use crate::spec::{FieldMap, RecordKind};

use super::fields::{Fields, bad_message, build};
use super::lines::ByteLines;

pub struct JsonlSource {
    file: Arc<Path>,
    lines: ByteLines,
    fields: FieldMap,
    kind: RecordKind,
    /// Byte offset of the line the last record came from.
    start: u64,
}

impl JsonlSource {
    pub fn open(path: &Path, fields: FieldMap) -> Result<Self, DataError> {
        Self::open_at(path, fields, 0, 1)
    }

    /// Read from byte `offset`, which is the start of 1-based line `line` (an offset a scan
    /// recorded).
    pub fn open_at(
        path: &Path,
        fields: FieldMap,
        offset: u64,
        line: u64,
    ) -> Result<Self, DataError> {
        Ok(Self {
            file: Arc::from(path),
            kind: fields.kind()?,
            lines: ByteLines::open_at(path, offset, line)?,
            fields,
            start: offset,
        })
    }

    /// Byte offset of the line of the last record (or error) returned.
    pub fn last_start(&self) -> u64 {
        self.start
    }

    fn parse(&self, text: &str, line: u64) -> Result<Record, DataError> {
        let at = |e: DataError| e.at(&self.file, line);
        let value: Value = serde_json::from_str(text).map_err(|e| {
            at(
                DataError::new(ErrorKind::BadRow, format!("invalid JSON: {e}"))
                    .with_help("each line must be one complete JSON object"),
            )
        })?;
        let Value::Object(_) = value else {
            return Err(at(DataError::new(
                ErrorKind::BadRow,
                format!("expected a JSON object, found {}", kind_of(&value)),
            )
            .with_help(
                "each line must be an object such as {\"text\": \"...\", \"label\": \"...\"}",
            )));
        };
        let origin = Origin {
            file: self.file.clone(),
            line,
        };
        build(&JsonRow(&value), &self.fields, self.kind, origin).map_err(at)
    }
}

impl Iterator for JsonlSource {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.start = self.lines.offset();
            let (line, text) = match self.lines.next()? {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            if text.trim().is_empty() {
                continue;
            }
            return Some(self.parse(&text, line));
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct JsonRow<'a>(&'a Value);

impl Fields for JsonRow<'_> {
    fn text(&self, key: &str) -> Result<String, DataError> {
        match lookup(self.0, key)? {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(DataError::new(
                ErrorKind::BadRow,
                format!("field `{key}` is {}, expected a string", kind_of(other)),
            )
            .with_help("map a field that holds text (or a number/boolean used as a label)")),
        }
    }

    fn messages(&self, key: &str) -> Result<Vec<ChatMessage>, DataError> {
        let Value::Array(items) = lookup(self.0, key)? else {
            let v = lookup(self.0, key)?;
            return Err(DataError::new(
                ErrorKind::BadRow,
                format!(
                    "field `{key}` is {}, expected a list of messages",
                    kind_of(v)
                ),
            )
            .with_help("`messages` holds [{\"role\": \"user\", \"content\": \"…\"}, …]"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let Value::Object(m) = item else {
                    return Err(bad_message(
                        key,
                        i,
                        format!("is {}, not an object", kind_of(item)),
                    ));
                };
                let get = |name: &str| match m.get(name) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(other) => Err(bad_message(
                        key,
                        i,
                        format!("has `{name}` {}, not a string", kind_of(other)),
                    )),
                    None => Err(bad_message(key, i, format!("has no `{name}`"))),
                };
                Ok(ChatMessage::new(get("role")?, get("content")?))
            })
            .collect()
    }
}

/// Look up `a.b.c`.
fn lookup<'a>(root: &'a Value, key: &str) -> Result<&'a Value, DataError> {
    let mut cur = root;
    let mut walked = String::new();
    for part in key.split('.') {
        let Value::Object(map) = cur else {
            return Err(DataError::new(
                ErrorKind::MissingField,
                format!(
                    "field `{key}`: `{walked}` is {}, not an object",
                    kind_of(cur)
                ),
            )
            .with_help("nested keys need objects all the way down"));
        };
        match map.get(part) {
            Some(v) => cur = v,
            None => {
                let keys: Vec<String> = map.keys().cloned().collect();
                let place = if walked.is_empty() {
                    "the row".to_string()
                } else {
                    format!("`{walked}`")
                };
                return Err(DataError::new(
                    ErrorKind::MissingField,
                    format!("field `{key}` is missing ({place} has no `{part}`)"),
                )
                .with_help(suggest_from("keys", part, &keys)));
            }
        }
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
    }
    Ok(cur)
}
