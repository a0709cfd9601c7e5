//! The pipeline's training dataset as engine/data reads it: the `dataset` block mapped onto an
//! engine/data [`DatasetSpec`], scanned once into a [`RecordStore`] (an index of where each good
//! record starts, not the texts), and split into training and evaluation stores.

use std::path::PathBuf;

use ardpipe_data::{DatasetSpec, FieldMap, Format, OnError, RecordStore, TextMode, fraction_split};
use ardpipe_dsl::pipeline as p;

use super::TrainError;

/// The training and evaluation examples of the pipeline's training dataset.
pub struct DataSplits {
    pub dataset: p::Dataset,
    pub train: RecordStore,
    pub eval: RecordStore,
    /// `jsonl`, `csv`, `text`, `parquet`, `folders`, `image_folders` or `plugin`.
    pub format: String,
    /// Every file or glob read, the split files included.
    pub files: Vec<String>,
    /// What an example is: `text`, `text_pair`, `prompt_completion`, `chat` or
    /// `image_question`.
    pub records: String,
    /// Rows the bad-row policy skipped.
    pub skipped: usize,
}

/// Read the training dataset and carve (or read) the evaluation split `evaluate` asks for.
pub fn read_splits(pipeline: &p::Pipeline) -> Result<DataSplits, TrainError> {
    let ds = crate::plan::pipeline_dataset(pipeline).ok_or_else(|| {
        TrainError::Other(format!(
            "train.dataset `{}` is not declared",
            pipeline.train.dataset
        ))
    })?;
    let eval_split = pipeline
        .evaluate
        .as_ref()
        .map(|e| e.split)
        .unwrap_or(p::SplitName::Validation);
    let mut files: Vec<String> = ds
        .source
        .paths()
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let mut skipped = 0;
    let all = read(pipeline, ds, ds.source.paths(), &mut skipped)?;
    let fraction = |part: &Option<p::SplitPart>| match part {
        Some(p::SplitPart::Fraction { fraction }) => *fraction,
        _ => 0.0,
    };
    let split = fraction_split(
        all.len(),
        fraction(&ds.split.validation),
        fraction(&ds.split.test),
        ds.split.seed,
        ds.split.contiguous as usize,
    )
    .map_err(|e| TrainError::Other(format!("dataset `{}`: {e}", ds.name)))?;
    let train = all.subset(&split.train)?;
    let (part, carved) = match eval_split {
        p::SplitName::Validation => (&ds.split.validation, &split.validation),
        p::SplitName::Test => (&ds.split.test, &split.test),
        p::SplitName::Train => (&None, &split.train),
    };
    let eval = match part {
        Some(p::SplitPart::File { paths }) => {
            files.extend(paths.iter().map(|f| f.display().to_string()));
            read(pipeline, ds, paths, &mut skipped)?
        }
        _ => all.subset(carved)?,
    };
    tracing::info!(
        "dataset `{}`: {} training and {} evaluation examples",
        ds.name,
        train.len(),
        eval.len()
    );
    let records = if ds.images() {
        "image_question"
    } else if ds.fields.messages.is_some() {
        "chat"
    } else if ds.fields.prompt.is_some() {
        "prompt_completion"
    } else if ds.fields.text_pair.is_some() {
        "text_pair"
    } else {
        "text"
    };
    Ok(DataSplits {
        dataset: ds.clone(),
        train,
        eval,
        format: format_name(&ds.source).into(),
        files,
        records: records.into(),
        skipped,
    })
}

fn format_name(s: &p::Source) -> &'static str {
    match s {
        p::Source::Jsonl { .. } => "jsonl",
        p::Source::Csv { .. } => "csv",
        p::Source::Text { .. } => "text",
        p::Source::Parquet { .. } => "parquet",
        p::Source::Folders { .. } => "folders",
        p::Source::ImageFolders { .. } => "image_folders",
        p::Source::Plugin { .. } => "plugin",
    }
}

