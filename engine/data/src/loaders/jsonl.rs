//! JSON Lines: one object per line; fields picked by (optionally dotted) key.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{DataError, ErrorKind, suggest_from};
use crate::record::{Origin, Record};
use crate::spec::FieldMap;

use super::lines::ByteLines;

pub struct JsonlSource {
    file: Arc<Path>,
    lines: ByteLines,
    fields: FieldMap,
}

impl JsonlSource {
    pub fn open(path: &Path, fields: FieldMap) -> Result<Self, DataError> {
        Ok(Self {
            file: Arc::from(path),
            lines: ByteLines::open(path)?,
            fields,
        })
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
        let get = |key: &str| field(&value, key).map_err(at);
        let mut rec = Record::new(
            get(&self.fields.text)?,
            Origin {
                file: self.file.clone(),
                line,
            },
        );
        if let Some(k) = &self.fields.text_pair {
            rec.text_pair = Some(get(k)?);
        }
        if let Some(k) = &self.fields.label {
            rec.label = Some(get(k)?);
        }
        for k in &self.fields.extra {
            rec.extra.insert(k.clone(), get(k)?);
        }
        Ok(rec)
    }
}

impl Iterator for JsonlSource {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
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

/// Look up `a.b.c`; strings as they are, numbers and booleans as their JSON text.
fn field(root: &Value, key: &str) -> Result<String, DataError> {
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
    match cur {
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
