//! Robustness of the model-file readers: a damaged or hostile GGUF file, safetensors folder or
//! PEFT adapter folder ends in Ok or in an error, never in a panic.
//!
//! Each case starts from a tiny REAL file written by the project's own writers (the GGUF writer,
//! `save_llama`, the trainer's PEFT adapter writer `peft_merge::AdapterExport`), mutates it with a seeded
//! RNG (bit flips, byte overwrites, truncation, appended bytes, and huge or edge values written
//! into the size, offset, count and dims fields, the safetensors header's numbers and the JSON
//! configs' numbers), and opens it the way the CLI does: describe, load, tokenizer; read the
//! adapter, merge it.
//!
//! Cases per format: `ARDPIPE_FUZZ_CASES` (default 100, under a second). Run long with
//!
//! ```text
//! ARDPIPE_FUZZ_CASES=100000 cargo test -p ardpipe-engine --test fuzz_files
//! ```
//!
//! (the test profile, not `--release`: it keeps overflow checks on, which is what turns unchecked
//! arithmetic on a file's numbers into a caught panic; 20,000 cases take about 2.5 minutes on 2
//! cores).
//!
//! A panicking case fails the test naming its format, seed and mutations; replay one case with
//! `ARDPIPE_FUZZ_SEED=<seed>` (with the same format's test filter).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use ardpipe_engine::adapters::peft::{PeftModule, PeftType};
use ardpipe_engine::checkpoint::write_safetensors;
use ardpipe_engine::models::arch::layers::seeded_normal;
use ardpipe_engine::models::gguf::writer::GgufWriter;
use ardpipe_engine::models::gguf::{GgmlType, Value};
use ardpipe_engine::models::hf::export::save_llama;
use ardpipe_engine::models::tokenizer::load_tokenizer;
use ardpipe_engine::models::{LoadOptions, ModelLocation, describe, load_causal_lm};
use ardpipe_engine::peft_merge::{AdapterExport, AdapterFolder};
use ardpipe_engine::rng::Rng;
use tch::Tensor;

const V: usize = 64;
const D: usize = 32;
const F: usize = 64;
const H: usize = 4;
const KV: usize = 2;
const HD: usize = D / H;

fn cases() -> u64 {
    std::env::var("ARDPIPE_FUZZ_CASES")
        .ok()
        .map(|v| v.parse().expect("ARDPIPE_FUZZ_CASES is a number"))
        .unwrap_or(100)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-fuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.flatten(0, -1)).unwrap()
}

/// A one-layer Llama in GGUF with every supported storage type and a byte-level BPE tokenizer.
fn write_gguf(path: &Path) {
    let mut g = GgufWriter::new();
    let tokens: Vec<Value> = (0..V)
        .map(|i| {
            Value::String(
                ((b'a' + (i % 26) as u8) as char)
                    .to_string()
                    .repeat(1 + i / 26),
            )
        })
        .collect();
    g.meta("general.architecture", Value::String("llama".into()))
        .meta("general.alignment", Value::U32(32))
        .meta("llama.block_count", Value::U32(1))
        .meta("llama.embedding_length", Value::U32(D as u32))
        .meta("llama.feed_forward_length", Value::U32(F as u32))
        .meta("llama.attention.head_count", Value::U32(H as u32))
        .meta("llama.attention.head_count_kv", Value::U32(KV as u32))
        .meta("llama.rope.freq_base", Value::F32(10000.0))
        .meta("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .meta("llama.context_length", Value::U32(64))
        .meta("tokenizer.ggml.model", Value::String("gpt2".into()))
        .meta("tokenizer.ggml.tokens", Value::Array(tokens))
        .meta(
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("a a".into())]),
        )
        .meta("tokenizer.ggml.eos_token_id", Value::U32(1));
    let (d, f, kvd) = (D, F, KV * HD);
    let mut seed = 0;
    let mut put = |g: &mut GgufWriter, name: &str, shape: &[usize], ty: GgmlType| {
        seed += 1;
        let shape_i: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
        let t = seeded_normal(&shape_i, 0.2, seed) + if shape.len() == 1 { 1.0 } else { 0.0 };
        g.tensor(name, shape, &values(&t), ty);
    };
    put(&mut g, "token_embd.weight", &[V, d], GgmlType::Q8_0);
    put(&mut g, "blk.0.attn_q.weight", &[d, d], GgmlType::Q4_1);
    put(&mut g, "blk.0.attn_k.weight", &[kvd, d], GgmlType::F16);
    put(&mut g, "blk.0.attn_v.weight", &[kvd, d], GgmlType::Q8_0);
    put(&mut g, "blk.0.attn_output.weight", &[d, d], GgmlType::F32);
    put(&mut g, "blk.0.ffn_gate.weight", &[f, d], GgmlType::Q4_1);
    put(&mut g, "blk.0.ffn_up.weight", &[f, d], GgmlType::Q8_0);
    put(&mut g, "blk.0.ffn_down.weight", &[d, f], GgmlType::F16);
    put(&mut g, "blk.0.attn_norm.weight", &[d], GgmlType::F32);
    put(&mut g, "blk.0.ffn_norm.weight", &[d], GgmlType::F32);
    put(&mut g, "output_norm.weight", &[d], GgmlType::F32);
    g.write(path).unwrap();
}

