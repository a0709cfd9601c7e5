//! Checkpoints holding **all** training state, written atomically as a whole.
//!
//! ```text
//! checkpoints/
//!   step-0000120/            a complete checkpoint (the rename into this name is the commit)
//!     tensors.safetensors    adapters, α, optimizer moments, EMAs, … (names chosen by the trainer)
//!     state.json             step, epoch, data position, RNG streams, early stopping, … + the
//!                            size and sha256 of tensors.safetensors
//!   step-0000150.partial/    being written, or left by a killed process: never loaded
//!   rejected/step-9000000/   a folder that looked like a checkpoint but did not verify, moved
//!                            aside (never deleted) with the reason in `rejected/*.why`
//!   latest                   "step-0000120": the newest checkpoint, for people and tools
//! ```
//!
//! [`Checkpoints::choose`] trusts only directories whose name has no suffix, whose `state.json`
//! parses, names the step of its folder and only files inside it, and whose tensor file matches
//! the recorded size and hash: a crash at any instant of a save leaves the previous checkpoint as
//! the one that loads. A save prunes only checkpoints that verify and are older than the one it
//! wrote, so a stray folder can never cost a real checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::manifest::sha256_hex;
use crate::rng::RngStreams;
use crate::rundir::{self, RunDirError, fsync_dir, io_err, write_atomic, write_json_atomic};

pub const TENSORS_FILE: &str = "tensors.safetensors";
pub const STATE_FILE: &str = "state.json";
pub const LATEST: &str = "latest";
/// Bumped when the sidecar changes incompatibly; older checkpoints are then refused, not guessed.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("tensor `{name}`: {why}")]
    Tensor { name: String, why: String },
    #[error("{path}: not a valid safetensors file: {why}")]
    SafeTensors { path: PathBuf, why: String },
    #[error("{path}: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error(
        "keep_last must be at least 1 (0 would delete the checkpoint just written); set checkpoint keep_last ≥ 1"
    )]
    KeepNone,
    #[error(
        "{path}: {STATE_FILE} names the tensor file `{named}`, which is not a plain file name inside the checkpoint's folder; \
         a checkpoint may only name files of its own folder (no `/`, `..` or absolute paths): this folder was not written by ardpipe, remove it or move it out of checkpoints/"
    )]
    OutsideFolder { path: PathBuf, named: String },
}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// Where the data loader is: a position that, with `ardpipe_data::epoch_permutation` of
/// `(seed, epoch)`, replays the same batches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DataPosition {
    pub epoch: u64,
    /// Examples of this epoch already consumed (in permuted order).
    pub examples_consumed: u64,
}

/// Early-stopping bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EarlyStoppingState {
    pub metric: String,
    pub best: Option<f64>,
    pub best_step: Option<u64>,
    pub evals_without_improvement: u32,
}

/// Every non-tensor piece of training state. Tensor state (adapter weights, α, optimizer
/// moments, α EMAs) travels beside it in the safetensors file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TrainingState {
    /// Optimizer steps taken.
    pub step: u64,
    pub data: DataPosition,
    pub rng: RngStreams,
    #[serde(default)]
    pub early_stopping: Option<EarlyStoppingState>,
    /// Scalar running averages (e.g. a smoothed loss for the progress bar).
    #[serde(default)]
    pub ema: BTreeMap<String, f64>,
    /// Class names in label-id order, so a resumed run maps labels identically.
    #[serde(default)]
    pub label_vocab: Option<Vec<String>>,
    /// Optimizer step counters and anything else the trainer owns (schedule state, meta-mode
    /// phase, compaction history): stored and returned verbatim.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl TrainingState {
    pub fn new(seed: u64) -> TrainingState {
        TrainingState {
            step: 0,
            data: DataPosition::default(),
            rng: RngStreams::new(seed),
            early_stopping: None,
            ema: BTreeMap::new(),
            label_vocab: None,
            extra: BTreeMap::new(),
        }
    }
}

/// The sidecar as written: the state plus what is needed to check the tensor file.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sidecar {
    pub format_version: u32,
    pub created_at: String,
    pub tensors_file: String,
    pub tensors_bytes: u64,
    pub tensors_sha256: String,
    pub tensor_count: usize,
    pub state: TrainingState,
}

