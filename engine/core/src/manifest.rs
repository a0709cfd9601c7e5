//! The run manifest (where a run's result came from) and the resume-compatibility check.
//!
//! The manifest records what is needed to reproduce or audit a run: the hash of the resolved
//! pipeline, the Git state of the repository holding the pipeline file, hashes of every dataset
//! and plugin file, the versions of ardpipe, tch and libtorch, the device, seeds, host facts and
//! times. Its JSON Schema is generated from these types and checked in as
//! `schemas/manifest.schema.json` (a test fails when they drift; `ARDPIPE_BLESS=1` rewrites it).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::rundir::{self, RunDirError, io_err};

/// Bumped when a manifest field changes meaning.
pub const MANIFEST_FORMAT: u32 = 1;
/// The tch crate this build links (a test keeps it equal to Cargo.lock's).
pub const TCH_VERSION: &str = "0.26.0";

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// Seconds from one RFC 3339 time to another (to now without an end): a run's wall time from
/// its manifest's `started_at` and `ended_at`.
pub fn seconds_between(start: &str, end: Option<&str>) -> Option<f64> {
    use time::format_description::well_known::Rfc3339;
    let start = time::OffsetDateTime::parse(start, &Rfc3339).ok()?;
    let end = match end {
        Some(e) => time::OffsetDateTime::parse(e, &Rfc3339).ok()?,
        None => time::OffsetDateTime::now_utc(),
    };
    Some((end - start).as_seconds_f64())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 and size of a file, read in 1 MiB chunks (datasets can be larger than memory).
pub fn sha256_file(path: &Path) -> Result<(String, u64), RunDirError> {
    // A FIFO would block the open (or the read) until a writer came, and a device such as
    // /dev/zero would never end: neither can be hashed and then read again.
    let kind = std::fs::metadata(path)
        .map_err(io_err("cannot open", path))?
        .file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt as _;
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(RunDirError::NotAFile {
            path: path.to_path_buf(),
            what,
        });
    }
    let mut f = File::open(path).map_err(io_err("cannot open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err("cannot read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&h.finalize()), total))
}

