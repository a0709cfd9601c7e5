//! Sequence classification against transformers: tiny random RobertaForSequenceClassification,
//! XLMRobertaForSequenceClassification and Llama/Qwen2/Gemma2ForSequenceClassification models that the
//! peer's transformers saved (with a real tokenizer.json) must give transformers' logits on a
//! right-padded batch, from the peer's token ids and from ardpipe's own tokenizer; config
//! fields that change the maths are refused when ardpipe cannot honour them. Needs the Python
//! peer venv that `scripts/setup.sh` creates (one Python process for the whole binary).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ardpipe_models::arch::{EncoderHead, SequenceClassifier};
use ardpipe_models::text::classify_texts;
use ardpipe_models::tokenizer::load_tokenizer;
use ardpipe_models::{LoadOptions, load_decoder_classifier, load_encoder};
use tch::Tensor;

mod support;
use support::{peer_command, run_peer};

struct Fixtures {
    dir: PathBuf,
    peer: serde_json::Value,
}

/// The peer runs once: it saves the three models and prints their logits.
fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ardpipe-seq-cls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = run_peer(peer_command("seq_cls.py").arg(&dir));
        let peer = serde_json::from_slice(&out.stdout).unwrap();
        Fixtures { dir, peer }
    })
}

fn matrix<T: tch::kind::Element + serde::de::DeserializeOwned>(v: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<T>> = serde_json::from_value(v.clone()).unwrap();
    let n = rows.len() as i64;
    Tensor::from_slice(&rows.concat()).reshape([n, -1])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// ardpipe's logits on the peer's ids and mask, and through its own tokenizer on the texts.
fn check(name: &str, model: &dyn SequenceClassifier, location: &ardpipe_models::ModelLocation) {
    let p = &fixtures().peer[name];
    let ids = matrix::<i64>(&p["input_ids"]);
    let mask = matrix::<i64>(&p["attention_mask"]);
    let want = matrix::<f32>(&p["logits"]);
    let got = tch::no_grad(|| model.classify(&ids, &mask, false)).unwrap();
    let d = max_diff(&got, &want);
    eprintln!("{name}: max |Δlogit| on the peer's padded batch = {d:.2e}");
    assert!(
        d < 1e-4,
        "{name}: ardpipe's logits differ from transformers' by {d}"
    );
    // The padding must matter to the check: the shortest row is mostly padding.
    let padded = mask.eq(0).sum(tch::Kind::Int64).int64_value(&[]);
    assert!(
        padded > 10,
        "{name}: the batch has only {padded} padding positions"
    );

    let tok = load_tokenizer(location).unwrap();
    let texts: Vec<String> = serde_json::from_value(p["texts"].clone()).unwrap();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = classify_texts(model, &tok.tokenizer, &texts).unwrap();
    let flat: Vec<f32> = out.logits.concat();
    let ours = Tensor::from_slice(&flat).reshape(want.size());
    let d = max_diff(&ours, &want);
    eprintln!("{name}: max |Δlogit| through ardpipe's tokenizer = {d:.2e}");
    assert!(
        d < 1e-4,
        "{name}: classify_texts differs from transformers by {d}"
    );
}

fn encoder(name: &str) {
    let dir = fixtures().dir.join(name);
    let head = EncoderHead::Classification {
        num_labels: 3,
        seed: 0,
    };
    let enc = load_encoder(&dir, head, &LoadOptions::default()).unwrap();
    assert!(
        enc.model.classifier_from_checkpoint,
        "{name}: the saved classifier.out_proj is the checkpoint's"
    );
    assert_eq!(enc.model.prefix, "roberta.");
    let names: Vec<String> = enc
        .model
        .head_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "classifier.dense.weight",
            "classifier.dense.bias",
            "classifier.out_proj.weight",
            "classifier.out_proj.bias"
        ]
    );
    assert_eq!(
        enc.model.linears()[0].path,
        "roberta.encoder.layer.0.attention.self.query"
    );
    check(name, &enc.model, &enc.location);

    // The same checkpoint as a sentence encoder: its classifier is left unused, and ardpipe's
    // masked-mean embeddings equal the mean of transformers' last hidden states.
    let emb = load_encoder(&dir, EncoderHead::Embedding, &LoadOptions::default()).unwrap();
    let p = &fixtures().peer[name];
    let got = tch::no_grad(|| {
        emb.model.embed(
            &matrix::<i64>(&p["input_ids"]),
            &matrix::<i64>(&p["attention_mask"]),
        )
    })
    .unwrap();
    let d = max_diff(&got, &matrix::<f32>(&fixtures().peer["embeddings"][name]));
    eprintln!("{name}: max |Δ| of the mean-pooled embeddings = {d:.2e}");
    assert!(
        d < 1e-5,
        "{name}: embeddings differ from transformers' by {d}"
    );
}

