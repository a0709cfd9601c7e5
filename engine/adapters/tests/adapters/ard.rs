use ardpipe_adapters::ard::{
    ArdLora, ArdRegulariser, BlockStrategy, compact_linears, layer_and_kind,
};
use ardpipe_adapters::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup};
use ardpipe_adapters::{
    AdaptableLinear, ArdLoraConfig, HeadAxis, HeadLayout, LinearAdapter, ParamRole, TvMode,
};
use tch::{Device, Kind, Tensor};

use crate::common::{heads, linear, max_abs_diff, randomize};

fn cfg() -> ArdLoraConfig {
    ArdLoraConfig {
        r0: 4,
        alpha_max: 2.0,
        scale: 8.0,
        ..Default::default()
    }
}

fn ard(lin: &AdaptableLinear) -> &ArdLora {
    lin.adapter.as_ref().unwrap().as_ard().unwrap()
}
fn ard_mut(lin: &mut AdaptableLinear) -> &mut ArdLora {
    lin.adapter.as_mut().unwrap().as_ard_mut().unwrap()
}

/// The three unit layouts on small shapes: (name, d_out, d_in, heads).
fn layouts() -> Vec<(&'static str, i64, i64, HeadLayout)> {
    vec![
        (
            "model.layers.0.self_attn.q_proj",
            12,
            10,
            heads(HeadAxis::Output, 3, 4),
        ),
        (
            "model.layers.0.self_attn.o_proj",
            10,
            12,
            heads(HeadAxis::Input, 3, 4),
        ),
        (
            "model.layers.0.mlp.up_proj",
            12,
            10,
            HeadLayout::headless(12),
        ),
    ]
}

/// ΔW by the definition, one unit at a time, entirely on the host-side formula.
fn reference_delta(a: &ArdLora, axis: HeadAxis, d_out: i64, d_in: i64) -> Tensor {
    let c = a.config();
    let alpha = a.alpha_values();
    let r = a.allocated_rank() as i64;
    let dw = Tensor::zeros([d_out, d_in], (a.a().kind(), Device::Cpu));
    for (u, al) in alpha.iter().enumerate() {
        let m: Vec<f64> = (0..r)
            .map(|i| (c.r0 as f64 * al - i as f64).clamp(0.0, 1.0))
            .collect();
        let m = Tensor::from_slice(&m).to_kind(a.a().kind());
        let du = a
            .b()
            .get(u as i64)
            .matmul(&m.diag(0))
            .matmul(&a.a().get(u as i64))
            * (c.scale / c.r0 as f64);
        let (ro, ci) = (du.size()[0], du.size()[1]);
        match axis {
            HeadAxis::Input => dw.narrow(1, u as i64 * ci, ci).copy_(&du),
            _ => dw.narrow(0, u as i64 * ro, ro).copy_(&du),
        }
    }
    dw
}

#[test]
fn init_forward_equals_base_and_shapes_follow_heads() {
    tch::manual_seed(1);
    for (path, d_out, d_in, h) in layouts() {
        let mut lin = linear(path, d_out, d_in, h, Kind::Float);
        ArdLora::attach(&mut lin, &cfg()).unwrap();
        let x = Tensor::randn([2, 5, d_in], (Kind::Float, Device::Cpu));
        assert!(
            max_abs_diff(&lin.forward(&x, false), &lin.base.forward(&x)) < 1e-6,
            "{path}"
        );
        let a = ard(&lin);
        assert_eq!(a.allocated_rank(), 8, "r_max = ceil(r0 · α_max)");
        assert_eq!(a.alpha_values(), vec![1.0; a.n_units()]);
        assert_eq!(a.effective_ranks(), vec![4; a.n_units()]);
    }
}