/// A loaded checkpoint. Tensors are on the CPU; the trainer moves them where it needs them.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    /// sha256 of its tensor file, as verified: what names this exact checkpoint.
    pub tensors_sha256: String,
    pub state: TrainingState,
    pub tensors: Vec<(String, Tensor)>,
}

impl Checkpoint {
    pub fn step(&self) -> u64 {
        self.state.step
    }

    /// The tensor named `name`, or an error naming what the checkpoint does hold.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| CheckpointError::Tensor {
                name: name.to_string(),
                why: format!(
                    "not in checkpoint {} (it holds {} tensors{}); was it written by a different pipeline?",
                    self.path.display(),
                    self.tensors.len(),
                    self.tensors
                        .first()
                        .map(|(n, _)| format!(", e.g. `{n}`"))
                        .unwrap_or_default()
                ),
            })
    }
}

pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:07}")
}

fn parse_step_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The checkpoints folder of a run, with its retention policy.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
    keep_last: usize,
}

impl Checkpoints {
    /// `keep_last`: how many complete checkpoints survive a save (at least 1).
    pub fn new(dir: &Path, keep_last: usize) -> Result<Checkpoints> {
        if keep_last == 0 {
            return Err(CheckpointError::KeepNone);
        }
        fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
        Ok(Checkpoints {
            dir: dir.to_path_buf(),
            keep_last,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Save a checkpoint for `state.step`: write into `step-N.partial/`, fsync, rename to
    /// `step-N/`, point `latest` at it, then prune old ones. Returns the checkpoint's path.
    pub fn save<S: AsRef<str>>(
        &self,
        state: &TrainingState,
        tensors: &[(S, &Tensor)],
    ) -> Result<PathBuf> {
        let name = step_dir_name(state.step);
        let final_dir = self.dir.join(&name);
        let partial = self.dir.join(format!("{name}.partial"));
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(io_err("cannot remove stale", &partial))?;
        }
        fs::create_dir(&partial).map_err(io_err("cannot create", &partial))?;

        let bytes = serialize_tensors(tensors, None)?;
        write_atomic(&partial.join(TENSORS_FILE), &bytes)?;
        rundir::test_pause(&format!("checkpoint-partial@{}", state.step), false);
        let sidecar = Sidecar {
            format_version: FORMAT_VERSION,
            created_at: crate::manifest::now_rfc3339(),
            tensors_file: TENSORS_FILE.into(),
            tensors_bytes: bytes.len() as u64,
            tensors_sha256: sha256_hex(&bytes),
            tensor_count: tensors.len(),
            state: state.clone(),
        };
        drop(bytes);
        write_json_atomic(&partial.join(STATE_FILE), &sidecar)?;
        fsync_dir(&partial)?;

        // Saving a step that already exists (a resumed run re-reaching it): move the old one
        // aside first, so there is no instant without a complete checkpoint for this step.
        let aside = self.dir.join(format!("{name}.old-{}", std::process::id()));
        let had_old = final_dir.exists();
        if had_old {
            fs::rename(&final_dir, &aside).map_err(io_err("cannot move aside", &final_dir))?;
        }
        fs::rename(&partial, &final_dir)
            .map_err(io_err("cannot rename checkpoint into", &final_dir))?;
        fsync_dir(&self.dir)?;
        if had_old {
            fs::remove_dir_all(&aside).map_err(io_err("cannot remove", &aside))?;
        }
        rundir::test_pause(&format!("checkpoint-committed@{}", state.step), false);
        write_atomic(&self.dir.join(LATEST), format!("{name}\n").as_bytes())?;
        self.prune(state.step)?;
        Ok(final_dir)
    }

    /// Steps of the complete-looking checkpoint directories, ascending (not yet verified).
    pub fn steps(&self) -> Result<Vec<u64>> {
        let mut steps = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(steps),
            Err(e) => return Err(io_err("cannot read", &self.dir)(e).into()),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("cannot read", &self.dir))?;
            if let Some(step) = entry.file_name().to_str().and_then(parse_step_dir)
                && entry.path().is_dir()
            {
                steps.push(step);
            }
        }
        steps.sort_unstable();
        Ok(steps)
    }

