use ardpipe_adapters::{AdaptableLinear, HeadAxis, HeadLayout};
use tch::{Device, Kind, Tensor};

pub fn linear(path: &str, d_out: i64, d_in: i64, heads: HeadLayout, kind: Kind) -> AdaptableLinear {
    let w = Tensor::randn([d_out, d_in], (kind, Device::Cpu)) * 0.2;
    let b = Tensor::randn([d_out], (kind, Device::Cpu)) * 0.1;
    AdaptableLinear::new(path, w, Some(b), heads)
}

pub fn heads(axis: HeadAxis, n: usize, dim: usize) -> HeadLayout {
    HeadLayout {
        axis,
        n_heads: n,
        head_dim: dim,
    }
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Fill a parameter in place with seeded noise (e.g. make B nonzero so ΔW ≠ 0).
pub fn randomize(t: &Tensor, std: f64) {
    tch::no_grad(|| {
        let mut t = t.shallow_clone();
        let r = Tensor::randn(t.size(), (t.kind(), t.device())) * std;
        t.copy_(&r);
    });
}
