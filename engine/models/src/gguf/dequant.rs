//! Dequantisation of the GGML tensor types ardpipe reads, to f32, with the formulas of
//! llama.cpp's reference `dequantize_row_*` (the `gguf` Python package's `quants.py` computes
//! the same products in the same order, so the results agree bit for bit; see
//! engine/models/tests/gguf_quants.rs).
//!
//! Plain types: F32, F16, BF16 (the top 16 bits of an f32).
//! 32-value blocks (`d`, `m`: f16 scale and minimum; `qs`: 16 bytes of nibbles, value j in the
//! low nibble of qs[j], value j+16 in the high nibble; `qh`: 32 high bits, bit j for value j):
//! - Q4_0 (18 bytes: d, qs): (q − 8)·d
//! - Q4_1 (20 bytes: d, m, qs): q·d + m
//! - Q5_0 (22 bytes: d, qh, qs): (q | h<<4 − 16)·d
//! - Q5_1 (24 bytes: d, m, qh, qs): (q | h<<4)·d + m
//! - Q8_0 (34 bytes: d, 32 signed bytes): q·d
//!
//! 256-value super-blocks (K-quants), each with sub-block scales:
//! - Q2_K (84 bytes: scales[16] (low nibble scale, high nibble min), qs[64] 2-bit, d, dmin):
//!   (d·sc)·q − dmin·m, 16 sub-blocks of 16
//! - Q3_K (110 bytes: hmask[32], qs[64] 2-bit, scales[12] 6-bit, d): (d·(sc − 32))·(q − 4·!h)
//! - Q4_K (144 bytes: d, dmin, scales[12] 6-bit scale/min pairs, qs[128]): (d·sc)·q − dmin·m,
//!   8 sub-blocks of 32
//! - Q5_K (176 bytes: d, dmin, scales[12], qh[32], qs[128]): as Q4_K with a fifth bit
//! - Q6_K (210 bytes: ql[128], qh[64], scales[16] signed, d): (d·sc)·(q − 32), 16 sub-blocks
//!
//! Dequantisation writes into one preallocated buffer (no allocation per block or value): it
//! runs over every weight of a model at load time.

use half::f16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// Values in a block of the 32-value types.
pub const QK: usize = 32;
/// Values in a K-quant super-block.
pub const QK_K: usize = 256;

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

/// A block whose scale is not a finite number: the bytes are damaged (no quantiser writes one).
#[derive(Debug, Clone, PartialEq)]
pub struct BadBlock {
    /// Index of the block within the tensor.
    pub block: usize,
    /// Which scale field (`d`, `m`, `dmin`) or value.
    pub field: &'static str,
    pub value: f32,
}

