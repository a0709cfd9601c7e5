//! Preprocessing and the error policy over any record stream, and `load` to collect a dataset.

use std::path::Path;

use regex::Regex;
use serde::Serialize;

use crate::error::{DataError, ErrorKind};
use crate::loaders::open_source;
use crate::record::{Record, RecordSource, Turns};
use crate::spec::{DatasetSpec, Format, OnError, Preprocess, TextMode};

/// How many skip reasons a report keeps (the count covers all of them).
pub const KEPT_REASONS: usize = 5;

/// What the skip policy dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SkipReport {
    pub skipped: usize,
    /// The first [`KEPT_REASONS`] reasons, each with file:line.
    pub first_reasons: Vec<String>,
}

/// Compiled preprocessing.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    strip: Vec<Regex>,
    label: Option<Regex>,
    pub(crate) max_rows: Option<usize>,
    /// Records are rows of a table (Parquet): errors say `file: row N`.
    counts_rows: bool,
    lowercase: bool,
    /// How `collapse_whitespace` normalises this dataset's texts.
    whitespace: Whitespace,
}

/// Whitespace normalisation of plain texts (see `Preprocess::collapse_whitespace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whitespace {
    /// As read (only trimmed when strip patterns are given).
    Keep,
    /// Every run of whitespace becomes one space; the ends are trimmed.
    Collapse,
    /// Trimmed at both ends, line structure kept (text documents).
    Trim,
}

impl Compiled {
    pub(crate) fn for_spec(spec: &DatasetSpec) -> Result<Self, DataError> {
        let mut c = Self::new(&spec.preprocess)?;
        c.counts_rows = spec.format == Format::Parquet;
        // Text documents keep their line structure (it matters to a language model).
        if c.whitespace == Whitespace::Collapse
            && matches!(&spec.format, Format::Text { mode } if *mode != TextMode::Lines)
        {
            c.whitespace = Whitespace::Trim;
        }
        Ok(c)
    }

    fn new(p: &Preprocess) -> Result<Self, DataError> {
        let compile = |what: &str, pat: &str| {
            Regex::new(pat).map_err(|e| {
                DataError::config(format!("{what} `{pat}` is not a valid regex: {e}"))
                    .with_help("the syntax is Rust's `regex` crate (like RE2: no look-around)")
            })
        };
        let strip = p
            .strip
            .iter()
            .map(|s| compile("strip pattern", s))
            .collect::<Result<_, _>>()?;
        let label = match &p.label_regex {
            Some(pat) => {
                let re = compile("label_regex", pat)?;
                if re.captures_len() < 2 {
                    return Err(DataError::config(format!(
                        "label_regex `{pat}` has no capture group"
                    ))
                    .with_help("wrap the part that is the label in (…), e.g. `^(.*)-[^-]*$`"));
                }
                Some(re)
            }
            None => None,
        };
        Ok(Self {
            strip,
            label,
            max_rows: p.max_rows,
            counts_rows: false,
            lowercase: p.lowercase,
            whitespace: if p.collapse_whitespace {
                Whitespace::Collapse
            } else {
                Whitespace::Keep
            },
        })
    }

    /// The strip patterns' matches removed (nothing else).
    fn strip_only(&self, s: &str) -> String {
        let mut out = s.to_string();
        for re in &self.strip {
            out = re.replace_all(&out, "").into_owned();
        }
        out
    }

    /// A plain text (or pair) preprocessed: strip patterns, whitespace, lowercase.
    fn plain(&self, s: &str) -> String {
        let out = self.strip_only(s);
        let out = match self.whitespace {
            Whitespace::Collapse => out.split_whitespace().collect::<Vec<_>>().join(" "),
            Whitespace::Trim => out.trim().to_string(),
            Whitespace::Keep if self.strip.is_empty() => out,
            Whitespace::Keep => out.trim().to_string(),
        };
        if self.lowercase {
            out.to_lowercase()
        } else {
            out
        }
    }

    /// Preprocess one record; a bad one is an error at its file and line (or row).
    pub(crate) fn apply(&self, rec: Record) -> Result<Record, DataError> {
        let (file, line) = (rec.origin.file.clone(), rec.origin.line);
        self.apply_inner(rec).map_err(|e| {
            if self.counts_rows {
                e.at_row(&file, line)
            } else {
                e.at(&file, line)
            }
        })
    }

