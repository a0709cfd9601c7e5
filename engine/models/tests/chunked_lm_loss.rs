//! The fused chunked LM head + cross-entropy (engine/models/src/lm_loss.rs) against the
//! unfused path it replaces in training: `Llama::head` then the trainer's `task_loss`
//! (engine/core/src/train/task.rs: f32 cross-entropy over `[b·t, vocab]`, mean over labels
//! other than −100), on random tensors and through a tiny random Llama with LoRA adapters:
//! the loss, the hidden states' gradient and the adapters' gradients agree, whatever the chunk
//! size, with ignored labels, soft-capping, an untied head, packed rows and bf16 autocast.

mod support;

use ardpipe_models::arch::layers::seeded_normal;
use ardpipe_models::arch::{Llama, LlamaConfig};
use ardpipe_models::lm_loss::{chunk_rows_for, fused_linear_cross_entropy};
use ardpipe_models::precision::autocast;
use ardpipe_models::{Precision, StorageDtype};
use tch::{Device, Kind, Reduction, Tensor};

/// The trainer's `task_loss` for `[b, t, vocab]` logits (engine/core/src/train/task.rs), which
/// this crate cannot import.
fn task_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    let v = logits.size()[2];
    logits
        .to_kind(Kind::Float)
        .view([-1, v])
        .cross_entropy_loss::<Tensor>(&labels.view([-1]), None, Reduction::Mean, -100, 0.0)
}

/// The unfused head of `Llama::head`: linear, to f32, optional `cap·tanh(z/cap)`.
fn head(h: &Tensor, w: &Tensor, cap: Option<f64>) -> Tensor {
    let z = h.linear::<Tensor>(w, None).to_kind(Kind::Float);
    match cap {
        Some(c) => (z / c).tanh() * c,
        None => z,
    }
}

/// max |a − b| / max |b| (b: the unfused reference).
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let scale = b.abs().max().double_value(&[]).max(1e-30);
    (a - b).abs().max().double_value(&[]) / scale
}

