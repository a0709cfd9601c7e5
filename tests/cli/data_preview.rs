//! `ardpipe data preview` on the shipped pipelines and their real assets: the ChatterBot
//! conversations rendered with SmolLM2's chat template (pipelines/instruct.ard) and the
//! quickstart's tweet classification. The expected texts come from the data files themselves.
//! No weights are read: the previews are run against copies of the models that hold none (a
//! GGUF with the real model's metadata and no tensor, a Hugging Face folder without its
//! safetensors) and must equal the previews against the real models.

use std::path::{Path, PathBuf};

use ardpipe_engine::models::gguf::GgufFile;
use ardpipe_engine::models::gguf::writer::GgufWriter;
use serde_json::Value;

use crate::{ardpipe, stderr, stdout};

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
        .display()
        .to_string()
}

fn scratch(name: &str) -> PathBuf {
    crate::fresh_dir(&format!("preview-{name}"))
}

fn run_ok(args: &[&str]) -> String {
    let out = ardpipe(args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
}

/// Line `line` (1-based) of a file.
fn line_of(file: &str, line: u64) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .nth(line as usize - 1)
        .unwrap()
        .to_string()
}

/// The text between `[[` and `]]` (trained on) and outside (masked).
fn marked_parts(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    let mut rest = text;
    while let Some(a) = rest.find("[[") {
        outside.push(rest[..a].to_string());
        let b = rest[a..].find("]]").expect("every [[ is closed") + a;
        inside.push(rest[a + 2..b].to_string());
        rest = &rest[b + 2..];
    }
    outside.push(rest.to_string());
    (inside, outside)
}

