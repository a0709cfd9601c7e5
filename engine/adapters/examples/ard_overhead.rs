//! ARD-LoRA's step cost against plain LoRA on one linear (forward + backward through a frozen
//! base, input gradient included as inside a network), at the benchmark models' shapes.
//!
//!     cargo run --release -p ardpipe-adapters --example ard_overhead [-- THREADS]
//!
//! Variants run interleaved, round after round, and each keeps its fastest round: on a shared
//! machine the minimum is the least disturbed estimate. "Same maximum rank" means the same
//! maximum rank of ΔW: an ARD module of U units with r_max rows each can reach rank U·r_max,
//! the rank of the LoRA it folds into on export.

use std::time::Instant;

use ardpipe_adapters::ard::BlockStrategy;
use ardpipe_adapters::{
    AdaptableLinear, ArdLoraConfig, HeadAxis, HeadLayout, LoraConfig, MethodConfig, attach,
};
use tch::{Device, Kind, Tensor};

fn step_ms(lin: &AdaptableLinear, x: &Tensor) -> f64 {
    let t0 = Instant::now();
    let y = lin.forward(x, true);
    y.square().mean(Kind::Float).backward();
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    for (_, mut p, _) in lin.trainable() {
        p.zero_grad();
    }
    let mut x = x.shallow_clone();
    x.zero_grad();
    ms
}

fn make(d: i64, heads: HeadLayout, method: Option<MethodConfig>) -> AdaptableLinear {
    let mut l = AdaptableLinear::new(
        "l.0.m",
        Tensor::randn([d, d], (Kind::Float, Device::Cpu)) * 0.02,
        None,
        heads,
    );
    if let Some(m) = method {
        attach(&mut l, &m).unwrap();
    }
    l
}

fn set_strategy(l: &mut AdaptableLinear, s: BlockStrategy) -> &mut AdaptableLinear {
    l.adapter
        .as_mut()
        .unwrap()
        .as_ard_mut()
        .unwrap()
        .set_block_strategy(s);
    l
}

fn main() {
    let threads: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let rounds = 12;
    println!(
        "threads: {threads}, rounds: {rounds} (min per variant), times in ms per forward+backward"
    );
    let cases = [
        (
            "MiniLM attention (32×64 tokens)",
            384i64,
            12usize,
            32usize,
            2048i64,
        ),
        ("SmolLM2 attention (4×128 tokens)", 576, 9, 64, 512),
    ];
    for (name, d, h, hd, n) in cases {
        for axis in [HeadAxis::Output, HeadAxis::Input] {
            let layout = HeadLayout {
                axis,
                n_heads: h,
                head_dim: hd,
            };
            let x = Tensor::randn([n, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            for amax in [1.0f64, 4.0] {
                let cfg = ArdLoraConfig {
                    r0: 8,
                    alpha_max: amax,
                    ..Default::default()
                };
                let rmax = cfg.r_max();
                let lora = |r: usize| {
                    Some(MethodConfig::Lora(LoraConfig {
                        r,
                        lora_alpha: 16.0,
                        dropout: 0.0,
                    }))
                };
                let base = make(d, layout, None);
                let lora_same = make(d, layout, lora(rmax * h));
                let lora_unit = make(d, layout, lora(rmax));
                let mut ard_b = make(d, layout, Some(MethodConfig::ArdLora(cfg.clone())));
                set_strategy(&mut ard_b, BlockStrategy::Batched);
                let mut ard_d = make(d, layout, Some(MethodConfig::ArdLora(cfg.clone())));
                set_strategy(&mut ard_d, BlockStrategy::Dense);
                // Compacted: every α at 0.5 (rank 4) → 5 rows per unit with the default margin.
                let mut compacted = Vec::new();
                for s in [BlockStrategy::Batched, BlockStrategy::Dense] {
                    let mut l = make(d, layout, Some(MethodConfig::ArdLora(cfg.clone())));
                    let a = set_strategy(&mut l, s)
                        .adapter
                        .as_mut()
                        .unwrap()
                        .as_ard_mut()
                        .unwrap();
                    a.set_alpha(&Tensor::full([h as i64], 0.5, (Kind::Float, Device::Cpu)));
                    a.compact();
                    compacted.push(l);
                }
                let lora_4 = make(d, layout, lora(4));
                let lora_c = make(d, layout, lora(5 * h));
                let variants: Vec<(&str, &AdaptableLinear)> = vec![
                    ("base", &base),
                    ("lora_same", &lora_same),
                    ("lora_unit", &lora_unit),
                    ("ard_batched", &ard_b),
                    ("ard_dense", &ard_d),
                    ("ardc_batched", &compacted[0]),
                    ("ardc_dense", &compacted[1]),
                    ("lora_r4", &lora_4),
                    ("lora_folded_compact", &lora_c),
                ];
                let mut best = vec![f64::INFINITY; variants.len()];
                for round in 0..rounds + 1 {
                    for (i, (_, l)) in variants.iter().enumerate() {
                        let t = step_ms(l, &x);
                        if round > 0 {
                            best[i] = best[i].min(t);
                        }
                    }
                }
                let t = |k: &str| best[variants.iter().position(|(n, _)| *n == k).unwrap()];
                let ard = t("ard_batched").min(t("ard_dense"));
                let ardc = t("ardc_batched").min(t("ardc_dense"));
                println!(
                    "{name} {axis:?}, α_max {amax} (r_max {rmax}/head, max rank {mr}): base {:.2} | LoRA r{mr} {:.2} | LoRA r{rmax} {:.2} | ARD batched {:.2} dense {:.2} → ×{:.2} of LoRA r{mr} | compacted (5 rows/head) batched {:.2} dense {:.2} → ×{:.2} of LoRA r{mr}, ×{:.2} of LoRA r{} (its folded rank), LoRA r4 {:.2}",
                    t("base"),
                    t("lora_same"),
                    t("lora_unit"),
                    t("ard_batched"),
                    t("ard_dense"),
                    ard / t("lora_same"),
                    t("ardc_batched"),
                    t("ardc_dense"),
                    ardc / t("lora_same"),
                    ardc / t("lora_folded_compact"),
                    5 * h,
                    t("lora_r4"),
                    mr = rmax * h,
                );
            }
        }
    }
}
