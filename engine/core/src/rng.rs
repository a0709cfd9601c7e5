//! Deterministic random streams for the trainer, serialisable into checkpoints.
//!
//! Two kinds of randomness, restored differently on resume:
//!
//! - **Our own streams** (data order, held-out meta batches, anything the trainer draws on the
//!   host): xoshiro256** generators seeded by SplitMix64 from `(seed, stream name, index)`. Their
//!   full state is four `u64`s and goes into the checkpoint sidecar ([`RngStreams`]).
//! - **libtorch's generator** (dropout masks, `randn`, Kaiming init): tch 0.26 exposes no way to
//!   read or write a generator's state (only `manual_seed`). So the trainer *reseeds* it at the
//!   start of every optimizer step with [`RngStreams::seed_torch_for_step`]: the state at step N
//!   is a pure function of `(seed, N)`, and a resumed run reproduces it exactly without saving it.
//!   Nothing random in libtorch may depend on draws made in an earlier step — that is the contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// SplitMix64 (the seeding generator recommended for the xoshiro family) and FNV-1a live in
/// the data crate's shuffle module: one implementation of each for the whole engine.
use ardpipe_data::shuffle::{SplitMix64, fnv1a};

/// The first SplitMix64 output from `state` (one step of the generator).
fn splitmix64(state: u64) -> u64 {
    SplitMix64::new(state).next_u64()
}

/// A seed for `(seed, stream, index)`: independent-looking streams from one user seed.
pub fn derive_seed(seed: u64, stream: &str, index: u64) -> u64 {
    let a = splitmix64(seed ^ fnv1a(stream.as_bytes()).rotate_left(17));
    splitmix64(a ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// xoshiro256**: fast, small state, good statistical quality; state is plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn from_seed(seed: u64) -> Rng {
        let mut sm = SplitMix64::new(seed);
        let s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        Rng { s }
    }

    /// Restore from saved state. An all-zero state is the one fixed point of xoshiro: refused.
    pub fn from_state(s: [u64; 4]) -> Option<Rng> {
        (s != [0; 4]).then_some(Rng { s })
    }

    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n without modulo bias (Lemire's method). `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A random permutation of 0..n.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}

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

    /// The order of an epoch's examples: a function of `(seed, epoch)` alone, so a data position
    /// `(epoch, index)` is all a checkpoint needs to resume the same order.
    pub fn epoch_permutation(&self, epoch: u64, n: usize) -> Vec<usize> {
        Rng::from_seed(derive_seed(self.seed, "data-order", epoch)).permutation(n)
    }

    /// The libtorch seed for an optimizer step (see the module docs for why we reseed per step).
    pub fn torch_seed_for_step(&self, step: u64) -> i64 {
        // manual_seed takes i64; keep it non-negative so it prints the same everywhere.
        (derive_seed(self.seed, "torch", step) >> 1) as i64
    }

    /// Reseed libtorch's generators (CPU, and CUDA when loaded) for `step`.
    pub fn seed_torch_for_step(&self, step: u64) {
        tch::manual_seed(self.torch_seed_for_step(step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn xoshiro256starstar_matches_the_reference_sequence() {
        // Reference implementation (xoshiro.di.unimi.it), state {1, 2, 3, 4}.
        let mut r = Rng::from_state([1, 2, 3, 4]).unwrap();
        let got: Vec<u64> = (0..6).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                11520,
                0,
                1509978240,
                1215971899390074240,
                1216172134540287360,
                607988272756665600
            ]
        );
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        let mut s = SplitMix64::new(0);
        assert_eq!(s.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(s.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(s.next_u64(), 0x06c4_5d18_8009_454f);
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn zero_state_is_refused() {
        assert!(Rng::from_state([0; 4]).is_none());
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::from_seed(7);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[r.below(6) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
        for _ in 0..1000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }

    #[test]
    fn permutation_is_a_permutation_and_depends_on_seed_and_epoch() {
        let s = RngStreams::new(42);
        let p0 = s.epoch_permutation(0, 100);
        let mut sorted = p0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(p0, RngStreams::new(42).epoch_permutation(0, 100));
        assert_ne!(p0, s.epoch_permutation(1, 100));
        assert_ne!(p0, RngStreams::new(43).epoch_permutation(0, 100));
    }

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
        let s = RngStreams::new(1234);
        let x = Tensor::ones([1000], (Kind::Float, tch::Device::Cpu));
        let run = |from: u64| -> Vec<Tensor> {
            (from..4)
                .map(|step| {
                    s.seed_torch_for_step(step);
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
    }
}
