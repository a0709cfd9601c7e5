//! The run directory: where a run keeps everything it produces, written so that a crash at any
//! instant leaves either the old or the new version of every file, never half of one.
//!
//! Layout:
//!
//! ```text
//! RUN/
//!   run.lock                  held (flock) by the process that owns the run
//!   pipeline.resolved.json    the checked pipeline, as the engine saw it
//!   manifest.json             provenance: hashes, versions, seeds, times
//!   metrics.jsonl             one JSON object per line, appended and flushed
//!   ranks.jsonl               α / effective-rank telemetry, same format
//!   checkpoints/step-0000120/ complete checkpoints; `latest` names the newest
//!   adapter/                  the exported PEFT adapter (written as `adapter.partial/`, then
//!                             renamed: it is there whole or not at all)
//!   report/                   report.md and its SVG pictures (the same way)
//! ```
//!
//! The resolved pipeline and the manifest are written right after the lock is taken, before
//! any data or weights load: a run killed at any later instant leaves a folder `--resume`
//! accepts.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use serde::Serialize;

/// Everything that can go wrong with a run directory; each message names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "run directory {path} is in use by another ardpipe process ({holder}); wait for it to finish, or pick another output directory"
    )]
    Locked { path: PathBuf, holder: String },
    #[error("{}", already_exists(path, status.as_deref()))]
    AlreadyExists {
        path: PathBuf,
        /// The `status` of the run's manifest, when the folder holds one.
        status: Option<String>,
    },
    #[error(
        "{path} is not an ardpipe run directory (no pipeline.resolved.json); point --resume at the folder `ardpipe run` created"
    )]
    NotARun { path: PathBuf },
    #[error("run directory template `{template}` {problem}")]
    BadTemplate { template: String, problem: String },
    #[error(
        "{path} is {what}, not a regular file: an input is read more than once (hashed for the \
         manifest, then loaded); copy it to a file and give that path"
    )]
    NotAFile { path: PathBuf, what: &'static str },
    #[error(
        "{link} leads back to {target}, a folder it lies in: a dataset folder cannot hold a link \
         loop; remove the link"
    )]
    LinkLoop { link: PathBuf, target: PathBuf },
    #[error(
        "{what} is not the JSON ardpipe wrote there ({source}): it was damaged or edited; \
         restore it, or start the run again in a new output directory"
    )]
    BadJson {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode {what} as JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = RunDirError> = std::result::Result<T, E>;

/// What to do about an `output.dir` that is already used, by what it holds.
fn already_exists(path: &Path, status: Option<&str>) -> String {
    let p = path.display();
    match status {
        Some(s @ ("failed" | "interrupted" | "running")) => {
            let what = match s {
                "failed" => "a run that failed",
                "interrupted" => "a run that was interrupted",
                _ => "a run that did not finish (killed, or still running elsewhere)",
            };
            format!(
                "run directory {p} already holds {what} (manifest status `{s}`); continue it with `ardpipe run --resume {p}` \
                 (add `--restart` to train it again from step 0), or remove the folder to start a new run there"
            )
        }
        Some(s) => format!(
            "run directory {p} already holds a finished run (manifest status `{s}`); choose another output.dir \
             (e.g. with `{{timestamp}}` in it), or remove the folder to run again there"
        ),
        None => format!(
            "run directory {p} already exists and is not empty (and holds no ardpipe run); choose another output.dir, \
             or remove the folder"
        ),
    }
}

// ---- stopping on a signal -----------------------------------------------------------------

/// The signal (SIGINT, SIGTERM) that asked this process to stop; 0 while none has.
static STOP: AtomicI32 = AtomicI32::new(0);

/// Ask the run to stop after its current step (with a checkpoint). Async-signal-safe: a signal
/// handler may call it. Returns the signal an earlier request already gave (0 if none).
pub fn request_stop(signal: i32) -> i32 {
    STOP.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .err()
        .unwrap_or(0)
}

/// The signal that asked the run to stop, if one did.
pub fn stop_requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Test hook: when the environment variable `ARDPIPE_TEST_PAUSE` names `point`, write the point
/// to the file `ARDPIPE_TEST_PAUSE_MARKER` (if set) and wait there, for a test to kill the
/// process at that exact instant. With `wake_on_stop` a stop request (SIGINT, SIGTERM) ends
/// the wait. Does nothing otherwise.
pub fn test_pause(point: &str, wake_on_stop: bool) {
    if std::env::var("ARDPIPE_TEST_PAUSE").ok().as_deref() != Some(point) {
        return;
    }
    if let Some(marker) = std::env::var_os("ARDPIPE_TEST_PAUSE_MARKER") {
        let _ = write_atomic(Path::new(&marker), point.as_bytes());
    }
    loop {
        if wake_on_stop && stop_requested().is_some() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RunDirError {
    let path = path.to_path_buf();
    move |source| RunDirError::Io {
        action,
        path,
        source,
    }
}

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync, rename over
/// `path`, fsync the directory. Readers see the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] for content produced by a writer (large files need not sit in memory twice).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    // Same directory, so the rename cannot cross filesystems; pid-tagged so two writers never share.
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        fill(&mut f).map_err(io_err("cannot write", &tmp))?;
        f.sync_all().map_err(io_err("cannot fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err("cannot rename temp file onto", path))?;
        fsync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serialise `value` as pretty JSON (plus a final newline) and write it atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| RunDirError::Json {
        what: path.display().to_string(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Write a whole folder atomically: `fill` writes into `DIR.partial/` (emptied first), every
/// file there is fsynced, then the folder replaces `dir` by rename (an old `dir` is moved aside
/// first and removed after). Readers see the old folder or the new one, never part of one.
pub fn write_dir_atomic<E: From<RunDirError>>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let parent = parent_dir(dir);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dir".into());
    let partial = parent.join(format!("{name}.partial"));
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(io_err("cannot remove stale", &partial))?;
    }
    fs::create_dir_all(&partial).map_err(io_err("cannot create", &partial))?;
    fill(&partial)?;
    fsync_tree(&partial)?;
    test_pause(&format!("export-partial:{name}"), false);
    let aside = parent.join(format!("{name}.old-{}", std::process::id()));
    let had_old = dir.exists();
    if had_old {
        fs::rename(dir, &aside).map_err(io_err("cannot move aside", dir))?;
    }
    fs::rename(&partial, dir).map_err(io_err("cannot rename into", dir))?;
    fsync_dir(&parent)?;
    if had_old {
        fs::remove_dir_all(&aside).map_err(io_err("cannot remove", &aside))?;
    }
    Ok(())
}

/// fsync every file under `dir`, then the folders themselves.
fn fsync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io_err("cannot read", dir))? {
        let p = entry.map_err(io_err("cannot read", dir))?.path();
        if p.is_dir() {
            fsync_tree(&p)?;
        } else {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(io_err("cannot fsync", &p))?;
        }
    }
    fsync_dir(dir)
}

/// Make a rename or a file creation inside `dir` durable: POSIX needs the directory fsynced too.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(io_err("cannot open directory", dir))?;
    d.sync_all().map_err(io_err("cannot fsync directory", dir))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Expand a run-directory template such as `runs/{name}-{timestamp}`.
///
/// `vars` supplies the caller's placeholders (`name`, `variant`, `seed`, …). Built in:
/// `{timestamp}` is `YYYYMMDD-HHMMSS` (UTC, sortable, no characters shells or Windows dislike),
/// `{date}` is `YYYY-MM-DD`, `{time}` is `HHMMSS`.
pub fn expand_template(
    template: &str,
    vars: &[(&str, &str)],
    now: time::OffsetDateTime,
) -> Result<PathBuf> {
    let bad = |problem: String| RunDirError::BadTemplate {
        template: template.to_string(),
        problem,
    };
    if template.trim().is_empty() {
        return Err(bad("is empty".into()));
    }
    let now = now.to_offset(time::UtcOffset::UTC);
    let (y, mo, d) = (now.year(), now.month() as u8, now.day());
    let (h, mi, s) = (now.hour(), now.minute(), now.second());
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| bad(format!("has a `{{` at byte {open} without a closing `}}`")))?;
        let key = &after[..close];
        match key {
            "timestamp" => out.push_str(&format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")),
            "date" => out.push_str(&format!("{y:04}-{mo:02}-{d:02}")),
            "time" => out.push_str(&format!("{h:02}{mi:02}{s:02}")),
            other => match vars.iter().find(|(k, _)| *k == other) {
                Some((_, v)) => out.push_str(v),
                None => {
                    let known: Vec<String> = vars.iter().map(|(k, _)| format!("{{{k}}}")).collect();
                    return Err(bad(format!(
                        "uses the unknown placeholder {{{other}}} (known here: {}, {{timestamp}}, {{date}}, {{time}})",
                        known.join(", ")
                    )));
                }
            },
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(bad("has a `}` without an opening `{`".into()));
    }
    out.push_str(rest);
    Ok(PathBuf::from(out))
}

/// An advisory lock on `RUN/run.lock`. The kernel drops it when the process dies (even on
/// `kill -9`), so a crashed run never leaves a stale lock behind.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    pub fn acquire(run_dir: &Path) -> Result<RunLock> {
        let path = run_dir.join("run.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("cannot open lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown process".into());
                return Err(RunDirError::Locked {
                    path: run_dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err("cannot lock", &path)(e)),
        }
        // Who holds it, for the message another process will print.
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let who = format!("pid {} on {}", std::process::id(), host);
        file.set_len(0).map_err(io_err("cannot write", &path))?;
        file.write_all(who.as_bytes())
            .map_err(io_err("cannot write", &path))?;
        Ok(RunLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// An open, locked run directory.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    /// None for the other ranks of a data-parallel run, which never write here.
    _lock: Option<RunLock>,
}

pub const RESOLVED_PIPELINE: &str = "pipeline.resolved.json";
pub const MANIFEST: &str = "manifest.json";
/// The execution plan the run follows (`ardpipe plan --format json` prints the same).
pub const PLAN: &str = "plan.json";
/// The finished run's outcome (final evaluation, parameters, ranks, time, memory).
pub const SUMMARY: &str = "summary.json";
pub const METRICS: &str = "metrics.jsonl";
pub const RANKS: &str = "ranks.jsonl";
pub const CHECKPOINTS: &str = "checkpoints";
pub const ADAPTER: &str = "adapter";
pub const REPORT: &str = "report";

impl RunDir {
    /// Create a fresh run directory at `root` (its parents too) and lock it. Refuses a non-empty
    /// existing directory, so a new run never mixes its files with an old one's.
    pub fn create(root: &Path) -> Result<RunDir> {
        if root.exists() {
            let mut entries = fs::read_dir(root).map_err(io_err("cannot read", root))?;
            if entries.next().is_some() {
                let status = read_json(&root.join(MANIFEST))
                    .ok()
                    .and_then(|m| m.get("status").and_then(|s| s.as_str()).map(str::to_string));
                return Err(RunDirError::AlreadyExists {
                    path: root.to_path_buf(),
                    status,
                });
            }
        }
        fs::create_dir_all(root).map_err(io_err("cannot create run directory", root))?;
        let lock = RunLock::acquire(root)?;
        // The exports (adapter/, report/) appear whole when written, not as empty folders now.
        let p = root.join(CHECKPOINTS);
        fs::create_dir_all(&p).map_err(io_err("cannot create", &p))?;
        fsync_dir(root)?;
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
        Ok(RunDir {
            root: root.to_path_buf(),
            _lock: Some(lock),
        })
    }

    /// Create a run directory from a template (see [`expand_template`]) under `base`.
    pub fn create_from_template(
        base: &Path,
        template: &str,
        vars: &[(&str, &str)],
        now: time::OffsetDateTime,
    ) -> Result<RunDir> {
        RunDir::create(&base.join(expand_template(template, vars, now)?))
    }

    /// Open an existing run for `--resume`: it must hold a resolved pipeline, and no other
    /// process may hold it.
    pub fn open(root: &Path) -> Result<RunDir> {
        if !root.join(RESOLVED_PIPELINE).is_file() {
            return Err(RunDirError::NotARun {
                path: root.to_path_buf(),
            });
        }
        let lock = RunLock::acquire(root)?;
        let p = root.join(CHECKPOINTS);
        fs::create_dir_all(&p).map_err(io_err("cannot create", &p))?;
        Ok(RunDir {
            root: root.to_path_buf(),
            _lock: Some(lock),
        })
    }

    /// Read an existing run without locking it: the other ranks of a data-parallel run load
    /// its checkpoint while rank 0 holds the lock.
    pub fn open_unlocked(root: &Path) -> Result<RunDir> {
        if !root.join(RESOLVED_PIPELINE).is_file() {
            return Err(RunDirError::NotARun {
                path: root.to_path_buf(),
            });
        }
        Ok(RunDir::of_another_rank(root))
    }

    /// A run directory owned by rank 0 of a data-parallel run, as the other ranks know it:
    /// its path, nothing created, locked or written.
    pub fn of_another_rank(root: &Path) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
            _lock: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn resolved_pipeline_path(&self) -> PathBuf {
        self.path(RESOLVED_PIPELINE)
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.path(MANIFEST)
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.path(METRICS)
    }
    pub fn ranks_path(&self) -> PathBuf {
        self.path(RANKS)
    }
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.path(CHECKPOINTS)
    }
    pub fn adapter_dir(&self) -> PathBuf {
        self.path(ADAPTER)
    }
    pub fn report_dir(&self) -> PathBuf {
        self.path(REPORT)
    }

    /// Save the resolved pipeline (any serde value; the engine does not know the DSL's types).
    pub fn write_resolved_pipeline(&self, pipeline: &serde_json::Value) -> Result<()> {
        write_json_atomic(&self.resolved_pipeline_path(), pipeline)
    }

    pub fn read_resolved_pipeline(&self) -> Result<serde_json::Value> {
        read_json(&self.resolved_pipeline_path())
    }

    /// The metrics log, opened for appending.
    pub fn metrics_log(&self) -> Result<JsonlLog> {
        JsonlLog::open(&self.metrics_path())
    }

    /// The rank-telemetry log, opened for appending.
    pub fn ranks_log(&self) -> Result<JsonlLog> {
        JsonlLog::open(&self.ranks_path())
    }

    /// On resume: drop every metrics and rank line written after the checkpoint's step, and the
    /// records flagged with one of `redo` (`final`: the end of a run, which the resumed run
    /// writes again; `initial` when it evaluates the base model again), so the resumed run
    /// appends exactly what the uninterrupted run would have.
    pub fn truncate_logs_to_step(&self, step: u64, redo: &[&str]) -> Result<()> {
        truncate_jsonl_after_step(&self.metrics_path(), step, redo)?;
        truncate_jsonl_after_step(&self.ranks_path(), step, redo)
    }

    /// fsync the metrics and rank logs (at a checkpoint: the logs are then at least as durable
    /// as the checkpoint they lead up to).
    pub fn sync_logs(&self) -> Result<()> {
        for p in [self.metrics_path(), self.ranks_path()] {
            match File::open(&p) {
                Ok(f) => f.sync_all().map_err(io_err("cannot fsync", &p))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot open", &p)(e)),
            }
        }
        Ok(())
    }
}

pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = fs::read(path).map_err(io_err("cannot read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| RunDirError::BadJson {
        what: path.display().to_string(),
        source,
    })
}

/// An append-only JSON-lines file: one object per line, each line flushed to the OS as soon as
/// it is written, so a `kill -9` loses at most the line being written.
#[derive(Debug)]
pub struct JsonlLog {
    file: File,
    path: PathBuf,
}

impl JsonlLog {
    pub fn open(path: &Path) -> Result<JsonlLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err("cannot open for appending", path))?;
        Ok(JsonlLog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Append one record. It must serialise to a JSON object (so readers can key on `step`).
    pub fn append<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|source| RunDirError::Json {
            what: format!("a record for {}", self.path.display()),
            source,
        })?;
        line.push(b'\n');
        // One write call per line: O_APPEND makes it land whole at the end.
        self.file
            .write_all(&line)
            .map_err(io_err("cannot append to", &self.path))?;
        self.file
            .flush()
            .map_err(io_err("cannot flush", &self.path))
    }

    /// fsync: used at checkpoints so the log is at least as durable as the checkpoint.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(io_err("cannot fsync", &self.path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lines of a JSON-lines file as bytes (no `\n`); a missing file has none.
fn jsonl_lines(path: &Path) -> Result<Option<Vec<Vec<u8>>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read", path)(e)),
    };
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    Ok(Some(lines))
}

