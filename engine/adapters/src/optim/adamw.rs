//! AdamW exactly as PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias correction,
//! per-parameter step counts), with per-group learning rate and weight decay; optionally with
//! one second moment pooled over a group (`AdamWConfig::pooled`). A group steps in one call of
//! PyTorch's fused kernel (`_fused_adamw_`, `torch.optim.AdamW(fused=True)`) instead of a dozen
//! small kernels per tensor.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{Optimizer, ParamGroup, check_no_strays, find_param, take_state};
use crate::error::{Result, state_err};
use crate::ops;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// One second moment for the whole group: the mean of g² over every element of every
    /// parameter, instead of one per element. Steps then keep the gradients' relative sizes
    /// (what ARD-LoRA's α needs: a unit pulled harder must move further).
    pub pooled: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            pooled: false,
        }
    }
}

#[derive(Debug)]
struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: i64,
    /// `step` as the fused kernel reads and increments it: an f32 scalar on the parameter's
    /// device (so no step copies a count from the host).
    step_tensor: Tensor,
}

impl Moments {
    fn zeros(p: &Tensor) -> Self {
        Moments {
            exp_avg: p.zeros_like(),
            exp_avg_sq: p.zeros_like(),
            step: 0,
            step_tensor: Tensor::zeros([], (Kind::Float, p.device())),
        }
    }
}

#[derive(Debug)]
pub struct AdamW {
    /// Prefix of every state tensor name (two optimisers can share a checkpoint).
    name: String,
    cfg: AdamWConfig,
    groups: Vec<ParamGroup>,
    state: HashMap<String, Moments>,
}

impl AdamW {
    pub fn new(name: impl Into<String>, cfg: AdamWConfig, groups: Vec<ParamGroup>) -> Self {
        Self {
            name: name.into(),
            cfg,
            groups,
            state: HashMap::new(),
        }
    }

    /// The step count of one parameter (0 before its first update).
    pub fn param_step(&self, name: &str) -> i64 {
        self.state.get(name).map_or(0, |m| m.step)
    }
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        self.state.get(name).map(|m| (&m.exp_avg, &m.exp_avg_sq))
    }
}

/// Mean of g² over every element of the group's parameters that have a gradient (a 0-d tensor).
fn group_mean_square(params: &[super::Param]) -> Tensor {
    let (mut sum, mut n): (Option<Tensor>, usize) = (None, 0);
    for p in params {
        let g = p.tensor.grad();
        if !g.defined() {
            continue;
        }
        let s = g.to_kind(Kind::Float).square().sum(Kind::Float);
        sum = Some(match sum {
            None => s,
            Some(t) => t + s,
        });
        n += g.numel();
    }
    match sum {
        Some(s) => (s / n.max(1) as f64).to_kind(params[0].tensor.kind()),
        None => Tensor::zeros([], (Kind::Float, tch::Device::Cpu)),
    }
}

/// Every parameter of the group with a gradient, in one fused AdamW call per device and dtype.
fn fused_step(g: &ParamGroup, state: &mut HashMap<String, Moments>, cfg: AdamWConfig) {
    let live: Vec<(&super::Param, Tensor)> = g
        .params
        .iter()
        .map(|p| (p, p.tensor.grad()))
        .filter(|(_, grad)| grad.defined())
        .collect();
    for (p, _) in &live {
        let st = state
            .entry(p.name.clone())
            .or_insert_with(|| Moments::zeros(&p.tensor));
        st.step += 1;
    }
    let mut batches: Vec<((tch::Device, Kind), Vec<ops::AdamWSlot<'_>>)> = Vec::new();
    for (p, grad) in &live {
        let st = &state[&p.name];
        let key = (p.tensor.device(), p.tensor.kind());
        let slot = ops::AdamWSlot {
            param: &p.tensor,
            grad,
            exp_avg: &st.exp_avg,
            exp_avg_sq: &st.exp_avg_sq,
            step: &st.step_tensor,
        };
        match batches.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(slot),
            None => batches.push((key, vec![slot])),
        }
    }
    for (_, slots) in &batches {
        ops::fused_adamw(slots, g.lr, (cfg.beta1, cfg.beta2), g.weight_decay, cfg.eps)
            .unwrap_or_else(|e| panic!("AdamW step of group `{}`: {e}", g.name));
    }
}

