//! The built-in loaders and the function that opens the right one for a spec.

mod csv;
mod fields;
mod files;
mod folder;
mod jsonl;
mod lines;
mod parquet;
mod text;

use std::path::Path;

pub use self::csv::CsvSource;
pub use fields::ROLES;
pub use files::expand;
pub use folder::{FolderSource, IMAGE_EXTENSIONS, is_image_file};
pub use jsonl::JsonlSource;
pub use parquet::{ParquetRows, ParquetSource};
pub use text::TextSource;

use crate::error::DataError;
use crate::record::{Record, RecordSource};
use crate::spec::{DatasetSpec, Format};

/// Open the spec's files (relative to `base`) as one stream of raw records, file after file.
/// Files are opened lazily, so a long glob costs one open file at a time.
pub fn open_source(spec: &DatasetSpec, base: &Path) -> Result<Box<dyn RecordSource>, DataError> {
    let want_dirs = spec.format.reads_folders();
    let paths = expand(&spec.files, base, want_dirs)?;
    let spec = spec.clone();
    // Validate the first file eagerly so that a wrong column name is an error at open time.
    let mut rest = paths.into_iter();
    let Some(first_path) = rest.next() else {
        return Err(DataError::config("the dataset names no files")
            .with_help("give at least one path or glob"));
    };
    let mut first = Some(open_one(&spec, &first_path)?);
    let mut current: Option<Box<dyn RecordSource>> = None;
    Ok(Box::new(std::iter::from_fn(move || {
        loop {
            if current.is_none() {
                current = match first.take() {
                    Some(s) => Some(s),
                    None => match open_one(&spec, &rest.next()?) {
                        Ok(s) => Some(s),
                        Err(e) => return Some(Err(e)),
                    },
                };
            }
            match current.as_mut()?.next() {
                Some(item) => return Some(item),
                None => current = None,
            }
        }
    })))
}

fn open_one(spec: &DatasetSpec, path: &Path) -> Result<Box<dyn RecordSource>, DataError> {
    Ok(match &spec.format {
        Format::FolderPerClass => Box::new(FolderSource::open(path)?),
        Format::ImageFolderPerClass => Box::new(FolderSource::open_images(path)?),
        _ => Box::new(OneFile::open_at(spec, path, 0, 1)?),
    })
}

/// The loader of one data file (every format but the folder ones), which can say where its
/// last record started: the byte offset of its first line, or (Parquet) its 0-based row. Opened at
/// such a position with that record's 1-based line (row), it reads that record next.
pub enum OneFile {
    Jsonl(JsonlSource),
    Csv(CsvSource),
    Text(TextSource),
    Parquet(ParquetSource),
}

impl OneFile {
    /// Open `path` at byte `offset`, the start of 1-based line `line` (0 and 1: the beginning).
    /// Parquet files always open at the beginning; random access to them is [`ParquetRows`].
    pub fn open_at(
        spec: &DatasetSpec,
        path: &Path,
        offset: u64,
        line: u64,
    ) -> Result<Self, DataError> {
        Ok(match &spec.format {
            Format::Jsonl => Self::Jsonl(JsonlSource::open_at(
                path,
                spec.fields.clone(),
                offset,
                line,
            )?),
            Format::Csv { delimiter, header } => Self::Csv(CsvSource::open_at(
                path,
                *delimiter,
                *header,
                &spec.fields,
                offset,
                line,
            )?),
            Format::Text { mode } => Self::Text(TextSource::open_at(
                path,
                mode.clone(),
                spec.label_from_stem,
                offset,
                line,
            )?),
            Format::Parquet => Self::Parquet(ParquetSource::open(path, &spec.fields)?),
            Format::FolderPerClass | Format::ImageFolderPerClass => {
                return Err(DataError::config(
                    "folder_per_class and image_folder_per_class read folders, not single files",
                ));
            }
        })
    }

    /// Where the last record (or row error) returned starts.
    pub fn last_start(&self) -> u64 {
        match self {
            Self::Jsonl(s) => s.last_start(),
            Self::Csv(s) => s.last_start(),
            Self::Text(s) => s.last_start(),
            Self::Parquet(s) => s.last_start(),
        }
    }
}

impl Iterator for OneFile {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Jsonl(s) => s.next(),
            Self::Csv(s) => s.next(),
            Self::Text(s) => s.next(),
            Self::Parquet(s) => s.next(),
        }
    }
}
