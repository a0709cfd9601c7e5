//! AdaLoRA with PEFT semantics (`SVDLinear` + `RankAllocator`):
//!
//!   y = W x + b + dropout(x) (A ⊙ E)ᵀ Bᵀ · lora_alpha / (ranknum + 1e-5)
//!
//! with E the singular values (zeros at init), A and B ~ N(0, 0.02), ranknum = init_r (it never
//! changes in PEFT, so the scale is fixed). The [`RankAllocator`] scores every triplet
//! (A row, E entry, B column) by smoothed sensitivity × uncertainty and zeroes the least important
//! E entries down to a cubic budget schedule. The trainer drives it: after `backward`, before
//! `zero_grad`, it calls [`RankAllocator::update_and_allocate`] with the step number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::config::{AdaLoraConfig, AdaLoraSchedule};
use crate::error::{Result, state_err};
use crate::init::{adapter_kind, in_kind, maybe_dropout};
use crate::linear::{AdaptableLinear, BaseLinear, LinearAdapter};
use crate::lora::{add_delta, export_copy};
use crate::peft::PeftModule;

#[derive(Debug)]
pub struct AdaLora {
    path: String,
    cfg: AdaLoraConfig,
    /// `[r, d_in]` right singular vectors.
    a: Tensor,
    /// `[r, 1]` singular values.
    e: Tensor,
    /// `[d_out, r]` left singular vectors.
    b: Tensor,
    /// PEFT's `ranknum`: the initial rank, used in the scale.
    ranknum: f64,
    kind: Kind,
    merged: bool,
    /// Which triplets survived the last budget allocation (None: not masked yet).
    keep: Option<Vec<bool>>,
}

impl AdaLora {
    pub fn new(linear: &AdaptableLinear, cfg: &AdaLoraConfig) -> Result<Self> {
        cfg.validate()?;
        let (d_out, d_in) = (linear.base.d_out() as i64, linear.base.d_in() as i64);
        let kind = adapter_kind(linear.base.weight.kind());
        let dev = linear.base.weight.device();
        let r = cfg.init_r as i64;
        let normal =
            |shape: &[i64]| (Tensor::randn(shape, (kind, dev)) * 0.02).set_requires_grad(true);
        Ok(Self {
            path: linear.path.clone(),
            cfg: cfg.clone(),
            a: normal(&[r, d_in]),
            e: Tensor::zeros([r, 1], (kind, dev)).set_requires_grad(true),
            b: normal(&[d_out, r]),
            ranknum: cfg.init_r as f64,
            kind,
            merged: false,
            keep: None,
        })
    }

    pub fn attach(linear: &mut AdaptableLinear, cfg: &AdaLoraConfig) -> Result<()> {
        let a = Self::new(linear, cfg)?;
        linear.adapter = Some(Box::new(a));
        Ok(())
    }

    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn init_r(&self) -> usize {
        self.cfg.init_r
    }
    /// Triplets currently kept (all of them before the first allocation).
    pub fn rank(&self) -> usize {
        self.keep
            .as_ref()
            .map_or(self.cfg.init_r, |k| k.iter().filter(|&&b| b).count())
    }
    pub fn keep(&self) -> Option<&[bool]> {
        self.keep.as_deref()
    }

    fn factor(&self) -> f64 {
        let scaling = if self.cfg.lora_alpha > 0.0 {
            self.cfg.lora_alpha
        } else {
            self.cfg.init_r as f64
        };
        scaling / (self.ranknum + 1e-5)
    }

    /// ‖AAᵀ − I‖_F + ‖BᵀB − I‖_F: this module's part of PEFT's orthogonality regulariser.
    pub fn orth_penalty(&self) -> Tensor {
        let r = self.cfg.init_r as i64;
        let eye = Tensor::eye(r, (self.kind, self.a.device()));
        let pa = (self.a.matmul(&self.a.tr()) - &eye).frobenius_norm([0i64, 1].as_slice(), false);
        let pb = (self.b.tr().matmul(&self.b) - &eye).frobenius_norm([0i64, 1].as_slice(), false);
        pa + pb
    }

    /// Zero the E entries of dropped triplets (in place, shared with the optimiser).
    fn apply_keep(&mut self, keep: Vec<bool>) {
        let mask: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        let m = Tensor::from_slice(&mask)
            .to_kind(self.kind)
            .to_device(self.e.device())
            .unsqueeze(1);
        tch::no_grad(|| {
            let _ = self.e.f_mul_(&m);
        });
        self.keep = Some(keep);
    }
}

