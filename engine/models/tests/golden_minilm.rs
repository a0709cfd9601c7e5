//! Golden values of all-MiniLM-L6-v2 (from an independent reference forward pass, in the
//! assertions below): masked mean pooling, L2-normalised.

use ardpipe_models::arch::EncoderHead;
use ardpipe_models::assets::asset_dir;
use ardpipe_models::tokenizer::load_tokenizer;
use ardpipe_models::{LoadOptions, Precision, load_encoder};
use tch::Tensor;

/// Tokenise a batch with dynamic padding: ids and attention mask `[b, t]`.
fn batch(tok: &ardpipe_data::TextTokenizer, texts: &[&str]) -> (Tensor, Tensor) {
    let encs: Vec<Vec<i64>> = texts
        .iter()
        .map(|t| {
            tok.encode(t, true)
                .unwrap()
                .ids
                .iter()
                .map(|&i| i as i64)
                .collect()
        })
        .collect();
    let t = encs.iter().map(Vec::len).max().unwrap();
    let mut ids = vec![0i64; texts.len() * t];
    let mut mask = vec![0i64; texts.len() * t];
    for (r, e) in encs.iter().enumerate() {
        ids[r * t..r * t + e.len()].copy_from_slice(e);
        mask[r * t..r * t + e.len()].fill(1);
    }
    let shape = [texts.len() as i64, t as i64];
    (
        Tensor::from_slice(&ids).reshape(shape),
        Tensor::from_slice(&mask).reshape(shape),
    )
}

const TEXTS: [&str; 3] = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The stock market fell sharply today.",
];

fn minilm() -> std::path::PathBuf {
    let dir = asset_dir("minilm");
    assert!(
        dir.join("model.safetensors").exists(),
        "example asset minilm is not installed at {}: run `python3 scripts/setup.py`",
        dir.display()
    );
    dir
}

#[test]
fn minilm_cosines_and_first_dims() {
    let dir = minilm();
    let enc = load_encoder(&dir, EncoderHead::Embedding, &LoadOptions::default()).unwrap();
    assert_eq!(enc.report.applied, 101);
    let tok = load_tokenizer(&enc.location).unwrap().tokenizer;
    // One padded batch: masking must make padding irrelevant (MiniLM's tokenizer.json pads to
    // 128; unmasked, the padding ruins the embeddings).
    let (ids, mask) = batch(&tok, &TEXTS);
    let e = tch::no_grad(|| enc.model.embed(&ids, &mask)).unwrap();
    assert_eq!(e.size(), [3, 384]);
    let cos = |a: i64, b: i64| e.get(a).dot(&e.get(b)).double_value(&[]);
    assert!((cos(0, 1) - 0.6674).abs() < 1e-3, "cos = {}", cos(0, 1));
    assert!((cos(0, 2) + 0.0540).abs() < 1e-3, "cos = {}", cos(0, 2));
    let first: Vec<f32> = Vec::try_from(e.get(0).narrow(0, 0, 5)).unwrap();
    for (got, want) in first
        .iter()
        .zip([0.02166, -0.00486, -0.00965, -0.0634, -0.16749])
    {
        assert!((got - want).abs() < 1e-3, "{first:?}");
    }
}

#[test]
fn minilm_classification_head_is_transformers_shaped_and_seeded() {
    let dir = minilm();
    let head = EncoderHead::Classification {
        num_labels: 16,
        seed: 7,
    };
    let a = load_encoder(&dir, head, &LoadOptions::default()).unwrap();
    let b = load_encoder(
        &dir,
        head,
        &LoadOptions {
            precision: Precision::BF16,
            ..Default::default()
        },
    )
    .unwrap();
    let names: Vec<String> = a
        .model
        .head_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "bert.pooler.dense.weight",
            "bert.pooler.dense.bias",
            "classifier.weight",
            "classifier.bias"
        ]
    );
    assert!(
        a.model
            .head_parameters()
            .iter()
            .all(|(_, t)| t.requires_grad())
    );
    assert!(
        a.model
            .linears()
            .iter()
            .all(|l| !l.base.weight.requires_grad())
    );
    assert_eq!(
        a.model.linears()[0].path,
        "bert.encoder.layer.0.attention.self.query"
    );
    assert!(
        a.model
            .classifier
            .as_ref()
            .unwrap()
            .weight
            .equal(&b.model.classifier.as_ref().unwrap().weight)
    );
    let tok = load_tokenizer(&a.location).unwrap().tokenizer;
    let (ids, mask) = batch(&tok, &TEXTS);
    let la = a.model.classify(&ids, &mask, false).unwrap();
    let lb = tch::no_grad(|| b.model.classify(&ids, &mask, false)).unwrap();
    assert_eq!(la.size(), [3, 16]);
    let diff = (&la - &lb).abs().max().double_value(&[]);
    assert!(diff < 0.05, "bf16 and f32 logits differ by {diff}");
    // Training mode: dropout is on and gradients reach the head.
    let loss = a
        .model
        .classify(&ids, &mask, true)
        .unwrap()
        .logsumexp([1], false)
        .mean(tch::Kind::Float);
    loss.backward();
    let g = a.model.classifier.as_ref().unwrap().weight.grad();
    assert!(g.defined() && g.abs().sum(tch::Kind::Float).double_value(&[]) > 0.0);
}
