//! How ARD-LoRA's α moves, pinned by its magnitudes: the penalty's value, the proximal step,
//! the pooled second moment, and the outcome the method exists for (α grows where the task pulls
//! harder than λ and shrinks where it does not).

use ardpipe_adapters::ard::{ArdLora, ArdRegulariser};
use ardpipe_adapters::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup};
use ardpipe_adapters::{AdaptableLinear, ArdLoraConfig, HeadAxis};
use tch::{Device, Kind, Tensor};

use crate::common::{heads, linear};

fn ard(lin: &AdaptableLinear) -> &ArdLora {
    lin.adapter.as_ref().unwrap().as_ard().unwrap()
}
fn ard_mut(lin: &mut AdaptableLinear) -> &mut ArdLora {
    lin.adapter.as_mut().unwrap().as_ard_mut().unwrap()
}

/// Three layers of q (output-axis heads) and o (input-axis heads), 2 heads each, all units of
/// 8 + 4 parameters per rank (so every cost weight c_u is 1), with α jagged across depth:
/// 0.5, 1.5, 0.5.
fn jagged_stack(c: &ArdLoraConfig) -> Vec<AdaptableLinear> {
    let mut v = Vec::new();
    for l in 0..3 {
        for (kind, axis) in [("q_proj", HeadAxis::Output), ("o_proj", HeadAxis::Input)] {
            let mut lin = linear(
                &format!("model.layers.{l}.self_attn.{kind}"),
                8,
                8,
                heads(axis, 2, 4),
                Kind::Float,
            );
            ArdLora::attach(&mut lin, c).unwrap();
            let a = if l == 1 { 1.5f32 } else { 0.5 };
            ard_mut(&mut lin).set_alpha(&Tensor::from_slice(&[a, a]));
            v.push(lin);
        }
    }
    v
}

fn cfg() -> ArdLoraConfig {
    ArdLoraConfig {
        r0: 4,
        alpha_init: 1.0,
        alpha_min: 0.0,
        alpha_max: 2.0,
        scale: 8.0,
        ..ArdLoraConfig::default()
    }
}

#[test]
fn the_penalty_is_beta_l1_plus_gamma_tv_at_full_magnitude() {
    let c = cfg();
    let lins = jagged_stack(&c);
    let refs: Vec<&ArdLora> = lins.iter().map(ard).collect();
    let reg = ArdRegulariser::new(&refs, &c).unwrap();
    let t = reg.terms(&refs).unwrap();
    // ℓ1: 2 kinds × 2 heads × (0.5 + 1.5 + 0.5); TV: 2 kinds × 2 heads × (1 + 1).
    assert!((t.l1.double_value(&[]) - 10.0).abs() < 1e-5);
    assert!((t.tv.double_value(&[]) - 8.0).abs() < 1e-5);
    // β = 2, γ = 0.5: 20 + 4 (the trainer multiplies this by λ(t) and adds it to the loss).
    assert!((t.total(2.0, 0.5).double_value(&[]) - 24.0).abs() < 1e-4);
}

#[test]
fn the_proximal_step_is_tv_subgradient_then_the_l1_soft_threshold() {
    let c = cfg();
    let mut lins = jagged_stack(&c);
    let (eta, beta, gamma) = (0.1, 1.0, 0.5);
    let shifts = {
        let refs: Vec<&ArdLora> = lins.iter().map(ard).collect();
        let reg = ArdRegulariser::new(&refs, &c).unwrap();
        reg.proximal_shifts(&refs, eta, beta, gamma).unwrap()
    };
    assert_eq!(shifts.len(), lins.len());
    for (lin, shift) in lins.iter_mut().zip(&shifts) {
        ard_mut(lin).shift_alpha(shift);
    }
    // ∂TV per chain (layers 0, 1, 2 at 0.5, 1.5, 0.5): −1, +2, −1, so the shifts are
    // η·(γ·∂TV + β·c) = 0.05, 0.2, 0.05.
    for lin in &lins {
        let layer = ard(lin).units()[0].layer.unwrap();
        let want = if layer == 1 { 1.3 } else { 0.45 };
        for a in ard(lin).alpha_values() {
            assert!((a - want).abs() < 1e-6, "layer {layer}: α {a}, want {want}");
        }
    }
    // The soft threshold stops at α_min: a unit below the step lands on 0, not below.
    let mut lin = linear("x.0.q", 8, 8, heads(HeadAxis::Output, 2, 4), Kind::Float);
    ArdLora::attach(&mut lin, &c).unwrap();
    ard_mut(&mut lin).set_alpha(&Tensor::from_slice(&[0.02f32, 1.0]));
    let shift = {
        let reg = ArdRegulariser::new(&[ard(&lin)], &c).unwrap();
        reg.proximal_shifts(&[ard(&lin)], 0.05, 1.0, 0.0).unwrap()
    };
    ard_mut(&mut lin).shift_alpha(&shift[0]);
    let a = ard(&lin).alpha_values();
    assert_eq!(a[0], 0.0);
    assert!((a[1] - 0.95).abs() < 1e-6, "{a:?}");
    assert_eq!(
        ard(&lin).param_count_exported(),
        4 * (8 + 4),
        "α 0.95 → 4 live rows"
    );
}