    /// After the save of `written`: keep the newest `keep_last` checkpoints at or below it that
    /// verify (sidecar and size; the hash is checked when one is loaded), and remove leftovers
    /// of interrupted saves. A folder that does not verify is moved to `rejected/`, never
    /// deleted; one above `written` that verifies is left alone (it is not this run's to judge).
    fn prune(&self, written: u64) -> Result<()> {
        let mut kept = Vec::new();
        for step in self.steps()? {
            let dir = self.dir.join(step_dir_name(step));
            match quick_verify(&dir, step) {
                Ok(()) if step <= written => kept.push(step),
                Ok(()) => {}
                Err(e) => {
                    self.reject(&dir, &e.to_string())?;
                }
            }
        }
        let cut = kept.len().saturating_sub(self.keep_last);
        for step in &kept[..cut] {
            let p = self.dir.join(step_dir_name(*step));
            fs::remove_dir_all(&p).map_err(io_err("cannot remove old checkpoint", &p))?;
        }
        for entry in fs::read_dir(&self.dir).map_err(io_err("cannot read", &self.dir))? {
            let entry = entry.map_err(io_err("cannot read", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("step-") && (name.ends_with(".partial") || name.contains(".old-")) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// Move a folder that does not verify to `rejected/NAME` (`NAME.2`, … when taken), with the
    /// reason beside it in `NAME.why`, and say so. Returns where it went.
    pub fn reject(&self, dir: &Path, why: &str) -> Result<PathBuf> {
        let rejected = self.dir.join(REJECTED);
        fs::create_dir_all(&rejected).map_err(io_err("cannot create", &rejected))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into());
        let mut to = rejected.join(&name);
        let mut k = 2;
        while to.exists() {
            to = rejected.join(format!("{name}.{k}"));
            k += 1;
        }
        fs::rename(dir, &to).map_err(io_err("cannot move aside", dir))?;
        let note = to.with_file_name(format!(
            "{}.why",
            to.file_name().unwrap_or_default().to_string_lossy()
        ));
        write_atomic(&note, format!("{why}\n").as_bytes())?;
        fsync_dir(&self.dir)?;
        tracing::warn!(
            "{} is not a usable checkpoint ({why}); moved it to {}",
            dir.display(),
            to.display()
        );
        Ok(to)
    }
    /// Load and verify the checkpoint of one step.
    pub fn load(&self, step: u64) -> Result<Checkpoint> {
        load_dir(&self.dir.join(step_dir_name(step)))
    }

    /// The newest checkpoint that is complete and intact; `None` when there is none. Broken
    /// ones (a crash, a full disk, a hand edit) are skipped with a warning naming the reason.
    /// Reads only: see [`Checkpoints::choose`] for what a resuming owner does.
    pub fn load_latest(&self) -> Result<Option<Checkpoint>> {
        Ok(self.choose(false)?.checkpoint)
    }

    /// The checkpoint a resume continues from: the newest that loads and verifies. With
    /// `move_rejected`, every newer folder that failed is moved to `rejected/` (so the next
    /// save cannot mistake it for a checkpoint); either way the reasons come back, for the
    /// error when nothing is usable.
    pub fn choose(&self, move_rejected: bool) -> Result<Choice> {
        let mut rejected = Vec::new();
        for step in self.steps()?.into_iter().rev() {
            let dir = self.dir.join(step_dir_name(step));
            match load_dir(&dir).and_then(|c| {
                if c.state.step == step {
                    Ok(c)
                } else {
                    Err(CheckpointError::Corrupt {
                        path: dir.clone(),
                        why: format!(
                            "its {STATE_FILE} is for step {}, not the step {step} its name says",
                            c.state.step
                        ),
                    })
                }
            }) {
                Ok(c) => {
                    if move_rejected {
                        self.point_latest_at(Some(step))?;
                    }
                    return Ok(Choice {
                        checkpoint: Some(c),
                        rejected,
                    });
                }
                Err(e) => {
                    let why = match &e {
                        CheckpointError::Corrupt { why, .. } => why.clone(),
                        other => other.to_string(),
                    };
                    let moved = if move_rejected {
                        Some(self.reject(&dir, &why)?)
                    } else {
                        tracing::warn!("skipping checkpoint at step {step}: {e}");
                        None
                    };
                    rejected.push(Rejected {
                        path: dir,
                        why,
                        moved_to: moved,
                    });
                }
            }
        }
        if move_rejected {
            self.point_latest_at(None)?;
        }
        Ok(Choice {
            checkpoint: None,
            rejected,
        })
    }

    /// `latest` names `step`'s checkpoint (or is removed when there is none), so it never names
    /// a folder that was moved aside.
    fn point_latest_at(&self, step: Option<u64>) -> Result<()> {
        let latest = self.dir.join(LATEST);
        match step {
            Some(step) => {
                let name = format!("{}\n", step_dir_name(step));
                if fs::read_to_string(&latest).ok().as_deref() != Some(name.as_str()) {
                    write_atomic(&latest, name.as_bytes())?;
                }
            }
            None => match fs::remove_file(&latest) {
                Ok(()) => fsync_dir(&self.dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot remove", &latest)(e).into()),
            },
        }
        Ok(())
    }
}

/// Where the folders that failed verification go.
pub const REJECTED: &str = "rejected";

/// A folder named like a checkpoint that is not one, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub path: PathBuf,
    pub why: String,
    pub moved_to: Option<PathBuf>,
}

/// What [`Checkpoints::choose`] found.
#[derive(Debug)]
pub struct Choice {
    pub checkpoint: Option<Checkpoint>,
    pub rejected: Vec<Rejected>,
}

/// [`Checkpoints::load_latest`] for a run directory.
pub fn load_latest(run_dir: &Path) -> Result<Option<Checkpoint>> {
    Checkpoints::of_run(run_dir).load_latest()
}

impl Checkpoints {
    /// The checkpoints of a run directory, for reading (nothing is created).
    pub fn of_run(run_dir: &Path) -> Checkpoints {
        Checkpoints {
            dir: run_dir.join(rundir::CHECKPOINTS),
            keep_last: usize::MAX,
        }
    }
}

/// The sidecar of a checkpoint folder, with its file reference checked.
fn read_sidecar(dir: &Path) -> Result<Sidecar> {
    let corrupt = |why: String| CheckpointError::Corrupt {
        path: dir.to_path_buf(),
        why,
    };
    let state_path = dir.join(STATE_FILE);
    let raw = fs::read(&state_path).map_err(|e| {
        corrupt(format!(
            "cannot read {STATE_FILE}: {e} (the save was interrupted)"
        ))
    })?;
    let sidecar: Sidecar = serde_json::from_slice(&raw)
        .map_err(|e| corrupt(format!("{STATE_FILE} is not valid: {e}")))?;
    if sidecar.format_version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "checkpoint format {} is not the format {FORMAT_VERSION} this ardpipe reads; resume with the ardpipe version that wrote it",
            sidecar.format_version
        )));
    }
    if !is_plain_file_name(&sidecar.tensors_file) {
        return Err(CheckpointError::OutsideFolder {
            path: dir.to_path_buf(),
            named: sidecar.tensors_file.clone(),
        });
    }
    Ok(sidecar)
}

