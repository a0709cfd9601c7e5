//! `precision = f16`: dynamic loss scaling around the optimiser step
//! ([`ardpipe_adapters::optim::LossScaler`], torch's `GradScaler`).
//!
//! The scaler lives in [`super::state::LoopState`], so checkpoints carry it and a resumed run
//! continues with the same scale. Per step: every loss is scaled before `backward`; after the
//! gradients are complete (and averaged over processes, so every process decides alike) they
//! are unscaled; a non-finite gradient skips the step (no optimiser update, no α projection,
//! allocation or compaction: nothing changed) and halves the scale.

use ardpipe_adapters::optim::LossScaler;
use ardpipe_dsl::pipeline as p;
use tch::Tensor;

use super::Trainer;

impl Trainer {
    /// Give an f16 run its scaler (a fresh run, or a checkpoint written before scaling existed).
    pub(super) fn init_loss_scale(&mut self) {
        if self.plan.settings.train.precision == p::Precision::F16
            && self.state.loss_scale.is_none()
        {
            self.state.loss_scale = Some(LossScaler::new());
        }
    }

    /// The loss `backward` runs on: scaled under f16, the loss itself otherwise.
    pub(super) fn scaled(&self, loss: Tensor) -> Tensor {
        match &self.state.loss_scale {
            Some(s) => s.scale_loss(&loss),
            None => loss,
        }
    }

    /// Unscale the gradients of both optimisers and update the scale; `false`: skip this step.
    pub(super) fn unscale_gradients(&mut self) -> bool {
        let Some(scaler) = self.state.loss_scale.as_mut() else {
            return true;
        };
        let mut grads: Vec<Tensor> = Vec::new();
        for opt in std::iter::once(&self.main_opt).chain(self.alpha_opt.as_ref()) {
            grads.extend(
                opt.groups()
                    .iter()
                    .flat_map(|g| g.params.iter())
                    .map(|p| p.tensor.grad()),
            );
        }
        let scale = scaler.scale;
        let finite = scaler.update(scaler.unscale(&grads));
        if !finite {
            tracing::debug!(
                "step {}: a gradient overflowed at loss scale {scale}: step skipped, scale now {}",
                self.state.step,
                scaler.scale
            );
        }
        finite
    }

    /// The scale and the skipped steps, for the training log line of `metrics.jsonl`.
    pub(super) fn loss_scale_fields(&self, record: &mut serde_json::Value) {
        if let (Some(s), Some(o)) = (&self.state.loss_scale, record.as_object_mut()) {
            o.insert("loss_scale".into(), s.scale.into());
            o.insert("skipped_steps".into(), s.skipped_steps.into());
        }
    }
}
