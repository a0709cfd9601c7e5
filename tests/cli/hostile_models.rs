//! Hostile model files through the real binary: each ends in exit 1 with a message naming the
//! problem, never a panic (101), an abort (134) or a silently wrong answer. The files are
//! written here, tiny, through the project's GGUF writer or as safetensors + JSON.

use std::path::{Path, PathBuf};
use std::process::Output;

use ardpipe_engine::models::gguf::writer::GgufWriter;
use ardpipe_engine::models::gguf::{GgmlType, Value};
use safetensors::tensor::{Dtype, TensorView};

use crate::{ardpipe, stderr};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn asset(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.ardpipe/assets")
        .join(rel);
    assert!(
        p.exists(),
        "example asset {} is missing: run `python3 scripts/setup.py`",
        p.display()
    );
    p.display().to_string()
}

/// Exit 1 (not a panic or an abort) and every `needles` in stderr.
fn assert_refused(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// A tiny Llama GGUF whose `token_embd.weight` has the given torch shape (F32).
fn tiny_gguf(path: &Path, embd_shape: &[usize]) {
    let mut g = GgufWriter::new();
    g.meta("general.architecture", Value::String("llama".into()))
        .meta("llama.block_count", Value::U32(1))
        .meta("llama.embedding_length", Value::U32(32))
        .meta("llama.feed_forward_length", Value::U32(64))
        .meta("llama.attention.head_count", Value::U32(4))
        .meta("llama.vocab_size", Value::U32(8));
    let n = embd_shape.iter().product::<usize>();
    g.tensor(
        "token_embd.weight",
        embd_shape,
        &vec![0.5; n],
        GgmlType::F32,
    );
    g.write(path).unwrap();
}

/// Where `token_embd.weight`'s tensor info starts after its name: (dims count, first dim).
fn embd_info(bytes: &[u8]) -> (usize, usize) {
    let name = b"token_embd.weight";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("the tensor name is in the file")
        + name.len();
    (at, at + 4)
}

#[test]
fn gguf_tensor_offset_near_2_64_is_refused() {
    let dir = tmp("gguf-offset");
    let file = dir.join("offset.gguf");
    tiny_gguf(&file, &[8, 32]);
    let mut bytes = std::fs::read(&file).unwrap();
    // After the name: u32 dims count, 2 × u64 dims, u32 type, then the u64 offset.
    let (_, dims) = embd_info(&bytes);
    let offset_at = dims + 2 * 8 + 4;
    bytes[offset_at..offset_at + 8].copy_from_slice(&(u64::MAX - 7).to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let f = file.display().to_string();
    let needles = [
        "offset.gguf",
        "token_embd.weight",
        "offset 18446744073709551608",
    ];
    assert_refused(&ardpipe(&["inspect", "model", &f]), &needles);
    assert_refused(
        &ardpipe(&[
            "generate",
            "--model",
            &f,
            "--prompt",
            "x",
            "--max-tokens",
            "1",
        ]),
        &needles,
    );
}

#[test]
fn gguf_dims_overflowing_in_a_64_kib_file_are_refused() {
    let dir = tmp("gguf-dims");
    let file = dir.join("dims.gguf");
    tiny_gguf(&file, &[1, 1, 1, 32]);
    let mut bytes = std::fs::read(&file).unwrap();
    let (n_dims, dims) = embd_info(&bytes);
    assert_eq!(&bytes[n_dims..n_dims + 4], &4u32.to_le_bytes());
    for i in 0..4 {
        bytes[dims + 8 * i..dims + 8 * (i + 1)].copy_from_slice(&65536u64.to_le_bytes());
    }
    bytes.resize(64 * 1024, 0);
    std::fs::write(&file, &bytes).unwrap();
    let f = file.display().to_string();
    let needles = [
        "dims.gguf",
        "token_embd.weight",
        "[65536, 65536, 65536, 65536]",
        "overflows",
    ];
    assert_refused(&ardpipe(&["inspect", "model", &f]), &needles);
    assert_refused(
        &ardpipe(&[
            "generate",
            "--model",
            &f,
            "--prompt",
            "x",
            "--max-tokens",
            "1",
        ]),
        &needles,
    );
}

/// A BERT folder: MiniLM's config with `edit` applied, its tokenizer, and a one-tensor
/// model.safetensors (far smaller than any config asks for).
fn bert_folder(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let dir = tmp(name);
    let minilm = PathBuf::from(asset("minilm"));
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(minilm.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(minilm.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let data: Vec<u8> = [0.25f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![4], &data).unwrap();
    safetensors::serialize_to_file(
        [("embeddings.LayerNorm.weight", view)],
        None,
        &dir.join("model.safetensors"),
    )
    .unwrap();
    dir.display().to_string()
}

#[test]
fn config_with_a_billion_layers_is_refused_before_anything_is_sized() {
    let dir = bert_folder("layers", |c| c["num_hidden_layers"] = 1_000_000_000.into());
    let needles = [
        "config.json",
        "num_hidden_layers = 1000000000",
        "limit is 1024",
    ];
    let started = std::time::Instant::now();
    assert_refused(&ardpipe(&["inspect", "model", &dir]), &needles);
    assert_refused(&ardpipe(&["embed", "--model", &dir, "hello"]), &needles);
    assert_refused(
        &ardpipe(&["classify", "--model", &dir, "--num-labels", "2", "hello"]),
        &needles,
    );
    // It used to abort after 18 s at 6.7 GB.
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

/// Every dimension at its limit, weights of 16 bytes: the load compares shapes before it
/// allocates anything at the config's size, and reports the mismatch.
#[test]
fn config_far_larger_than_its_weights_allocates_nothing() {
    let dir = bert_folder("huge", |c| {
        c["num_hidden_layers"] = 1024.into();
        c["hidden_size"] = 131072.into();
        c["num_attention_heads"] = 1024.into();
        c["intermediate_size"] = 1_048_576.into();
        c["vocab_size"] = 8_388_608.into();
        c["max_position_embeddings"] = 16_777_216.into();
    });
    let out = ardpipe(&["embed", "--model", &dir, "hello"]);
    assert_refused(
        &out,
        &[
            "do not fit a bert model",
            "embeddings.LayerNorm.weight: checkpoint [4], model expects [131072]",
            "missing (",
        ],
    );
}

/// A PEFT adapter folder for MiniLM's classifier: `config` as adapter_config.json and the
/// given tensors (name, shape, values) as adapter_model.safetensors.
fn adapter(name: &str, config: serde_json::Value, tensors: &[(&str, Vec<usize>)]) -> String {
    let dir = tmp(name);
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, shape)| {
            let count: usize = shape.iter().product();
            let bytes = (0..count)
                .flat_map(|i| (0.01 * (i % 7) as f32).to_le_bytes())
                .collect();
            (n.to_string(), bytes, shape.clone())
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("adapter_model.safetensors")).unwrap();
    dir.display().to_string()
}

fn lora_config(r: usize) -> serde_json::Value {
    serde_json::json!({
        "peft_type": "LORA", "task_type": "SEQ_CLS", "r": r, "lora_alpha": 8,
        "target_modules": ["query"], "modules_to_save": ["classifier"],
    })
}

const QUERY: &str = "base_model.model.bert.encoder.layer.0.attention.self.query";

#[test]
fn peft_adapter_with_a_0d_classifier_weight_is_refused() {
    let a_name = format!("{QUERY}.lora_A.weight");
    let b_name = format!("{QUERY}.lora_B.weight");
    let dir = adapter(
        "0d-classifier",
        lora_config(2),
        &[
            (&a_name, vec![2, 384]),
            (&b_name, vec![384, 2]),
            ("base_model.model.classifier.weight", vec![]),
            ("base_model.model.classifier.bias", vec![2]),
        ],
    );
    let out = ardpipe(&[
        "classify",
        "--model",
        &asset("minilm"),
        "--adapter",
        &dir,
        "a hostile adapter",
    ]);
    assert_refused(
        &out,
        &[
            "adapter_model.safetensors",
            "`base_model.model.classifier.weight`",
            "scalar (0-D)",
        ],
    );
}

#[test]
fn peft_adapter_with_rank_0_is_refused() {
    let a_name = format!("{QUERY}.lora_A.weight");
    let b_name = format!("{QUERY}.lora_B.weight");
    let dir = adapter(
        "rank0",
        lora_config(0),
        &[(&a_name, vec![0, 384]), (&b_name, vec![384, 0])],
    );
    let needles = ["adapter_config.json", "r = 0", "at least 1"];
    let out = ardpipe(&[
        "classify",
        "--model",
        &asset("minilm"),
        "--num-labels",
        "2",
        "--adapter",
        &dir,
        "a hostile adapter",
    ]);
    assert_refused(&out, &needles);
    let out = ardpipe(&[
        "generate",
        "--model",
        &asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "--adapter",
        &dir,
        "--prompt",
        "x",
        "--max-tokens",
        "1",
    ]);
    assert_refused(&out, &needles);

    // A rank in the config that the tensors do not hold, and a lora_A without its lora_B.
    let dir = adapter(
        "rank-pattern",
        lora_config(2),
        &[(&a_name, vec![4, 384]), (&b_name, vec![384, 4])],
    );
    let out = ardpipe(&[
        "classify",
        "--model",
        &asset("minilm"),
        "--num-labels",
        "2",
        "--adapter",
        &dir,
        "x",
    ]);
    assert_refused(&out, &["holds rank 4", "says 2", "rank_pattern"]);
    let dir = adapter("half-pair", lora_config(2), &[(&a_name, vec![2, 384])]);
    let out = ardpipe(&[
        "classify",
        "--model",
        &asset("minilm"),
        "--num-labels",
        "2",
        "--adapter",
        &dir,
        "x",
    ]);
    assert_refused(
        &out,
        &[
            "bert.encoder.layer.0.attention.self.query",
            "has lora_A but not lora_B",
        ],
    );
}