/// The adapter variants the merge reads: LoRA, LoRA with a saved classifier head, DoRA,
/// AdaLoRA.
fn write_adapter(dir: &Path, kind: &str) {
    let mut seed = 100;
    let mut m = |shape: &[i64]| {
        seed += 1;
        seeded_normal(shape, 0.1, seed)
    };
    let (d, kvd, r) = (D as i64, (KV * HD) as i64, 2i64);
    let mut modules = Vec::new();
    for (path, d_out) in [
        ("model.layers.0.self_attn.q_proj", d),
        ("model.layers.0.self_attn.v_proj", kvd),
    ] {
        let tensors = match kind {
            "adalora" => vec![
                ("lora_A".to_string(), m(&[r, d])),
                ("lora_E".to_string(), m(&[r, 1])),
                ("lora_B".to_string(), m(&[d_out, r])),
            ],
            _ => {
                let mut t = vec![
                    ("lora_A.weight".to_string(), m(&[r, d])),
                    ("lora_B.weight".to_string(), m(&[d_out, r])),
                ];
                if kind == "dora" {
                    t.push(("lora_magnitude_vector".into(), m(&[d_out]) + 1.0));
                }
                t
            }
        };
        modules.push(PeftModule {
            module: path.into(),
            tensors,
            r: r as usize,
            lora_alpha: 4.0,
            adalora_keep: (kind == "adalora").then(|| vec![true, true, false]),
        });
    }
    let peft_type = if kind == "adalora" {
        PeftType::AdaLora
    } else {
        PeftType::Lora
    };
    let mut extra = BTreeMap::new();
    if kind == "adalora" {
        extra.insert("init_r".into(), serde_json::json!(3));
    }
    // A saved head, as a classification export carries (`classifier_rows` reads it).
    let head = if kind == "head" {
        vec![
            ("classifier.weight".to_string(), m(&[3, d])),
            ("classifier.bias".to_string(), m(&[3])),
        ]
    } else {
        vec![]
    };
    // The trainer's own writer, so the seeds are the bytes an export has.
    AdapterExport {
        peft_type,
        modules: &modules,
        dropout: 0.0,
        use_dora: kind == "dora",
        head,
        modules_to_save: vec!["classifier".into()],
        task_type: "CAUSAL_LM",
        base_model: "base.gguf".into(),
        extra,
    }
    .write(dir)
    .unwrap();
}