/// Undo the preview's 4-space indentation of an example's text.
fn dedent(block: &str) -> String {
    block
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn chat_preview_marks_the_answers_as_trained_and_the_user_turns_as_masked() {
    let instruct = repo("pipelines/instruct.ard");
    let chat = crate::asset("chatterbot/chat.jsonl").display().to_string();
    let text = run_ok(&[
        "data",
        "preview",
        &instruct,
        "--split",
        "validation",
        "-n",
        "2",
    ]);

    // Split sizes: every line of the file is a conversation, 10% of them held out.
    let lines = std::fs::read_to_string(&chat).unwrap().lines().count();
    let count = |prefix: &str| -> usize {
        let l = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in\n{text}"));
        l[prefix.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (train, val) = (count("train      "), count("validation "));
    assert_eq!(train + val, lines, "{text}");
    assert_eq!(val, (lines as f64 * 0.1).round() as usize, "{text}");
    assert!(text.contains("skipped    0 bad rows"), "{text}");
    assert!(
        text.contains(
            "batching   kind supervised, max_length 256, packing true, train_on completions"
        ),
        "{text}"
    );

    // The first validation example: its source line, and its rendering with the answer in [[ ]].
    let head = text
        .lines()
        .find(|l| l.starts_with("#1 "))
        .unwrap_or_else(|| panic!("{text}"));
    let at = head[3..].split(' ').next().unwrap();
    let (file, line) = at.rsplit_once(':').unwrap();
    assert_eq!(
        Path::new(file).canonicalize().unwrap(),
        Path::new(&chat).canonicalize().unwrap()
    );
    let record: Value = serde_json::from_str(&line_of(file, line.parse().unwrap())).unwrap();
    let messages = record["messages"].as_array().unwrap();
    let body_start = text.find(head).unwrap() + head.len() + 1;
    let body_end = text[body_start..]
        .find("\n#2 ")
        .map_or(text.len(), |e| body_start + e);
    let body = dedent(&text[body_start..body_end]);
    let (trained, masked) = marked_parts(&body);
    let answers: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(trained.len(), answers.len(), "{body}");
    for (t, a) in trained.iter().zip(&answers) {
        // The answer and the end of turn the template closes it with.
        assert_eq!(t.trim_end(), format!("{a}<|im_end|>"), "{body}");
    }
    for m in messages.iter().filter(|m| m["role"] == "user") {
        let u = m["content"].as_str().unwrap();
        assert!(
            masked
                .iter()
                .any(|o| o.contains(&format!("<|im_start|>user\n{u}<|im_end|>"))),
            "user turn {u:?} not masked in\n{body}"
        );
    }

    // Packed rows list their examples, the first row starting with the first example.
    assert!(
        text.contains("packed rows (examples never attend to each other)"),
        "{text}"
    );
    assert!(
        text.contains("  segment 1 tokens 0..") && text.contains(&format!("from {at}")),
        "{text}"
    );
}

#[test]
fn chat_preview_json_loss_mask_matches_the_spans_and_needs_no_weights() {
    let instruct = repo("pipelines/instruct.ard");
    let args = [
        "data",
        "preview",
        instruct.as_str(),
        "--split",
        "validation",
        "-n",
        "4",
        "--format",
        "json",
    ];
    let json = run_ok(&args);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["split"], "validation");
    let s = &v["sizes"];
    assert!(s["train_examples"].as_u64().unwrap() > 1000, "{s}");
    assert_eq!(s["eval_examples"], s["eval_records"]);
    assert_eq!(v["plan"]["batching"]["packing"], true);

    let examples = v["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 4);
    for e in examples {
        let ids = e["ids"].as_array().unwrap();
        let pieces = e["pieces"].as_array().unwrap();
        let mask: Vec<bool> = e["loss_mask"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_bool().unwrap())
            .collect();
        assert_eq!(e["length"].as_u64().unwrap() as usize, ids.len());
        assert_eq!((pieces.len(), mask.len()), (ids.len(), ids.len()));
        // Each span is a run of equal loss mask, its text the run's pieces.
        let spans = e["spans"].as_array().unwrap();
        let mut j = 0;
        for span in spans {
            let trained = span["trained"].as_bool().unwrap();
            let start = j;
            while j < mask.len() && mask[j] == trained {
                j += 1;
            }
            assert!(j > start, "empty span {span} in {e}");
            let joined: String = pieces[start..j]
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            assert_eq!(span["text"].as_str().unwrap(), joined);
        }
        assert_eq!(j, mask.len());
        // The trained-on spans are the conversation's answers (chat ASCII text).
        let src = &e["source"];
        let record: Value = serde_json::from_str(&line_of(
            src["file"].as_str().unwrap(),
            src["line"].as_u64().unwrap(),
        ))
        .unwrap();
        let answers: Vec<String> = record["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .map(|m| format!("{}<|im_end|>\n", m["content"].as_str().unwrap()))
            .collect();
        let trained: Vec<String> = spans
            .iter()
            .filter(|s| s["trained"] == true)
            .map(|s| s["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(trained, answers);
    }

    // Rows: the examples one after the other, segments 1, 2, … over their token ranges.
    let rows = v["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    let mut k = 0;
    for row in rows {
        let segments: Vec<i64> = row["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_i64().unwrap())
            .collect();
        let row_mask = row["loss_mask"].as_array().unwrap();
        assert_eq!(segments.len(), row["length"].as_u64().unwrap() as usize);
        for seg in row["examples"].as_array().unwrap() {
            let (a, b) = (
                seg["start"].as_u64().unwrap() as usize,
                seg["end"].as_u64().unwrap() as usize,
            );
            assert!(segments[a..b].iter().all(|&x| x == seg["segment"]));
            // The row's loss mask over a segment is that example's.
            if let Some(e) = examples.get(k) {
                assert_eq!(seg["source"], e["source"]);
                assert_eq!(
                    &row_mask[a..b],
                    e["loss_mask"].as_array().unwrap().as_slice()
                );
                assert_eq!(
                    &row["ids"].as_array().unwrap()[a..b],
                    e["ids"].as_array().unwrap().as_slice()
                );
            }
            k += 1;
        }
        assert_eq!(
            row["examples"].as_array().unwrap().last().unwrap()["end"],
            row["length"]
        );
    }

    // No weights read: a GGUF holding the real model's metadata (tokenizer, chat template) and
    // no tensor at all gives the same preview.
    let real = crate::asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let g = GgufFile::open(&real).unwrap();
    assert!(!g.tensors.is_empty());
    let mut w = GgufWriter::new();
    for (k, val) in &g.metadata {
        w.meta(k, val.clone());
    }
    let dir = scratch("gguf");
    let empty = dir.join("no-tensors.gguf");
    w.write(&empty).unwrap();
    assert!(
        std::fs::metadata(&empty).unwrap().len() < std::fs::metadata(&real).unwrap().len() / 10
    );
    let set = format!("model.path={:?}", empty.display().to_string());
    let mut with = args.to_vec();
    with.extend(["--set", set.as_str()]);
    assert_eq!(run_ok(&with), json);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn classification_preview_shows_labels_and_class_ids_without_weights() {
    let quickstart = repo("pipelines/quickstart.ard");
    let base = [
        "data",
        "preview",
        quickstart.as_str(),
        "-n",
        "3",
        "--format",
        "json",
    ];
    let json = run_ok(&base);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["split"], "train");
    let classes = v["plan"]["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 16);
    let s = &v["sizes"];
    assert_eq!(s["skipped_rows"], v["plan"]["skipped_rows"]);
    assert_eq!(s["train_units"], s["train_records"]);
    assert!(v["rows"].as_array().unwrap().is_empty());
    let examples = v["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 3);
    for e in examples {
        let id = e["class_id"].as_u64().unwrap() as usize;
        assert_eq!(e["label"], classes[id]);
        assert!(e["loss_mask"].is_null());
        // The label comes from the row's source_id (`bbchealth-123…` → `bbchealth`).
        let row = line_of(
            e["source"]["file"].as_str().unwrap(),
            e["source"]["line"].as_u64().unwrap(),
        );
        assert!(
            row.contains(&format!("{}-", e["label"].as_str().unwrap())),
            "{row} vs {e}"
        );
        let pieces = e["pieces"].as_array().unwrap();
        assert_eq!(pieces.first().unwrap(), "[CLS]");
        assert_eq!(pieces.last().unwrap(), "[SEP]");
        assert_eq!(e["length"].as_u64().unwrap() as usize, pieces.len());
    }

    // The text form names each example's label and class.
    let text = run_ok(&["data", "preview", &quickstart, "-n", "1"]);
    let first = &examples[0];
    assert!(
        text.contains(&format!(
            "label {} (class {})",
            first["label"], first["class_id"]
        )),
        "{text}"
    );
    assert!(text.contains("classes    16: "), "{text}");

    // No weights read: MiniLM's folder without model.safetensors gives the same preview.
    let dir = scratch("minilm");
    let src = crate::asset("minilm");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap();
        if f.is_file() && f.extension().is_none_or(|x| x != "safetensors") {
            std::fs::copy(&f, dir.join(name)).unwrap();
        }
    }
    assert!(!dir.join("model.safetensors").exists());
    let set = format!("model.path={:?}", dir.display().to_string());
    let mut with = base.to_vec();
    with.extend(["--set", set.as_str()]);
    assert_eq!(run_ok(&with), json);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_empty_split_is_refused_with_how_to_declare_it() {
    let instruct = repo("pipelines/instruct.ard");
    let out = ardpipe(&["data", "preview", &instruct, "--split", "test"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the test split of dataset `chat` is empty"),
        "{err}"
    );
    assert!(err.contains("test = 10%"), "{err}");
}

#[test]
fn preview_help_documents_the_marks() {
    let help = run_ok(&["data", "preview", "--help"]);
    for want in [
        "--split",
        "-n, --count",
        "between [[ and ]]",
        "dimmed",
        "--format",
    ] {
        assert!(help.contains(want), "missing {want:?} in\n{help}");
    }
}
