//! SGD with momentum as PyTorch's `torch.optim.SGD` (coupled weight decay, dampening, Nesterov).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{Optimizer, ParamGroup, check_no_strays, find_param, take_state};
use crate::error::{Result, state_err};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SgdConfig {
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }
    }
}

#[derive(Debug)]
pub struct Sgd {
    name: String,
    cfg: SgdConfig,
    groups: Vec<ParamGroup>,
    momentum: HashMap<String, Tensor>,
}

impl Sgd {
    pub fn new(name: impl Into<String>, cfg: SgdConfig, groups: Vec<ParamGroup>) -> Self {
        Self {
            name: name.into(),
            cfg,
            groups,
            momentum: HashMap::new(),
        }
    }
}

impl Optimizer for Sgd {
    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }
    fn groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.groups
    }

    fn step(&mut self) {
        let SgdConfig {
            momentum,
            dampening,
            nesterov,
        } = self.cfg;
        tch::no_grad(|| {
            for g in &mut self.groups {
                for p in &mut g.params {
                    let grad = p.tensor.grad();
                    if !grad.defined() {
                        continue;
                    }
                    let mut d = if g.weight_decay != 0.0 {
                        &grad + &p.tensor * g.weight_decay
                    } else {
                        grad.shallow_clone()
                    };
                    if momentum != 0.0 {
                        let buf = match self.momentum.get_mut(&p.name) {
                            Some(buf) => {
                                let _ = buf.g_mul_scalar_(momentum);
                                let _ = buf.g_add_(&(&d * (1.0 - dampening)));
                                buf.shallow_clone()
                            }
                            None => {
                                let buf = d.detach().copy();
                                self.momentum.insert(p.name.clone(), buf.shallow_clone());
                                buf
                            }
                        };
                        d = if nesterov { &d + &buf * momentum } else { buf };
                    }
                    let _ = p.tensor.g_add_(&(d * -g.lr));
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
        if let Some(buf) = self.momentum.get_mut(name) {
            *buf = tch::no_grad(|| reslice(buf));
        }
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.groups
            .iter()
            .flat_map(|g| g.params.iter())
            .filter_map(|p| {
                self.momentum.get(&p.name).map(|b| {
                    (
                        format!("{}.{}.momentum_buffer", self.name, p.name),
                        b.shallow_clone(),
                    )
                })
            })
            .collect()
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        check_no_strays(tensors, &self.name, &self.groups, &["momentum_buffer"])?;
        let mut mom = HashMap::new();
        for p in self.groups.iter().flat_map(|g| g.params.iter()) {
            if let Some(t) = take_state(
                tensors,
                &format!("{}.{}.momentum_buffer", self.name, p.name),
                &p.tensor,
            )? {
                mom.insert(p.name.clone(), t);
            }
        }
        self.momentum = mom;
        Ok(())
    }
}
