//! String labels → ids: sorted (so the ids do not depend on row order) and serialisable, so a
//! run saves the vocabulary next to its adapter and inference maps ids back to names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, ErrorKind};
use crate::record::Record;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelVocab {
    /// Label names; the id of a label is its index.
    labels: Vec<String>,
    #[serde(skip)]
    index: BTreeMap<String, usize>,
}

impl LabelVocab {
    pub fn new(labels: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let set: BTreeSet<String> = labels.into_iter().map(Into::into).collect();
        Self::from_sorted(set.into_iter().collect())
    }

    fn from_sorted(labels: Vec<String>) -> Self {
        let index = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i))
            .collect();
        Self { labels, index }
    }

    /// The vocabulary of a training split. Every record must have a label.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a Record>,
    ) -> Result<Self, DataError> {
        let mut set = BTreeSet::new();
        for r in records {
            set.insert(label_of(r)?.to_string());
        }
        if set.is_empty() {
            return Err(
                DataError::new(ErrorKind::Empty, "no labels: the training split is empty")
                    .with_help("a classification task needs labelled training rows"),
            );
        }
        Ok(Self::from_sorted(set.into_iter().collect()))
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn id(&self, label: &str) -> Option<usize> {
        self.index.get(label).copied()
    }

    pub fn name(&self, id: usize) -> Option<&str> {
        self.labels.get(id).map(String::as_str)
    }

    /// The id of a record's label, or an error at the record naming the known labels.
    pub fn encode(&self, r: &Record) -> Result<i64, DataError> {
        let label = label_of(r)?;
        self.id(label).map(|i| i as i64).ok_or_else(|| {
            r.error(
                DataError::new(ErrorKind::UnknownLabel, format!("unknown label `{label}`"))
                    .with_help(self.known_help(label)),
            )
        })
    }

    /// Check an evaluation split before training starts: every label must be known. The error
    /// names each unknown label with its count and first location.
    pub fn check_split(&self, split: &str, records: &[Record]) -> Result<(), DataError> {
        let mut unknown: BTreeMap<&str, (usize, &Record)> = BTreeMap::new();
        for r in records {
            let label = label_of(r)?;
            if self.id(label).is_none() {
                unknown.entry(label).or_insert((0, r)).0 += 1;
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        let list = unknown
            .iter()
            .map(|(l, (n, r))| format!("`{l}` ({n} rows, first at {})", r.origin))
            .collect::<Vec<_>>()
            .join(", ");
        let first = unknown.keys().next().copied().unwrap_or_default();
        Err(DataError::new(
            ErrorKind::UnknownLabel,
            format!(
                "split `{split}` has {} label(s) that training never saw: {list}",
                unknown.len()
            ),
        )
        .with_help(format!(
            "{}; remove those rows or add them to the training data",
            self.known_help(first)
        )))
    }

    fn known_help(&self, label: &str) -> String {
        crate::error::suggest_from("labels", label, &self.labels)
    }

    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| DataError::config(format!("cannot serialise labels: {e}")))?;
        std::fs::write(path, text).map_err(|e| DataError::io(path, &e))
    }

    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, &e))?;
        let raw: LabelVocab = serde_json::from_str(&text).map_err(|e| {
            DataError::config(format!("not a label vocabulary: {e}"))
                .in_file(path)
                .with_help("the file is written by an ardpipe run as {\"labels\": [...]}")
        })?;
        let mut sorted = raw.labels.clone();
        sorted.sort();
        sorted.dedup();
        if sorted != raw.labels {
            return Err(DataError::config("labels are not sorted and unique")
                .in_file(path)
                .with_help("the ids would not match the run that wrote it; do not edit the file"));
        }
        Ok(Self::from_sorted(raw.labels))
    }
}

fn label_of(r: &Record) -> Result<&str, DataError> {
    r.label.as_deref().ok_or_else(|| {
        r.error(
            DataError::new(ErrorKind::MissingField, "the row has no label")
                .with_help("map a label field (fields.label) or use label_from_stem"),
        )
    })
}