/// Hash a file, or a directory as the sha256 of its sorted `relative-path\0file-sha256\n` lines
/// (a one-folder-per-class dataset is a directory).
pub fn sha256_path(path: &Path) -> Result<(String, u64), RunDirError> {
    if !path.is_dir() {
        return sha256_file(path);
    }
    let mut files = Vec::new();
    collect_files(path, path, &mut Vec::new(), &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    let mut total = 0;
    for rel in files {
        let (sha, n) = sha256_file(&path.join(&rel))?;
        total += n;
        h.update(rel.to_string_lossy().as_bytes());
        h.update(b"\0");
        h.update(sha.as_bytes());
        h.update(b"\n");
    }
    Ok((hex(&h.finalize()), total))
}

/// Every file under `dir`, relative to `root`. Links to folders are followed, except one that
/// leads back to a folder it lies in (`ancestors`, canonical): that loop is an error, not a
/// walk that doubles at every turn until the kernel's link limit.
fn collect_files(
    root: &Path,
    dir: &Path,
    ancestors: &mut Vec<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), RunDirError> {
    let real = std::fs::canonicalize(dir).map_err(io_err("cannot read directory", dir))?;
    if ancestors.contains(&real) {
        return Err(RunDirError::LinkLoop {
            link: dir.to_path_buf(),
            target: real,
        });
    }
    ancestors.push(real);
    for entry in std::fs::read_dir(dir).map_err(io_err("cannot read directory", dir))? {
        let entry = entry.map_err(io_err("cannot read directory", dir))?;
        let p = entry.path();
        if p.is_dir() {
            collect_files(root, &p, ancestors, out)?;
        } else {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
    ancestors.pop();
    Ok(())
}

/// JSON with object keys sorted at every level and no whitespace: the same value always gives
/// the same bytes, whatever order a serializer emitted (serde_json's `preserve_order` feature
/// may be switched on by any crate in the build).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// sha256 of the canonical JSON of the resolved pipeline.
pub fn pipeline_hash(pipeline: &Value) -> String {
    sha256_hex(canonical_json(pipeline).as_bytes())
}

/// The Git object id of `bytes` as a blob: sha1 of `blob <len>\0<bytes>`, what `git hash-object`
/// prints. Computed here, not by git, so a run records it even where git is not installed;
/// `ardpipe runs --pipeline` matches it against the ids of a file's committed versions.
pub fn git_blob_id(bytes: &[u8]) -> String {
    use sha1::Sha1;
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

/// The Git state of the repository containing a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GitInfo {
    pub commit: String,
    /// Tracked files differ from the commit (untracked files do not count).
    pub dirty: bool,
    pub repository: PathBuf,
    /// The pipeline file itself (absent in manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<GitFile>,
}

/// Where the pipeline file stands against HEAD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GitFile {
    /// Relative to the repository's top folder.
    pub path: PathBuf,
    /// Git knows the file (it is in the index); false for an untracked or ignored file.
    pub tracked: bool,
    /// The file differs from HEAD (staged or not), or is untracked: the run's pipeline is not
    /// the committed one.
    pub dirty: bool,
}

/// Why a manifest has no [`GitInfo`]: the run is still a run, this says why its provenance
/// cannot name a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoGit {
    /// The `git` program could not be started.
    GitNotFound,
    /// The pipeline file is not inside a Git work tree (or the repository has no commit yet).
    NotAWorkTree,
}

/// `None` when git is not installed or the file is not inside a repository: not an error, a
/// run outside version control is still a run.
pub fn git_info(file: &Path) -> Option<GitInfo> {
    git_state(file).ok()
}

/// [`git_info`], or why there is none.
pub fn git_state(file: &Path) -> Result<GitInfo, NoGit> {
    let dir = if file.is_dir() {
        file.to_path_buf()
    } else {
        file.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    let git = |args: &[&str]| -> Result<Option<String>, NoGit> {
        match crate::git::run(Some(&dir), args) {
            Ok(out) => Ok(Some(out.trim_end().to_string())),
            Err(crate::git::GitError::NotFound(_)) => Err(NoGit::GitNotFound),
            Err(crate::git::GitError::Failed(_)) => Ok(None),
        }
    };
    let commit = git(&["rev-parse", "HEAD"])?.ok_or(NoGit::NotAWorkTree)?;
    let repository =
        PathBuf::from(git(&["rev-parse", "--show-toplevel"])?.ok_or(NoGit::NotAWorkTree)?);
    let status = git(&["status", "--porcelain", "--untracked-files=no"])?.unwrap_or_default();
    let file = (!file.is_dir())
        .then(|| git_file(file, &repository, &git))
        .flatten();
    Ok(GitInfo {
        commit,
        dirty: !status.trim().is_empty(),
        repository,
        file,
    })
}

/// Runs git with these arguments in the file's folder: its stdout, `None` when git failed.
type GitCommand<'a> = &'a dyn Fn(&[&str]) -> Result<Option<String>, NoGit>;

/// The file's state from `git status --porcelain --ignored -- FILE`: nothing printed is a clean
/// tracked file, `??` untracked, `!!` ignored, any other code a change against HEAD.
fn git_file(file: &Path, repository: &Path, git: GitCommand<'_>) -> Option<GitFile> {
    let name = file.file_name()?.to_str()?;
    let status = git(&[
        "status",
        "--porcelain",
        "--ignored",
        "--untracked-files=all",
        "--",
        name,
    ])
    .ok()??;
    let path = git(&["ls-files", "--full-name", "--error-unmatch", "--", name])
        .ok()
        .flatten()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let tracked = path.is_some();
    let path = path.unwrap_or_else(|| {
        let real = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let top = std::fs::canonicalize(repository).unwrap_or_else(|_| repository.to_path_buf());
        real.strip_prefix(&top)
            .map_or(real.clone(), Path::to_path_buf)
    });
    Some(GitFile {
        path,
        tracked,
        dirty: !status.trim().is_empty(),
    })
}

/// A hashed input file (dataset or plugin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileHash {
    /// The name the pipeline gives it (dataset or plugin name).
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

impl FileHash {
    pub fn of(name: &str, path: &Path) -> Result<FileHash, RunDirError> {
        let (sha256, bytes) = sha256_path(path)?;
        Ok(FileHash {
            name: name.to_string(),
            path: path.to_path_buf(),
            sha256,
            bytes,
        })
    }
}

/// A plugin library: its bytes' hash and what it says it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PluginHash {
    #[serde(flatten)]
    pub file: FileHash,
    /// From the plugin's descriptor; absent when the library could not be loaded to ask (the
    /// run then fails where the plugin is used, with the reason).
    #[serde(default)]
    pub identity: Option<PluginIdentity>,
}

/// A plugin's own name, version, kind and ABI, as its descriptor reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PluginIdentity {
    pub name: String,
    pub version: String,
    /// `loader` or `metric`.
    pub kind: String,
    pub abi: u32,
}

