//! Deterministic random streams for the trainer, serialisable into checkpoints.
//!
//! Two kinds of randomness, restored differently on resume:
//!
//! - **Our own streams** (held-out meta batches, anything the trainer draws on the host; the
//!   data order is `ardpipe_data::epoch_permutation` of `(seed, epoch)`): xoshiro256**
//!   generators seeded by SplitMix64 from `(seed, stream name, index)`. Their full state is four
//!   `u64`s and goes into the checkpoint sidecar ([`RngStreams`]).
//! - **libtorch's generator** (dropout masks, `randn`, Kaiming init): tch 0.26 exposes no way to
//!   read or write a generator's state (only `manual_seed`). So the trainer *reseeds* it at the
//!   start of every optimizer step ([`seed_torch_for_step`]): the
//!   state at step N is a pure function of `(seed, N)`, and a resumed run reproduces it exactly
//!   without saving it.
//!   Nothing random in libtorch may depend on draws made in an earlier step — that is the contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The generators (SplitMix64, xoshiro256**), the stream seed derivation and FNV-1a live in
/// the data crate's shuffle module: one implementation of each for the whole engine, so the data
/// layer's order and the trainer's streams are the same functions.
pub use ardpipe_data::shuffle::{Rng, derive_seed};

/// The trainer's random state: the user's seed plus every named host-side stream in use.
/// Serialised whole into each checkpoint's sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RngStreams {
    pub seed: u64,
    streams: BTreeMap<String, Rng>,
}

impl RngStreams {
    pub fn new(seed: u64) -> RngStreams {
        RngStreams {
            seed,
            streams: BTreeMap::new(),
        }
    }

    /// The named stream, created from `(seed, name)` on first use. Streams are independent:
    /// drawing from one never shifts another, so adding a stream does not change data order.
    pub fn stream(&mut self, name: &str) -> &mut Rng {
        let seed = self.seed;
        self.streams
            .entry(name.to_string())
            .or_insert_with(|| Rng::from_seed(derive_seed(seed, name, 0)))
    }
}

/// Reseed libtorch's generators (CPU, and CUDA when loaded) for optimizer step `step` of
/// process `rank` of `world` (see the module docs for why every step reseeds). Each process of a
/// data-parallel run draws its own stream: one seed everywhere would give every part of the
/// batch the same dropout masks.
pub fn seed_torch_for_step(seed: u64, rank: usize, world: usize, step: u64) {
    let stream = if world > 1 {
        format!("torch-step-rank-{rank}")
    } else {
        "torch-step".to_string()
    };
    tch::manual_seed(derive_seed(seed, &stream, step) as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn streams_survive_a_serde_round_trip_mid_sequence() {
        let mut a = RngStreams::new(5);
        for _ in 0..17 {
            a.stream("meta").next_u64();
        }
        a.stream("other").next_u64();
        let json = serde_json::to_string(&a).unwrap();
        let mut b: RngStreams = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b);
        let next_a: Vec<u64> = (0..5).map(|_| a.stream("meta").next_u64()).collect();
        let next_b: Vec<u64> = (0..5).map(|_| b.stream("meta").next_u64()).collect();
        assert_eq!(next_a, next_b);
    }

    #[test]
    fn streams_are_independent() {
        let mut a = RngStreams::new(9);
        let mut b = RngStreams::new(9);
        b.stream("noise").next_u64();
        assert_eq!(a.stream("meta").next_u64(), b.stream("meta").next_u64());
    }

    #[test]
    fn torch_reseeding_per_step_replays_dropout_exactly() {
        let x = Tensor::ones([1000], (Kind::Float, tch::Device::Cpu));
        let run = |from: u64| -> Vec<Tensor> {
            (from..4)
                .map(|step| {
                    seed_torch_for_step(1234, 0, 1, step);
                    x.dropout(0.5, true)
                })
                .collect()
        };
        let full = run(0);
        // "Resume" at step 2 after unrelated torch draws: same masks for steps 2 and 3.
        let _ = Tensor::randn([77], (Kind::Float, tch::Device::Cpu));
        let resumed = run(2);
        assert!(full[2].equal(&resumed[0]));
        assert!(full[3].equal(&resumed[1]));
        assert!(!full[2].equal(&full[3]));
        // Another process of a data-parallel run draws other masks at the same step.
        seed_torch_for_step(1234, 1, 2, 2);
        assert!(!full[2].equal(&x.dropout(0.5, true)));
    }
}
