//! Random access to a dataset by record number, without holding its texts: one scan of the files
//! keeps, per good record, only where it starts (16 bytes), and [`RecordStore::get`] seeks there
//! and parses that one record with the same loader code as the sequential [`crate::DatasetReader`]
//! (so fields, preprocessing and errors are identical). This is what lets a shuffled epoch stream
//! from disk in an exact, resumable order.
//!
//! Memory: 16 bytes per record, plus (Parquet) the one decoded row group being read and
//! (folder per class) the path of each file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{DataError, ErrorKind};
use crate::loaders::{FolderSource, OneFile, ParquetRows, expand};
use crate::reader::{Compiled, SkipReport, empty_dataset, judge};
use crate::record::Record;
use crate::spec::{DatasetSpec, Format};

/// Where one record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    /// Byte offset of its first line; the 0-based row for Parquet; 0 for a folder file.
    offset: u64,
    /// Its 1-based first line (row for Parquet).
    line: u32,
    /// Index into the store's file table.
    file: u32,
}

// The index's whole cost per record.
const _: () = assert!(std::mem::size_of::<Loc>() == 16);

/// A file of an indexed dataset; `class` is the label of a folder-per-class file.
#[derive(Debug)]
struct IndexedFile {
    path: PathBuf,
    class: Option<String>,
}

/// What all subsets of one scan share.
#[derive(Debug)]
struct Shared {
    spec: DatasetSpec,
    prep: Compiled,
    files: Vec<IndexedFile>,
}

/// The open Parquet file of the last `get`, with its decoded row group.
type ParquetCache = Mutex<Option<(u32, Box<ParquetRows>)>>;

enum Inner {
    Indexed {
        shared: Arc<Shared>,
        locs: Vec<Loc>,
        parquet: ParquetCache,
    },
    Memory {
        records: Arc<Vec<Record>>,
        /// Which of `records`, in order (all of them when `None`).
        pick: Option<Vec<usize>>,
    },
}

/// A dataset addressable by record number: either an index over the files (see the module
/// documentation) or records held in memory (for loader plugins, which cannot seek).
pub struct RecordStore {
    inner: Inner,
}

impl std::fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::Indexed { .. } => "indexed",
            Inner::Memory { .. } => "in memory",
        };
        write!(f, "RecordStore({} records, {kind})", self.len())
    }
}