impl PluginHash {
    /// Hashes the library and asks it who it is (the host loads a library once per process, so
    /// a plugin the run already uses is not loaded again).
    pub fn of(name: &str, path: &Path) -> Result<PluginHash, RunDirError> {
        let file = FileHash::of(name, path)?;
        let identity = match ardpipe_plugin_host::load(path) {
            Ok(plugin) => {
                let info = plugin.info();
                Some(PluginIdentity {
                    name: info.name.clone(),
                    version: info.version.clone(),
                    kind: info.kind.to_string(),
                    abi: info.abi_version,
                })
            }
            Err(e) => {
                tracing::debug!("manifest: plugin `{name}` not identified: {e}");
                None
            }
        };
        Ok(PluginHash { file, identity })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Versions {
    pub ardpipe: String,
    pub tch: String,
    /// Read from the libtorch installation loaded into the process.
    pub libtorch: Option<String>,
}

impl Versions {
    pub fn current() -> Versions {
        let lib = ardpipe_models::runtime::loaded_lib_dir();
        Versions {
            ardpipe: env!("CARGO_PKG_VERSION").to_string(),
            tch: TCH_VERSION.to_string(),
            libtorch: lib.as_deref().and_then(ardpipe_models::runtime::version_of),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostInfo {
    pub hostname: Option<String>,
    pub os: String,
    pub arch: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// libtorch intra-op threads.
    pub torch_threads: i32,
}

impl HostInfo {
    pub fn current() -> HostInfo {
        HostInfo {
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string()),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            torch_threads: tch::get_num_threads(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    /// Stopped early by early stopping.
    Stopped,
    /// Failed: at start (a bad plugin, data or model) or while training. `ardpipe run
    /// --resume` continues it from its last checkpoint once the cause is fixed.
    Failed,
    /// Stopped by SIGINT or SIGTERM after writing a checkpoint: `ardpipe run --resume`
    /// continues it.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resumption {
    pub at: String,
    pub from_step: u64,
    /// The pipeline hash of the resuming invocation (differs when allowed fields changed).
    pub pipeline_sha256: String,
    /// The resuming invocation's processes (absent: one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Processes>,
}

/// A data-parallel invocation: how many processes trained together, over which c10d backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Processes {
    pub world_size: usize,
    /// `gloo` or `nccl`.
    pub backend: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Manifest {
    pub format: u32,
    pub run_name: String,
    /// sha256 of the canonical JSON of `pipeline.resolved.json`.
    pub pipeline_sha256: String,
    pub pipeline_file: Option<PathBuf>,
    /// The pipeline file's Git blob id (`git hash-object FILE`), whether or not it is in Git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_blob: Option<String>,
    pub git: Option<GitInfo>,
    /// Why `git` is null (absent when it is not, and in manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_git: Option<NoGit>,
    pub datasets: Vec<FileHash>,
    pub plugins: Vec<PluginHash>,
    pub versions: Versions,
    /// e.g. `cpu`, `cuda:0 NVIDIA H200`.
    pub device: String,
    /// Every seed in use, by role (`seed`, `train`, …).
    pub seeds: BTreeMap<String, u64>,
    pub host: HostInfo,
    /// Data parallelism at the start (absent: one process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Processes>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub status: RunStatus,
    #[serde(default)]
    pub resumptions: Vec<Resumption>,
}

/// What the caller knows when a run starts.
#[derive(Debug, Clone)]
pub struct ManifestInputs<'a> {
    pub run_name: &'a str,
    pub pipeline: &'a Value,
    pub pipeline_file: Option<&'a Path>,
    /// `(name, path)` of every dataset file or folder.
    pub datasets: &'a [(String, PathBuf)],
    /// `(name, path)` of every plugin library.
    pub plugins: &'a [(String, PathBuf)],
    pub device: &'a str,
    pub seeds: BTreeMap<String, u64>,
    pub processes: Option<Processes>,
}

impl Manifest {
    /// Gather everything (hashes every dataset and plugin: time grows with their size).
    pub fn collect(inputs: &ManifestInputs<'_>) -> Result<Manifest, RunDirError> {
        let hash_all = |items: &[(String, PathBuf)]| {
            items
                .iter()
                .map(|(name, path)| FileHash::of(name, path))
                .collect::<Result<Vec<_>, _>>()
        };
        let git = inputs.pipeline_file.map(git_state);
        Ok(Manifest {
            format: MANIFEST_FORMAT,
            run_name: inputs.run_name.to_string(),
            pipeline_sha256: pipeline_hash(inputs.pipeline),
            pipeline_file: inputs.pipeline_file.map(Path::to_path_buf),
            // An unreadable file has no id; the check already read it, so this is a race only.
            pipeline_blob: inputs
                .pipeline_file
                .and_then(|f| std::fs::read(f).ok())
                .map(|b| git_blob_id(&b)),
            git: git.clone().and_then(Result::ok),
            no_git: git.and_then(Result::err),
            datasets: hash_all(inputs.datasets)?,
            plugins: inputs
                .plugins
                .iter()
                .map(|(name, path)| PluginHash::of(name, path))
                .collect::<Result<_, _>>()?,
            versions: Versions::current(),
            device: inputs.device.to_string(),
            seeds: inputs.seeds.clone(),
            host: HostInfo::current(),
            processes: inputs.processes.clone(),
            started_at: now_rfc3339(),
            ended_at: None,
            status: RunStatus::Running,
            resumptions: vec![],
        })
    }

    pub fn finish(&mut self, status: RunStatus) {
        self.status = status;
        self.ended_at = Some(now_rfc3339());
    }

    pub fn record_resume(
        &mut self,
        from_step: u64,
        pipeline: &Value,
        processes: Option<Processes>,
    ) {
        self.status = RunStatus::Running;
        self.ended_at = None;
        self.resumptions.push(Resumption {
            at: now_rfc3339(),
            from_step,
            pipeline_sha256: pipeline_hash(pipeline),
            processes,
        });
    }

    pub fn write(&self, path: &Path) -> Result<(), RunDirError> {
        rundir::write_json_atomic(path, self)
    }

    pub fn read(path: &Path) -> Result<Manifest, RunDirError> {
        let v = rundir::read_json(path)?;
        serde_json::from_value(v).map_err(|source| RunDirError::BadJson {
            what: path.display().to_string(),
            source,
        })
    }
}

/// The JSON Schema of [`Manifest`] (checked in as `schemas/manifest.schema.json`).
pub fn manifest_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Manifest)).expect("a schema is JSON")
}

// ---- resume compatibility ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allowed,
    Refused,
}

/// One field that differs between the run's pipeline and the resuming one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// e.g. `train.lr.then.from`, `datasets[0].path`.
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub verdict: Verdict,
    pub reason: String,
}

/// The answer to "may this run be resumed with this pipeline?", field by field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResumeCheck {
    pub differences: Vec<Difference>,
}

