//! R(α) = β · Σ_u c_u α_u + γ · TV(α), over every ARD unit of the model.
//!
//! c_u = (d_in_u + d_out_u) normalised to mean 1. TV across depth sums |α_{l+1,h} − α_{l,h}|
//! over units of the same module kind and head in consecutive adapted layers; the `time`
//! variant sums |α_u − EMA(α_u)| with the EMA updated (detached) after each step.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use super::ArdLora;
use crate::config::{ArdLoraConfig, TvMode};
use crate::error::{Result, config_err, state_err};

/// The two parts of R(α), unweighted, so the trainer can log each.
#[derive(Debug)]
pub struct RegTerms {
    /// Σ_u c_u α_u.
    pub l1: Tensor,
    /// TV(α) (depth or time).
    pub tv: Tensor,
}

impl RegTerms {
    /// β·ℓ1 + γ·TV.
    pub fn total(&self, beta: f64, gamma: f64) -> Tensor {
        &self.l1 * beta + &self.tv * gamma
    }
}

#[derive(Debug)]
pub struct ArdRegulariser {
    /// Module paths in the order the α vectors are concatenated.
    modules: Vec<String>,
    units_per_module: Vec<i64>,
    cost: Tensor,
    /// Index pairs (i, j) of depth neighbours in the concatenated α.
    tv_i: Tensor,
    tv_j: Tensor,
    mode: TvMode,
    decay: f64,
    ema: Option<Tensor>,
    pub beta: f64,
    pub gamma: f64,
}

impl ArdRegulariser {
    pub fn new(adapters: &[&ArdLora], cfg: &ArdLoraConfig) -> Result<Self> {
        if adapters.is_empty() {
            return Err(config_err(
                "ard_lora",
                "the regulariser needs at least one ARD-LoRA adapter",
                "check that the adapter selectors matched modules",
            ));
        }
        let dev = adapters[0].alpha().device();
        let kind = adapters[0].alpha().kind();
        let mut costs = Vec::new();
        // (kind, head) → [(layer, global index)]
        let mut chains: BTreeMap<(String, usize), Vec<(usize, i64)>> = BTreeMap::new();
        let mut idx = 0i64;
        for a in adapters {
            for u in a.units() {
                costs.push((u.d_in + u.d_out) as f64);
                if let Some(l) = u.layer {
                    chains
                        .entry((u.kind.clone(), u.head))
                        .or_default()
                        .push((l, idx));
                }
                idx += 1;
            }
        }
        let mean = costs.iter().sum::<f64>() / costs.len() as f64;
        let cost: Vec<f64> = costs.iter().map(|c| c / mean).collect();
        let (mut ti, mut tj) = (Vec::new(), Vec::new());
        for chain in chains.values_mut() {
            chain.sort();
            for w in chain.windows(2) {
                ti.push(w[0].1);
                tj.push(w[1].1);
            }
        }
        let alpha = Self::concat(adapters);
        Ok(Self {
            modules: adapters.iter().map(|a| a.path().to_string()).collect(),
            units_per_module: adapters.iter().map(|a| a.n_units() as i64).collect(),
            cost: Tensor::from_slice(&cost).to_kind(kind).to_device(dev),
            tv_i: Tensor::from_slice(&ti).to_device(dev),
            tv_j: Tensor::from_slice(&tj).to_device(dev),
            mode: cfg.tv,
            decay: cfg.tv_ema_decay,
            ema: match cfg.tv {
                TvMode::Time => Some(alpha.detach().copy()),
                TvMode::Depth => None,
            },
            beta: cfg.beta,
            gamma: cfg.gamma,
        })
    }

    fn concat(adapters: &[&ArdLora]) -> Tensor {
        let alphas: Vec<&Tensor> = adapters.iter().map(|a| a.alpha()).collect();
        Tensor::cat(&alphas, 0)
    }

    fn check(&self, adapters: &[&ArdLora]) -> Result<()> {
        let same = adapters.len() == self.modules.len()
            && adapters
                .iter()
                .zip(&self.modules)
                .all(|(a, m)| a.path() == m);
        if !same {
            return Err(state_err(
                "ard regulariser",
                "the adapters passed differ from those it was built with (order matters)",
            ));
        }
        Ok(())
    }

