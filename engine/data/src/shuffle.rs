//! Seeded, platform-independent shuffling with a resumable position, and the stable hash that
//! ratio splits use. Own small generators (SplitMix64) so the order never changes with a
//! dependency's version.

use serde::{Deserialize, Serialize};

/// SplitMix64: tiny, fast, and statistically fine for permutations.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` without modulo bias (Lemire's multiply-shift with rejection).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;

fn fnv1a_from(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME))
}

/// FNV-1a of a byte string: stable across platforms and Rust versions, unlike `std`'s hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, bytes)
}

/// A stable 64-bit hash of byte strings under a seed (FNV-1a, then mixed): the same on every
/// platform and Rust version, unlike `std`'s hasher.
pub fn stable_hash(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET ^ mix(seed);
    for part in parts {
        // A separator byte after each part, so ("ab","c") and ("a","bc") differ.
        h = fnv1a_from(fnv1a_from(h, part), &[0xFF]);
    }
    mix(h)
}

/// The permutation of `0..n` for one epoch: a Fisher–Yates shuffle seeded by (seed, epoch), so
/// any epoch can be rebuilt on its own when a run resumes.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(mix(seed) ^ mix(epoch.wrapping_add(0x5EED)));
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// Where a run is in its data: saved in checkpoints, so a killed run resumes mid-epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    /// Items of this epoch already handed out.
    pub index: usize,
}

/// Indices of a dataset of `n` items in seeded, per-epoch shuffled order, batch by batch.
#[derive(Debug, Clone)]
pub struct ShuffledOrder {
    n: usize,
    seed: u64,
    shuffle: bool,
    pos: Position,
    perm: Vec<usize>,
}

impl ShuffledOrder {
    pub fn new(n: usize, seed: u64, shuffle: bool) -> Self {
        Self::resume(n, seed, shuffle, Position::default())
    }

    /// Continue from a saved position (the index is clamped to the epoch's length).
    pub fn resume(n: usize, seed: u64, shuffle: bool, pos: Position) -> Self {
        let perm = Self::perm(n, seed, shuffle, pos.epoch);
        Self {
            n,
            seed,
            shuffle,
            pos: Position {
                epoch: pos.epoch,
                index: pos.index.min(n),
            },
            perm,
        }
    }

    fn perm(n: usize, seed: u64, shuffle: bool, epoch: u64) -> Vec<usize> {
        if shuffle {
            epoch_permutation(n, seed, epoch)
        } else {
            (0..n).collect()
        }
    }

    pub fn position(&self) -> Position {
        self.pos
    }

    /// The next batch of up to `size` indices. Batches never straddle epochs: the last batch of
    /// an epoch may be short (unless `drop_last`), and the next call starts the next epoch.
    /// Returns the indices and the position *after* the batch (what a checkpoint saves).
    pub fn next_batch(&mut self, size: usize, drop_last: bool) -> (Vec<usize>, Position) {
        assert!(size > 0, "batch size must be positive");
        if self.n == 0 {
            return (Vec::new(), self.pos);
        }
        let left = self.n - self.pos.index;
        if left == 0 || (drop_last && left < size && self.n >= size) {
            self.pos = Position {
                epoch: self.pos.epoch + 1,
                index: 0,
            };
            self.perm = Self::perm(self.n, self.seed, self.shuffle, self.pos.epoch);
        }
        let start = self.pos.index;
        let end = (start + size).min(self.n);
        self.pos.index = end;
        (self.perm[start..end].to_vec(), self.pos)
    }
}
