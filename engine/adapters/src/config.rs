//! One plain configuration struct per method. Defaults are docs/LANGUAGE.md's (ARD-LoRA) and PEFT's
//! (LoRA, DoRA, AdaLoRA); the DSL maps its values onto these fields by name.

use serde::{Deserialize, Serialize};

use crate::error::{Result, config_err};

/// Which total-variation penalty the ARD regulariser uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TvMode {
    /// Σ over module kind and head of |α_{l+1,h} − α_{l,h}| (smooth ranks across depth).
    #[default]
    Depth,
    /// Σ_u |α_u − EMA(α_u)| (smooth ranks over training time).
    Time,
}

/// How λ·R(α) moves α (docs/LANGUAGE.md, `alpha { update }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlphaUpdate {
    /// α's optimiser sees the task gradient only; after its step the regulariser acts as a
    /// proximal step of size lr_α·λ: the TV subgradient, then the ℓ1 soft threshold
    /// α_u ← max(α_min, α_u − lr_α·λ·β·c_u). λ then sets a threshold on the (normalised) task
    /// pull below which a unit's rank falls, instead of a rate at which every rank falls.
    #[default]
    Proximal,
    /// λ·R(α) is added to the loss and α's optimiser sees its gradient with the task's.
    Penalty,
}

/// ARD-LoRA (docs/LANGUAGE.md, `method = ard_lora`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArdLoraConfig {
    /// Base rank: α = 1 means rank r0.
    pub r0: usize,
    pub alpha_init: f64,
    pub alpha_min: f64,
    pub alpha_max: f64,
    /// The LoRA scale s: ΔW_u = (s / r0) · B_u · diag(m_u) · A_u.
    pub scale: f64,
    /// Dropout on the adapter input (training only).
    pub dropout: f64,
    /// Units per head-less linear (split along the output axis).
    pub groups: usize,
    /// Compact every K optimiser steps (0 = never).
    pub compaction_interval: usize,
    /// Rows kept beyond ceil(r0·α) so α can still grow after compaction.
    pub compaction_margin: usize,
    /// Weight of the cost-weighted ℓ1 term inside R(α).
    pub beta: f64,
    /// Weight of the total-variation term inside R(α).
    pub gamma: f64,
    pub tv: TvMode,
    /// EMA decay of the `time` TV variant.
    pub tv_ema_decay: f64,
    pub alpha_update: AlphaUpdate,
}

impl Default for ArdLoraConfig {
    fn default() -> Self {
        Self {
            r0: 8,
            alpha_init: 1.0,
            alpha_min: 0.0,
            alpha_max: 4.0,
            scale: 16.0,
            dropout: 0.0,
            groups: 1,
            compaction_interval: 100,
            compaction_margin: 1,
            beta: 1.0,
            gamma: 0.5,
            tv: TvMode::Depth,
            tv_ema_decay: 0.9,
            alpha_update: AlphaUpdate::Proximal,
        }
    }
}

impl ArdLoraConfig {
    /// r_max = ceil(r0 · α_max): the rank each unit is allocated before any compaction.
    pub fn r_max(&self) -> usize {
        (self.r0 as f64 * self.alpha_max - 1e-9).ceil().max(1.0) as usize
    }

    pub fn validate(&self) -> Result<()> {
        if self.r0 == 0 {
            return Err(config_err(
                "r0",
                "must be at least 1",
                "set r0 = 8 (the default) or another positive rank",
            ));
        }
        if !(self.alpha_min >= 0.0 && self.alpha_min < self.alpha_max && self.alpha_max.is_finite())
        {
            return Err(config_err(
                "alpha_min/alpha_max",
                format!(
                    "need 0 ≤ alpha_min < alpha_max < ∞, got [{}, {}]",
                    self.alpha_min, self.alpha_max
                ),
                "use the defaults alpha_min = 0, alpha_max = 4",
            ));
        }
        if !self.alpha_init.is_finite() {
            return Err(config_err(
                "alpha_init",
                "is not finite",
                "set alpha_init = 1",
            ));
        }
        check_dropout(self.dropout)?;
        if self.groups == 0 {
            return Err(config_err(
                "groups",
                "must be at least 1",
                "set groups = 1 (one unit per head-less linear)",
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(config_err(
                "scale",
                format!("must be positive, got {}", self.scale),
                "set scale = 2·r0",
            ));
        }
        if !(0.0..1.0).contains(&self.tv_ema_decay) {
            return Err(config_err(
                "tv_ema_decay",
                "must be in [0, 1)",
                "set tv_ema_decay = 0.9",
            ));
        }
        if self.beta < 0.0 || self.gamma < 0.0 {
            return Err(config_err(
                "beta/gamma",
                "must be non-negative",
                "use beta = 1, gamma = 0.5",
            ));
        }
        Ok(())
    }
}

/// LoRA with PEFT semantics: scale = lora_alpha / r, A Kaiming-uniform(a=√5), B zeros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub dropout: f64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            lora_alpha: 8.0,
            dropout: 0.0,
        }
    }
}

