//! Apply a Hugging Face PEFT LoRA or AdaLoRA adapter folder (ardpipe's export or PEFT's own) to a
//! loaded model by merging it into the base weights: `W += s · B·A` per adapted module (AdaLoRA:
//! `W += B·(A⊙E) · lora_alpha / (init_r + 1e-5)`, PEFT's SVD form), DoRA's magnitude rescaling
//! where the folder has one, and the `modules_to_save` head copied over.
//! This is how `ardpipe classify` / `generate --adapter` run a fine-tuned model; merged, the
//! forward pass costs what the base model's does.
//!
//! Every tensor in the file must land somewhere: a name that matches no module of the model is
//! an error (an adapter for another model), never silently skipped.
//!
//! A folder is validated whole before anything is merged ([`AdapterFolder::read`]): ranks of at
//! least 1, floating-point and finite tensors, 2-D factors whose ranks agree with each other and
//! with `rank_pattern`, every `lora_A` with its `lora_B` (and AdaLoRA's `lora_E`), DoRA
//! magnitudes exactly where `use_dora` says. A bad adapter is an error naming the tensor or key,
//! never a panic or NaN outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ardpipe_adapters::AdaptableLinear;
use ardpipe_adapters::peft::{self, PeftConfig, PeftModule, PeftType};
use serde::Deserialize;
use tch::{Kind, Tensor};

