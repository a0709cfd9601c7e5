//! The built-in loaders and the function that opens the right one for a spec.

mod csv;
mod files;
mod folder;
mod jsonl;
mod lines;
mod text;

use std::path::Path;

pub use self::csv::CsvSource;
pub use files::expand;
pub use folder::FolderSource;
pub use jsonl::JsonlSource;
pub use text::TextSource;

use crate::error::DataError;
use crate::record::RecordSource;
use crate::spec::{DatasetSpec, Format};

/// Open the spec's files (relative to `base`) as one stream of raw records, file after file.
/// Files are opened lazily, so a long glob costs one open file at a time.
pub fn open_source(spec: &DatasetSpec, base: &Path) -> Result<Box<dyn RecordSource>, DataError> {
    let want_dirs = spec.format == Format::FolderPerClass;
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
        Format::Jsonl => Box::new(JsonlSource::open(path, spec.fields.clone())?),
        Format::Csv { delimiter } => Box::new(CsvSource::open(path, *delimiter, &spec.fields)?),
        Format::Text { mode } => {
            Box::new(TextSource::open(path, mode.clone(), spec.label_from_stem)?)
        }
        Format::FolderPerClass => Box::new(FolderSource::open(path)?),
    })
}