impl ResumeCheck {
    pub fn is_compatible(&self) -> bool {
        self.differences
            .iter()
            .all(|d| d.verdict == Verdict::Allowed)
    }

    pub fn refused(&self) -> impl Iterator<Item = &Difference> {
        self.differences
            .iter()
            .filter(|d| d.verdict == Verdict::Refused)
    }

    /// One line per refused difference, for an error message.
    pub fn refused_lines(&self) -> String {
        self.refused()
            .map(|d| {
                format!(
                    "  - {}: was {}, now {} ({})",
                    d.path,
                    show(&d.old),
                    show(&d.new),
                    d.reason
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => {
            let s = canonical_json(v);
            if s.len() > 80 {
                format!("{}…", s.chars().take(77).collect::<String>())
            } else {
                s
            }
        }
    }
}

impl fmt::Display for ResumeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.differences.is_empty() {
            return write!(f, "the pipeline is unchanged");
        }
        if self.is_compatible() {
            writeln!(
                f,
                "the pipeline changed only in fields a resume may change:"
            )?;
        } else {
            writeln!(
                f,
                "the pipeline changed in ways that make resuming this run wrong (a resumed run must end exactly as an uninterrupted one); undo the marked changes, or start a new run:"
            )?;
        }
        for d in &self.differences {
            let mark = match d.verdict {
                Verdict::Allowed => "  ok ",
                Verdict::Refused => "  ✗  ",
            };
            writeln!(
                f,
                "{mark}{}: {} → {} ({})",
                d.path,
                show(&d.old),
                show(&d.new),
                d.reason
            )?;
        }
        Ok(())
    }
}

/// Which differing fields a resume tolerates. Patterns are dotted paths that also cover
/// everything below them; `*` matches one segment (an object key or an array index), `**` any
/// number of segments.
#[derive(Debug, Clone)]
pub struct ResumePolicy {
    allowed: Vec<(String, &'static str)>,
    reasons: Vec<(String, &'static str)>,
}

impl Default for ResumePolicy {
    /// Fields of the DSL's resolved pipeline (`dsl/src/pipeline.rs`) that do not change what
    /// is trained; everything else refuses.
    fn default() -> ResumePolicy {
        let allowed = [
            (
                "name",
                "the run keeps its directory; only the label changes",
            ),
            ("description", "documentation only"),
            (
                "language",
                "the language version changes how a file is written, not what it resolves to",
            ),
            (
                "file",
                "the pipeline file moved; its content is what counts",
            ),
            (
                "train.log_every",
                "logging cadence does not change training",
            ),
            ("train.eval_every", "evaluation does not change the weights"),
            (
                "train.checkpoint_every",
                "checkpoint cadence does not change training",
            ),
            (
                "evaluate.batch_size",
                "evaluation batching does not change the weights",
            ),
            (
                "evaluate.metrics",
                "extra or fewer metrics do not change the weights",
            ),
            ("output.**", "outputs are written after training"),
            (
                "distributed.**",
                "how processes exchange gradients does not change what they compute",
            ),
        ];
        let reasons = [
            ("model.**", "a different base model or model setting"),
            (
                "adapters.**",
                "a different adapter placement, method or regulariser",
            ),
            ("datasets.**", "different training data or preprocessing"),
            (
                "plugins.**",
                "a different plugin could produce different data",
            ),
            ("train.lr.**", "a different learning-rate schedule"),
            ("train.alpha_lr.**", "a different α learning-rate schedule"),
            ("train.optimizer.**", "a different optimizer"),
            ("train.alpha_optimizer.**", "a different α optimizer"),
            (
                "train.duration.**",
                "a different training length moves every schedule",
            ),
            (
                "train.batch_size",
                "a different batch size changes every step",
            ),
            (
                "train.grad_accum",
                "a different accumulation changes every step",
            ),
            (
                "train.seed",
                "a different seed changes data order and dropout",
            ),
            ("seed", "a different seed changes data order and dropout"),
        ];
        ResumePolicy {
            allowed: allowed.iter().map(|(p, r)| (p.to_string(), *r)).collect(),
            reasons: reasons.iter().map(|(p, r)| (p.to_string(), *r)).collect(),
        }
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.split(['.', '[', ']'])
        .filter(|s| !s.is_empty())
        .collect()
}

fn matches(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(&"**"), _) => {
            matches(&pattern[1..], path) || (!path.is_empty() && matches(pattern, &path[1..]))
        }
        (Some(p), Some(s)) if *p == "*" || p == s => matches(&pattern[1..], &path[1..]),
        _ => false,
    }
}

impl ResumePolicy {
    /// Also tolerate changes under `pattern`.
    pub fn allow(mut self, pattern: &str, reason: &'static str) -> ResumePolicy {
        self.allowed.push((pattern.to_string(), reason));
        self
    }