use ardpipe_models::arch::EncoderHead;
use ardpipe_models::arch::config::ArchConfig;
use ardpipe_models::hf::export::{
    self as hf_export, DEFAULT_MAX_SHARD_BYTES, ExportDtype, WrittenWeights,
};
use ardpipe_models::hf::safetensors::SafetensorsSource;
use ardpipe_models::weights::TensorSource;
use ardpipe_models::{LoadOptions, ModelLocation};
use safetensors::Dtype;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum PeftMergeError {
    #[error("{path}: {why}")]
    Folder { path: PathBuf, why: String },
    #[error("adapter {path}: {why}")]
    Mismatch { path: PathBuf, why: String },
    /// The base model cannot be loaded or written out.
    #[error("{0}")]
    Model(#[from] ardpipe_models::ModelError),
    /// The output folder cannot be written.
    #[error("{0}")]
    Output(#[from] crate::rundir::RunDirError),
    /// A merge that cannot be done as asked (wrong kind of model, output in the way).
    #[error("{0}")]
    Refused(String),
}

/// The `adapter_config.json` fields that decide the merge.
#[derive(Debug, Clone, Deserialize)]
pub struct MergeConfig {
    pub peft_type: String,
    #[serde(default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// AdaLoRA: the rank every module started with; PEFT keeps it as `ranknum` in the scale
    /// whatever a module was pruned to.
    #[serde(default)]
    pub init_r: Option<usize>,
}

/// A PEFT adapter folder, read and checked.
#[derive(Debug)]
pub struct AdapterFolder {
    pub dir: PathBuf,
    pub config: MergeConfig,
    pub tensors: Vec<(String, Tensor)>,
    /// Class names, when the folder sits in an ardpipe run directory (`../labels.json`).
    pub labels: Option<Vec<String>>,
}

/// What a merge did, for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    pub modules: usize,
    pub head_tensors: usize,
    pub ranks: Vec<(String, usize)>,
}

impl AdapterFolder {
    /// Read `path`: a PEFT adapter folder, or an ardpipe run directory (its `adapter/`).
    pub fn read(path: &Path) -> Result<AdapterFolder, PeftMergeError> {
        let dir = if path.join(CONFIG_FILE).is_file() {
            path.to_path_buf()
        } else if path.join("adapter").join(CONFIG_FILE).is_file() {
            path.join("adapter")
        } else {
            return Err(PeftMergeError::Folder {
                path: path.to_path_buf(),
                why: format!(
                    "no {CONFIG_FILE} here or in adapter/: give a PEFT adapter folder or an ardpipe run directory that finished its export"
                ),
            });
        };
        let folder_err = |why: String| PeftMergeError::Folder {
            path: dir.clone(),
            why,
        };
        let text = std::fs::read_to_string(dir.join(CONFIG_FILE))
            .map_err(|e| folder_err(format!("cannot read {CONFIG_FILE}: {e}")))?;
        let config: MergeConfig = serde_json::from_str(&text)
            .map_err(|e| folder_err(format!("{CONFIG_FILE} is not a PEFT config: {e}")))?;
        match config.peft_type.as_str() {
            "LORA" => {}
            "ADALORA" if config.init_r.is_some() => {}
            "ADALORA" => {
                return Err(folder_err(format!(
                    "an ADALORA {CONFIG_FILE} without `init_r`: PEFT writes it; the scale of every module depends on it"
                )));
            }
            other => {
                return Err(folder_err(format!(
                    "peft_type {other} cannot be merged here (LORA, DoRA included, and ADALORA adapters can)"
                )));
            }
        }
        if config.fan_in_fan_out {
            return Err(folder_err(
                "fan_in_fan_out = true (GPT-2-style Conv1D weights) does not fit these models"
                    .into(),
            ));
        }
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(folder_err(format!(
                "{WEIGHTS_FILE} is missing (adapter_model.bin, PyTorch's pickle format, is not read: re-save with safe_serialization=True)"
            )));
        }
        let src = SafetensorsSource::open_file(&weights).map_err(|e| folder_err(e.to_string()))?;
        let mut tensors = Vec::new();
        for name in src.names() {
            let dtype = src.dtype(&name).expect("a name the source listed");
            if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
                return Err(folder_err(format!(
                    "{WEIGHTS_FILE}: tensor `{name}` has dtype {dtype:?}; adapter weights are \
                     floating point (F32, F16, BF16 or F64)"
                )));
            }
            let t = src.read(&name).map_err(|e| folder_err(e.to_string()))?;
            tensors.push((name, t));
        }
        // A damaged labels.json is an error: read past, every class would be named LABEL_i.
        let labels = match dir.parent().map(|run| run.join("labels.json")) {
            Some(p) if p.exists() => Some(
                std::fs::read(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        serde_json::from_slice::<Vec<String>>(&b).map_err(|e| e.to_string())
                    })
                    .map_err(|e| {
                        folder_err(format!(
                            "{} is not the list of class names the run wrote ({e}); restore it",
                            p.display()
                        ))
                    })?,
            ),
            _ => None,
        };
        let folder = AdapterFolder {
            dir,
            config,
            tensors,
            labels,
        };
        folder.validate()?;
        Ok(folder)
    }

    /// Rows of the saved classifier's output layer, when the adapter trained one: BERT's
    /// `classifier.weight`, RoBERTa's `classifier.out_proj.weight`, a decoder's `score.weight`.
    pub fn classifier_rows(&self) -> Option<usize> {
        self.tensors
            .iter()
            .find(|(n, _)| {
                [
                    "classifier.weight",
                    "classifier.out_proj.weight",
                    "score.weight",
                ]
                .iter()
                .any(|s| n.ends_with(&format!(".{s}")))
            })
            .map(|(_, t)| t.size()[0] as usize)
    }

    fn rank_of(&self, module: &str) -> usize {
        pattern_value(&self.config.rank_pattern, module)
            .and_then(|v| v.as_u64())
            .map_or(self.config.r, |r| r as usize)
    }

    fn alpha_of(&self, module: &str) -> f64 {
        pattern_value(&self.config.alpha_pattern, module)
            .copied()
            .unwrap_or(self.config.lora_alpha)
    }

    /// Merge into `linears` and copy the head into `head` (name → tensor, transformers' names).
    pub fn merge_into(
        &self,
        linears: Vec<&mut AdaptableLinear>,
        head: &[(String, Tensor)],
    ) -> Result<MergeReport, PeftMergeError> {
        let mismatch = |why: String| PeftMergeError::Mismatch {
            path: self.dir.clone(),
            why,
        };
        let mut used = vec![false; self.tensors.len()];
        let find = |name: &str, used: &mut Vec<bool>| -> Option<Tensor> {
            let i = self.tensors.iter().position(|(n, _)| n == name)?;
            used[i] = true;
            Some(self.tensors[i].1.shallow_clone())
        };
        let mut report = MergeReport {
            modules: 0,
            head_tensors: 0,
            ranks: vec![],
        };
        let adalora = self.config.peft_type == "ADALORA";
        for lin in linears {
            let pre = format!("base_model.model.{}", lin.path);
            if adalora {
                if let Some(r) = self.merge_adalora(lin, &pre, &find, &mut used)? {
                    report.modules += 1;
                    report.ranks.push((lin.path.clone(), r));
                }
                continue;
            }
            let a = find(&format!("{pre}.lora_A.weight"), &mut used);
            let b = find(&format!("{pre}.lora_B.weight"), &mut used);
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                (None, None) => continue,
                _ => {
                    return Err(mismatch(format!(
                        "`{}` has only one of lora_A and lora_B",
                        lin.path
                    )));
                }
            };
            let magnitude = find(&format!("{pre}.lora_magnitude_vector"), &mut used);
            let r = a.size()[0] as usize;
            let w = lin.base.weight.shallow_clone();
            let (d_out, d_in) = (w.size()[0], w.size()[1]);
            if a.size() != [r as i64, d_in] || b.size() != [d_out, r as i64] {
                return Err(mismatch(format!(
                    "`{}`: lora_A is {:?} and lora_B {:?}, but the module is [{d_out}, {d_in}]: the adapter was trained on another model",
                    lin.path,
                    a.size(),
                    b.size()
                )));
            }
            let r_cfg = self.rank_of(&lin.path);
            if r_cfg != r {
                return Err(mismatch(format!(
                    "`{}` holds rank {r} but the config says {r_cfg} (check rank_pattern)",
                    lin.path
                )));
            }
            let alpha = self.alpha_of(&lin.path);
            let scale = if self.config.use_rslora {
                alpha / (r as f64).sqrt()
            } else {
                alpha / r as f64
            };
            let merged = tch::no_grad(|| {
                let device = w.device();
                let delta = b
                    .to_device(device)
                    .to_kind(Kind::Float)
                    .matmul(&a.to_device(device).to_kind(Kind::Float))
                    * scale;
                let mut merged = w.to_kind(Kind::Float) + delta;
                if let Some(m) = &magnitude {
                    // DoRA: each output row rescaled to its learned magnitude (PEFT's weight norm
                    // is over the input axis of W + s·BA).
                    let norm = merged.norm_scalaropt_dim(2.0, [1i64].as_slice(), true);
                    merged = merged / norm * m.to_device(device).to_kind(Kind::Float).view([-1, 1]);
                }
                merged
            });
            copy_if_finite(&w, &merged).map_err(|()| {
                mismatch(format!(
                    "merging `{}` (rank {r}, lora_alpha {alpha}) gives NaN or infinite weights: \
                     the adapter's values do not fit this model",
                    lin.path
                ))
            })?;
            report.modules += 1;
            report.ranks.push((lin.path.clone(), r));
        }
        for (name, t) in head {
            if let Some(src) = find(&format!("base_model.model.{name}"), &mut used) {
                if src.size() != t.size() {
                    return Err(mismatch(format!(
                        "`{name}` is {:?} in the adapter but {:?} in the model",
                        src.size(),
                        t.size()
                    )));
                }
                tch::no_grad(|| t.shallow_clone().copy_(&src.to_kind(t.kind())));
                report.head_tensors += 1;
            }
        }
        let strays: Vec<&str> = self
            .tensors
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|((n, _), _)| n.as_str())
            .collect();
        if !strays.is_empty() {
            return Err(mismatch(format!(
                "{} tensor(s) match no module of this model, e.g. `{}`: the adapter was trained on another model (base {})",
                strays.len(),
                strays[0],
                self.config
                    .base_model_name_or_path
                    .as_deref()
                    .unwrap_or("unknown")
            )));
        }
        if report.modules == 0 {
            return Err(mismatch(
                "no LoRA pair or AdaLoRA triplet matches a module of this model".into(),
            ));
        }
        Ok(report)
    }
}

