//! Dynamic loss scaling for f16 training, as torch's `GradScaler` does it.
//!
//! f16 gradients underflow to zero below about 6e-8, so the loss is multiplied by a large scale
//! before `backward` and every gradient is divided by it again before clipping and the
//! optimiser step. A scale too large makes some gradient overflow to inf (or NaN): that step is
//! skipped (no parameter changes) and the scale halves. After `growth_interval` finite steps in
//! a row the scale doubles, so it keeps probing for the largest scale that does not overflow.
//! The defaults are `GradScaler`'s: initial scale 2^16, growth factor 2, backoff factor 0.5,
//! growth interval 2000.
//!
//! The scaler's whole state is this serialisable struct: a checkpoint that holds it resumes with
//! the same scale and the same count towards the next growth.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossScaler {
    /// The factor the loss is multiplied by before `backward`.
    pub scale: f64,
    /// Finite steps in a row since the scale last changed.
    pub good_steps: u64,
    /// Finite steps in a row after which the scale doubles.
    pub growth_interval: u64,
    /// Steps skipped so far for a non-finite gradient (the whole run, resumes included).
    pub skipped_steps: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new()
    }
}

impl LossScaler {
    /// `GradScaler(init_scale = 2**16)`.
    pub const INIT_SCALE: f64 = 65536.0;
    /// `GradScaler(growth_interval = 2000)`.
    pub const GROWTH_INTERVAL: u64 = 2000;
    const GROWTH_FACTOR: f64 = 2.0;
    const BACKOFF_FACTOR: f64 = 0.5;

    pub fn new() -> Self {
        Self {
            scale: Self::INIT_SCALE,
            good_steps: 0,
            growth_interval: Self::GROWTH_INTERVAL,
            skipped_steps: 0,
        }
    }

    /// Multiply a loss by the current scale (before `backward`).
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale
    }

    /// Divide every gradient by the scale, in place, and say whether all of them are finite
    /// (one host sync). Undefined gradients (parameters the loss did not reach) are skipped.
    pub fn unscale(&self, grads: &[Tensor]) -> bool {
        let grads: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return true;
        }
        let inv = 1.0 / self.scale;
        let bad: Vec<Tensor> = tch::no_grad(|| {
            grads
                .iter()
                .map(|g| {
                    let mut g = g.shallow_clone();
                    let _ = g.g_mul_scalar_(inv);
                    g.isfinite().logical_not().any()
                })
                .collect()
        });
        Tensor::stack(&bad, 0)
            .any()
            .to_kind(Kind::Int64)
            .int64_value(&[])
            == 0
    }

    /// Record one step's outcome: on overflow the step was skipped and the scale halves; after
    /// `growth_interval` finite steps in a row it doubles. Returns whether the step may update
    /// the parameters.
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                let grown = self.scale * Self::GROWTH_FACTOR;
                // GradScaler keeps the old scale when growing would overflow f32.
                if grown.is_finite() && grown <= f32::MAX as f64 {
                    self.scale = grown;
                }
                self.good_steps = 0;
            }
        } else {
            self.scale *= Self::BACKOFF_FACTOR;
            self.good_steps = 0;
            self.skipped_steps += 1;
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn grads(values: &[f32]) -> Vec<Tensor> {
        vec![
            Tensor::from_slice(values),
            Tensor::ones([2, 2], (Kind::Float, Device::Cpu)),
        ]
    }

    #[test]
    fn starts_as_grad_scaler_does() {
        let s = LossScaler::new();
        assert_eq!(s.scale, 65536.0);
        assert_eq!(s.growth_interval, 2000);
        assert_eq!((s.good_steps, s.skipped_steps), (0, 0));
        let l = s.scale_loss(&Tensor::from(0.5f32));
        assert_eq!(l.double_value(&[]), 32768.0);
    }

    #[test]
    fn unscale_divides_every_gradient_by_the_scale() {
        let s = LossScaler::new();
        let g = grads(&[65536.0, -131072.0]);
        assert!(s.unscale(&g));
        assert_eq!(Vec::<f32>::try_from(&g[0]).unwrap(), [1.0, -2.0]);
        assert_eq!(g[1].sum(Kind::Double).double_value(&[]), 4.0 / 65536.0);
        // An undefined gradient (a parameter the loss did not reach) is no overflow.
        assert!(s.unscale(&[Tensor::new()]));
    }

    #[test]
    fn an_inf_or_nan_gradient_skips_the_step_and_halves_the_scale() {
        for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            let mut s = LossScaler::new();
            s.good_steps = 7;
            let finite = s.unscale(&grads(&[1.0, bad]));
            assert!(!finite, "{bad}");
            assert!(!s.update(finite), "the step must be skipped");
            assert_eq!(s.scale, 32768.0);
            assert_eq!(s.good_steps, 0, "an overflow restarts the count to growth");
            assert_eq!(s.skipped_steps, 1);
        }
        let mut s = LossScaler::new();
        for _ in 0..3 {
            s.update(false);
        }
        assert_eq!((s.scale, s.skipped_steps), (8192.0, 3));
    }

    #[test]
    fn the_scale_doubles_after_growth_interval_finite_steps() {
        let mut s = LossScaler::new();
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            assert!(s.update(true));
        }
        assert_eq!(s.scale, 65536.0);
        assert!(s.update(true));
        assert_eq!((s.scale, s.good_steps), (131072.0, 0));
        // An overflow in between restarts the count.
        s.growth_interval = 3;
        s.update(true);
        s.update(true);
        s.update(false);
        assert_eq!(s.scale, 65536.0);
        s.update(true);
        s.update(true);
        assert_eq!(s.scale, 65536.0);
        s.update(true);
        assert_eq!(s.scale, 131072.0);
        assert_eq!(s.skipped_steps, 1);
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let mut s = LossScaler::new();
        s.update(false);
        s.update(true);
        let back: LossScaler = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
