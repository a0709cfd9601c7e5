//! Full fine-tuning: the base weight itself trains (the reference for "% of full fine-tuning").

use tch::Tensor;

use crate::config::FullConfig;
use crate::error::Result;
use crate::linear::{AdaptableLinear, BaseLinear, LinearAdapter};

/// Marks a linear as fully trainable. It holds handles to the base tensors (same storage), so
/// the optimiser sees them through [`LinearAdapter::trainable`].
#[derive(Debug)]
pub struct Full {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Full {
    pub fn attach(linear: &mut AdaptableLinear, cfg: &FullConfig) -> Result<()> {
        linear.base.set_trainable(true, cfg.train_bias);
        let weight = linear.base.weight.shallow_clone();
        let bias = linear
            .base
            .bias
            .as_ref()
            .filter(|_| cfg.train_bias)
            .map(Tensor::shallow_clone);
        linear.adapter = Some(Box::new(Full { weight, bias }));
        Ok(())
    }
}

impl LinearAdapter for Full {
    fn forward(&self, base: &BaseLinear, x: &Tensor, _train: bool) -> Tensor {
        base.forward(x)
    }
    /// The weight already is the trained weight: nothing to fold.
    fn delta_weight(&self, base: &BaseLinear) -> Tensor {
        base.weight.detach().zeros_like()
    }
    fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.shallow_clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".into(), b.shallow_clone()));
        }
        v
    }
    fn method(&self) -> &'static str {
        "full"
    }
    /// Always "merged": the trained weight lives in the base.
    fn is_merged(&self) -> bool {
        true
    }
    fn merge(&mut self, _base: &mut BaseLinear) -> Result<()> {
        Ok(())
    }
    fn unmerge(&mut self, _base: &mut BaseLinear) -> Result<()> {
        Ok(())
    }
}