/// Values that break unchecked arithmetic on sizes, offsets and counts.
fn edge_u64(rng: &mut Rng, file_len: u64) -> u64 {
    let k = rng.below(8);
    match rng.below(14) {
        0 => 0,
        1 => 1,
        2 => u64::MAX - k,
        3 => i64::MAX as u64 - k,
        4 => 1 << 63,
        5 => (1 << 32) + k,
        6 => 65536,
        7 => file_len + k,
        8 => file_len.saturating_sub(k),
        9 => u32::MAX as u64,
        10 => 1 << (20 + rng.below(40)),
        11 => (u64::MAX / 4) + k,
        _ => rng.next_u64(),
    }
}

/// Every position where `needle` occurs.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Positions of the GGUF fields that size things: the tensor and metadata counts, every tensor
/// info's dims count, dims, type and offset (found after each tensor's name), and the length of
/// each metadata array or string.
fn gguf_fields(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut fields = vec![(4, 4), (8, 8), (16, 8)];
    for name in [
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.0.ffn_down.weight",
        "blk.0.ffn_norm.weight",
        "output_norm.weight",
    ] {
        for at in find_all(bytes, name.as_bytes()) {
            let mut p = at + name.len();
            if at < 8 || p + 4 > bytes.len() {
                continue;
            }
            fields.push((at - 8, 8)); // the name's length
            let n_dims = u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
            fields.push((p, 4));
            p += 4;
            for _ in 0..n_dims.min(4) {
                fields.push((p, 8));
                p += 8;
            }
            fields.push((p, 4)); // type
            fields.push((p + 4, 8)); // offset
        }
    }
    for key in [
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "general.alignment",
        "llama.block_count",
        "llama.embedding_length",
        "llama.attention.head_count",
    ] {
        for at in find_all(bytes, key.as_bytes()) {
            let p = at + key.len();
            fields.push((p, 4)); // value type
            fields.push((p + 4, 4)); // array item type / scalar value
            fields.push((p + 8, 8)); // array length
        }
    }
    fields.retain(|&(p, w)| p + w <= bytes.len());
    fields
}

/// Spans of decimal digits (the numbers of a JSON text or safetensors header).
fn number_spans(text: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() {
            let s = i;
            while i < text.len() && text[i].is_ascii_digit() {
                i += 1;
            }
            spans.push((s, i));
        } else {
            i += 1;
        }
    }
    spans
}

/// Replace one number in `bytes[lo..hi]` (a JSON text) by an edge value; for a safetensors
/// header the 8-byte length prefix is rewritten to keep the header's own length right.
fn mutate_json_number(rng: &mut Rng, bytes: &mut Vec<u8>, safetensors_header: bool) -> String {
    let (lo, hi) = if safetensors_header {
        if bytes.len() < 8 {
            return "skip".into();
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        (8, (8 + n).min(bytes.len()))
    } else {
        (0, bytes.len())
    };
    let spans = number_spans(&bytes[lo..hi]);
    if spans.is_empty() {
        return "skip".into();
    }
    let (s, e) = spans[rng.below(spans.len() as u64) as usize];
    let v = match rng.below(6) {
        0 => "0".to_string(),
        1 => "18446744073709551615".to_string(),
        2 => "18446744073709551616".to_string(),
        3 => "1000000000".to_string(),
        4 => "-1".to_string(),
        _ => edge_u64(rng, (hi - lo) as u64).to_string(),
    };
    let mut out = bytes[..lo + s].to_vec();
    out.extend(v.as_bytes());
    out.extend(&bytes[lo + e..]);
    if safetensors_header {
        let n = (hi - 8) as i64 + v.len() as i64 - (e - s) as i64;
        out[..8].copy_from_slice(&(n as u64).to_le_bytes());
    }
    *bytes = out;
    format!("number at {} := {v}", lo + s)
}

/// 1 to 4 mutations; returns what was done, for the failure message.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, kind: Kind) -> Vec<String> {
    let mut done = Vec::new();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            bytes.push(0);
        }
        let len = bytes.len() as u64;
        let what = match rng.below(10) {
            0 | 1 => {
                let p = rng.below(len) as usize;
                let bit = rng.below(8);
                bytes[p] ^= 1 << bit;
                format!("flip bit {bit} at {p}")
            }
            2 => {
                let p = rng.below(len) as usize;
                let b = rng.next_u64() as u8;
                bytes[p] = b;
                format!("byte at {p} := {b}")
            }
            3 => {
                let cut = rng.below(len) as usize;
                bytes.truncate(cut);
                format!("truncate to {cut}")
            }
            4 => {
                let n = 1 + rng.below(64) as usize;
                bytes.extend((0..n).map(|_| rng.next_u64() as u8));
                format!("append {n} bytes")
            }
            _ => match kind {
                Kind::Gguf => {
                    let fields = gguf_fields(bytes);
                    if fields.is_empty() {
                        continue;
                    }
                    let (p, w) = fields[rng.below(fields.len() as u64) as usize];
                    let v = edge_u64(rng, len);
                    bytes[p..p + w].copy_from_slice(&v.to_le_bytes()[..w]);
                    format!("field at {p} ({w} bytes) := {v}")
                }
                Kind::Safetensors => mutate_json_number(rng, bytes, true),
                Kind::Json => mutate_json_number(rng, bytes, false),
            },
        };
        done.push(what);
    }
    done
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Gguf,
    Safetensors,
    Json,
}

