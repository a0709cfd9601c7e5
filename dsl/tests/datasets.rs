//! The dataset keys of supervised causal-LM data (prompt/completion and chat records), Parquet
//! sources and lists of paths resolve to the pipeline they say; misuses are refused with a code,
//! a place and a fix.

mod common;

use std::path::{Path, PathBuf};

use ardpipe_dsl::pipeline::*;
use common::{ctx, render};

const REST: &str = r#"
model {
    path = "/m/smollm"
    head = causal_lm
}

adapter a {
    method = lora
    modules = [q_proj, v_proj]
}

train {
    dataset = d
    steps = 10
    lr = 1e-4
}
"#;

fn check(dataset: &str) -> Pipeline {
    let text = format!("{dataset}\n{REST}");
    match ardpipe_dsl::check_source(Path::new("/data/p.ard"), &text, &ctx()) {
        Ok(c) => {
            assert!(
                c.warnings.problems.is_empty(),
                "warnings\n{}",
                render(&c.warnings)
            );
            c.pipeline
        }
        Err(d) => panic!("does not check:\n{text}\n{}", render(&d)),
    }
}

fn problems(dataset: &str) -> Vec<serde_json::Value> {
    let text = format!("{dataset}\n{REST}");
    let d = ardpipe_dsl::check_source(Path::new("/data/p.ard"), &text, &ctx())
        .expect_err("should not check");
    serde_json::to_value(d.to_json())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The one problem with this message: its code, line and column, and that it has a help.
fn problem(dataset: &str, message: &str) -> (String, u64, u64, String) {
    let all = problems(dataset);
    let p = all
        .iter()
        .find(|p| p["message"] == message)
        .unwrap_or_else(|| panic!("no problem {message:?} among {all:#?}"));
    let help = p["help"].as_str().expect("a help").to_string();
    assert!(!help.is_empty());
    (
        p["code"].as_str().unwrap().to_string(),
        p["line"].as_u64().unwrap(),
        p["column"].as_u64().unwrap(),
        help,
    )
}

#[test]
fn chat_records_from_several_jsonl_files() {
    let p = check(
        r#"dataset d {
    format = jsonl
    path = ["chat/train-*.jsonl", "/abs/extra.jsonl"]
    messages = "conversation"
    preprocess {
        packing = true
    }
    split {
        validation = ["chat/val.jsonl", "chat/val-*.jsonl"]
    }
}"#,
    );
    let d = &p.datasets[0];
    assert_eq!(
        d.source,
        Source::Jsonl {
            paths: vec![
                PathBuf::from("/data/chat/train-*.jsonl"),
                PathBuf::from("/abs/extra.jsonl")
            ]
        }
    );
    assert_eq!(d.source.paths().len(), 2);
    assert_eq!(
        d.fields,
        Fields {
            text: None,
            text_pair: None,
            label: None,
            label_regex: None,
            prompt: None,
            completion: None,
            messages: Some("conversation".into()),
            image: None,
        }
    );
    assert!(d.fields.supervised());
    assert_eq!(
        d.split.validation,
        Some(SplitPart::File {
            paths: vec![
                PathBuf::from("/data/chat/val.jsonl"),
                PathBuf::from("/data/chat/val-*.jsonl")
            ]
        })
    );
    // Supervised data defaults: loss on the answers, 512 tokens per example (and packed row).
    assert_eq!(d.preprocess.train_on, TrainOn::Completions);
    assert!(d.preprocess.packing);
    assert_eq!(d.preprocess.max_length, 512);
    assert_eq!(d.preprocess.truncation, Side::Right);
}

