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
    crate::asset(rel).display().to_string()
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

/// `inspect model` and `generate` on a GGUF file both refuse it with every needle.
fn assert_gguf_refused(file: &Path, needles: &[&str]) {
    let f = file.display().to_string();
    assert_refused(&ardpipe(&["inspect", "model", &f]), needles);
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
        needles,
    );
}

/// `tiny_gguf` plus a second tensor (`output_norm.weight`, 32 f32 values at data offset 1024).
fn tiny_gguf_two(path: &Path) -> Vec<u8> {
    let mut g = GgufWriter::new();
    g.meta("general.architecture", Value::String("llama".into()))
        .meta("llama.block_count", Value::U32(1))
        .meta("llama.embedding_length", Value::U32(32))
        .meta("llama.feed_forward_length", Value::U32(64))
        .meta("llama.attention.head_count", Value::U32(4))
        .meta("llama.vocab_size", Value::U32(8));
    g.tensor("token_embd.weight", &[8, 32], &[0.5; 256], GgmlType::F32)
        .tensor("output_norm.weight", &[32], &[1.0; 32], GgmlType::F32);
    g.write(path).unwrap();
    std::fs::read(path).unwrap()
}

/// Where the u64 data offset of `name`'s tensor info lies (1-D tensor: dims count, one dim,
/// type, then the offset).
fn offset_of_1d(bytes: &[u8], name: &[u8]) -> usize {
    let at = bytes
        .windows(name.len())
        .rposition(|w| w == name)
        .expect("the tensor name is in the file")
        + name.len();
    at + 4 + 8 + 4
}

