//! The causal-LM training loss without the full-vocabulary logits: the LM head's linear and the
//! cross-entropy fused and computed a chunk of rows at a time, as Liger-Kernel's fused linear
//! cross-entropy does.
//!
//! The unfused path ([`crate::arch::Llama::forward`] then a mean cross-entropy over labels other
//! than −100) holds `[b·t, vocab]` f32 logits, their log-softmax for the backward pass and the
//! logits' gradient: several times 100 MB for SmolLM2's 49,152 tokens at 4×128, 537 MB each for
//! Gemma 3's 262,144. The head is frozen in training, so the only gradient needed from the loss
//! is the hidden states' one, `dH = dlogits · W`, and that can be computed chunk by chunk during
//! the forward pass, under `no_grad`, from `dlogits = (softmax − onehot) / n` (times the
//! soft-cap's derivative). [`fused_linear_cross_entropy`] then returns a 0-d tensor whose value
//! is the mean cross-entropy and whose gradient with respect to the hidden states is exactly
//! `dH`: only one `[chunk, vocab]` block (two with soft-capping) is alive at a time, never the
//! whole batch's. A head that does train (the benchmark's full fine-tuning,
//! engine/models/src/bench.rs) gets its `dW = dlogitsᵀ · h` accumulated the same way.
//!
//! The row selection reads the labels on the host twice per batch (any bad label, which rows
//! have one), as `Llama::check_ids` already does for the ids.

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};

/// Bytes of one `[chunk, vocab]` f32 block: 32 MiB. One such block is alive at a time (two
/// with soft-capping, plus its bf16 copy under autocast), instead of several `[b·t, vocab]`
/// tensors. Larger chunks re-read the head weight fewer times (it is read twice per chunk);
/// at 32 MiB SmolLM2 (49,152 tokens) takes 170 rows a chunk and Gemma 3 (262,144) 32.
pub const CHUNK_BYTES: i64 = 32 << 20;

/// Rows per chunk for a vocabulary of `vocab` tokens: as many as fit [`CHUNK_BYTES`] of f32
/// logits, at least one.
pub fn chunk_rows_for(vocab: i64) -> i64 {
    (CHUNK_BYTES / (4 * vocab.max(1))).max(1)
}

/// The mean cross-entropy of `labels` under the logits `h · Wᵀ` (soft-capped as
/// `cap·tanh(logits/cap)` when `softcap` is given), computed `chunk_rows` rows at a time.
///
/// - `h`: final hidden states `[…, d]` (e.g. `[b, t, d]`), carrying the autograd graph;
/// - `weight`: the LM head `[vocab, d]` (`lm_head` or the tied embeddings);
/// - `labels`: one target per row of `h` (shape `[…]`), already the next token (the batch
///   shifts them), −100 = ignored.
///
/// Each chunk's logits are computed as the unfused head computes them: a `linear` in the
/// dtype libtorch's autocast gives it at this point (bf16 under bf16 autocast, else h's), cast
/// to f32, then soft-capped. Only rows with a label are computed at all (prompt and padding
/// tokens cost nothing).
///
/// The result's value is the mean over labelled rows; its gradient is the exact gradient of
/// that mean with respect to `h` (and to `weight` when it requires one, for full fine-tuning):
/// `backward()` on any multiple `c·loss` sends `c·dH` into the graph. With no labelled row the
/// loss is 0 with a zero gradient, where the unfused mean over nothing is NaN (the trainer
/// would stop on it as a non-finite loss; here such a batch simply teaches nothing).
pub fn fused_linear_cross_entropy(
    h: &Tensor,
    weight: &Tensor,
    labels: &Tensor,
    softcap: Option<f64>,
    chunk_rows: i64,
) -> Result<Tensor> {
    let (rows, d) = check_shapes(h, weight, labels)?;
    let vocab = weight.size()[0];
    let labels = labels.to_device(h.device()).reshape([rows]);
    let grads = tch::no_grad(|| -> Result<Grads> {
        let selected = labelled_rows(&labels, vocab)?;
        let h2 = h.reshape([rows, d]);
        Ok(head_gradients(
            &h2,
            weight,
            &selected,
            softcap,
            chunk_rows.max(1),
        ))
    })?;
    Ok(with_gradients(h, weight, grads))
}