#[test]
fn forward_matches_per_unit_definition_for_every_layout_and_strategy() {
    tch::manual_seed(2);
    for (path, d_out, d_in, h) in layouts() {
        let mut lin = linear(path, d_out, d_in, h, Kind::Double);
        let c = ArdLoraConfig {
            groups: if h.axis == HeadAxis::None { 2 } else { 1 },
            ..cfg()
        };
        ArdLora::attach(&mut lin, &c).unwrap();
        let a = ard_mut(&mut lin);
        randomize(a.b(), 0.3);
        let n = a.n_units() as i64;
        let alphas = Tensor::linspace(0.3, 1.7, n, (Kind::Double, Device::Cpu));
        a.set_alpha(&alphas);
        let reference = reference_delta(ard(&lin), h.axis, d_out, d_in);
        let dw = lin.adapter.as_ref().unwrap().delta_weight(&lin.base);
        assert!(
            max_abs_diff(&dw, &reference) < 1e-10,
            "{path}: delta_weight"
        );
        let x = Tensor::randn([3, 7, d_in], (Kind::Double, Device::Cpu));
        let want = lin.base.forward(&x) + x.matmul(&reference.tr());
        for s in [BlockStrategy::Batched, BlockStrategy::Dense] {
            ard_mut(&mut lin).set_block_strategy(s);
            assert!(
                max_abs_diff(&lin.forward(&x, false), &want) < 1e-10,
                "{path} {s:?}"
            );
        }
    }
}

#[test]
fn mask_is_the_soft_rank_and_alpha_stays_in_bounds() {
    let mut lin = linear("l.0.q", 8, 6, heads(HeadAxis::Output, 2, 4), Kind::Float);
    ArdLora::attach(
        &mut lin,
        &ArdLoraConfig {
            r0: 8,
            alpha_max: 1.0,
            ..Default::default()
        },
    )
    .unwrap();
    let a = ard_mut(&mut lin);
    a.set_alpha(&Tensor::from_slice(&[0.8f32, 3.0]));
    // α = 3 is above α_max = 1: projected.
    assert_eq!(a.alpha_values(), vec![0.800000011920929, 1.0]);
    let m = Vec::<f32>::try_from(a.mask().get(0)).unwrap();
    let want = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.4, 0.0];
    for (g, w) in m.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{m:?}");
    }
    assert_eq!(a.effective_ranks(), vec![6, 8]);
    a.set_alpha(&Tensor::from_slice(&[-1.0f32, 0.0]));
    assert_eq!(a.alpha_values(), vec![0.0, 0.0]);
    assert_eq!(
        a.effective_ranks(),
        vec![1, 1],
        "effective rank is at least 1"
    );
}

#[test]
fn gradient_reaches_alpha_through_the_mask_and_matches_finite_differences() {
    tch::manual_seed(3);
    let mut lin = linear("m.3.k", 8, 6, heads(HeadAxis::Output, 2, 4), Kind::Double);
    ArdLora::attach(&mut lin, &cfg()).unwrap();
    randomize(ard(&lin).b(), 0.5);
    ard_mut(&mut lin).set_alpha(&Tensor::from_slice(&[0.55f64, 1.3]));
    let x = Tensor::randn([5, 6], (Kind::Double, Device::Cpu));
    let loss = |lin: &AdaptableLinear| lin.forward(&x, false).square().sum(Kind::Double);
    loss(&lin).backward();
    let g = Vec::<f64>::try_from(ard(&lin).alpha().grad()).unwrap();
    assert!(g.iter().all(|v| v.abs() > 1e-6), "α gets a gradient: {g:?}");
    let eps = 1e-6;
    for u in 0..2 {
        let base = ard(&lin).alpha_values();
        let mut plus = base.clone();
        plus[u] += eps;
        let mut minus = base.clone();
        minus[u] -= eps;
        ard_mut(&mut lin).set_alpha(&Tensor::from_slice(&plus));
        let lp = loss(&lin).double_value(&[]);
        ard_mut(&mut lin).set_alpha(&Tensor::from_slice(&minus));
        let lm = loss(&lin).double_value(&[]);
        ard_mut(&mut lin).set_alpha(&Tensor::from_slice(&base));
        let fd = (lp - lm) / (2.0 * eps);
        assert!(
            (fd - g[u]).abs() < 1e-5 * (1.0 + fd.abs()),
            "unit {u}: autograd {} vs finite difference {fd}",
            g[u]
        );
    }
}

fn stack(n_layers: usize, c: &ArdLoraConfig) -> Vec<AdaptableLinear> {
    let mut v = Vec::new();
    for l in 0..n_layers {
        for (kind, axis) in [("q_proj", HeadAxis::Output), ("o_proj", HeadAxis::Input)] {
            let mut lin = linear(
                &format!("model.layers.{l}.self_attn.{kind}"),
                8,
                8,
                heads(axis, 2, 4),
                Kind::Float,
            );
            ArdLora::attach(&mut lin, c).unwrap();
            v.push(lin);
        }
    }
    v
}

