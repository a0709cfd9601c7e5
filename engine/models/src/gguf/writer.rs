//! A GGUF writer, so tests can build tiny models in the real format and load them through the
//! real reader. It quantises with the reference formulas (Q8_0: d = max|x|/127; Q4_1:
//! d = (max − min)/15, m = min), which is what llama.cpp's reference quantisers do.

use std::io::Write;
use std::path::Path;

use half::f16;

use super::container::Value;
use super::dequant::{GgmlType, QK};

pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)>,
    alignment: usize,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        Self {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
        }
    }

    /// Set a metadata key; setting it again replaces the value (GGUF keys are unique).
    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Add a tensor given in torch order (`shape` outermost first) as f32 values, stored as `ty`.
    pub fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[f32],
        ty: GgmlType,
    ) -> &mut Self {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        let data = quantise(ty, values);
        self.tensors
            .push((name.to_string(), shape.to_vec(), ty, data));
        self
    }

    /// Add a tensor whose bytes are already in `ty`'s block format (`shape` outermost first).
    pub fn tensor_raw(
        &mut self,
        name: &str,
        shape: &[usize],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        assert_eq!(
            ty.byte_len(shape.iter().product()),
            Some(data.len()),
            "{name}: {} bytes are not {shape:?} in {ty:?}",
            data.len()
        );
        self.tensors
            .push((name.to_string(), shape.to_vec(), ty, data));
        self
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        self.write_with_type_override(path, &[])
    }

    /// `overrides`: (tensor name, type id) written instead of the tensor's own type.
    pub fn write_with_type_override(
        &self,
        path: &Path,
        overrides: &[(&str, u32)],
    ) -> std::io::Result<()> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend(type_id(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0usize;
        let mut offsets = Vec::new();
        for (name, shape, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend((shape.len() as u32).to_le_bytes());
            for d in shape.iter().rev() {
                out.extend((*d as u64).to_le_bytes());
            }
            let id = overrides
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| *id)
                .unwrap_or(ty.id());
            out.extend(id.to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len()).div_ceil(self.alignment) * self.alignment;
        }
        let start = out.len().div_ceil(self.alignment) * self.alignment;
        out.resize(start, 0);
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize(start + off, 0);
            out.extend(data);
        }
        let mut f = std::fs::File::create(path)?;
        f.write_all(&out)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            let item_ty = items.first().map(type_id).unwrap_or(8);
            out.extend(item_ty.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i);
            }
        }
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
    }
}

/// Quantise f32 values with the reference formulas (F32, F16, BF16 by truncation, Q8_0, Q4_1;
/// other types come from [`GgufWriter::tensor_raw`]).
pub fn quantise(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    match ty {
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect(),
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => {
            assert_eq!(values.len() % QK, 0);
            let mut out = Vec::new();
            for b in values.chunks_exact(QK) {
                let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(b.iter().map(|v| (v * inv).round() as i8 as u8));
            }
            out
        }
        GgmlType::Q4_1 => {
            assert_eq!(values.len() % QK, 0);
            let mut out = Vec::new();
            for b in values.chunks_exact(QK) {
                let min = b.iter().copied().fold(f32::INFINITY, f32::min);
                let max = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(f16::from_f32(min).to_le_bytes());
                let q = |v: f32| (((v - min) * inv).round() as u8).min(15);
                for j in 0..QK / 2 {
                    out.push(q(b[j]) | (q(b[j + QK / 2]) << 4));
                }
            }
            out
        }
        other => panic!(
            "the test writer does not quantise to {other:?}; give its bytes to GgufWriter::tensor_raw"
        ),
    }
}
