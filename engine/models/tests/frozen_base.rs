//! The cheaper frozen bases through a whole decoder: weights quantised at load (int8, int4)
//! train the adapters as the dequantised dense weights do, and layer checkpointing gives the
//! gradients of the plain backward pass — in f32 and under bf16 autocast with a bf16 base.

mod support;

use ardpipe_adapters::ops::QuantScheme;
use ardpipe_models::arch::{Llama, LlamaConfig};
use ardpipe_models::precision::autocast;
use ardpipe_models::{Precision, StorageDtype};
use tch::{Device, Kind, Reduction, Tensor};

const VOCAB: i64 = 61;

fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: VOCAB as usize,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 3,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 64,
        tie_word_embeddings: true,
        ..Default::default()
    }
}

/// The tiny Llama, stored as `precision` says and quantised by `scheme`, with LoRA (r = 2) on
/// every linear (support/mod.rs).
fn tiny_llama(precision: Precision, scheme: Option<QuantScheme>) -> ardpipe_models::Result<Llama> {
    support::lora_llama(config(), 40, precision, scheme)
}

/// A padded batch: ids, mask (the second row's last three tokens are padding) and labels.
fn batch() -> (Tensor, Tensor, Tensor) {
    let ids: Vec<i64> = (0..2 * 9).map(|i| (i * 7 + 3) % VOCAB).collect();
    let ids = Tensor::from_slice(&ids).view([2, 9]);
    let mask = Tensor::ones([2, 9], (Kind::Int64, Device::Cpu));
    let _ = mask.narrow(1, 6, 3).get(1).fill_(0);
    let labels = ids.roll([-1], [1]).masked_fill(&mask.eq(0), -100);
    (ids, mask, labels)
}

/// Loss of one training forward pass, backpropagated; the loss and every adapter gradient.
fn train_step(model: &Llama) -> (Tensor, Vec<Tensor>) {
    let (ids, mask, labels) = batch();
    let loss = {
        let _ac = autocast(Device::Cpu, model.precision.autocast);
        let logits = model.forward(&ids, Some(&mask), true).unwrap();
        logits.view([-1, VOCAB]).cross_entropy_loss::<Tensor>(
            &labels.view([-1]),
            None,
            Reduction::Mean,
            -100,
            0.0,
        )
    };
    loss.backward();
    let grads = model
        .linears()
        .iter()
        .flat_map(|l| l.trainable())
        .map(|(_, p, _)| p.grad().copy())
        .collect();
    (loss.detach(), grads)
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    (&a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-30)
}

fn worst(a: &[Tensor], b: &[Tensor]) -> f64 {
    assert_eq!(a.len(), b.len());
    assert!(b.iter().all(|t| t.abs().max().double_value(&[]) > 0.0));
    a.iter().zip(b).map(|(x, y)| rel(x, y)).fold(0.0, f64::max)
}

const BF16: Precision = Precision {
    storage: StorageDtype::Bf16,
    autocast: Some(StorageDtype::Bf16),
};

#[test]
fn a_quantised_base_trains_as_its_dequantised_weights_do() {
    for scheme in [QuantScheme::Int8, QuantScheme::Int4 { group: 32 }] {
        for precision in [Precision::F32, BF16] {
            let quantised = tiny_llama(precision, Some(scheme)).unwrap();
            // The reference: dense weights holding exactly the dequantised values.
            let mut dense = tiny_llama(precision, None).unwrap();
            for (d, q) in dense.linears_mut().into_iter().zip(quantised.linears()) {
                assert!(q.base.quantized.is_some(), "{}", q.path);
                d.base.weight = q.base.dense_weight();
            }
            let (lq, gq) = train_step(&quantised);
            let (ld, gd) = train_step(&dense);
            let tol = if precision == BF16 { 1e-3 } else { 1e-5 };
            assert!(
                rel(&lq, &ld) < tol,
                "{scheme:?} {precision:?}: {lq:?} vs {ld:?}"
            );
            let w = worst(&gq, &gd);
            assert!(
                w < tol,
                "{scheme:?} {precision:?}: gradients differ by {w:e}"
            );
            // Quantising changed the model: the original weights give another loss.
            let (lo, _) = train_step(&tiny_llama(precision, None).unwrap());
            assert!(rel(&lo, &ld) > 1e-5, "{scheme:?} {precision:?}");
        }
    }
}

#[test]
fn int4_groups_that_do_not_divide_a_width_are_refused_with_the_module() {
    let e = tiny_llama(Precision::F32, Some(QuantScheme::Int4 { group: 64 }))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("model.layers.0.self_attn.q_proj")
            && e.contains("32 input columns")
            && e.contains("quantize_group"),
        "{e}"
    );
}

#[test]
fn checkpointed_layers_give_the_plain_gradients() {
    for (precision, scheme) in [
        (Precision::F32, None),
        (BF16, None),
        (Precision::F32, Some(QuantScheme::Int8)),
        (BF16, Some(QuantScheme::Int4 { group: 32 })),
    ] {
        let plain = tiny_llama(precision, scheme).unwrap();
        let mut ckpt = tiny_llama(precision, scheme).unwrap();
        ckpt.checkpointing = true;
        let (lp, gp) = train_step(&plain);
        let (lc, gc) = train_step(&ckpt);
        // The recomputation repeats the same kernels on the same inputs.
        assert!(rel(&lc, &lp) < 1e-6, "{precision:?} {scheme:?}");
        let w = worst(&gc, &gp);
        assert!(
            w < 1e-5,
            "{precision:?} {scheme:?}: gradients differ by {w:e}"
        );
    }
}

#[test]
fn evaluation_ignores_checkpointing() {
    let mut model = tiny_llama(Precision::F32, None).unwrap();
    let (ids, mask, _) = batch();
    let plain = tch::no_grad(|| model.forward(&ids, Some(&mask), false).unwrap());
    model.checkpointing = true;
    let again = tch::no_grad(|| model.forward(&ids, Some(&mask), false).unwrap());
    assert!(rel(&again, &plain) == 0.0);
}
