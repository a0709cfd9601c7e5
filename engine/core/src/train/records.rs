//! Reading a pipeline dataset into examples: the source formats, field mapping, label regex,
//! text clean-up, the bad-row policy and the train / evaluation split.

use std::path::{Path, PathBuf};

use ardpipe_dsl::pipeline as p;
use regex::Regex;

use super::TrainError;
use super::batches::Example;

/// A row that could not be used, with where and why.
fn bad_row(file: &Path, line: u64, why: impl std::fmt::Display) -> String {
    format!("{}:{line}: {why}", file.display())
}

/// The dataset's clean-up and label extraction, compiled once.
pub(super) struct Prep {
    strip: Vec<Regex>,
    label_re: Option<Regex>,
    lowercase: bool,
}

impl Prep {
    pub(super) fn new(ds: &p::Dataset) -> Result<Prep, TrainError> {
        let re = |r: &str| {
            Regex::new(r).map_err(|e| {
                TrainError::Other(format!("dataset `{}`: bad regex {r:?}: {e}", ds.name))
            })
        };
        Ok(Prep {
            strip: ds
                .preprocess
                .strip
                .iter()
                .map(|r| re(r))
                .collect::<Result<_, _>>()?,
            label_re: ds.fields.label_regex.as_deref().map(re).transpose()?,
            lowercase: ds.preprocess.lowercase,
        })
    }

    pub(super) fn text(&self, t: &str) -> String {
        let mut s = t.to_string();
        for r in &self.strip {
            s = r.replace_all(&s, "").into_owned();
        }
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if self.lowercase { s.to_lowercase() } else { s }
    }

    pub(super) fn label(&self, raw: &str) -> Result<String, String> {
        match &self.label_re {
            None => Ok(raw.trim().to_string()),
            Some(re) => re
                .captures(raw)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_string())
                .ok_or_else(|| format!("label {raw:?} does not match label_regex {:?} (or it has no capture group)", re.as_str())),
        }
    }
}

/// Rows read so far, with the skip policy applied.
pub(super) struct Sink<'a> {
    ds: &'a p::Dataset,
    pub(super) out: Vec<Example>,
    skipped: u64,
    first_skips: Vec<String>,
}

impl Sink<'_> {
    pub(super) fn full(&self) -> bool {
        self.ds.max_rows.is_some_and(|m| self.out.len() as u64 >= m)
    }

    pub(super) fn bad(&mut self, msg: String) -> Result<(), TrainError> {
        match &self.ds.on_bad_row {
            p::BadRowPolicy::Fail => Err(TrainError::Other(format!(
                "dataset `{}`: {msg}\n  help: fix the row, or set `on_bad_row = skip` to skip and count bad rows",
                self.ds.name
            ))),
            p::BadRowPolicy::Skip { max } => {
                self.skipped += 1;
                if self.first_skips.len() < 5 {
                    self.first_skips.push(msg.clone());
                }
                if max.is_some_and(|m| self.skipped > m) {
                    return Err(TrainError::Other(format!(
                        "dataset `{}`: more than {} bad rows were skipped; the last: {msg}",
                        self.ds.name,
                        max.unwrap_or(0)
                    )));
                }
                Ok(())
            }
        }
    }
}