    fn judge(&self, path: &str) -> (Verdict, String) {
        let segs = segments(path);
        let covers = |pattern: &str| {
            let mut p = segments(pattern);
            p.push("**");
            matches(&p, &segs)
        };
        if let Some((_, r)) = self.allowed.iter().find(|(p, _)| covers(p)) {
            return (Verdict::Allowed, r.to_string());
        }
        let why = self
            .reasons
            .iter()
            .find(|(p, _)| covers(p))
            .map_or("changes what is trained", |(_, r)| r);
        (Verdict::Refused, why.to_string())
    }

    /// Compare the run's resolved pipeline with the resuming invocation's.
    pub fn check(&self, old: &Value, new: &Value) -> ResumeCheck {
        let differences = json_diff(old, new)
            .into_iter()
            .map(|(path, old, new)| {
                let (verdict, reason) = self.judge(&path);
                Difference {
                    path,
                    old,
                    new,
                    verdict,
                    reason,
                }
            })
            .collect();
        ResumeCheck { differences }
    }
}

/// [`ResumePolicy::check`] with the default policy.
pub fn check_resume(old: &Value, new: &Value) -> ResumeCheck {
    ResumePolicy::default().check(old, new)
}

/// Data whose bytes changed under the same path also refuses: compare the run's manifest
/// hashes with fresh ones.
pub fn check_inputs(old: &Manifest, datasets: &[FileHash], plugins: &[FileHash]) -> ResumeCheck {
    let mut differences = Vec::new();
    let old_plugins: Vec<FileHash> = old.plugins.iter().map(|p| p.file.clone()).collect();
    for (kind, before, now) in [
        ("datasets", &old.datasets[..], datasets),
        ("plugins", &old_plugins[..], plugins),
    ] {
        for b in before {
            let n = now.iter().find(|n| n.name == b.name);
            if n.map(|n| &n.sha256) != Some(&b.sha256) {
                differences.push(Difference {
                    path: format!("{kind}[{}] content ({})", b.name, b.path.display()),
                    old: Some(Value::String(b.sha256.clone())),
                    new: n.map(|n| Value::String(n.sha256.clone())),
                    verdict: Verdict::Refused,
                    reason: "the file's bytes changed since the run started (sha256 differs)"
                        .into(),
                });
            }
        }
    }
    ResumeCheck { differences }
}

/// Every leaf that differs between two JSON values, as `(dotted path, old, new)` in key order:
/// objects are compared key by key, arrays of equal length item by item, numbers by value
/// (1 and 1.0 are the same). What resume checks and `ardpipe diff` report.
pub fn json_diff(old: &Value, new: &Value) -> Vec<(String, Option<Value>, Option<Value>)> {
    let mut out = Vec::new();
    diff(String::new(), Some(old), Some(new), &mut out);
    out
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn diff(
    path: String,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<(String, Option<Value>, Option<Value>)>,
) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(p, a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(format!("{path}[{i}]"), Some(x), Some(y), out);
            }
        }
        (Some(a), Some(b)) if same(a, b) => {}
        (None, None) => {}
        (a, b) => out.push((path, a.cloned(), b.cloned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::process::Command;

    fn pipeline() -> Value {
        json!({
            "format": 1, "name": "quick", "description": null, "seed": 7,
            "file": "/p/quick.ard",
            "model": {"path": "/m/minilm", "dtype": "f32"},
            "train": {"lr": {"kind": "constant", "value": 0.001}, "batch_size": 32,
                       "eval_every": {"unit": "steps", "value": 50}, "seed": 7},
            "datasets": [{"name": "tweets", "path": "/d/t.csv"}],
            "output": {"dir": "runs/{name}", "report": true, "export": []}
        })
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#
        );
        let b: Value =
            serde_json::from_str(r#"{"a":{"y":[1,{"c":3,"d":2}],"x":null},"b":1}"#).unwrap();
        assert_eq!(pipeline_hash(&a), pipeline_hash(&b));
        // sha256 of the canonical text, checked against the standard test vector form.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(pipeline_hash(&json!({})), sha256_hex(b"{}"));
    }

    #[test]
    fn file_and_directory_hashes_are_streamed_and_stable() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.txt");
        std::fs::write(&f, "abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                3
            )
        );
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/b.txt"), "xyz").unwrap();
        let (h1, n) = sha256_path(d.path()).unwrap();
        assert_eq!(n, 6);
        std::fs::write(d.path().join("sub/b.txt"), "xyZ").unwrap();
        assert_ne!(sha256_path(d.path()).unwrap().0, h1);
        let e = sha256_file(&d.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("cannot open"), "{e}");
    }

