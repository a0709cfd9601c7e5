//! One error type for the whole data crate: what went wrong, where (file and line when a row is
//! to blame) and how to fix it. The help text is part of `Display` so that it survives any
//! error-wrapping the caller does (anyhow, miette) and always reaches the user.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of problem, so callers and tests can match on it without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be opened or read.
    Io,
    /// A row is malformed (bad JSON, bad CSV quoting, wrong field type, invalid UTF-8, …).
    BadRow,
    /// A field or column that the mapping names is not in the data.
    MissingField,
    /// The dataset (after filtering) has no rows.
    Empty,
    /// An evaluation split has labels that training never saw.
    UnknownLabel,
    /// The dataset or tokenizer configuration itself is wrong (bad regex, bad option, …).
    Config,
    /// The tokenizer failed to load, encode or decode.
    Tokenizer,
}

/// A data error with its location and a hint for the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    pub kind: ErrorKind,
    pub message: String,
    pub file: Option<PathBuf>,
    /// 1-based line of the offending row, when one row is to blame.
    pub line: Option<u64>,
    /// `line` counts the rows of a table (Parquet), not text lines: shown as `file: row N`.
    pub counts_rows: bool,
    pub help: Option<String>,
}

impl DataError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            file: None,
            line: None,
            counts_rows: false,
            help: None,
        }
    }

    pub fn in_file(mut self, file: impl AsRef<Path>) -> Self {
        self.file = Some(file.as_ref().to_path_buf());
        self
    }

    pub fn at(mut self, file: impl AsRef<Path>, line: u64) -> Self {
        self.file = Some(file.as_ref().to_path_buf());
        self.line = Some(line);
        self.counts_rows = false;
        self
    }

    /// Located at the 1-based `row` of a table file (Parquet).
    pub fn at_row(self, file: impl AsRef<Path>, row: u64) -> Self {
        let mut e = self.at(file, row);
        e.counts_rows = true;
        e
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn io(file: &Path, err: &std::io::Error) -> Self {
        let help = match err.kind() {
            std::io::ErrorKind::NotFound => {
                "check the path (relative paths are resolved from the \
                 pipeline file's directory)"
            }
            std::io::ErrorKind::PermissionDenied => "make the file readable by this user",
            _ => "check that the file exists and is readable",
        };
        Self::new(ErrorKind::Io, format!("cannot read: {err}"))
            .in_file(file)
            .with_help(help)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub fn tokenizer(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Tokenizer, message)
    }

    /// `file:line` (or just the file) for messages and reports.
    pub fn location(&self) -> Option<String> {
        match (&self.file, self.line) {
            (Some(f), Some(r)) if self.counts_rows => Some(format!("{}: row {r}", f.display())),
            (Some(f), Some(l)) => Some(format!("{}:{l}", f.display())),
            (Some(f), None) => Some(f.display().to_string()),
            (None, _) => None,
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.location() {
            write!(f, "{loc}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DataError {}

/// The candidate closest to `wanted` by edit distance, if it is close enough to be a likely typo.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted_lc = wanted.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (levenshtein(&wanted_lc, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (wanted.chars().count().max(c.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance with adjacent transpositions (optimal string alignment): "txet" is one edit
/// from "text", as a typo should be.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// "did you mean `x`?" plus the list of what is available, for missing fields and columns.
pub fn suggest_from(what: &str, wanted: &str, available: &[String]) -> String {
    let list = available
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(wanted, available.iter().map(String::as_str)) {
        Some(c) => format!("did you mean `{c}`? available {what}: {list}"),
        None if available.is_empty() => format!("there are no {what} at all"),
        None => format!("available {what}: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_location_and_help() {
        let e = DataError::new(ErrorKind::BadRow, "bad JSON")
            .at("data/x.jsonl", 7)
            .with_help("fix the row");
        assert_eq!(
            e.to_string(),
            "data/x.jsonl:7: bad JSON\n  help: fix the row"
        );
    }

    #[test]
    fn closest_finds_typos_only() {
        let cands = ["text", "source_id", "label"];
        assert_eq!(closest("txet", cands), Some("text"));
        assert_eq!(closest("sourceid", cands), Some("source_id"));
        assert_eq!(closest("zzzzzzzz", cands), None);
    }
}
