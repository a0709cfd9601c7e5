//! Image questions for PaliGemma on the real easy-VQA data: records read with their images,
//! encoded exactly as transformers' `PaliGemmaProcessor` does (ids, token types, labels, pixel
//! values), the errors a bad row gets, image folders per class, and collation.

mod common;

use std::path::{Path, PathBuf};

use ardpipe_data::image::ImageProcessor;
use ardpipe_data::{
    DatasetSpec, ErrorKind, FieldMap, Format, IGNORE_INDEX, OnError, Record, RecordKind,
    RecordStore, SkipReport, SupervisedExample, TextTokenizer, Turns, VisionBatch, VisionEncoder,
    VisionExample, class_prompt, judge, load,
};

/// PaliGemma's image placeholder count in these tests (the processor's `image_seq_length`).
const IMAGE_TOKENS: usize = 16;

fn vqa_fields() -> FieldMap {
    FieldMap {
        image: Some("image".into()),
        prompt: Some("question".into()),
        completion: Some("answer".into()),
        ..FieldMap::default()
    }
}

fn vqa_spec(file: &str) -> DatasetSpec {
    let mut spec = DatasetSpec::new([file], Format::Jsonl);
    spec.fields = vqa_fields();
    spec
}

/// ardpipe's own rebuild of the SmolLM2 GGUF tokenizer (what engine/models loads).
fn smollm() -> TextTokenizer {
    TextTokenizer::from_bpe(common::gguf::smollm_spec()).unwrap()
}

/// SmolLM2 has 49,152 tokens; the processor adds `<image>` after them.
fn encoder(tok: &TextTokenizer, max_length: usize) -> VisionEncoder {
    let image_token = tok.vocab_size() as u32;
    VisionEncoder::new(
        tok,
        image_token,
        IMAGE_TOKENS,
        max_length,
        ImageProcessor::siglip(64),
    )
    .unwrap()
}

