//! Packed rows (several examples in one row of a causal-LM batch, `Llama::forward_packed`):
//! each example's logits equal those it gets alone — attention stays within the example,
//! positions restart at its first token, sliding windows count within it, soft-capping is
//! untouched. Tiny random Llama (llama3 RoPE scaling), Qwen2 (sliding window on a layer),
//! Gemma 2 (a window shorter than the examples, attention and final soft-capping) and Gemma 3
//! (local and global RoPE), saved by the current transformers in one Python process
//! (engine/models/tests/peer/packed_attention.py) with transformers' logits for each example
//! alone, read through the real loader.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ardpipe_models::{LoadOptions, load_causal_lm};
use serde_json::Value;
use tch::{Kind, Tensor};

mod support;
use support::{matrix, peer_command, run_peer};

/// Every family's folder, made once per test binary.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ardpipe-packed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        run_peer(peer_command("packed_attention.py").arg(&d));
        d
    })
}

/// The batch's width; each row is its examples then padding (id 0, segment 0).
const T: usize = 24;
/// Which examples (by index into the peer's list) each row packs, in order: the same
/// examples at other offsets and beside other neighbours in the second row.
const ROWS: [&[usize]; 2] = [&[0, 1, 2], &[3, 2, 0]];

fn reference(case: &str) -> Value {
    let path = fixtures().join(case).join("reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The packed ids and segments `[2, T]`, and where each example lies: (row, start, example).
fn pack(examples: &[Vec<i64>]) -> (Tensor, Tensor, Vec<(i64, i64, usize)>) {
    let mut ids = vec![0i64; ROWS.len() * T];
    let mut seg = vec![0i64; ROWS.len() * T];
    let mut placed = vec![];
    for (r, row) in ROWS.iter().enumerate() {
        let mut at = 0;
        for (k, &e) in row.iter().enumerate() {
            let ex = &examples[e];
            for (j, &id) in ex.iter().enumerate() {
                ids[r * T + at + j] = id;
                seg[r * T + at + j] = k as i64 + 1;
            }
            placed.push((r as i64, at as i64, e));
            at += ex.len();
        }
        assert!(at < T, "row {r} leaves no padding");
    }
    let shape = [ROWS.len() as i64, T as i64];
    (
        Tensor::from_slice(&ids).reshape(shape),
        Tensor::from_slice(&seg).reshape(shape),
        placed,
    )
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// The family's packed batch against each example alone (ardpipe's and transformers'), and
/// rows of one example against the padded forward.
fn packed_rows_equal_examples_alone(case: &str) {
    let reference = reference(case);
    let examples: Vec<Vec<i64>> = serde_json::from_value(reference["examples"].clone()).unwrap();
    let theirs: Vec<Tensor> = reference["alone"]
        .as_array()
        .unwrap()
        .iter()
        .map(matrix)
        .collect();
    if let Some(effect) = reference.get("window_effect").and_then(Value::as_f64) {
        println!("{case}: lifting the sliding window moves an example's logits by {effect:.2e}");
        assert!(
            effect > 1e-2,
            "{case}: the sliding window barely matters within these examples ({effect})"
        );
    }
    let lm = load_causal_lm(&fixtures().join(case), &LoadOptions::default()).unwrap();
    let model = &lm.model;
    let (ids, segments, placed) = pack(&examples);
    let packed = tch::no_grad(|| model.forward_packed(&ids, &segments, false)).unwrap();
    assert_eq!(packed.size()[..2], [2, T as i64]);
    // The same rows without segments: the examples see each other, so the check bites.
    let unpacked = tch::no_grad(|| model.forward(&ids, None, false)).unwrap();
    let (mut worst_ours, mut worst_theirs, mut least_leak) = (0f64, 0f64, f64::INFINITY);
    for &(r, start, e) in &placed {
        let n = examples[e].len() as i64;
        let got = packed.get(r).narrow(0, start, n);
        let ex = Tensor::from_slice(&examples[e]).unsqueeze(0);
        let alone = tch::no_grad(|| model.forward(&ex, None, false))
            .unwrap()
            .get(0);
        let ours = max_abs(&got, &alone);
        let vs_theirs = max_abs(&got, &theirs[e]);
        println!(
            "{case}: row {r} at {start}, example {e} ({n} tokens): max |Δlogit| {ours:.2e} against ardpipe alone, {vs_theirs:.2e} against transformers alone"
        );
        worst_ours = worst_ours.max(ours);
        worst_theirs = worst_theirs.max(vs_theirs);
        if start > 0 {
            least_leak = least_leak.min(max_abs(&unpacked.get(r).narrow(0, start, n), &alone));
        }
    }
    println!(
        "{case}: packed vs alone max |Δlogit| {worst_ours:.2e} (ardpipe), {worst_theirs:.2e} (transformers); unpacked rows move a later example by at least {least_leak:.2e}"
    );
    assert!(
        worst_ours <= 1e-5,
        "{case}: packed logits differ from the examples alone by {worst_ours}"
    );
    assert!(
        worst_theirs <= 1e-4,
        "{case}: packed logits differ from transformers' by {worst_theirs}"
    );
    assert!(
        least_leak > 1e-2,
        "{case}: packing barely matters here ({least_leak})"
    );
    assert!(
        packed.isfinite().all().int64_value(&[]) == 1,
        "{case}: non-finite logits on padding"
    );

    // One example per row (segment 1, then padding) is the padded batch.
    let real = segments.gt(0).to_kind(Kind::Int64);
    let one = tch::no_grad(|| model.forward_packed(&ids, &real, false)).unwrap();
    let padded = tch::no_grad(|| model.forward(&ids, Some(&real), false)).unwrap();
    let keep = real.to_kind(Kind::Bool).unsqueeze(-1);
    let d = (&one - &padded)
        .abs()
        .masked_fill(&keep.logical_not(), 0.0)
        .max()
        .double_value(&[]);
    println!("{case}: one segment per row vs the attention-masked forward: max |Δlogit| {d:.2e}");
    assert!(
        d <= 1e-5,
        "{case}: a single segment differs from the padded forward by {d}"
    );
}

#[test]
fn llama_with_llama3_rope_packs() {
    packed_rows_equal_examples_alone("llama");
}

#[test]
fn qwen2_with_a_sliding_layer_packs() {
    packed_rows_equal_examples_alone("qwen2");
}

#[test]
fn gemma2_with_windows_and_soft_capping_packs() {
    packed_rows_equal_examples_alone("gemma2");
}

#[test]
fn gemma3_with_local_and_global_rope_packs() {
    packed_rows_equal_examples_alone("gemma3");
}

#[test]
fn malformed_segments_are_refused() {
    let lm = load_causal_lm(&fixtures().join("llama"), &LoadOptions::default()).unwrap();
    let ids = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10]).reshape([1, 6]);
    let err = |seg: Tensor| match tch::no_grad(|| lm.model.forward_packed(&ids, &seg, false)) {
        Ok(_) => panic!("segments {seg:?} were accepted"),
        Err(e) => e.to_string(),
    };
    let row = |v: &[i64]| Tensor::from_slice(v).reshape([1, -1]);
    let e = err(row(&[1, 1, 2, 2, 0]));
    assert!(e.contains("shaped like the ids [1, 6]"), "{e}");
    let e = err(row(&[1, 1, 2, 2, 0, 0]).to_kind(Kind::Int));
    assert!(e.contains("int64"), "{e}");
    let e = err(row(&[1, 1, -1, 2, 0, 0]));
    assert!(e.contains("position 2") && e.contains("negative"), "{e}");
    // An example split in two, by another or by padding, and ids out of order.
    for (seg, pos) in [
        (&[1, 1, 2, 1, 0, 0], 3),
        (&[1, 1, 0, 1, 1, 0], 3),
        (&[2, 2, 1, 1, 0, 0], 2),
    ] {
        let e = err(row(seg));
        assert!(
            e.contains(&format!("row 0 position {pos}")) && e.contains("1, 2, … in order"),
            "{e}"
        );
    }
    // Left padding and gaps of padding between examples are fine.
    let ok = row(&[0, 1, 1, 0, 3, 3]);
    let logits = tch::no_grad(|| lm.model.forward_packed(&ids, &ok, false)).unwrap();
    assert_eq!(logits.size(), [1, 6, 96]);
    assert_eq!(logits.isfinite().all().int64_value(&[]), 1);
}
