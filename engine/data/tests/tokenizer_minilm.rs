//! The wrapper on the real MiniLM tokenizer.json (BERT WordPiece, fixed padding to 128 in the file).

mod common;

use ardpipe_data::{ErrorKind, TextTokenizer, TruncationSide};

fn minilm() -> TextTokenizer {
    TextTokenizer::from_file(&common::asset("minilm", "tokenizer.json")).unwrap()
}

#[test]
fn encodes_with_cls_sep_and_no_padding() {
    let tok = minilm();
    let enc = tok.encode("A man is playing a guitar.", true).unwrap();
    // Without trap 2's fix this would be 128 ids, most of them [PAD].
    assert_eq!(
        enc.ids,
        [101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102]
    );
    assert_eq!(enc.type_ids, vec![0; 9]);
    let bare = tok.encode("A man is playing a guitar.", false).unwrap();
    assert_eq!(bare.ids, enc.ids[1..8]);
}

#[test]
fn pair_gets_segment_ids() {
    let tok = minilm();
    let enc = tok
        .encode_pair(
            "A man is playing a guitar.",
            "Someone plays an instrument.",
            true,
        )
        .unwrap();
    assert_eq!(
        enc.ids,
        [
            101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102, 2619, 3248, 2019, 6602, 1012, 102
        ]
    );
    assert_eq!(enc.type_ids, [vec![0; 9], vec![1; 6]].concat());
}

#[test]
fn special_ids_vocab_and_decode() {
    let tok = minilm();
    assert_eq!(tok.vocab_size(), 30522);
    assert_eq!(tok.bos_id(), Some(101));
    assert_eq!(tok.eos_id(), Some(102));
    assert_eq!(tok.pad_id(), Some(0));
    assert_eq!(tok.token_to_id("guitar"), Some(2858));
    assert_eq!(tok.id_to_token(2858).as_deref(), Some("guitar"));
    assert!(tok.is_special(101));
    assert!(!tok.is_special(2858));
    let ids = tok.encode("A man is playing a guitar.", true).unwrap().ids;
    assert_eq!(
        tok.decode(&ids, true).unwrap(),
        "a man is playing a guitar."
    );
    assert!(tok.decode(&ids, false).unwrap().starts_with("[CLS] a man"));
    let err = tok.decode(&[40_000], true).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Tokenizer);
    assert!(err.to_string().contains("40000"), "{err}");
}

#[test]
fn truncation_right_left_and_pairs() {
    let tok = minilm();
    let right = tok.with_truncation(5, TruncationSide::Right).unwrap();
    let enc = right.encode("A man is playing a guitar.", true).unwrap();
    assert_eq!(enc.ids, [101, 1037, 2158, 2003, 102]);
    let left = tok.with_truncation(5, TruncationSide::Left).unwrap();
    let enc = left.encode("A man is playing a guitar.", true).unwrap();
    assert_eq!(enc.ids, [101, 1037, 2858, 1012, 102]);
    // Pairs lose tokens from the longer text first, and the specials always stay.
    let enc = tok
        .with_truncation(9, TruncationSide::Right)
        .unwrap()
        .encode_pair("A man is playing a guitar.", "Someone plays.", true)
        .unwrap();
    assert_eq!(enc.ids, [101, 1037, 2158, 2003, 102, 2619, 3248, 1012, 102]);
    // The untouched original still does not truncate.
    assert_eq!(
        tok.encode("A man is playing a guitar.", true)
            .unwrap()
            .ids
            .len(),
        9
    );
}

#[test]
fn truncation_too_short_for_specials_is_an_error() {
    let err = minilm()
        .with_truncation(3, TruncationSide::Right)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.to_string().contains("special tokens"), "{err}");
}

#[test]
fn missing_and_bad_files_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("ardpipe-data-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("nope.json");
    let err = TextTokenizer::from_file(&missing).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Tokenizer);
    assert!(err.to_string().contains("nope.json"), "{err}");
    let bad = dir.join("tokenizer.json");
    std::fs::write(&bad, "{\"not\": \"a tokenizer\"}").unwrap();
    let err = TextTokenizer::from_file(&bad).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    assert!(err.help.is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}
