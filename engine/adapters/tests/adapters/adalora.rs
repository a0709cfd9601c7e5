use ardpipe_adapters::adalora::{AdaLora, RankAllocator, orth_regulariser};
use ardpipe_adapters::peft::{PeftType, assemble};
use ardpipe_adapters::{AdaLoraConfig, AdaptableLinear, HeadLayout};
use tch::{Device, Kind, Tensor};

use crate::common::{linear, max_abs_diff, randomize};

fn cfg() -> AdaLoraConfig {
    AdaLoraConfig {
        init_r: 4,
        target_r: 2,
        lora_alpha: 8.0,
        tinit: Some(2),
        tfinal: Some(3),
        delta_t: Some(1),
        ..Default::default()
    }
}

fn modules(n: usize) -> Vec<AdaptableLinear> {
    (0..n)
        .map(|i| {
            let mut lin = linear(
                &format!("model.layers.{i}.self_attn.q_proj"),
                8,
                6,
                HeadLayout::headless(8),
                Kind::Float,
            );
            AdaLora::attach(&mut lin, &cfg()).unwrap();
            lin
        })
        .collect()
}

fn ada(l: &AdaptableLinear) -> &AdaLora {
    l.adapter.as_ref().unwrap().as_adalora().unwrap()
}

#[test]
fn adalora_is_base_at_init_and_merges() {
    tch::manual_seed(30);
    let mut lins = modules(1);
    let x = Tensor::randn([3, 6], (Kind::Float, Device::Cpu));
    assert!(
        max_abs_diff(&lins[0].forward(&x, false), &lins[0].base.forward(&x)) < 1e-7,
        "E = 0 at init"
    );
    let tr = lins[0].adapter.as_ref().unwrap().trainable();
    randomize(&tr[1].1, 1.0);
    let (a, e, b) = (&tr[0].1, &tr[1].1, &tr[2].1);
    // PEFT: (x (A⊙E)ᵀ Bᵀ) · lora_alpha / (ranknum + 1e-5), ranknum = init_r.
    let want =
        lins[0].base.forward(&x) + x.matmul(&(a * e).tr()).matmul(&b.tr()) * (8.0 / (4.0 + 1e-5));
    let y = lins[0].forward(&x, false);
    assert!(max_abs_diff(&y, &want) < 1e-6);
    lins[0].merge().unwrap();
    assert!(max_abs_diff(&lins[0].forward(&x, false), &y) < 1e-5);
    lins[0].unmerge().unwrap();
    assert!(max_abs_diff(&lins[0].forward(&x, false), &y) < 1e-5);
}

#[test]
fn orthogonality_regulariser_is_zero_for_orthonormal_factors() {
    tch::manual_seed(31);
    let lins = modules(2);
    let refs: Vec<&AdaLora> = lins.iter().map(ada).collect();
    let r = orth_regulariser(&refs, 0.5).unwrap();
    assert!(
        r.double_value(&[]) > 0.5,
        "random N(0, 0.02) factors are far from orthonormal"
    );
    r.backward();
    assert!(
        lins[0].adapter.as_ref().unwrap().trainable()[0]
            .1
            .grad()
            .abs()
            .sum(Kind::Float)
            .double_value(&[])
            > 0.0
    );
    // Orthonormal A rows and B columns: the penalty vanishes.
    let tr = lins[0].adapter.as_ref().unwrap().trainable();
    tch::no_grad(|| {
        let q = Tensor::eye(6, (Kind::Float, Device::Cpu)).narrow(0, 0, 4);
        tr[0].1.shallow_clone().copy_(&q);
        tr[2]
            .1
            .shallow_clone()
            .copy_(&Tensor::eye(8, (Kind::Float, Device::Cpu)).narrow(1, 0, 4));
    });
    assert!(ada(&lins[0]).orth_penalty().double_value(&[]) < 1e-6);
}

#[test]
fn budget_schedule_is_cubic_between_tinit_and_tfinal() {
    let lins = modules(3);
    let refs: Vec<&AdaLora> = lins.iter().map(ada).collect();
    let alloc = RankAllocator::new(&cfg(), &refs, 12).unwrap();
    // init budget 3 × 4 = 12, target 3 × 2 = 6; decay over steps 2..9.
    assert_eq!(alloc.budget(0), (12, false));
    assert_eq!(alloc.budget(2), (12, false));
    let mul: f64 = 1.0 - 3.0 / 7.0;
    assert_eq!(alloc.budget(5).0, (6.0 * mul.powi(3) + 6.0) as usize);
    assert_eq!(alloc.budget(10), (6, true));
    // Derived from the total steps when unset.
    let s = AdaLoraConfig::default().schedule(1000).unwrap();
    assert_eq!((s.tinit, s.tfinal, s.delta_t), (100, 200, 10));
    let e = AdaLoraConfig {
        tinit: Some(5),
        tfinal: Some(5),
        ..Default::default()
    }
    .schedule(8)
    .unwrap_err()
    .to_string();
    assert!(e.contains("tinit"), "{e}");
}

