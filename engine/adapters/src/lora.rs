//! LoRA with PEFT semantics: `y = W x + b + (lora_alpha / r) · B A dropout(x)`.

use tch::{Kind, Tensor};

use crate::config::LoraConfig;
use crate::error::Result;
use crate::init::{adapter_kind, in_kind, kaiming_uniform_a_sqrt5, maybe_dropout, zeros_param};
use crate::linear::{AdaptableLinear, BaseLinear, LinearAdapter};
use crate::peft::PeftModule;

#[derive(Debug)]
pub struct Lora {
    pub(crate) path: String,
    pub(crate) cfg: LoraConfig,
    /// `[r, d_in]`, Kaiming-uniform(a = √5).
    pub(crate) a: Tensor,
    /// `[d_out, r]`, zeros.
    pub(crate) b: Tensor,
    pub(crate) kind: Kind,
    pub(crate) merged: bool,
}

impl Lora {
    pub fn new(linear: &AdaptableLinear, cfg: &LoraConfig) -> Result<Self> {
        cfg.validate()?;
        let (d_out, d_in) = (linear.base.d_out() as i64, linear.base.d_in() as i64);
        let kind = adapter_kind(linear.base.weight.kind());
        let dev = linear.base.weight.device();
        let r = cfg.r as i64;
        Ok(Self {
            path: linear.path.clone(),
            cfg: cfg.clone(),
            a: kaiming_uniform_a_sqrt5(&[r, d_in], kind, dev),
            b: zeros_param(&[d_out, r], kind, dev),
            kind,
            merged: false,
        })
    }

    /// Attach a fresh LoRA to `linear`.
    pub fn attach(linear: &mut AdaptableLinear, cfg: &LoraConfig) -> Result<()> {
        let a = Self::new(linear, cfg)?;
        linear.adapter = Some(Box::new(a));
        Ok(())
    }

    pub fn a(&self) -> &Tensor {
        &self.a
    }
    pub fn b(&self) -> &Tensor {
        &self.b
    }
    pub fn config(&self) -> &LoraConfig {
        &self.cfg
    }

    /// The adapter branch alone: `s · B A dropout(x)` in the adapter's kind.
    pub(crate) fn branch(&self, x: &Tensor, train: bool) -> Tensor {
        let xd = maybe_dropout(&in_kind(x, self.kind), self.cfg.dropout, train);
        // Scale the rank-r activations: the cheapest place for the scalar.
        (xd.matmul(&self.a.tr()) * self.cfg.scaling()).matmul(&self.b.tr())
    }
}

impl LinearAdapter for Lora {
    fn forward(&self, base: &BaseLinear, x: &Tensor, train: bool) -> Tensor {
        let y = base.forward(x);
        let d = self.branch(x, train);
        // In the base output's dtype, as PEFT adds `lora_B(lora_A(x))` to it: 16-bit under
        // autocast. Adding in the input's f32 would make every activation after it f32.
        let kind = y.kind();
        y + d.to_kind(kind)
    }
    fn delta_weight(&self, _base: &BaseLinear) -> Tensor {
        self.b.matmul(&self.a) * self.cfg.scaling()
    }
    fn trainable(&self) -> Vec<(String, Tensor)> {
        vec![
            ("lora_A".into(), self.a.shallow_clone()),
            ("lora_B".into(), self.b.shallow_clone()),
        ]
    }
    fn method(&self) -> &'static str {
        "lora"
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
    fn peft_export(&self, _base: &BaseLinear) -> Result<PeftModule> {
        Ok(PeftModule {
            module: self.path.clone(),
            tensors: vec![
                ("lora_A.weight".into(), export_copy(&self.a)),
                ("lora_B.weight".into(), export_copy(&self.b)),
            ],
            r: self.cfg.r,
            lora_alpha: self.cfg.lora_alpha,
            adalora_keep: None,
        })
    }
}

/// `base.weight += sign · delta`, without recording autograd history; the weight is replaced
/// by an owned copy first, because it may be a view of a read-only memory map.
pub(crate) fn add_delta(base: &mut BaseLinear, delta: &Tensor, sign: f64) {
    tch::no_grad(|| {
        let w = &base.weight;
        let new = w.detach().to_kind(delta.kind()) + delta.detach() * sign;
        let new = new.to_kind(w.kind());
        let rg = w.requires_grad();
        base.weight = if rg { new.set_requires_grad(true) } else { new };
    });
}

/// A detached, contiguous CPU copy for writing files.
pub(crate) fn export_copy(t: &Tensor) -> Tensor {
    t.detach().to_device(tch::Device::Cpu).contiguous().copy()
}