/// The rows that carry a label (`index`, int64) and those labels, after checking every label
/// is −100 or a token of the vocabulary (a bad one would fail inside `gather` with a message
/// naming no label, or assert on a GPU).
struct Selected {
    index: Tensor,
    targets: Tensor,
}

fn labelled_rows(labels: &Tensor, vocab: i64) -> Result<Selected> {
    let valid = labels.ne(-100);
    let bad = valid.logical_and(&labels.lt(0).logical_or(&labels.ge(vocab)));
    if bad.any().int64_value(&[]) != 0 {
        let at = bad.nonzero().int64_value(&[0, 0]);
        return Err(ModelError::Usage(format!(
            "label {} at row {at} is neither −100 (ignored) nor a token of the vocabulary of \
             {vocab}",
            labels.int64_value(&[at])
        )));
    }
    let index = valid.nonzero().reshape([-1]);
    let targets = labels.index_select(0, &index);
    Ok(Selected { index, targets })
}

fn check_shapes(h: &Tensor, weight: &Tensor, labels: &Tensor) -> Result<(i64, i64)> {
    let hs = h.size();
    let ws = weight.size();
    let d = *hs.last().unwrap_or(&0);
    if hs.len() < 2 || ws.len() != 2 || ws[1] != d {
        return Err(ModelError::Usage(format!(
            "fused LM loss: hidden states {hs:?} and head weight {ws:?} do not multiply \
             ([…, d] and [vocab, d] expected)"
        )));
    }
    if labels.kind() != Kind::Int64 || labels.size() != hs[..hs.len() - 1] {
        return Err(ModelError::Usage(format!(
            "fused LM loss: labels must be int64 shaped like the hidden states without their \
             last dimension ({:?}), got {:?} {:?}",
            &hs[..hs.len() - 1],
            labels.kind(),
            labels.size()
        )));
    }
    Ok((hs[..hs.len() - 1].iter().product(), d))
}

/// What the chunks add up to: the mean loss (f32, no graph), `dH` shaped `[rows, d]` in h's
/// dtype, and `dW` (f32) when the head weight wants a gradient.
struct Grads {
    loss: Tensor,
    dh: Tensor,
    dw: Option<Tensor>,
}

/// The loss and gradients over the labelled rows, a chunk at a time (under `no_grad`).
fn head_gradients(
    h2: &Tensor,
    weight: &Tensor,
    sel: &Selected,
    softcap: Option<f64>,
    chunk_rows: i64,
) -> Grads {
    let (rows, d) = h2.size2().expect("[rows, d] by construction");
    let n = sel.index.size()[0];
    let device = h2.device();
    let compute = linear_kind(h2.kind(), weight.kind(), device);
    // One cast of the head for all chunks (a no-op in f32); the unfused path casts it once per
    // forward too, and keeps that copy for its backward pass.
    let w = weight.to_kind(compute);
    let hv = h2.index_select(0, &sel.index).to_kind(compute);
    let mut loss = Tensor::zeros([], (Kind::Float, device));
    let dh_valid = Tensor::zeros([n, d], (h2.kind(), device));
    let mut dw = weight
        .requires_grad()
        .then(|| Tensor::zeros(weight.size(), (Kind::Float, device)));
    let scale = 1.0 / n.max(1) as f64;
    let mut start = 0;
    while start < n {
        let len = chunk_rows.min(n - start);
        let hc = hv.narrow(0, start, len);
        let (sum, g) =
            chunk_loss_and_grad(&hc, &w, &sel.targets.narrow(0, start, len), softcap, scale);
        loss += sum;
        if let Some(dw) = dw.as_mut() {
            // In f32 and in place: no `[vocab, d]` temporary per chunk (in-place ops are
            // outside autocast's casts).
            let _ = dw.addmm_(&g.transpose(0, 1), &hc.to_kind(Kind::Float));
        }
        let g = g.to_kind(compute);
        dh_valid
            .narrow(0, start, len)
            .copy_(&g.matmul(&w).to_kind(h2.kind()));
        start += len;
    }
    let dh = Tensor::zeros([rows, d], (h2.kind(), device)).index_copy(0, &sel.index, &dh_valid);
    Grads {
        loss: loss * scale,
        dh,
        dw,
    }
}

