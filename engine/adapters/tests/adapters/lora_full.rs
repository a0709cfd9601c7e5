use ardpipe_adapters::full::Full;
use ardpipe_adapters::lora::Lora;
use ardpipe_adapters::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup};
use ardpipe_adapters::peft::{PeftType, assemble};
use ardpipe_adapters::{AdaptableLinear, FullConfig, HeadLayout, LoraConfig, MethodConfig, attach};
use tch::{Device, Kind, Tensor};

use crate::common::{linear, max_abs_diff, randomize};

#[test]
fn lora_is_base_at_init_with_peft_init_and_scale() {
    tch::manual_seed(10);
    let mut lin = linear(
        "enc.layer.0.query",
        16,
        64,
        HeadLayout::headless(16),
        Kind::Float,
    );
    let cfg = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        dropout: 0.1,
    };
    attach(&mut lin, &MethodConfig::Lora(cfg)).unwrap();
    let x = Tensor::randn([2, 3, 64], (Kind::Float, Device::Cpu));
    // Dropout is on, but B = 0: the output is the base output even in training mode.
    assert!(max_abs_diff(&lin.forward(&x, true), &lin.base.forward(&x)) < 1e-6);
    let tr = lin.adapter.as_ref().unwrap().trainable();
    let a = &tr[0].1;
    // Kaiming-uniform(a = √5): U(−1/√fan_in, 1/√fan_in) = U(−0.125, 0.125).
    let amax = a.abs().max().double_value(&[]);
    assert!(amax <= 0.125 && amax > 0.1, "{amax}");
    assert_eq!(tr[1].1.abs().sum(Kind::Float).double_value(&[]), 0.0);
    // ΔW = (lora_alpha / r) · B A.
    randomize(&tr[1].1, 0.1);
    let dw = lin.adapter.as_ref().unwrap().delta_weight(&lin.base);
    assert!(max_abs_diff(&dw, &(tr[1].1.matmul(a) * 2.0)) < 1e-6);
    let y = lin.forward(&x, false);
    assert!(max_abs_diff(&y, &(lin.base.forward(&x) + x.matmul(&dw.tr()))) < 1e-5);
}

#[test]
fn lora_merge_unmerge_and_peft_export() {
    tch::manual_seed(11);
    let mut lin = linear(
        "encoder.layer.1.attention.self.value",
        8,
        8,
        HeadLayout::headless(8),
        Kind::Float,
    );
    let w0 = lin.base.weight.copy();
    Lora::attach(
        &mut lin,
        &LoraConfig {
            r: 2,
            lora_alpha: 4.0,
            dropout: 0.0,
        },
    )
    .unwrap();
    let tr = lin.adapter.as_ref().unwrap().trainable();
    randomize(&tr[1].1, 0.2);
    let x = Tensor::randn([5, 8], (Kind::Float, Device::Cpu));
    let adapted = lin.forward(&x, false);
    lin.merge().unwrap();
    assert!(max_abs_diff(&lin.forward(&x, false), &adapted) < 1e-5);
    assert!(
        max_abs_diff(&lin.base.weight, &w0) > 1e-3,
        "the weight really changed"
    );
    lin.unmerge().unwrap();
    assert!(max_abs_diff(&lin.base.weight, &w0) < 1e-6);

    let m = lin
        .adapter
        .as_ref()
        .unwrap()
        .peft_export(&lin.base)
        .unwrap();
    let (cfg, tensors) = assemble(PeftType::Lora, &[m], "bert.", 0.0, false);
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "base_model.model.bert.encoder.layer.1.attention.self.value.lora_A.weight",
            "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"
        ]
    );
    assert_eq!((cfg.r, cfg.lora_alpha), (2, 4.0));
    assert!(cfg.rank_pattern.is_empty() && cfg.alpha_pattern.is_empty());
    let json = serde_json::to_value(&cfg).unwrap();
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(
        json["target_modules"][0],
        "bert.encoder.layer.1.attention.self.value"
    );
}