/// Zero a leaf's accumulated gradient, if any.
fn zero_grad(t: &Tensor) {
    let mut g = t.grad();
    if g.defined() {
        let _ = g.zero_();
    }
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Token ids in `0..vocab`, the same for the same seed (libtorch's generator is shared by
/// the tests running in parallel: seeded inputs keep every run's figures the same).
fn token_ids(shape: &[i64], vocab: i64, seed: u64) -> Tensor {
    (seeded_normal(shape, 1.0, seed).abs() * 7919.0)
        .to_kind(Kind::Int64)
        .remainder(vocab)
}

/// Labels `[b, t]` in `0..vocab` with a fixed pattern of −100s (a prompt, padding at the end).
fn labels(b: i64, t: i64, vocab: i64) -> Tensor {
    let y = token_ids(&[b, t], vocab, (b * 100 + t) as u64);
    let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let row = Tensor::arange(b, (Kind::Int64, Device::Cpu)).unsqueeze(1);
    // Row r ignores its first r + 1 positions and its last one.
    let ignored = pos.le_tensor(&row).logical_or(&pos.eq(t - 1));
    y.masked_fill(&ignored, -100)
}

/// Leaf hidden states `[b, t, d]` and a head `[vocab, d]` whose logits reach ±10 or so (so a
/// soft-cap of 5 bites).
fn tensors(b: i64, t: i64, d: i64, vocab: i64) -> (Tensor, Tensor) {
    let seed = (((b * 100 + t) * 100 + d) * 1000 + vocab) as u64;
    let h = seeded_normal(&[b, t, d], 1.0, seed).set_requires_grad(true);
    let w = seeded_normal(&[vocab, d], 3.0 / (d as f64).sqrt(), seed + 1);
    (h, w)
}

/// (loss, dL/dh) of the fused path at `chunk` rows, `backward` on `scale·loss`.
fn fused(
    h: &Tensor,
    w: &Tensor,
    y: &Tensor,
    cap: Option<f64>,
    chunk: i64,
    scale: f64,
) -> (Tensor, Tensor) {
    zero_grad(h);
    let loss = fused_linear_cross_entropy(h, w, y, cap, chunk).unwrap();
    (&loss * scale).backward();
    (loss.detach(), h.grad().copy())
}

/// (loss, dL/dh) of the unfused path, `backward` on `scale·loss`.
fn unfused(h: &Tensor, w: &Tensor, y: &Tensor, cap: Option<f64>, scale: f64) -> (Tensor, Tensor) {
    zero_grad(h);
    let loss = task_loss(&head(h, w, cap), y);
    (&loss * scale).backward();
    (loss.detach(), h.grad().copy())
}

/// Every chunk size (1 row, one that divides nothing, all rows, more than all) gives the
/// unfused loss and gradient within 1e-5, with and without soft-capping.
fn chunk_sizes_match_unfused(cap: Option<f64>) {
    let (b, t, d, vocab) = (3, 7, 16, 53);
    let (h, w) = tensors(b, t, d, vocab);
    let y = labels(b, t, vocab);
    let valid = y.ne(-100).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(valid, 21 - 3 - 6, "labelled rows of the pattern");
    let (l0, g0) = unfused(&h, &w, &y, cap, 1.0);
    let mut per_chunk = vec![];
    for chunk in [1, 5, valid, 1000] {
        let (l, g) = fused(&h, &w, &y, cap, chunk, 1.0);
        let (dl, dg) = (max_abs(&l, &l0), max_abs(&g, &g0));
        println!(
            "cap {cap:?}, chunk {chunk}: loss {:.6} vs {:.6}, max |Δloss| {dl:.2e}, max |Δgrad| {dg:.2e} (rel {:.2e})",
            l.double_value(&[]),
            l0.double_value(&[]),
            rel(&g, &g0)
        );
        assert!(
            dl <= 1e-5 * l0.abs().double_value(&[]),
            "loss at chunk {chunk}"
        );
        assert!(rel(&g, &g0) <= 1e-5, "gradient at chunk {chunk}");
        per_chunk.push((l, g));
    }
    // Rows without a label get no gradient; labelled rows do.
    let ignored = y.eq(-100).unsqueeze(-1).expand_as(&h);
    let (_, g) = &per_chunk[1];
    assert_eq!(g.masked_select(&ignored).abs().max().double_value(&[]), 0.0);
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    // Chunking is invisible: one row at a time and all at once agree to rounding.
    let (l1, g1) = &per_chunk[0];
    let (la, ga) = &per_chunk[2];
    assert!(max_abs(l1, la) <= 1e-6 * la.double_value(&[]) && rel(g1, ga) <= 1e-6);
}

#[test]
fn chunked_loss_and_gradient_equal_the_unfused_ones() {
    chunk_sizes_match_unfused(None);
}

#[test]
fn soft_capped_chunks_equal_the_unfused_ones() {
    chunk_sizes_match_unfused(Some(5.0));
    // The cap matters at these logits: without it in the fused loss, the gradient moves.
    let (h, w) = tensors(2, 6, 16, 41);
    let y = labels(2, 6, 41);
    let (_, capped) = unfused(&h, &w, &y, Some(5.0), 1.0);
    let (_, plain) = fused(&h, &w, &y, None, 4, 1.0);
    assert!(
        rel(&plain, &capped) > 1e-2,
        "a cap of 5 barely matters here"
    );
}

/// `backward` on a multiple of the loss (the trainer's `loss / accum` and loss scaling) sends
/// that multiple of the gradient.
#[test]
fn a_scaled_loss_scales_the_gradient() {
    let (h, w) = tensors(2, 5, 8, 29);
    let y = labels(2, 5, 29);
    let (_, g1) = fused(&h, &w, &y, None, 3, 1.0);
    let (_, g) = fused(&h, &w, &y, None, 3, 0.375);
    let (_, g0) = unfused(&h, &w, &y, None, 0.375);
    assert!(rel(&g, &(&g1 * 0.375)) <= 1e-6);
    assert!(rel(&g, &g0) <= 1e-5);
}

/// A head that trains (the benchmark's full fine-tuning) gets the unfused gradient too, in
/// f32 and, to bf16's rounding, under bf16 autocast.
#[test]
fn a_trainable_head_gets_its_gradient() {
    let (h, w) = tensors(2, 6, 12, 37);
    let w = w.set_requires_grad(true);
    let y = labels(2, 6, 37);
    for (bf16, cap) in [
        (false, None),
        (false, Some(4.0)),
        (true, None),
        (true, Some(4.0)),
    ] {
        let _ac = autocast(Device::Cpu, bf16.then_some(StorageDtype::Bf16));
        zero_grad(&w);
        let (l, gh) = fused(&h, &w, &y, cap, 4, 1.0);
        let gw = w.grad().copy();
        zero_grad(&w);
        let (l0, gh0) = unfused(&h, &w, &y, cap, 1.0);
        let gw0 = w.grad().copy();
        println!(
            "trainable head, bf16 {bf16}, cap {cap:?}: max |Δloss| {:.2e}, |ΔdH| {:.2e}, |ΔdW| {:.2e} (rel {:.2e})",
            max_abs(&l, &l0),
            max_abs(&gh, &gh0),
            max_abs(&gw, &gw0),
            rel(&gw, &gw0)
        );
        let tol = if bf16 { 1e-2 } else { 1e-5 };
        assert!(rel(&gh, &gh0) <= tol && rel(&gw, &gw0) <= tol);
    }
}

/// No label at all: loss 0 and no gradient (the unfused mean over nothing is NaN).
#[test]
fn a_batch_without_labels_gives_zero() {
    let (h, w) = tensors(2, 4, 8, 19);
    let y = Tensor::full([2, 4], -100, (Kind::Int64, Device::Cpu));
    let (l, g) = fused(&h, &w, &y, Some(3.0), 3, 1.0);
    assert_eq!(l.double_value(&[]), 0.0);
    assert_eq!(g.abs().max().double_value(&[]), 0.0);
    assert!(unfused(&h, &w, &y, None, 1.0).0.double_value(&[]).is_nan());
}

#[test]
fn bad_labels_and_shapes_are_refused() {
    let (h, w) = tensors(1, 3, 8, 11);
    let y = Tensor::from_slice(&[1i64, 11, -100]).view([1, 3]);
    let e = fused_linear_cross_entropy(&h, &w, &y, None, 2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("label 11 at row 1"), "{e}");
    let y = Tensor::from_slice(&[1i64, 2]).view([1, 2]);
    let e = fused_linear_cross_entropy(&h, &w, &y, None, 2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("shaped like the hidden states"), "{e}");
}

/// Under bf16 autocast both paths run the head's matmuls in bf16: they agree to bf16's
/// rounding, and much better than either agrees with f32.
#[test]
fn bf16_autocast_chunks_equal_the_unfused_ones() {
    let (b, t, d, vocab) = (3, 9, 32, 97);
    let (h, w) = tensors(b, t, d, vocab);
    let y = labels(b, t, vocab);
    let (l32, g32) = unfused(&h, &w, &y, None, 1.0);
    for cap in [None, Some(5.0)] {
        let _ac = autocast(Device::Cpu, Some(StorageDtype::Bf16));
        let (l0, g0) = unfused(&h, &w, &y, cap, 1.0);
        for chunk in [1, 7, 1000] {
            let (l, g) = fused(&h, &w, &y, cap, chunk, 1.0);
            println!(
                "bf16, cap {cap:?}, chunk {chunk}: max |Δloss| {:.2e}, grad rel {:.2e}",
                max_abs(&l, &l0),
                rel(&g, &g0)
            );
            assert!(max_abs(&l, &l0) <= 1e-4 * l0.abs().double_value(&[]));
            assert!(rel(&g, &g0) <= 1e-2, "bf16 gradient at chunk {chunk}");
        }
        if cap.is_none() {
            // The comparison is in bf16 indeed: f32 is further away.
            let (l, g) = fused(&h, &w, &y, cap, 7, 1.0);
            println!(
                "bf16 vs f32: max |Δloss| {:.2e}, grad rel {:.2e}",
                max_abs(&l, &l32),
                rel(&g, &g32)
            );
            assert!(max_abs(&l, &l32) > 0.0 && rel(&g, &g32) > rel(&g, &g0));
        }
    }
}

#[test]
fn chunk_rows_fit_the_budget() {
    assert_eq!(chunk_rows_for(49_152), 170);
    assert_eq!(chunk_rows_for(262_144), 32);
    assert_eq!(chunk_rows_for(1 << 30), 1);
}

// ---- Through a tiny random Llama with LoRA adapters ----

const VOCAB: i64 = 61;

fn tiny_config(tied: bool, cap: Option<f64>) -> LlamaConfig {
    LlamaConfig {
        vocab_size: VOCAB as usize,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 64,
        tie_word_embeddings: tied,
        final_logit_softcapping: cap,
        ..Default::default()
    }
}

/// A tiny Llama of random weights with LoRA (r = 2) on every linear (support/mod.rs).
fn tiny_llama(tied: bool, cap: Option<f64>, precision: Precision) -> Llama {
    support::lora_llama(tiny_config(tied, cap), 7, precision, None).unwrap()
}

/// Every adapter tensor's gradient, in order.
fn adapter_grads(model: &Llama) -> Vec<Tensor> {
    model
        .linears()
        .iter()
        .flat_map(|l| l.trainable())
        .map(|(_, p, _)| p.grad().copy())
        .collect()
}

fn zero_adapter_grads(model: &Llama) {
    for (_, p, _) in model.linears().iter().flat_map(|l| l.trainable()) {
        zero_grad(&p);
    }
}

/// Fused and unfused losses of one batch, each backpropagated; returns the worst relative
/// gradient difference over the adapters and the loss difference.
fn model_paths(
    model: &Llama,
    logits: impl Fn() -> Tensor,
    hidden: impl Fn() -> Tensor,
    y: &Tensor,
) -> (f64, f64) {
    zero_adapter_grads(model);
    let l0 = task_loss(&logits(), y);
    l0.backward();
    let g0 = adapter_grads(model);
    zero_adapter_grads(model);
    let l = model.lm_loss(&hidden(), y).unwrap();
    l.backward();
    let g = adapter_grads(model);
    let worst = g
        .iter()
        .zip(&g0)
        .map(|(a, b)| rel(a, b))
        .fold(0.0, f64::max);
    assert!(g0.iter().all(|t| t.abs().max().double_value(&[]) > 0.0));
    (max_abs(&l, &l0) / l0.abs().double_value(&[]), worst)
}

/// Through a whole model, padded and packed rows, tied and untied soft-capped heads: the
/// adapters' gradients from the fused loss are the unfused ones.
#[test]
fn a_tiny_llama_trains_alike_with_the_fused_loss() {
    let (b, t) = (3, 10);
    let ids = token_ids(&[b, t], VOCAB, 1);
    let mask = Tensor::ones([b, t], (Kind::Int64, Device::Cpu)).index_fill(
        1,
        &Tensor::from_slice(&[8i64, 9]),
        0,
    );
    let y = labels(b, t, VOCAB).masked_fill(&mask.eq(0), -100);
    let segments = Tensor::from_slice(&[1i64, 1, 1, 1, 2, 2, 2, 3, 3, 0])
        .unsqueeze(0)
        .repeat([b, 1]);
    for (tied, cap) in [(true, None), (false, Some(2.0))] {
        let model = tiny_llama(tied, cap, Precision::F32);
        // A vocabulary of 61 fits every row in one chunk: the chunking is the tensor tests'
        // (and the one-row comparison below).
        assert!(chunk_rows_for(VOCAB) >= b * t);
        let (dl, dg) = model_paths(
            &model,
            || model.forward(&ids, Some(&mask), true).unwrap(),
            || model.last_hidden_state(&ids, Some(&mask), true).unwrap(),
            &y,
        );
        println!(
            "tiny llama tied {tied} cap {cap:?}: rel Δloss {dl:.2e}, adapters' grads rel {dg:.2e}"
        );
        assert!(dl <= 1e-5 && dg <= 1e-5);
        let (dl, dg) = model_paths(
            &model,
            || model.forward_packed(&ids, &segments, true).unwrap(),
            || model.packed_hidden_state(&ids, &segments, true).unwrap(),
            &y,
        );
        println!("  packed: rel Δloss {dl:.2e}, adapters' grads rel {dg:.2e}");
        assert!(dl <= 1e-5 && dg <= 1e-5);
    }
    // Small chunks through the model too: the loss of `lm_loss` at one row a chunk.
    let model = tiny_llama(true, None, Precision::F32);
    let h = model.last_hidden_state(&ids, Some(&mask), true).unwrap();
    let whole = model.lm_loss(&h, &y).unwrap();
    let rows = fused_linear_cross_entropy(&h, model.head_weight(), &y, None, 1).unwrap();
    assert!(max_abs(&whole, &rows) <= 1e-6 * whole.double_value(&[]));
}

/// The model under bf16 autocast (f32 weights, as the benchmark runs it): the fused loss
/// computes its chunks in bf16 as the unfused head does.
#[test]
fn a_tiny_llama_under_bf16_autocast_trains_alike() {
    let (b, t) = (2, 12);
    let ids = token_ids(&[b, t], VOCAB, 2);
    let mask = Tensor::ones([b, t], (Kind::Int64, Device::Cpu));
    let y = labels(b, t, VOCAB);
    let precision = Precision {
        storage: StorageDtype::F32,
        autocast: Some(StorageDtype::Bf16),
    };
    let model = tiny_llama(true, Some(3.0), precision);
    let (dl, dg) = model_paths(
        &model,
        || model.forward(&ids, Some(&mask), true).unwrap(),
        || model.last_hidden_state(&ids, Some(&mask), true).unwrap(),
        &y,
    );
    println!("tiny llama bf16: rel Δloss {dl:.2e}, adapters' grads rel {dg:.2e}");
    assert!(dl <= 1e-3 && dg <= 2e-2);
    // `lm_loss` enters the model's autocast itself: its head runs in bf16, not in f32 (the
    // gradients tell, having many elements; a single loss value may agree by chance).
    let h = tch::no_grad(|| model.last_hidden_state(&ids, Some(&mask), false).unwrap());
    let h = h.set_requires_grad(true);
    let (_, in_f32) = unfused(&h, model.head_weight(), &y, Some(3.0), 1.0);
    zero_grad(&h);
    model.lm_loss(&h, &y).unwrap().backward();
    let fused = h.grad();
    println!(
        "tiny llama: dL/dh fused under the model's bf16 autocast vs an f32 head: rel {:.2e}",
        rel(&fused, &in_f32)
    );
    assert!(rel(&fused, &in_f32) > 1e-3);
}