/// One source (the dataset's files, or a split's) scanned into a store.
fn read(
    pipeline: &p::Pipeline,
    ds: &p::Dataset,
    paths: &[PathBuf],
    skipped: &mut usize,
) -> Result<RecordStore, TrainError> {
    let spec = spec(ds, paths)?;
    let (store, report) = match &ds.source {
        p::Source::Plugin {
            plugin, options, ..
        } => super::plugin_records::read(pipeline, ds, plugin, options, paths.first(), &spec)?,
        _ => RecordStore::scan(&spec, std::path::Path::new("/"))
            .map_err(|e| TrainError::Other(format!("dataset `{}`: {e}", ds.name)))?,
    };
    let store = match &ds.source {
        p::Source::ImageFolders {
            question, answer, ..
        } => class_questions(&store, question, answer)?,
        _ => store,
    };
    if report.skipped > 0 {
        tracing::warn!(
            "dataset `{}`: skipped {} bad rows, e.g. {}",
            ds.name,
            report.skipped,
            report.first_reasons.join("; ")
        );
    }
    *skipped += report.skipped;
    Ok(store)
}

/// An image folder's records as image questions: each image asked `question` and answered
/// `answer` with its class. This is the one place they get their turns, so everything that reads
/// the store (measuring, batches, the majority answer, `data preview`) sees them alike. A record
/// is a path, a class and the two texts, so the store holds them in memory; the images are read
/// only when encoded, where an unreadable one is a bad row under `on_bad_row`.
fn class_questions(
    store: &RecordStore,
    question: &str,
    answer: &str,
) -> Result<RecordStore, TrainError> {
    let records = (0..store.len())
        .map(|i| {
            let mut record = store.get(i)?;
            record.turns = Some(ardpipe_data::class_prompt(&record, question, answer)?);
            Ok(record)
        })
        .collect::<Result<Vec<_>, TrainError>>()?;
    Ok(RecordStore::in_memory(records))
}

/// The engine/data description of a dataset block reading `paths`.
pub fn spec(ds: &p::Dataset, paths: &[PathBuf]) -> Result<DatasetSpec, TrainError> {
    let format = match &ds.source {
        p::Source::Jsonl { .. } | p::Source::Plugin { .. } => Format::Jsonl,
        p::Source::Csv {
            delimiter, header, ..
        } => Format::Csv {
            delimiter: *delimiter,
            header: *header,
        },
        p::Source::Text { mode, .. } => Format::Text {
            mode: match mode {
                p::TextMode::Lines => TextMode::Lines,
                p::TextMode::Documents => TextMode::File,
                p::TextMode::Separator { line } => TextMode::Separator(line.clone()),
            },
        },
        p::Source::Parquet { .. } => Format::Parquet,
        p::Source::Folders { .. } => Format::FolderPerClass,
        p::Source::ImageFolders { .. } => Format::ImageFolderPerClass,
    };
    let f = &ds.fields;
    let mut spec = DatasetSpec::new(paths.iter().map(|p| p.display().to_string()), format);
    spec.fields = FieldMap {
        text: f.text.clone().unwrap_or_else(|| "text".into()),
        text_pair: f.text_pair.clone(),
        label: f.label.clone(),
        extra: Vec::new(),
        prompt: f.prompt.clone(),
        completion: f.completion.clone(),
        messages: f.messages.clone(),
        image: f.image.clone(),
    };
    // Text files are labelled by their stem (`hamlet.txt` → `hamlet`), as classes or as names.
    spec.label_from_stem = matches!(ds.source, p::Source::Text { .. });
    spec.preprocess.strip = ds.preprocess.strip.clone();
    spec.preprocess.label_regex = f.label_regex.clone();
    spec.preprocess.lowercase = ds.preprocess.lowercase;
    spec.preprocess.collapse_whitespace = true;
    spec.preprocess.max_rows = ds
        .max_rows
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    (spec.on_error, spec.max_skipped) = bad_row_policy(ds);
    Ok(spec)
}

/// The dataset's bad-row policy in engine/data's terms: stop or skip, and the most rows a skip
/// may drop.
pub fn bad_row_policy(ds: &p::Dataset) -> (OnError, Option<usize>) {
    match ds.on_bad_row {
        p::BadRowPolicy::Fail => (OnError::Stop, None),
        p::BadRowPolicy::Skip { max } => (
            OnError::Skip,
            max.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
        ),
    }
}