/// Run `cases()` cases (or the one in ARDPIPE_FUZZ_SEED): each writes its mutated file(s) with
/// `prepare` and opens them with `open`; a panic fails the test with seed and mutations.
fn fuzz(name: &str, mut prepare: impl FnMut(&mut Rng) -> Vec<String>, open: impl Fn()) {
    let seeds: Vec<u64> = match std::env::var("ARDPIPE_FUZZ_SEED") {
        Ok(s) => vec![s.parse().expect("ARDPIPE_FUZZ_SEED is a number")],
        Err(_) => (0..cases()).collect(),
    };
    quiet_panics_in_cases();
    let mut failure = None;
    let (mut ok, mut err) = (0, 0);
    for &seed in &seeds {
        let mut rng = Rng::from_seed(seed ^ 0xF022_F11E);
        let mutations = prepare(&mut rng);
        IN_CASE.with(|c| c.set(true));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _g = tch::no_grad_guard();
            open_counting(&open)
        }));
        IN_CASE.with(|c| c.set(false));
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failure = Some(format!(
                    "{name}: seed {seed} panicked: {msg}\n  mutations: {mutations:?}\n  replay: \
                     ARDPIPE_FUZZ_SEED={seed} cargo test -p ardpipe-engine --test fuzz_files {name}"
                ));
                break;
            }
        }
    }
    if let Some(f) = failure {
        panic!("{f}");
    }
    eprintln!("{name}: {} cases, {ok} Ok, {err} Err", seeds.len());
    assert!(
        err > 0 || seeds.len() < 10,
        "no mutation was refused: the fuzz is not biting"
    );
}

thread_local! {
    static ANY_ERR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A case's panic is caught and reported with its seed, so the default hook's print is
/// suppressed on that thread while a case runs; every other panic prints as usual.
fn quiet_panics_in_cases() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| c.get()) {
                default(info);
            }
        }));
    });
}

/// Record that an open step returned an error (for the Ok/Err tally).
fn note<T, E>(r: Result<T, E>) -> Option<T> {
    if r.is_err() {
        ANY_ERR.with(|c| c.set(true));
    }
    r.ok()
}

fn open_counting(open: &impl Fn()) -> bool {
    ANY_ERR.with(|c| c.set(false));
    open();
    !ANY_ERR.with(|c| c.get())
}