/// A tensor offset off the alignment, or two tensors sharing bytes, used to load as finite
/// garbage: `generate` printed nonsense with exit 0.
#[test]
fn gguf_misaligned_or_overlapping_tensor_data_is_refused() {
    let dir = tmp("gguf-layout");
    let file = dir.join("layout.gguf");
    let mut bytes = tiny_gguf_two(&file);
    let at = offset_of_1d(&bytes, b"output_norm.weight");
    assert_eq!(&bytes[at..at + 8], &1024u64.to_le_bytes());
    bytes[at..at + 8].copy_from_slice(&1025u64.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    assert_gguf_refused(
        &file,
        &[
            "layout.gguf",
            "`output_norm.weight`",
            "offset 1025",
            "alignment 32",
        ],
    );
    bytes[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    assert_gguf_refused(
        &file,
        &[
            "layout.gguf",
            "share data bytes",
            "`output_norm.weight` (data bytes 0..128)",
            "`token_embd.weight` (0..1024)",
        ],
    );
}

/// A repeated metadata key or tensor name used to be accepted, one copy silently winning.
#[test]
fn gguf_duplicate_keys_and_tensor_names_are_refused() {
    let dir = tmp("gguf-dup");
    let file = dir.join("dupkey.gguf");
    let mut g = GgufWriter::new();
    g.meta("general.architecture", Value::String("llama".into()))
        .meta("llama.block_count", Value::U32(1))
        .meta("llama.block_coun2", Value::U32(2));
    g.tensor("token_embd.weight", &[8, 32], &[0.5; 256], GgmlType::F32);
    g.write(&file).unwrap();
    // The writer keeps keys unique: rename the second key in the file's bytes.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(17)
        .position(|w| w == b"llama.block_coun2")
        .unwrap();
    bytes[at + 16] = b't';
    std::fs::write(&file, bytes).unwrap();
    assert_gguf_refused(
        &file,
        &[
            "dupkey.gguf",
            "metadata key `llama.block_count` appears twice",
        ],
    );

    let file = dir.join("duptensor.gguf");
    let mut g = GgufWriter::new();
    g.meta("general.architecture", Value::String("llama".into()));
    g.tensor("token_embd.weight", &[8, 32], &[0.5; 256], GgmlType::F32)
        .tensor("token_embd.weight", &[8, 32], &[0.25; 256], GgmlType::F32);
    g.write(&file).unwrap();
    assert_gguf_refused(
        &file,
        &[
            "duptensor.gguf",
            "tensor `token_embd.weight` is listed twice",
        ],
    );
}

/// An optional key of the wrong type (a negative or string token id, a string rope base) used
/// to be read as absent: generation then ran with the default (no EOS, rope base 10000).
#[test]
fn gguf_optional_keys_of_the_wrong_type_are_refused() {
    let dir = tmp("gguf-types");
    for (i, (key, value, shown)) in [
        ("tokenizer.ggml.eos_token_id", Value::I64(-1), "I64(-1)"),
        (
            "tokenizer.ggml.bos_token_id",
            Value::String("1".into()),
            "String(\"1\")",
        ),
        (
            "llama.rope.freq_base",
            Value::String("1e4".into()),
            "String(\"1e4\")",
        ),
        (
            "tokenizer.ggml.bos_token_id",
            Value::U64(1 << 32),
            "4294967296",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let file = dir.join(format!("types{i}.gguf"));
        tiny_gguf(&file, &[8, 32]);
        let mut g = GgufWriter::new();
        g.meta("general.architecture", Value::String("llama".into()))
            .meta("llama.block_count", Value::U32(1))
            .meta("llama.embedding_length", Value::U32(32))
            .meta("llama.feed_forward_length", Value::U32(64))
            .meta("llama.attention.head_count", Value::U32(4))
            .meta("llama.vocab_size", Value::U32(8))
            .meta(key, value);
        g.tensor("token_embd.weight", &[8, 32], &[0.5; 256], GgmlType::F32);
        g.write(&file).unwrap();
        assert_gguf_refused(
            &file,
            &[&format!("types{i}.gguf"), &format!("`{key}`"), shown],
        );
    }
}

/// A complete one-layer BERT folder (hidden 4, MiniLM's tokenizer and vocabulary) written as
/// real safetensors; `dtype_of` may store one tensor in another dtype (its bytes all ones).
fn tiny_bert(name: &str, dtype_of: Option<(&str, Dtype)>) -> String {
    let dir = tmp(name);
    let minilm = PathBuf::from(asset("minilm"));
    let (v, h, i, p) = (30522usize, 4usize, 8usize, 16usize);
    let cfg = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": h, "intermediate_size": i, "num_attention_heads": 1,
        "num_hidden_layers": 1, "vocab_size": v, "max_position_embeddings": p,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(minilm.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let l = "encoder.layer.0";
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![v, h]),
        ("embeddings.position_embeddings.weight".into(), vec![p, h]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, h]),
        ("pooler.dense.weight".into(), vec![h, h]),
        ("pooler.dense.bias".into(), vec![h]),
    ];
    for ln in [
        "embeddings",
        &format!("{l}.attention.output"),
        &format!("{l}.output"),
    ] {
        shapes.push((format!("{ln}.LayerNorm.weight"), vec![h]));
        shapes.push((format!("{ln}.LayerNorm.bias"), vec![h]));
    }
    for m in [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
    ] {
        shapes.push((format!("{l}.{m}.weight"), vec![h, h]));
        shapes.push((format!("{l}.{m}.bias"), vec![h]));
    }
    shapes.push((format!("{l}.intermediate.dense.weight"), vec![i, h]));
    shapes.push((format!("{l}.intermediate.dense.bias"), vec![i]));
    shapes.push((format!("{l}.output.dense.weight"), vec![h, i]));
    shapes.push((format!("{l}.output.dense.bias"), vec![h]));
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(n, s)| {
            let count: usize = s.iter().product();
            match dtype_of {
                Some((t, d)) if t == n => {
                    let bytes = vec![1u8; count * d.bitsize() / 8];
                    (n, d, s, bytes)
                }
                _ => {
                    let bytes = (0..count)
                        .flat_map(|k| (0.02 * (k % 5) as f32 - 0.04).to_le_bytes())
                        .collect();
                    (n, Dtype::F32, s, bytes)
                }
            }
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    dir.display().to_string()
}

/// An integer or boolean tensor under a weight's name used to be cast to float and load as
/// garbage (exit 0); the same folder with f32 weights embeds fine.
#[test]
fn safetensors_weight_stored_as_integer_or_bool_is_refused() {
    let ok = tiny_bert("bert-ok", None);
    let out = ardpipe(&["embed", "--model", &ok, "hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for (tensor, dtype, shown) in [
        ("embeddings.word_embeddings.weight", Dtype::I8, "Int8"),
        (
            "encoder.layer.0.output.LayerNorm.weight",
            Dtype::BOOL,
            "Bool",
        ),
        (
            "encoder.layer.0.attention.self.query.bias",
            Dtype::I64,
            "Int64",
        ),
    ] {
        let dir = tiny_bert(&format!("bert-{shown}"), Some((tensor, dtype)));
        let needles = [
            "model.safetensors",
            &format!("`{tensor}`"),
            shown,
            "not a floating-point type",
        ];
        assert_refused(&ardpipe(&["embed", "--model", &dir, "hello"]), &needles);
        assert_refused(
            &ardpipe(&["classify", "--model", &dir, "--num-labels", "2", "hello"]),
            &needles,
        );
    }
}

/// `hidden_size = 0` was accepted by `inspect` and `plan` (0 is divisible by every head count).
#[test]
fn config_with_hidden_size_0_is_refused() {
    let dir = bert_folder("hidden0", |c| c["hidden_size"] = 0.into());
    let needles = ["config.json", "hidden_size must be positive"];
    assert_refused(&ardpipe(&["inspect", "model", &dir]), &needles);
    assert_refused(&ardpipe(&["embed", "--model", &dir, "hello"]), &needles);
}

/// A tensor named twice in a safetensors header: one copy used to win silently, and the
/// message blamed another tensor's offsets.
#[test]
fn safetensors_header_naming_a_tensor_twice_is_refused() {
    let dir = bert_folder("st-dup", |_| {});
    let t = r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    let mut header =
        format!(r#"{{"embeddings.LayerNorm.weight":{t},"embeddings.LayerNorm.weight":{t}}}"#)
            .into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&1f32.to_le_bytes());
    std::fs::write(Path::new(&dir).join("model.safetensors"), bytes).unwrap();
    assert_refused(
        &ardpipe(&["embed", "--model", &dir, "hello"]),
        &[
            "model.safetensors",
            "lists tensor `embeddings.LayerNorm.weight` twice",
        ],
    );
}
