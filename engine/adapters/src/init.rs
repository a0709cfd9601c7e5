//! Parameter initialisation shared by the methods (PEFT's choices, so exports start alike).

use tch::{Device, Kind, Tensor};

/// `nn.init.kaiming_uniform_(w, a=√5)` as PEFT applies it to `lora_A`: U(−1/√fan_in, 1/√fan_in),
/// fan_in being the last dimension (the input features of each row).
pub fn kaiming_uniform_a_sqrt5(shape: &[i64], kind: Kind, device: Device) -> Tensor {
    let fan_in = *shape.last().expect("a weight has at least one dimension") as f64;
    let bound = 1.0 / fan_in.sqrt();
    let mut t = Tensor::empty(shape, (kind, device));
    let _ = t.uniform_(-bound, bound);
    t.set_requires_grad(true)
}

pub fn zeros_param(shape: &[i64], kind: Kind, device: Device) -> Tensor {
    Tensor::zeros(shape, (kind, device)).set_requires_grad(true)
}

/// Adapter weights train in at least f32: low-precision base weights (bf16/f16) would make the
/// tiny adapter updates vanish.
pub fn adapter_kind(base: Kind) -> Kind {
    match base {
        Kind::Double => Kind::Double,
        _ => Kind::Float,
    }
}

/// Dropout on the adapter input only when it does something (saves a copy otherwise).
pub fn maybe_dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if train && p > 0.0 {
        x.dropout(p, true)
    } else {
        x.shallow_clone()
    }
}

/// Run `f` on `x` cast to the adapter's kind and cast the result back to `x`'s kind.
pub fn in_kind(x: &Tensor, kind: Kind) -> Tensor {
    if x.kind() == kind {
        x.shallow_clone()
    } else {
        x.to_kind(kind)
    }
}