fn open_model(path: &Path) {
    note(describe(path));
    if let Some(lm) = note(load_causal_lm(path, &LoadOptions::default())) {
        // A load that succeeds gives finite weights: a NaN would make every answer NaN.
        for (name, t) in lm.model.base_parameters() {
            let finite = t.isfinite().all().int64_value(&[]) != 0;
            assert!(finite, "load succeeded but `{name}` holds NaN/inf");
        }
    }
    // GGUF files carry their tokenizer (the folders here have no tokenizer.json).
    if let Some(loc @ ModelLocation::Gguf(_)) = note(ModelLocation::detect(path)) {
        note(load_tokenizer(&loc));
    }
}

#[test]
fn gguf_files_never_panic() {
    let dir = tmp("gguf");
    let base_path = dir.join("base.gguf");
    write_gguf(&base_path);
    assert!(load_causal_lm(&base_path, &LoadOptions::default()).is_ok());
    let base = std::fs::read(&base_path).unwrap();
    let path = dir.join("case.gguf");
    fuzz(
        "gguf",
        |rng| {
            let mut bytes = base.clone();
            let m = mutate(rng, &mut bytes, Kind::Gguf);
            std::fs::write(&path, &bytes).unwrap();
            m
        },
        || open_model(&path),
    );
}

#[test]
fn safetensors_folders_never_panic() {
    let dir = tmp("safetensors");
    let gguf = dir.join("base.gguf");
    write_gguf(&gguf);
    let base_dir = dir.join("base");
    let lm = load_causal_lm(&gguf, &LoadOptions::default()).unwrap();
    save_llama(&lm.model, &base_dir).unwrap();
    assert!(load_causal_lm(&base_dir, &LoadOptions::default()).is_ok());
    let weights = std::fs::read(base_dir.join("model.safetensors")).unwrap();
    let config = std::fs::read(base_dir.join("config.json")).unwrap();
    let case = dir.join("case");
    std::fs::create_dir_all(&case).unwrap();
    fuzz(
        "safetensors",
        |rng| {
            let (mut w, mut c) = (weights.clone(), config.clone());
            // Mostly the weights; sometimes the config's numbers (dims, ids, eps).
            let m = if rng.below(4) == 0 {
                mutate(rng, &mut c, Kind::Json)
            } else {
                mutate(rng, &mut w, Kind::Safetensors)
            };
            std::fs::write(case.join("model.safetensors"), &w).unwrap();
            std::fs::write(case.join("config.json"), &c).unwrap();
            m
        },
        || open_model(&case),
    );
}

#[test]
fn peft_adapters_never_panic() {
    let dir = tmp("peft");
    let gguf = dir.join("base.gguf");
    write_gguf(&gguf);
    let kinds = ["lora", "head", "dora", "adalora"];
    let mut bases = Vec::new();
    for kind in kinds {
        let a = dir.join(kind);
        write_adapter(&a, kind);
        let folder = AdapterFolder::read(&a).unwrap();
        let mut lm = load_causal_lm(&gguf, &LoadOptions::default()).unwrap();
        let merged = folder.merge_into(lm.model.linears_mut(), &[]);
        // The head variant carries a classifier this causal LM does not have: refused as a
        // stray; its classifier_rows are read before any model is loaded.
        assert_eq!(merged.is_ok(), kind != "head", "{kind}: {merged:?}");
        assert_eq!(folder.classifier_rows(), (kind == "head").then_some(3));
        bases.push((
            std::fs::read(a.join("adapter_config.json")).unwrap(),
            std::fs::read(a.join("adapter_model.safetensors")).unwrap(),
        ));
    }
    let case = dir.join("case");
    std::fs::create_dir_all(&case).unwrap();
    fuzz(
        "peft",
        |rng| {
            let i = rng.below(kinds.len() as u64) as usize;
            let (mut c, mut w) = bases[i].clone();
            let mut m = vec![kinds[i].to_string()];
            match rng.below(4) {
                0 => m.extend(mutate(rng, &mut c, Kind::Json)),
                1 => m.push(mutate_config(rng, &mut c)),
                2 => m.push(mutate_tensors(rng, &mut w, &case)),
                _ => m.extend(mutate(rng, &mut w, Kind::Safetensors)),
            }
            std::fs::write(case.join("adapter_config.json"), &c).unwrap();
            std::fs::write(case.join("adapter_model.safetensors"), &w).unwrap();
            m
        },
        || {
            if let Some(folder) = note(AdapterFolder::read(&case)) {
                let _ = folder.classifier_rows();
                let mut lm = load_causal_lm(&gguf, &LoadOptions::default()).unwrap();
                if note(folder.merge_into(lm.model.linears_mut(), &[])).is_some() {
                    // A merge that succeeds leaves finite weights (r = 0 once gave NaN outputs).
                    for (name, t) in lm.model.base_parameters() {
                        let finite = t.isfinite().all().int64_value(&[]) != 0;
                        assert!(finite, "merge succeeded but `{name}` holds NaN/inf");
                    }
                }
            }
        },
    );
}