/// The parts of one adapted module found in the file, by suffix.
#[derive(Default)]
struct ModuleParts<'a> {
    a: Option<&'a Tensor>,
    b: Option<&'a Tensor>,
    e: Option<&'a Tensor>,
    magnitude: Option<&'a Tensor>,
}

impl AdapterFolder {
    /// Everything that can be checked without the model: the config's numbers, and each
    /// tensor's dtype, rank, values and partners. Shapes against the model are checked by the
    /// merge, module by module.
    fn validate(&self) -> Result<(), PeftMergeError> {
        let err = |why: String| PeftMergeError::Folder {
            path: self.dir.clone(),
            why,
        };
        let c = &self.config;
        let adalora = c.peft_type == "ADALORA";
        // AdaLoRA ignores `r` (its modules start at init_r, checked next), as PEFT does.
        if c.r == 0 && !adalora {
            return Err(err(format!(
                "{CONFIG_FILE}: r = 0, but a LoRA rank is at least 1 (the scale lora_alpha / r \
                 would be infinite): the file is damaged or was edited"
            )));
        }
        if c.init_r == Some(0) {
            return Err(err(format!(
                "{CONFIG_FILE}: init_r = 0, but AdaLoRA starts every module at rank init_r ≥ 1"
            )));
        }
        if !c.lora_alpha.is_finite() {
            return Err(err(format!(
                "{CONFIG_FILE}: lora_alpha = {} is not a finite number",
                c.lora_alpha
            )));
        }
        if let Some((k, a)) = c.alpha_pattern.iter().find(|(_, a)| !a.is_finite()) {
            return Err(err(format!(
                "{CONFIG_FILE}: alpha_pattern[\"{k}\"] = {a} is not a finite number"
            )));
        }
        for (k, v) in &c.rank_pattern {
            let ok = if adalora {
                v.as_array().is_some_and(|m| {
                    m.iter().all(|x| x.is_boolean())
                        && c.init_r.is_none_or(|init_r| m.len() <= init_r)
                })
            } else {
                v.as_u64().is_some_and(|r| r >= 1)
            };
            if !ok {
                let want = if adalora {
                    "a keep-mask: a list of at most init_r true/false values"
                } else {
                    "a rank: an integer of at least 1"
                };
                return Err(err(format!(
                    "{CONFIG_FILE}: rank_pattern[\"{k}\"] = {v} is not {want}"
                )));
            }
        }
        let file_err =
            |name: &str, why: String| err(format!("{WEIGHTS_FILE}: tensor `{name}` {why}"));
        let mut modules: BTreeMap<&str, ModuleParts<'_>> = BTreeMap::new();
        for (name, t) in &self.tensors {
            let size = t.size();
            if size.is_empty() {
                return Err(file_err(
                    name,
                    "is a scalar (0-D): every adapter tensor has at least one dimension".into(),
                ));
            }
            if t.isfinite().logical_not().any().int64_value(&[]) != 0 {
                return Err(file_err(name, "holds NaN or infinite values".into()));
            }
            let suffixes: &[&str] = if adalora {
                &["lora_A", "lora_B", "lora_E"]
            } else {
                &["lora_A.weight", "lora_B.weight", "lora_magnitude_vector"]
            };
            let part = suffixes
                .iter()
                .find_map(|s| Some((name.strip_suffix(&format!(".{s}"))?, *s)));
            let Some((module, suffix)) = part else {
                // A saved head (modules_to_save): a Linear's weight is 2-D, a bias 1-D.
                let want = if name.ends_with("classifier.weight") {
                    Some(2)
                } else if name.ends_with(".bias") {
                    Some(1)
                } else {
                    None
                };
                if let Some(want) = want
                    && size.len() != want
                {
                    return Err(file_err(
                        name,
                        format!("is {size:?}, but a head's {}-D tensor is expected", want),
                    ));
                }
                if name.ends_with("classifier.weight") && size[0] < 2 {
                    return Err(file_err(
                        name,
                        format!("is {size:?}: a classifier has at least 2 classes (rows)"),
                    ));
                }
                continue;
            };
            let parts = modules.entry(module).or_default();
            let slot = match suffix {
                "lora_A" | "lora_A.weight" => &mut parts.a,
                "lora_B" | "lora_B.weight" => &mut parts.b,
                "lora_E" => &mut parts.e,
                _ => &mut parts.magnitude,
            };
            *slot = Some(t);
        }
        for (module, p) in &modules {
            let path = module.strip_prefix("base_model.model.").unwrap_or(module);
            let (Some(a), Some(b)) = (p.a, p.b) else {
                return Err(err(format!(
                    "{WEIGHTS_FILE}: `{path}` has {} but not {}: every adapted module needs both \
                     (a partial or damaged file?)",
                    if p.a.is_some() {
                        "lora_A"
                    } else if p.b.is_some() {
                        "lora_B"
                    } else {
                        "a lora_E or magnitude"
                    },
                    if p.a.is_none() { "lora_A" } else { "lora_B" },
                )));
            };
            let (sa, sb) = (a.size(), b.size());
            let r = sa[0];
            if sa.len() != 2 || sb.len() != 2 || sb[1] != r {
                return Err(err(format!(
                    "{WEIGHTS_FILE}: `{path}`: lora_A is {sa:?} and lora_B {sb:?}, but they must be \
                     [r, in] and [out, r] with the same r"
                )));
            }
            if adalora {
                let Some(e) = p.e else {
                    return Err(err(format!(
                        "{WEIGHTS_FILE}: `{path}` has lora_A and lora_B but no lora_E"
                    )));
                };
                if e.size() != [r, 1] {
                    return Err(err(format!(
                        "{WEIGHTS_FILE}: `{path}`: lora_E is {:?}, expected [{r}, 1] (one \
                         singular value per kept triplet)",
                        e.size()
                    )));
                }
                if let Some(init_r) = c.init_r
                    && r as usize > init_r
                {
                    return Err(err(format!(
                        "{WEIGHTS_FILE}: `{path}` keeps {r} triplets, more than init_r = {init_r}"
                    )));
                }
                continue;
            }
            if r < 1 {
                return Err(err(format!(
                    "{WEIGHTS_FILE}: `{path}`: lora_A is {sa:?}, rank 0: a LoRA rank is at least 1"
                )));
            }
            let r_cfg = self.rank_of(path);
            if r_cfg as i64 != r {
                return Err(err(format!(
                    "{WEIGHTS_FILE}: `{path}` holds rank {r} but {CONFIG_FILE} says {r_cfg} \
                     (r, or its rank_pattern entry)"
                )));
            }
            match (p.magnitude, c.use_dora) {
                (Some(m), true) if m.size() != [sb[0]] => {
                    return Err(err(format!(
                        "{WEIGHTS_FILE}: `{path}`: lora_magnitude_vector is {:?}, expected [{}] \
                         (one per output row)",
                        m.size(),
                        sb[0]
                    )));
                }
                (Some(_), true) | (None, false) => {}
                (None, true) => {
                    return Err(err(format!(
                        "{WEIGHTS_FILE}: `{path}` has no lora_magnitude_vector, but {CONFIG_FILE} \
                         says use_dora = true"
                    )));
                }
                (Some(_), false) => {
                    return Err(err(format!(
                        "{WEIGHTS_FILE}: `{path}` has a lora_magnitude_vector (DoRA), but \
                         {CONFIG_FILE} says use_dora = false"
                    )));
                }
            }
        }
        Ok(())
    }