fn alpha_opt(lins: &[AdaptableLinear], lr: f64) -> AdamW {
    let alphas: Vec<(String, Tensor)> = lins
        .iter()
        .flat_map(|l| l.trainable())
        .filter(|(_, _, r)| *r == ParamRole::Alpha)
        .map(|(n, t, _)| (n, t))
        .collect();
    AdamW::new(
        "alpha_opt",
        AdamWConfig::default(),
        vec![ParamGroup::new("alpha", lr, 0.0, alphas)],
    )
}

#[test]
fn l1_pushes_alpha_down() {
    let c = ArdLoraConfig {
        gamma: 0.0,
        ..cfg()
    };
    let mut lins = stack(3, &c);
    let mut opt = alpha_opt(&lins, 0.05);
    let refs: Vec<&ArdLora> = lins.iter().map(ard).collect();
    let reg = ArdRegulariser::new(&refs, &c).unwrap();
    let before: Vec<f64> = refs.iter().flat_map(|a| a.alpha_values()).collect();
    for _ in 0..5 {
        opt.zero_grad();
        let refs: Vec<&ArdLora> = lins.iter().map(ard).collect();
        reg.total(&refs).unwrap().backward();
        opt.step();
        lins.iter_mut().for_each(|l| ard_mut(l).project_alpha());
    }
    let after: Vec<f64> = lins.iter().flat_map(|l| ard(l).alpha_values()).collect();
    for (b, a) in before.iter().zip(&after) {
        assert!(a < &(b - 0.2), "α fell from {b} to {a}");
    }
}

#[test]
fn tv_smooths_alpha_across_depth() {
    let c = ArdLoraConfig {
        beta: 0.0,
        gamma: 1.0,
        ..cfg()
    };
    let mut lins = stack(4, &c);
    // Jagged α across depth: 0.5, 1.5, 0.5, 1.5 for every module kind and head.
    for l in lins.iter_mut() {
        let layer = ard(l).units()[0].layer.unwrap();
        let v = if layer.is_multiple_of(2) { 0.5f32 } else { 1.5 };
        ard_mut(l).set_alpha(&Tensor::from_slice(&[v, v]));
    }
    let mut opt = alpha_opt(&lins, 0.05);
    let refs: Vec<&ArdLora> = lins.iter().map(ard).collect();
    let reg = ArdRegulariser::new(&refs, &c).unwrap();
    let tv0 = reg.terms(&refs).unwrap().tv.double_value(&[]);
    // 2 kinds × 2 heads × 3 neighbour pairs × |1.5 − 0.5|.
    assert!((tv0 - 12.0).abs() < 1e-5, "{tv0}");
    for _ in 0..5 {
        opt.zero_grad();
        let refs: Vec<&ArdLora> = lins.iter().map(ard).collect();
        reg.total(&refs).unwrap().backward();
        opt.step();
    }
    let refs: Vec<&ArdLora> = lins.iter().map(ard).collect();
    let tv1 = reg.terms(&refs).unwrap().tv.double_value(&[]);
    assert!(tv1 < tv0 * 0.7, "TV fell from {tv0} to {tv1}");
    // The ℓ1 term counts every unit with cost weight 1 here (all units the same size).
    let l1 = reg.terms(&refs).unwrap().l1.double_value(&[]);
    let sum: f64 = refs.iter().flat_map(|a| a.alpha_values()).sum();
    assert!((l1 - sum).abs() < 1e-4);
}