    fn apply_inner(&self, mut rec: Record) -> Result<Record, DataError> {
        // Supervised records: the strip patterns only; their whitespace is kept as written
        // (a completion's leading space or a message's line breaks are what the model learns)
        // and they are not lowercased.
        match &mut rec.turns {
            None => {
                rec.text = self.plain(&rec.text);
                rec.text_pair = rec.text_pair.as_deref().map(|t| self.plain(t));
            }
            Some(_) if self.strip.is_empty() => {}
            Some(Turns::PromptCompletion { prompt, completion }) => {
                *prompt = self.strip_only(prompt);
                *completion = self.strip_only(completion);
            }
            Some(Turns::Chat(messages)) => {
                for m in messages {
                    m.content = self.strip_only(&m.content);
                }
            }
        }
        match &rec.turns {
            // An image's class record has no text: the image is what it holds.
            None if rec.text.trim().is_empty() && rec.image.is_none() => {
                return Err(DataError::new(ErrorKind::BadRow, "the text is empty")
                    .with_help("remove the row, or check the strip patterns"));
            }
            Some(Turns::PromptCompletion { completion, .. }) if completion.trim().is_empty() => {
                return Err(DataError::new(ErrorKind::BadRow, "the completion is empty")
                    .with_help("a prompt/completion record needs an answer to learn; remove the row, or check the strip patterns"));
            }
            Some(Turns::Chat(messages))
                if messages
                    .iter()
                    .filter(|m| m.role == "assistant")
                    .all(|m| m.content.trim().is_empty()) =>
            {
                return Err(DataError::new(
                    ErrorKind::BadRow,
                    "every assistant message of the conversation is empty",
                )
                .with_help("a conversation needs an answer to learn; remove the row, or check the strip patterns"));
            }
            _ => {}
        }
        // With whitespace normalisation on, a label taken as is loses its surrounding spaces
        // (` pos` in `text, pos` is `pos`).
        if self.label.is_none() && self.whitespace != Whitespace::Keep {
            rec.label = rec.label.map(|l| l.trim().to_string());
        }
        if let (Some(re), Some(label)) = (&self.label, rec.label.as_deref()) {
            let Some(m) = re.captures(label).and_then(|c| c.get(1)) else {
                let msg = format!(
                    "label `{label}` does not match label_regex `{}`",
                    re.as_str()
                );
                return Err(DataError::new(ErrorKind::BadRow, msg)
                    .with_help("fix the label, loosen the regex, or use on_error = skip"));
            };
            rec.label = Some(m.as_str().to_string());
        }
        Ok(rec)
    }
}

/// Records after preprocessing, with the error policy applied. Under `stop` the first bad row is
/// yielded as an error and the stream ends; under `skip` bad rows are counted in [`Self::report`].
/// Errors that are not about one row (unreadable file, bad header) always stop.
pub struct DatasetReader {
    source: Box<dyn RecordSource>,
    prep: Compiled,
    policy: OnError,
    max_skipped: Option<usize>,
    report: SkipReport,
    good: usize,
    done: bool,
}

impl DatasetReader {
    /// Open a spec's files, relative to `base` (normally the pipeline file's folder).
    pub fn open(spec: &DatasetSpec, base: &Path) -> Result<Self, DataError> {
        let prep = Compiled::for_spec(spec)?;
        let source = open_source(spec, base)?;
        Ok(Self::with_source(source, prep, spec.on_error).with_max_skipped(spec.max_skipped))
    }

    /// Apply preprocessing and a policy to any source, e.g. a plugin loader's records.
    pub fn from_source(
        source: Box<dyn RecordSource>,
        preprocess: &Preprocess,
        policy: OnError,
    ) -> Result<Self, DataError> {
        Ok(Self::with_source(
            source,
            Compiled::new(preprocess)?,
            policy,
        ))
    }

    fn with_source(source: Box<dyn RecordSource>, prep: Compiled, policy: OnError) -> Self {
        Self {
            source,
            prep,
            policy,
            max_skipped: None,
            report: SkipReport::default(),
            good: 0,
            done: false,
        }
    }