    /// One AdaLoRA module: PEFT saves the kept triplets only (`lora_A` [k, d_in], `lora_E`
    /// [k, 1], `lora_B` [d_out, k], no `.weight` suffix) and says which of the `init_r` it kept
    /// in `rank_pattern["<module>.lora_E"]`. Returns the kept rank, or None when the module has
    /// no adapter.
    fn merge_adalora(
        &self,
        lin: &mut AdaptableLinear,
        pre: &str,
        find: &dyn Fn(&str, &mut Vec<bool>) -> Option<Tensor>,
        used: &mut Vec<bool>,
    ) -> Result<Option<usize>, PeftMergeError> {
        let mismatch = |why: String| PeftMergeError::Mismatch {
            path: self.dir.clone(),
            why,
        };
        let parts = ["lora_A", "lora_E", "lora_B"].map(|p| find(&format!("{pre}.{p}"), used));
        let [a, e, b] = match parts {
            [Some(a), Some(e), Some(b)] => [a, e, b],
            [None, None, None] => return Ok(None),
            _ => {
                return Err(mismatch(format!(
                    "`{}` lacks one of lora_A, lora_E and lora_B",
                    lin.path
                )));
            }
        };
        let w = lin.base.weight.shallow_clone();
        let (d_out, d_in) = (w.size()[0], w.size()[1]);
        let k = a.size()[0];
        if a.size() != [k, d_in] || e.size() != [k, 1] || b.size() != [d_out, k] {
            return Err(mismatch(format!(
                "`{}`: lora_A is {:?}, lora_E {:?} and lora_B {:?}, but the module is [{d_out}, {d_in}]: the adapter was trained on another model",
                lin.path,
                a.size(),
                e.size(),
                b.size()
            )));
        }
        let kept = pattern_value(&self.config.rank_pattern, &format!("{}.lora_E", lin.path))
            .and_then(|v| v.as_array())
            .map(|keep| keep.iter().filter(|x| x.as_bool() == Some(true)).count() as i64);
        if let Some(kept) = kept
            && kept != k
        {
            return Err(mismatch(format!(
                "`{}` holds {k} triplets but rank_pattern keeps {kept}",
                lin.path
            )));
        }
        let init_r = self.config.init_r.unwrap_or(self.config.r) as f64;
        let scaling = if self.config.lora_alpha > 0.0 {
            self.config.lora_alpha
        } else {
            init_r
        };
        let scale = scaling / (init_r + 1e-5);
        let merged = tch::no_grad(|| {
            let device = w.device();
            let f = |t: &Tensor| t.to_device(device).to_kind(Kind::Float);
            let delta = f(&b).matmul(&(f(&a) * f(&e))) * scale;
            w.to_kind(Kind::Float) + delta
        });
        copy_if_finite(&w, &merged).map_err(|()| {
            mismatch(format!(
                "merging `{}` ({k} triplets, scale {scale}) gives NaN or infinite weights: the \
                 adapter's values do not fit this model",
                lin.path
            ))
        })?;
        Ok(Some(k as usize))
    }
}

