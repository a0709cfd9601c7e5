//! What an adaptation costs, one definition for the summary, the report and the study:
//!
//! - **exported parameters**: what export writes, without the zeros of a layout (ARD-LoRA: its
//!   units' live rows; AdaLoRA: its kept triplets; others: every trainable element), plus the
//!   trained head;
//! - **peak parameters**: the most trainable elements allocated at any step (ARD-LoRA before
//!   compaction, AdaLoRA at `init_r`);
//! - **adaptation memory**: bytes of the trainable tensors, their gradients and every optimiser
//!   and allocator state tensor, measured from the tensors themselves (not process memory,
//!   which the frozen base model dominates), at its peak and when training ends.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::Trainer;

/// Bytes held for adaptation (parameters + gradients + optimiser state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptationMemory {
    pub peak_bytes: u64,
    pub final_bytes: u64,
}

fn bytes(t: &Tensor) -> u64 {
    if !t.defined() {
        return 0;
    }
    (t.numel() * t.kind().elt_size_in_bytes()) as u64
}

impl Trainer {
    /// Trainable elements allocated now (adapters at their stored width, α and the head).
    pub fn allocated_parameters(&self) -> usize {
        self.trainable_tensors().iter().map(|t| t.numel()).sum()
    }

    /// Exported parameters now (see the module comment).
    pub fn exported_parameters(&self) -> usize {
        let head: usize = self
            .model
            .head_parameters()
            .iter()
            .map(|(_, t)| t.numel())
            .sum();
        head + self
            .model
            .linears()
            .into_iter()
            .filter_map(|l| l.adapter.as_ref())
            .map(|a| a.exported_parameters())
            .sum::<usize>()
    }

    /// Adaptation bytes now: trainable tensors, their gradients, optimiser and allocator state.
    pub fn adaptation_bytes(&self) -> u64 {
        let params = self.trainable_tensors();
        let weights: u64 = params.iter().map(bytes).sum();
        let grads: u64 = params.iter().map(|t| bytes(&t.grad())).sum();
        let mut state: u64 = self
            .main_opt
            .state_tensors()
            .iter()
            .map(|(_, t)| bytes(t))
            .sum();
        if let Some(o) = &self.alpha_opt {
            state += o.state_tensors().iter().map(|(_, t)| bytes(t)).sum::<u64>();
        }
        for b in &self.ard {
            state += b
                .regulariser
                .state_tensors()
                .iter()
                .map(|(_, t)| bytes(t))
                .sum::<u64>();
        }
        for b in &self.adalora {
            state += b
                .allocator
                .state_tensors()
                .iter()
                .map(|(_, t)| bytes(t))
                .sum::<u64>();
        }
        weights + grads + state
    }

    /// Fold the current allocation into the run's peaks; call after every optimiser step.
    pub(crate) fn track_peaks(&mut self) {
        let (params, mem) = (self.allocated_parameters(), self.adaptation_bytes());
        self.state.peak_parameters = self.state.peak_parameters.max(params);
        self.state.peak_adaptation_bytes = self.state.peak_adaptation_bytes.max(mem);
    }
}
