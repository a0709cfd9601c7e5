//! What a dataset is, as the pipeline describes it: files, format, field mapping, preprocessing,
//! error policy. Plain serde values, so the resolved pipeline can carry and print them.

use serde::{Deserialize, Serialize};

/// How the files are laid out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Rows of fields; RFC 4180 quoting. Every row must have the header's (or, without a header,
    /// the first row's) number of fields: another count is a bad row, as is a quoted field never
    /// closed before the end of the file (at the line where it opened).
    Csv {
        #[serde(default = "comma")]
        delimiter: char,
        /// The first row names the columns (default). Without a header, columns are named by
        /// their 0-based number: `"0"`, `"1"`, …; any other column name is a configuration error.
        #[serde(default = "yes")]
        header: bool,
    },
    /// Plain text, split into records by `mode`.
    Text {
        #[serde(default)]
        mode: TextMode,
    },
    /// `root/<class>/<file>`: each subfolder is a class, each file one record.
    FolderPerClass,
    /// `root/<class>/<image>`: each subfolder is a class, each PNG or JPEG file (`.png`, `.jpg`,
    /// `.jpeg`, any case) one record with `image` set and the class as its label; other files
    /// are not read. The question and answer come from the caller (see
    /// [`crate::vision::class_prompt`]).
    ImageFolderPerClass,
    /// Apache Parquet (the format of Hugging Face Hub datasets); columns picked by name, dotted
    /// for fields of nested structs.
    Parquet,
}

impl Format {
    /// Whether the spec's paths are root folders (whose subfolders are the classes), not files.
    pub fn reads_folders(&self) -> bool {
        matches!(self, Self::FolderPerClass | Self::ImageFolderPerClass)
    }
}

fn comma() -> char {
    ','
}

fn yes() -> bool {
    true
}

/// How plain text splits into records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TextMode {
    /// Each non-blank line is a record.
    #[default]
    Lines,
    /// Records are separated by one or more blank lines. (The pipeline language's `documents`
    /// mode, one record per file, is [`TextMode::File`].)
    Documents,
    /// Records are separated by a line that equals this string (e.g. `%` for fortunes).
    Separator(String),
    /// Each file is one record (e.g. a whole play for language modelling).
    File,
}

/// Which fields of a structured row (JSONL key, CSV column, Parquet column) feed which part of a
/// record. JSONL keys and Parquet columns may be nested with dots: `meta.label`.
///
/// A supervised record maps `prompt` and `completion` (both), or `messages` (a list of
/// `{role, content}` objects); its `text` is then not read. An image question maps `image` (the
/// image file's path, relative to the data file's folder) with `prompt` (the question) and
/// `completion` (the answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMap {
    #[serde(default = "text_field")]
    pub text: String,
    #[serde(default)]
    pub text_pair: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    /// More fields to carry along into `Record::extra`.
    #[serde(default)]
    pub extra: Vec<String>,
    /// The prompt of a prompt/completion record (with `completion`).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The answer of a prompt/completion record (with `prompt`).
    #[serde(default)]
    pub completion: Option<String>,
    /// A conversation: a list of `{role, content}` (roles system/user/assistant/tool).
    #[serde(default)]
    pub messages: Option<String>,
    /// The path of an image file (PNG or JPEG), relative to the folder of the data file that
    /// names it (absolute paths are kept); needs `prompt` and `completion`.
    #[serde(default)]
    pub image: Option<String>,
}

fn text_field() -> String {
    "text".into()
}

impl Default for FieldMap {
    fn default() -> Self {
        Self {
            text: text_field(),
            text_pair: None,
            label: None,
            extra: Vec::new(),
            prompt: None,
            completion: None,
            messages: None,
            image: None,
        }
    }
}

/// What kind of record a field map describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// `text` (and maybe `text_pair`).
    Plain,
    /// `prompt` and `completion`.
    PromptCompletion,
    /// `messages`.
    Chat,
    /// `image` with `prompt` (the question) and `completion` (the answer).
    ImagePromptCompletion,
}

impl FieldMap {
    /// The kind of record this mapping reads, or a configuration error for a half or mixed
    /// mapping (a prompt without a completion, prompt/completion and messages together).
    pub fn kind(&self) -> Result<RecordKind, crate::DataError> {
        if let Some(image) = &self.image {
            return match self.text_kind()? {
                RecordKind::PromptCompletion => Ok(RecordKind::ImagePromptCompletion),
                RecordKind::Chat => Err(crate::DataError::config(format!(
                    "the fields map `image` (`{image}`) together with `messages`"
                ))
                .with_help(
                    "an image question maps `prompt` (the question) and `completion` (the answer) \
                     next to `image`; conversations about images are not supported",
                )),
                _ => Err(crate::DataError::config(format!(
                    "the fields map `image` (`{image}`) but no `prompt` and `completion`"
                ))
                .with_help(
                    "map the question and the answer too, e.g. `prompt = \"question\"`, \
                     `completion = \"answer\"`",
                )),
            };
        }
        self.text_kind()
    }