/// One normal path component: no separator, no `.`/`..`, not absolute, not empty.
fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && !name.contains('/')
        && !name.contains('\\')
}

/// The cheap checks of a checkpoint folder (sidecar, its step, the tensor file's size), for
/// pruning: the hash is checked when a checkpoint is loaded.
fn quick_verify(dir: &Path, step: u64) -> Result<()> {
    let sidecar = read_sidecar(dir)?;
    let corrupt = |why: String| CheckpointError::Corrupt {
        path: dir.to_path_buf(),
        why,
    };
    if sidecar.state.step != step {
        return Err(corrupt(format!(
            "its {STATE_FILE} is for step {}, not the step {step} its name says",
            sidecar.state.step
        )));
    }
    let len = fs::metadata(dir.join(&sidecar.tensors_file))
        .map_err(|e| corrupt(format!("cannot read {}: {e}", sidecar.tensors_file)))?
        .len();
    if len != sidecar.tensors_bytes {
        return Err(corrupt(format!(
            "{} has {len} bytes, the sidecar recorded {} (truncated write)",
            sidecar.tensors_file, sidecar.tensors_bytes
        )));
    }
    Ok(())
}

/// Load one checkpoint directory, checking the sidecar and the tensor file's size and hash.
pub fn load_dir(dir: &Path) -> Result<Checkpoint> {
    let corrupt = |why: String| CheckpointError::Corrupt {
        path: dir.to_path_buf(),
        why,
    };
    let sidecar = read_sidecar(dir)?;
    let tensor_path = dir.join(&sidecar.tensors_file);
    let bytes = fs::read(&tensor_path)
        .map_err(|e| corrupt(format!("cannot read {}: {e}", sidecar.tensors_file)))?;
    if bytes.len() as u64 != sidecar.tensors_bytes {
        return Err(corrupt(format!(
            "{} has {} bytes, the sidecar recorded {} (truncated write)",
            sidecar.tensors_file,
            bytes.len(),
            sidecar.tensors_bytes
        )));
    }
    let sha = sha256_hex(&bytes);
    if sha != sidecar.tensors_sha256 {
        return Err(corrupt(format!(
            "{} has sha256 {sha}, the sidecar recorded {} (the file changed after the save)",
            sidecar.tensors_file, sidecar.tensors_sha256
        )));
    }
    let tensors = deserialize_tensors(&bytes, &tensor_path)?;
    if tensors.len() != sidecar.tensor_count {
        return Err(corrupt(format!(
            "{} holds {} tensors, the sidecar recorded {}",
            sidecar.tensors_file,
            tensors.len(),
            sidecar.tensor_count
        )));
    }
    Ok(Checkpoint {
        path: dir.to_path_buf(),
        tensors_sha256: sidecar.tensors_sha256,
        state: sidecar.state,
        tensors,
    })
}