fn expand(path: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let s = path.to_string_lossy();
    if !s.contains(['*', '?', '[']) {
        if !path.exists() {
            return Err(TrainError::Other(format!(
                "{} does not exist\n  help: check the dataset path (relative paths are relative to the pipeline file; `${{assets}}` is the example-asset folder `python3 scripts/setup.py` fills)",
                path.display()
            )));
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = glob::glob(&s)
        .map_err(|e| TrainError::Other(format!("bad glob {s:?}: {e}")))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(TrainError::Other(format!("no file matches {s:?}")));
    }
    Ok(files)
}

/// All examples of a source (before splitting). `paths` are the dataset's (or a split's files),
/// each a file, folder or glob; only a plugin source may have none.
fn read_source(
    pipeline: &p::Pipeline,
    ds: &p::Dataset,
    paths: &[PathBuf],
) -> Result<Vec<Example>, TrainError> {
    if ds.fields.supervised() {
        return Err(TrainError::Other(format!(
            "dataset `{}`: this trainer does not read prompt/completion or chat records yet \
             (`prompt`, `completion`, `messages`)\n  help: train on plain text (`text = \"...\"`)",
            ds.name
        )));
    }
    let prep = Prep::new(ds)?;
    let need_paths = || {
        if paths.is_empty() {
            Err(TrainError::Other(format!(
                "dataset `{}` has no path",
                ds.name
            )))
        } else {
            Ok(paths)
        }
    };
    let mut sink = Sink {
        ds,
        out: Vec::new(),
        skipped: 0,
        first_skips: Vec::new(),
    };
    match &ds.source {
        p::Source::Csv {
            delimiter, header, ..
        } => {
            for path in need_paths()? {
                for file in expand(path)? {
                    read_csv(&file, *delimiter, *header, ds, &prep, &mut sink)?;
                }
            }
        }
        p::Source::Jsonl { .. } => {
            for path in need_paths()? {
                for file in expand(path)? {
                    read_jsonl(&file, ds, &prep, &mut sink)?;
                }
            }
        }
        p::Source::Text { mode, .. } => {
            for path in need_paths()? {
                for file in expand(path)? {
                    read_text(&file, mode, &prep, &mut sink)?;
                }
            }
        }
        p::Source::Parquet { .. } => {
            return Err(TrainError::Other(format!(
                "dataset `{}`: this trainer does not read Parquet files yet\n  help: convert the data to JSONL (`format = jsonl`)",
                ds.name
            )));
        }
        p::Source::Folders { .. } => {
            for path in need_paths()? {
                read_folders(path, &prep, &mut sink)?;
            }
        }
        p::Source::Plugin {
            plugin, options, ..
        } => {
            if paths.is_empty() {
                super::plugin_records::read(pipeline, ds, plugin, options, None, &prep, &mut sink)?
            }
            for path in paths {
                super::plugin_records::read(
                    pipeline,
                    ds,
                    plugin,
                    options,
                    Some(path),
                    &prep,
                    &mut sink,
                )?
            }
        }
    }
    if sink.skipped > 0 {
        tracing::warn!(
            "dataset `{}`: skipped {} bad rows, e.g. {}",
            ds.name,
            sink.skipped,
            sink.first_skips.join("; ")
        );
    }
    if sink.out.is_empty() {
        let from = match &ds.source {
            p::Source::Plugin { plugin, .. } => format!(" from plugin `{plugin}`"),
            _ if paths.is_empty() => String::new(),
            _ => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                format!(" in {}", names.join(", "))
            }
        };
        return Err(TrainError::Other(format!(
            "dataset `{}` has no usable examples{from}",
            ds.name
        )));
    }
    Ok(sink.out)
}