/// Set one field of adapter_config.json that decides the merge to an edge value.
fn mutate_config(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let Ok(mut cfg) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return "skip".into();
    };
    let values = [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(1),
        serde_json::json!(1e308),
        serde_json::json!(u64::MAX),
        serde_json::json!(true),
        serde_json::json!("x"),
        serde_json::json!(null),
        serde_json::json!([true, false]),
        serde_json::json!([]),
        serde_json::json!({"q_proj": 0}),
        serde_json::json!({"model.layers.0.self_attn.q_proj.lora_E": [false]}),
    ];
    let keys = [
        "r",
        "lora_alpha",
        "init_r",
        "use_dora",
        "use_rslora",
        "rank_pattern",
        "alpha_pattern",
        "peft_type",
        "modules_to_save",
        "fan_in_fan_out",
    ];
    let key = keys[rng.below(keys.len() as u64) as usize];
    let v = values[rng.below(values.len() as u64) as usize].clone();
    let what = format!("config {key} := {v}");
    cfg[key] = v;
    *bytes = serde_json::to_vec(&cfg).unwrap();
    what
}

/// Rewrite the adapter's weights through the real writer with one tensor changed: another
/// rank or shape (0-D included), dropped, renamed, or holding NaN / infinity / huge values.
fn mutate_tensors(rng: &mut Rng, bytes: &mut Vec<u8>, scratch: &Path) -> String {
    let file = scratch.join("base.safetensors");
    std::fs::write(&file, &*bytes).unwrap();
    let mut tensors = ardpipe_engine::checkpoint::read_safetensors(&file).unwrap();
    let i = rng.below(tensors.len() as u64) as usize;
    let name = tensors[i].0.clone();
    let dims = [0i64, 1, 2, 3, 4, 32, 64];
    let what = match rng.below(5) {
        0 => {
            let rank = rng.below(4) as usize;
            let shape: Vec<i64> = (0..rank)
                .map(|_| dims[rng.below(dims.len() as u64) as usize])
                .collect();
            tensors[i].1 = Tensor::ones(&shape, tch::kind::FLOAT_CPU);
            format!("`{name}` reshaped to {shape:?}")
        }
        1 => {
            drop(tensors.remove(i));
            format!("`{name}` dropped")
        }
        2 => {
            let suffixes = [".lora_magnitude_vector", ".lora_E", ".x", ""];
            let new = format!("{name}{}", suffixes[rng.below(4) as usize]);
            tensors[i].0 = new.clone();
            format!("`{name}` renamed `{new}`")
        }
        3 => {
            let v = [f32::NAN, f32::INFINITY, 1e30, -1e30, 0.0][rng.below(5) as usize];
            tensors[i].1 = tensors[i].1.full_like(v as f64);
            format!("`{name}` filled with {v}")
        }
        _ => {
            tensors[i].1 = tensors[i].1.to_kind(tch::Kind::Int64);
            format!("`{name}` as int64")
        }
    };
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    if write_safetensors(&file, &named, None).is_err() {
        return "skip (duplicate name)".into();
    }
    *bytes = std::fs::read(&file).unwrap();
    what
}
