//! What a Rust plugin author implements: [`Describe`] plus [`Loader`] or [`Metric`].

use std::collections::BTreeMap;

use crate::{OptionSpec, Options, PluginError};

/// Capability names a plugin may declare (free-form strings travel; these are the ones ardpipe reads).
pub mod capability {
    /// Loader: `size_hint` knows the number of records.
    pub const SIZE_HINT: &str = "size-hint";
    /// Loader: the same options and seed give the same records in the same order.
    pub const DETERMINISTIC: &str = "deterministic";
    /// Loader: records carry a label.
    pub const LABELS: &str = "labels";
    /// Loader: records carry a second text (`text_pair`).
    pub const TEXT_PAIR: &str = "text-pair";
    /// Metric: accepts f32 logits (`[.., classes]`).
    pub const LOGITS: &str = "logits";
    /// Metric: accepts i64 class or token ids.
    pub const TOKEN_IDS: &str = "token-ids";
}

/// Who the plugin is; shown by `ardpipe plugin inspect` and in run manifests.
pub trait Describe {
    /// Short name used in pipelines and error messages, e.g. `fortunes`.
    const NAME: &'static str;
    /// The plugin's own version (use `env!("CARGO_PKG_VERSION")`).
    const VERSION: &'static str;
    const DESCRIPTION: &'static str = "";
    /// See [`capability`].
    const CAPABILITIES: &'static [&'static str] = &[];
    /// Every option the plugin accepts; others are refused before `open`/`create` runs.
    const OPTIONS: &'static [OptionSpec] = &[];
}

/// One record a loader produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub text: String,
    pub text_pair: Option<String>,
    pub label: Option<String>,
    /// Anything else worth keeping (origin file and line, ids, …).
    pub extra: BTreeMap<String, String>,
}

impl Record {
    pub fn new(text: impl Into<String>) -> Self {
        Record {
            text: text.into(),
            ..Record::default()
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_pair(mut self, text_pair: impl Into<String>) -> Self {
        self.text_pair = Some(text_pair.into());
        self
    }

    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// A data loader: opened with the pipeline block's options and the run's seed, then drained.
pub trait Loader: Describe + Send + Sized + 'static {
    /// Open the source. Options were already checked against [`Describe::OPTIONS`]; the same
    /// options and seed must give the same records in the same order.
    fn open(options: &Options, seed: u64) -> Result<Self, PluginError>;

    /// Up to `max_records` records; an empty vector ends the stream.
    fn next_batch(&mut self, max_records: usize) -> Result<Vec<Record>, PluginError>;

    /// Total number of records, when known without reading them all.
    fn size_hint(&self) -> Option<u64> {
        None
    }
}

/// A borrowed dense tensor (row-major) with its shape.
#[derive(Debug, Clone)]
pub struct TensorView<'a, T> {
    pub data: &'a [T],
    pub shape: Vec<usize>,
}

impl<'a, T> TensorView<'a, T> {
    /// Splits the data into rows along the last axis (e.g. one row of logits per example).
    pub fn rows(&self) -> std::slice::ChunksExact<'a, T> {
        let width = self.shape.last().copied().unwrap_or(1).max(1);
        self.data.chunks_exact(width)
    }
}

/// What a metric receives as predictions.
#[derive(Debug, Clone)]
pub enum Predictions<'a> {
    /// f32 scores, shape `[.., classes]`.
    Logits(TensorView<'a, f32>),
    /// i64 predicted class or token ids, the labels' shape.
    Ids(TensorView<'a, i64>),
}

/// One named result of a metric, e.g. `mcc = 0.52`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub name: String,
    pub value: f64,
}

impl Scalar {
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Scalar {
            name: name.into(),
            value,
        }
    }
}

/// A metric: created with options, updated batch by batch (never holding every logit), finished once.
pub trait Metric: Describe + Send + Sized + 'static {
    fn create(options: &Options) -> Result<Self, PluginError>;

    /// One batch. `labels` are i64 (with `-100` conventionally meaning "ignore this position").
    fn update(
        &mut self,
        predictions: Predictions<'_>,
        labels: TensorView<'_, i64>,
    ) -> Result<(), PluginError>;

    /// The named results over every batch seen.
    fn finish(&mut self) -> Result<Vec<Scalar>, PluginError>;
}