/// PEFT's AdaLoRA regulariser over all adapted modules: weight × mean over A and B matrices of
/// their orthogonality penalty. Add it to the task loss each step.
pub fn orth_regulariser(adapters: &[&AdaLora], weight: f64) -> Option<Tensor> {
    if adapters.is_empty() || weight <= 0.0 {
        return None;
    }
    let sum = adapters
        .iter()
        .map(|a| a.orth_penalty())
        .reduce(|x, y| x + y)?;
    Some(sum * (weight / (2 * adapters.len()) as f64))
}

impl LinearAdapter for AdaLora {
    fn forward(&self, base: &BaseLinear, x: &Tensor, train: bool) -> Tensor {
        let y = base.forward(x);
        let xd = maybe_dropout(&in_kind(x, self.kind), self.cfg.dropout, train);
        let d = xd.matmul(&(&self.a * &self.e).tr()).matmul(&self.b.tr()) * self.factor();
        // In the base output's dtype, as PEFT adds `lora_B(lora_A(x))` to it: 16-bit under
        // autocast. Adding in the input's f32 would make every activation after it f32.
        let kind = y.kind();
        y + d.to_kind(kind)
    }
    fn delta_weight(&self, _base: &BaseLinear) -> Tensor {
        self.b.matmul(&(&self.a * &self.e)) * self.factor()
    }
    fn trainable(&self) -> Vec<(String, Tensor)> {
        vec![
            ("lora_A".into(), self.a.shallow_clone()),
            ("lora_E".into(), self.e.shallow_clone()),
            ("lora_B".into(), self.b.shallow_clone()),
        ]
    }
    fn method(&self) -> &'static str {
        "adalora"
    }
    /// Kept triplets only: a pruned triplet's E is zero, so its A row and B column carry nothing.
    fn exported_parameters(&self) -> usize {
        let (d_in, d_out) = (self.a.size()[1] as usize, self.b.size()[0] as usize);
        self.rank() * (d_in + d_out + 1)
    }
    fn is_merged(&self) -> bool {
        self.merged
    }
    fn merge(&mut self, base: &mut BaseLinear) -> Result<()> {
        add_delta(base, &self.delta_weight(base), 1.0);
        self.merged = true;
        Ok(())
    }
    fn unmerge(&mut self, base: &mut BaseLinear) -> Result<()> {
        add_delta(base, &self.delta_weight(base), -1.0);
        self.merged = false;
        Ok(())
    }
    /// PEFT saves only the kept triplets (sliced by `rank_pattern`) and rebuilds `ranknum`
    /// from `init_r`, so the scale survives the round trip.
    fn peft_export(&self, _base: &BaseLinear) -> Result<PeftModule> {
        let (a, e, b) = match &self.keep {
            Some(keep) => {
                let idx: Vec<i64> = (0..keep.len() as i64)
                    .filter(|&i| keep[i as usize])
                    .collect();
                let idx = Tensor::from_slice(&idx).to_device(self.a.device());
                (
                    self.a.index_select(0, &idx),
                    self.e.index_select(0, &idx),
                    self.b.index_select(1, &idx),
                )
            }
            None => (
                self.a.shallow_clone(),
                self.e.shallow_clone(),
                self.b.shallow_clone(),
            ),
        };
        Ok(PeftModule {
            module: self.path.clone(),
            tensors: vec![
                ("lora_A".into(), export_copy(&a)),
                ("lora_B".into(), export_copy(&b)),
                ("lora_E".into(), export_copy(&e)),
            ],
            r: self.cfg.init_r,
            lora_alpha: self.cfg.lora_alpha,
            adalora_keep: self.keep.clone(),
        })
    }
    fn as_adalora(&self) -> Option<&AdaLora> {
        Some(self)
    }
    fn as_adalora_mut(&mut self) -> Option<&mut AdaLora> {
        Some(self)
    }
}

/// Smoothed importance of one tensor.
#[derive(Debug)]
struct Importance {
    exp_avg_ipt: Tensor,
    exp_avg_unc: Tensor,
}

/// The JSON part of the allocator's checkpoint state (tensors go through [`RankAllocator::state_tensors`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RankAllocatorState {
    pub schedule: AdaLoraSchedule,
    pub init_budget: usize,
    pub target_budget: usize,
    /// Per module path: kept triplets of the last allocation.
    pub rank_pattern: Option<BTreeMap<String, Vec<bool>>>,
}