#[test]
fn allocator_masks_least_important_triplets_and_exports_the_kept_ones() {
    tch::manual_seed(32);
    let mut lins = modules(3);
    let total = 12;
    let refs: Vec<&AdaLora> = lins.iter().map(ada).collect();
    let mut alloc = RankAllocator::new(&cfg(), &refs, total).unwrap();
    let x = Tensor::randn([16, 6], (Kind::Float, Device::Cpu));
    let mut last_budget = None;
    for step in 1..=total {
        let loss: Tensor = lins
            .iter()
            .map(|l| l.forward(&x, true).square().sum(Kind::Float))
            .sum();
        loss.backward();
        // A crude SGD step so E leaves zero and importances differ.
        tch::no_grad(|| {
            for l in &lins {
                for (_, p) in l.adapter.as_ref().unwrap().trainable() {
                    let g = p.grad();
                    let _ = p.shallow_clone().g_add_(&(g * -0.01));
                }
            }
        });
        let mut ms: Vec<&mut AdaLora> = lins
            .iter_mut()
            .map(|l| l.adapter.as_mut().unwrap().as_adalora_mut().unwrap())
            .collect();
        if let Some(b) = alloc.update_and_allocate(&mut ms, step).unwrap() {
            last_budget = Some(b);
            let kept: usize = ms.iter().map(|m| m.rank()).sum();
            assert_eq!(kept, b, "step {step}: kept triplets = budget");
        }
        for l in &mut lins {
            for (_, mut p) in l.adapter.as_ref().unwrap().trainable() {
                p.zero_grad();
            }
        }
    }
    assert_eq!(last_budget, Some(6));
    // Masked E entries are exactly zero and stay zero in the final phase.
    for l in &lins {
        let a = ada(l);
        let keep = a.keep().unwrap();
        let e =
            Vec::<f32>::try_from(&l.adapter.as_ref().unwrap().trainable()[1].1.view([-1])).unwrap();
        for (k, v) in keep.iter().zip(&e) {
            if !k {
                assert_eq!(*v, 0.0);
            }
        }
    }
    // Export: tensors sliced to the kept triplets, rank_pattern keyed `<module>.lora_E`.
    let mods: Vec<_> = lins
        .iter()
        .map(|l| l.adapter.as_ref().unwrap().peft_export(&l.base).unwrap())
        .collect();
    let kept0 = ada(&lins[0]).rank() as i64;
    assert_eq!(mods[0].tensors[0].1.size(), vec![kept0, 6]);
    assert_eq!(mods[0].tensors[1].1.size(), vec![8, kept0]);
    assert_eq!(mods[0].tensors[2].1.size(), vec![kept0, 1]);
    let (cfgj, tensors) = assemble(PeftType::AdaLora, &mods, "", 0.0, false);
    assert!(tensors[0].0.ends_with("q_proj.lora_A"));
    let pat = &cfgj.rank_pattern["model.layers.0.self_attn.q_proj.lora_E"];
    assert_eq!(pat.as_array().unwrap().len(), 4);
    // The exported (sliced) adapter gives the same ΔW as the masked full one.
    let m = &mods[0];
    let dw = m.tensors[1].1.matmul(&(&m.tensors[0].1 * &m.tensors[2].1)) * (8.0 / (4.0 + 1e-5));
    assert!(
        max_abs_diff(
            &dw,
            &lins[0]
                .adapter
                .as_ref()
                .unwrap()
                .delta_weight(&lins[0].base)
        ) < 1e-6
    );
}

#[test]
fn allocator_state_round_trips_and_needs_gradients() {
    tch::manual_seed(33);
    let mut lins = modules(2);
    let refs: Vec<&AdaLora> = lins.iter().map(ada).collect();
    let mut alloc = RankAllocator::new(&cfg(), &refs, 12).unwrap();
    let mut ms: Vec<&mut AdaLora> = lins
        .iter_mut()
        .map(|l| l.adapter.as_mut().unwrap().as_adalora_mut().unwrap())
        .collect();
    let e = alloc
        .update_and_allocate(&mut ms, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("after backward"), "{e}");
    let x = Tensor::randn([4, 6], (Kind::Float, Device::Cpu));
    let loss: Tensor = lins
        .iter()
        .map(|l| l.forward(&x, true).square().sum(Kind::Float))
        .sum();
    loss.backward();
    let mut ms: Vec<&mut AdaLora> = lins
        .iter_mut()
        .map(|l| l.adapter.as_mut().unwrap().as_adalora_mut().unwrap())
        .collect();
    alloc.update_and_allocate(&mut ms, 1).unwrap();
    let tensors = alloc.state_tensors();
    assert_eq!(tensors.len(), 2 * 3 * 2);
    let state = serde_json::to_string(alloc.state()).unwrap();
    let refs: Vec<&AdaLora> = lins.iter().map(ada).collect();
    let mut restored = RankAllocator::new(&cfg(), &refs, 12).unwrap();
    restored
        .load_state(serde_json::from_str(&state).unwrap(), &tensors)
        .unwrap();
    assert_eq!(restored.state(), alloc.state());
    assert_eq!(restored.state_tensors().len(), tensors.len());
}
