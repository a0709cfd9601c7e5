//! The quantised frozen base and layer checkpointing (csrc/ops.cpp): gradients through them equal
//! the plain computation's.

use ardpipe_adapters::ops::{QuantScheme, QuantizedWeight, checkpoint};
use ardpipe_adapters::{AdaptableLinear, HeadLayout, LoraConfig, MethodConfig, attach};
use tch::{Device, Kind, Tensor};

#[path = "adapters/common.rs"]
#[allow(dead_code)]
mod common;
use common::{linear, max_abs_diff, randomize};

/// The tests draw from libtorch's one global generator and seed it: one at a time (this file
/// is its own process, so no other test draws in between).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const SCHEMES: [QuantScheme; 3] = [
    QuantScheme::Int8,
    QuantScheme::Int4 { group: 32 },
    QuantScheme::Int4 { group: 64 },
];

#[test]
fn codes_round_each_weight_to_within_half_a_step() {
    let _serial = serial();
    tch::manual_seed(1);
    let w = Tensor::randn([24, 128], (Kind::Float, Device::Cpu)) * 0.05;
    for scheme in SCHEMES {
        let q = QuantizedWeight::new(&w, scheme).unwrap();
        let deq = q.dequantize(Kind::Float);
        assert_eq!(deq.size(), [24, 128]);
        // One step is the scale of the weight's row (int8) or group (int4: its (step, minimum)
        // pair's first half).
        let step = match scheme {
            QuantScheme::Int8 => q.scales.unsqueeze(1).expand([24, 128], false),
            QuantScheme::Int4 { group } => q
                .scales
                .select(2, 0)
                .to_kind(Kind::Float)
                .unsqueeze(-1)
                .expand([24, 128 / group as i64, group as i64], false)
                .reshape([24, 128]),
        };
        let err = (&deq - &w).abs() - step * 0.5;
        assert!(err.max().double_value(&[]) < 1e-7, "{scheme:?}");
        let worst = (&deq - &w).abs().max().double_value(&[]);
        assert!(worst > 0.0, "{scheme:?}: nothing was rounded");
        let (codes_bytes, per_weight) = match scheme {
            QuantScheme::Int8 => (q.codes.numel(), 1.0),
            QuantScheme::Int4 { .. } => (q.codes.numel(), 0.5),
        };
        assert_eq!(codes_bytes as f64, 24.0 * 128.0 * per_weight, "{scheme:?}");
        assert_eq!(q.bytes(), scheme.bytes(24, 128));
    }
}

/// int4 is asymmetric: each group's smallest and largest weights are on its grid (to f16's
/// precision, which the step and minimum are stored in), and weights already on a 16-level grid
/// per group (a GGUF Q4_0 or Q4_1 block of 32, f16 step and minimum) come back as they were.
#[test]
fn int4_keeps_each_groups_extremes_and_a_q4_grid() {
    let _serial = serial();
    tch::manual_seed(2);
    let opts = (Kind::Float, Device::Cpu);
    let w = Tensor::randn([8, 64], opts) * 0.05 + 0.01;
    let q = QuantizedWeight::new(&w, QuantScheme::Int4 { group: 32 }).unwrap();
    assert_eq!(q.scales.kind(), Kind::Half);
    let deq = q.dequantize(Kind::Float).view([8, 2, 32]);
    let g = w.view([8, 2, 32]);
    for (a, b) in [
        (deq.amin(2, false), g.amin(2, false)),
        (deq.amax(2, false), g.amax(2, false)),
    ] {
        // f16 keeps 11 significant bits: 2⁻¹¹ of a weight below 0.25 is under 1.3e-4.
        assert!(max_abs_diff(&a, &b) < 1.3e-4, "{}", max_abs_diff(&a, &b));
    }
    // A Q4_1 block: w = d·c + m with f16 d and m and codes 0..15, both ends used.
    let codes = Tensor::randint(16, [8, 2, 32], (Kind::Int64, Device::Cpu));
    let _ = codes.narrow(2, 0, 1).fill_(0);
    let _ = codes.narrow(2, 1, 1).fill_(15);
    let half = |t: Tensor| t.to_kind(Kind::Half).to_kind(Kind::Float);
    let d = half(Tensor::rand([8, 2, 1], opts) * 0.01 + 0.001);
    let m = half(Tensor::randn([8, 2, 1], opts) * 0.05);
    let grid = (codes.to_kind(Kind::Float) * &d + &m).view([8, 64]);
    let back = QuantizedWeight::new(&grid, QuantScheme::Int4 { group: 32 })
        .unwrap()
        .dequantize(Kind::Float);
    assert!(
        max_abs_diff(&back, &grid) < 1e-6,
        "{}",
        max_abs_diff(&back, &grid)
    );
    // Groups of 64 span two blocks' grids at once: not exact.
    let coarse = QuantizedWeight::new(&grid, QuantScheme::Int4 { group: 64 })
        .unwrap()
        .dequantize(Kind::Float);
    assert!(max_abs_diff(&coarse, &grid) > 1e-4);
}