/// PEFT's `RankAllocator` plus `AdaLoraModel.update_and_allocate`, over ardpipe's modules.
#[derive(Debug)]
pub struct RankAllocator {
    beta1: f64,
    beta2: f64,
    state: RankAllocatorState,
    /// Keyed `<module path>.<lora_A|lora_E|lora_B>`.
    ipt: BTreeMap<String, Importance>,
}

const PARTS: [&str; 3] = ["lora_A", "lora_E", "lora_B"];

impl RankAllocator {
    /// `adapters` are all AdaLoRA modules of the model; `total_step` the plan's optimiser steps.
    pub fn new(cfg: &AdaLoraConfig, adapters: &[&AdaLora], total_step: usize) -> Result<Self> {
        cfg.validate()?;
        let schedule = cfg.schedule(total_step)?;
        let init_budget = adapters.iter().map(|a| a.cfg.init_r).sum();
        let target_budget = cfg.target_r * adapters.len();
        Ok(Self {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            state: RankAllocatorState {
                schedule,
                init_budget,
                target_budget,
                rank_pattern: None,
            },
            ipt: BTreeMap::new(),
        })
    }

    pub fn schedule(&self) -> AdaLoraSchedule {
        self.state.schedule
    }
    pub fn state(&self) -> &RankAllocatorState {
        &self.state
    }

    /// The cubic budget schedule: (budget, whether to mask at this step).
    pub fn budget(&self, step: usize) -> (usize, bool) {
        let s = self.state.schedule;
        let (init, target) = (
            self.state.init_budget as f64,
            self.state.target_budget as f64,
        );
        if step <= s.tinit {
            (self.state.init_budget, false)
        } else if step > s.total_step - s.tfinal {
            (self.state.target_budget, true)
        } else {
            let mul = 1.0 - (step - s.tinit) as f64 / (s.total_step - s.tfinal - s.tinit) as f64;
            let budget = ((init - target) * mul.powi(3) + target) as usize;
            (budget, step.is_multiple_of(s.delta_t))
        }
    }

    /// Call once per optimiser step, after `backward` (gradients present) and before `zero_grad`.
    /// Returns the budget when triplets were (re)allocated at this step.
    pub fn update_and_allocate(
        &mut self,
        adapters: &mut [&mut AdaLora],
        step: usize,
    ) -> Result<Option<usize>> {
        let s = self.state.schedule;
        let final_step = s.total_step - s.tfinal;
        if step < final_step {
            self.update_importance(adapters)?;
            let (budget, mask) = self.budget(step);
            if mask {
                self.mask_to_budget(adapters, budget);
                return Ok(Some(budget));
            }
            Ok(None)
        } else if step == final_step {
            let (budget, _) = self.budget(step);
            self.mask_to_budget(adapters, budget);
            self.ipt.clear();
            Ok(Some(budget))
        } else {
            // Final fine-tuning: keep the frozen pattern (masked E entries would regrow).
            if let Some(pattern) = self.state.rank_pattern.clone() {
                for a in adapters.iter_mut() {
                    if let Some(keep) = pattern.get(&a.path) {
                        a.apply_keep(keep.clone());
                    }
                }
            }
            Ok(None)
        }
    }

    fn update_importance(&mut self, adapters: &[&mut AdaLora]) -> Result<()> {
        let (b1, b2) = (self.beta1, self.beta2);
        tch::no_grad(|| {
            for a in adapters {
                for (part, p) in PARTS.iter().zip([&a.a, &a.e, &a.b]) {
                    let g = p.grad();
                    if !g.defined() {
                        return Err(state_err(
                            &format!("{}.{part}", a.path),
                            "no gradient: the rank allocator must run after backward and before zero_grad",
                        ));
                    }
                    let ipt = (p * g).abs();
                    let entry = self
                        .ipt
                        .entry(format!("{}.{part}", a.path))
                        .or_insert_with(|| Importance {
                            exp_avg_ipt: ipt.zeros_like(),
                            exp_avg_unc: ipt.zeros_like(),
                        });
                    entry.exp_avg_ipt = &entry.exp_avg_ipt * b1 + &ipt * (1.0 - b1);
                    entry.exp_avg_unc =
                        &entry.exp_avg_unc * b2 + (&ipt - &entry.exp_avg_ipt).abs() * (1.0 - b2);
                }
            }
            Ok(())
        })
    }

