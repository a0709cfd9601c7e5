//! Dequantisation of the GGML tensor types ardpipe supports: F32, F16, Q8_0 and Q4_1.
//!
//! Q4_1: 20-byte blocks of 32 values: f16 scale d, f16 minimum m, 16 bytes of nibbles;
//! value j = (qs[j] & 0xF)·d + m and value j+16 = (qs[j] >> 4)·d + m.
//! Q8_0: 34-byte blocks of 32 values: f16 scale d, 32 signed bytes; value = q·d.

use half::f16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_1,
    Q8_0,
}

pub const QK: usize = 32;
const Q4_1_BLOCK: usize = 20;
const Q8_0_BLOCK: usize = 34;

/// The name llama.cpp gives a GGML type id, for error messages.
pub fn ggml_type_name(ty: u32) -> &'static str {
    match ty {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        _ => "unknown",
    }
}

impl GgmlType {
    pub fn from_u32(ty: u32) -> Option<Self> {
        match ty {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            3 => Some(Self::Q4_1),
            8 => Some(Self::Q8_0),
            _ => None,
        }
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
        }
    }

    pub fn block_values(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q4_1 | Self::Q8_0 => QK,
        }
    }

    /// Bytes holding `n` values, or None when `n` is not a whole number of blocks or the byte
    /// count does not fit a `usize` (`n` comes from a file's dims).
    pub fn byte_len(self, n: usize) -> Option<usize> {
        match self {
            Self::F32 => n.checked_mul(4),
            Self::F16 => n.checked_mul(2),
            Self::Q4_1 => n
                .is_multiple_of(QK)
                .then(|| (n / QK).checked_mul(Q4_1_BLOCK))?,
            Self::Q8_0 => n
                .is_multiple_of(QK)
                .then(|| (n / QK).checked_mul(Q8_0_BLOCK))?,
        }
    }

    /// Dequantise `raw` (exactly `byte_len(n)` bytes) into f32 values.
    pub fn dequantise(self, raw: &[u8]) -> Vec<f32> {
        match self {
            Self::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Self::F16 => raw.chunks_exact(2).map(f16_at).collect(),
            Self::Q4_1 => {
                let mut out = Vec::with_capacity(raw.len() / Q4_1_BLOCK * QK);
                for b in raw.chunks_exact(Q4_1_BLOCK) {
                    let d = f16_at(&b[0..2]);
                    let m = f16_at(&b[2..4]);
                    let qs = &b[4..20];
                    out.extend(qs.iter().map(|q| (q & 0xF) as f32 * d + m));
                    out.extend(qs.iter().map(|q| (q >> 4) as f32 * d + m));
                }
                out
            }
            Self::Q8_0 => {
                let mut out = Vec::with_capacity(raw.len() / Q8_0_BLOCK * QK);
                for b in raw.chunks_exact(Q8_0_BLOCK) {
                    let d = f16_at(&b[0..2]);
                    out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
                }
                out
            }
        }
    }
}

fn f16_at(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    #[test]
    fn q4_1_low_nibbles_then_high_nibbles() {
        let mut block = Vec::new();
        block.extend(h(0.5)); // d
        block.extend(h(-1.0)); // m
        // qs[j] = low j, high 15 - j
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let v = GgmlType::Q4_1.dequantise(&block);
        assert_eq!(v.len(), 32);
        for j in 0..16 {
            assert_eq!(v[j], j as f32 * 0.5 - 1.0, "low nibble {j}");
            assert_eq!(v[j + 16], (15 - j) as f32 * 0.5 - 1.0, "high nibble {j}");
        }
    }

    #[test]
    fn q8_0_is_signed_times_scale() {
        let mut block = Vec::new();
        block.extend(h(0.25));
        let qs: Vec<i8> = (0..32).map(|i| (i as i8 - 16) * 8).collect();
        block.extend(qs.iter().map(|&q| q as u8));
        let v = GgmlType::Q8_0.dequantise(&block);
        for (i, &q) in qs.iter().enumerate() {
            assert_eq!(v[i], q as f32 * 0.25);
        }
        assert_eq!(v[0], -32.0);
        assert_eq!(v[31], 15.0 * 8.0 * 0.25);
    }

    #[test]
    fn f16_and_f32_round_trip() {
        let vals = [0.0f32, 1.5, -2.25, 65504.0];
        let raw: Vec<u8> = vals.iter().flat_map(|&v| h(v)).collect();
        assert_eq!(GgmlType::F16.dequantise(&raw), vals);
        let raw: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(GgmlType::F32.dequantise(&raw), vals);
    }

    #[test]
    fn partial_blocks_have_no_byte_length() {
        assert_eq!(GgmlType::Q4_1.byte_len(64), Some(40));
        assert_eq!(GgmlType::Q8_0.byte_len(33), None);
        assert_eq!(ggml_type_name(12), "Q4_K");
        assert!(GgmlType::from_u32(12).is_none());
        assert_eq!(GgmlType::F32.byte_len(usize::MAX / 2), None);
        assert_eq!(GgmlType::F16.byte_len(usize::MAX), None);
    }
}
