//! Export folding: one ARD adapter → one plain PEFT LoRA for its module.
//!
//! A_peft stacks each unit's live rows (those with a nonzero mask), B_peft places each unit's
//! columns block-wise with the mask and s/r0 folded in. rank = Σ_u n_u with n_u = ceil(r0·α_u)
//! live rows: the fractional row is kept so the fold is exact. With lora_alpha = rank
//! (written to `alpha_pattern`) PEFT's scaling lora_alpha / r is exactly 1, so
//! `B_peft @ A_peft · (lora_alpha / r) = ΔW`.

use tch::{Kind, Tensor};

use super::ArdLora;
use crate::linear::HeadAxis;
use crate::lora::export_copy;
use crate::peft::PeftModule;

impl ArdLora {
    /// Live rows per unit (rows whose mask is nonzero).
    pub fn live_rows(&self) -> Vec<i64> {
        tch::no_grad(|| {
            let m = self.mask().gt(0.0).to_kind(Kind::Int64).sum_dim_intlist(
                [1i64].as_slice(),
                false,
                None::<Kind>,
            );
            Vec::<i64>::try_from(&m.to_device(tch::Device::Cpu)).unwrap_or_default()
        })
    }

    pub fn fold_to_peft(&self) -> PeftModule {
        let live = self.live_rows();
        let total: i64 = live.iter().sum();
        // PEFT needs r ≥ 1: an adapter whose every α reached 0 exports one zero row.
        let rank = total.max(1);
        let (a_peft, b_peft) = tch::no_grad(|| {
            let dev = self.a.device();
            let a_peft = Tensor::zeros([rank, self.d_in], (self.kind, dev));
            let b_peft = Tensor::zeros([self.d_out, rank], (self.kind, dev));
            let b_eff = self.b_effective();
            let mut off = 0i64;
            for (u, &n) in live.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let u64_ = u as i64;
                let a_rows = self.a.select(0, u64_).narrow(0, 0, n);
                let b_cols = b_eff.select(0, u64_).narrow(1, 0, n);
                match self.axis {
                    HeadAxis::Output | HeadAxis::None => {
                        a_peft.narrow(0, off, n).copy_(&a_rows);
                        b_peft
                            .narrow(0, u64_ * self.d_out_u, self.d_out_u)
                            .narrow(1, off, n)
                            .copy_(&b_cols);
                    }
                    HeadAxis::Input => {
                        a_peft
                            .narrow(0, off, n)
                            .narrow(1, u64_ * self.d_in_u, self.d_in_u)
                            .copy_(&a_rows);
                        b_peft.narrow(1, off, n).copy_(&b_cols);
                    }
                }
                off += n;
            }
            (a_peft, b_peft)
        });
        PeftModule {
            module: self.path.clone(),
            tensors: vec![
                ("lora_A.weight".into(), export_copy(&a_peft)),
                ("lora_B.weight".into(), export_copy(&b_peft)),
            ],
            r: rank as usize,
            lora_alpha: rank as f64,
            adalora_keep: None,
        }
    }
}
