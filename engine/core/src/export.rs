//! Writing a trained adapter as a Hugging Face PEFT adapter folder, and merged full weights.
//!
//! The folder is what `PeftModel.from_pretrained` reads:
//! - `adapter_config.json`: `peft_type`, `r`, `lora_alpha`, `target_modules`, `rank_pattern`,
//!   `alpha_pattern`, `modules_to_save`, `task_type`, …
//! - `adapter_model.safetensors`: tensors named as PEFT's `get_peft_model_state_dict` names them
//!   on save (the adapter name `default` stripped):
//!   `base_model.model.<module>.lora_A.weight` [r, in], `….lora_B.weight` [out, r],
//!   DoRA's `….lora_magnitude_vector` [out], AdaLoRA's `….lora_A` / `….lora_B` / `….lora_E`
//!   (parameters, no `.weight`), and a `modules_to_save` module's own tensors under
//!   `base_model.model.<module>.<weight|bias>`.
//!
//! PEFT scales a LoRA/DoRA module's update by `alpha / r` (no rsLoRA), and an AdaLoRA module's
//! `B·(A⊙E)` by `lora_alpha / (init_r + 1e-5)` whatever rank it was pruned to (PEFT restores
//! `ranknum = init_r` on load; checked against PEFT 0.21 by `tests/peft_peer.rs`). ARD-LoRA's per-head units fold
//! into one LoRA per module with [`fold_heads`], which puts the mask and `s/r0` into B, so the
//! folded module's alpha equals its rank (scale 1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tch::{Kind, Tensor};

use crate::checkpoint::{self, CheckpointError};
use crate::rundir::{self, RunDirError};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
const PREFIX: &str = "base_model.model.";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("module `{module}`: {why}")]
    Module { module: String, why: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeftKind {
    Lora,
    /// LoRA with `use_dora: true`; each module carries a magnitude vector.
    Dora,
    AdaLora,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskType {
    SeqCls,
    CausalLm,
}

impl TaskType {
    fn peft_name(self) -> &'static str {
        match self {
            TaskType::SeqCls => "SEQ_CLS",
            TaskType::CausalLm => "CAUSAL_LM",
        }
    }
}

/// One adapted linear, as PEFT stores it. `module` is the path inside the Hugging Face model
/// (e.g. `bert.encoder.layer.0.attention.self.query`, `model.layers.3.self_attn.q_proj`).
#[derive(Debug)]
pub struct ModuleAdapter {
    pub module: String,
    /// [r, in]
    pub a: Tensor,
    /// [out, r]
    pub b: Tensor,
    /// PEFT's `lora_alpha` for this module: the update is scaled by `alpha / r`.
    pub alpha: f64,
    /// DoRA: the magnitude vector [out].
    pub magnitude: Option<Tensor>,
    /// AdaLoRA: the singular values [r, 1].
    pub e: Option<Tensor>,
}

/// A module trained in full and saved whole (a classification head), e.g. `classifier`.
#[derive(Debug)]
pub struct SavedModule {
    pub module: String,
    /// `(parameter name, tensor)`, e.g. `("weight", …)`, `("bias", …)`.
    pub tensors: Vec<(String, Tensor)>,
}

/// AdaLoRA's schedule, which PEFT's `AdaLoraConfig` requires.
#[derive(Debug, Clone)]
pub struct AdaLoraSettings {
    pub init_r: u32,
    pub target_r: u32,
    pub tinit: u64,
    pub tfinal: u64,
    pub delta_t: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub orth_reg_weight: f64,
    pub total_step: u64,
}

#[derive(Debug)]
pub struct PeftAdapter {
    pub kind: PeftKind,
    pub task_type: TaskType,
    /// Where the base model is (a local folder; PEFT reads it only when asked to).
    pub base_model_name_or_path: String,
    pub modules: Vec<ModuleAdapter>,
    pub modules_to_save: Vec<SavedModule>,
    pub lora_dropout: f64,
    pub adalora: Option<AdaLoraSettings>,
}

/// What was written, for the run's summary and report.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub modules: usize,
    /// Σ r over modules.
    pub total_rank: u64,
    /// Parameters in the adapter file.
    pub parameters: u64,
    pub ranks: BTreeMap<String, u64>,
}

fn module_err(module: &str, why: String) -> ExportError {
    ExportError::Module {
        module: module.to_string(),
        why,
    }
}