impl GgmlType {
    /// Every type ardpipe dequantises.
    pub const ALL: [GgmlType; 13] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q2_K,
        Self::Q3_K,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
    ];

    pub fn from_u32(ty: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == ty)
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q2_K => 10,
            Self::Q3_K => 11,
            Self::Q4_K => 12,
            Self::Q5_K => 13,
            Self::Q6_K => 14,
            Self::BF16 => 30,
        }
    }

    pub fn name(self) -> &'static str {
        ggml_type_name(self.id())
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => QK,
            Self::Q2_K | Self::Q3_K | Self::Q4_K | Self::Q5_K | Self::Q6_K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2_K => 84,
            Self::Q3_K => 110,
            Self::Q4_K => 144,
            Self::Q5_K => 176,
            Self::Q6_K => 210,
        }
    }

    /// Bytes holding `n` values, or None when `n` is not a whole number of blocks or the byte
    /// count does not fit a `usize` (`n` comes from a file's dims).
    pub fn byte_len(self, n: usize) -> Option<usize> {
        let bv = self.block_values();
        n.is_multiple_of(bv)
            .then(|| (n / bv).checked_mul(self.block_bytes()))?
    }

    /// Dequantise `raw` (a whole number of blocks) into f32 values. Panics on a partial block:
    /// callers size `raw` with [`GgmlType::byte_len`]; [`GgmlType::dequantise_into`] is the
    /// checked form.
    pub fn dequantise(self, raw: &[u8]) -> Vec<f32> {
        let mut out = vec![0f32; raw.len() / self.block_bytes() * self.block_values()];
        if let Err(e) = self.dequantise_into(raw, &mut out) {
            // Non-finite scales still dequantise (to non-finite values); only the length can fail.
            assert!(e.is_none(), "partial block in {self:?} data");
        }
        out
    }

    /// Dequantise `raw` into `out` (exactly `raw.len() / block_bytes · block_values` values).
    /// Err(None): the lengths do not match whole blocks. Err(Some(bad)): a block has a non-finite
    /// scale; `out` is still fully written so that callers may choose to report it.
    pub fn dequantise_into(self, raw: &[u8], out: &mut [f32]) -> Result<(), Option<BadBlock>> {
        let (bb, bv) = (self.block_bytes(), self.block_values());
        if !raw.len().is_multiple_of(bb) || raw.len() / bb * bv != out.len() {
            return Err(None);
        }
        let blocks = raw.chunks_exact(bb).zip(out.chunks_exact_mut(bv));
        let mut bad: Option<BadBlock> = None;
        let mut note = |i: usize, field: &'static str, v: f32| {
            if !v.is_finite() && bad.is_none() {
                bad = Some(BadBlock {
                    block: i,
                    field,
                    value: v,
                });
            }
        };
        match self {
            Self::F32 => {
                for (b, y) in raw.chunks_exact(4).zip(out.iter_mut()) {
                    *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Self::F16 => {
                for (b, y) in raw.chunks_exact(2).zip(out.iter_mut()) {
                    *y = f16_at(b, 0);
                }
            }
            Self::BF16 => {
                for (b, y) in raw.chunks_exact(2).zip(out.iter_mut()) {
                    *y = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
                }
            }
            Self::Q4_0 => {
                for (i, (b, y)) in blocks.enumerate() {
                    let d = f16_at(b, 0);
                    note(i, "d", d);
                    for j in 0..16 {
                        let q = b[2 + j];
                        y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
                        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
                    }
                }
            }
            Self::Q4_1 => {
                for (i, (b, y)) in blocks.enumerate() {
                    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                    note(i, "d", d);
                    note(i, "m", m);
                    for j in 0..16 {
                        let q = b[4 + j];
                        y[j] = d * (q & 0xF) as f32 + m;
                        y[j + 16] = d * (q >> 4) as f32 + m;
                    }
                }
            }
            Self::Q5_0 => {
                for (i, (b, y)) in blocks.enumerate() {
                    let d = f16_at(b, 0);
                    note(i, "d", d);
                    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                    for j in 0..16 {
                        let q = b[6 + j];
                        let h0 = ((qh >> j) & 1) as u8;
                        let h1 = ((qh >> (j + 16)) & 1) as u8;
                        y[j] = d * (((q & 0xF) | (h0 << 4)) as i32 - 16) as f32;
                        y[j + 16] = d * (((q >> 4) | (h1 << 4)) as i32 - 16) as f32;
                    }
                }
            }
            Self::Q5_1 => {
                for (i, (b, y)) in blocks.enumerate() {
                    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                    note(i, "d", d);
                    note(i, "m", m);
                    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                    for j in 0..16 {
                        let q = b[8 + j];
                        let h0 = ((qh >> j) & 1) as u8;
                        let h1 = ((qh >> (j + 16)) & 1) as u8;
                        y[j] = d * ((q & 0xF) | (h0 << 4)) as f32 + m;
                        y[j + 16] = d * ((q >> 4) | (h1 << 4)) as f32 + m;
                    }
                }
            }
            Self::Q8_0 => {
                for (i, (b, y)) in blocks.enumerate() {
                    let d = f16_at(b, 0);
                    note(i, "d", d);
                    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
                        *y = q as i8 as f32 * d;
                    }
                }
            }
            Self::Q2_K => {
                for (i, (b, y)) in blocks.enumerate() {
                    let (scales, qs) = (&b[0..16], &b[16..80]);
                    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
                    note(i, "d", d);
                    note(i, "dmin", dmin);
                    // Sub-block s (16 values) takes 2 bits at shift 2·((s/2) % 4) of
                    // qs[32·(s/8) + 16·(s%2) ..][..16].
                    for (s, (y, &sc)) in y.chunks_exact_mut(16).zip(scales).enumerate() {
                        let dl = d * (sc & 0xF) as f32;
                        let ml = dmin * (sc >> 4) as f32;
                        let q = &qs[32 * (s / 8) + 16 * (s % 2)..][..16];
                        let shift = 2 * ((s / 2) % 4);
                        for (y, &q) in y.iter_mut().zip(q) {
                            *y = dl * ((q >> shift) & 3) as f32 - ml;
                        }
                    }
                }
            }
            Self::Q3_K => {
                for (i, (b, y)) in blocks.enumerate() {
                    let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
                    let d = f16_at(b, 108);
                    note(i, "d", d);
                    for (s, y) in y.chunks_exact_mut(16).enumerate() {
                        // 6-bit scale: low 4 bits from sc[s % 8] (nibble s / 8), high 2 bits
                        // from sc[8 + s % 4] at shift 2·(s / 4).
                        let lo = (sc[s % 8] >> (4 * (s / 8))) & 0xF;
                        let hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
                        let dl = d * ((lo | (hi << 4)) as i32 - 32) as f32;
                        let q = &qs[32 * (s / 8) + 16 * (s % 2)..][..16];
                        let hm = &hmask[16 * (s % 2)..][..16];
                        let shift = 2 * ((s / 2) % 4);
                        let bit = s / 2;
                        for ((y, &q), &h) in y.iter_mut().zip(q).zip(hm) {
                            let low = ((q >> shift) & 3) as i32;
                            let sub = if (h >> bit) & 1 == 1 { 0 } else { 4 };
                            *y = dl * (low - sub) as f32;
                        }
                    }
                }
            }
            Self::Q4_K => {
                for (i, (b, y)) in blocks.enumerate() {
                    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                    note(i, "d", d);
                    note(i, "dmin", dmin);
                    let (scales, qs) = (&b[4..16], &b[16..144]);
                    for (s, y) in y.chunks_exact_mut(32).enumerate() {
                        let (sc, m) = scale_min_k4(s, scales);
                        let (dl, ml) = (d * sc as f32, dmin * m as f32);
                        let q = &qs[32 * (s / 2)..][..32];
                        let shift = 4 * (s % 2);
                        for (y, &q) in y.iter_mut().zip(q) {
                            *y = dl * ((q >> shift) & 0xF) as f32 - ml;
                        }
                    }
                }
            }
            Self::Q5_K => {
                for (i, (b, y)) in blocks.enumerate() {
                    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                    note(i, "d", d);
                    note(i, "dmin", dmin);
                    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
                    for (s, y) in y.chunks_exact_mut(32).enumerate() {
                        let (sc, m) = scale_min_k4(s, scales);
                        let (dl, ml) = (d * sc as f32, dmin * m as f32);
                        let q = &qs[32 * (s / 2)..][..32];
                        let shift = 4 * (s % 2);
                        for ((y, &q), &h) in y.iter_mut().zip(q).zip(qh) {
                            let v = ((q >> shift) & 0xF) | (((h >> s) & 1) << 4);
                            *y = dl * v as f32 - ml;
                        }
                    }
                }
            }
            Self::Q6_K => {
                for (i, (b, y)) in blocks.enumerate() {
                    let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                    let d = f16_at(b, 208);
                    note(i, "d", d);
                    // Per half (128 values, n): value 32·k + l takes the nibble k/2 of
                    // ql[64n + 32·(k%2) + l] and 2 bits at shift 2k of qh[32n + l].
                    for (s, y) in y.chunks_exact_mut(16).enumerate() {
                        let dl = d * (sc[s] as i8) as f32;
                        let (n, k, l0) = (s / 8, (s % 8) / 2, 16 * (s % 2));
                        let lo = &ql[64 * n + 32 * (k % 2) + l0..][..16];
                        let hi = &qh[32 * n + l0..][..16];
                        let (lshift, hshift) = (4 * (k / 2), 2 * k);
                        for ((y, &l), &h) in y.iter_mut().zip(lo).zip(hi) {
                            let q = ((l >> lshift) & 0xF) | (((h >> hshift) & 3) << 4);
                            *y = dl * (q as i32 - 32) as f32;
                        }
                    }
                }
            }
        }
        match bad {
            Some(b) => Err(Some(b)),
            None => Ok(()),
        }
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K/Q5_K super-block.
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
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
        assert_eq!(GgmlType::Q4_K.byte_len(512), Some(288));
        assert_eq!(GgmlType::Q6_K.byte_len(32), None);
        assert_eq!(ggml_type_name(12), "Q4_K");
        assert_eq!(GgmlType::from_u32(12), Some(GgmlType::Q4_K));
        assert!(
            GgmlType::from_u32(15).is_none(),
            "Q8_K is not a storage type"
        );
        assert_eq!(GgmlType::F32.byte_len(usize::MAX / 2), None);
        assert_eq!(GgmlType::F16.byte_len(usize::MAX), None);
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_u32(t.id()), Some(t));
        }
    }

    #[test]
    fn a_non_finite_scale_names_its_block() {
        let mut raw = vec![0u8; 2 * 34];
        raw[34..36].copy_from_slice(&h(f32::INFINITY));
        let mut out = vec![0f32; 64];
        let e = GgmlType::Q8_0.dequantise_into(&raw, &mut out).unwrap_err();
        assert_eq!(e.unwrap().block, 1);
        assert!(
            GgmlType::Q8_0
                .dequantise_into(&raw[..40], &mut out)
                .is_err()
        );
    }
}