/// AdamW with the group's mean g² in every element of the second moment.
fn pooled_step(g: &mut ParamGroup, state: &mut HashMap<String, Moments>, cfg: AdamWConfig) {
    let AdamWConfig {
        beta1, beta2, eps, ..
    } = cfg;
    let sq = group_mean_square(&g.params);
    let (lr, weight_decay) = (g.lr, g.weight_decay);
    for p in &mut g.params {
        let grad = p.tensor.grad();
        if !grad.defined() {
            continue;
        }
        let st = state
            .entry(p.name.clone())
            .or_insert_with(|| Moments::zeros(&p.tensor));
        st.step += 1;
        let _ = st.step_tensor.g_add_scalar_(1.0);
        if weight_decay != 0.0 {
            let _ = p.tensor.g_mul_scalar_(1.0 - lr * weight_decay);
        }
        let _ = st.exp_avg.lerp_(&grad, 1.0 - beta1);
        let _ = st.exp_avg_sq.g_mul_scalar_(beta2);
        let _ = st.exp_avg_sq.g_add_(&(&sq * (1.0 - beta2)));
        let bc1 = 1.0 - beta1.powi(st.step as i32);
        let bc2 = 1.0 - beta2.powi(st.step as i32);
        let step_size = lr / bc1;
        let denom = st.exp_avg_sq.sqrt() / bc2.sqrt() + eps;
        let _ = p.tensor.g_add_(&(&st.exp_avg / denom * -step_size));
    }
}

impl Optimizer for AdamW {
    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }
    fn groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.groups
    }

    fn step(&mut self) {
        let cfg = self.cfg;
        tch::no_grad(|| {
            for g in &mut self.groups {
                if cfg.pooled {
                    pooled_step(g, &mut self.state, cfg);
                } else {
                    fused_step(g, &mut self.state, cfg);
                }
            }
        });
    }

    fn replace_param(
        &mut self,
        name: &str,
        new: Tensor,
        reslice: &dyn Fn(&Tensor) -> Tensor,
    ) -> Result<()> {
        let p = find_param(&mut self.groups, name)
            .ok_or_else(|| state_err(name, "not a parameter of this optimiser"))?;
        p.tensor = new;
        if let Some(m) = self.state.get_mut(name) {
            tch::no_grad(|| {
                m.exp_avg = reslice(&m.exp_avg);
                m.exp_avg_sq = reslice(&m.exp_avg_sq);
            });
        }
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in self.groups.iter().flat_map(|g| g.params.iter()) {
            if let Some(m) = self.state.get(&p.name) {
                let pre = format!("{}.{}", self.name, p.name);
                out.push((format!("{pre}.exp_avg"), m.exp_avg.shallow_clone()));
                out.push((format!("{pre}.exp_avg_sq"), m.exp_avg_sq.shallow_clone()));
                out.push((format!("{pre}.step"), Tensor::from(m.step)));
            }
        }
        out
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        check_no_strays(
            tensors,
            &self.name,
            &self.groups,
            &["exp_avg", "exp_avg_sq", "step"],
        )?;
        let mut state = HashMap::new();
        for p in self.groups.iter().flat_map(|g| g.params.iter()) {
            let pre = format!("{}.{}", self.name, p.name);
            let m = take_state(tensors, &format!("{pre}.exp_avg"), &p.tensor)?;
            let v = take_state(tensors, &format!("{pre}.exp_avg_sq"), &p.tensor)?;
            let step = tensors
                .iter()
                .find(|(n, _)| *n == format!("{pre}.step"))
                .map(|(_, t)| t.to_kind(Kind::Int64).int64_value(&[]));
            match (m, v, step) {
                (Some(exp_avg), Some(exp_avg_sq), Some(step)) => {
                    state.insert(
                        p.name.clone(),
                        Moments {
                            step_tensor: Tensor::from(step as f32).to_device(exp_avg.device()),
                            exp_avg,
                            exp_avg_sq,
                            step,
                        },
                    );
                }
                (None, None, None) => {}
                _ => {
                    return Err(state_err(
                        &pre,
                        "the checkpoint holds only part of this parameter's AdamW state",
                    ));
                }
            }
        }
        self.state = state;
        Ok(())
    }
}