    #[test]
    fn git_info_of_a_fresh_repository_tracks_dirty_state() {
        if Command::new("git").arg("--version").output().is_err() {
            // Absent git is not an error for the manifest either.
            assert!(git_info(Path::new("/")).is_none());
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(d.path())
                .args(args)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        run(&["init", "-q"]);
        let file = d.path().join("p.ard");
        std::fs::write(&file, "model {}\n").unwrap();
        run(&["add", "p.ard"]);
        run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "x",
        ]);
        let g = git_info(&file).unwrap();
        assert_eq!(g.commit.len(), 40);
        assert!(!g.dirty);
        let f = g.file.unwrap();
        assert_eq!(
            (f.path.as_path(), f.tracked, f.dirty),
            (Path::new("p.ard"), true, false)
        );
        // The blob id is the one git gives the same bytes.
        let out = Command::new("git")
            .arg("-C")
            .arg(d.path())
            .args(["hash-object", "p.ard"])
            .output()
            .unwrap();
        let by_git = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(git_blob_id(b"model {}\n"), by_git);
        std::fs::write(d.path().join("untracked"), "x").unwrap();
        assert!(!git_info(&file).unwrap().dirty);
        let u = git_info(&d.path().join("untracked")).unwrap().file.unwrap();
        assert_eq!((u.tracked, u.dirty), (false, true), "{u:?}");
        std::fs::write(&file, "model { changed }\n").unwrap();
        let g = git_info(&file).unwrap();
        assert!(g.dirty && g.file.unwrap().dirty);
        let outside = tempfile::tempdir().unwrap();
        assert!(git_info(&outside.path().join("x.ard")).is_none());
        assert_eq!(
            git_state(&outside.path().join("x.ard")),
            Err(NoGit::NotAWorkTree)
        );
    }

