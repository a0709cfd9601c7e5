//! Every loader failure mode, on tiny models the tests write in the real formats (GGUF,
//! safetensors + config.json) and load through the real loaders.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ardpipe_models::arch::EncoderHead;
use ardpipe_models::arch::layers::seeded_normal;
use ardpipe_models::gguf::writer::GgufWriter;
use ardpipe_models::gguf::{GgmlType, Value};
use ardpipe_models::{LoadOptions, ModelError, describe, load_causal_lm, load_encoder};
use safetensors::tensor::{Dtype, TensorView};
use tch::Tensor;

const V: usize = 64;
const D: usize = 32;
const F: usize = 48;
const L: usize = 2;
const H: usize = 4;
const KV: usize = 2;
const HD: usize = D / H;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-models-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.flatten(0, -1)).unwrap()
}

/// HF-named weights of a tiny tied Llama.
fn llama_weights() -> Vec<(String, Tensor)> {
    let mut seed = 0;
    let mut w = |shape: &[i64]| {
        seed += 1;
        seeded_normal(shape, 0.2, seed)
    };
    let (d, f, v) = (D as i64, F as i64, V as i64);
    let kvd = (KV * HD) as i64;
    let mut out = vec![("model.embed_tokens.weight".to_string(), w(&[v, d]))];
    for l in 0..L {
        let p = format!("model.layers.{l}");
        for (n, s) in [
            ("self_attn.q_proj", [d, d]),
            ("self_attn.k_proj", [kvd, d]),
            ("self_attn.v_proj", [kvd, d]),
            ("self_attn.o_proj", [d, d]),
            ("mlp.gate_proj", [f, d]),
            ("mlp.up_proj", [f, d]),
            ("mlp.down_proj", [d, f]),
        ] {
            out.push((format!("{p}.{n}.weight"), w(&s)));
        }
        out.push((format!("{p}.input_layernorm.weight"), w(&[d]) + 1.0));
        out.push((
            format!("{p}.post_attention_layernorm.weight"),
            w(&[d]) + 1.0,
        ));
    }
    out.push(("model.norm.weight".into(), w(&[d]) + 1.0));
    out
}