/// The dtype `linear` computes in for these operand dtypes here and now: bf16 inside a bf16
/// autocast region (what the unfused head's `linear` runs in), else the operands' own. Probed
/// on 1×1 tensors, so it follows libtorch's autocast state on this thread and device exactly.
fn linear_kind(h: Kind, w: Kind, device: tch::Device) -> Kind {
    let x = Tensor::zeros([1, 1], (h, device));
    let w = Tensor::zeros([1, 1], (w, device));
    x.linear::<Tensor>(&w, None).kind()
}

/// One chunk: the sum of its rows' cross-entropy and `dlogits = scale·(softmax − onehot)`
/// (times `1 − tanh²(z/cap)` when soft-capped), `[len, vocab]` f32. In place where it can be,
/// so that one `[len, vocab]` block lives at a time (two with soft-capping).
fn chunk_loss_and_grad(
    hc: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    softcap: Option<f64>,
    scale: f64,
) -> (Tensor, Tensor) {
    // As `Llama::head` (engine/models/src/arch/llama.rs): linear, to f32, cap·tanh(z/cap).
    let mut logits = hc.linear::<Tensor>(w, None).to_kind(Kind::Float);
    let tanh = softcap.map(|cap| {
        let t = (&logits / cap).tanh();
        logits = &t * cap;
        t
    });
    let idx = targets.unsqueeze(1);
    let target = logits.gather(1, &idx, false);
    // log-sum-exp and softmax in place over the one block (`logsumexp` would allocate two more
    // `[len, vocab]` temporaries): e = exp(z − max), lse = max + log Σe, softmax = e / Σe.
    let max = logits.amax([-1], true);
    let _ = logits.g_sub_(&max).exp_();
    let sumexp = logits.sum_dim_intlist(-1, true, Kind::Float);
    let sum = (&max + sumexp.log() - target).sum(Kind::Float);
    // dlogits = scale·softmax, then − scale at the target.
    let _ = logits.g_mul_(&(sumexp.reciprocal() * scale));
    let minus = Tensor::full([idx.size()[0], 1], -scale, (Kind::Float, logits.device()));
    let _ = logits.scatter_add_(1, &idx, &minus);
    if let Some(mut t) = tanh {
        // d(cap·tanh(z/cap))/dz = 1 − tanh²(z/cap).
        let _ = t.square_().neg_().g_add_scalar_(1.0);
        let _ = logits.g_mul_(&t);
    }
    (sum, logits)
}

/// A 0-d tensor whose value is `grads.loss` and whose gradient is `grads.dh` for `h` (and
/// `grads.dw` for `weight`): `loss + (s − s.detach())` with `s = Σ h·dH` adds exactly zero to
/// the value and exactly `dH` (times the incoming gradient) to `h`'s gradient.
fn with_gradients(h: &Tensor, weight: &Tensor, grads: Grads) -> Tensor {
    let mut out = grads.loss;
    if h.requires_grad() {
        let s = (h * grads.dh.view_as(h)).sum(Kind::Float);
        out += &s - s.detach();
    }
    if let Some(dw) = grads.dw {
        // A dot product rather than `Σ W·dW`: no `[vocab, d]` product in the forward pass
        // (`dot` is not among the ops autocast lowers, so `dW` reaches W unrounded).
        let dw = dw.to_kind(weight.kind());
        let s = weight.reshape([-1]).dot(&dw.reshape([-1]));
        out += &s - s.detach();
    }
    out
}