#[test]
fn roberta_logits_equal_transformers_on_a_padded_batch() {
    encoder("roberta");
}

#[test]
fn xlm_roberta_logits_equal_transformers_on_a_padded_batch() {
    encoder("xlm_roberta");
}

fn decoder(name: &str) {
    let dir = fixtures().dir.join(name);
    let m = load_decoder_classifier(&dir, 3, 0, &LoadOptions::default()).unwrap();
    assert!(m.model.score_from_checkpoint);
    assert_eq!(m.model.pad_token_id, 1);
    assert_eq!(
        m.model
            .head_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>(),
        ["score.weight"]
    );
    assert_eq!(m.model.linears()[0].path, "model.layers.0.self_attn.q_proj");
    check(name, &m.model, &m.location);
}

#[test]
fn llama_sequence_classification_equals_transformers_on_a_padded_batch() {
    decoder("llama");
}

/// Another family through the same decoder: Qwen2 with q/k/v biases and a sliding window
/// shorter than the batch's rows.
#[test]
fn qwen2_sequence_classification_equals_transformers_on_a_padded_batch() {
    decoder("qwen2");
}

/// Gemma 2: its final logit soft-capping (0.5 here) belongs to the LM head; transformers'
/// `score` reads the hidden states without it, and so must ardpipe's.
#[test]
fn gemma2_sequence_classification_equals_transformers_on_a_padded_batch() {
    decoder("gemma2");
}

/// A copy of a saved model with config.json edited by `edit`.
fn edited(name: &str, tag: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let src = fixtures().dir.join(name);
    let dst = fixtures().dir.join(format!("{name}-{tag}"));
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dst.join(f.file_name().unwrap())).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dst.join("config.json"), cfg.to_string()).unwrap();
    dst
}

fn encoder_error(dir: &Path) -> String {
    let head = EncoderHead::Classification {
        num_labels: 3,
        seed: 0,
    };
    match load_encoder(dir, head, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn encoder_fields_that_change_the_maths_are_refused() {
    let relative = edited("roberta", "relative", |c| {
        c["position_embedding_type"] = "relative_key".into()
    });
    let e = encoder_error(&relative);
    assert!(e.contains("position_embedding_type `relative_key`"), "{e}");
    let decoder = edited("roberta", "decoder", |c| c["is_decoder"] = true.into());
    let e = encoder_error(&decoder);
    assert!(e.contains("is_decoder"), "{e}");
    let act = edited("xlm_roberta", "act", |c| {
        c["hidden_act"] = "gelu_new".into()
    });
    let e = encoder_error(&act);
    assert!(e.contains("hidden_act `gelu_new`"), "{e}");
    let no_pad = edited("roberta", "nopad", |c| {
        c["pad_token_id"] = serde_json::Value::Null
    });
    let e = encoder_error(&no_pad);
    assert!(e.contains("pad_token_id is null"), "{e}");
    let big_pad = edited("roberta", "bigpad", |c| c["pad_token_id"] = 39.into());
    let e = encoder_error(&big_pad);
    assert!(e.contains("leaves no positions"), "{e}");
}

#[test]
fn a_decoder_without_pad_token_id_is_refused_for_classification() {
    let dir = edited("llama", "nopad", |c| {
        c.as_object_mut().unwrap().remove("pad_token_id");
    });
    match load_decoder_classifier(&dir, 3, 0, &LoadOptions::default()) {
        Ok(_) => panic!("loaded without pad_token_id"),
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("no pad_token_id") && e.contains("config.json"),
                "{e}"
            );
        }
    }
}

#[test]
fn a_new_score_is_seeded_like_transformers_init() {
    // Five labels: the saved 3-row score does not fit, so a new one is drawn from
    // normal(0, initializer_range = 0.2) and reproducible from the seed.
    let dir = fixtures().dir.join("llama");
    let a = load_decoder_classifier(&dir, 5, 7, &LoadOptions::default()).unwrap();
    let b = load_decoder_classifier(&dir, 5, 7, &LoadOptions::default()).unwrap();
    assert!(!a.model.score_from_checkpoint);
    assert_eq!(a.model.score.size(), [5, 32]);
    assert!(a.model.score.equal(&b.model.score));
    let std = a.model.score.std(true).double_value(&[]);
    assert!((0.14..0.26).contains(&std), "std {std}");
}