#[test]
fn int4_refuses_columns_that_are_not_whole_groups() {
    let _serial = serial();
    let w = Tensor::zeros([4, 96], (Kind::Float, Device::Cpu));
    let e = QuantizedWeight::new(&w, QuantScheme::Int4 { group: 64 }).unwrap_err();
    assert!(e.contains("96 input columns") && e.contains("64"), "{e}");
}

/// Two LoRA linears in a row, `x → lin2(gelu(lin1(x)))`: the gradient of lin1's adapter passes
/// through lin2's frozen base.
fn two_layers(seed: i64, dropout: f64) -> (AdaptableLinear, AdaptableLinear) {
    tch::manual_seed(seed);
    let mut l1 = linear("l1", 64, 64, HeadLayout::headless(64), Kind::Float);
    let mut l2 = linear("l2", 16, 64, HeadLayout::headless(16), Kind::Float);
    for l in [&mut l1, &mut l2] {
        let cfg = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            dropout,
        };
        attach(l, &MethodConfig::Lora(cfg)).unwrap();
        // B ≠ 0, so every factor gets a gradient.
        randomize(&l.adapter.as_ref().unwrap().trainable()[1].1, 0.1);
    }
    (l1, l2)
}

fn run(l1: &AdaptableLinear, l2: &AdaptableLinear, x: &Tensor) -> Tensor {
    l2.forward(&l1.forward(x, true).gelu("none"), true)
        .square()
        .mean(Kind::Float)
}

fn adapter_grads(ls: &[&AdaptableLinear]) -> Vec<Tensor> {
    ls.iter()
        .flat_map(|l| l.trainable())
        .map(|(_, t, _)| t.grad().copy())
        .collect()
}