#[test]
fn peft_config_puts_uncommon_ranks_and_alphas_in_patterns() {
    tch::manual_seed(12);
    let mut mods = Vec::new();
    for (i, r) in [4usize, 4, 6].iter().enumerate() {
        let mut lin = linear(
            &format!("l.{i}.q"),
            8,
            8,
            HeadLayout::headless(8),
            Kind::Float,
        );
        Lora::attach(
            &mut lin,
            &LoraConfig {
                r: *r,
                lora_alpha: *r as f64,
                dropout: 0.0,
            },
        )
        .unwrap();
        mods.push(
            lin.adapter
                .as_ref()
                .unwrap()
                .peft_export(&lin.base)
                .unwrap(),
        );
    }
    let (cfg, _) = assemble(PeftType::Lora, &mods, "", 0.0, false);
    assert_eq!((cfg.r, cfg.lora_alpha), (4, 4.0));
    assert_eq!(cfg.rank_pattern.get("l.2.q"), Some(&serde_json::json!(6)));
    assert_eq!(cfg.alpha_pattern.get("l.2.q"), Some(&6.0));
    assert_eq!(cfg.rank_pattern.len(), 1);
}

#[test]
fn full_fine_tuning_trains_an_owned_copy_of_the_base_weight() {
    tch::manual_seed(13);
    let mut lin = linear(
        "enc.layer.0.dense",
        6,
        4,
        HeadLayout::headless(6),
        Kind::Float,
    );
    let original = lin.base.weight.shallow_clone();
    let snapshot = original.copy();
    Full::attach(&mut lin, &FullConfig { train_bias: true }).unwrap();
    let tr = lin.trainable();
    assert_eq!(tr.len(), 2);
    assert!(lin.base.weight.requires_grad());
    let mut opt = AdamW::new(
        "w",
        AdamWConfig::default(),
        vec![ParamGroup::new(
            "all",
            0.1,
            0.0,
            tr.into_iter().map(|(n, t, _)| (n, t)).collect(),
        )],
    );
    let x = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    lin.forward(&x, true).sum(Kind::Float).backward();
    opt.step();
    assert!(
        max_abs_diff(&lin.base.weight, &snapshot) > 0.05,
        "the base weight trained"
    );
    assert!(
        max_abs_diff(&original, &snapshot) == 0.0,
        "the loaded tensor itself was not written"
    );
    // Merging a full fine-tune is a no-op; the forward is the base forward.
    lin.merge().unwrap();
    assert!(max_abs_diff(&lin.forward(&x, false), &lin.base.forward(&x)) == 0.0);
}

#[test]
fn adapter_state_round_trips_through_named_tensors() {
    tch::manual_seed(14);
    for method in [
        MethodConfig::Lora(LoraConfig::default()),
        MethodConfig::Dora(LoraConfig::default()),
        MethodConfig::Adalora(ardpipe_adapters::AdaLoraConfig::default()),
    ] {
        let mut lin = linear(
            "enc.layer.0.query",
            8,
            8,
            HeadLayout::headless(8),
            Kind::Float,
        );
        attach(&mut lin, &method).unwrap();
        for (_, t, _) in lin.trainable() {
            randomize(&t, 0.2);
        }
        let x = Tensor::randn([2, 8], (Kind::Float, Device::Cpu));
        let want = lin.forward(&x, false);
        let saved: Vec<(String, Tensor)> = lin
            .state_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.detach().copy()))
            .collect();
        let mut fresh = AdaptableLinear::new(
            lin.path.clone(),
            lin.base.weight.copy(),
            lin.base.bias.as_ref().map(Tensor::copy),
            lin.heads,
        );
        attach(&mut fresh, &method).unwrap();
        fresh.load_state_tensors(&saved).unwrap();
        assert!(
            max_abs_diff(&fresh.forward(&x, false), &want) < 1e-6,
            "{method:?}"
        );
        let e = fresh
            .load_state_tensors(&saved[1..])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing from the checkpoint"), "{e}");
    }
}
