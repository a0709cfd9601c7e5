//! String labels → ids: sorted, so the ids do not depend on row order (a run saves the names in
//! id order as `labels.json`, and inference maps ids back to names).

use std::collections::{BTreeMap, BTreeSet};

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

    fn known_help(&self, label: &str) -> String {
        crate::error::suggest_from("labels", label, &self.labels)
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