/// Write `merged` into the weight `w`, unless it holds a NaN or an infinity (in `w`'s kind:
/// a finite f32 can overflow f16), which would only show up later as NaN outputs.
fn copy_if_finite(w: &Tensor, merged: &Tensor) -> Result<(), ()> {
    tch::no_grad(|| {
        let merged = merged.to_kind(w.kind());
        if merged.isfinite().all().int64_value(&[]) == 0 {
            return Err(());
        }
        w.shallow_clone().copy_(&merged);
        Ok(())
    })
}

/// PEFT's pattern keys match a module name as a suffix on a `.` boundary.
fn suffix_match(key: &str, module: &str) -> bool {
    module == key || module.ends_with(&format!(".{key}"))
}

/// The `rank_pattern` / `alpha_pattern` entry that applies to `module`, if any.
fn pattern_value<'a, V>(pattern: &'a BTreeMap<String, V>, module: &str) -> Option<&'a V> {
    pattern
        .iter()
        .find(|(k, _)| suffix_match(k, module))
        .map(|(_, v)| v)
}

/// What a merged folder is: a causal LM, or a sequence classifier with its class names.
#[derive(Debug, Clone, PartialEq)]
pub enum MergedTask {
    CausalLm,
    /// `pad_token_id`: a decoder classifier's (its head reads the last token that is not
    /// padding); encoders keep their config's.
    SequenceClassification {
        labels: Vec<String>,
        pad_token_id: Option<i64>,
    },
}

/// How to write a merged Hugging Face folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderOptions {
    /// Split the weights into shards of at most this many bytes.
    pub max_shard_bytes: u64,
    /// The weights' dtype; `None`: the base's ([`ExportDtype::of_base`]: f32 for a GGUF base).
    pub dtype: Option<ExportDtype>,
    /// Replace an existing output folder.
    pub force: bool,
    /// Further JSON files to write into the folder (a vision model's
    /// preprocessor_config.json), by file name.
    pub extra_json: Vec<(String, serde_json::Value)>,
}

impl Default for FolderOptions {
    fn default() -> Self {
        Self {
            max_shard_bytes: DEFAULT_MAX_SHARD_BYTES,
            dtype: None,
            force: false,
            extra_json: Vec::new(),
        }
    }
}

/// What [`write_model_folder`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenFolder {
    pub dir: PathBuf,
    pub dtype: ExportDtype,
    pub weights: WrittenWeights,
    /// config.json, the tokenizer files and generation_config.json, as written.
    pub files: Vec<String>,
}

