//! DoRA with PEFT semantics (`DoraLinearLayer`): a magnitude vector m (one entry per output row)
//! times the direction `W + s·BA` normalised per output row:
//!
//!   y = b + (m / ‖W + s·BA‖_row) ⊙ (W x' + s·B A x')   with x' = dropout(x),
//!
//! where the norm is detached (DoRA §4.3) and PEFT computes it with `torch.linalg.norm(W + sΔ, dim=1)`.
//! With dropout active PEFT keeps the plain base output on x and adds `(m/n − 1) ⊙ W x'`; both
//! forms are implemented so training matches PEFT exactly.

use tch::{Kind, Tensor};

use crate::config::DoraConfig;
use crate::error::{Result, state_err};
use crate::init::{adapter_kind, in_kind, kaiming_uniform_a_sqrt5, maybe_dropout, zeros_param};
use crate::linear::{AdaptableLinear, BaseLinear, LinearAdapter};
use crate::lora::export_copy;
use crate::peft::PeftModule;

#[derive(Debug)]
pub struct Dora {
    path: String,
    cfg: DoraConfig,
    a: Tensor,
    b: Tensor,
    /// `[d_out]`, initialised to ‖W‖ per output row (B = 0 at init).
    magnitude: Tensor,
    kind: Kind,
    /// The row norms used at merge time, needed to undo it.
    merged_norm: Option<Tensor>,
}

impl Dora {
    pub fn new(linear: &AdaptableLinear, cfg: &DoraConfig) -> Result<Self> {
        cfg.validate()?;
        let (d_out, d_in) = (linear.base.d_out() as i64, linear.base.d_in() as i64);
        let kind = adapter_kind(linear.base.weight.kind());
        let dev = linear.base.weight.device();
        let r = cfg.r as i64;
        let a = kaiming_uniform_a_sqrt5(&[r, d_in], kind, dev);
        let b = zeros_param(&[d_out, r], kind, dev);
        let mut me = Self {
            path: linear.path.clone(),
            cfg: cfg.clone(),
            a,
            b,
            magnitude: Tensor::zeros([d_out], (kind, dev)),
            kind,
            merged_norm: None,
        };
        me.magnitude = me.weight_norm(&linear.base).set_requires_grad(true);
        Ok(me)
    }

    pub fn attach(linear: &mut AdaptableLinear, cfg: &DoraConfig) -> Result<()> {
        let a = Self::new(linear, cfg)?;
        linear.adapter = Some(Box::new(a));
        Ok(())
    }

    pub fn magnitude(&self) -> &Tensor {
        &self.magnitude
    }

    fn scaling(&self) -> f64 {
        self.cfg.scaling()
    }

    /// s·B A, without autograd history (it only feeds the detached norm and merging).
    fn lora_weight(&self) -> Tensor {
        tch::no_grad(|| self.b.matmul(&self.a) * self.scaling())
    }

    /// ‖W + s·BA‖ per output row, detached.
    fn weight_norm(&self, base: &BaseLinear) -> Tensor {
        tch::no_grad(|| {
            let w = base.dense_weight().detach().to_kind(self.kind) + self.lora_weight();
            w.norm_scalaropt_dim(2.0, [1i64].as_slice(), false)
        })
    }
}

impl LinearAdapter for Dora {
    fn forward(&self, base: &BaseLinear, x: &Tensor, train: bool) -> Tensor {
        let xk = in_kind(x, self.kind);
        let w = base.dense_weight().to_kind(self.kind);
        let scale = &self.magnitude / self.weight_norm(base);
        let dropping = train && self.cfg.dropout > 0.0;
        let xd = maybe_dropout(&xk, self.cfg.dropout, train);
        let lora = (xd.matmul(&self.a.tr()) * self.scaling()).matmul(&self.b.tr());
        let out = if dropping {
            // PEFT: base(x) + (m/n − 1)·W x' + (m/n)·s·BA x'.
            let base_out = xk.linear(
                &w,
                base.bias.as_ref().map(|b| b.to_kind(self.kind)).as_ref(),
            );
            base_out + (&scale - 1.0) * xd.matmul(&w.tr()) + &scale * lora
        } else {
            // Same value with one base matmul: (m/n)·(W x + s·BA x) + b.
            let y = &scale * (xk.matmul(&w.tr()) + lora);
            match &base.bias {
                Some(b) => y + b.to_kind(self.kind),
                None => y,
            }
        };
        out.to_kind(x.kind())
    }

    /// The effective change of the weight: (m/n)·(W + sΔ) − W.
    fn delta_weight(&self, base: &BaseLinear) -> Tensor {
        let w = base.dense_weight().detach().to_kind(self.kind);
        let scale = (&self.magnitude / self.weight_norm(base)).unsqueeze(1);
        scale * (&w + self.b.matmul(&self.a) * self.scaling()) - w
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        vec![
            ("lora_A".into(), self.a.shallow_clone()),
            ("lora_B".into(), self.b.shallow_clone()),
            (
                "lora_magnitude_vector".into(),
                self.magnitude.shallow_clone(),
            ),
        ]
    }
    fn method(&self) -> &'static str {
        "dora"
    }
    fn is_merged(&self) -> bool {
        self.merged_norm.is_some()
    }
    fn merge(&mut self, base: &mut BaseLinear) -> Result<()> {
        let norm = self.weight_norm(base);
        tch::no_grad(|| {
            let w = base.weight.detach().to_kind(self.kind);
            let factor = (self.magnitude.detach() / &norm).unsqueeze(1);
            let merged = factor * (w + self.lora_weight());
            base.weight = merged.to_kind(base.weight.kind());
        });
        self.merged_norm = Some(norm);
        Ok(())
    }
    fn unmerge(&mut self, base: &mut BaseLinear) -> Result<()> {
        let norm = self.merged_norm.take().ok_or_else(|| {
            state_err(
                &self.path,
                "unmerge called on a DoRA adapter that is not merged",
            )
        })?;
        tch::no_grad(|| {
            let w = base.weight.detach().to_kind(self.kind);
            let factor = (self.magnitude.detach() / norm).unsqueeze(1);
            let orig = w / factor - self.lora_weight();
            base.weight = orig.to_kind(base.weight.kind());
        });
        Ok(())
    }
    fn peft_export(&self, _base: &BaseLinear) -> Result<PeftModule> {
        Ok(PeftModule {
            module: self.path.clone(),
            tensors: vec![
                ("lora_A.weight".into(), export_copy(&self.a)),
                ("lora_B.weight".into(), export_copy(&self.b)),
                ("lora_magnitude_vector".into(), export_copy(&self.magnitude)),
            ],
            r: self.cfg.r,
            lora_alpha: self.cfg.lora_alpha,
            adalora_keep: None,
        })
    }
}