    fn text_kind(&self) -> Result<RecordKind, crate::DataError> {
        match (&self.prompt, &self.completion, &self.messages) {
            (None, None, None) => Ok(RecordKind::Plain),
            (Some(_), Some(_), None) => Ok(RecordKind::PromptCompletion),
            (None, None, Some(_)) => Ok(RecordKind::Chat),
            (_, _, Some(_)) => Err(crate::DataError::config(
                "the fields map `messages` together with `prompt`/`completion`",
            )
            .with_help("a record is either a conversation (`messages`) or a prompt/completion pair; map one")),
            (Some(_), None, None) => Err(crate::DataError::config(
                "the fields map `prompt` but no `completion`",
            )
            .with_help("map the answer column too, e.g. `completion = \"response\"`")),
            (None, Some(_), None) => Err(crate::DataError::config(
                "the fields map `completion` but no `prompt`",
            )
            .with_help("map the question column too, e.g. `prompt = \"instruction\"`")),
        }
    }
}

/// What to do with a bad row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The first bad row is an error naming file:line and the reason.
    #[default]
    Stop,
    /// Bad rows are skipped and counted; the first few reasons are kept for the report.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Preprocess {
    /// Regexes whose matches are removed from the text (and the pair), e.g. `http\S+`.
    #[serde(default)]
    pub strip: Vec<String>,
    /// Applied to the label; the first capture group becomes the label, e.g. `^(.*)-[^-]*$`.
    /// A label that does not match is a bad row.
    #[serde(default)]
    pub label_regex: Option<String>,
    /// Stop after this many good rows.
    #[serde(default)]
    pub max_rows: Option<usize>,
    /// Lowercase the text and the pair, after `strip` (and `collapse_whitespace`).
    #[serde(default)]
    pub lowercase: bool,
    /// Normalise whitespace after `strip`: in records that are rows (JSONL, CSV, Parquet, folder
    /// files, text in `lines` mode, loader plugins' records) every run of whitespace becomes one
    /// space and the ends are trimmed (`split_whitespace().join(" ")`); text in `documents`,
    /// `separator` and `file` modes keeps its line structure and is only trimmed at both ends.
    /// Applies to the text and the pair (and trims a label when there is no `label_regex`);
    /// prompt/completion and chat records are never
    /// normalised, trimmed or lowercased (their whitespace is part of what the model learns).
    #[serde(default)]
    pub collapse_whitespace: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// Paths or globs (`shakespeare/*.txt`), relative to the base directory given when opening.
    /// For `folder_per_class`, the root folder(s).
    pub files: Vec<String>,
    pub format: Format,
    #[serde(default)]
    pub fields: FieldMap,
    /// Plain text and folder formats: the label is the file stem (`hamlet` for `hamlet.txt`).
    #[serde(default)]
    pub label_from_stem: bool,
    #[serde(default)]
    pub preprocess: Preprocess,
    #[serde(default)]
    pub on_error: OnError,
    /// Under `on_error = skip`: when more than this many bad rows were skipped, the read stops
    /// with an error naming the last one (`None`: no limit). Ignored under `stop`.
    #[serde(default)]
    pub max_skipped: Option<usize>,
}

impl DatasetSpec {
    pub fn new(files: impl IntoIterator<Item = impl Into<String>>, format: Format) -> Self {
        Self {
            files: files.into_iter().map(Into::into).collect(),
            format,
            fields: FieldMap::default(),
            label_from_stem: false,
            preprocess: Preprocess::default(),
            on_error: OnError::Stop,
            max_skipped: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serialised shape is what the resolved pipeline and run manifest show users.
    #[test]
    fn spec_round_trips_through_json_with_defaults() {
        let json = r#"{
            "files": ["healthtweets.csv"],
            "format": {"type": "csv"},
            "fields": {"label": "source_id"},
            "preprocess": {"strip": ["http\\S+"], "label_regex": "^(.*)-[^-]*$"},
            "on_error": "skip"
        }"#;
        let spec: DatasetSpec = serde_json::from_str(json).unwrap();
        assert_eq!(
            spec.format,
            Format::Csv {
                delimiter: ',',
                header: true
            }
        );
        assert_eq!(spec.max_skipped, None);
        assert!(!spec.preprocess.lowercase && !spec.preprocess.collapse_whitespace);
        assert_eq!(spec.fields.text, "text");
        assert_eq!(spec.on_error, OnError::Skip);
        let back: DatasetSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
        let fortunes: Format =
            serde_json::from_str(r#"{"type": "text", "mode": {"separator": "%"}}"#).unwrap();
        assert_eq!(
            fortunes,
            Format::Text {
                mode: TextMode::Separator("%".into())
            }
        );
    }
}