#[test]
fn prompt_completion_records_from_parquet() {
    let p = check(
        r#"dataset d {
    format = parquet
    path = "hf/train-*.parquet"
    prompt = "instruction"
    completion = "output.text"
    preprocess {
        train_on = all
        packing = false
        max_length = 1024
        truncation = left
    }
    split {
        test = "hf/test.parquet"
    }
}"#,
    );
    let d = &p.datasets[0];
    assert_eq!(
        d.source,
        Source::Parquet {
            paths: vec![PathBuf::from("/data/hf/train-*.parquet")]
        }
    );
    assert_eq!(d.source.format(), "parquet");
    assert_eq!(d.fields.prompt.as_deref(), Some("instruction"));
    assert_eq!(d.fields.completion.as_deref(), Some("output.text"));
    assert_eq!(d.fields.messages, None);
    assert_eq!(d.fields.text, None);
    assert_eq!(
        d.split.test,
        Some(SplitPart::File {
            paths: vec![PathBuf::from("/data/hf/test.parquet")]
        })
    );
    assert_eq!(d.preprocess.train_on, TrainOn::All);
    assert!(!d.preprocess.packing);
    assert_eq!(d.preprocess.max_length, 1024);
    assert_eq!(d.preprocess.truncation, Side::Left);
    // The resolved pipeline keeps it all through its JSON form.
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<Pipeline>(&json).unwrap(), p);
}

#[test]
fn prompt_completion_records_from_csv() {
    let p = check(
        r#"dataset d {
    format = csv
    path = ["qa/a.csv", "qa/b.csv"]
    prompt = "q"
    completion = "a"
}"#,
    );
    let d = &p.datasets[0];
    assert!(matches!(&d.source, Source::Csv { paths, .. } if paths.len() == 2));
    assert_eq!(d.fields.prompt.as_deref(), Some("q"));
    assert_eq!(d.fields.text, None);
    assert_eq!(d.preprocess.max_length, 512);
    assert_eq!(d.preprocess.train_on, TrainOn::Completions);
    assert!(!d.preprocess.packing);
}

#[test]
fn plain_text_keeps_its_defaults_and_one_path_is_a_list_of_one() {
    let p = check(
        r#"dataset d {
    format = jsonl
    path = "corpus.jsonl"
    preprocess {
        block_size = 64
    }
}"#,
    );
    let d = &p.datasets[0];
    assert_eq!(
        d.source.paths(),
        [PathBuf::from("/data/corpus.jsonl")].as_slice()
    );
    assert_eq!(d.fields.text.as_deref(), Some("text"));
    assert!(!d.fields.supervised());
    assert_eq!(d.preprocess.block_size, 64);
    assert_eq!(d.preprocess.max_length, 128);
    assert_eq!(d.preprocess.train_on, TrainOn::Completions);
    assert!(!d.preprocess.packing);
}

#[test]
fn misuses_name_the_key_and_the_fix() {
    let (code, line, col, help) = problem(
        "dataset d {\n    format = jsonl\n    path = \"a.jsonl\"\n    prompt = \"p\"\n}",
        "`prompt` without `completion`",
    );
    assert_eq!((code.as_str(), line, col), ("ardpipe::dsl::missing", 4, 5));
    assert!(help.contains("completion = \"completion\""), "{help}");

    let (code, line, col, help) = problem(
        "dataset d {\n    format = csv\n    path = \"a.csv\"\n    messages = \"m\"\n}",
        "`messages` is not available for `csv` sources",
    );
    assert_eq!(
        (code.as_str(), line, col),
        ("ardpipe::dsl::contradiction", 4, 5)
    );
    assert!(help.contains("jsonl"), "{help}");

    let (code, line, col, help) = problem(
        "dataset d {\n    format = jsonl\n    path = \"a.jsonl\"\n    messages = \"m\"\n    text_pair = \"t\"\n}",
        "`text_pair` with supervised columns",
    );
    assert_eq!(
        (code.as_str(), line, col),
        ("ardpipe::dsl::contradiction", 5, 5)
    );
    assert!(help.contains("remove `text_pair`"), "{help}");

    let (code, line, col, help) = problem(
        "dataset d {\n    format = jsonl\n    path = \"a.jsonl\"\n    messages = \"m\"\n    preprocess {\n        block_size = 64\n    }\n}",
        "`block_size` has no effect with `head = causal_lm` on supervised data: supervised examples are cut at `max_length` (and packed into rows of `max_length`)",
    );
    assert_eq!(
        (code.as_str(), line, col),
        ("ardpipe::dsl::contradiction", 6, 9)
    );
    assert!(help.contains("max_length"), "{help}");

    // Plain text for a causal LM is still cut into blocks, not at max_length.
    let (code, line, col, _) = problem(
        "dataset d {\n    format = jsonl\n    path = \"a.jsonl\"\n    preprocess {\n        max_length = 64\n    }\n}",
        "`max_length` has no effect with `head = causal_lm`: a causal LM packs text into `block_size` blocks",
    );
    assert_eq!(
        (code.as_str(), line, col),
        ("ardpipe::dsl::contradiction", 5, 9)
    );

    let (code, line, col, help) = problem(
        "dataset d {\n    format = jsonl\n    path = \"a.jsonl\"\n    preprocess {\n        packing = true\n    }\n}",
        "`packing` applies to supervised data only",
    );
    assert_eq!(
        (code.as_str(), line, col),
        ("ardpipe::dsl::contradiction", 5, 9)
    );
    assert!(help.contains("messages = \"messages\""), "{help}");

    let (code, line, col, _) = problem(
        "dataset d {\n    format = jsonl\n    path = \"a.jsonl\"\n    preprocess {\n        train_on = answers\n    }\n}",
        "`answers` is not a valid `train_on`",
    );
    assert_eq!(code, "ardpipe::dsl::wrong_type");
    assert_eq!((line, col), (5, 20));
}

