//! Optimisers with explicit, inspectable state. tch's `nn::Optimizer` hides its moments, but
//! compaction must slice them and checkpoints must hold them, so ardpipe keeps its own.

mod adamw;
mod loss_scale;
mod sgd;

pub use adamw::{AdamW, AdamWConfig};
pub use loss_scale::LossScaler;
pub use sgd::{Sgd, SgdConfig};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Result, state_err};

/// One trainable tensor under its full name (`<module path>.<name>`).
#[derive(Debug)]
pub struct Param {
    pub name: String,
    pub tensor: Tensor,
}

/// Parameters sharing a learning rate and weight decay (e.g. adapter weights vs ARD's α).
#[derive(Debug)]
pub struct ParamGroup {
    pub name: String,
    pub lr: f64,
    pub weight_decay: f64,
    pub params: Vec<Param>,
}

impl ParamGroup {
    pub fn new(
        name: impl Into<String>,
        lr: f64,
        weight_decay: f64,
        params: Vec<(String, Tensor)>,
    ) -> Self {
        Self {
            name: name.into(),
            lr,
            weight_decay,
            params: params
                .into_iter()
                .map(|(name, tensor)| Param { name, tensor })
                .collect(),
        }
    }
}

/// A group's hyper-parameters as a checkpoint records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupHyper {
    pub name: String,
    pub lr: f64,
    pub weight_decay: f64,
}

pub trait Optimizer {
    fn groups(&self) -> &[ParamGroup];
    fn groups_mut(&mut self) -> &mut [ParamGroup];
    /// One update of every parameter that has a gradient.
    fn step(&mut self);
    /// Replace parameter `name` by `new` and map its state through `reslice` (compaction).
    fn replace_param(
        &mut self,
        name: &str,
        new: Tensor,
        reslice: &dyn Fn(&Tensor) -> Tensor,
    ) -> Result<()>;
    /// All state as named tensors (moments, step counts), ready for safetensors.
    fn state_tensors(&self) -> Vec<(String, Tensor)>;
    /// Restore [`Self::state_tensors`]; shapes are checked against the current parameters.
    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<()>;

    fn zero_grad(&mut self) {
        for g in self.groups_mut() {
            for p in &mut g.params {
                p.tensor.zero_grad();
            }
        }
    }

    fn set_lr(&mut self, group: &str, lr: f64) -> Result<()> {
        let g = self
            .groups_mut()
            .iter_mut()
            .find(|g| g.name == group)
            .ok_or_else(|| state_err(group, "no optimiser parameter group of that name"))?;
        g.lr = lr;
        Ok(())
    }

    fn hyper(&self) -> Vec<GroupHyper> {
        self.groups()
            .iter()
            .map(|g| GroupHyper {
                name: g.name.clone(),
                lr: g.lr,
                weight_decay: g.weight_decay,
            })
            .collect()
    }

    /// Scale all gradients so their global L2 norm is at most `max_norm`; returns the norm
    /// before clipping (one host sync per call).
    fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self
            .groups()
            .iter()
            .flat_map(|g| g.params.iter())
            .map(|p| p.tensor.grad())
            .filter(Tensor::defined)
            .collect();
        clip_grads(&grads, max_norm)
    }

    fn num_params(&self) -> usize {
        self.groups()
            .iter()
            .flat_map(|g| g.params.iter())
            .map(|p| p.tensor.numel())
            .sum()
    }
}

/// Global-norm clipping over `grads` (in place); returns the norm before clipping.
pub fn clip_grads(grads: &[Tensor], max_norm: f64) -> f64 {
    if grads.is_empty() {
        return 0.0;
    }
    let norms: Vec<Tensor> = grads
        .iter()
        .map(|g| g.to_kind(Kind::Float).norm())
        .collect();
    let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        tch::no_grad(|| {
            for g in grads {
                let mut g = g.shallow_clone();
                let _ = g.g_mul_scalar_(coef);
            }
        });
    }
    total
}

/// Find a parameter by name across groups.
pub(crate) fn find_param<'a>(groups: &'a mut [ParamGroup], name: &str) -> Option<&'a mut Param> {
    groups
        .iter_mut()
        .flat_map(|g| g.params.iter_mut())
        .find(|p| p.name == name)
}

/// Read one state tensor for `param` out of a checkpoint list, checking its shape.
pub(crate) fn take_state(
    tensors: &[(String, Tensor)],
    key: &str,
    like: &Tensor,
) -> Result<Option<Tensor>> {
    let Some((_, t)) = tensors.iter().find(|(n, _)| n == key) else {
        return Ok(None);
    };
    if t.size() != like.size() {
        return Err(state_err(
            key,
            format!(
                "shape {:?} in the checkpoint but the parameter is {:?}: the adapter configuration changed since it was saved",
                t.size(),
                like.size()
            ),
        ));
    }
    Ok(Some(t.to_kind(like.kind()).to_device(like.device())))
}

/// Names in `tensors` under `prefix.` that belong to no parameter: a checkpoint from another model.
pub(crate) fn check_no_strays(
    tensors: &[(String, Tensor)],
    prefix: &str,
    groups: &[ParamGroup],
    suffixes: &[&str],
) -> Result<()> {
    for (n, _) in tensors {
        let Some(rest) = n.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let known = suffixes.iter().any(|s| {
            rest.strip_suffix(s)
                .and_then(|p| p.strip_suffix('.'))
                .is_some_and(|p| {
                    groups
                        .iter()
                        .flat_map(|g| g.params.iter())
                        .any(|q| q.name == p)
                })
        });
        if !known {
            return Err(state_err(
                n,
                "optimiser state for a parameter this model does not have (was the pipeline's adapter placement changed?)",
            ));
        }
    }
    Ok(())
}

/// Tensors under their full names.
pub type NamedTensors = Vec<(String, Tensor)>;

/// The trainable tensors of `linears` split by role: (weights, ARD α). Build the weight group
/// (with decay) and the α group (own lr, no decay) from these.
pub fn split_by_role<'a>(
    linears: impl IntoIterator<Item = &'a crate::AdaptableLinear>,
) -> (NamedTensors, NamedTensors) {
    let (mut weights, mut alphas) = (Vec::new(), Vec::new());
    for l in linears {
        for (n, t, role) in l.trainable() {
            match role {
                crate::ParamRole::Weight => weights.push((n, t)),
                crate::ParamRole::Alpha => alphas.push((n, t)),
            }
        }
    }
    (weights, alphas)
}