impl LoraConfig {
    pub fn scaling(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(config_err("r", "must be at least 1", "set r = 8"));
        }
        check_dropout(self.dropout)
    }
}

/// DoRA shares LoRA's knobs (PEFT `use_dora = true`).
pub type DoraConfig = LoraConfig;

/// AdaLoRA with PEFT semantics. `tinit`, `tfinal` and `delta_t` are derived from the total step
/// count when left unset (see [`AdaLoraConfig::schedule`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaLoraConfig {
    pub init_r: usize,
    pub target_r: usize,
    pub lora_alpha: f64,
    pub dropout: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub orth_reg_weight: f64,
    pub tinit: Option<usize>,
    pub tfinal: Option<usize>,
    pub delta_t: Option<usize>,
    /// Fractions of the total steps used when the step counts above are unset.
    pub tinit_fraction: f64,
    pub tfinal_fraction: f64,
    pub delta_t_fraction: f64,
}

impl Default for AdaLoraConfig {
    fn default() -> Self {
        Self {
            init_r: 12,
            target_r: 8,
            lora_alpha: 8.0,
            dropout: 0.0,
            beta1: 0.85,
            beta2: 0.85,
            orth_reg_weight: 0.5,
            tinit: None,
            tfinal: None,
            delta_t: None,
            tinit_fraction: 0.1,
            tfinal_fraction: 0.2,
            delta_t_fraction: 0.01,
        }
    }
}

/// The concrete budget schedule of one AdaLoRA run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaLoraSchedule {
    pub total_step: usize,
    pub tinit: usize,
    pub tfinal: usize,
    pub delta_t: usize,
}

impl AdaLoraConfig {
    pub fn validate(&self) -> Result<()> {
        if self.init_r == 0 || self.target_r == 0 || self.target_r > self.init_r {
            return Err(config_err(
                "init_r/target_r",
                format!(
                    "need 1 ≤ target_r ≤ init_r, got target_r = {}, init_r = {}",
                    self.target_r, self.init_r
                ),
                "use PEFT's defaults init_r = 12, target_r = 8",
            ));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(b > 0.0 && b < 1.0) {
                return Err(config_err(
                    name,
                    format!("must be in (0, 1), got {b}"),
                    "use 0.85",
                ));
            }
        }
        if self.orth_reg_weight < 0.0 {
            return Err(config_err(
                "orth_reg_weight",
                "must be non-negative",
                "use 0.5",
            ));
        }
        check_dropout(self.dropout)
    }

    /// Concrete tinit / tfinal / ΔT for a run of `total_step` optimiser steps.
    pub fn schedule(&self, total_step: usize) -> Result<AdaLoraSchedule> {
        let frac = |f: f64| (f * total_step as f64).round() as usize;
        let tinit = self.tinit.unwrap_or_else(|| frac(self.tinit_fraction));
        let tfinal = self.tfinal.unwrap_or_else(|| frac(self.tfinal_fraction));
        let delta_t = self
            .delta_t
            .unwrap_or_else(|| frac(self.delta_t_fraction))
            .max(1);
        if tinit + tfinal >= total_step {
            return Err(config_err(
                "tinit/tfinal",
                format!(
                    "tinit ({tinit}) + tfinal ({tfinal}) leave no budget-decay phase in {total_step} total steps"
                ),
                "train for more steps or lower tinit/tfinal (or their fractions)",
            ));
        }
        Ok(AdaLoraSchedule {
            total_step,
            tinit,
            tfinal,
            delta_t,
        })
    }
}

/// Full fine-tuning: the base weights themselves train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FullConfig {
    /// Whether the bias trains too (PEFT-free reference: everything trains).
    pub train_bias: bool,
}

/// The method attached to a set of linears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum MethodConfig {
    ArdLora(ArdLoraConfig),
    Lora(LoraConfig),
    Dora(DoraConfig),
    Adalora(AdaLoraConfig),
    Full(FullConfig),
    /// No linear is adapted: only the model's task head trains (a linear probe). It has no
    /// per-linear form, so [`crate::attach`] refuses it.
    HeadOnly,
}

fn check_dropout(p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(config_err(
            "dropout",
            format!("must be in [0, 1), got {p}"),
            "use 0.0 or 0.05",
        ));
    }
    Ok(())
}
