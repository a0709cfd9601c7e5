//! Compaction: physically shrink each unit's allocated rows to what its α can reach.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::ArdLora;
use crate::error::Result;
use crate::linear::AdaptableLinear;
use crate::optim::Optimizer;

/// One trainable tensor replaced by a narrower one. Optimiser state of the old tensor maps to
/// the new one through [`Resized::apply`], so moments stay aligned with their rows.
#[derive(Debug)]
pub struct Resized {
    /// Name relative to the linear (`lora_A`, `lora_B`), as in `trainable()`.
    pub name: String,
    /// The new parameter (a fresh leaf that requires grad).
    pub tensor: Tensor,
    pub dim: i64,
    pub len: i64,
    /// Zeroes rows past each unit's own capacity (broadcasts against the narrowed tensor).
    pub keep: Tensor,
}

impl Resized {
    /// The same slicing applied to a state tensor shaped like the old parameter.
    pub fn apply(&self, state: &Tensor) -> Tensor {
        let s = state.narrow(self.dim, 0, self.len);
        (s * self.keep.to_kind(state.kind())).contiguous()
    }
}

/// What one compaction pass changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompactionReport {
    pub modules_resized: usize,
    pub params_before: usize,
    pub params_after: usize,
}

impl ArdLora {
    /// Shrink every unit to ceil(r0·α_u) + margin rows (never above its current capacity),
    /// narrow storage to the largest unit, zero the rows past each unit's capacity and lower
    /// α's per-unit bound to match. The forward output is unchanged: the dropped rows all have
    /// mask 0. Returns the replaced tensors (empty when nothing shrank).
    pub fn compact(&mut self) -> Vec<Resized> {
        let margin = self.cfg.compaction_margin;
        // Rows with a nonzero mask, counted on the mask the forward uses (exact, no float
        // disagreement between host and device about ceil(r0·α)).
        let live: Vec<i64> = tch::no_grad(|| {
            let m = self.mask().gt(0.0).to_kind(Kind::Int64).sum_dim_intlist(
                [1i64].as_slice(),
                false,
                None::<Kind>,
            );
            Vec::<i64>::try_from(&m.to_device(tch::Device::Cpu)).unwrap_or_default()
        });
        let new_caps: Vec<usize> = self
            .caps
            .iter()
            .zip(&live)
            .map(|(&cap, &need)| (need as usize + margin).max(1).min(cap))
            .collect();
        self.restore_capacities(&new_caps)
    }

    /// Narrow every unit to the given capacities (what a checkpoint recorded after compaction;
    /// each at most the current one). Returns the replaced tensors, like [`Self::compact`].
    pub fn restore_capacities(&mut self, caps: &[usize]) -> Vec<Resized> {
        let new_caps: Vec<usize> = caps
            .iter()
            .zip(&self.caps)
            .map(|(&c, &cur)| c.clamp(1, cur))
            .collect();
        if new_caps == self.caps || caps.len() != self.caps.len() {
            return vec![];
        }
        let r_new = *new_caps.iter().max().expect("at least one unit") as i64;
        let (u, dev) = (self.n_units, self.a.device());
        let keep: Vec<f32> = new_caps
            .iter()
            .flat_map(|&c| (0..r_new).map(move |i| if (i as usize) < c { 1.0 } else { 0.0 }))
            .collect();
        let keep = Tensor::from_slice(&keep)
            .view([u, r_new])
            .to_kind(self.kind)
            .to_device(dev);
        let keep_a = keep.unsqueeze(2);
        let keep_b = keep.unsqueeze(1);
        let (new_a, new_b) = tch::no_grad(|| {
            (
                (self.a.narrow(1, 0, r_new) * &keep_a)
                    .contiguous()
                    .set_requires_grad(true),
                (self.b.narrow(2, 0, r_new) * &keep_b)
                    .contiguous()
                    .set_requires_grad(true),
            )
        });
        self.a = new_a.shallow_clone();
        self.b = new_b.shallow_clone();
        self.caps = new_caps;
        self.refresh_bounds();
        self.project_alpha();
        vec![
            Resized {
                name: "lora_A".into(),
                tensor: new_a,
                dim: 1,
                len: r_new,
                keep: keep_a,
            },
            Resized {
                name: "lora_B".into(),
                tensor: new_b,
                dim: 2,
                len: r_new,
                keep: keep_b,
            },
        ]
    }
}

/// Compact every ARD-LoRA adapter among `linears` and move its optimiser state along. Call every
/// `compaction_interval` steps, after the optimiser step (gradients of the old tensors are dropped).
pub fn compact_linears<'a>(
    linears: impl IntoIterator<Item = &'a mut AdaptableLinear>,
    optimizer: &mut dyn Optimizer,
) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    for lin in linears {
        let path = lin.path.clone();
        let Some(ard) = lin.adapter.as_mut().and_then(|a| a.as_ard_mut()) else {
            continue;
        };
        report.params_before += ard.param_count_allocated();
        let resized = ard.compact();
        report.params_after += ard.param_count_allocated();
        if resized.is_empty() {
            continue;
        }
        report.modules_resized += 1;
        for r in &resized {
            optimizer.replace_param(
                &format!("{path}.{}", r.name),
                r.tensor.shallow_clone(),
                &|s| r.apply(s),
            )?;
        }
    }
    Ok(report)
}