/// Refuse an output folder that is there already (unless `force`), that is not a folder, or
/// whose replacement would delete the base model or the adapter being merged.
pub fn check_output(out: &Path, force: bool, keep: &[&Path]) -> Result<(), PeftMergeError> {
    let refuse = |why: String| Err(PeftMergeError::Refused(why));
    if let Ok(meta) = std::fs::symlink_metadata(out) {
        if !meta.is_dir() {
            return refuse(format!(
                "{} exists and is not a folder: give --out a new folder's path",
                out.display()
            ));
        }
        if !force {
            return refuse(format!(
                "{} exists: pass --force to replace it, or give --out a new folder",
                out.display()
            ));
        }
        let out_c = out.canonicalize().unwrap_or_else(|_| out.to_path_buf());
        for k in keep {
            let k_c = k.canonicalize().unwrap_or_else(|_| k.to_path_buf());
            if k_c.starts_with(&out_c) {
                return refuse(format!(
                    "--out {} holds {}, which this merge reads: replacing it would delete it; \
                     give --out another folder",
                    out.display(),
                    k.display()
                ));
            }
        }
    }
    Ok(())
}

/// Write a complete Hugging Face model folder at `out`, whole or not at all (filled as
/// `OUT.partial/`, then renamed into place by [`rundir::write_dir_atomic`]): `config`, the base
/// model's tokenizer files (and generation_config.json), and `tensors` as safetensors in the
/// chosen dtype, sharded above `opts.max_shard_bytes`. The caller checks `out` first
/// ([`check_output`]).
///
/// [`rundir::write_dir_atomic`]: crate::rundir::write_dir_atomic
pub fn write_model_folder(
    out: &Path,
    base: &ModelLocation,
    mut config: serde_json::Value,
    tensors: &[(String, Tensor)],
    opts: &FolderOptions,
) -> Result<WrittenFolder, PeftMergeError> {
    let dtype = match opts.dtype {
        Some(d) => d,
        None => ExportDtype::of_base(base)?,
    };
    config["dtype"] = serde_json::json!(dtype.torch_name());
    let mut written = None;
    crate::rundir::write_dir_atomic(out, |partial| -> Result<(), PeftMergeError> {
        hf_export::write_json(&partial.join("config.json"), &config)?;
        let mut files = vec!["config.json".to_string()];
        files.extend(hf_export::write_tokenizer_files(partial, base, || {
            let tok = ardpipe_models::tokenizer::load_tokenizer(base)?;
            tok.tokenizer
                .to_json()
                .map_err(|e| ardpipe_models::ModelError::Tokenizer(e.to_string()))
        })?);
        for (name, value) in &opts.extra_json {
            hf_export::write_json(&partial.join(name), value)?;
            files.push(name.clone());
        }
        let weights = hf_export::write_weights(partial, tensors, dtype, opts.max_shard_bytes)?;
        written = Some((weights, files));
        Ok(())
    })?;
    let (weights, files) = written.expect("the folder was filled");
    Ok(WrittenFolder {
        dir: out.to_path_buf(),
        dtype,
        weights,
        files,
    })
}

/// A PEFT adapter to write: the adapters' own exports (`peft_export`), the trained head kept
/// under `modules_to_save`, and the fields the caller knows (task, base model, AdaLoRA's
/// schedule). [`AdapterExport::write`] is the one writer of adapter folders: the trainer's
/// `export = [peft]` (engine/core/src/train/export.rs) and the peer test call it.
pub struct AdapterExport<'a> {
    pub peft_type: PeftType,
    pub modules: &'a [PeftModule],
    pub dropout: f64,
    pub use_dora: bool,
    /// The trained head's parameters under their model names; saved as
    /// `base_model.model.<name>` (PEFT gives `modules_to_save` no adapter name).
    pub head: Vec<(String, Tensor)>,
    /// The head's modules as full paths (PEFT matches them as name suffixes: a bare `dense`
    /// would wrap every dense layer of an encoder, not just the pooler). Unused without a head.
    pub modules_to_save: Vec<String>,
    /// `CAUSAL_LM` or `SEQ_CLS`.
    pub task_type: &'a str,
    pub base_model: String,
    /// AdaLoRA's own config fields (`init_r`, `target_r`, `tinit`, …).
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl AdapterExport<'_> {
    /// Write [`CONFIG_FILE`] and [`WEIGHTS_FILE`] (f32) at `dir`, whole or not at all (filled as
    /// `DIR.partial/`, then renamed by [`rundir::write_dir_atomic`]). Returns the config written.
    ///
    /// [`rundir::write_dir_atomic`]: crate::rundir::write_dir_atomic
    pub fn write(self, dir: &Path) -> Result<PeftConfig, PeftMergeError> {
        let (mut config, mut tensors) = peft::assemble(
            self.peft_type,
            self.modules,
            "",
            self.dropout,
            self.use_dora,
        );
        if !self.head.is_empty() {
            config.modules_to_save = Some(self.modules_to_save);
            for (n, t) in self.head {
                tensors.push((format!("base_model.model.{n}"), t));
            }
        }
        config.task_type = Some(self.task_type.to_string());
        config.base_model_name_or_path = Some(self.base_model);
        config.extra = self.extra;
        let tensors: Vec<(String, Tensor)> = tensors
            .into_iter()
            .map(|(n, t)| {
                let t = t
                    .detach()
                    .to_kind(Kind::Float)
                    .to_device(tch::Device::Cpu)
                    .contiguous();
                (n, t)
            })
            .collect();
        crate::rundir::write_dir_atomic(dir, |partial| -> Result<(), PeftMergeError> {
            let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
            crate::checkpoint::write_safetensors(&partial.join(WEIGHTS_FILE), &refs, None)
                .map_err(|e| PeftMergeError::Folder {
                    path: dir.to_path_buf(),
                    why: format!("cannot write the adapter: {e}"),
                })?;
            crate::rundir::write_json_atomic(&partial.join(CONFIG_FILE), &config)?;
            Ok(())
        })?;
        Ok(config)
    }
}

