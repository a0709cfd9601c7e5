//! The Hugging Face PEFT format: per-module tensors and `adapter_config.json` fields.
//!
//! Tensor names follow PEFT's saved files: `base_model.model.<module>.lora_A.weight` for
//! LoRA/DoRA (plus `lora_magnitude_vector` for DoRA) and `base_model.model.<module>.lora_A`
//! / `lora_B` / `lora_E` for AdaLoRA, whose parameters are plain tensors, not linears.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// One adapted module in PEFT form.
#[derive(Debug)]
pub struct PeftModule {
    /// The module path inside the model (ardpipe's path, before any model-specific prefix).
    pub module: String,
    /// `(suffix, tensor)`, e.g. `("lora_A.weight", A)`; CPU-contiguous copies.
    pub tensors: Vec<(String, Tensor)>,
    pub r: usize,
    pub lora_alpha: f64,
    /// AdaLoRA only: which triplets survived the budget (`rank_pattern` entry), when masked.
    pub adalora_keep: Option<Vec<bool>>,
}

/// Which PEFT adapter type an export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeftType {
    #[serde(rename = "LORA")]
    Lora,
    #[serde(rename = "ADALORA")]
    AdaLora,
}

/// The `adapter_config.json` fields PEFT needs to rebuild the adapter. The caller fills
/// `task_type`, `base_model_name_or_path` and `modules_to_save`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeftConfig {
    pub peft_type: PeftType,
    pub task_type: Option<String>,
    pub base_model_name_or_path: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    pub rank_pattern: BTreeMap<String, serde_json::Value>,
    pub alpha_pattern: BTreeMap<String, f64>,
    pub use_dora: bool,
    pub use_rslora: bool,
    pub fan_in_fan_out: bool,
    pub bias: String,
    pub init_lora_weights: bool,
    pub inference_mode: bool,
    pub modules_to_save: Option<Vec<String>>,
    /// AdaLoRA's own fields (`init_r`, `target_r`, `tinit`, …), flattened into the JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Assemble the config and the named tensors of a whole adapter. `prefix` is prepended to every
/// module path (e.g. `bert.` when PEFT wraps MiniLM in `BertForSequenceClassification`).
pub fn assemble(
    peft_type: PeftType,
    modules: &[PeftModule],
    prefix: &str,
    dropout: f64,
    use_dora: bool,
) -> (PeftConfig, Vec<(String, Tensor)>) {
    let mut tensors = Vec::new();
    let mut rank_pattern = BTreeMap::new();
    let mut alpha_pattern = BTreeMap::new();
    let mut targets = std::collections::BTreeSet::new();
    // The most common rank/alpha become the defaults; the rest go into the patterns.
    let r_default = mode(modules.iter().map(|m| m.r as i64)).unwrap_or(8) as usize;
    let a_default = mode(modules.iter().map(|m| (m.lora_alpha * 1e6).round() as i64))
        .map(|v| v as f64 / 1e6)
        .unwrap_or(8.0);
    for m in modules {
        let path = format!("{prefix}{}", m.module);
        // Full paths, not last names: `dense` alone would also adapt modules we did not train.
        targets.insert(path.clone());
        for (suffix, t) in &m.tensors {
            tensors.push((
                format!("base_model.model.{path}.{suffix}"),
                t.shallow_clone(),
            ));
        }
        match (&m.adalora_keep, peft_type) {
            (Some(keep), PeftType::AdaLora) => {
                rank_pattern.insert(format!("{path}.lora_E"), serde_json::json!(keep));
            }
            _ => {
                if m.r != r_default && peft_type == PeftType::Lora {
                    rank_pattern.insert(path.clone(), serde_json::json!(m.r));
                }
            }
        }
        if (m.lora_alpha - a_default).abs() > 1e-9 && peft_type == PeftType::Lora {
            alpha_pattern.insert(path, m.lora_alpha);
        }
    }
    let config = PeftConfig {
        peft_type,
        task_type: None,
        base_model_name_or_path: None,
        r: r_default,
        lora_alpha: a_default,
        lora_dropout: dropout,
        target_modules: targets.into_iter().collect(),
        rank_pattern,
        alpha_pattern,
        use_dora,
        use_rslora: false,
        fan_in_fan_out: false,
        bias: "none".into(),
        init_lora_weights: true,
        inference_mode: true,
        modules_to_save: None,
        extra: BTreeMap::new(),
    };
    (config, tensors)
}

fn mode(values: impl Iterator<Item = i64>) -> Option<i64> {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(v, c)| (c, std::cmp::Reverse(v)))
        .map(|(v, _)| v)
}
