//! Label vocabularies, splits, shuffling, classification batches and LM packing.

mod common;

use std::path::Path;
use std::sync::Arc;

use ardpipe_data::{
    CausalBatch, ClassificationBatcher, DataError, ErrorKind, LabelVocab, LastBlock, LmPacker,
    Origin, Position, Record, ShuffledOrder, TextTokenizer, TruncationSide,
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
fn label_vocab_is_sorted_stable_and_round_trips() {
    let a = [
        rec("x", Some("b"), 1),
        rec("y", Some("a"), 2),
        rec("z", Some("b"), 3),
    ];
    let v = LabelVocab::from_records(&a).unwrap();
    assert_eq!(v.labels(), ["a", "b"]);
    let reversed: Vec<Record> = a.iter().rev().cloned().collect();
    assert_eq!(LabelVocab::from_records(&reversed).unwrap(), v);
    assert_eq!(v.encode(&a[0]).unwrap(), 1);
    assert_eq!(v.name(0), Some("a"));

    let d = common::TempDir::new("labels");
    let p = d.path().join("labels.json");
    v.save(&p).unwrap();
    let back = LabelVocab::load(&p).unwrap();
    assert_eq!(back, v);
    assert_eq!(back.id("b"), Some(1));
    std::fs::write(&p, "{\"labels\": [\"b\", \"a\"]}").unwrap();
    assert!(
        LabelVocab::load(&p)
            .unwrap_err()
            .to_string()
            .contains("not sorted")
    );
    std::fs::write(&p, "nonsense").unwrap();
    assert_eq!(LabelVocab::load(&p).unwrap_err().kind, ErrorKind::Config);
}

#[test]
fn unknown_eval_labels_are_named() {
    let train = [rec("x", Some("sports"), 1), rec("y", Some("health"), 2)];
    let v = LabelVocab::from_records(&train).unwrap();
    let eval = [
        rec("a", Some("health"), 5),
        rec("b", Some("sprots"), 6),
        rec("c", Some("sprots"), 7),
        rec("d", Some("politics"), 9),
    ];
    let e = v.check_split("eval", &eval).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownLabel);
    let s = e.to_string();
    assert!(s.contains("`sprots` (2 rows, first at d.csv:6)"), "{s}");
    assert!(s.contains("`politics` (1 rows, first at d.csv:9)"), "{s}");
    let e = v.encode(&eval[1]).unwrap_err();
    assert_eq!(e.line, Some(6));
    assert!(e.help.unwrap().contains("did you mean `sports`?"));
    assert!(v.check_split("eval", &eval[..1]).is_ok());
}

#[test]
fn missing_labels_are_errors() {
    let e = LabelVocab::from_records(&[rec("x", None, 4)]).unwrap_err();
    assert_eq!((e.kind, e.line), (ErrorKind::MissingField, Some(4)));
    let e = LabelVocab::from_records(&[]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Empty);
}

// ---------- splits and shuffling ----------

#[test]
fn shuffling_is_deterministic_per_epoch_and_resumes_mid_epoch() {
    let mut a = ShuffledOrder::new(10, 42, true);
    let mut seen = Vec::new();
    let mut positions = Vec::new();
    for _ in 0..8 {
        let (idx, pos) = a.next_batch(3, false);
        seen.push(idx);
        positions.push(pos);
    }
    // Epoch 0: 3+3+3+1, then epoch 1 starts.
    assert_eq!(seen[3].len(), 1);
    assert_eq!(
        positions[3],
        Position {
            epoch: 0,
            index: 10
        }
    );
    assert_eq!(positions[4], Position { epoch: 1, index: 3 });
    let mut epoch0: Vec<usize> = seen[..4].concat();
    assert_ne!(epoch0, (0..10).collect::<Vec<_>>(), "shuffled");
    epoch0.sort();
    assert_eq!(epoch0, (0..10).collect::<Vec<_>>(), "a permutation");
    assert_ne!(seen[..4].concat(), seen[4..8].concat(), "epochs differ");
    // A killed run resumes from its saved position and sees the same batches.
    let mut resumed = ShuffledOrder::resume(10, 42, true, positions[4]);
    assert_eq!(resumed.next_batch(3, false).0, seen[5]);
    assert_eq!(resumed.next_batch(3, false).0, seen[6]);
    // Same seed, same order; known values pin the generator across platforms and versions.
    assert_eq!(
        ardpipe_data::epoch_permutation(10, 42, 0),
        seen[..4].concat()
    );
    // drop_last never hands out a short batch.
    let mut d = ShuffledOrder::new(10, 1, false);
    let sizes: Vec<usize> = (0..4).map(|_| d.next_batch(4, true).0.len()).collect();
    assert_eq!(sizes, [4, 4, 4, 4]);
    assert_eq!(d.position(), Position { epoch: 1, index: 8 });
}

// ---------- classification batches ----------

#[test]
fn classification_batch_pads_masks_truncates_and_labels() {
    let tok = minilm();
    let rows = [
        rec("A man is playing a guitar.", Some("music"), 1),
        rec("Hi.", Some("chat"), 2),
    ];
    let vocab = LabelVocab::from_records(&rows).unwrap();
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
    let batch = short.batch_indices(&rows, &[0]).unwrap();
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