fn read_csv(
    file: &Path,
    delim: char,
    header: bool,
    ds: &p::Dataset,
    prep: &Prep,
    sink: &mut Sink,
) -> Result<(), TrainError> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim as u8)
        .has_headers(header)
        // Every row must have the header's number of fields: a row with one more or one less
        // (an unquoted delimiter inside a field, a cut line) goes to the bad-row policy instead of
        // being read with its fields shifted.
        .flexible(false)
        .from_path(file)
        .map_err(|e| TrainError::Other(format!("cannot read {}: {e}", file.display())))?;
    let names: Vec<String> = if header {
        rdr.headers()
            .map_err(|e| TrainError::Other(format!("{}: bad header: {e}", file.display())))?
            .iter()
            .map(str::to_string)
            .collect()
    } else {
        vec![]
    };
    let col = |name: &Option<String>| -> Result<Option<usize>, TrainError> {
        let Some(n) = name else { return Ok(None) };
        if !header {
            return n.parse::<usize>().map(Some).map_err(|_| {
                TrainError::Other(format!(
                    "{}: without a header, columns are numbers, not {n:?}",
                    file.display()
                ))
            });
        }
        names.iter().position(|c| c == n).map(Some).ok_or_else(|| {
            TrainError::Other(format!(
                "{}:1: no column {n:?} in dataset `{}`; the columns are {}",
                file.display(),
                ds.name,
                names
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };
    let text_col = col(&ds.fields.text)?.ok_or_else(|| {
        TrainError::Other(format!(
            "dataset `{}`: a CSV source needs `fields.text`",
            ds.name
        ))
    })?;
    let pair_col = col(&ds.fields.text_pair)?;
    let label_col = col(&ds.fields.label)?;
    // The csv reader ends a quoted field that is never closed at the end of the file, with no
    // error: every row after the stray quote would be read into that one field in silence.
    let open_quote = unclosed_quote(file, delim as u8)?;
    for rec in rdr.records() {
        if sink.full() {
            break;
        }
        let at = match &rec {
            Ok(r) => r.position(),
            Err(e) => e.position(),
        };
        if let Some(line) = open_quote
            && at.is_some_and(|p| p.line() == line)
        {
            sink.bad(bad_row(
                file,
                line,
                "a quoted field opened on this row is never closed, so the rest of the file \
                 was read into it (close the quote, or double a quote inside a quoted field: \"\")",
            ))?;
            continue;
        }
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                let why = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!(
                        "the row has {len} fields where {} has {expected_len} (quote a field \
                         that contains the delimiter {delim:?})",
                        if header {
                            "the header"
                        } else {
                            "the first row"
                        }
                    ),
                    _ => format!("malformed CSV: {e}"),
                };
                sink.bad(bad_row(file, line, why))?;
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let get = |c: usize| rec.get(c);
        let Some(text) = get(text_col) else {
            sink.bad(bad_row(
                file,
                line,
                format!(
                    "the row has {} fields, no text column {text_col}",
                    rec.len()
                ),
            ))?;
            continue;
        };
        let label = match label_col.map(|c| get(c).map(|raw| prep.label(raw))) {
            None => None,
            Some(None) => {
                sink.bad(bad_row(file, line, "the row has no label field"))?;
                continue;
            }
            Some(Some(Err(why))) => {
                sink.bad(bad_row(file, line, why))?;
                continue;
            }
            Some(Some(Ok(l))) => Some(l),
        };
        let text = prep.text(text);
        if text.is_empty() {
            sink.bad(bad_row(file, line, "the text is empty after preprocessing"))?;
            continue;
        }
        sink.out.push(Example {
            text,
            pair: pair_col.and_then(get).map(|t| prep.text(t)),
            label,
        });
    }
    Ok(())
}

/// The line of the row whose quoted field is still open at the end of `file`, if one is, read as
/// the csv crate reads it (a field is quoted when it starts with `"`; `""` inside is a quote).
fn unclosed_quote(file: &Path, delim: u8) -> Result<Option<u64>, TrainError> {
    let bytes = std::fs::read(file)
        .map_err(|e| TrainError::Other(format!("cannot read {}: {e}", file.display())))?;
    #[derive(PartialEq)]
    enum At {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut at = At::FieldStart;
    let (mut line, mut row_line, mut row_start) = (1u64, 1u64, true);
    for &b in &bytes {
        let ends_row = b == b'\n' || b == b'\r';
        if row_start && !ends_row {
            row_line = line;
            row_start = false;
        }
        if b == b'\n' {
            line += 1;
        }
        at = match at {
            At::FieldStart if b == b'"' => At::Quoted,
            At::FieldStart | At::Unquoted | At::QuoteInQuoted if ends_row || b == delim => {
                row_start |= ends_row;
                At::FieldStart
            }
            At::FieldStart | At::Unquoted => At::Unquoted,
            At::Quoted if b == b'"' => At::QuoteInQuoted,
            At::Quoted => At::Quoted,
            At::QuoteInQuoted if b == b'"' => At::Quoted,
            At::QuoteInQuoted => At::Unquoted,
        };
    }
    Ok((at == At::Quoted).then_some(row_line))
}

fn json_get<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What a JSON value is, for messages: "an array", "a number".
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The field `key` (dotted for nested objects) of one JSONL object as text, or why not.
fn json_field(v: &serde_json::Value, key: &str, what: &str) -> Result<String, String> {
    let Some(f) = json_get(v, key) else {
        let keys: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        return Err(format!(
            "no {what} field {key:?} (the keys are {})",
            keys.join(", ")
        ));
    };
    json_text(f).ok_or_else(|| {
        format!(
            "the {what} field {key:?} is {}, not a string or a number",
            json_kind(f)
        )
    })
}

fn read_jsonl(
    file: &Path,
    ds: &p::Dataset,
    prep: &Prep,
    sink: &mut Sink,
) -> Result<(), TrainError> {
    let bytes = std::fs::read(file)
        .map_err(|e| TrainError::Other(format!("cannot read {}: {e}", file.display())))?;
    let text_key = ds.fields.text.clone().unwrap_or_else(|| "text".into());
    // Line by line as bytes: a line that is not UTF-8 is one bad row, not an unreadable file.
    let lines = bytes.split(|&b| b == b'\n');
    for (i, raw) in lines.enumerate() {
        if sink.full() {
            break;
        }
        let line_no = i as u64 + 1;
        let line = match std::str::from_utf8(raw.strip_suffix(b"\r").unwrap_or(raw)) {
            Ok(l) => l,
            Err(e) => {
                sink.bad(bad_row(
                    file,
                    line_no,
                    format!("not valid UTF-8 (at byte {} of the line)", e.valid_up_to()),
                ))?;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                sink.bad(bad_row(file, line_no, format!("not valid JSON: {e}")))?;
                continue;
            }
        };
        if !v.is_object() {
            sink.bad(bad_row(
                file,
                line_no,
                format!(
                    "the line is {}, not an object: JSONL holds one object per line",
                    json_kind(&v)
                ),
            ))?;
            continue;
        }
        let t = match json_field(&v, &text_key, "text") {
            Ok(t) => t,
            Err(why) => {
                sink.bad(bad_row(file, line_no, why))?;
                continue;
            }
        };
        let label = match &ds.fields.label {
            None => None,
            Some(k) => match json_field(&v, k, "label").and_then(|raw| prep.label(&raw)) {
                Ok(l) => Some(l),
                Err(why) => {
                    sink.bad(bad_row(file, line_no, why))?;
                    continue;
                }
            },
        };
        // A configured pair field is part of every example: a row without it is bad, not a
        // single-text example.
        let pair = match &ds.fields.text_pair {
            None => None,
            Some(k) => match json_field(&v, k, "text_pair") {
                Ok(t) => Some(prep.text(&t)),
                Err(why) => {
                    sink.bad(bad_row(file, line_no, why))?;
                    continue;
                }
            },
        };
        sink.out.push(Example {
            text: prep.text(&t),
            pair,
            label,
        });
    }
    Ok(())
}

fn read_text(
    file: &Path,
    mode: &p::TextMode,
    prep: &Prep,
    sink: &mut Sink,
) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        TrainError::Other(format!("cannot read {} as UTF-8 text: {e}", file.display()))
    })?;
    let label = file.file_stem().map(|s| s.to_string_lossy().into_owned());
    let push = |t: &str, sink: &mut Sink| {
        // Documents keep their line structure (it matters to a language model); lines are trimmed.
        let t = match mode {
            p::TextMode::Lines => prep.text(t),
            _ => {
                let mut s = t.to_string();
                for r in &prep.strip {
                    s = r.replace_all(&s, "").into_owned();
                }
                s.trim().to_string()
            }
        };
        if !t.is_empty() && !sink.full() {
            sink.out.push(Example {
                text: t,
                pair: None,
                label: label.clone(),
            });
        }
    };
    match mode {
        p::TextMode::Lines => text.lines().for_each(|l| push(l, sink)),
        p::TextMode::Documents => push(&text, sink),
        p::TextMode::Separator { line } => {
            let mut cur = String::new();
            for l in text.lines() {
                if l.trim_end() == line {
                    push(&cur, sink);
                    cur.clear();
                } else {
                    cur.push_str(l);
                    cur.push('\n');
                }
            }
            push(&cur, sink);
        }
    }
    Ok(())
}

