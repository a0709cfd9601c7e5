//! The field mapping applied to one structured row, shared by JSONL, CSV and Parquet: which
//! fields become the text, pair, label, extras, or the supervised turns (prompt/completion or
//! chat messages), and the checks on a conversation.

use std::path::{Path, PathBuf};

use crate::chat::ChatMessage;
use crate::error::{DataError, ErrorKind};
use crate::record::{Origin, Record, Turns};
use crate::spec::{FieldMap, RecordKind};

/// The roles a chat message may have (those of the TRL / OpenAI fine-tuning format).
pub const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// One row of a structured format, as the field mapping sees it. Errors carry no location: the
/// loader adds file and line (or row).
pub trait Fields {
    /// A text field: strings as they are, numbers and booleans as their text.
    fn text(&self, key: &str) -> Result<String, DataError>;
    /// A list of `{role, content}` messages, as written (roles not yet checked).
    fn messages(&self, key: &str) -> Result<Vec<ChatMessage>, DataError>;
}

/// Build a record from a row with the mapping. A supervised record (`kind` not plain) has an
/// empty `text` and does not read the text field.
pub fn build(
    row: &impl Fields,
    map: &FieldMap,
    kind: RecordKind,
    origin: Origin,
) -> Result<Record, DataError> {
    let text = match kind {
        RecordKind::Plain => row.text(&map.text)?,
        RecordKind::PromptCompletion | RecordKind::ImagePromptCompletion | RecordKind::Chat => {
            String::new()
        }
    };
    let image = match &map.image {
        Some(k) => Some(image_path(k, &row.text(k)?, &origin.file)?),
        None => None,
    };
    let mut rec = Record::new(text, origin);
    rec.image = image;
    if let Some(k) = &map.text_pair {
        rec.text_pair = Some(row.text(k)?);
    }
    if let Some(k) = &map.label {
        rec.label = Some(row.text(k)?);
    }
    for k in &map.extra {
        rec.extra.insert(k.clone(), row.text(k)?);
    }
    rec.turns = match (kind, &map.prompt, &map.completion, &map.messages) {
        (RecordKind::PromptCompletion | RecordKind::ImagePromptCompletion, Some(p), Some(c), _) => {
            Some(Turns::PromptCompletion {
                prompt: row.text(p)?,
                completion: row.text(c)?,
            })
        }
        (RecordKind::Chat, _, _, Some(m)) => Some(Turns::Chat(check_chat(m, row.messages(m)?)?)),
        _ => None,
    };
    Ok(rec)
}

/// The image a row names, resolved from the folder of the data file (`file`); an absolute
/// path is kept. An empty value is a bad row.
fn image_path(key: &str, value: &str, file: &Path) -> Result<PathBuf, DataError> {
    if value.trim().is_empty() {
        return Err(DataError::new(
            ErrorKind::BadRow,
            format!("field `{key}` (the image) is empty"),
        )
        .with_help(
            "give the image file's path, relative to the data file's folder, or remove the row",
        ));
    }
    let dir = file.parent().unwrap_or(Path::new(""));
    Ok(dir.join(value))
}

/// A conversation must have known roles and at least one assistant message (the answers the
/// loss is computed on).
pub fn check_chat(key: &str, messages: Vec<ChatMessage>) -> Result<Vec<ChatMessage>, DataError> {
    if messages.is_empty() {
        return Err(
            DataError::new(ErrorKind::BadRow, format!("`{key}` is an empty list")).with_help(
                "a conversation needs messages such as \
                 [{\"role\": \"user\", …}, {\"role\": \"assistant\", …}]",
            ),
        );
    }
    for (i, m) in messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(DataError::new(
                ErrorKind::BadRow,
                format!("message {} of `{key}` has role `{}`", i + 1, m.role),
            )
            .with_help(format!("the roles are {}", ROLES.join(", "))));
        }
    }
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err(DataError::new(
            ErrorKind::BadRow,
            format!("`{key}` has no assistant message"),
        )
        .with_help(
            "a training conversation needs at least one assistant turn: the answers are what \
             the model learns",
        ));
    }
    Ok(messages)
}

/// The error for a message that is not `{role: string, content: string}`.
pub fn bad_message(key: &str, index: usize, what: impl std::fmt::Display) -> DataError {
    DataError::new(
        ErrorKind::BadRow,
        format!("message {} of `{key}` {what}", index + 1),
    )
    .with_help("each message is an object with string fields `role` and `content`")
}
