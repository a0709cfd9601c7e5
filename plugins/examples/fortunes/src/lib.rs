//! A loader plugin for the Debian `fortunes` format: each file is a category, items are separated
//! by lines holding only `%`. Every item becomes a record whose label is its file's name, so the
//! fortunes collection is a 43-class text classification set (or a language-modelling corpus).
//!
//! Options (the pipeline block's `options`):
//! - `path` (required): a fortune file, or a folder of them (the Debian layout,
//!   `/usr/share/games/fortunes`); `.dat` index files, `.u8` links and hidden files are skipped.
//! - `categories`: only these file names.
//! - `shuffle` (default true): shuffle the items with the run's seed (same seed, same order).
//! - `limit`: stop after this many records.

mod parse;
mod shuffle;

use std::path::{Path, PathBuf};

use ardpipe_plugin_sdk::{
    Describe, Loader, OptionSpec, Options, PluginError, Record, capability, log_info,
};

pub use parse::{Item, parse_fortunes};

pub struct FortunesLoader {
    items: Vec<Item>,
    next: usize,
}

impl Describe for FortunesLoader {
    const NAME: &'static str = "fortunes";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Debian fortunes files: items separated by `%` lines, label = file name";
    const CAPABILITIES: &'static [&'static str] = &[
        capability::SIZE_HINT,
        capability::DETERMINISTIC,
        capability::LABELS,
    ];
    const OPTIONS: &'static [OptionSpec] = &[
        OptionSpec::required(
            "path",
            "path",
            "a fortune file or a folder of them (e.g. /usr/share/games/fortunes)",
        ),
        OptionSpec::optional(
            "categories",
            "list of strings",
            None,
            "only these file names (default: every file in the folder)",
        ),
        OptionSpec::optional(
            "shuffle",
            "boolean",
            Some("true"),
            "shuffle items with the run's seed",
        ),
        OptionSpec::optional("limit", "integer", None, "stop after this many records"),
    ];
}

impl Loader for FortunesLoader {
    fn open(options: &Options, seed: u64) -> Result<Self, PluginError> {
        let path = PathBuf::from(options.required_str("path")?);
        let categories = options.str_list("categories")?;
        let files = fortune_files(&path, categories.as_deref())?;
        let mut items = Vec::new();
        for file in &files {
            items.extend(parse::read_file(file)?);
        }
        if options.bool("shuffle")?.unwrap_or(true) {
            shuffle::shuffle(&mut items, seed);
        }
        if let Some(limit) = options.u64("limit")? {
            items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        log_info!(
            "fortunes: {} items from {} files under {}",
            items.len(),
            files.len(),
            path.display()
        );
        Ok(FortunesLoader { items, next: 0 })
    }

    fn next_batch(&mut self, max_records: usize) -> Result<Vec<Record>, PluginError> {
        let end = (self.next + max_records).min(self.items.len());
        let batch = self.items[self.next..end]
            .iter()
            .map(Item::to_record)
            .collect();
        self.next = end;
        Ok(batch)
    }

    fn size_hint(&self) -> Option<u64> {
        Some(self.items.len() as u64)
    }
}

/// The fortune files to read, sorted by name so the unshuffled order is stable too.
fn fortune_files(path: &Path, categories: Option<&[String]>) -> Result<Vec<PathBuf>, PluginError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        PluginError::option(
            "path",
            format!(
                "cannot read {}: {e}; give a fortune file or a folder of them",
                path.display()
            ),
        )
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| PluginError::option("path", format!("cannot list {}: {e}", path.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PluginError::option("path", e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // `.dat` are strfile's indexes, `.u8` links duplicate the plain file; both would double items.
        let skip = name.starts_with('.') || name.ends_with(".dat") || name.ends_with(".u8");
        if !skip && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    if let Some(wanted) = categories {
        let names: Vec<String> = files.iter().map(|f| parse::category(f)).collect();
        if let Some(missing) = wanted.iter().find(|w| !names.contains(w)) {
            return Err(PluginError::option(
                "categories",
                format!(
                    "no fortune file `{missing}` in {} (it has: {})",
                    path.display(),
                    names.join(", ")
                ),
            ));
        }
        files.retain(|f| wanted.contains(&parse::category(f)));
    }
    if files.is_empty() {
        return Err(PluginError::option(
            "path",
            format!("{} holds no fortune files", path.display()),
        ));
    }
    Ok(files)
}

ardpipe_plugin_sdk::export_plugin!(loader = FortunesLoader);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(v: serde_json::Value) -> Options {
        Options::from_json(v).unwrap()
    }

    fn drain(mut loader: FortunesLoader) -> Vec<Record> {
        let mut out = Vec::new();
        loop {
            let batch = loader.next_batch(3).unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(batch);
        }
    }

    /// A fortunes folder of the test's own: tests run in parallel threads of one process, and a
    /// shared folder rewritten by one test was read half-written by another.
    fn folder(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fortunes-unit-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("wisdom"),
            "Look before you leap.\n%\nHaste makes waste.\n%\n",
        )
        .unwrap();
        std::fs::write(dir.join("art"), "A thing of beauty\nis a joy forever.\n%\n").unwrap();
        std::fs::write(dir.join("art.dat"), [0u8, 1, 2, 255]).unwrap();
        dir
    }

    #[test]
    fn reads_a_folder_with_labels_and_skips_index_files() {
        let dir = folder("labels");
        let loader =
            FortunesLoader::open(&options(json!({"path": dir, "shuffle": false})), 0).unwrap();
        assert_eq!(loader.size_hint(), Some(3));
        let records = drain(loader);
        let pairs: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.label.as_deref().unwrap(), r.text.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("art", "A thing of beauty\nis a joy forever."),
                ("wisdom", "Look before you leap."),
                ("wisdom", "Haste makes waste."),
            ]
        );
        assert_eq!(records[2].extra["line"], "3");
    }

    #[test]
    fn unknown_category_names_the_option() {
        let dir = folder("unknown");
        let e = FortunesLoader::open(&options(json!({"path": dir, "categories": ["nope"]})), 0)
            .err()
            .unwrap();
        assert_eq!(e.key.as_deref(), Some("categories"));
        assert!(e.message.contains("art, wisdom"), "{e}");
    }
}
