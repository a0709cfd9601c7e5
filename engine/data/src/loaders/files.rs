//! Turning the spec's paths and globs into a sorted list of existing files.

use std::path::{Path, PathBuf};

use crate::error::{DataError, ErrorKind};

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expand `patterns` relative to `base`. Each glob must match something and each plain path must
/// exist; the order is the patterns' order, each glob's matches sorted (so runs are reproducible).
pub fn expand(
    patterns: &[String],
    base: &Path,
    want_dirs: bool,
) -> Result<Vec<PathBuf>, DataError> {
    if patterns.is_empty() {
        return Err(DataError::config("the dataset names no files")
            .with_help("give at least one path or glob, e.g. `data/*.jsonl`"));
    }
    let mut out = Vec::new();
    for pat in patterns {
        let full = base.join(pat);
        if is_glob(pat) {
            let text = full.to_string_lossy().into_owned();
            let paths = glob::glob(&text).map_err(|e| {
                DataError::config(format!("bad glob `{pat}`: {e}"))
                    .with_help("globs use `*`, `?` and `[abc]`; escape a literal `[` as `[[]`")
            })?;
            let mut matched: Vec<PathBuf> = paths
                .filter_map(Result::ok)
                .filter(|p| if want_dirs { p.is_dir() } else { p.is_file() })
                .collect();
            if matched.is_empty() {
                return Err(DataError::new(
                    ErrorKind::Empty,
                    format!(
                        "`{pat}` matches no {}",
                        if want_dirs { "folder" } else { "file" }
                    ),
                )
                .in_file(&full)
                .with_help(format!(
                    "check the pattern; it is resolved from {}",
                    base.display()
                )));
            }
            matched.sort();
            out.extend(matched);
        } else if let Some(what) = special_file(&full) {
            // Opening a FIFO waits for a writer, a device may never end: refuse them up front.
            return Err(DataError::config(format!(
                "{} is {what}, not a regular file",
                full.display()
            ))
            .with_help("copy the data to a file and give that path"));
        } else if !full.exists() {
            return Err(DataError::new(ErrorKind::Io, "no such file or folder")
                .in_file(&full)
                .with_help(format!(
                    "check the path; relative paths are resolved from {}",
                    base.display()
                )));
        } else if want_dirs != full.is_dir() {
            let (want, got) = if want_dirs {
                ("a folder", "a file")
            } else {
                ("a file", "a folder")
            };
            return Err(DataError::config(format!("expected {want}, found {got}"))
                .in_file(&full)
                .with_help(if want_dirs {
                    "folder_per_class takes the root folder whose subfolders are the classes"
                } else {
                    "name the files inside, e.g. `folder/*.txt`"
                }));
        } else {
            out.push(full);
        }
    }
    Ok(out)
}

/// What `path` is when it is neither a regular file nor a folder (after following links): "a FIFO",
/// "a device", "a socket".
pub fn special_file(path: &Path) -> Option<&'static str> {
    let kind = std::fs::metadata(path).ok()?.file_type();
    if kind.is_file() || kind.is_dir() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some("a FIFO");
        }
        if kind.is_char_device() || kind.is_block_device() {
            return Some("a device");
        }
        if kind.is_socket() {
            return Some("a socket");
        }
    }
    Some("a special file")
}

/// The file stem as a label (`hamlet_gut` for `texts/hamlet_gut.txt`).
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