#[test]
fn cost_weights_are_normalised_and_time_tv_tracks_an_ema() {
    let c = ArdLoraConfig {
        tv: TvMode::Time,
        tv_ema_decay: 0.5,
        ..cfg()
    };
    let mut a = linear(
        "enc.layer.0.query",
        8,
        8,
        heads(HeadAxis::Output, 2, 4),
        Kind::Float,
    );
    let mut b = linear(
        "enc.layer.0.ffn",
        16,
        8,
        HeadLayout::headless(16),
        Kind::Float,
    );
    ArdLora::attach(&mut a, &c).unwrap();
    ArdLora::attach(&mut b, &c).unwrap();
    let mut reg = ArdRegulariser::new(&[ard(&a), ard(&b)], &c).unwrap();
    // Units: 2 × (8 + 4) and 1 × (8 + 16); mean 16 → weights 0.75, 0.75, 1.5; α = 1.
    let t = reg.terms(&[ard(&a), ard(&b)]).unwrap();
    assert!((t.l1.double_value(&[]) - 3.0).abs() < 1e-6);
    assert!(t.tv.double_value(&[]).abs() < 1e-9, "EMA starts at α");
    ard_mut(&mut a).set_alpha(&Tensor::from_slice(&[2.0f32, 2.0]));
    let tv = reg.terms(&[ard(&a), ard(&b)]).unwrap().tv.double_value(&[]);
    assert!((tv - 2.0).abs() < 1e-6, "{tv}");
    reg.update_ema(&[ard(&a), ard(&b)]).unwrap();
    let tv = reg.terms(&[ard(&a), ard(&b)]).unwrap().tv.double_value(&[]);
    assert!((tv - 1.0).abs() < 1e-6, "EMA moved half-way: {tv}");
    // Its state survives a checkpoint.
    let saved = reg.state_tensors();
    let mut reg2 = ArdRegulariser::new(&[ard(&a), ard(&b)], &c).unwrap();
    reg2.load_state(&saved).unwrap();
    let tv2 = reg2
        .terms(&[ard(&a), ard(&b)])
        .unwrap()
        .tv
        .double_value(&[]);
    assert!((tv2 - 1.0).abs() < 1e-6);
    // A regulariser built for other modules refuses.
    assert!(reg.terms(&[ard(&b), ard(&a)]).is_err());
}

#[test]
fn compaction_keeps_the_output_and_shrinks_parameters_and_optimizer_state() {
    tch::manual_seed(4);
    let c = ArdLoraConfig {
        r0: 4,
        alpha_max: 4.0,
        compaction_margin: 1,
        ..Default::default()
    };
    let mut lins = stack(2, &c);
    for l in lins.iter_mut() {
        let a = ard_mut(l);
        randomize(a.b(), 0.3);
        a.set_alpha(&Tensor::from_slice(&[0.6f32, 0.3]));
    }
    let params: Vec<(String, Tensor)> = lins
        .iter()
        .flat_map(|l| l.trainable())
        .filter(|(_, _, r)| *r == ParamRole::Weight)
        .map(|(n, t, _)| (n, t))
        .collect();
    let mut opt = AdamW::new(
        "w",
        AdamWConfig::default(),
        vec![ParamGroup::new("weights", 1e-3, 0.01, params)],
    );
    let x = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
    // One step so AdamW has moments to slice.
    let loss: Tensor = lins
        .iter()
        .map(|l| l.forward(&x, true).square().sum(Kind::Float))
        .sum();
    loss.backward();
    opt.step();
    let before: Vec<Tensor> = lins.iter().map(|l| l.forward(&x, false)).collect();
    let name = "model.layers.0.self_attn.q_proj.lora_A";
    let m_before = opt.moments(name).unwrap().0.copy();
    let report = compact_linears(lins.iter_mut(), &mut opt).unwrap();
    assert_eq!(report.modules_resized, 4);
    // r_max 16 → live rows ceil(4·0.6) = 3 (+1 margin) = 4.
    assert!(report.params_after * 3 < report.params_before, "{report:?}");
    for (l, y0) in lins.iter().zip(&before) {
        assert!(max_abs_diff(&l.forward(&x, false), y0) < 1e-6, "{}", l.path);
        let a = ard(l);
        assert_eq!(a.allocated_rank(), 4);
        assert_eq!(a.capacities(), &[4, 3]);
    }
    let (m, v) = opt.moments(name).unwrap();
    assert_eq!(m.size(), vec![2, 4, 8]);
    assert_eq!(v.size(), vec![2, 4, 8]);
    assert!(
        max_abs_diff(&m.get(0), &m_before.get(0).narrow(0, 0, 4)) < 1e-12,
        "moments moved with their rows"
    );
    assert_eq!(
        m.get(1)
            .narrow(0, 3, 1)
            .abs()
            .sum(Kind::Float)
            .double_value(&[]),
        0.0
    );
    // Training continues on the new tensors: the optimiser holds them.
    opt.zero_grad();
    let loss: Tensor = lins
        .iter()
        .map(|l| l.forward(&x, true).square().sum(Kind::Float))
        .sum();
    loss.backward();
    opt.step();
    assert_eq!(opt.param_step(name), 2);
    // α can no longer outgrow its compacted capacity.
    let a = ard_mut(&mut lins[0]);
    a.set_alpha(&Tensor::from_slice(&[4.0f32, 4.0]));
    assert_eq!(a.alpha_values(), vec![1.0, 0.75]);
    // A second pass with nothing to shrink changes nothing.
    let report = compact_linears(lins.iter_mut(), &mut opt).unwrap();
    assert_eq!(report.params_before, report.params_after);
}