    #[test]
    fn git_blob_id_is_gits_object_id() {
        // `printf 'hello\n' | git hash-object --stdin` and the empty blob's well-known id.
        assert_eq!(
            git_blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn manifest_collects_writes_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("t.csv");
        std::fs::write(&data, "source_id,text\nbbc-1,hello\n").unwrap();
        let p = pipeline();
        let datasets = vec![("tweets".to_string(), data.clone())];
        let mut m = Manifest::collect(&ManifestInputs {
            run_name: "quick",
            pipeline: &p,
            pipeline_file: None,
            datasets: &datasets,
            plugins: &[],
            device: "cpu",
            seeds: BTreeMap::from([("seed".to_string(), 7)]),
            processes: None,
        })
        .unwrap();
        assert_eq!(m.pipeline_sha256, pipeline_hash(&p));
        assert_eq!(m.datasets[0].bytes, 27);
        assert_eq!(m.versions.tch, TCH_VERSION);
        assert!(
            m.versions
                .libtorch
                .as_deref()
                .is_some_and(|v| v.starts_with("2.13")),
            "{:?}",
            m.versions
        );
        assert!(m.host.cpus >= 1 && m.host.torch_threads >= 1);
        m.record_resume(
            40,
            &p,
            Some(Processes {
                world_size: 2,
                backend: "gloo".into(),
            }),
        );
        m.finish(RunStatus::Completed);
        let path = d.path().join("manifest.json");
        m.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), m);