    fn score(&self, key: &str) -> Option<Tensor> {
        self.ipt.get(key).map(|i| &i.exp_avg_ipt * &i.exp_avg_unc)
    }

    fn mask_to_budget(&mut self, adapters: &mut [&mut AdaLora], budget: usize) {
        let k = self.state.init_budget.saturating_sub(budget) as i64;
        let mut triplets = Vec::with_capacity(adapters.len());
        for a in adapters.iter() {
            let (Some(sa), Some(se), Some(sb)) = (
                self.score(&format!("{}.lora_A", a.path)),
                self.score(&format!("{}.lora_E", a.path)),
                self.score(&format!("{}.lora_B", a.path)),
            ) else {
                triplets.push(None);
                continue;
            };
            let t = se.view([-1])
                + sa.mean_dim([1i64].as_slice(), false, None::<Kind>)
                + sb.mean_dim([0i64].as_slice(), false, None::<Kind>);
            triplets.push(Some(t));
        }
        let scored: Vec<&Tensor> = triplets.iter().flatten().collect();
        if k <= 0 || scored.is_empty() {
            return;
        }
        let all = Tensor::cat(&scored, 0);
        let k = k.min(all.size()[0]);
        // One host sync per allocation (every ΔT steps), not per module.
        let threshold = all.kthvalue(k, 0, false).0.double_value(&[]);
        let mut pattern = BTreeMap::new();
        for (a, t) in adapters.iter_mut().zip(&triplets) {
            if let Some(t) = t {
                let keep: Vec<bool> = Vec::<f64>::try_from(&t.to_kind(Kind::Double))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v > threshold)
                    .collect();
                a.apply_keep(keep.clone());
                pattern.insert(a.path.clone(), keep);
            }
        }
        self.state.rank_pattern = Some(pattern);
    }

    /// Importance tensors for a checkpoint, named `adalora_ipt.<key>.{exp_avg_ipt,exp_avg_unc}`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (k, i) in &self.ipt {
            out.push((
                format!("adalora_ipt.{k}.exp_avg_ipt"),
                i.exp_avg_ipt.shallow_clone(),
            ));
            out.push((
                format!("adalora_ipt.{k}.exp_avg_unc"),
                i.exp_avg_unc.shallow_clone(),
            ));
        }
        out
    }

    /// Restore from [`Self::state`] (serialised by the caller) and [`Self::state_tensors`].
    pub fn load_state(
        &mut self,
        state: RankAllocatorState,
        tensors: &[(String, Tensor)],
    ) -> Result<()> {
        let mut ipt: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
        for (name, t) in tensors {
            let Some(rest) = name.strip_prefix("adalora_ipt.") else {
                continue;
            };
            if let Some(key) = rest.strip_suffix(".exp_avg_ipt") {
                ipt.entry(key.to_string()).or_default().0 = Some(t.shallow_clone());
            } else if let Some(key) = rest.strip_suffix(".exp_avg_unc") {
                ipt.entry(key.to_string()).or_default().1 = Some(t.shallow_clone());
            } else {
                return Err(state_err(
                    name,
                    "unknown AdaLoRA importance tensor (expected .exp_avg_ipt or .exp_avg_unc)",
                ));
            }
        }
        let mut restored = BTreeMap::new();
        for (key, pair) in ipt {
            match pair {
                (Some(exp_avg_ipt), Some(exp_avg_unc)) => {
                    restored.insert(
                        key,
                        Importance {
                            exp_avg_ipt,
                            exp_avg_unc,
                        },
                    );
                }
                _ => {
                    return Err(state_err(
                        &key,
                        "checkpoint holds only one of exp_avg_ipt / exp_avg_unc",
                    ));
                }
            }
        }
        self.ipt = restored;
        self.state = state;
        Ok(())
    }
}

impl RankAllocator {
    /// After restoring a checkpoint: give the adapters back their kept-triplet pattern (E is
    /// already zero where masked; this restores what export and telemetry read).
    pub fn sync_adapters(&self, adapters: &mut [&mut AdaLora]) {
        if let Some(pattern) = &self.state.rank_pattern {
            for a in adapters.iter_mut() {
                if let Some(keep) = pattern.get(&a.path) {
                    a.apply_keep(keep.clone());
                }
            }
        }
    }
}