fn check_module(m: &ModuleAdapter, kind: PeftKind) -> Result<i64> {
    let (a, b) = (m.a.size(), m.b.size());
    if a.len() != 2 || b.len() != 2 {
        return Err(module_err(
            &m.module,
            format!("A {a:?} and B {b:?} must both be matrices"),
        ));
    }
    let r = a[0];
    if r < 1 || b[1] != r {
        return Err(module_err(
            &m.module,
            format!(
                "A is {a:?} = [r, in] and B is {b:?} = [out, r]: their ranks disagree or are 0"
            ),
        ));
    }
    if !(m.alpha.is_finite() && m.alpha > 0.0) {
        return Err(module_err(
            &m.module,
            format!("alpha {} must be a positive number", m.alpha),
        ));
    }
    match (kind, &m.magnitude) {
        (PeftKind::Dora, None) => {
            return Err(module_err(
                &m.module,
                "a DoRA export needs the magnitude vector".into(),
            ));
        }
        (PeftKind::Dora, Some(mag)) if mag.size() != [b[0]] => {
            return Err(module_err(
                &m.module,
                format!(
                    "the magnitude is {:?}; expected [{}] (one per output)",
                    mag.size(),
                    b[0]
                ),
            ));
        }
        _ => {}
    }
    match (kind, &m.e) {
        (PeftKind::AdaLora, None) => {
            return Err(module_err(
                &m.module,
                "an AdaLoRA export needs E (the singular values)".into(),
            ));
        }
        (PeftKind::AdaLora, Some(e)) if e.size() != [r, 1] => {
            return Err(module_err(
                &m.module,
                format!("E is {:?}; expected [{r}, 1]", e.size()),
            ));
        }
        _ => {}
    }
    if m.module.is_empty() || m.module.starts_with(PREFIX) {
        return Err(module_err(
            &m.module,
            format!("give the module path inside the model (without `{PREFIX}`)"),
        ));
    }
    Ok(r)
}

/// The most common value (ties: the smallest), PEFT's default for `r`/`lora_alpha`.
fn mode<T: Ord + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: BTreeMap<T, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let max = *counts.values().max()?;
    counts.into_iter().find(|(_, c)| *c == max).map(|(v, _)| v)
}

fn alpha_json(a: f64) -> Value {
    if a.fract() == 0.0 && a.abs() < 1e15 {
        json!(a as i64)
    } else {
        json!(a)
    }
}