fn read_folders(root: &Path, prep: &Prep, sink: &mut Sink) -> Result<(), TrainError> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| TrainError::Other(format!("cannot read folder {}: {e}", root.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(TrainError::Other(format!(
            "{} has no sub-folders: a folder-per-class dataset needs one per class",
            root.display()
        )));
    }
    for class in classes {
        let label = class.file_name().map(|s| s.to_string_lossy().into_owned());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class)
            .map_err(|e| TrainError::Other(format!("cannot read {}: {e}", class.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(t) if !prep.text(&t).is_empty() => sink.out.push(Example {
                    text: prep.text(&t),
                    pair: None,
                    label: label.clone(),
                }),
                Ok(_) => sink.bad(bad_row(&f, 1, "empty file"))?,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    sink.bad(bad_row(&f, 1, "not UTF-8 text"))?
                }
                Err(e) => sink.bad(bad_row(&f, 1, format!("cannot read: {e}")))?,
            }
        }
    }
    Ok(())
}

/// Train and evaluation examples of the training dataset, as `evaluate` (or a validation
/// split) asks: fractions are carved out with the split seed, files are read in the same format.
pub fn load_splits(
    pipeline: &p::Pipeline,
    ds: &p::Dataset,
) -> Result<(Vec<Example>, Vec<Example>), TrainError> {
    let mut all = read_source(pipeline, ds, ds.source.paths())?;
    let eval_split = pipeline
        .evaluate
        .as_ref()
        .map(|e| e.split)
        .unwrap_or(p::SplitName::Validation);
    let n = all.len();
    let perm = crate::rng::Rng::from_seed(ds.split.seed).permutation(n);
    let mut order: Vec<Option<Example>> = all.drain(..).map(Some).collect();
    let shuffled: Vec<Example> = perm.iter().filter_map(|&i| order[i].take()).collect();
    let frac = |part: &Option<p::SplitPart>| match part {
        Some(p::SplitPart::Fraction { fraction }) => (fraction * n as f64).round() as usize,
        _ => 0,
    };
    let (n_val, n_test) = (frac(&ds.split.validation), frac(&ds.split.test));
    if n_val + n_test >= n {
        return Err(TrainError::Other(format!(
            "dataset `{}`: the validation and test fractions take all {n} examples; lower them",
            ds.name
        )));
    }
    let mut it = shuffled.into_iter();
    let val: Vec<Example> = it.by_ref().take(n_val).collect();
    let test: Vec<Example> = it.by_ref().take(n_test).collect();
    let train: Vec<Example> = it.collect();
    let from_file =
        |part: &Option<p::SplitPart>, carved: Vec<Example>| -> Result<Vec<Example>, TrainError> {
            match part {
                Some(p::SplitPart::File { paths }) => read_source(pipeline, ds, paths),
                _ => Ok(carved),
            }
        };
    let eval = match eval_split {
        p::SplitName::Validation => from_file(&ds.split.validation, val)?,
        p::SplitName::Test => from_file(&ds.split.test, test)?,
        p::SplitName::Train => train.clone(),
    };
    tracing::info!(
        "dataset `{}`: {} training and {} evaluation examples",
        ds.name,
        train.len(),
        eval.len()
    );
    Ok((train, eval))
}
