//! A tiny BERT classifier (hidden 8, 2 heads, 2 layers) and a small labelled CSV, written in the
//! real formats (config.json, model.safetensors, a word-level tokenizer.json), and a pipeline
//! per fine-tuning method over them: the real trainer runs a step in milliseconds on them.
//! Shared by the engine's resume tests and the CLI's (`#[path]`-included by both).

#![allow(dead_code)]

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

const WORDS: [&str; 24] = [
    "the", "a", "virus", "flu", "outbreak", "vaccine", "doctor", "hospital", "sleep", "diet",
    "exercise", "heart", "kids", "food", "study", "new", "cases", "spreads", "tips", "healthy",
    "run", "week", "fever", "care",
];
const HIDDEN: usize = 8;
const LAYERS: usize = 2;
const INTER: usize = 16;
const POSITIONS: usize = 32;

fn values(n: usize, seed: f64, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f64 * 0.7311 + seed * 1.37).sin() * scale) as f32)
        .collect()
}

/// Write the tiny model folder into `dir` (created).
pub fn write_tiny_bert(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let vocab = 4 + WORDS.len();
    let config = serde_json::json!({
        "model_type": "bert",
        "architectures": ["BertModel"],
        "vocab_size": vocab,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 2,
        "intermediate_size": INTER,
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();

    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut seed = 0.0;
    let mut add = |name: String, shape: Vec<usize>, ones: bool, zero: bool| {
        seed += 1.0;
        let n = shape.iter().product();
        let v = if ones {
            vec![1.0; n]
        } else if zero {
            vec![0.0; n]
        } else {
            values(n, seed, 0.3)
        };
        tensors.push((name, shape, v));
    };
    let h = HIDDEN;
    add(
        "bert.embeddings.word_embeddings.weight".into(),
        vec![vocab, h],
        false,
        false,
    );
    add(
        "bert.embeddings.position_embeddings.weight".into(),
        vec![POSITIONS, h],
        false,
        false,
    );
    add(
        "bert.embeddings.token_type_embeddings.weight".into(),
        vec![2, h],
        false,
        false,
    );
    add(
        "bert.embeddings.LayerNorm.weight".into(),
        vec![h],
        true,
        false,
    );
    add(
        "bert.embeddings.LayerNorm.bias".into(),
        vec![h],
        false,
        true,
    );
    for l in 0..LAYERS {
        let p = format!("bert.encoder.layer.{l}");
        for (sub, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", INTER, h),
            ("output.dense", h, INTER),
        ] {
            add(format!("{p}.{sub}.weight"), vec![out, inp], false, false);
            add(format!("{p}.{sub}.bias"), vec![out], false, false);
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(format!("{p}.{ln}.weight"), vec![h], true, false);
            add(format!("{p}.{ln}.bias"), vec![h], false, true);
        }
    }
    add("bert.pooler.dense.weight".into(), vec![h, h], false, false);
    add("bert.pooler.dense.bias".into(), vec![h], false, true);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::serialize_to_file(views, Some(meta), &dir.join("model.safetensors")).unwrap();

    let mut vocab_map = serde_json::Map::new();
    for (i, w) in ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        .iter()
        .chain(WORDS.iter())
        .enumerate()
    {
        vocab_map.insert(w.to_string(), serde_json::json!(i));
    }
    let special = |id: usize, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": true})
    };
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab_map, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
}

/// 64 labelled rows, three classes, a deterministic mix of words per class.
pub fn write_data(path: &Path) {
    let classes = [("news", 2usize), ("tips", 8), ("care", 14)];
    let mut csv = String::from("text,label\n");
    for i in 0..64usize {
        let (label, base) = classes[i % 3];
        let words: Vec<&str> = (0..5)
            .map(|k| WORDS[(base + (i * 7 + k * 3) % 9) % WORDS.len()])
            .collect();
        csv.push_str(&format!("{},{label}\n", words.join(" ")));
    }
    std::fs::write(path, csv).unwrap();
}

/// The adapter block of each method the trainer has.
pub const METHODS: [&str; 5] = ["ard_lora", "lora", "dora", "adalora", "full"];

fn adapter(method: &str) -> &'static str {
    match method {
        // Compaction every 25% (two steps of eight) and α on its own optimiser.
        "ard_lora" => {
            "adapter qv {\n method = ard_lora\n modules = [query, value]\n r0 = 4\n scale = 8\n \
             alpha {\n init = 1\n min = 0\n max = 2\n }\n \
             regularize {\n lambda = 0.5\n beta = 1\n gamma = 0.5\n }\n \
             compaction {\n every = 25%\n margin = 1\n }\n}\n"
        }
        "lora" => {
            "adapter qv {\n method = lora\n modules = [query, value]\n rank = 4\n scale = 8\n dropout = 0.1\n}\n"
        }
        "dora" => {
            "adapter qv {\n method = dora\n modules = [query, value]\n rank = 4\n scale = 8\n}\n"
        }
        "adalora" => {
            "adapter qv {\n method = adalora\n modules = [query, value]\n init_r = 6\n target_r = 3\n \
             tinit = 25%\n tfinal = 25%\n delta_t = 13%\n}\n"
        }
        "full" => "adapter qv {\n method = full\n modules = all\n}\n",
        other => panic!("no such method {other}"),
    }
}

/// A pipeline training the tiny model with `method` for `steps` steps, a checkpoint every two.
pub fn pipeline(method: &str, model: &Path, data: &Path, out: &Path, steps: u64) -> String {
    let export = if method == "full" { "merged" } else { "peft" };
    format!(
        "pipeline {{\n name = \"tiny_{method}\"\n seed = 3\n}}\n\
         dataset d {{\n format = csv\n path = {data:?}\n text = \"text\"\n label = \"label\"\n \
         split {{\n validation = 25%\n seed = 1\n }}\n preprocess {{\n max_length = 12\n }}\n}}\n\
         model {{\n path = {model:?}\n format = hf_folder\n head = sequence_classification\n classes = auto\n}}\n\
         {}\
         train {{\n optimizer = adamw(weight_decay = 0.01)\n lr = 2e-2\n{}batch_size = 4\n \
         steps = {steps}\n clip = 1.0\n precision = f32\n eval_every = 4 steps\n checkpoint_every = 2 steps\n}}\n\
         evaluate {{\n split = validation\n metrics = [loss, accuracy]\n batch_size = 8\n}}\n\
         output {{\n dir = {out:?}\n export = [{export}]\n report = true\n}}\n",
        adapter(method),
        if method == "ard_lora" {
            " alpha_lr = 0.3\n "
        } else {
            " "
        },
    )
}

/// The file whose bytes must match between an interrupted and an uninterrupted run.
pub fn export_file(method: &str) -> &'static str {
    if method == "full" {
        "merged/model.safetensors"
    } else {
        "adapter/adapter_model.safetensors"
    }
}