fn llama_config_json(dir: &Path, hidden: usize) {
    let cfg = serde_json::json!({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": V, "hidden_size": hidden, "intermediate_size": F,
        "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128,
        "tie_word_embeddings": true, "eos_token_id": 2
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) {
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            let bytes = values(t).iter().flat_map(|v| v.to_le_bytes()).collect();
            (
                n.clone(),
                bytes,
                t.size().iter().map(|&s| s as usize).collect(),
            )
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
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn hf_llama(name: &str, tensors: &[(String, Tensor)]) -> PathBuf {
    let dir = tmp(name);
    llama_config_json(&dir, D);
    write_safetensors(&dir.join("model.safetensors"), tensors);
    dir
}

/// The converter's Q/K row permutation (the inverse of what the loader undoes).
fn permute(w: &Tensor, n: i64) -> Tensor {
    let (out, inp) = w.size2().unwrap();
    w.reshape([n, 2, out / n / 2, inp])
        .transpose(1, 2)
        .reshape([out, inp])
}

fn gguf_llama(ty: GgmlType) -> GgufWriter {
    let mut g = GgufWriter::new();
    g.meta("general.architecture", Value::String("llama".into()))
        .meta("llama.block_count", Value::U32(L as u32))
        .meta("llama.embedding_length", Value::U32(D as u32))
        .meta("llama.feed_forward_length", Value::U32(F as u32))
        .meta("llama.attention.head_count", Value::U32(H as u32))
        .meta("llama.attention.head_count_kv", Value::U32(KV as u32))
        .meta("llama.rope.freq_base", Value::F32(10000.0))
        .meta("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .meta("llama.context_length", Value::U32(128))
        .meta(
            "tokenizer.ggml.tokens",
            Value::Array((0..V).map(|i| Value::String(format!("t{i}"))).collect()),
        );
    let rename: HashMap<&str, &str> = [
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
    ]
    .into();
    for (name, t) in llama_weights() {
        let (gname, t) = match name.as_str() {
            "model.embed_tokens.weight" => ("token_embd.weight".to_string(), t),
            "model.norm.weight" => ("output_norm.weight".to_string(), t),
            _ => {
                let rest = name.strip_prefix("model.layers.").unwrap();
                let (l, rest) = rest.split_once('.').unwrap();
                let module = rest.strip_suffix(".weight").unwrap();
                let t = match module {
                    "self_attn.q_proj" => permute(&t, H as i64),
                    "self_attn.k_proj" => permute(&t, KV as i64),
                    _ => t,
                };
                (format!("blk.{l}.{}.weight", rename[module]), t)
            }
        };
        let shape: Vec<usize> = t.size().iter().map(|&s| s as usize).collect();
        // Norms stay F32 in real files; linears and embeddings take the requested type.
        let ty = if shape.len() == 1 { GgmlType::F32 } else { ty };
        g.tensor(&gname, &shape, &values(&t), ty);
    }
    g
}

fn logits(path: &Path) -> Tensor {
    let lm = load_causal_lm(path, &LoadOptions::default()).unwrap();
    let ids = Tensor::from_slice(&[1i64, 5, 9, 63, 0, 7]).unsqueeze(0);
    tch::no_grad(|| lm.model.forward(&ids, None, false)).unwrap()
}

fn err_text(e: ModelError) -> String {
    e.to_string()
}

#[test]
fn gguf_with_permuted_qk_equals_the_hf_folder() {
    let hf = hf_llama("agree-hf", &llama_weights());
    let file = tmp("agree-gguf").join("tiny.gguf");
    gguf_llama(GgmlType::F32).write(&file).unwrap();
    let a = logits(&hf);
    let b = logits(&file);
    let diff = (&a - &b).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "GGUF and safetensors logits differ by {diff}");

    // Quantised storage stays close to the f32 weights (Q8_0 closer than Q4_1).
    let mut prev = 0.0;
    for (ty, bound) in [
        (GgmlType::F16, 0.01),
        (GgmlType::Q8_0, 0.3),
        (GgmlType::Q4_1, 3.0),
    ] {
        let q = tmp(&format!("agree-{ty:?}")).join("tiny.gguf");
        gguf_llama(ty).write(&q).unwrap();
        let d = (&a - logits(&q)).abs().max().double_value(&[]);
        assert!(d >= prev && d < bound, "{ty:?}: {d}");
        prev = d;
    }

    let desc = describe(&file).unwrap();
    assert_eq!(desc.modules.len(), L * 7);
    assert_eq!(desc.modules[1].path, "model.layers.0.self_attn.k_proj");
    assert_eq!(desc.modules[1].heads.n_heads, KV);
}

#[test]
fn gguf_unsupported_type_names_the_type_and_tensor() {
    let file = tmp("unsupported").join("tiny.gguf");
    gguf_llama(GgmlType::F32)
        .write_with_type_override(&file, &[("blk.1.ffn_up.weight", 16)])
        .unwrap();
    // Describing needs no tensor data, so it still works.
    assert!(describe(&file).is_ok());
    let e = err_text(
        load_causal_lm(&file, &LoadOptions::default())
            .err()
            .unwrap(),
    );
    assert!(
        e.contains("IQ2_XXS") && e.contains("blk.1.ffn_up.weight"),
        "{e}"
    );
}

#[test]
fn gguf_truncated_and_bad_magic_are_clear_errors() {
    let dir = tmp("truncated");
    let file = dir.join("tiny.gguf");
    gguf_llama(GgmlType::F32).write(&file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    for cut in [10, 200, bytes.len() - 100] {
        let p = dir.join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = err_text(load_causal_lm(&p, &LoadOptions::default()).err().unwrap());
        assert!(e.contains("truncated GGUF"), "cut at {cut}: {e}");
    }
    let p = dir.join("bad.gguf");
    let mut bad = bytes.clone();
    bad[..4].copy_from_slice(b"GGML");
    std::fs::write(&p, &bad).unwrap();
    let e = err_text(load_causal_lm(&p, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("not a model") || e.contains("not a GGUF"), "{e}");
}

#[test]
fn missing_mismatched_and_unexpected_tensors_are_all_reported() {
    let mut w = llama_weights();
    w.retain(|(n, _)| n != "model.layers.1.mlp.up_proj.weight");
    for (n, t) in w.iter_mut() {
        if n == "model.layers.0.self_attn.v_proj.weight" {
            *t = t.narrow(0, 0, 8);
        }
    }
    w.push((
        "model.layers.0.self_attn.extra.weight".into(),
        Tensor::zeros([2], tch::kind::FLOAT_CPU),
    ));
    let dir = hf_llama("report", &w);
    let e = load_causal_lm(&dir, &LoadOptions::default()).err().unwrap();
    let ModelError::Report(r) = &e else {
        panic!("not a report: {e}")
    };
    assert_eq!(r.missing, ["model.layers.1.mlp.up_proj.weight"]);
    assert_eq!(r.unexpected, ["model.layers.0.self_attn.extra.weight"]);
    assert_eq!(r.mismatched.len(), 1);
    assert_eq!(r.mismatched[0].found, [8, D as i64]);
    let text = e.to_string();
    for s in [
        "missing (1)",
        "shape mismatch (1)",
        "unexpected (1)",
        "config.json",
    ] {
        assert!(text.contains(s), "{s} not in {text}");
    }
}

#[test]
fn sharded_checkpoints_load_and_a_missing_shard_is_named() {
    let w = llama_weights();
    let dir = tmp("sharded");
    llama_config_json(&dir, D);
    let (a, b) = w.split_at(w.len() / 2);
    write_safetensors(&dir.join("model-00001-of-00002.safetensors"), a);
    write_safetensors(&dir.join("model-00002-of-00002.safetensors"), b);
    let mut map = serde_json::Map::new();
    for (n, _) in a {
        map.insert(n.clone(), "model-00001-of-00002.safetensors".into());
    }
    for (n, _) in b {
        map.insert(n.clone(), "model-00002-of-00002.safetensors".into());
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let whole = hf_llama("sharded-whole", &w);
    assert!(logits(&dir).allclose(&logits(&whole), 1e-6, 1e-6, false));

    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let e = err_text(load_causal_lm(&dir, &LoadOptions::default()).err().unwrap());
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn bad_configs_and_files_are_clear_errors() {
    let dir = hf_llama("badcfg", &llama_weights());
    // Wrong hidden size in config: every affected tensor is a shape mismatch, not a panic.
    llama_config_json(&dir, 40);
    let e = err_text(load_causal_lm(&dir, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("shape mismatch"), "{e}");
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "gpt2", "n_embd": 8}"#,
    )
    .unwrap();
    let e = err_text(load_causal_lm(&dir, &LoadOptions::default()).err().unwrap());
    assert!(
        e.contains("model_type `gpt2`") && e.contains("not supported"),
        "{e}"
    );
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let e = err_text(describe(&dir).err().unwrap());
    assert!(
        e.contains("config.json") && e.contains("not a valid config.json"),
        "{e}"
    );
    llama_config_json(&dir, D);
    let cfg = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("\"num_key_value_heads\":2", "\"num_key_value_heads\":3");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let e = err_text(describe(&dir).err().unwrap());
    assert!(e.contains("key/value heads"), "{e}");
    // A corrupt safetensors header.
    llama_config_json(&dir, D);
    std::fs::write(dir.join("model.safetensors"), b"\x10\0\0\0\0\0\0\0{garbage").unwrap();
    let e = err_text(load_causal_lm(&dir, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("not a valid safetensors file"), "{e}");
    // No weights at all; a path that does not exist.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = err_text(load_causal_lm(&dir, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("no weights"), "{e}");
    let e = err_text(
        load_causal_lm(Path::new("/nonexistent/model"), &LoadOptions::default())
            .err()
            .unwrap(),
    );
    assert!(e.contains("/nonexistent/model"), "{e}");
    // An encoder asked to generate, a causal LM asked to embed.
    let e = err_text(
        load_encoder(
            &hf_llama("lm-as-encoder", &llama_weights()),
            EncoderHead::Embedding,
            &LoadOptions::default(),
        )
        .err()
        .unwrap(),
    );
    assert!(e.contains("not an encoder"), "{e}");
}

#[test]
fn storage_dtype_without_autocast_is_refused() {
    let dir = hf_llama("dtype", &llama_weights());
    let opts = LoadOptions {
        precision: ardpipe_models::Precision {
            storage: ardpipe_models::StorageDtype::Bf16,
            autocast: None,
        },
        ..Default::default()
    };
    let e = err_text(load_causal_lm(&dir, &opts).err().unwrap());
    assert!(e.contains("needs autocast"), "{e}");
}

/// Full-parameter training backpropagates through every layer's residual stream: no forward
/// op may modify in place a tensor that a norm saved for its backward pass.
#[test]
fn llama_backward_reaches_every_base_weight() {
    let hf = hf_llama("backward", &llama_weights());
    let lm = load_causal_lm(&hf, &LoadOptions::default()).unwrap();
    let params = lm.model.base_parameters();
    for (_, p) in &params {
        let _ = p.shallow_clone().set_requires_grad(true);
    }
    let ids = Tensor::from_slice(&[1i64, 5, 9, 63, 0, 7]).unsqueeze(0);
    let logits = lm.model.forward(&ids, None, true).unwrap();
    logits.square().mean(tch::Kind::Float).backward();
    for (name, p) in &params {
        let g = p.grad();
        assert!(g.defined(), "{name} got no gradient");
        assert!(
            g.abs().sum(tch::Kind::Float).double_value(&[]) > 0.0,
            "{name}: zero gradient"
        );
    }
}

/// Without `model.safetensors` or an index, a folder's only `*.safetensors` (any name) loads, and
/// so does a complete set of `NAME-0000i-of-0000n` shards; anything else is ambiguous or names
/// the missing shard, and one tensor in two files is refused.
#[test]
fn folders_without_index_load_their_one_file_or_their_shard_set() {
    let w = llama_weights();
    let whole = logits(&hf_llama("noindex-whole", &w));

    let one = tmp("noindex-one");
    llama_config_json(&one, D);
    write_safetensors(&one.join("pytorch_model-fp32.safetensors"), &w);
    assert!(logits(&one).allclose(&whole, 1e-6, 1e-6, false));

    let shards = tmp("noindex-shards");
    llama_config_json(&shards, D);
    let (a, rest) = w.split_at(w.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    for (i, part) in [a, b, c].iter().enumerate() {
        let name = format!("model-{:05}-of-00003.safetensors", i + 1);
        write_safetensors(&shards.join(name), part);
    }
    assert!(logits(&shards).allclose(&whole, 1e-6, 1e-6, false));

    std::fs::remove_file(shards.join("model-00002-of-00003.safetensors")).unwrap();
    let e = err_text(
        load_causal_lm(&shards, &LoadOptions::default())
            .err()
            .unwrap(),
    );
    assert!(
        e.contains("shard 2 of 3 is missing") && e.contains("model-00002-of-00003.safetensors"),
        "{e}"
    );
    write_safetensors(&shards.join("model-00002-of-00003.safetensors"), b);
    write_safetensors(&shards.join("extra.safetensors"), c);
    let e = err_text(
        load_causal_lm(&shards, &LoadOptions::default())
            .err()
            .unwrap(),
    );
    assert!(
        e.contains("4 *.safetensors files") && e.contains("extra.safetensors"),
        "{e}"
    );
    std::fs::remove_file(shards.join("extra.safetensors")).unwrap();
    write_safetensors(&shards.join("model-00002-of-00003.safetensors"), rest);
    let e = err_text(
        load_causal_lm(&shards, &LoadOptions::default())
            .err()
            .unwrap(),
    );
    assert!(e.contains("is also in") && e.contains("keep one"), "{e}");
}

/// The safetensors crate adds the last data offset to the header length unchecked: a header
/// whose offsets chain (each size consistent with its shape) to just below 2^64 overflows there
/// (a panic in debug builds). It must be an error naming a tensor.
#[test]
fn safetensors_offsets_chained_to_2_64_are_refused() {
    let dir = hf_llama("offset-chain", &llama_weights());
    let mut header = serde_json::Map::new();
    let mut start = 0u64;
    for i in 0..16 {
        // U8 tensors: 15 of 2^60 bytes, then one ending at 2^64 - 1.
        let end = if i < 15 { start + (1 << 60) } else { u64::MAX };
        header.insert(
            format!("t{i:02}"),
            serde_json::json!({"dtype": "U8", "shape": [end - start], "data_offsets": [start, end]}),
        );
        start = end;
    }
    let text = serde_json::Value::Object(header).to_string();
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend(text.as_bytes());
    std::fs::write(dir.join("model.safetensors"), &bytes).unwrap();
    let e = err_text(load_causal_lm(&dir, &LoadOptions::default()).err().unwrap());
    assert!(e.contains("corrupt safetensors: tensor `t"), "{e}");
}

#[test]
fn config_dimensions_beyond_any_model_name_their_key() {
    let dir = hf_llama("limits", &llama_weights());
    for (key, value) in [
        ("num_hidden_layers", 1_000_000_000u64),
        ("vocab_size", 1 << 40),
        ("intermediate_size", 1 << 30),
        ("max_position_embeddings", 1 << 40),
    ] {
        llama_config_json(&dir, D);
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        cfg[key] = value.into();
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let e = err_text(describe(&dir).err().unwrap());
        assert!(
            e.contains(&format!("{key} = {value}")) && e.contains("limit"),
            "{key}: {e}"
        );
    }
    llama_config_json(&dir, D);
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    cfg["rms_norm_eps"] = (-1.0).into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let e = err_text(describe(&dir).err().unwrap());
    assert!(e.contains("rms_norm_eps = -1"), "{e}");

    // GGUF metadata names its own keys.
    let file = tmp("limits-gguf").join("layers.gguf");
    let mut g = gguf_llama(GgmlType::F32);
    g.meta("llama.block_count", Value::U64(1 << 40));
    g.write(&file).unwrap();
    let e = err_text(describe(&file).err().unwrap());
    assert!(e.contains("llama.block_count = 1099511627776"), "{e}");
}

/// An index may only name shards beside it: a path elsewhere is refused before it is opened.
#[test]
fn an_index_naming_a_file_outside_its_folder_is_refused() {
    let w = llama_weights();
    let outside = hf_llama("index-outside-target", &w);
    let dir = tmp("index-outside");
    llama_config_json(&dir, D);
    for shard in [
        outside.join("model.safetensors").display().to_string(),
        format!(
            "../{}/model.safetensors",
            outside.file_name().unwrap().to_string_lossy()
        ),
    ] {
        let map: serde_json::Map<String, serde_json::Value> = w
            .iter()
            .map(|(n, _)| (n.clone(), shard.clone().into()))
            .collect();
        let index = serde_json::json!({"metadata": {}, "weight_map": map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
        let e = err_text(load_causal_lm(&dir, &LoadOptions::default()).err().unwrap());
        assert!(
            e.contains(&format!("shard `{shard}`")) && e.contains("not a file name in this folder"),
            "{e}"
        );
    }
}

/// A NaN in a weight (a damaged file or quantisation scale) is refused at load, naming the
/// tensor: it would otherwise make every output NaN.
#[test]
fn a_weight_holding_nan_is_refused() {
    let mut w = llama_weights();
    for (n, t) in w.iter_mut() {
        if n == "model.layers.1.mlp.down_proj.weight" {
            *t = t.index_fill(1, &Tensor::from_slice(&[3i64]), f64::NAN);
        }
    }
    let e = err_text(
        load_causal_lm(&hf_llama("nan", &w), &LoadOptions::default())
            .err()
            .unwrap(),
    );
    assert!(
        e.contains("`model.layers.1.mlp.down_proj.weight` holds NaN or infinite values"),
        "{e}"
    );
}