    /// The ℓ1 and TV terms for the current α (differentiable).
    pub fn terms(&self, adapters: &[&ArdLora]) -> Result<RegTerms> {
        self.check(adapters)?;
        let alpha = Self::concat(adapters);
        let l1 = (&alpha * &self.cost).sum(None::<Kind>);
        let tv = match (&self.mode, &self.ema) {
            (TvMode::Time, Some(ema)) => (&alpha - ema).abs().sum(None::<Kind>),
            _ if self.tv_i.numel() == 0 => alpha.sum(None::<Kind>) * 0.0,
            _ => (alpha.index_select(0, &self.tv_j) - alpha.index_select(0, &self.tv_i))
                .abs()
                .sum(None::<Kind>),
        };
        Ok(RegTerms { l1, tv })
    }

    /// β·ℓ1 + γ·TV with the configured weights.
    pub fn total(&self, adapters: &[&ArdLora]) -> Result<Tensor> {
        Ok(self.terms(adapters)?.total(self.beta, self.gamma))
    }

    /// The proximal step of λ·R(α) for `alpha { update = proximal }`, with step size
    /// `eta` = lr_α·λ: per module (in the order the regulariser was built) the amount to
    /// subtract from α, η·(γ·∂TV(α) + β·c_u). TV enters by its subgradient; the ℓ1 part is the
    /// soft threshold, exact once the adapter clamps α at α_min (α ≥ 0: the prox of β·Σ c_u α_u
    /// is a shift and a clamp).
    pub fn proximal_shifts(
        &self,
        adapters: &[&ArdLora],
        eta: f64,
        beta: f64,
        gamma: f64,
    ) -> Result<Vec<Tensor>> {
        self.check(adapters)?;
        let shift = tch::no_grad(|| {
            let alpha = Self::concat(adapters).detach();
            let tv_grad = match (&self.mode, &self.ema) {
                (TvMode::Time, Some(ema)) => (&alpha - ema).sign(),
                _ if self.tv_i.numel() == 0 => alpha.zeros_like(),
                _ => {
                    let d = (alpha.index_select(0, &self.tv_j) - alpha.index_select(0, &self.tv_i))
                        .sign();
                    alpha
                        .zeros_like()
                        .index_add(0, &self.tv_j, &d)
                        .index_add(0, &self.tv_i, &(-&d))
                }
            };
            (tv_grad * gamma + &self.cost * beta) * eta
        });
        Ok(shift.split_with_sizes(self.units_per_module.as_slice(), 0))
    }

    /// `time` TV: fold the current α into the EMA; call after each optimiser step.
    pub fn update_ema(&mut self, adapters: &[&ArdLora]) -> Result<()> {
        self.check(adapters)?;
        if let Some(ema) = &self.ema {
            let alpha = Self::concat(adapters).detach();
            self.ema = Some(ema * self.decay + alpha * (1.0 - self.decay));
        }
        Ok(())
    }

    pub fn units_per_module(&self) -> &[i64] {
        &self.units_per_module
    }

    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.ema
            .iter()
            .map(|e| ("ard_reg.tv_ema".to_string(), e.shallow_clone()))
            .collect()
    }

    pub fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        if let Some(ema) = &self.ema {
            let (_, t) = tensors
                .iter()
                .find(|(n, _)| n == "ard_reg.tv_ema")
                .ok_or_else(|| {
                    state_err(
                        "ard_reg.tv_ema",
                        "missing from the checkpoint (tv = time needs it)",
                    )
                })?;
            if t.size() != ema.size() {
                return Err(state_err(
                    "ard_reg.tv_ema",
                    format!(
                        "shape {:?} in the checkpoint, {:?} expected: the adapted units changed",
                        t.size(),
                        ema.size()
                    ),
                ));
            }
            self.ema = Some(t.to_kind(ema.kind()).to_device(ema.device()));
        }
        Ok(())
    }
}
