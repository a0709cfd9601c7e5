//! The adaptable linear layer: frozen base weights plus an optional adapter.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::adalora::AdaLora;
use crate::ard::ArdLora;
use crate::error::{AdapterError, Result};
use crate::ops::{QuantScheme, QuantizedWeight};
use crate::peft::PeftModule;

/// Along which axis of `W (d_out × d_in)` a linear is split into attention heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadAxis {
    /// q/k/v projections: each head owns `head_dim` output rows.
    Output,
    /// The attention output projection: each head owns `head_dim` input columns.
    Input,
    /// Head-less linears (MLP): split into groups along the output axis.
    None,
}

/// Head structure of one linear, as the architecture knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadLayout {
    pub axis: HeadAxis,
    /// Number of heads along `axis` (KV heads for k/v under GQA); 1 for head-less linears.
    pub n_heads: usize,
    /// Rows (Output) or columns (Input) per head; the whole axis for head-less linears.
    pub head_dim: usize,
}

impl HeadLayout {
    pub fn headless(d_out: usize) -> Self {
        Self {
            axis: HeadAxis::None,
            n_heads: 1,
            head_dim: d_out,
        }
    }
}

/// The frozen part of a linear: `y = x Wᵀ + b`.
#[derive(Debug)]
pub struct BaseLinear {
    /// `[d_out, d_in]`. Frozen (no grad) unless the method is full fine-tuning. When the base is
    /// quantised this is an empty tensor of the original dtype and device (so adapters still
    /// read both from it, and any product with it fails loudly): the weight is `quantized`,
    /// and [`BaseLinear::dense_weight`] gives it dense.
    pub weight: Tensor,
    /// `[d_out]`.
    pub bias: Option<Tensor>,
    /// The weight stored quantised (`model.quantize`).
    pub quantized: Option<QuantizedWeight>,
}

impl BaseLinear {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match &self.quantized {
            Some(q) => q.linear(x, self.bias.as_ref()),
            None => x.linear(&self.weight, self.bias.as_ref()),
        }
    }
    pub fn d_out(&self) -> usize {
        match &self.quantized {
            Some(q) => q.shape[0] as usize,
            None => self.weight.size()[0] as usize,
        }
    }
    pub fn d_in(&self) -> usize {
        match &self.quantized {
            Some(q) => q.shape[1] as usize,
            None => self.weight.size()[1] as usize,
        }
    }

    /// The weight as a dense tensor: itself, or the dequantised codes (a new tensor each call,
    /// in the dtype the weight was loaded in).
    pub fn dense_weight(&self) -> Tensor {
        match &self.quantized {
            Some(q) => q.dequantize(q.kind),
            None => self.weight.shallow_clone(),
        }
    }

    /// Store the weight quantised from now on; the dense weight is dropped.
    pub fn quantize(&mut self, scheme: QuantScheme) -> std::result::Result<(), String> {
        if self.quantized.is_some() {
            return Ok(());
        }
        let q = tch::no_grad(|| QuantizedWeight::new(&self.weight, scheme))?;
        self.weight = Tensor::empty([0], (self.weight.kind(), self.weight.device()));
        self.quantized = Some(q);
        Ok(())
    }
    /// Full fine-tuning: make the base weight (and optionally the bias) trainable. The tensors
    /// are first copied into memory the process owns, because the loaded weights may be views
    /// of a read-only memory map that an optimiser must never write into.
    pub fn set_trainable(&mut self, weight: bool, bias: bool) {
        if weight {
            self.weight = self.weight.detach().copy().set_requires_grad(true);
        } else {
            self.weight = self.weight.detach();
        }
        if let Some(b) = self.bias.take() {
            self.bias = Some(if bias {
                b.detach().copy().set_requires_grad(true)
            } else {
                b.detach()
            });
        }
    }
}

/// Which optimiser parameter group a trainable tensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamRole {
    /// Adapter (or base) weights: the main optimiser, with weight decay.
    Weight,
    /// ARD-LoRA's α: its own optimiser and learning rate, no weight decay.
    Alpha,
}

/// An adapter attached to one linear. Implementations own their trainable tensors.
pub trait LinearAdapter: Send + std::fmt::Debug {
    /// The adapted output for input `x` (`[..., d_in]` → `[..., d_out]`), base included.
    fn forward(&self, base: &BaseLinear, x: &Tensor, train: bool) -> Tensor;
    /// `ΔW` (`[d_out, d_in]`) to fold into the base weight for merging and export.
    fn delta_weight(&self, base: &BaseLinear) -> Tensor;
    /// Trainable tensors with names relative to this linear (e.g. `lora_A`, `alpha.3`).
    fn trainable(&self) -> Vec<(String, Tensor)>;