/// Parse line `i` of `n`: `Ok(None)` for a blank line or a torn last one (the process died
/// while writing it, possibly inside a UTF-8 character), an error naming file:line otherwise.
fn parse_jsonl_line(
    path: &Path,
    line: &[u8],
    i: usize,
    n: usize,
) -> Result<Option<serde_json::Value>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice(line) {
        Ok(v) => Ok(Some(v)),
        Err(_) if i + 1 == n => Ok(None),
        Err(source) => Err(RunDirError::BadJson {
            what: format!("{}:{}", path.display(), i + 1),
            source,
        }),
    }
}

/// Read every complete record of a JSON-lines file. A torn last line (the process died while
/// writing it) is skipped; a malformed line elsewhere is an error naming file:line.
pub fn read_jsonl(path: &Path) -> Result<Vec<serde_json::Value>> {
    let Some(lines) = jsonl_lines(path)? else {
        return Ok(vec![]);
    };
    let n = lines.len();
    let mut out = Vec::with_capacity(n);
    for (i, line) in lines.iter().enumerate() {
        if let Some(v) = parse_jsonl_line(path, line, i, n)? {
            out.push(v);
        }
    }
    Ok(out)
}

/// Keep only the records whose `step` is at most `step` (records without a step are kept) and
/// that carry none of the `redo` flags, and drop a torn last line. Rewritten atomically.
pub fn truncate_jsonl_after_step(path: &Path, step: u64, redo: &[&str]) -> Result<()> {
    let Some(lines) = jsonl_lines(path)? else {
        return Ok(());
    };
    let n = lines.len();
    let mut bytes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(record) = parse_jsonl_line(path, line, i, n)? else {
            continue;
        };
        let keep = match record.get("step") {
            Some(s) => s.as_u64().is_some_and(|s| s <= step),
            None => true,
        } && !redo
            .iter()
            .any(|flag| record.get(*flag) == Some(&serde_json::Value::Bool(true)));
        // The kept lines are copied as written: re-serialising could change their numbers.
        if keep {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
    }
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t0() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_764_354_645).unwrap() // 2025-11-28 18:30:45 UTC
    }

    #[test]
    fn template_expands_every_placeholder() {
        let p = expand_template("runs/{name}-{timestamp}", &[("name", "quick")], t0()).unwrap();
        assert_eq!(p, PathBuf::from("runs/quick-20251128-183045"));
        let p = expand_template(
            "{date}/{time}/{name}-{seed}",
            &[("name", "x"), ("seed", "7")],
            t0(),
        )
        .unwrap();
        assert_eq!(p, PathBuf::from("2025-11-28/183045/x-7"));
    }

    #[test]
    fn template_errors_name_the_problem() {
        let e = expand_template("runs/{nme}", &[("name", "x")], t0())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown placeholder {nme} (known here: {name}, {timestamp}"),
            "{e}"
        );
        let e = expand_template("runs/{name", &[], t0())
            .unwrap_err()
            .to_string();
        assert!(e.contains("without a closing"), "{e}");
        assert!(expand_template(" ", &[], t0()).is_err());
    }

    #[test]
    fn write_atomic_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn failed_atomic_write_keeps_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"old").unwrap();
        let r = write_atomic_with(&p, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(r.unwrap_err().to_string().contains("disk full"));
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_lays_out_and_locks() {
        let base = tempfile::tempdir().unwrap();
        let run = RunDir::create_from_template(
            base.path(),
            "runs/{name}-{timestamp}",
            &[("name", "q")],
            t0(),
        )
        .unwrap();
        assert!(run.root().ends_with("runs/q-20251128-183045"));
        assert!(run.path(CHECKPOINTS).is_dir());
        // Exports appear whole when written: no empty folders before.
        assert!(!run.path(ADAPTER).exists() && !run.path(REPORT).exists());
        // Same directory, second owner: refused while the first holds it.
        run.write_resolved_pipeline(&json!({"a": 1})).unwrap();
        let e = RunDir::open(run.root()).unwrap_err().to_string();
        assert!(e.contains("in use by another ardpipe process"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        let root = run.root().to_path_buf();
        drop(run);
        let again = RunDir::open(&root).unwrap();
        assert_eq!(again.read_resolved_pipeline().unwrap(), json!({"a": 1}));
    }

    #[test]
    fn create_refuses_a_used_directory_and_open_refuses_a_non_run() {
        let base = tempfile::tempdir().unwrap();
        fs::write(base.path().join("x"), "y").unwrap();
        let e = RunDir::create(base.path()).unwrap_err().to_string();
        assert!(e.contains("holds no ardpipe run"), "{e}");
        let e = RunDir::open(base.path()).unwrap_err().to_string();
        assert!(e.contains("not an ardpipe run directory"), "{e}");
    }

    #[test]
    fn jsonl_appends_reads_and_truncates_to_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let mut log = JsonlLog::open(&p).unwrap();
        for step in 1..=5u64 {
            log.append(&json!({"step": step, "loss": 1.0 / step as f64}))
                .unwrap();
        }
        log.append(&json!({"note": "no step"})).unwrap();
        drop(log);
        // A torn line from a killed process.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"step\": 6, \"lo").unwrap();
        drop(f);
        assert_eq!(read_jsonl(&p).unwrap().len(), 6);
        truncate_jsonl_after_step(&p, 3, &[]).unwrap();
        let steps: Vec<_> = read_jsonl(&p)
            .unwrap()
            .iter()
            .map(|r| r.get("step").and_then(|s| s.as_u64()))
            .collect();
        assert_eq!(steps, vec![Some(1), Some(2), Some(3), None]);
        // Kept lines are byte-for-byte what was written (no float re-formatting).
        let kept = fs::read_to_string(&p).unwrap();
        assert!(
            kept.starts_with("{\"loss\":1.0,\"step\":1}\n{\"loss\":0.5,\"step\":2}\n"),
            "{kept}"
        );
        assert!(kept.contains("0.3333333333333333"), "{kept}");
        // Appending after truncation continues cleanly.
        JsonlLog::open(&p)
            .unwrap()
            .append(&json!({"step": 4}))
            .unwrap();
        assert_eq!(read_jsonl(&p).unwrap().len(), 5);
    }

    #[test]
    fn a_torn_last_line_cut_inside_a_utf8_character_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let mut bytes = b"{\"step\":1,\"note\":\"\xce\xb1 ok\"}\n{\"step\":2}\n".to_vec();
        // `{"step":3,"note":"α` cut after the first byte of α.
        bytes.extend_from_slice(b"{\"step\":3,\"note\":\"\xce");
        fs::write(&p, &bytes).unwrap();
        assert_eq!(read_jsonl(&p).unwrap().len(), 2);
        truncate_jsonl_after_step(&p, 5, &[]).unwrap();
        assert_eq!(
            fs::read(&p).unwrap(),
            b"{\"step\":1,\"note\":\"\xce\xb1 ok\"}\n{\"step\":2}\n"
        );
    }

    #[test]
    fn truncation_drops_the_records_a_resumed_run_writes_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        fs::write(
            &p,
            "{\"step\":0,\"initial\":true}\n{\"step\":6,\"split\":\"train\"}\n{\"step\":6,\"final\":true}\n",
        )
        .unwrap();
        truncate_jsonl_after_step(&p, 6, &["final"]).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "{\"step\":0,\"initial\":true}\n{\"step\":6,\"split\":\"train\"}\n"
        );
        truncate_jsonl_after_step(&p, 0, &["initial", "final"]).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn an_existing_run_says_what_to_do_by_its_status() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("run");
        fs::create_dir(&root).unwrap();
        for (status, want) in [
            ("failed", "a run that failed"),
            ("interrupted", "interrupted"),
            ("running", "did not finish"),
        ] {
            fs::write(root.join(MANIFEST), format!("{{\"status\":\"{status}\"}}")).unwrap();
            let e = RunDir::create(&root).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(e.contains(&format!("--resume {}", root.display())), "{e}");
            assert!(
                e.contains("--restart") && e.contains("remove the folder"),
                "{e}"
            );
        }
        fs::write(root.join(MANIFEST), "{\"status\":\"completed\"}").unwrap();
        let e = RunDir::create(&root).unwrap_err().to_string();
        assert!(
            e.contains("a finished run") && !e.contains("--resume"),
            "{e}"
        );
    }

    #[test]
    fn a_folder_written_atomically_is_there_whole_or_not_at_all() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("adapter");
        write_dir_atomic(&dir, |p| -> Result<()> {
            write_atomic(&p.join("a"), b"1")?;
            write_atomic(&p.join("b"), b"2")
        })
        .unwrap();
        assert_eq!(fs::read(dir.join("b")).unwrap(), b"2");
        // A failing fill leaves the old folder as it was.
        let r = write_dir_atomic(&dir, |p| -> Result<()> {
            write_atomic(&p.join("a"), b"new")?;
            Err(io_err("cannot write", p)(io::Error::other("disk full")))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(dir.join("a")).unwrap(), b"1");
        // Replacing it leaves no leftovers beside it.
        write_dir_atomic(&dir, |p| write_atomic(&p.join("c"), b"3")).unwrap();
        assert!(!dir.join("a").exists() && dir.join("c").exists());
        let names: Vec<_> = fs::read_dir(base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "adapter.partial")
            .collect();
        assert_eq!(names, ["adapter"]);
    }

    #[test]
    fn a_malformed_line_in_the_middle_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        fs::write(&p, "{\"step\":1}\nnot json\n{\"step\":2}\n").unwrap();
        let e = read_jsonl(&p).unwrap_err().to_string();
        assert!(e.contains("m.jsonl:2"), "{e}");
    }
}