        // Same bytes: nothing to report. Changed bytes under the same path: refused.
        let same_hash = vec![FileHash::of("tweets", &data).unwrap()];
        assert!(check_inputs(&m, &same_hash, &[]).is_compatible());
        std::fs::write(&data, "source_id,text\nbbc-1,HELLO\n").unwrap();
        let changed = vec![FileHash::of("tweets", &data).unwrap()];
        let c = check_inputs(&m, &changed, &[]);
        assert!(!c.is_compatible());
        assert!(c.to_string().contains("sha256 differs"), "{c}");
    }

    #[test]
    fn tch_version_matches_cargo_lock() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
                .unwrap();
        let pos = lock
            .find("name = \"tch\"\nversion = \"")
            .expect("tch in Cargo.lock");
        let rest = &lock[pos + "name = \"tch\"\nversion = \"".len()..];
        assert_eq!(&rest[..rest.find('"').unwrap()], TCH_VERSION);
    }

    #[test]
    fn schema_file_has_not_drifted() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/manifest.schema.json"
        );
        let generated = serde_json::to_string_pretty(&manifest_schema()).unwrap() + "\n";
        if std::env::var_os("ARDPIPE_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        // Compared as JSON values: key order depends on serde_json features, meaning does not.
        let on_disk: Option<Value> = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        assert!(
            on_disk.as_ref() == Some(&manifest_schema()),
            "schemas/manifest.schema.json is out of date with the Manifest type; regenerate it with `ARDPIPE_BLESS=1 cargo test -p ardpipe-engine manifest` and commit it"
        );
    }

    #[test]
    fn unchanged_pipeline_is_compatible() {
        let c = check_resume(&pipeline(), &pipeline());
        assert!(c.is_compatible());
        assert!(c.differences.is_empty());
        assert_eq!(c.to_string(), "the pipeline is unchanged");
    }

    #[test]
    fn output_and_cadence_changes_are_allowed_with_reasons() {
        let mut new = pipeline();
        new["train"]["eval_every"]["value"] = json!(100);
        new["output"]["report"] = json!(false);
        new["description"] = json!("now documented");
        let c = check_resume(&pipeline(), &new);
        assert!(c.is_compatible(), "{c}");
        let paths: Vec<_> = c.differences.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            ["description", "output.report", "train.eval_every.value"]
        );
        assert!(
            c.to_string()
                .contains("evaluation does not change the weights")
        );
    }

    #[test]
    fn learning_rate_model_and_data_changes_refuse_and_say_why() {
        let mut new = pipeline();
        new["train"]["lr"]["value"] = json!(0.002);
        new["model"]["path"] = json!("/m/other");
        new["datasets"][0]["path"] = json!("/d/other.csv");
        new["train"]["eval_every"]["value"] = json!(10);
        let c = check_resume(&pipeline(), &new);
        assert!(!c.is_compatible());
        let refused: Vec<_> = c
            .refused()
            .map(|d| (d.path.as_str(), d.reason.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                (
                    "datasets[0].path",
                    "different training data or preprocessing"
                ),
                ("model.path", "a different base model or model setting"),
                ("train.lr.value", "a different learning-rate schedule"),
            ]
        );
        let text = c.to_string();
        assert!(text.contains("✗  train.lr.value: 0.001 → 0.002"), "{text}");
        assert!(
            text.contains("ok train.eval_every.value: 50 → 10"),
            "{text}"
        );
    }

    #[test]
    fn added_removed_and_reshaped_fields_are_differences() {
        let mut new = pipeline();
        new["train"]["clip"] = json!(1.0);
        new["datasets"] = json!([]);
        new.as_object_mut().unwrap().remove("seed");
        let c = check_resume(&pipeline(), &new);
        let d: Vec<_> = c
            .differences
            .iter()
            .map(|d| (d.path.as_str(), d.old.is_some(), d.new.is_some()))
            .collect();
        assert_eq!(
            d,
            [
                ("datasets", true, true),
                ("seed", true, false),
                ("train.clip", false, true)
            ]
        );
        assert!(!c.is_compatible());
        // A 1 vs 1.0 difference is no difference.
        let mut f = pipeline();
        f["train"]["batch_size"] = json!(32.0);
        assert!(check_resume(&pipeline(), &f).differences.is_empty());
    }

    #[test]
    fn policy_patterns_and_extra_allowances() {
        assert!(matches(
            &segments("output.**"),
            &segments("output.export[0].dir")
        ));
        assert!(matches(&segments("a.*.c"), &segments("a[3].c")));
        assert!(!matches(&segments("a.*.c"), &segments("a.b.d.c")));
        let mut new = pipeline();
        new["model"]["dtype"] = json!("bf16");
        let policy =
            ResumePolicy::default().allow("model.dtype", "precision is a run-time choice here");
        assert!(policy.check(&pipeline(), &new).is_compatible());
        assert!(!check_resume(&pipeline(), &new).is_compatible());
    }
}