// ---- safetensors I/O (shared with `export`) -------------------------------------------------

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// A tensor's bytes on the host, contiguous, in the layout safetensors expects.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.data[..]).into()
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_host(name: &str, t: &Tensor) -> Result<HostTensor> {
    let bad = |why: String| CheckpointError::Tensor {
        name: name.to_string(),
        why,
    };
    let kind = t.f_kind().map_err(|e| bad(e.to_string()))?;
    let dtype = dtype_of(kind)
        .ok_or_else(|| bad(format!("dtype {kind:?} cannot be stored in safetensors")))?;
    let t = t
        .detach()
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_contiguous())
        .map_err(|e| bad(e.to_string()))?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)
        .map_err(|e| bad(e.to_string()))?;
    let shape = t.size().iter().map(|&d| d as usize).collect();
    Ok(HostTensor { dtype, shape, data })
}

/// Serialise named tensors (any device, any layout) to safetensors bytes. Metadata always
/// carries `format: pt`, which transformers checks when loading weights.
pub fn serialize_tensors<S: AsRef<str>>(
    tensors: &[(S, &Tensor)],
    metadata: Option<BTreeMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut seen = std::collections::HashSet::new();
    let mut host = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let name = name.as_ref();
        if !seen.insert(name) {
            return Err(CheckpointError::Tensor {
                name: name.to_string(),
                why: "appears twice; tensor names in one file must be unique".into(),
            });
        }
        host.push((name.to_string(), to_host(name, t)?));
    }
    let mut info: HashMap<String, String> = metadata.unwrap_or_default().into_iter().collect();
    info.entry("format".into()).or_insert_with(|| "pt".into());
    safetensors::serialize(host.iter().map(|(n, h)| (n.as_str(), h)), Some(info)).map_err(|e| {
        CheckpointError::SafeTensors {
            path: PathBuf::from("(in memory)"),
            why: e.to_string(),
        }
    })
}

/// Write named tensors to a safetensors file atomically.
pub fn write_safetensors<S: AsRef<str>>(
    path: &Path,
    tensors: &[(S, &Tensor)],
    metadata: Option<BTreeMap<String, String>>,
) -> Result<()> {
    let bytes = serialize_tensors(tensors, metadata)?;
    Ok(write_atomic(path, &bytes)?)
}

fn deserialize_tensors(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bad = |why: String| CheckpointError::SafeTensors {
        path: path.to_path_buf(),
        why,
    };
    // The safetensors crate adds header offsets unchecked: refuse impossible ones first.
    ardpipe_models::hf::safetensors::check_header(bytes, path).map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    // Sorted names: file order is not meaningful, a stable order is.
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    for name in names {
        let view = st.tensor(&name).map_err(|e| bad(e.to_string()))?;
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            bad(format!(
                "tensor `{name}` has unsupported dtype {:?}",
                view.dtype()
            ))
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        out.push((name, t));
    }
    Ok(out)
}