/// Build `adapter_config.json`'s content.
pub fn adapter_config(adapter: &PeftAdapter) -> Result<Value> {
    if adapter.modules.is_empty() {
        return Err(ExportError::Invalid(
            "nothing to export: the adapter has no modules".into(),
        ));
    }
    let mut names = BTreeSet::new();
    let mut ranks = Vec::new();
    for m in &adapter.modules {
        if !names.insert(m.module.as_str()) {
            return Err(module_err(&m.module, "appears twice in the export".into()));
        }
        ranks.push((m.module.as_str(), check_module(m, adapter.kind)?, m.alpha));
    }
    let r = mode(ranks.iter().map(|(_, r, _)| *r)).unwrap_or(8);
    // f64 is not Ord: compare alphas by their bit patterns (they are finite and positive).
    let alpha =
        f64::from_bits(mode(ranks.iter().map(|(_, _, a)| a.to_bits())).unwrap_or(8f64.to_bits()));
    let rank_pattern: serde_json::Map<String, Value> = ranks
        .iter()
        .filter(|(_, rr, _)| *rr != r)
        .map(|(m, rr, _)| (m.to_string(), json!(rr)))
        .collect();
    let alpha_pattern: serde_json::Map<String, Value> = ranks
        .iter()
        .filter(|(_, _, a)| *a != alpha)
        .map(|(m, _, a)| (m.to_string(), alpha_json(*a)))
        .collect();
    let target_modules: Vec<&str> = names.iter().copied().collect();
    let modules_to_save: Option<Vec<&str>> = (!adapter.modules_to_save.is_empty()).then(|| {
        adapter
            .modules_to_save
            .iter()
            .map(|m| m.module.as_str())
            .collect()
    });
    let mut cfg = json!({
        "peft_type": if adapter.kind == PeftKind::AdaLora { "ADALORA" } else { "LORA" },
        "task_type": adapter.task_type.peft_name(),
        "base_model_name_or_path": adapter.base_model_name_or_path,
        "r": r,
        "lora_alpha": alpha_json(alpha),
        "lora_dropout": adapter.lora_dropout,
        "target_modules": target_modules,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "modules_to_save": modules_to_save,
        "fan_in_fan_out": false,
        "bias": "none",
        "use_rslora": false,
        "use_dora": adapter.kind == PeftKind::Dora,
        "init_lora_weights": true,
        "inference_mode": true,
        "revision": null,
    });
    if adapter.kind == PeftKind::AdaLora {
        let s = adapter.adalora.as_ref().ok_or_else(|| {
            ExportError::Invalid("an AdaLoRA export needs its schedule (AdaLoraSettings)".into())
        })?;
        // PEFT's AdaLoRA `rank_pattern` is a keep-mask over the `init_r` triplets of each module,
        // keyed by the module path inside the model plus `.lora_E`. On load PEFT builds every
        // module at `init_r`, keeps the masked rows, then loads our tensors, which are already at
        // the kept size: so the mask needs exactly r trues (which ones does not matter).
        let mut mask = serde_json::Map::new();
        for (m, rr, _) in &ranks {
            if *rr > s.init_r as i64 {
                return Err(module_err(
                    m,
                    format!(
                        "rank {rr} exceeds AdaLoRA's init_r {}; raise init_r",
                        s.init_r
                    ),
                ));
            }
            let keep: Vec<bool> = (0..s.init_r as i64).map(|i| i < *rr).collect();
            mask.insert(format!("{m}.lora_E"), json!(keep));
        }
        let obj = cfg.as_object_mut().expect("config is an object");
        obj.insert("rank_pattern".into(), Value::Object(mask));
        obj.insert("alpha_pattern".into(), json!({}));
        for (k, v) in [
            ("init_r", json!(s.init_r)),
            ("target_r", json!(s.target_r)),
            ("tinit", json!(s.tinit)),
            ("tfinal", json!(s.tfinal)),
            ("deltaT", json!(s.delta_t)),
            ("beta1", json!(s.beta1)),
            ("beta2", json!(s.beta2)),
            ("orth_reg_weight", json!(s.orth_reg_weight)),
            ("total_step", json!(s.total_step)),
        ] {
            obj.insert(k.into(), v);
        }
    }
    Ok(cfg)
}

/// Write the PEFT folder (`adapter_config.json` + `adapter_model.safetensors`), atomically file
/// by file. Tensors are written as f32 unless they are already f16/bf16.
pub fn write_peft_adapter(dir: &Path, adapter: &PeftAdapter) -> Result<ExportSummary> {
    let config = adapter_config(adapter)?;
    std::fs::create_dir_all(dir).map_err(rundir::io_err("cannot create", dir))?;
    let ada = adapter.kind == PeftKind::AdaLora;
    let mut named: Vec<(String, Tensor)> = Vec::new();
    let mut ranks = BTreeMap::new();
    let mut parameters = 0u64;
    let keep = |t: &Tensor| -> Tensor {
        match t.kind() {
            Kind::Half | Kind::BFloat16 | Kind::Float => t.shallow_clone(),
            _ => t.to_kind(Kind::Float),
        }
    };
    for m in &adapter.modules {
        let base = format!("{PREFIX}{}", m.module);
        let (a_name, b_name) = if ada {
            (format!("{base}.lora_A"), format!("{base}.lora_B"))
        } else {
            (
                format!("{base}.lora_A.weight"),
                format!("{base}.lora_B.weight"),
            )
        };
        ranks.insert(m.module.clone(), m.a.size()[0] as u64);
        named.push((a_name, keep(&m.a)));
        named.push((b_name, keep(&m.b)));
        if let (PeftKind::Dora, Some(mag)) = (adapter.kind, &m.magnitude) {
            named.push((format!("{base}.lora_magnitude_vector"), keep(mag)));
        }
        if let (PeftKind::AdaLora, Some(e)) = (adapter.kind, &m.e) {
            named.push((format!("{base}.lora_E"), keep(e)));
        }
    }
    for s in &adapter.modules_to_save {
        if s.tensors.is_empty() {
            return Err(module_err(
                &s.module,
                "a module to save has no tensors".into(),
            ));
        }
        for (p, t) in &s.tensors {
            named.push((format!("{PREFIX}{}.{p}", s.module), keep(t)));
        }
    }
    for (_, t) in &named {
        parameters += t.numel() as u64;
    }
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    checkpoint::write_safetensors(&dir.join(WEIGHTS_FILE), &refs, None)?;
    rundir::write_json_atomic(&dir.join(CONFIG_FILE), &config)?;
    Ok(ExportSummary {
        dir: dir.to_path_buf(),
        modules: adapter.modules.len(),
        total_rank: ranks.values().sum(),
        parameters,
        ranks,
    })
}