#[test]
fn export_fold_reproduces_delta_w_exactly() {
    tch::manual_seed(5);
    for (path, d_out, d_in, h) in layouts() {
        let mut lin = linear(path, d_out, d_in, h, Kind::Double);
        ArdLora::attach(&mut lin, &ArdLoraConfig { groups: 1, ..cfg() }).unwrap();
        let a = ard_mut(&mut lin);
        randomize(a.b(), 0.3);
        let n = a.n_units() as i64;
        a.set_alpha(&Tensor::linspace(0.0, 1.6, n, (Kind::Double, Device::Cpu)));
        let live = ard(&lin).live_rows();
        let m = lin
            .adapter
            .as_ref()
            .unwrap()
            .peft_export(&lin.base)
            .unwrap();
        assert_eq!(m.r as i64, live.iter().sum::<i64>().max(1));
        let t = |name: &str| {
            m.tensors
                .iter()
                .find(|(n, _)| n == name)
                .unwrap()
                .1
                .shallow_clone()
        };
        let (pa, pb) = (t("lora_A.weight"), t("lora_B.weight"));
        assert_eq!(pa.size(), vec![m.r as i64, d_in]);
        assert_eq!(pb.size(), vec![d_out, m.r as i64]);
        let dw = lin.adapter.as_ref().unwrap().delta_weight(&lin.base);
        let folded = pb.matmul(&pa) * (m.lora_alpha / m.r as f64);
        assert!(max_abs_diff(&folded, &dw) < 1e-12, "{path}");
    }
}

#[test]
fn merge_and_unmerge_round_trip() {
    tch::manual_seed(6);
    let mut lin = linear(
        "model.layers.2.self_attn.o_proj",
        10,
        12,
        heads(HeadAxis::Input, 3, 4),
        Kind::Float,
    );
    let w0 = lin.base.weight.copy();
    ArdLora::attach(&mut lin, &cfg()).unwrap();
    randomize(ard(&lin).b(), 0.3);
    let x = Tensor::randn([4, 12], (Kind::Float, Device::Cpu));
    let adapted = lin.forward(&x, false);
    lin.merge().unwrap();
    assert!(lin.adapter.as_ref().unwrap().is_merged());
    assert!(max_abs_diff(&lin.forward(&x, false), &adapted) < 1e-5);
    lin.unmerge().unwrap();
    assert!(max_abs_diff(&lin.base.weight, &w0) < 1e-6);
    assert!(max_abs_diff(&lin.forward(&x, false), &adapted) < 1e-5);
}

