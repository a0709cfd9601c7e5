use ardpipe_adapters::dora::Dora;
use ardpipe_adapters::{DoraConfig, HeadLayout};
use tch::{Device, Kind, Tensor};

use crate::common::{linear, max_abs_diff, randomize};

fn cfg() -> DoraConfig {
    DoraConfig {
        r: 3,
        lora_alpha: 6.0,
        dropout: 0.0,
    }
}

#[test]
fn dora_starts_at_base_with_row_norm_magnitude() {
    tch::manual_seed(20);
    let mut lin = linear(
        "model.layers.0.self_attn.v_proj",
        6,
        10,
        HeadLayout::headless(6),
        Kind::Double,
    );
    Dora::attach(&mut lin, &cfg()).unwrap();
    let d = lin.adapter.as_ref().unwrap();
    let x = Tensor::randn([4, 10], (Kind::Double, Device::Cpu));
    assert!(max_abs_diff(&lin.forward(&x, false), &lin.base.forward(&x)) < 1e-12);
    // PEFT: torch.linalg.norm(W + sΔ, dim=1) – one norm per output row.
    let norms = lin
        .base
        .weight
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
        .sqrt();
    let mag = &d.trainable()[2].1;
    assert_eq!(mag.size(), vec![6]);
    assert!(max_abs_diff(mag, &norms) < 1e-12);
}

#[test]
fn dora_forward_matches_the_weight_decomposition_and_merges() {
    tch::manual_seed(21);
    let mut lin = linear(
        "model.layers.0.self_attn.v_proj",
        6,
        10,
        HeadLayout::headless(6),
        Kind::Double,
    );
    Dora::attach(&mut lin, &cfg()).unwrap();
    let tr = lin.adapter.as_ref().unwrap().trainable();
    randomize(&tr[1].1, 0.3);
    tch::no_grad(|| {
        let mut m = tr[2].1.shallow_clone();
        let _ = m.g_mul_scalar_(1.3);
    });
    let (a, b, m) = (&tr[0].1, &tr[1].1, &tr[2].1);
    let w = &lin.base.weight;
    let v = w + b.matmul(a) * 2.0;
    let vn = v
        .square()
        .sum_dim_intlist([1i64].as_slice(), true, Kind::Double)
        .sqrt();
    let w_dora = m.unsqueeze(1) * &v / &vn;
    let x = Tensor::randn([4, 10], (Kind::Double, Device::Cpu));
    let want = x.matmul(&w_dora.tr()) + lin.base.bias.as_ref().unwrap();
    let y = lin.forward(&x, false);
    assert!(max_abs_diff(&y, &want) < 1e-10);
    // The norm is detached: the magnitude's gradient is Σ_batch (V x / ‖V‖)_row only.
    y.sum(Kind::Double).backward();
    let g = m.grad();
    let want_g =
        (x.matmul(&(&v / &vn).tr())).sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
    assert!(max_abs_diff(&g, &want_g) < 1e-10);
    // Merge folds the decomposition into W; unmerge restores it.
    let w0 = lin.base.weight.copy();
    lin.merge().unwrap();
    assert!(max_abs_diff(&lin.base.weight, &w_dora) < 1e-10);
    assert!(max_abs_diff(&lin.forward(&x, false), &want) < 1e-10);
    lin.unmerge().unwrap();
    assert!(max_abs_diff(&lin.base.weight, &w0) < 1e-10);
    let ex = lin
        .adapter
        .as_ref()
        .unwrap()
        .peft_export(&lin.base)
        .unwrap();
    let names: Vec<&str> = ex.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["lora_A.weight", "lora_B.weight", "lora_magnitude_vector"]
    );
}

#[test]
fn dora_with_dropout_follows_peft_training_form() {
    tch::manual_seed(22);
    let mut lin = linear("l.0.q", 6, 10, HeadLayout::headless(6), Kind::Double);
    Dora::attach(
        &mut lin,
        &DoraConfig {
            dropout: 0.5,
            ..cfg()
        },
    )
    .unwrap();
    let tr = lin.adapter.as_ref().unwrap().trainable();
    randomize(&tr[1].1, 0.3);
    let x = Tensor::randn([64, 10], (Kind::Double, Device::Cpu));
    // Evaluation ignores dropout; training with dropout differs from it.
    let eval = lin.forward(&x, false);
    let train = lin.forward(&x, true);
    assert!(max_abs_diff(&eval, &train) > 1e-3);
    assert!(
        eval.isfinite().all().int64_value(&[]) == 1 && train.isfinite().all().int64_value(&[]) == 1
    );
}