#[test]
fn adapters_on_a_quantised_base_get_the_gradients_of_its_dequantised_weights() {
    let _serial = serial();
    for scheme in SCHEMES {
        let (mut q1, mut q2) = two_layers(7, 0.0);
        let (mut d1, mut d2) = two_layers(8, 0.0);
        let (o1, o2) = (same_as(&q1), same_as(&q2));
        for (q, d) in [(&mut q1, &mut d1), (&mut q2, &mut d2)] {
            copy_adapter(q, d);
            q.base.quantize(scheme).unwrap();
            assert_eq!(q.base.weight.numel(), 0, "the dense weight is dropped");
            // The reference: a dense base holding exactly the dequantised values.
            d.base.weight = q.base.dense_weight();
        }
        let x = Tensor::randn([3, 5, 64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let xd = x.detach().copy().set_requires_grad(true);
        let (lq, ld) = (run(&q1, &q2, &x), run(&d1, &d2, &xd));
        lq.backward();
        ld.backward();
        assert!(max_abs_diff(&lq, &ld) < 1e-7, "{scheme:?} {lq:?} {ld:?}");
        assert!(max_abs_diff(&x.grad(), &xd.grad()) < 1e-7, "{scheme:?}");
        let (gq, gd) = (adapter_grads(&[&q1, &q2]), adapter_grads(&[&d1, &d2]));
        assert_eq!(gq.len(), 4);
        for (a, b) in gq.iter().zip(&gd) {
            let scale = b.abs().max().double_value(&[]);
            assert!(scale > 0.0);
            assert!(max_abs_diff(a, b) <= 1e-6 * scale, "{scheme:?}");
        }
        // And the quantisation is not a no-op: the original weights give another loss.
        assert!(max_abs_diff(&run(&o1, &o2, &xd), &ld) > 1e-6, "{scheme:?}");
    }
}

/// `to`'s adapter factors and bias set to `from`'s (tests run in parallel, so one seed cannot
/// promise two equal draws from the global generator).
fn copy_adapter(from: &AdaptableLinear, to: &mut AdaptableLinear) {
    tch::no_grad(|| {
        for ((_, a, _), (_, b, _)) in from.trainable().iter().zip(to.trainable()) {
            b.shallow_clone().copy_(a);
        }
    });
    to.base.bias = from.base.bias.as_ref().map(|b| b.copy());
}

/// A dense copy of `l`: weight, bias and adapter.
fn same_as(l: &AdaptableLinear) -> AdaptableLinear {
    let mut c = AdaptableLinear::new(
        "copy",
        l.base.weight.copy(),
        l.base.bias.as_ref().map(|b| b.copy()),
        l.heads,
    );
    attach(
        &mut c,
        &MethodConfig::Lora(LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            dropout: 0.0,
        }),
    )
    .unwrap();
    copy_adapter(l, &mut c);
    c
}

#[test]
fn a_quantised_base_refuses_to_merge() {
    let _serial = serial();
    let (mut q1, _) = two_layers(3, 0.0);
    q1.base.quantize(QuantScheme::Int8).unwrap();
    let e = q1.merge().unwrap_err().to_string();
    assert!(e.contains("quantised base"), "{e}");
}

#[test]
fn checkpointed_layers_give_the_gradients_of_the_plain_ones_dropout_included() {
    let _serial = serial();
    let x = Tensor::randn([4, 6, 64], (Kind::Float, Device::Cpu));
    let (p1, p2) = two_layers(11, 0.3);
    let (mut c1, mut c2) = two_layers(12, 0.3);
    for (p, c) in [(&p1, &mut c1), (&p2, &mut c2)] {
        copy_adapter(p, c);
        c.base.weight = p.base.weight.copy();
    }
    tch::manual_seed(99);
    let plain = run(&p1, &p2, &x);
    plain.backward();
    tch::manual_seed(99);
    // Checkpoint each layer; the closures reach the layers through raw pointers, valid until
    // the backward pass below.
    let (a, b) = (
        &c1 as *const AdaptableLinear as usize,
        &c2 as *const AdaptableLinear as usize,
    );
    let h = checkpoint(&x, move |x| {
        unsafe { &*(a as *const AdaptableLinear) }
            .forward(x, true)
            .gelu("none")
    });
    let y = checkpoint(&h, move |h| {
        unsafe { &*(b as *const AdaptableLinear) }.forward(h, true)
    });
    let ckpt = y.square().mean(Kind::Float);
    // Draw something between forward and backward: the recomputation must replay the forward
    // pass's dropout masks, not the stream's current state.
    let _ = Tensor::rand([100], (Kind::Float, Device::Cpu));
    ckpt.backward();
    assert!(max_abs_diff(&plain, &ckpt) < 1e-7);
    let (gp, gc) = (adapter_grads(&[&p1, &p2]), adapter_grads(&[&c1, &c2]));
    for (p, c) in gp.iter().zip(&gc) {
        assert!(max_abs_diff(p, c) < 1e-7, "{p:?} vs {c:?}");
    }
    // Dropout was on: different masks would give other gradients.
    let (r1, r2) = two_layers(11, 0.3);
    tch::manual_seed(5);
    run(&r1, &r2, &x).backward();
    assert!(max_abs_diff(&adapter_grads(&[&r1])[0], &gp[0]) > 1e-6);
}

#[test]
fn without_grad_a_checkpoint_is_the_layer() {
    let _serial = serial();
    let (l1, _) = two_layers(2, 0.0);
    let x = Tensor::randn([2, 64], (Kind::Float, Device::Cpu));
    let p = &l1 as *const AdaptableLinear as usize;
    let y = tch::no_grad(|| {
        checkpoint(&x, move |x| {
            unsafe { &*(p as *const AdaptableLinear) }.forward(x, false)
        })
    });
    assert!(max_abs_diff(&y, &tch::no_grad(|| l1.forward(&x, false))) < 1e-7);
}