/// Run `tests/peer/paligemma_inputs.py` (see its docstring) on `rows`.
fn paligemma_peer(rows: &[serde_json::Value], dir: &common::TempDir) -> serde_json::Value {
    let case = serde_json::json!({
        "gguf": common::gguf::smollm_gguf(),
        "size": 64,
        "image_seq_length": IMAGE_TOKENS,
        "rows": rows,
    });
    let case_path = dir.write("case.json", serde_json::to_vec(&case).unwrap());
    common::run_peer(
        "paligemma_inputs.py",
        &[case_path.as_os_str(), dir.path().as_os_str()],
    )
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn paligemma_inputs_match_transformers_on_easy_vqa() {
    let dir = common::TempDir::new("paligemma");
    let test_jsonl = common::asset("easyvqa", "test.jsonl");
    let base = test_jsonl.parent().unwrap();
    let mut spec = vqa_spec("test.jsonl");
    spec.preprocess.max_rows = Some(60);
    let all = load(&spec, base).unwrap().records;
    // Shape, colour and yes/no questions over several images.
    let records: Vec<&Record> = all.iter().step_by(6).collect();
    assert_eq!(records.len(), 10);
    assert_eq!(
        all[0].image.as_deref(),
        Some(base.join("test/images/0.png").as_path()),
        "the image is resolved from the JSONL's folder"
    );
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let Some(Turns::PromptCompletion { prompt, completion }) = &r.turns else {
                panic!("{r:?}")
            };
            serde_json::json!({"image": r.image, "question": prompt, "answer": completion})
        })
        .collect();
    let peer = paligemma_peer(&rows, &dir);
    let image_token = peer["image_token_id"].as_u64().unwrap() as u32;

    // Both tokenizers: ardpipe's rebuild from the GGUF, and transformers' own, saved as
    // tokenizer.json.
    let saved = TextTokenizer::from_file(&dir.path().join("tokenizer/tokenizer.json")).unwrap();
    for (name, tok) in [
        ("ardpipe's GGUF rebuild", smollm()),
        ("tokenizer.json", saved),
    ] {
        assert_eq!(image_token as usize, tok.vocab_size(), "{name}");
        assert_eq!(
            tok.bos_id(),
            tok.token_to_id(peer["bos_token"].as_str().unwrap()),
            "{name}"
        );
        assert_eq!(
            tok.eos_id(),
            tok.token_to_id(peer["eos_token"].as_str().unwrap()),
            "{name}"
        );
        let enc = VisionEncoder::new(
            &tok,
            image_token,
            IMAGE_TOKENS,
            64,
            ImageProcessor::siglip(64),
        )
        .unwrap();
        let examples: Vec<VisionExample> = records.iter().map(|r| enc.encode(r).unwrap()).collect();
        let mut worst = 0f32;
        for (i, (ex, want)) in examples
            .iter()
            .zip(peer["rows"].as_array().unwrap())
            .enumerate()
        {
            let ids: Vec<i64> = ex.text.ids.iter().map(|&t| i64::from(t)).collect();
            assert_eq!(ids, ints(&want["input_ids"]), "{name}: row {i} ids");
            let types = ints(&want["token_type_ids"]);
            let mask: Vec<bool> = types.iter().map(|&t| t == 1).collect();
            assert_eq!(ex.text.loss_mask, mask, "{name}: row {i} token types");
            assert_eq!(
                ex.prefix_len,
                types.iter().filter(|&&t| t == 0).count(),
                "{name}: row {i} prefix"
            );
            // The answer as the processor writes it (text + EOS text) is its tokens, then EOS.
            let Some(Turns::PromptCompletion { completion, .. }) = &records[i].turns else {
                unreachable!()
            };
            let mut answer = tok.encode(completion, false).unwrap().ids;
            answer.push(tok.eos_id().unwrap());
            assert_eq!(
                ex.text.ids[ex.prefix_len..],
                answer[..],
                "{name}: row {i} answer"
            );

            let bytes = std::fs::read(dir.path().join(format!("{i}.f32"))).unwrap();
            let pixels: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(ex.pixel_shape, [3, 64, 64]);
            assert_eq!(ex.pixel_values.len(), pixels.len());
            let max = ex
                .pixel_values
                .iter()
                .zip(&pixels)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            worst = worst.max(max);
        }
        assert!(worst <= 1e-2, "{name}: pixel values differ by {worst}");
        eprintln!(
            "{name}: ids, token types and labels equal on {} rows; pixel values max |Δ| {worst:.2e}",
            examples.len()
        );

        // The processor's labels are the ids on token type 1; the batch's are the next-token
        // targets: labels[j] is the processor's label at j + 1.
        let refs: Vec<&VisionExample> = examples.iter().collect();
        let batch = VisionBatch::collate(&refs, 0).unwrap();
        for (r, want) in peer["rows"].as_array().unwrap().iter().enumerate() {
            let labels = ints(&want["labels"]);
            let row = &batch.text.labels[r * batch.text.seq..(r + 1) * batch.text.seq];
            for (j, &l) in row.iter().enumerate() {
                let expected = labels.get(j + 1).copied().unwrap_or(IGNORE_INDEX);
                assert_eq!(l, expected, "{name}: row {r} label {j}");
            }
            assert_eq!(batch.prefix_len[r], examples[r].prefix_len as i64);
        }
        let pixels: Vec<f32> = examples
            .iter()
            .flat_map(|e| e.pixel_values.clone())
            .collect();
        assert_eq!(batch.pixel_values, pixels);
    }
}

fn png(split: &str, n: u32) -> Vec<u8> {
    std::fs::read(common::asset("easyvqa", &format!("{split}/images/{n}.png"))).unwrap()
}

