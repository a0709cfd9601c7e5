//! Label vocabularies, shuffling, classification batches and LM packing.

mod common;

use std::path::Path;
use std::sync::Arc;

use ardpipe_data::{
    CausalBatch, ClassificationBatcher, DataError, ErrorKind, LabelVocab, LastBlock, LmPacker,
    Origin, Record, TextTokenizer, TruncationSide,
};

fn rec(text: &str, label: Option<&str>, line: u64) -> Record {
    let mut r = Record::new(
        text,
        Origin {
            file: Arc::from(Path::new("d.csv")),
            line,
        },
    );
    r.label = label.map(str::to_string);
    r
}

fn minilm() -> TextTokenizer {
    TextTokenizer::from_file(&common::asset("minilm", "tokenizer.json")).unwrap()
}

// ---------- labels ----------

#[test]
fn label_vocab_is_sorted_and_stable() {
    let v = LabelVocab::new(["b", "a", "b"]);
    assert_eq!(v.labels(), ["a", "b"]);
    assert_eq!(LabelVocab::new(["a", "b"]), v);
    assert_eq!(v.encode(&rec("x", Some("b"), 1)).unwrap(), 1);
    assert_eq!(v.name(0), Some("a"));
    assert_eq!(v.id("b"), Some(1));
}

#[test]
fn unknown_labels_are_named() {
    let v = LabelVocab::new(["sports", "health"]);
    let e = v.encode(&rec("b", Some("sprots"), 6)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownLabel);
    assert_eq!(e.line, Some(6));
    assert!(e.help.unwrap().contains("did you mean `sports`?"));
}

#[test]
fn missing_labels_are_errors() {
    let v = LabelVocab::new(["a", "b"]);
    let e = v.encode(&rec("x", None, 4)).unwrap_err();
    assert_eq!((e.kind, e.line), (ErrorKind::MissingField, Some(4)));
}

// ---------- shuffling ----------

#[test]
fn epoch_order_is_a_seeded_permutation_per_epoch() {
    let e0 = ardpipe_data::epoch_permutation(10, 42, 0);
    let e1 = ardpipe_data::epoch_permutation(10, 42, 1);
    assert_ne!(e0, (0..10).collect::<Vec<_>>(), "shuffled");
    let mut sorted = e0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>(), "a permutation");
    assert_ne!(e0, e1, "epochs differ");
    // A function of (seed, epoch) alone: a resumed run rebuilds any epoch's order.
    assert_eq!(ardpipe_data::epoch_permutation(10, 42, 1), e1);
    assert_ne!(
        ardpipe_data::epoch_permutation(10, 43, 0),
        e0,
        "seeds differ"
    );
}

// ---------- classification batches ----------

#[test]
fn classification_batch_pads_masks_truncates_and_labels() {
    let tok = minilm();
    let rows = [
        rec("A man is playing a guitar.", Some("music"), 1),
        rec("Hi.", Some("chat"), 2),
    ];
    let vocab = LabelVocab::new(["music", "chat"]);
    let b =
        ClassificationBatcher::new(&tok, Some(vocab.clone()), 64, TruncationSide::Right).unwrap();
    let batch = b.batch(&[&rows[0], &rows[1]]).unwrap();
    assert_eq!(batch.shape(), [2, 9]);
    assert_eq!(
        &batch.input_ids[..9],
        [101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102]
    );
    let hi = &batch.input_ids[9..];
    assert_eq!(&hi[..2], [101, tok.token_to_id("hi").unwrap() as i64]);
    assert_eq!(&hi[3..], [102, 0, 0, 0, 0, 0]);
    assert_eq!(&batch.attention_mask[9..], [1, 1, 1, 1, 0, 0, 0, 0, 0]);
    assert_eq!(batch.labels, [1, 0]);
    assert!(batch.token_type_ids.iter().all(|&t| t == 0));

    // Truncation to max_length keeps [CLS] … [SEP].
    let short = ClassificationBatcher::new(&tok, None, 5, TruncationSide::Left).unwrap();
    let batch = short.batch(&[&rows[0]]).unwrap();
    assert_eq!(batch.input_ids, [101, 1037, 2858, 1012, 102]);
    assert!(batch.labels.is_empty());

    // Pairs get segment ids.
    let mut pair = rec("A man.", Some("music"), 3);
    pair.text_pair = Some("Someone.".into());
    let batch = b.batch(&[&pair]).unwrap();
    assert_eq!(batch.token_type_ids, [0, 0, 0, 0, 0, 1, 1, 1]);

    // Errors carry the row's location.
    let unknown = rec("x", Some("sports"), 12);
    let e = b.batch(&[&unknown]).unwrap_err();
    assert_eq!((e.kind, e.line), (ErrorKind::UnknownLabel, Some(12)));
    assert_eq!(b.batch(&[]).unwrap_err().kind, ErrorKind::Empty);
}

// ---------- LM packing ----------

fn docs(texts: &[&str]) -> impl Iterator<Item = Result<Record, DataError>> {
    let v: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Ok(rec(t, None, i as u64 + 1)))
        .collect();
    v.into_iter()
}

#[test]
fn lm_packing_joins_with_eos_and_drops_or_pads_the_tail() {
    let tok = minilm(); // eos = [SEP] 102, pad = [PAD] 0; adds [CLS] 101 first, its bos
    let texts = ["a man", "is playing a guitar"]; // 2 + 4 ids, +1 eos each = 8 tokens
    let all: Vec<i64> = vec![1037, 2158, 102, 2003, 2652, 1037, 2858, 102];
    // Each row: [CLS], then 3 stream tokens as labels (the stream shifted by one).
    let rows: Vec<_> = LmPacker::new(docs(&texts), &tok, 3, LastBlock::Drop)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].input_ids, [101, 1037, 2158]);
    assert_eq!(
        rows.iter()
            .flat_map(|r| r.labels.clone())
            .collect::<Vec<_>>(),
        all[..6]
    );
    let padded: Vec<_> = LmPacker::new(docs(&texts), &tok, 3, LastBlock::Pad)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(padded.len(), 3);
    assert_eq!(padded[2].input_ids, [101, 2858]);
    assert_eq!(padded[2].labels, [2858, 102]);
    let batch = CausalBatch::from_rows(&padded, Some(3), tok.pad_id().unwrap()).unwrap();
    assert_eq!((batch.batch, batch.seq), (3, 3));
    assert_eq!(batch.input_ids[6..], [101, 2858, 0]);
    assert_eq!(batch.attention_mask[6..], [1, 1, 0]);
    assert_eq!(batch.labels[6..], [2858, 102, -100]);

    // Blocks longer than any one document span documents.
    let one: Vec<_> = LmPacker::new(docs(&texts), &tok, 8, LastBlock::Drop)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(one[0].labels, all);
}

#[test]
fn lm_packer_errors() {
    let tok = minilm();
    assert_eq!(
        LmPacker::new(docs(&["x"]), &tok, 1, LastBlock::Drop)
            .err()
            .unwrap()
            .kind,
        ErrorKind::Config
    );
    let bad = vec![
        Ok(rec("a man", None, 1)),
        Err(DataError::new(ErrorKind::BadRow, "broken").at("d.txt", 2)),
    ];
    let out: Vec<_> = LmPacker::new(bad.into_iter(), &tok, 4, LastBlock::Drop)
        .unwrap()
        .collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].as_ref().unwrap_err().line, Some(2));
    assert!(CausalBatch::from_rows(&[], None, 0).is_err());
}
