use ardpipe_adapters::optim::{
    AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig, clip_grads,
};
use tch::{Kind, Tensor};

fn param(v: &[f64]) -> Tensor {
    Tensor::from_slice(v).set_requires_grad(true)
}

fn set_grad(p: &Tensor, g: &[f64]) {
    // d/dp Σ g·p = g.
    (p * Tensor::from_slice(g)).sum(Kind::Double).backward();
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.detach()).unwrap()
}

/// PyTorch's AdamW update written out by hand, in f64.
fn adamw_reference(p: f64, grads: &[f64], lr: f64, wd: f64) -> f64 {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let (mut p, mut m, mut v) = (p, 0.0, 0.0);
    for (t, g) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        p *= 1.0 - lr * wd;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let mhat = m / (1.0 - b1.powi(t));
        let denom = v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
        p -= lr * mhat / denom;
    }
    p
}

#[test]
fn adamw_first_step_matches_the_hand_computed_value() {
    let w = param(&[1.0, -2.0]);
    let mut opt = AdamW::new(
        "o",
        AdamWConfig::default(),
        vec![ParamGroup::new(
            "w",
            0.1,
            0.01,
            vec![("w".into(), w.shallow_clone())],
        )],
    );
    set_grad(&w, &[0.5, -0.1]);
    opt.step();
    // Step 1: m̂ = g, v̂ = g², so p ← p·(1 − lr·wd) − lr·g/(|g| + ε):
    //   1.0·0.999 − 0.1·0.5/(0.5 + 1e-8)  = 0.899 000 002
    //  −2.0·0.999 + 0.1·0.1/(0.1 + 1e-8)  = −1.898 000 01
    let got = values(&w);
    assert!((got[0] - 0.899_000_002).abs() < 1e-9, "{got:?}");
    assert!((got[1] + 1.898_000_01).abs() < 1e-9, "{got:?}");
}

#[test]
fn adamw_follows_the_reference_over_steps_with_groups() {
    let w = param(&[0.3]);
    let alpha = param(&[1.0]);
    let mut opt = AdamW::new(
        "o",
        AdamWConfig::default(),
        vec![
            ParamGroup::new("weights", 0.01, 0.1, vec![("w".into(), w.shallow_clone())]),
            ParamGroup::new(
                "alpha",
                0.05,
                0.0,
                vec![("alpha".into(), alpha.shallow_clone())],
            ),
        ],
    );
    let gw = [0.2, -0.4, 0.1, 0.3];
    let ga = [1.0, 1.0, 0.5, 0.2];
    for i in 0..4 {
        opt.zero_grad();
        set_grad(&w, &[gw[i]]);
        set_grad(&alpha, &[ga[i]]);
        opt.step();
    }
    assert!((values(&w)[0] - adamw_reference(0.3, &gw, 0.01, 0.1)).abs() < 1e-12);
    assert!((values(&alpha)[0] - adamw_reference(1.0, &ga, 0.05, 0.0)).abs() < 1e-12);
    opt.set_lr("alpha", 0.5).unwrap();
    assert_eq!(opt.hyper()[1].lr, 0.5);
    assert!(opt.set_lr("nope", 0.1).is_err());
}

#[test]
fn adamw_state_saves_and_resumes_exactly() {
    let run = |split: Option<usize>| -> Vec<f64> {
        let w = param(&[0.5, -0.5, 2.0]);
        let mk = |w: &Tensor| {
            AdamW::new(
                "o",
                AdamWConfig::default(),
                vec![ParamGroup::new(
                    "w",
                    0.05,
                    0.01,
                    vec![("m.w".into(), w.shallow_clone())],
                )],
            )
        };
        let mut opt = mk(&w);
        for i in 0..6 {
            if Some(i) == split {
                // Simulate a checkpoint: copy the state out and into a fresh optimiser.
                let saved: Vec<(String, Tensor)> = opt
                    .state_tensors()
                    .into_iter()
                    .map(|(n, t)| (n, t.copy()))
                    .collect();
                opt = mk(&w);
                opt.load_state(&saved).unwrap();
            }
            opt.zero_grad();
            set_grad(&w, &[0.1 * i as f64, -0.2, 0.3]);
            opt.step();
        }
        values(&w)
    };
    assert_eq!(run(None), run(Some(3)));
}

#[test]
fn state_from_another_model_is_refused_with_the_tensor_name() {
    let w = param(&[0.5, -0.5]);
    let mut opt = AdamW::new(
        "o",
        AdamWConfig::default(),
        vec![ParamGroup::new(
            "w",
            0.05,
            0.0,
            vec![("m.w".into(), w.shallow_clone())],
        )],
    );
    set_grad(&w, &[0.1, 0.1]);
    opt.step();
    let mut saved = opt.state_tensors();
    saved[0].1 = Tensor::zeros([3], (Kind::Double, tch::Device::Cpu));
    let e = opt.load_state(&saved).unwrap_err().to_string();
    assert!(e.contains("o.m.w.exp_avg") && e.contains("[3]"), "{e}");
    let stray = vec![(
        "o.other.exp_avg".to_string(),
        Tensor::zeros([2], (Kind::Double, tch::Device::Cpu)),
    )];
    let e = opt.load_state(&stray).unwrap_err().to_string();
    assert!(e.contains("o.other.exp_avg"), "{e}");
}

#[test]
fn sgd_momentum_matches_pytorch_semantics() {
    let w = param(&[1.0]);
    let mut opt = Sgd::new(
        "s",
        SgdConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        },
        vec![ParamGroup::new(
            "w",
            0.1,
            0.0,
            vec![("w".into(), w.shallow_clone())],
        )],
    );
    set_grad(&w, &[1.0]);
    opt.step(); // buf = 1, p = 0.9
    opt.zero_grad();
    set_grad(&w, &[1.0]);
    opt.step(); // buf = 1.9, p = 0.71
    assert!((values(&w)[0] - 0.71).abs() < 1e-12);
    let st = opt.state_tensors();
    assert_eq!(st[0].0, "s.w.momentum_buffer");
    assert!((values(&st[0].1)[0] - 1.9).abs() < 1e-12);
}

#[test]
fn clipping_scales_to_the_global_norm() {
    let a = param(&[3.0]);
    let b = param(&[0.0]);
    set_grad(&a, &[3.0]);
    set_grad(&b, &[4.0]);
    let norm = clip_grads(&[a.grad(), b.grad()], 1.0);
    assert!((norm - 5.0).abs() < 1e-6);
    assert!((values(&a.grad())[0] - 0.6).abs() < 1e-6);
    assert!((values(&b.grad())[0] - 0.8).abs() < 1e-6);
    // Below the limit nothing changes.
    let norm = clip_grads(&[a.grad(), b.grad()], 10.0);
    assert!((norm - 1.0).abs() < 1e-5);
    assert!((values(&a.grad())[0] - 0.6).abs() < 1e-6);
}
