//! `ardpipe merge` and `export = [merged]`: a short ARD-LoRA run, then its adapter folded into
//! the base model and written as a complete Hugging Face folder, which Python transformers
//! loads as it is (`from_pretrained`: config.json, the tokenizer files, safetensors, sharded
//! with an index under a small `--max-shard-size`) to the logits ardpipe gives with the
//! adapter. Once for the causal LM (SmolLM2, a GGUF base: f32 weights, tokenizer.json written
//! from the GGUF's tokenizer) and once for the encoder classifier (MiniLM with its trained
//! head and the run's class names). Needs the example assets and the Python peer venv that
//! `scripts/setup.sh` creates; a missing peer fails the test, saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ardpipe_engine::models::tokenizer::load_tokenizer;
use ardpipe_engine::models::{LoadOptions, load_causal_lm};
use ardpipe_engine::peft_merge::AdapterFolder;
use ardpipe_engine::tch::{self, Tensor};

use crate::{ardpipe, stderr, stdout};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn asset(rel: &str) -> PathBuf {
    let p = repo().join(".ardpipe/assets").join(rel);
    assert!(
        p.exists(),
        "example asset {} is missing: run `scripts/setup.sh`",
        p.display()
    );
    p
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-merge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> String {
    stdout(o) + &stderr(o)
}

/// `ardpipe run FILE` with `--set` overrides, from the repository root.
fn run_pipeline(file: &str, sets: &[String]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ardpipe"));
    cmd.current_dir(repo())
        .args(["run", file, "-q"])
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000");
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.output().unwrap()
}

pub(crate) fn merge(args: &[&str]) -> Output {
    let mut all = vec!["merge"];
    all.extend(args);
    ardpipe(&all)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The shard files of a merged folder, and whether it has an index.
fn weight_files(dir: &Path) -> (Vec<String>, bool) {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    files.sort();
    (files, dir.join("model.safetensors.index.json").is_file())
}

/// ardpipe's logits for `text` (tokenised with its special tokens) from the causal LM at
/// `model` with the adapter of `adapter` (a run or a PEFT folder) merged by the engine, written
/// to `out` as `ids` [t] and `logits` [t, vocab] for a peer to compare with. Returns the ids and
/// how far the adapter moves the logits (so a check is known to bite).
pub(crate) fn logits_with_adapter(
    model: &Path,
    adapter: &Path,
    text: &str,
    out: &Path,
) -> (Vec<i64>, f64) {
    let mut lm = load_causal_lm(model, &LoadOptions::default()).unwrap();
    let tok = load_tokenizer(&lm.location).unwrap();
    let ids: Vec<i64> = tok
        .tokenizer
        .encode(text, true)
        .unwrap()
        .ids
        .iter()
        .map(|&i| i as i64)
        .collect();
    let input = Tensor::from_slice(&ids).unsqueeze(0);
    let logits = |lm: &ardpipe_engine::models::model::LoadedLm| {
        tch::no_grad(|| lm.model.forward(&input, None, false))
            .unwrap()
            .get(0)
    };
    let without = logits(&lm);
    AdapterFolder::read(adapter)
        .unwrap()
        .merge_into(lm.model.linears_mut(), &[])
        .unwrap();
    let with = logits(&lm);
    let effect = (&with - &without).abs().max().double_value(&[]);
    Tensor::write_safetensors(&[("ids", Tensor::from_slice(&ids)), ("logits", with)], out).unwrap();
    (ids, effect)
}

/// The Python peer: transformers loads every folder in `spec` (see tests/peer/merged_folder.py).
pub(crate) fn peer(spec: &serde_json::Value, scratch: &Path) -> serde_json::Value {
    let python = crate::peer_python();
    let spec_path = scratch.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = Command::new(&python)
        .arg(repo().join("tests/peer/merged_folder.py"))
        .arg(&spec_path)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the transformers peer failed:\n{}",
        stderr(&out)
    );
    let last = stdout(&out).lines().last().unwrap_or("").to_string();
    serde_json::from_str(&last).unwrap_or_else(|e| panic!("peer said {last:?}: {e}"))
}

#[test]
fn a_causal_lm_run_merges_into_a_folder_transformers_loads_to_the_same_logits() {
    let root = fresh_dir("lm");
    let run_out = root.join("run");
    let out = run_pipeline(
        "pipelines/causal_lm.ard",
        &[
            "train.steps=3".into(),
            "train.batch_size=2".into(),
            "train.grad_accum=1".into(),
            "train.precision=f32".into(),
            // A high constant rate: three steps must move the adapter well past the tolerance.
            "train.lr=1e-2".into(),
            "train.eval_every=3 steps".into(),
            "train.checkpoint_every=3 steps".into(),
            "dataset.shakespeare.max_rows=1000".into(),
            "dataset.shakespeare.split.validation=2%".into(),
            "dataset.shakespeare.preprocess.block_size=32".into(),
            "output.export=[peft, merged]".into(),
            format!("output.dir=\"{}\"", run_out.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("(a complete Hugging Face model folder)"),
        "{}",
        text(&out)
    );
    let exported = run_out.join("merged");
    assert_eq!(
        weight_files(&exported),
        (vec!["model.safetensors".to_string()], false)
    );

    // From the run directory: the run's base model, the transformers default shard size.
    let a = root.join("a");
    let m = merge(&[p(&run_out), "--out", p(&a)]);
    assert!(m.status.success(), "{}", text(&m));
    assert!(
        stdout(&m).contains("causal LM") && stdout(&m).contains("float32"),
        "{}",
        text(&m)
    );
    let adapter_bytes = std::fs::read(run_out.join("adapter/adapter_model.safetensors")).unwrap();
    let pairs = safetensors::SafeTensors::deserialize(&adapter_bytes)
        .unwrap()
        .names()
        .iter()
        .filter(|n| n.ends_with("lora_A.weight"))
        .count();
    assert!(
        stderr(&m).contains(&format!("merged {pairs} modules")),
        "{}",
        text(&m)
    );
    // An existing --out is refused before anything loads, and left as it was.
    let again = merge(&[p(&run_out), "--out", p(&a)]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        stderr(&again).contains("exists: pass --force"),
        "{}",
        text(&again)
    );
    // The adapter folder with its base named, replacing `a` (--force), in shards of 200 MB.
    let gguf = asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let m = merge(&[
        p(&run_out.join("adapter")),
        "--model",
        p(&gguf),
        "--out",
        p(&a),
        "--force",
        "--max-shard-size",
        "200MB",
    ]);
    assert!(m.status.success(), "{}", text(&m));
    let (files, index) = weight_files(&a);
    assert!(index, "{files:?}");
    assert_eq!(
        files,
        (1..=3)
            .map(|i| format!("model-0000{i}-of-00003.safetensors"))
            .collect::<Vec<_>>()
    );
    for f in &files {
        let size = std::fs::metadata(a.join(f)).unwrap().len();
        assert!(size <= 200_000_000 + 100_000, "{f}: {size} bytes");
    }
    assert!(!root.join("a.partial").exists());
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["dtype"], "float32", "{cfg}");

    // ardpipe's logits with the adapter (the engine's merge) and without it.
    let text_in = "To be, or not to be, that is the question:";
    let ours = root.join("ours.safetensors");
    let (ids, effect) = logits_with_adapter(&gguf, &run_out, text_in, &ours);
    let v = peer(
        &serde_json::json!({
            "kind": "causal_lm",
            "folders": [a, exported],
            "text": text_in,
            "ours": ours,
        }),
        &root,
    );
    for (folder, r) in v["folders"].as_object().unwrap() {
        let diff = r["max_abs_diff"].as_f64().unwrap();
        println!(
            "{folder}: transformers vs ardpipe with the adapter, max |Δlogit| {diff:.2e} \
             (the adapter's own effect {effect:.2e})"
        );
        assert_eq!(
            r["ids_equal"], true,
            "{folder}: tokens differ: {r} vs {ids:?}"
        );
        assert_eq!(r["architectures"][0], "LlamaForCausalLM", "{r}");
        assert_eq!(r["dtype"], "torch.float32", "{r}");
        assert!(diff < 1e-4, "{folder}: logits differ by {diff}");
    }
    assert!(
        effect > 1e-2,
        "the adapter barely changes the logits ({effect}): the comparison would not catch a merge that dropped it"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_encoder_run_merges_into_a_sequence_classifier_with_its_labels() {
    let root = fresh_dir("cls");
    let run_out = root.join("run");
    let out = run_pipeline(
        "pipelines/quickstart.ard",
        &[
            "train.steps=6".into(),
            "train.lr=2e-2".into(),
            "train.batch_size=8".into(),
            "train.eval_every=6 steps".into(),
            "train.checkpoint_every=6 steps".into(),
            "dataset.tweets.split.validation=1%".into(),
            "evaluate.batch_size=32".into(),
            "output.export=[peft, merged]".into(),
            format!("output.dir=\"{}\"", run_out.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let exported = run_out.join("merged");
    let minilm = asset("minilm");

    // Refusals first: each is an error naming the cause, and writes nothing.
    let c = root.join("c");
    let wrong = merge(&[
        p(&run_out),
        "--model",
        p(&asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")),
        "--out",
        p(&c),
    ]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        stderr(&wrong).contains("the adapter was trained on another model"),
        "{}",
        text(&wrong)
    );
    let no_model = merge(&[p(&run_out.join("adapter")), "--out", p(&c)]);
    assert_eq!(no_model.status.code(), Some(1), "{}", text(&no_model));
    assert!(
        stderr(&no_model).contains("pass --model"),
        "{}",
        text(&no_model)
    );
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let missing = merge(&[p(&empty), "--model", p(&minilm), "--out", p(&c)]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        stderr(&missing).contains("no adapter_config.json"),
        "{}",
        text(&missing)
    );
    // A run directory that exported no adapter.
    let bare_run = root.join("bare-run");
    std::fs::create_dir_all(&bare_run).unwrap();
    std::fs::copy(
        run_out.join("pipeline.resolved.json"),
        bare_run.join("pipeline.resolved.json"),
    )
    .unwrap();
    let bare = merge(&[p(&bare_run), "--out", p(&c)]);
    assert_eq!(bare.status.code(), Some(1), "{}", text(&bare));
    assert!(
        stderr(&bare).contains("has no adapter/ to merge"),
        "{}",
        text(&bare)
    );
    // --out over the base model it reads.
    let over = merge(&[p(&run_out), "--out", p(&minilm), "--force"]);
    assert_eq!(over.status.code(), Some(1), "{}", text(&over));
    assert!(
        stderr(&over).contains("which this merge reads"),
        "{}",
        text(&over)
    );
    let bad_size = merge(&[p(&run_out), "--out", p(&c), "--max-shard-size", "5XB"]);
    assert_eq!(bad_size.status.code(), Some(2), "{}", text(&bad_size));
    assert!(!c.exists() && !root.join("c.partial").exists());
    assert!(minilm.join("config.json").is_file());

    // The run directory merged, in shards of 20 MB.
    let b = root.join("b");
    let m = merge(&[p(&run_out), "--out", p(&b), "--max-shard-size", "20MB"]);
    assert!(m.status.success(), "{}", text(&m));
    assert!(
        stderr(&m).contains("merged 12 modules") && stderr(&m).contains("4 head tensors"),
        "{}",
        text(&m)
    );
    let (files, index) = weight_files(&b);
    assert!(index && files.len() > 1, "{files:?}");
    for f in ["config.json", "tokenizer.json", "vocab.txt"] {
        assert!(b.join(f).is_file(), "{f} missing");
    }

    // Another dtype on request: f16 weights, and config.json says so.
    let half = root.join("half");
    let m = merge(&[p(&run_out), "--out", p(&half), "--dtype", "f16"]);
    assert!(m.status.success(), "{}", text(&m));
    let bytes = std::fs::read(half.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(
        st.tensors()
            .iter()
            .all(|(_, t)| t.dtype() == safetensors::Dtype::F16)
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(half.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["dtype"], "float16", "{cfg}");
    assert!(cfg.get("torch_dtype").is_none(), "{cfg}");

    let texts = [
        "New study links sleep to heart health http://bit.ly/x",
        "Ebola outbreak spreads in West Africa",
        "Five tips to keep your kids active this summer",
        "FDA approves a new drug for migraines",
    ];
    let mut args = vec![
        "classify",
        "--model",
        p(&minilm),
        "--adapter",
        p(&run_out),
        "--format",
        "json",
    ];
    args.extend(texts);
    let cls = ardpipe(&args);
    assert!(cls.status.success(), "{}", text(&cls));
    let classify = root.join("classify.json");
    std::fs::write(&classify, &cls.stdout).unwrap();
    let labels: Vec<String> =
        serde_json::from_slice(&std::fs::read(run_out.join("labels.json")).unwrap()).unwrap();
    let v = peer(
        &serde_json::json!({"kind": "seq_cls", "folders": [b, exported], "classify": classify}),
        &root,
    );
    for (folder, r) in v["folders"].as_object().unwrap() {
        let diff = r["max_abs_diff"].as_f64().unwrap();
        println!("{folder}: transformers vs ardpipe classify --adapter, max |Δlogit| {diff:.2e}");
        assert_eq!(
            r["architectures"][0], "BertForSequenceClassification",
            "{r}"
        );
        assert_eq!(r["dtype"], "torch.float32", "{r}");
        let id2label: Vec<String> = serde_json::from_value(r["id2label"].clone()).unwrap();
        assert_eq!(id2label, labels, "{folder}");
        assert!(diff < 1e-4, "{folder}: logits differ by {diff}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// `export = [merged]` and `ardpipe merge` of classifiers beyond BERT: a tiny Llama with
/// transformers' `score` head (`LlamaForSequenceClassification`, its pad_token_id) and a tiny
/// RoBERTa (`classifier.dense` → `classifier.out_proj`), both saved by the peer's transformers
/// (engine/models/tests/peer/seq_cls.py) and trained for a few steps by the pipeline of
/// tests/cli/seq_cls.rs.
#[test]
fn decoder_and_roberta_classifiers_merge_into_folders_transformers_loads() {
    let root = fresh_dir("seq-cls");
    let models = root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let python = crate::peer_python();
    let made = Command::new(&python)
        .arg(repo().join("engine/models/tests/peer/seq_cls.py"))
        .arg(&models)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap_or_else(|e| panic!("the peer {} does not run: {e}", python.display()));
    assert!(made.status.success(), "{}", text(&made));
    let mut specs = vec![];
    let mut expect = vec![];
    for (name, modules, class) in [
        (
            "llama",
            "[q_proj, v_proj, gate_proj]",
            "LlamaForSequenceClassification",
        ),
        (
            "roberta",
            "[query, value]",
            "RobertaForSequenceClassification",
        ),
    ] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let model = models.join(name);
        let file = crate::seq_cls::pipeline(&dir, &model, modules);
        let out = ardpipe(&[
            "run",
            p(&file),
            "-q",
            "--set",
            "output.export=[peft, merged]",
        ]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let run = dir.join("run");
        let merged = dir.join("merged");
        let m = merge(&[p(&run), "--out", p(&merged)]);
        assert!(m.status.success(), "{name}: {}", text(&m));
        assert!(
            stdout(&m).contains("sequence classifier, 3 classes"),
            "{}",
            text(&m)
        );
        let mut args = vec!["classify", "--model", p(&model), "--adapter", p(&run)];
        args.extend(["--format", "json"]);
        args.extend(crate::seq_cls::TEXTS);
        let cls = ardpipe(&args);
        assert!(cls.status.success(), "{name}: {}", text(&cls));
        let classify = dir.join("classify.json");
        std::fs::write(&classify, &cls.stdout).unwrap();
        let labels: Vec<String> =
            serde_json::from_slice(&std::fs::read(run.join("labels.json")).unwrap()).unwrap();
        specs.push(serde_json::json!({
            "kind": "seq_cls",
            "folders": [merged, run.join("merged")],
            "classify": classify,
        }));
        expect.push((merged, run.join("merged"), class, labels));
    }
    let v = peer(&serde_json::Value::Array(specs), &root);
    for (merged, exported, class, labels) in expect {
        for folder in [merged, exported] {
            let r = &v["folders"][folder.to_str().unwrap()];
            let diff = r["max_abs_diff"].as_f64().unwrap_or(f64::NAN);
            println!(
                "{}: transformers vs ardpipe classify --adapter, max |Δlogit| {diff:.2e}",
                folder.display()
            );
            assert_eq!(r["architectures"][0], class, "{r}");
            let id2label: Vec<String> = serde_json::from_value(r["id2label"].clone()).unwrap();
            assert_eq!(id2label, labels, "{}", folder.display());
            assert!(diff < 1e-4, "{}: logits differ by {diff}", folder.display());
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Every tensor of a single-file merged folder, as f32 values by name.
fn merged_tensors(dir: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
            let v = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, v)
        })
        .collect()
}

/// A run that trained on a reduced base (bf16 storage under bf16 precision, int8 codes) still
/// exports its merged model onto the original f32 weights: the run's `merged/` equals what
/// `ardpipe merge` builds from the run's adapter and the model file, to f32 rounding. Merging
/// into the rounded base would be off by the rounding (about 1e-3 for int8).
#[test]
fn a_run_on_a_quantised_base_merges_into_the_original_weights() {
    let root = fresh_dir("reduced");
    let run_out = root.join("run");
    let out = run_pipeline(
        "pipelines/quickstart.ard",
        &[
            "train.steps=2".into(),
            "train.lr=2e-2".into(),
            "train.batch_size=8".into(),
            "train.precision=bf16".into(),
            "model.quantize=int8".into(),
            "train.eval_every=2 steps".into(),
            "train.checkpoint_every=2 steps".into(),
            "dataset.tweets.split.validation=0.5%".into(),
            "evaluate.batch_size=32".into(),
            "output.export=[peft, merged]".into(),
            format!("output.dir=\"{}\"", run_out.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let again = root.join("again");
    let m = merge(&[p(&run_out), "--out", p(&again)]);
    assert!(m.status.success(), "{}", text(&m));
    let (ours, theirs) = (
        merged_tensors(&run_out.join("merged")),
        merged_tensors(&again),
    );
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    let mut worst = 0f32;
    for (name, a) in &ours {
        let b = &theirs[name];
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(worst < 1e-5, "the run's merge differs by {worst}");
    let _ = std::fs::remove_dir_all(root);
}