#[test]
fn bad_image_rows_are_located_and_skippable() {
    let d = common::TempDir::new("vqa-bad-rows");
    d.write("images/ok.png", png("train", 1));
    let whole = png("train", 2);
    d.write("images/corrupt.png", &whole[..whole.len() / 2]);
    let absolute = common::asset("easyvqa", "train/images/3.png");
    let row = |image: &str| {
        format!(r#"{{"image": "{image}", "question": "what shape is it?", "answer": "circle"}}"#)
    };
    let jsonl = [
        row("images/ok.png"),
        row("images/missing.png"),
        row("images/corrupt.png"),
        r#"{"question": "what shape is it?", "answer": "circle"}"#.to_string(),
        row(""),
        row(&absolute.display().to_string()),
    ]
    .join("\n");
    let data = d.write("vqa.jsonl", jsonl);

    // A row without the image is a bad row at its line: it stops a read under `stop`…
    let e = load(&vqa_spec("vqa.jsonl"), d.path()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MissingField);
    let shown = e.to_string();
    assert!(
        shown.contains("vqa.jsonl:4: field `image` is missing"),
        "{shown}"
    );
    let scanned = RecordStore::scan(&vqa_spec("vqa.jsonl"), d.path()).unwrap_err();
    assert_eq!(scanned, e, "the scan stops with the reader's error");

    // …and is counted under `skip`, with the empty one.
    let mut spec = vqa_spec("vqa.jsonl");
    spec.on_error = OnError::Skip;
    let loaded = load(&spec, d.path()).unwrap();
    assert_eq!(loaded.skipped.skipped, 2);
    assert!(
        loaded.skipped.first_reasons[1].contains("vqa.jsonl:5: field `image` (the image) is empty"),
        "{:?}",
        loaded.skipped.first_reasons
    );
    let recs = loaded.records;
    assert_eq!(
        recs.iter().map(|r| r.origin.line).collect::<Vec<_>>(),
        [1, 2, 3, 6]
    );
    assert_eq!(
        recs[0].image.as_deref(),
        Some(d.path().join("images/ok.png").as_path())
    );
    assert_eq!(
        recs[3].image.as_deref(),
        Some(absolute.as_path()),
        "absolute paths are kept"
    );

    // The images are read when a record is encoded: a missing and a corrupt one are row errors
    // at the record's line, naming the image.
    let tok = smollm();
    let enc = encoder(&tok, 64);
    let results: Vec<_> = recs.iter().map(|r| enc.encode(r)).collect();
    assert!(results[0].is_ok() && results[3].is_ok());
    let missing = results[1].as_ref().unwrap_err();
    assert_eq!(missing.kind, ErrorKind::BadRow);
    assert_eq!(missing.file.as_deref(), Some(data.as_path()));
    let shown = missing.to_string();
    assert!(
        shown.contains("vqa.jsonl:2: image ")
            && shown.contains("images/missing.png does not exist")
            && shown.contains("resolved from the data file's folder"),
        "{shown}"
    );
    let corrupt = results[2].as_ref().unwrap_err().to_string();
    assert!(
        corrupt.contains("vqa.jsonl:3: image ")
            && corrupt.contains("images/corrupt.png: cannot decode the image"),
        "{corrupt}"
    );

    // The bad-row policy applies to them: counted under skip, the first stops under stop.
    let mut report = SkipReport::default();
    let kept = results
        .iter()
        .cloned()
        .filter_map(|r| judge(r, OnError::Skip, None, &mut report).unwrap())
        .count();
    assert_eq!((kept, report.skipped), (2, 2));
    let stop = results
        .iter()
        .cloned()
        .find_map(|r| judge(r, OnError::Stop, None, &mut SkipReport::default()).err())
        .unwrap()
        .to_string();
    assert!(
        stop.contains("vqa.jsonl:2") && stop.contains("on_bad_row = skip"),
        "{stop}"
    );

    // Too long for max_length: refused whole, not truncated.
    let short = encoder(&tok, 20);
    let e = short.encode(&recs[0]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRow);
    let shown = e.to_string();
    assert!(
        shown.contains("vqa.jsonl:1: 25 tokens > max_length 20"),
        "{shown}"
    );
}

#[test]
fn csv_image_paths_and_field_map_errors() {
    let d = common::TempDir::new("vqa-csv");
    d.write("sub/pics/a.png", png("test", 4));
    d.write(
        "sub/vqa.csv",
        "question,answer,picture\nwhat colour is the shape?,blue,pics/a.png\n",
    );
    let mut spec = DatasetSpec::new(
        ["sub/vqa.csv"],
        Format::Csv {
            delimiter: ',',
            header: true,
        },
    );
    spec.fields = FieldMap {
        image: Some("picture".into()),
        ..vqa_fields()
    };
    let recs = load(&spec, d.path()).unwrap().records;
    assert_eq!(
        recs[0].image.as_deref(),
        Some(d.path().join("sub/pics/a.png").as_path())
    );
    assert_eq!(
        spec.fields.kind().unwrap(),
        RecordKind::ImagePromptCompletion
    );
    let ex = encoder(&smollm(), 64).encode(&recs[0]).unwrap();
    assert_eq!(ex.text.ids[..IMAGE_TOKENS], [49152; IMAGE_TOKENS]);

    // A column the mapping names must exist (a configuration error, not a bad row).
    spec.fields.image = Some("image".into());
    let e = load(&spec, d.path()).unwrap_err().to_string();
    assert!(e.contains("column `image` is not in the header"), "{e}");

    // An image needs a question and an answer.
    let only_image = FieldMap {
        image: Some("image".into()),
        ..FieldMap::default()
    };
    let e = only_image.kind().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(
        e.message
            .contains("`image` (`image`) but no `prompt` and `completion`"),
        "{e}"
    );
    let with_chat = FieldMap {
        image: Some("image".into()),
        messages: Some("messages".into()),
        ..FieldMap::default()
    };
    assert_eq!(with_chat.kind().unwrap_err().kind, ErrorKind::Config);
    let e = load(
        &{
            let mut s = vqa_spec("x.jsonl");
            s.fields = only_image;
            s
        },
        d.path(),
    );
    assert!(e.is_err());
}

#[test]
fn parquet_image_paths_resolve_and_bad_rows_are_counted() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut spec = DatasetSpec::new(["vqa.parquet"], Format::Parquet);
    spec.fields = vqa_fields();
    let e = load(&spec, &fixtures).unwrap_err().to_string();
    assert!(
        e.contains("vqa.parquet: row 3: column `image` is null"),
        "{e}"
    );
    spec.on_error = OnError::Skip;
    let loaded = load(&spec, &fixtures).unwrap();
    assert_eq!(loaded.skipped.skipped, 2);
    assert!(
        loaded.skipped.first_reasons[1].contains("row 4: field `image` (the image) is empty"),
        "{:?}",
        loaded.skipped.first_reasons
    );
    let images: Vec<PathBuf> = loaded
        .records
        .iter()
        .map(|r| r.image.clone().unwrap())
        .collect();
    assert_eq!(
        images,
        [
            fixtures.join("images/0.png"),
            PathBuf::from("/data/vqa/images/1.png")
        ]
    );
}