#[test]
fn telemetry_names_module_layer_head() {
    let mut lin = linear(
        "model.layers.7.self_attn.v_proj",
        8,
        6,
        heads(HeadAxis::Output, 2, 4),
        Kind::Float,
    );
    ArdLora::attach(&mut lin, &cfg()).unwrap();
    ard_mut(&mut lin).set_alpha(&Tensor::from_slice(&[0.5f32, 1.25]));
    let t = ard(&lin).telemetry();
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].module, "model.layers.7.self_attn.v_proj");
    assert_eq!(t[1].kind, "model.layers.*.self_attn.v_proj");
    assert_eq!(
        (t[1].layer, t[1].head, t[1].effective_rank, t[1].capacity),
        (Some(7), 1, 5, 8)
    );
    assert_eq!(
        layer_and_kind("encoder.layer.11.attention.self.query"),
        (Some(11), "encoder.layer.*.attention.self.query".into())
    );
    assert_eq!(layer_and_kind("classifier"), (None, "classifier".into()));
    // Parameter counts: allocated (2 units × 8 rows × (6 + 4)) + 2 α; exported: the live rows
    // 2 and 5 of (6 + 4) parameters each, α folded away.
    assert_eq!(ard(&lin).param_count_allocated(), 162);
    assert_eq!(ard(&lin).param_count_exported(), 7 * 10);
    assert_eq!(ard(&lin).exported_parameters(), 7 * 10);
    // A unit at α = 0 exports nothing (its effective rank still reads 1, the paper's max(1, ·));
    // a fractional α exports its partial row: r0·α = 1.2 is 2 live rows.
    ard_mut(&mut lin).set_alpha(&Tensor::from_slice(&[0.0f32, 0.3]));
    assert_eq!(ard(&lin).effective_ranks(), vec![1, 1]);
    assert_eq!(ard(&lin).param_count_exported(), 2 * 10);
}

#[test]
fn bad_layouts_and_settings_are_errors_not_panics() {
    let mut lin = linear("x.0.q", 12, 10, heads(HeadAxis::Output, 5, 4), Kind::Float);
    let e = ArdLora::attach(&mut lin, &cfg()).unwrap_err().to_string();
    assert!(e.contains("x.0.q") && e.contains("5 heads"), "{e}");
    let mut lin = linear("x.0.up", 12, 10, HeadLayout::headless(12), Kind::Float);
    let e = ArdLora::attach(&mut lin, &ArdLoraConfig { groups: 5, ..cfg() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("groups = 5"), "{e}");
    let e = ArdLora::attach(
        &mut lin,
        &ArdLoraConfig {
            alpha_min: 3.0,
            alpha_max: 2.0,
            ..cfg()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("alpha_min"), "{e}");
    let e = ArdLora::attach(&mut lin, &ArdLoraConfig { r0: 0, ..cfg() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("r0"), "{e}");
}

#[test]
fn checkpoint_state_restores_a_compacted_adapter() {
    tch::manual_seed(7);
    let c = ArdLoraConfig {
        r0: 4,
        alpha_max: 4.0,
        ..Default::default()
    };
    let mut lin = linear(
        "model.layers.1.self_attn.q_proj",
        8,
        8,
        heads(HeadAxis::Output, 2, 4),
        Kind::Float,
    );
    ArdLora::attach(&mut lin, &c).unwrap();
    randomize(ard(&lin).b(), 0.3);
    ard_mut(&mut lin).set_alpha(&Tensor::from_slice(&[0.6f32, 1.1]));
    ard_mut(&mut lin).compact();
    let saved: Vec<(String, Tensor)> = lin
        .state_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    assert!(
        saved
            .iter()
            .any(|(n, _)| n == "model.layers.1.self_attn.q_proj.capacity")
    );
    let x = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
    let want = lin.forward(&x, false);
    // A fresh adapter on the same base (as a resumed run builds it) takes the compacted shapes.
    let mut fresh = AdaptableLinear::new(
        lin.path.clone(),
        lin.base.weight.copy(),
        lin.base.bias.as_ref().map(Tensor::copy),
        lin.heads,
    );
    ArdLora::attach(&mut fresh, &c).unwrap();
    fresh.load_state_tensors(&saved).unwrap();
    assert_eq!(ard(&fresh).allocated_rank(), ard(&lin).allocated_rank());
    assert_eq!(ard(&fresh).capacities(), ard(&lin).capacities());
    assert!(max_abs_diff(&fresh.forward(&x, false), &want) < 1e-7);
    assert!(ard(&fresh).a().requires_grad());
    // A checkpoint of another configuration is refused with the module's name.
    let mut other = AdaptableLinear::new(
        lin.path.clone(),
        lin.base.weight.copy(),
        None,
        heads(HeadAxis::Output, 4, 2),
    );
    ArdLora::attach(&mut other, &c).unwrap();
    let e = other.load_state_tensors(&saved).unwrap_err().to_string();
    assert!(
        e.contains("q_proj") && e.contains("configuration changed"),
        "{e}"
    );
}