impl RecordStore {
    /// Index a spec's files (relative to `base`) in one scan. Preprocessing, the bad-row policy
    /// and `max_rows` apply as in [`crate::DatasetReader`]: skipped rows are counted in the
    /// report and not indexed. An empty result is an error, as for [`crate::load`].
    pub fn scan(spec: &DatasetSpec, base: &Path) -> Result<(Self, SkipReport), DataError> {
        let prep = Compiled::for_spec(spec)?;
        let folders = spec.format.reads_folders();
        let images = spec.format == Format::ImageFolderPerClass;
        let paths = expand(&spec.files, base, folders)?;
        let mut files = Vec::new();
        let mut locs = Vec::new();
        let mut report = SkipReport::default();
        let full = |locs: &Vec<Loc>| prep.max_rows.is_some_and(|m| locs.len() >= m);
        let file_id = |files: &Vec<IndexedFile>, path: &Path| {
            u32::try_from(files.len()).map_err(|_| {
                DataError::config("the dataset has more than 4 billion files").in_file(path)
            })
        };
        'files: for path in paths {
            if folders {
                let listed = if images {
                    FolderSource::list_images(&path)?
                } else {
                    FolderSource::list(&path)?
                };
                for (class, file) in listed {
                    if full(&locs) {
                        break 'files;
                    }
                    let id = file_id(&files, &file)?;
                    let raw = if images {
                        Ok(FolderSource::image_one(&class, &file))
                    } else {
                        FolderSource::read_one(&class, &file)
                    };
                    let item = raw.and_then(|r| prep.apply(r));
                    if judge(item, spec.on_error, spec.max_skipped, &mut report)?.is_some() {
                        locs.push(Loc {
                            offset: 0,
                            line: 1,
                            file: id,
                        });
                    }
                    files.push(IndexedFile {
                        path: file,
                        class: Some(class),
                    });
                }
                continue;
            }
            let id = file_id(&files, &path)?;
            let mut source = OneFile::open_at(spec, &path, 0, 1)?;
            while !full(&locs) {
                let Some(item) = source.next() else { break };
                let item = item.and_then(|r| prep.apply(r));
                if let Some(rec) = judge(item, spec.on_error, spec.max_skipped, &mut report)? {
                    let line = u32::try_from(rec.origin.line).map_err(|_| {
                        DataError::new(
                            ErrorKind::Config,
                            "the file has more than 4 billion lines (or rows)",
                        )
                        .in_file(&path)
                        .with_help("split it into several files")
                    })?;
                    locs.push(Loc {
                        offset: source.last_start(),
                        line,
                        file: id,
                    });
                }
            }
            files.push(IndexedFile { path, class: None });
            if full(&locs) {
                break;
            }
        }
        if locs.is_empty() {
            return Err(empty_dataset(&report, &spec.files.join(", ")));
        }
        locs.shrink_to_fit();
        let shared = Arc::new(Shared {
            spec: spec.clone(),
            prep,
            files,
        });
        Ok((
            Self {
                inner: Inner::Indexed {
                    shared,
                    locs,
                    parquet: Mutex::new(None),
                },
            },
            report,
        ))
    }

    /// Records already in memory (e.g. from a loader plugin).
    pub fn in_memory(records: Vec<Record>) -> Self {
        Self {
            inner: Inner::Memory {
                records: Arc::new(records),
                pick: None,
            },
        }
    }

    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Indexed { locs, .. } => locs.len(),
            Inner::Memory { records, pick } => pick.as_ref().map_or(records.len(), Vec::len),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `i` (0-based), read and preprocessed as the sequential reader does. An error here
    /// means the files changed since the scan (or became unreadable).
    pub fn get(&self, i: usize) -> Result<Record, DataError> {
        let out_of_range = || {
            DataError::config(format!(
                "record {i} is past the end of the dataset ({} records)",
                self.len()
            ))
        };
        let (shared, loc, parquet) = match &self.inner {
            Inner::Memory { records, pick } => {
                let j = match pick {
                    Some(p) => *p.get(i).ok_or_else(out_of_range)?,
                    None => i,
                };
                return records.get(j).cloned().ok_or_else(out_of_range);
            }
            Inner::Indexed {
                shared,
                locs,
                parquet,
            } => (shared, *locs.get(i).ok_or_else(out_of_range)?, parquet),
        };
        let file = &shared.files[loc.file as usize];
        let raw = match (&shared.spec.format, &file.class) {
            (Format::FolderPerClass, class) => {
                FolderSource::read_one(class.as_deref().unwrap_or_default(), &file.path)
            }
            (Format::ImageFolderPerClass, class) => Ok(FolderSource::image_one(
                class.as_deref().unwrap_or_default(),
                &file.path,
            )),
            (Format::Parquet, _) => {
                let mut cache = parquet.lock().unwrap_or_else(|p| p.into_inner());
                if cache.as_ref().map(|(id, _)| *id) != Some(loc.file) {
                    *cache = None;
                    *cache = Some((
                        loc.file,
                        Box::new(ParquetRows::open(&file.path, &shared.spec.fields)?),
                    ));
                }
                match cache.as_mut() {
                    Some((_, rows)) => rows.get(loc.offset),
                    None => Err(DataError::config("no Parquet file is open")),
                }
            }
            _ => OneFile::open_at(&shared.spec, &file.path, loc.offset, u64::from(loc.line))?
                .next()
                .unwrap_or_else(|| {
                    Err(DataError::new(
                        ErrorKind::Io,
                        format!("no record at line {} any more", loc.line),
                    )
                    .in_file(&file.path)
                    .with_help("the file changed since the dataset was indexed; index it again"))
                }),
        };
        shared.prep.apply(raw?)
    }

    /// The records at `indices` (in that order) as a store of their own, e.g. a split. Indexed
    /// stores share their file table; only the 16-byte locations are copied.
    pub fn subset(&self, indices: &[usize]) -> Result<Self, DataError> {
        let bad = |i: usize| {
            DataError::config(format!(
                "subset index {i} is past the end of the dataset ({} records)",
                self.len()
            ))
        };
        let inner = match &self.inner {
            Inner::Indexed { shared, locs, .. } => Inner::Indexed {
                shared: shared.clone(),
                locs: indices
                    .iter()
                    .map(|&i| locs.get(i).copied().ok_or_else(|| bad(i)))
                    .collect::<Result<_, _>>()?,
                parquet: Mutex::new(None),
            },
            Inner::Memory { records, pick } => Inner::Memory {
                records: records.clone(),
                pick: Some(
                    indices
                        .iter()
                        .map(|&i| match pick {
                            Some(p) => p.get(i).copied().ok_or_else(|| bad(i)),
                            None if i < records.len() => Ok(i),
                            None => Err(bad(i)),
                        })
                        .collect::<Result<_, _>>()?,
                ),
            },
        };
        Ok(Self { inner })
    }
}
