//! The example datasets from set-up: health tweets (16 classes) and Shakespeare (42 plays).

mod common;

use ardpipe_data::{
    ClassificationBatcher, DatasetSpec, Format, LabelVocab, LastBlock, LmPacker, TextMode,
    TextTokenizer, TruncationSide, fraction_split, load,
};

fn base(asset: &str, probe: &str) -> std::path::PathBuf {
    common::asset(asset, probe).parent().unwrap().to_path_buf()
}

#[test]
fn health_tweets_load_with_16_labels_and_batch() {
    let dir = base("healthtweets", "healthtweets.csv");
    let mut spec = DatasetSpec::new(
        ["healthtweets.csv"],
        Format::Csv {
            delimiter: ',',
            header: true,
        },
    );
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
    let vocab = LabelVocab::new(loaded.records.iter().map(|r| r.label.clone().unwrap()));
    assert_eq!(vocab.len(), 16);
    assert!(vocab.id("goodhealth").is_some() && vocab.id("nytimeshealth").is_some());

    let split = fraction_split(loaded.records.len(), 0.1, 0.0, 1234, 1).unwrap();
    let pick = |idx: &[usize]| {
        idx.iter()
            .map(|&i| loaded.records[i].clone())
            .collect::<Vec<_>>()
    };
    let (train, eval) = (pick(&split.train), pick(&split.validation));
    assert_eq!(eval.len(), 6_333); // round(63,325 × 0.1)
    // With 16 classes of thousands of rows each, a random 10% sees every class.
    assert!(eval.iter().all(|r| vocab.encode(r).is_ok()));

    let tok = TextTokenizer::from_file(&common::asset("minilm", "tokenizer.json")).unwrap();
    let batcher = ClassificationBatcher::new(&tok, Some(vocab), 64, TruncationSide::Right).unwrap();
    let order = ardpipe_data::epoch_permutation(train.len(), 7, 0);
    let rows: Vec<&ardpipe_data::Record> = order[..32].iter().map(|&i| &train[i]).collect();
    let b = batcher.batch(&rows).unwrap();
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
            .all(|b| b.input_ids.len() == 128 && b.segments.iter().all(|&s| s == 1))
    );
    // Documents are joined with EOS ([SEP] for this tokenizer).
    assert!(blocks.iter().flat_map(|b| &b.labels).any(|&t| t == 102));
}

/// The chat SFT asset: set-up's conversion of the ChatterBot corpus (English) into chat JSONL
/// (scripts/setup.py, `chatterbot_chat_jsonl`). Every line is one conversation that starts with
/// the user, alternates, and ends with an assistant answer; `category` is the YAML file's stem.
#[test]
fn chatterbot_chat_jsonl_is_well_formed_conversations() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        messages: Vec<ardpipe_data::chat::ChatMessage>,
        category: String,
    }
    let path = common::asset("chatterbot", "chat.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n') && !text.contains('\r'));
    let mut per_category = std::collections::BTreeMap::<String, usize>::new();
    let mut messages = 0;
    for (i, raw) in text.lines().enumerate() {
        let line: Line = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("{}:{}: {e}\n{raw}", path.display(), i + 1));
        let n = line.messages.len();
        assert!(
            n >= 2 && n.is_multiple_of(2),
            "line {}: {n} messages",
            i + 1
        );
        for (k, m) in line.messages.iter().enumerate() {
            let role = if k % 2 == 0 { "user" } else { "assistant" };
            assert_eq!(m.role, role, "line {} message {k}", i + 1);
            assert!(!m.content.trim().is_empty(), "line {} message {k}", i + 1);
        }
        messages += n;
        *per_category.entry(line.category).or_default() += 1;
    }
    // 2,026 conversations in the 21 English files; trivia.yml's one written as a bare string
    // (a single statement, no answer) is skipped.
    assert_eq!(per_category.values().sum::<usize>(), 2_025);
    assert_eq!(per_category.len(), 21, "{per_category:?}");
    assert_eq!(per_category["tech_support"], 1_050);
    assert_eq!(per_category["trivia"], 260);
    assert_eq!(messages, 4_288);
    // The licence travels with the data.
    let licence = std::fs::read_to_string(common::asset("chatterbot", "license.md")).unwrap();
    assert!(licence.contains("Copyright (c) 2017, Gunther Cox"));
}