#[test]
fn the_new_values_are_words_of_the_language() {
    for word in ["parquet", "completions"] {
        let text = format!("let {word} = 1\n");
        let d = ardpipe_dsl::check_source(Path::new("/data/p.ard"), &text, &ctx()).unwrap_err();
        let json = serde_json::to_value(d.to_json()).unwrap();
        assert!(
            json.as_array()
                .unwrap()
                .iter()
                .any(|p| p["message"] == format!("`{word}` is a word of the language")),
            "{json:#}"
        );
    }
}

#[test]
fn a_list_of_paths_can_be_set_from_the_command_line() {
    let text = format!("dataset d {{\n    format = jsonl\n    path = \"a.jsonl\"\n}}\n{REST}");
    let mut cx = ctx();
    cx.overrides = vec![r#"dataset.d.path=["x.jsonl", "y/*.jsonl"]"#.into()];
    let p = match ardpipe_dsl::check_source(Path::new("/data/p.ard"), &text, &cx) {
        Ok(c) => c.pipeline,
        Err(d) => panic!("{}", render(&d)),
    };
    assert_eq!(
        p.datasets[0].source.paths(),
        [
            PathBuf::from("/data/x.jsonl"),
            PathBuf::from("/data/y/*.jsonl")
        ]
        .as_slice()
    );
}

/// A chat template file renders chat records; with plain-text data it would be read and ignored.
#[test]
fn a_chat_template_is_a_path_for_chat_records_only() {
    let chat = r#"dataset d {
    format = jsonl
    path = "chat.jsonl"
    messages = "messages"
}"#;
    let with = |dataset: &str| {
        let text = format!("{dataset}\n{REST}").replace(
            "head = causal_lm",
            "head = causal_lm\n    chat_template = \"templates/chat.jinja\"",
        );
        ardpipe_dsl::check_source(Path::new("/data/p.ard"), &text, &ctx())
    };
    let p = with(chat)
        .unwrap_or_else(|d| panic!("{}", render(&d)))
        .pipeline;
    assert_eq!(
        p.model.chat_template,
        Some(PathBuf::from("/data/templates/chat.jinja"))
    );
    assert_eq!(check(chat).model.chat_template, None);
    let plain = r#"dataset d {
    format = text
    path = "a.txt"
}"#;
    let d = with(plain).expect_err("a template without chat records");
    let all = serde_json::to_value(d.to_json()).unwrap();
    let p = all
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["message"]
                == "`chat_template` renders chat records, but the training dataset has none"
        })
        .unwrap_or_else(|| panic!("{all:#}"));
    assert_eq!(p["code"], "ardpipe::dsl::contradiction");
    assert!(
        p["help"]
            .as_str()
            .unwrap()
            .contains("messages = \"messages\"")
    );
}