#[test]
fn encoder_configuration_errors() {
    let tok = smollm();
    let new = |tok: &TextTokenizer, n: usize, max: usize, p: ImageProcessor| {
        VisionEncoder::new(tok, 49152, n, max, p)
            .map(|_| ())
            .unwrap_err()
    };
    let e = new(&tok, 0, 64, ImageProcessor::siglip(64));
    assert_eq!(e.kind, ErrorKind::Config);
    let e = new(&tok, 16, 17, ImageProcessor::siglip(64));
    assert!(e.message.contains("leaves no room"), "{e}");
    let no_resize = ImageProcessor {
        size: None,
        ..ImageProcessor::siglip(64)
    };
    assert!(
        new(&tok, 16, 64, no_resize)
            .message
            .contains("does not resize")
    );
    // A tokenizer without BOS.
    let mut spec = common::gguf::smollm_spec();
    spec.bos = None;
    let no_bos = TextTokenizer::from_bpe(spec).unwrap();
    assert_eq!(no_bos.bos_id(), None);
    let e = new(&no_bos, 16, 64, ImageProcessor::siglip(64));
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("no beginning-of-sequence token"), "{e}");
}

#[test]
fn image_folders_per_class_with_a_prompt_template() {
    let d = common::TempDir::new("vqa-folders");
    d.write("root/circle/a.png", png("train", 10));
    d.write("root/circle/b.PNG", png("train", 11));
    d.write("root/circle/notes.txt", "not an image");
    d.write("root/triangle/c.png", png("train", 12));
    d.write("root/empty/.keep", "");
    let spec = DatasetSpec::new(["root"], Format::ImageFolderPerClass);
    let mut spec_ws = spec.clone();
    spec_ws.preprocess.collapse_whitespace = true;
    let recs = load(&spec_ws, d.path()).unwrap().records;
    let seen: Vec<(String, PathBuf)> = recs
        .iter()
        .map(|r| (r.label.clone().unwrap(), r.image.clone().unwrap()))
        .collect();
    let root = d.path().join("root");
    assert_eq!(
        seen,
        [
            ("circle".to_string(), root.join("circle/a.png")),
            ("circle".to_string(), root.join("circle/b.PNG")),
            ("triangle".to_string(), root.join("triangle/c.png")),
        ]
    );
    // The indexed store reads the same records.
    let (store, _) = RecordStore::scan(&spec, d.path()).unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(store.get(2).unwrap().image, recs[2].image);

    // Without a question the encoder says how to make one; with the template it encodes.
    let enc = encoder(&smollm(), 64);
    let e = enc.encode(&recs[0]).unwrap_err().to_string();
    assert!(
        e.contains("no question and answer") && e.contains("class_prompt"),
        "{e}"
    );
    let mut rec = recs[2].clone();
    rec.turns = Some(class_prompt(&rec, "what shape is this?", "a {label}").unwrap());
    assert_eq!(
        rec.turns,
        Some(Turns::PromptCompletion {
            prompt: "what shape is this?".into(),
            completion: "a triangle".into()
        })
    );
    let ex = enc.encode(&rec).unwrap();
    let tok = smollm();
    assert_eq!(
        tok.decode(&ex.text.ids[ex.prefix_len..], false).unwrap(),
        "a triangle<|im_end|>"
    );
    assert!(class_prompt(&rec, "q", "no placeholder").is_err());
    let mut unlabelled = rec.clone();
    unlabelled.label = None;
    assert_eq!(
        class_prompt(&unlabelled, "q", "{label}").unwrap_err().kind,
        ErrorKind::BadRow
    );

    // A root with class folders but no images is an error saying what is read.
    d.write("texts/spam/a.txt", "hello");
    let e = load(
        &DatasetSpec::new(["texts"], Format::ImageFolderPerClass),
        d.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no image files") && e.contains("*.png"), "{e}");
}

fn example(ids: &[u32], prefix_len: usize, pixel: f32) -> VisionExample {
    VisionExample {
        text: SupervisedExample {
            ids: ids.to_vec(),
            loss_mask: (0..ids.len()).map(|j| j >= prefix_len).collect(),
        },
        prefix_len,
        pixel_values: vec![pixel; 3 * 2 * 2],
        pixel_shape: [3, 2, 2],
    }
}

#[test]
fn collation_pads_right_and_shifts_labels() {
    // image image bos q | a eos
    let a = example(&[9, 9, 1, 5, 7, 2], 4, 0.5);
    let b = example(&[9, 9, 1, 6, 8], 4, -0.5);
    let batch = VisionBatch::collate(&[&a, &b], 0).unwrap();
    assert_eq!(batch.text.shape(), [2, 6]);
    assert_eq!(batch.pixel_values_shape(), [2, 3, 2, 2]);
    assert_eq!(batch.text.input_ids, [9, 9, 1, 5, 7, 2, 9, 9, 1, 6, 8, 0]);
    assert_eq!(
        batch.text.attention_mask,
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    );
    // The last question token predicts the first answer token; the last token predicts nothing.
    assert_eq!(
        batch.text.labels,
        [
            -100, -100, -100, 7, 2, -100, -100, -100, -100, 8, -100, -100
        ]
    );
    assert_eq!(batch.prefix_len, [4, 4]);
    assert_eq!(batch.text.targets(), 3);
    assert_eq!(batch.pixel_values[..12], [0.5; 12]);
    assert_eq!(batch.pixel_values[12..], [-0.5; 12]);

    let mut other = example(&[9, 1, 2], 2, 0.0);
    other.pixel_shape = [3, 1, 4];
    assert_eq!(
        VisionBatch::collate(&[&a, &other], 0).unwrap_err().kind,
        ErrorKind::Config
    );
    assert_eq!(
        VisionBatch::collate(&[], 0).unwrap_err().kind,
        ErrorKind::Empty
    );
}