/// Read every tensor of a safetensors file onto the CPU, sorted by name.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = fs::read(path).map_err(io_err("cannot read", path))?;
    deserialize_tensors(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata block of a safetensors file.
    fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
        let bytes = fs::read(path).map_err(io_err("cannot read", path))?;
        let bad = |why: String| CheckpointError::SafeTensors {
            path: path.to_path_buf(),
            why,
        };
        ardpipe_models::hf::safetensors::check_header(&bytes, path)
            .map_err(|e| bad(e.to_string()))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        Ok(meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect())
    }

    fn tensors() -> Vec<(String, Tensor)> {
        vec![
            (
                "adapter/layer0.q.A".into(),
                Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([3, 4]) / 7.0,
            ),
            (
                "alpha/layer0.q".into(),
                Tensor::from_slice(&[1.0f32, 0.5, 2.0]),
            ),
            ("optim/step".into(), Tensor::from_slice(&[17i64])),
            (
                "ema/bf16".into(),
                Tensor::from_slice(&[0.25f32, -3.5]).to_kind(Kind::BFloat16),
            ),
            // A transposed view: must be written in logical order, not storage order.
            (
                "adapter/layer0.q.B".into(),
                Tensor::arange(6, (Kind::Double, Device::Cpu))
                    .reshape([2, 3])
                    .tr(),
            ),
        ]
    }

    fn state(step: u64) -> TrainingState {
        let mut s = TrainingState::new(42);
        s.step = step;
        s.data = DataPosition {
            epoch: 1,
            examples_consumed: 96,
        };
        s.rng.stream("meta").next_u64();
        s.early_stopping = Some(EarlyStoppingState {
            metric: "accuracy".into(),
            best: Some(0.61),
            best_step: Some(step),
            evals_without_improvement: 2,
        });
        s.ema.insert("loss".into(), 1.25);
        s.label_vocab = Some(vec!["bbc".into(), "cnn".into()]);
        s.extra
            .insert("meta_phase".into(), serde_json::json!("alpha"));
        s
    }

    fn save(c: &Checkpoints, step: u64) -> PathBuf {
        let t = tensors();
        let refs: Vec<(&str, &Tensor)> = t.iter().map(|(n, t)| (n.as_str(), t)).collect();
        c.save(&state(step), &refs).unwrap()
    }

    #[test]
    fn round_trip_restores_every_tensor_and_all_state() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path(), 3).unwrap();
        let p = save(&c, 120);
        assert!(p.ends_with("step-0000120"));
        assert_eq!(
            fs::read_to_string(dir.path().join(LATEST)).unwrap(),
            "step-0000120\n"
        );
        let ck = c.load_latest().unwrap().unwrap();
        assert_eq!(ck.state, state(120));
        for (name, t) in tensors() {
            let got = ck.tensor(&name).unwrap();
            assert_eq!(got.kind(), t.kind(), "{name}");
            assert_eq!(got.size(), t.size(), "{name}");
            assert!(got.equal(&t), "{name}");
        }
        let e = ck.tensor("nope").unwrap_err().to_string();
        assert!(e.contains("holds 5 tensors"), "{e}");
    }

    #[test]
    fn load_latest_from_a_run_dir() {
        let run = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(&run.path().join(rundir::CHECKPOINTS), 2).unwrap();
        assert!(load_latest(run.path()).unwrap().is_none());
        save(&c, 5);
        assert_eq!(load_latest(run.path()).unwrap().unwrap().step(), 5);
    }

    #[test]
    fn keep_last_n_prunes_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path(), 2).unwrap();
        for s in [10, 20, 30, 40] {
            save(&c, s);
        }
        assert_eq!(c.steps().unwrap(), vec![30, 40]);
        assert!(matches!(
            Checkpoints::new(dir.path(), 0),
            Err(CheckpointError::KeepNone)
        ));
    }

    #[test]
    fn half_written_checkpoints_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path(), 10).unwrap();
        save(&c, 10);
        let good = save(&c, 20);

        // 1. A save killed before its rename: a `.partial` directory with only the tensors.
        let partial = dir.path().join("step-0000030.partial");
        fs::create_dir(&partial).unwrap();
        fs::copy(good.join(TENSORS_FILE), partial.join(TENSORS_FILE)).unwrap();
        // 2. A directory with the final name but no sidecar (made by hand or a broken copy).
        let no_state = dir.path().join("step-0000040");
        fs::create_dir(&no_state).unwrap();
        fs::copy(good.join(TENSORS_FILE), no_state.join(TENSORS_FILE)).unwrap();
        // 3. A complete-looking one whose tensor file was cut short.
        let torn = dir.path().join("step-0000050");
        fs::create_dir(&torn).unwrap();
        fs::copy(good.join(STATE_FILE), torn.join(STATE_FILE)).unwrap();
        let bytes = fs::read(good.join(TENSORS_FILE)).unwrap();
        fs::write(torn.join(TENSORS_FILE), &bytes[..bytes.len() / 2]).unwrap();
        // 4. Same size, one flipped byte.
        let flipped = dir.path().join("step-0000060");
        fs::create_dir(&flipped).unwrap();
        fs::copy(good.join(STATE_FILE), flipped.join(STATE_FILE)).unwrap();
        let mut b = bytes.clone();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        fs::write(flipped.join(TENSORS_FILE), &b).unwrap();

        let ck = c.load_latest().unwrap().unwrap();
        assert_eq!(ck.step(), 20);
        assert_eq!(ck.path, good);
        let e = c.load(50).unwrap_err().to_string();
        assert!(e.contains("truncated write"), "{e}");
        let e = c.load(60).unwrap_err().to_string();
        assert!(e.contains("sha256"), "{e}");
        let e = c.load(40).unwrap_err().to_string();
        assert!(e.contains("interrupted"), "{e}");

        // The next save clears the partial leftover.
        save(&c, 70);
        assert!(!partial.exists());
    }

    /// The observed loss: junk `step-9000000/` and `step-9000001/` (a `state.json` of `{}`)
    /// made the save of step 6 prune the real steps 4 and 6 and leave `latest` dangling.
    #[test]
    fn junk_folders_never_cost_a_real_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path(), 2).unwrap();
        save(&c, 2);
        save(&c, 4);
        for junk in ["step-9000000", "step-9000001"] {
            fs::create_dir(dir.path().join(junk)).unwrap();
            fs::write(dir.path().join(junk).join(STATE_FILE), "{}").unwrap();
        }
        save(&c, 6);
        assert_eq!(c.steps().unwrap(), vec![4, 6]);
        assert_eq!(
            fs::read_to_string(dir.path().join(LATEST)).unwrap(),
            "step-0000006\n"
        );
        // Moved aside with the reason, not deleted.
        for junk in ["step-9000000", "step-9000001"] {
            let moved = dir.path().join(REJECTED).join(junk);
            assert!(moved.join(STATE_FILE).is_file(), "{junk}");
            let why = fs::read_to_string(moved.with_file_name(format!("{junk}.why"))).unwrap();
            assert!(why.contains("state.json is not valid"), "{why}");
        }
        assert_eq!(c.load_latest().unwrap().unwrap().step(), 6);
    }

    #[test]
    fn choose_moves_what_does_not_verify_aside_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path(), 5).unwrap();
        save(&c, 3);
        // A copy of step 3 under another step's name: its sidecar says step 3.
        let copy = dir.path().join("step-0000008");
        fs::create_dir(&copy).unwrap();
        for f in [STATE_FILE, TENSORS_FILE] {
            fs::copy(dir.path().join("step-0000003").join(f), copy.join(f)).unwrap();
        }
        let choice = c.choose(false).unwrap();
        assert_eq!(choice.checkpoint.unwrap().step(), 3);
        assert!(copy.exists(), "a read-only choice moves nothing");
        let choice = c.choose(true).unwrap();
        assert_eq!(choice.checkpoint.as_ref().unwrap().step(), 3);
        assert_eq!(choice.rejected.len(), 1);
        assert!(
            choice.rejected[0]
                .why
                .contains("for step 3, not the step 8"),
            "{:?}",
            choice.rejected
        );
        assert!(!copy.exists());
        assert!(dir.path().join(REJECTED).join("step-0000008").is_dir());
        // `latest` names the chosen checkpoint, not the folder moved aside.
        fs::write(dir.path().join(LATEST), "step-0000008\n").unwrap();
        c.choose(true).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(LATEST)).unwrap(),
            "step-0000003\n"
        );
        // Nothing usable: no checkpoint, every reason.
        fs::write(dir.path().join("step-0000003").join(TENSORS_FILE), b"x").unwrap();
        let choice = c.choose(true).unwrap();
        assert!(choice.checkpoint.is_none());
        assert!(choice.rejected[0].why.contains("truncated write"));
        assert!(dir.path().join(REJECTED).join("step-0000003").is_dir());
        assert!(
            !dir.path().join(LATEST).exists(),
            "latest names nothing that exists"
        );
    }

    /// Offsets that chain to just below 2^64 overflow inside the safetensors crate (a panic
    /// with overflow checks on): a checkpoint's tensor file like that is an error.
    #[test]
    fn a_tensor_file_whose_offsets_overflow_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut header = serde_json::Map::new();
        let mut start = 0u64;
        for i in 0..16 {
            let end = if i < 15 { start + (1 << 60) } else { u64::MAX };
            header.insert(
                format!("t{i:02}"),
                serde_json::json!({"dtype": "U8", "shape": [end - start], "data_offsets": [start, end]}),
            );
            start = end;
        }
        let text = serde_json::Value::Object(header).to_string();
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend(text.as_bytes());
        let p = dir.path().join("tensors.safetensors");
        fs::write(&p, &bytes).unwrap();
        for e in [
            read_safetensors(&p).err().unwrap().to_string(),
            read_safetensors_metadata(&p).err().unwrap().to_string(),
        ] {
            assert!(
                e.contains("tensors.safetensors") && e.contains("tensor `t"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_sidecar_may_only_name_files_of_its_own_folder() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path(), 5).unwrap();
        let good = save(&c, 1);
        // A secret next to the checkpoints, and sidecars pointing at it.
        fs::write(dir.path().join("secret"), b"not a tensor file").unwrap();
        let sidecar: serde_json::Value =
            serde_json::from_slice(&fs::read(good.join(STATE_FILE)).unwrap()).unwrap();
        let outside = dir.path().join("secret").display().to_string();
        for named in ["../secret", outside.as_str(), "sub/x.safetensors", "..", ""] {
            let mut s = sidecar.clone();
            s["tensors_file"] = serde_json::json!(named);
            fs::write(good.join(STATE_FILE), serde_json::to_vec(&s).unwrap()).unwrap();
            let e = load_dir(&good).unwrap_err();
            assert!(
                matches!(e, CheckpointError::OutsideFolder { .. }),
                "{named}: {e}"
            );
            let e = e.to_string();
            assert!(
                e.contains(&format!("`{named}`"))
                    && e.contains("only name files of its own folder"),
                "{e}"
            );
        }
    }

    #[test]
    fn resaving_an_existing_step_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path(), 3).unwrap();
        save(&c, 10);
        let mut s = state(10);
        s.ema.insert("loss".into(), 9.0);
        let t = Tensor::from_slice(&[3.0f32]);
        c.save(&s, &[("x", &t)]).unwrap();
        let ck = c.load(10).unwrap();
        assert_eq!(ck.state.ema["loss"], 9.0);
        assert_eq!(ck.tensors.len(), 1);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".old-") || n.contains(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn duplicate_and_unsupported_tensors_are_refused() {
        let t = Tensor::from_slice(&[1.0f32]);
        let e = serialize_tensors(&[("a", &t), ("a", &t)], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("appears twice"), "{e}");
        let c = Tensor::from_slice(&[1.0f32, 2.0])
            .reshape([1, 2])
            .view_as_complex();
        let e = serialize_tensors(&[("c", &c)], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be stored"), "{e}");
    }

    #[test]
    fn safetensors_files_carry_format_pt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        write_safetensors(&p, &[("w", &t)], None).unwrap();
        assert_eq!(read_safetensors_metadata(&p).unwrap()["format"], "pt");
        let back = read_safetensors(&p).unwrap();
        assert_eq!(back[0].0, "w");
        assert!(back[0].1.equal(&t));
        let e = read_safetensors(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