fn vlm_classification(base: &Path) -> PeftMergeError {
    PeftMergeError::Refused(format!(
        "{} is a vision-language model: its adapters are for text answers (CAUSAL_LM), not \
         classification",
        base.display()
    ))
}

/// config.json of a merged model (dtype filled in by [`write_model_folder`]).
pub fn merged_config(
    base: &ModelLocation,
    config: &ArchConfig,
    task: &MergedTask,
) -> Result<serde_json::Value, PeftMergeError> {
    match (config, task) {
        (ArchConfig::Llama(c), MergedTask::CausalLm) => {
            Ok(hf_export::causal_lm_config(c, ExportDtype::F32))
        }
        // The base's own config.json: merging changes weights, not the architecture.
        (ArchConfig::PaliGemma(_), MergedTask::CausalLm) => {
            let path = base.path().join("config.json");
            let text = std::fs::read_to_string(&path).map_err(|e| {
                PeftMergeError::Refused(format!("cannot read {}: {e}", path.display()))
            })?;
            serde_json::from_str(&text).map_err(|e| {
                PeftMergeError::Refused(format!("{} is not JSON: {e}", path.display()))
            })
        }
        (ArchConfig::PaliGemma(_), MergedTask::SequenceClassification { .. }) => {
            Err(vlm_classification(base.path()))
        }
        (ArchConfig::Bert(_), MergedTask::SequenceClassification { labels, .. }) => {
            let ModelLocation::HfFolder(dir) = base else {
                return Err(PeftMergeError::Refused(format!(
                    "{}: encoders load from Hugging Face folders",
                    base.path().display()
                )));
            };
            Ok(hf_export::sequence_classification_config(
                dir,
                labels,
                ExportDtype::F32,
            )?)
        }
        (
            ArchConfig::Llama(c),
            MergedTask::SequenceClassification {
                labels,
                pad_token_id: Some(pad),
            },
        ) => Ok(hf_export::decoder_classification_config(
            c,
            labels,
            *pad,
            ExportDtype::F32,
        )),
        (ArchConfig::Llama(_), MergedTask::SequenceClassification { .. }) => {
            Err(PeftMergeError::Refused(format!(
                "{}: a decoder classifier's config.json needs its pad_token_id",
                base.path().display()
            )))
        }
        (ArchConfig::Bert(_), MergedTask::CausalLm) => Err(PeftMergeError::Refused(format!(
            "{} is an encoder, and the adapter is for a causal LM (task_type CAUSAL_LM): give \
             --model the decoder the adapter was trained on",
            base.path().display()
        ))),
    }
}

/// What [`merge_into_folder`] did.
#[derive(Debug, Clone)]
pub struct FolderMerge {
    pub folder: WrittenFolder,
    pub merge: MergeReport,
    pub task: MergedTask,
}

impl AdapterFolder {
    /// The task the adapter was trained for: its `task_type`, else whether it carries a
    /// classifier. Class names: the run's labels.json, else the base's `id2label` when it
    /// names as many, else `LABEL_i`.
    pub fn task(&self, base_config_json: Option<&Path>) -> Result<MergedTask, PeftMergeError> {
        let classifier = self.classifier_rows();
        let seq_cls = match self.config.task_type.as_deref() {
            Some("SEQ_CLS") => true,
            Some("CAUSAL_LM") => false,
            Some(other) => {
                return Err(PeftMergeError::Folder {
                    path: self.dir.clone(),
                    why: format!(
                        "{CONFIG_FILE}: task_type {other}: ardpipe merges CAUSAL_LM and SEQ_CLS adapters"
                    ),
                });
            }
            None => classifier.is_some(),
        };
        if !seq_cls {
            return Ok(MergedTask::CausalLm);
        }
        let Some(n) = classifier else {
            return Err(PeftMergeError::Folder {
                path: self.dir.clone(),
                why: "a SEQ_CLS adapter without its trained classifier (modules_to_save): a \
                      merged classifier would have a random head"
                    .into(),
            });
        };
        let labels = match &self.labels {
            Some(l) if l.len() == n => l.clone(),
            Some(l) => {
                return Err(PeftMergeError::Folder {
                    path: self.dir.clone(),
                    why: format!(
                        "the run's labels.json names {} classes, but the classifier has {n}: restore labels.json",
                        l.len()
                    ),
                });
            }
            None => base_config_json
                .and_then(config_id2label)
                .filter(|l| l.len() == n)
                .unwrap_or_else(|| (0..n).map(|i| format!("LABEL_{i}")).collect()),
        };
        Ok(MergedTask::SequenceClassification {
            labels,
            pad_token_id: None,
        })
    }
}

