//! The adaptable linear layer: frozen base weights plus an optional adapter.

use serde::{Deserialize, Serialize};
use tch::Tensor;

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
    /// `[d_out, d_in]`. Frozen (no grad) unless the method is full fine-tuning.
    pub weight: Tensor,
    /// `[d_out]`.
    pub bias: Option<Tensor>,
}

impl BaseLinear {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
    pub fn d_out(&self) -> usize {
        self.weight.size()[0] as usize
    }
    pub fn d_in(&self) -> usize {
        self.weight.size()[1] as usize
    }
}

/// An adapter attached to one linear. Implementations own their trainable tensors.
pub trait LinearAdapter: Send + std::fmt::Debug {
    /// The adapted output for input `x` (`[..., d_in]` → `[..., d_out]`), base included.
    fn forward(&self, base: &BaseLinear, x: &Tensor, train: bool) -> Tensor;
    /// `ΔW` (`[d_out, d_in]`) to fold into the base weight for merging and export.
    fn delta_weight(&self, base: &BaseLinear) -> Tensor;
    /// Trainable tensors with names relative to this linear (e.g. `lora_A`, `alpha.3`).
    fn trainable(&self) -> Vec<(String, Tensor)>;
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
            base: BaseLinear { weight, bias },
            heads,
            adapter: None,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match &self.adapter {
            None => self.base.forward(x),
            Some(a) => a.forward(&self.base, x, train),
        }
    }
}
