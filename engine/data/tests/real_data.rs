//! The example datasets from set-up: health tweets (16 classes) and Shakespeare (42 plays).

mod common;

use ardpipe_data::{
    ClassificationBatcher, DatasetSpec, Format, LabelVocab, LastBlock, LmPacker, ShuffledOrder,
    TextMode, TextTokenizer, TruncationSide, load, ratio_split,
};

fn base(asset: &str, probe: &str) -> std::path::PathBuf {
    common::asset(asset, probe).parent().unwrap().to_path_buf()
}

#[test]
fn health_tweets_load_with_16_labels_and_batch() {
    let dir = base("healthtweets", "healthtweets.csv");
    let mut spec = DatasetSpec::new(["healthtweets.csv"], Format::Csv { delimiter: ',' });
    spec.fields.label = Some("source_id".into());
    spec.preprocess.strip = vec![r"http\S+".into()];
    spec.preprocess.label_regex = Some("^(.*)-[^-]*$".into());
    // One tweet (line 62942) is nothing but a URL: empty after stripping, a bad row under `stop`.
    let e = load(&spec, &dir).unwrap_err();
    assert_eq!(e.line, Some(62_942), "{e}");
    spec.on_error = ardpipe_data::OnError::Skip;
    let loaded = load(&spec, &dir).unwrap();
    assert_eq!(loaded.skipped.skipped, 1);
    assert_eq!(loaded.records.len() + 1, 63_326);
    assert!(
        loaded
            .records
            .iter()
            .all(|r| !r.text.contains("http://") && !r.text.contains("https://"))
    );
    let vocab = LabelVocab::from_records(&loaded.records).unwrap();
    assert_eq!(vocab.len(), 16);
    assert!(vocab.id("goodhealth").is_some() && vocab.id("nytimeshealth").is_some());

    let (train, eval) = ratio_split(loaded.records, 0.1, 1234).unwrap();
    assert_eq!(eval.len(), 6_333); // round(63,325 × 0.1)
    // With 16 classes of thousands of rows each, a random 10% sees every class.
    vocab.check_split("eval", &eval).unwrap();

    let tok = TextTokenizer::from_file(&common::asset("minilm", "tokenizer.json")).unwrap();
    let batcher = ClassificationBatcher::new(&tok, Some(vocab), 64, TruncationSide::Right).unwrap();
    let mut order = ShuffledOrder::new(train.len(), 7, true);
    let (idx, _) = order.next_batch(32, true);
    let b = batcher.batch_indices(&train, &idx).unwrap();
    assert_eq!(b.batch, 32);
    assert!(b.seq <= 64 && b.seq > 5);
    assert_eq!(b.labels.len(), 32);
    assert!(b.labels.iter().all(|&l| (0..16).contains(&l)));
    // Dynamic padding: the longest row has no padding.
    assert!((0..32).any(|r| b.attention_mask[r * b.seq + b.seq - 1] == 1));
}

#[test]
fn shakespeare_loads_42_plays_and_packs_blocks() {
    let dir = base("shakespeare", "hamlet_gut.txt");
    let mut spec = DatasetSpec::new(
        ["*.txt"],
        Format::Text {
            mode: TextMode::File,
        },
    );
    spec.label_from_stem = true;
    let loaded = load(&spec, &dir).unwrap();
    assert_eq!(loaded.records.len(), 42);
    assert!(
        loaded
            .records
            .iter()
            .any(|r| r.label.as_deref() == Some("hamlet_gut"))
    );
    let total: usize = loaded.records.iter().map(|r| r.text.len()).sum();
    assert!(total > 5_000_000, "{total} bytes");

    // Documents mode over one play, then a few LM blocks from a streaming reader.
    let hamlet = DatasetSpec::new(
        ["hamlet_gut.txt"],
        Format::Text {
            mode: TextMode::Documents,
        },
    );
    let reader = ardpipe_data::DatasetReader::open(&hamlet, &dir).unwrap();
    let tok = TextTokenizer::from_file(&common::asset("minilm", "tokenizer.json")).unwrap();
    let blocks: Vec<_> = LmPacker::new(reader, &tok, 128, LastBlock::Drop)
        .unwrap()
        .take(20)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(blocks.len(), 20);
    assert!(
        blocks
            .iter()
            .all(|b| b.input_ids.len() == 128 && b.attention_mask.iter().all(|&m| m == 1))
    );
    // Documents are joined with EOS ([SEP] for this tokenizer).
    assert!(blocks.iter().flat_map(|b| &b.input_ids).any(|&t| t == 102));
}