/// `id2label` of a config.json, in id order, when it names ids 0..n.
pub fn config_id2label(path: &Path) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let map = v.get("id2label")?.as_object()?;
    let mut labels: Vec<(usize, String)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
        .collect();
    labels.sort();
    labels
        .iter()
        .enumerate()
        .all(|(i, (k, _))| i == *k)
        .then(|| labels.into_iter().map(|(_, l)| l).collect())
}

/// Load `base`, merge `adapter` into it and write the merged model as a complete Hugging Face
/// folder at `out` (see [`write_model_folder`]). Everything is checked (the output folder, the
/// adapter against the model, module by module) before anything is written.
pub fn merge_into_folder(
    base: &Path,
    adapter: &AdapterFolder,
    out: &Path,
    opts: &FolderOptions,
) -> Result<FolderMerge, PeftMergeError> {
    check_output(out, opts.force, &[base, &adapter.dir])?;
    let location = ModelLocation::detect(base)?;
    let desc = ardpipe_models::describe(base)?;
    let config_json = match &location {
        ModelLocation::HfFolder(d) => Some(d.join("config.json")),
        ModelLocation::Gguf(_) => None,
    };
    let mut task = adapter.task(config_json.as_deref())?;
    // f32: the merge adds the update to exact base values; the folder's dtype is applied on write.
    let load = LoadOptions::default();
    let _g = tch::no_grad_guard();
    let whole_head = |merge: &MergeReport, head: &[(String, Tensor)]| {
        if merge.head_tensors == head.len() {
            return Ok(());
        }
        Err(PeftMergeError::Mismatch {
            path: adapter.dir.clone(),
            why: format!(
                "the adapter carries {} of the classification head's {} tensors ({}): a merged \
                 classifier needs all of them",
                merge.head_tensors,
                head.len(),
                head.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    };
    let (merge, tensors) = match (&desc.config, &mut task) {
        (ArchConfig::Llama(_), MergedTask::CausalLm) => {
            let mut lm = ardpipe_models::load_causal_lm(base, &load)?;
            let merge = adapter.merge_into(lm.model.linears_mut(), &[])?;
            (merge, lm.model.base_parameters())
        }
        (
            ArchConfig::Llama(_),
            MergedTask::SequenceClassification {
                labels,
                pad_token_id,
            },
        ) => {
            let mut m = ardpipe_models::load_decoder_classifier(base, labels.len(), 0, &load)?;
            let head = m.model.head_parameters();
            let merge = adapter.merge_into(m.model.linears_mut(), &head)?;
            whole_head(&merge, &head)?;
            *pad_token_id = Some(m.model.pad_token_id);
            // transformers' `*ForSequenceClassification` has `score` and no LM head.
            let mut tensors: Vec<(String, Tensor)> = m
                .model
                .model
                .base_parameters()
                .into_iter()
                .filter(|(n, _)| n != "lm_head.weight")
                .collect();
            tensors.extend(head);
            (merge, tensors)
        }
        (ArchConfig::Bert(_), MergedTask::SequenceClassification { labels, .. }) => {
            let head = EncoderHead::Classification {
                num_labels: labels.len(),
                seed: 0,
            };
            let mut enc = ardpipe_models::load_encoder(base, head, &load)?;
            let head = enc.model.head_parameters();
            let merge = adapter.merge_into(enc.model.linears_mut(), &head)?;
            whole_head(&merge, &head)?;
            let mut tensors = enc.model.base_parameters();
            tensors.extend(head);
            (merge, tensors)
        }
        (ArchConfig::PaliGemma(_), MergedTask::CausalLm) => {
            let mut vlm = ardpipe_models::load_vision_lm(base, &load)?;
            let merge = adapter.merge_into(vlm.model.linears_mut(), &[])?;
            (merge, vlm.model.base_parameters())
        }
        (ArchConfig::PaliGemma(_), MergedTask::SequenceClassification { .. }) => {
            return Err(vlm_classification(base));
        }
        (ArchConfig::Bert(_), MergedTask::CausalLm) => {
            // merged_config names the mismatch.
            merged_config(&location, &desc.config, &task)?;
            return Err(PeftMergeError::Refused(format!(
                "{} is an encoder and the adapter is for a causal LM",
                base.display()
            )));
        }
    };
    let config = merged_config(&location, &desc.config, &task)?;
    let folder = write_model_folder(out, &location, config, &tensors, opts)?;
    Ok(FolderMerge {
        folder,
        merge,
        task,
    })
}