    /// The method's name as the pipeline spells it (`ard_lora`, `lora`, …).
    fn method(&self) -> &'static str {
        "custom"
    }
    /// Parameters the adapter holds that carry information: what export writes, counted
    /// without structural zeros (default: every trainable element). ARD-LoRA counts its units'
    /// live rows (ceil(r0·α), a unit at α = 0 holds none), AdaLoRA its kept triplets.
    fn exported_parameters(&self) -> usize {
        self.trainable().iter().map(|(_, t)| t.numel()).sum()
    }
    /// Which optimiser group the trainable tensor `name` (from [`Self::trainable`]) goes in.
    fn param_role(&self, _name: &str) -> ParamRole {
        ParamRole::Weight
    }
    /// Whether ΔW is currently folded into the base weight (the forward then skips the adapter).
    fn is_merged(&self) -> bool {
        false
    }
    /// Fold the adapter into `base.weight` in place.
    fn merge(&mut self, _base: &mut BaseLinear) -> Result<()> {
        Err(self.unsupported("merge"))
    }
    /// Undo [`Self::merge`].
    fn unmerge(&mut self, _base: &mut BaseLinear) -> Result<()> {
        Err(self.unsupported("unmerge"))
    }
    /// The adapter as Hugging Face PEFT tensors for this module.
    fn peft_export(&self, _base: &BaseLinear) -> Result<PeftModule> {
        Err(self.unsupported("PEFT export"))
    }
    /// Everything a checkpoint needs to rebuild the trained adapter (default: the trainable
    /// tensors; ARD-LoRA adds its compacted capacities).
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.trainable()
    }
    /// Restore [`Self::state_tensors`] into this freshly attached adapter. Build optimisers
    /// after this call: ARD-LoRA may replace its tensors with compacted (narrower) ones.
    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        copy_into_trainable(&self.trainable(), tensors)
    }
    fn as_ard(&self) -> Option<&ArdLora> {
        None
    }
    fn as_ard_mut(&mut self) -> Option<&mut ArdLora> {
        None
    }
    fn as_adalora(&self) -> Option<&AdaLora> {
        None
    }
    fn as_adalora_mut(&mut self) -> Option<&mut AdaLora> {
        None
    }
    #[doc(hidden)]
    fn unsupported(&self, what: &str) -> AdapterError {
        AdapterError::Unsupported {
            module: String::from("?"),
            method: self.method().to_string(),
            what: what.to_string(),
        }
    }
}

/// Copy checkpoint tensors into the same-named trainable tensors, checking shapes.
pub fn copy_into_trainable(
    trainable: &[(String, Tensor)],
    tensors: &[(String, Tensor)],
) -> Result<()> {
    for (name, p) in trainable {
        let (_, t) = tensors
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| crate::error::state_err(name, "missing from the checkpoint"))?;
        if t.size() != p.size() {
            return Err(crate::error::state_err(
                name,
                format!(
                    "shape {:?} in the checkpoint, {:?} here: the adapter configuration changed",
                    t.size(),
                    p.size()
                ),
            ));
        }
        tch::no_grad(|| p.shallow_clone().copy_(t));
    }
    Ok(())
}

/// A linear layer that an adapter may target.
#[derive(Debug)]
pub struct AdaptableLinear {
    /// Hugging Face module path, e.g. `model.layers.3.self_attn.q_proj`.
    pub path: String,
    pub base: BaseLinear,
    pub heads: HeadLayout,
    pub adapter: Option<Box<dyn LinearAdapter>>,
}

impl AdaptableLinear {
    pub fn new(
        path: impl Into<String>,
        weight: Tensor,
        bias: Option<Tensor>,
        heads: HeadLayout,
    ) -> Self {
        Self {
            path: path.into(),
            base: BaseLinear {
                weight,
                bias,
                quantized: None,
            },
            heads,
            adapter: None,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match &self.adapter {
            Some(a) if !a.is_merged() => a.forward(&self.base, x, train),
            _ => self.base.forward(x),
        }
    }

    /// Fold the adapter into the base weight (no-op without an adapter or when already merged).
    /// A quantised base cannot take it: the sum would be rounded to the codes again.
    pub fn merge(&mut self) -> Result<()> {
        if self.base.quantized.is_some()
            && let Some(a) = &self.adapter
            && !a.is_merged()
        {
            return Err(AdapterError::Unsupported {
                module: self.path.clone(),
                method: a.method().to_string(),
                what: "merging into a quantised base (merge into the original weights instead)"
                    .into(),
            });
        }
        match &mut self.adapter {
            Some(a) if !a.is_merged() => a.merge(&mut self.base),
            _ => Ok(()),
        }
    }

    /// Restore the base weight the adapter was merged into.
    pub fn unmerge(&mut self) -> Result<()> {
        match &mut self.adapter {
            Some(a) if a.is_merged() => a.unmerge(&mut self.base),
            _ => Ok(()),
        }
    }

    /// The adapter's checkpoint tensors under their full names (`<path>.<name>`).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.adapter
            .iter()
            .flat_map(|a| a.state_tensors())
            .map(|(n, t)| (format!("{}.{n}", self.path), t))
            .collect()
    }

    /// Restore this linear's adapter from a checkpoint holding many modules' tensors.
    pub fn load_state_tensors(&mut self, all: &[(String, Tensor)]) -> Result<()> {
        let prefix = format!("{}.", self.path);
        let mine: Vec<(String, Tensor)> = all
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix(&prefix)
                    .map(|rest| (rest.to_string(), t.shallow_clone()))
            })
            .collect();
        match &mut self.adapter {
            Some(a) => a.load_state_tensors(&mine),
            None => Ok(()),
        }
    }

    /// Trainable tensors under their full names (`<path>.<name>`) with their optimiser role.
    pub fn trainable(&self) -> Vec<(String, Tensor, ParamRole)> {
        match &self.adapter {
            None => vec![],
            Some(a) => a
                .trainable()
                .into_iter()
                .map(|(n, t)| {
                    let role = a.param_role(&n);
                    (format!("{}.{n}", self.path), t, role)
                })
                .collect(),
        }
    }
}