#[test]
fn pooled_adam_moves_each_alpha_in_proportion_to_its_gradient() {
    let step_of = |pooled: bool| -> Vec<f64> {
        let alpha = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = AdamW::new(
            "alpha",
            AdamWConfig {
                pooled,
                ..AdamWConfig::default()
            },
            vec![ParamGroup::new(
                "alpha",
                0.1,
                0.0,
                vec![("alpha".into(), alpha.shallow_clone())],
            )],
        );
        // Gradients 1 and 0.1.
        (&alpha * Tensor::from_slice(&[1.0f32, 0.1]))
            .sum(Kind::Float)
            .backward();
        opt.step();
        Vec::<f64>::try_from(&(alpha.detach() * -1.0 + 1.0).to_kind(Kind::Double)).unwrap()
    };
    // Per element: every α moves by lr whatever its gradient.
    let plain = step_of(false);
    assert!(
        (plain[0] - 0.1).abs() < 1e-6 && (plain[1] - 0.1).abs() < 1e-6,
        "{plain:?}"
    );
    // Pooled: lr·g / √(mean g²) = 0.1·[1, 0.1] / √0.505.
    let pooled = step_of(true);
    let rms = 0.505f64.sqrt();
    assert!((pooled[0] - 0.1 / rms).abs() < 1e-5, "{pooled:?}");
    assert!((pooled[1] - 0.01 / rms).abs() < 1e-5, "{pooled:?}");
}

/// The method's point: on a task whose first head needs a rank-3 update and whose second head
/// needs none, the same λ lets the first head's rank grow past its start and takes the
/// second's away. The loop is the trainer's (engine/core/src/train/mod.rs): A and B by Adam,
/// α by pooled Adam on the task gradient, then the proximal step of size lr_α·λ.
#[test]
fn alpha_grows_where_the_task_pulls_harder_than_lambda_and_shrinks_elsewhere() {
    tch::manual_seed(3);
    let c = ArdLoraConfig {
        r0: 2,
        alpha_init: 1.0,
        alpha_max: 2.5,
        scale: 4.0,
        ..ArdLoraConfig::default()
    };
    let (d_in, head_dim) = (16i64, 8i64);
    let mut lin = linear(
        "model.layers.0.self_attn.q_proj",
        2 * head_dim,
        d_in,
        heads(HeadAxis::Output, 2, head_dim as usize),
        Kind::Float,
    );
    ArdLora::attach(&mut lin, &c).unwrap();
    // Target ΔW: rank 3 on head 0's rows, nothing on head 1's.
    let u = Tensor::randn([head_dim, 3], (Kind::Float, Device::Cpu));
    let v = Tensor::randn([3, d_in], (Kind::Float, Device::Cpu));
    let target = Tensor::cat(
        &[
            u.matmul(&v) * 0.3,
            Tensor::zeros([head_dim, d_in], (Kind::Float, Device::Cpu)),
        ],
        0,
    );
    let weights: Vec<(String, Tensor)> = {
        let a = ard(&lin);
        vec![
            ("A".into(), a.a().shallow_clone()),
            ("B".into(), a.b().shallow_clone()),
        ]
    };
    let mut main = AdamW::new(
        "main",
        AdamWConfig::default(),
        vec![ParamGroup::new("weights", 1e-2, 0.0, weights)],
    );
    let alpha_lr = 0.05;
    let mut alpha_opt = AdamW::new(
        "alpha",
        AdamWConfig {
            pooled: true,
            ..AdamWConfig::default()
        },
        vec![ParamGroup::new(
            "alpha",
            alpha_lr,
            0.0,
            vec![("alpha".into(), ard(&lin).alpha().shallow_clone())],
        )],
    );
    let lambda = 0.3;
    let reg = ArdRegulariser::new(&[ard(&lin)], &c).unwrap();
    for _ in 0..400 {
        main.zero_grad();
        alpha_opt.zero_grad();
        let x = Tensor::randn([64, d_in], (Kind::Float, Device::Cpu));
        let want = lin.base.forward(&x) + x.matmul(&target.tr());
        let got = lin.forward(&x, true);
        (got - want).square().mean(Kind::Float).backward();
        main.step();
        alpha_opt.step();
        let shift = reg
            .proximal_shifts(&[ard(&lin)], alpha_lr * lambda, 1.0, 0.0)
            .unwrap();
        ard_mut(&mut lin).shift_alpha(&shift[0]);
    }
    let alpha = ard(&lin).alpha_values();
    eprintln!("α after 400 steps: {alpha:?}");
    assert!(
        alpha[0] > 1.2,
        "the pulled head's α should grow from 1 (rank 2 towards the 3 it needs): {alpha:?}"
    );
    assert!(
        alpha[1] < 0.1,
        "the idle head's α should fall to ~0 (rank 0): {alpha:?}"
    );
    assert_eq!(ard(&lin).live_rows()[1], 0, "{alpha:?}");
}
