//! Small building blocks shared by the architectures: norms, RoPE, masks, seeded init.

use tch::{Device, Kind, Tensor};

/// RMSNorm as Llama computes it: in f32, then scaled by the weight — or, with `unit_offset`
/// (the Gemma families), by `1 + weight`.
#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
    pub unit_offset: bool,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x32 = x.to_kind(Kind::Float);
        let var = x32.square().mean_dim(-1, true, Kind::Float);
        let normed = x32 * (var + self.eps).rsqrt();
        if self.unit_offset {
            normed * (self.weight.to_kind(Kind::Float) + 1.0)
        } else {
            normed * &self.weight
        }
    }
}

/// LayerNorm with f32 affine parameters (post-LN BERT).
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let d = self.weight.size()[0];
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), self.eps, false)
    }
}

/// Rotary position embedding, rotate-half layout (the Hugging Face Llama convention).
#[derive(Debug)]
pub struct Rope {
    /// `[head_dim / 2]`, f32.
    inv_freq: Tensor,
    /// cos and sin are multiplied by it (YaRN's attention factor; 1 otherwise).
    attention_factor: f64,
}

impl Rope {
    pub fn new(
        head_dim: usize,
        theta: f64,
        scaling: Option<&super::config::RopeScaling>,
        device: Device,
    ) -> Self {
        let exps = Tensor::arange_start_step(0, head_dim as i64, 2, (Kind::Float, device))
            / head_dim as f64;
        let mut inv_freq = (exps * theta.ln()).exp().reciprocal();
        if let Some(scaling) = scaling {
            // head_dim / 2 numbers, once at load: adjusted on the host.
            let plain: Vec<f64> = Vec::<f32>::try_from(&inv_freq.to_device(Device::Cpu))
                .expect("a 1-D f32 tensor")
                .into_iter()
                .map(f64::from)
                .collect();
            let scaled: Vec<f32> = scaling
                .apply(&plain, theta)
                .into_iter()
                .map(|f| f as f32)
                .collect();
            inv_freq = Tensor::from_slice(&scaled).to_device(device);
        }
        Self {
            inv_freq,
            attention_factor: scaling.map_or(1.0, |s| s.attention_factor()),
        }
    }

    /// cos and sin for positions `[b, t]` (int64): each `[b, 1, t, head_dim]`, f32.
    pub fn cos_sin(&self, positions: &Tensor) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        if self.attention_factor == 1.0 {
            (emb.cos(), emb.sin())
        } else {
            (
                emb.cos() * self.attention_factor,
                emb.sin() * self.attention_factor,
            )
        }
    }

    /// Apply to `[b, heads, t, head_dim]`.
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let half = x.size()[3] / 2;
        let x1 = x.narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let rotated = Tensor::cat(&[&x2.neg(), &x1], -1);
        let kind = x.kind();
        (x.to_kind(Kind::Float) * cos + rotated.to_kind(Kind::Float) * sin).to_kind(kind)
    }
}

/// Share `kv` heads among `heads` query heads: `[b, kv, t, d]` → `[b, heads, t, d]`.
pub fn repeat_kv(x: &Tensor, groups: i64) -> Tensor {
    if groups == 1 {
        return x.shallow_clone();
    }
    let (b, kv, t, d) = x.size4().expect("attention tensors are 4-D");
    x.unsqueeze(2)
        .expand([b, kv, groups, t, d], false)
        .reshape([b, kv * groups, t, d])
}

/// A reproducible normal(0, std) tensor from a seed, independent of libtorch's global RNG
/// (so initialising a head never perturbs other random streams). SplitMix64 + Box–Muller.
pub fn seeded_normal(shape: &[i64], std: f64, seed: u64) -> Tensor {
    let n: i64 = shape.iter().product();
    let mut rng = ardpipe_data::shuffle::SplitMix64::new(seed);
    let mut v = Vec::with_capacity(n as usize);
    while v.len() < n as usize {
        // (0, 1]: ln(u1) is finite.
        let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = rng.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        v.push((r * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32);
        v.push((r * (2.0 * std::f64::consts::PI * u2).sin() * std) as f32);
    }
    v.truncate(n as usize);
    Tensor::from_slice(&v).reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_normal_is_reproducible_and_roughly_normal() {
        let a = seeded_normal(&[64, 64], 0.02, 7);
        let b = seeded_normal(&[64, 64], 0.02, 7);
        let c = seeded_normal(&[64, 64], 0.02, 8);
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
        let std = a.std(true).double_value(&[]);
        assert!((std - 0.02).abs() < 0.002, "{std}");
    }

    #[test]
    fn rope_at_position_zero_is_identity() {
        let rope = Rope::new(8, 10000.0, None, Device::Cpu);
        let (cos, sin) = rope.cos_sin(&Tensor::zeros([1, 1], (Kind::Int64, Device::Cpu)));
        let x = Tensor::randn([1, 2, 1, 8], (Kind::Float, Device::Cpu));
        assert!(Rope::apply(&x, &cos, &sin).allclose(&x, 1e-6, 1e-6, false));
    }
}