    /// Under `on_error = skip`, stop with an error once more than `max` rows were skipped (see
    /// `DatasetSpec::max_skipped`; [`Self::open`] takes it from the spec).
    pub fn with_max_skipped(mut self, max: Option<usize>) -> Self {
        self.max_skipped = max;
        self
    }

    pub fn report(&self) -> &SkipReport {
        &self.report
    }
}

/// Row errors can be skipped; file-level errors (no line) cannot.
pub(crate) fn is_row_error(e: &DataError) -> bool {
    e.line.is_some() && matches!(e.kind, ErrorKind::BadRow | ErrorKind::MissingField)
}

impl Iterator for DatasetReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.prep.max_rows.is_some_and(|m| self.good >= m) {
            return None;
        }
        loop {
            let item = self.source.next()?.and_then(|r| self.prep.apply(r));
            match judge(item, self.policy, self.max_skipped, &mut self.report) {
                Ok(Some(rec)) => {
                    self.good += 1;
                    return Some(Ok(rec));
                }
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The error policy on one preprocessed item (a record, or what a record became, e.g. an
/// encoded example): `Ok(Some)` a good item, `Ok(None)` a bad row skipped (and counted in
/// `report`), `Err` an error that ends the stream.
/// Under `skip`, more than `max_skipped` skipped rows is an error naming the last one.
pub fn judge<T>(
    item: Result<T, DataError>,
    policy: OnError,
    max_skipped: Option<usize>,
    report: &mut SkipReport,
) -> Result<Option<T>, DataError> {
    match item {
        Ok(rec) => Ok(Some(rec)),
        Err(e) if policy == OnError::Skip && is_row_error(&e) => {
            report.skipped += 1;
            if report.first_reasons.len() < KEPT_REASONS {
                report.first_reasons.push(e.to_string());
            }
            if let Some(max) = max_skipped.filter(|&m| report.skipped > m) {
                let last = match e.location() {
                    Some(loc) => format!("{loc}: {}", e.message),
                    None => e.message.clone(),
                };
                return Err(DataError::new(
                    ErrorKind::BadRow,
                    format!("more than {max} bad rows were skipped; the last: {last}"),
                )
                .with_help(
                    "fix the data, or raise max_skipped (the skipped rows' reasons are in the \
                     warnings)",
                ));
            }
            Ok(None)
        }
        Err(mut e) => {
            if is_row_error(&e) && e.help.is_some() {
                let help = e.help.take().unwrap_or_default();
                e.help = Some(format!(
                    "{help} (`on_bad_row = skip` in the dataset block skips bad rows and counts them)"
                ));
            }
            Err(e)
        }
    }
}

/// A dataset held in memory (raw text only: tokenisation happens per batch).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub records: Vec<Record>,
    pub skipped: SkipReport,
}

/// Read a whole dataset. An empty result is an error that says why (and what was skipped).
pub fn load(spec: &DatasetSpec, base: &Path) -> Result<Loaded, DataError> {
    let mut reader = DatasetReader::open(spec, base)?;
    let records = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    finish(records, reader.report().clone(), &spec.files.join(", "))
}

/// Collect any reader, with the same empty-dataset check as [`load`].
pub fn collect(mut reader: DatasetReader, name: &str) -> Result<Loaded, DataError> {
    let records = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    finish(records, reader.report().clone(), name)
}

fn finish(records: Vec<Record>, skipped: SkipReport, name: &str) -> Result<Loaded, DataError> {
    if records.is_empty() {
        return Err(empty_dataset(&skipped, name));
    }
    Ok(Loaded { records, skipped })
}

/// The error for a dataset left with no records, saying why (and what was skipped).
pub(crate) fn empty_dataset(skipped: &SkipReport, name: &str) -> DataError {
    let help = if skipped.skipped > 0 {
        format!(
            "all {} rows were skipped as bad; the first: {}",
            skipped.skipped,
            skipped.first_reasons.first().map_or("", String::as_str)
        )
    } else {
        "the files hold no records: check the format and text mode".to_string()
    };
    DataError::new(ErrorKind::Empty, format!("dataset `{name}` is empty")).with_help(help)
}