/// Full weights with the adapter merged in, as one safetensors file (names as given).
pub fn write_merged_weights(path: &Path, weights: &[(String, Tensor)]) -> Result<()> {
    if weights.is_empty() {
        return Err(ExportError::Invalid("no merged weights to write".into()));
    }
    let refs: Vec<(&str, &Tensor)> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    checkpoint::write_safetensors(path, &refs, None)?;
    Ok(())
}

/// Along which axis of W a module's heads are laid out (DESIGN.md, "Units").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadAxis {
    /// q/k/v and MLP groups: each head owns a block of output rows; its A sees the full input.
    Output,
    /// The attention output projection: each head owns a block of input columns.
    Input,
}

/// One ARD unit (a head) of a module: A [r_max, in_u], B [out_u, r_max], mask [r_max].
#[derive(Debug)]
pub struct HeadUnit<'a> {
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub mask: &'a Tensor,
}

/// Fold a module's per-head units into one LoRA pair (A [R, in], B [out, R]) with
/// ΔW = B·A = (s/r0) · blocks(B_h·diag(m_h)·A_h) exactly. Each head keeps the rank components
/// whose mask is non-zero (⌈r0·α⌉ of them, at least one), so the fold loses nothing; the mask and
/// `scale` (= s/r0) go into B. Export the result with `alpha = R` (PEFT scale 1).
pub fn fold_heads(units: &[HeadUnit<'_>], axis: HeadAxis, scale: f64) -> Result<(Tensor, Tensor)> {
    if units.is_empty() {
        return Err(ExportError::Invalid(
            "a module with no heads cannot be folded".into(),
        ));
    }
    let mut kept_a = Vec::new();
    let mut kept_b = Vec::new();
    for (h, u) in units.iter().enumerate() {
        let (a, b, m) = (u.a.size(), u.b.size(), u.mask.size());
        if a.len() != 2 || b.len() != 2 || m.len() != 1 || a[0] != b[1] || m[0] != a[0] {
            return Err(ExportError::Invalid(format!(
                "head {h}: A {a:?}, B {b:?} and mask {m:?} must be [r, in], [out, r] and [r]"
            )));
        }
        let mask = u.mask.to_kind(Kind::Float);
        let nonzero = Vec::<f32>::try_from(&mask)?
            .iter()
            .rposition(|&v| v != 0.0)
            .map_or(1, |i| i + 1) as i64;
        let a_h = u.a.to_kind(Kind::Float).narrow(0, 0, nonzero);
        let b_h = u.b.to_kind(Kind::Float).narrow(1, 0, nonzero)
            * mask.narrow(0, 0, nonzero).unsqueeze(0)
            * scale;
        kept_a.push(a_h);
        kept_b.push(b_h);
    }
    Ok(match axis {
        HeadAxis::Output => {
            let ins: BTreeSet<i64> = kept_a.iter().map(|a| a.size()[1]).collect();
            if ins.len() != 1 {
                return Err(ExportError::Invalid(format!(
                    "heads split the output axis, so every A must see the full input; got input sizes {ins:?}"
                )));
            }
            (Tensor::cat(&kept_a, 0), Tensor::block_diag(&kept_b))
        }
        HeadAxis::Input => {
            let outs: BTreeSet<i64> = kept_b.iter().map(|b| b.size()[0]).collect();
            if outs.len() != 1 {
                return Err(ExportError::Invalid(format!(
                    "heads split the input axis, so every B must produce the full output; got output sizes {outs:?}"
                )));
            }
            (Tensor::block_diag(&kept_a), Tensor::cat(&kept_b, 1))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn mat(rows: i64, cols: i64, offset: f64) -> Tensor {
        (Tensor::arange(rows * cols, (Kind::Float, Device::Cpu)).reshape([rows, cols]) * 0.37
            + offset)
            .sin()
    }

    fn lora(module: &str, r: i64, alpha: f64) -> ModuleAdapter {
        ModuleAdapter {
            module: module.into(),
            a: mat(r, 6, 0.1),
            b: mat(4, r, 0.2),
            alpha,
            magnitude: None,
            e: None,
        }
    }

    fn adapter(kind: PeftKind, modules: Vec<ModuleAdapter>) -> PeftAdapter {
        PeftAdapter {
            kind,
            task_type: TaskType::SeqCls,
            base_model_name_or_path: "/m/minilm".into(),
            modules,
            modules_to_save: vec![SavedModule {
                module: "classifier".into(),
                tensors: vec![
                    ("weight".into(), mat(3, 6, 0.3)),
                    (
                        "bias".into(),
                        Tensor::zeros([3], (Kind::Float, Device::Cpu)),
                    ),
                ],
            }],
            lora_dropout: 0.0,
            adalora: None,
        }
    }

    #[test]
    fn lora_folder_has_peft_names_patterns_and_config() {
        let d = tempfile::tempdir().unwrap();
        let q0 = "bert.encoder.layer.0.attention.self.query";
        let q1 = "bert.encoder.layer.1.attention.self.query";
        let v0 = "bert.encoder.layer.0.attention.self.value";
        let a = adapter(
            PeftKind::Lora,
            vec![lora(q0, 2, 2.0), lora(q1, 5, 5.0), lora(v0, 2, 2.0)],
        );
        let s = write_peft_adapter(d.path(), &a).unwrap();
        assert_eq!(s.total_rank, 9);
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join(CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["task_type"], "SEQ_CLS");
        assert_eq!(cfg["r"], 2);
        assert_eq!(cfg["lora_alpha"], 2);
        assert_eq!(cfg["rank_pattern"], json!({q1: 5}));
        assert_eq!(cfg["alpha_pattern"], json!({q1: 5}));
        assert_eq!(cfg["target_modules"], json!([q0, v0, q1])); // sorted
        assert_eq!(cfg["modules_to_save"], json!(["classifier"]));
        assert_eq!(cfg["use_dora"], false);
        assert_eq!(cfg["inference_mode"], true);
        let t = checkpoint::read_safetensors(&d.path().join(WEIGHTS_FILE)).unwrap();
        let names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight",
                "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight",
                "base_model.model.bert.encoder.layer.0.attention.self.value.lora_A.weight",
                "base_model.model.bert.encoder.layer.0.attention.self.value.lora_B.weight",
                "base_model.model.bert.encoder.layer.1.attention.self.query.lora_A.weight",
                "base_model.model.bert.encoder.layer.1.attention.self.query.lora_B.weight",
                "base_model.model.classifier.bias",
                "base_model.model.classifier.weight",
            ]
        );
        assert_eq!(t[4].1.size(), [5, 6]);
        assert!(t[4].1.equal(&mat(5, 6, 0.1)));
        assert_eq!(
            checkpoint::read_safetensors_metadata(&d.path().join(WEIGHTS_FILE)).unwrap()["format"],
            "pt"
        );
    }

    #[test]
    fn dora_and_adalora_tensors_and_config() {
        let d = tempfile::tempdir().unwrap();
        let mut m = lora("model.layers.0.self_attn.q_proj", 3, 6.0);
        m.magnitude = Some(Tensor::ones([4], (Kind::Float, Device::Cpu)));
        let mut a = adapter(PeftKind::Dora, vec![m]);
        a.task_type = TaskType::CausalLm;
        a.modules_to_save.clear();
        write_peft_adapter(d.path(), &a).unwrap();
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join(CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(cfg["use_dora"], true);
        assert_eq!(cfg["task_type"], "CAUSAL_LM");
        assert_eq!(cfg["modules_to_save"], Value::Null);
        let names: Vec<String> = checkpoint::read_safetensors(&d.path().join(WEIGHTS_FILE))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(
            names.contains(
                &"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"
                    .to_string()
            ),
            "{names:?}"
        );

        let d2 = tempfile::tempdir().unwrap();
        let mut m = lora("model.layers.0.self_attn.q_proj", 3, 3.0);
        m.e = Some(Tensor::ones([3, 1], (Kind::Float, Device::Cpu)));
        let mut a = adapter(PeftKind::AdaLora, vec![m]);
        a.adalora = Some(AdaLoraSettings {
            init_r: 12,
            target_r: 8,
            tinit: 10,
            tfinal: 20,
            delta_t: 5,
            beta1: 0.85,
            beta2: 0.85,
            orth_reg_weight: 0.5,
            total_step: 100,
        });
        write_peft_adapter(d2.path(), &a).unwrap();
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(d2.path().join(CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(cfg["peft_type"], "ADALORA");
        assert_eq!(cfg["total_step"], 100);
        assert_eq!(
            cfg["rank_pattern"]["model.layers.0.self_attn.q_proj.lora_E"],
            json!([
                true, true, true, false, false, false, false, false, false, false, false, false
            ])
        );
        let names: Vec<String> = checkpoint::read_safetensors(&d2.path().join(WEIGHTS_FILE))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(
            names.contains(&"base_model.model.model.layers.0.self_attn.q_proj.lora_E".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"base_model.model.model.layers.0.self_attn.q_proj.lora_A".to_string()),
            "{names:?}"
        );
    }

    #[test]
    fn invalid_exports_are_explained() {
        let d = tempfile::tempdir().unwrap();
        let mut bad = lora("q", 2, 2.0);
        bad.b = mat(4, 3, 0.0);
        let e = write_peft_adapter(d.path(), &adapter(PeftKind::Lora, vec![bad]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ranks disagree"), "{e}");
        let e = write_peft_adapter(d.path(), &adapter(PeftKind::Dora, vec![lora("q", 2, 2.0)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("magnitude"), "{e}");
        let e = write_peft_adapter(
            d.path(),
            &adapter(PeftKind::Lora, vec![lora("q", 2, 2.0), lora("q", 2, 2.0)]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("appears twice"), "{e}");
        let e = write_peft_adapter(
            d.path(),
            &adapter(PeftKind::Lora, vec![lora("base_model.model.q", 2, 2.0)]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("without `base_model.model.`"), "{e}");
        let e = write_peft_adapter(d.path(), &adapter(PeftKind::AdaLora, vec![]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no modules"), "{e}");
        assert!(!d.path().join(CONFIG_FILE).exists());
    }

    fn delta_of_units(units: &[HeadUnit<'_>], axis: HeadAxis, scale: f64) -> Tensor {
        let blocks: Vec<Tensor> = units
            .iter()
            .map(|u| u.b.matmul(&u.mask.diag(0)).matmul(u.a) * scale)
            .collect();
        match axis {
            HeadAxis::Output => Tensor::cat(&blocks, 0),
            HeadAxis::Input => Tensor::cat(&blocks, 1),
        }
    }

    #[test]
    fn folding_heads_reproduces_the_ard_update_exactly() {
        let r_max = 6;
        // Soft masks for r0·α = 2.4, 5.0, 0.0 (a head switched off): clamp(r0α − i, 0, 1).
        let masks: Vec<Tensor> = [2.4f32, 5.0, 0.0]
            .iter()
            .map(|ra| {
                let v: Vec<f32> = (0..r_max)
                    .map(|i| (ra - i as f32).clamp(0.0, 1.0))
                    .collect();
                Tensor::from_slice(&v)
            })
            .collect();
        for axis in [HeadAxis::Output, HeadAxis::Input] {
            let (a_in, b_out) = match axis {
                HeadAxis::Output => (12, 4), // each head: 4 output rows, full 12 inputs
                HeadAxis::Input => (4, 12),  // each head: 4 input columns, full 12 outputs
            };
            let a: Vec<Tensor> = (0..3).map(|h| mat(r_max, a_in, h as f64)).collect();
            let b: Vec<Tensor> = (0..3).map(|h| mat(b_out, r_max, 10.0 + h as f64)).collect();
            let units: Vec<HeadUnit> = (0..3)
                .map(|h| HeadUnit {
                    a: &a[h],
                    b: &b[h],
                    mask: &masks[h],
                })
                .collect();
            let (fa, fb) = fold_heads(&units, axis, 2.0).unwrap();
            // Kept ranks: ⌈2.4⌉ = 3, 5, and 1 for the silent head.
            assert_eq!(fa.size()[0], 9, "{axis:?}");
            assert_eq!(fb.size()[1], 9, "{axis:?}");
            let want = delta_of_units(&units, axis, 2.0);
            let got = fb.matmul(&fa);
            assert_eq!(got.size(), [12, 12]);
            let diff = (got - want).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{axis:?}: {diff}");
        }
        let e = fold_heads(&[], HeadAxis::Output, 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no heads"), "{e}");
    }

    #[test]
    fn merged_weights_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("model.safetensors");
        let w = vec![(
            "encoder.layer.0.attention.self.query.weight".to_string(),
            mat(4, 4, 0.0),
        )];
        write_merged_weights(&p, &w).unwrap();
        let back = checkpoint::read_safetensors(&p).unwrap();
        assert!(back[0].1.equal(&w[0].1));
        assert!(write_merged_weights(&p, &[]).is_err());
    }
}
