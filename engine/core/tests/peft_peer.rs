//! The PEFT export against the real peer, through the path production takes: adapters attached
//! to linears by the adapters crate, exported by each adapter's own `peft_export` (ARD-LoRA
//! folds its heads into one LoRA per module) and written by the trainer's own adapter writer,
//! `peft_merge::AdapterExport` (engine/core/src/peft_merge.rs). Hugging Face PEFT
//! loads the folders (folded ARD heads with mixed ranks in `rank_pattern`/`alpha_pattern`, a
//! DoRA magnitude, AdaLoRA triplets pruned by the real rank allocator, a classifier under
//! `modules_to_save`) and must reconstruct exactly the update the adapters apply.
//! Needs the Python peer venv that `scripts/setup.sh` creates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ardpipe_engine::adapters::adalora::{AdaLora, RankAllocator};
use ardpipe_engine::adapters::ard::ArdLora;
use ardpipe_engine::adapters::dora::Dora;
use ardpipe_engine::adapters::peft::{PeftModule, PeftType};
use ardpipe_engine::adapters::{
    AdaLoraConfig, AdaptableLinear, ArdLoraConfig, DoraConfig, HeadAxis, HeadLayout,
};
use ardpipe_engine::checkpoint::write_safetensors;
use ardpipe_engine::peft_merge::AdapterExport;
use tch::{Device, Kind, Tensor};

/// The peer's python; a missing peer fails the test with the fix, never skips it.
fn peer_python() -> PathBuf {
    let python = std::env::var_os("ARDPIPE_PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.ardpipe/peer-venv/bin/python"
            ))
        });
    assert!(
        python.exists(),
        "the Python peer is missing at {}; run scripts/setup.sh (without --no-peer) or set ARDPIPE_PEER_PYTHON",
        python.display()
    );
    python
}

fn mat(rows: i64, cols: i64, offset: f64) -> Tensor {
    (Tensor::arange(rows * cols, (Kind::Float, Device::Cpu)).reshape([rows, cols]) * 0.37 + offset)
        .sin()
}

/// A linear of the tiny BERT (hidden 12, 3 heads of 4) with deterministic weights.
fn linear(path: &str, axis: HeadAxis, seed: f64) -> AdaptableLinear {
    AdaptableLinear::new(
        path,
        mat(12, 12, seed) * 0.2,
        Some(Tensor::zeros([12], (Kind::Float, Device::Cpu))),
        HeadLayout {
            axis,
            n_heads: 3,
            head_dim: 4,
        },
    )
}

/// Overwrite an adapter tensor in place (its initial value is often zero).
fn fill(t: &Tensor, value: &Tensor) {
    tch::no_grad(|| {
        t.shallow_clone().copy_(value);
    });
}

fn classifier() -> Vec<(String, Tensor)> {
    vec![
        ("classifier.weight".into(), mat(3, 12, 0.5)),
        (
            "classifier.bias".into(),
            Tensor::from_slice(&[0.1f32, -0.2, 0.3]),
        ),
    ]
}

/// The adapter folder through the trainer's own writer, [`AdapterExport`]: the assembled
/// adapter, the head under `modules_to_save`, the task and base model named, AdaLoRA's fields.
fn write_folder(
    dir: &Path,
    peft_type: PeftType,
    modules: &[PeftModule],
    use_dora: bool,
    extra: BTreeMap<String, serde_json::Value>,
) {
    AdapterExport {
        peft_type,
        modules,
        dropout: 0.0,
        use_dora,
        head: classifier(),
        modules_to_save: vec!["classifier".into()],
        task_type: "SEQ_CLS",
        base_model: "tiny-bert".into(),
        extra,
    }
    .write(dir)
    .unwrap();
}

fn write_expected(path: &Path, expected: &[(String, Tensor)]) {
    let mut all: Vec<(String, Tensor)> = expected
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_kind(Kind::Float).contiguous()))
        .collect();
    all.extend(classifier());
    let refs: Vec<(&str, &Tensor)> = all.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(path, &refs, None).unwrap();
}

fn export(lin: &AdaptableLinear) -> PeftModule {
    lin.adapter
        .as_ref()
        .unwrap()
        .peft_export(&lin.base)
        .unwrap()
}

fn delta(lin: &AdaptableLinear) -> Tensor {
    lin.adapter.as_ref().unwrap().delta_weight(&lin.base)
}

#[test]
fn peft_loads_ardpipe_exports_and_reconstructs_the_same_updates() {
    let python = peer_python();
    let work = tempfile::tempdir().unwrap();

    // 1. ARD-LoRA, folded by its own export: four modules whose heads keep ⌈r0·α⌉ rows.
    let ard_cfg = ArdLoraConfig {
        r0: 2,
        alpha_max: 3.0,
        scale: 4.0,
        ..Default::default()
    };
    let specs = [
        (
            "bert.encoder.layer.0.attention.self.query",
            HeadAxis::Output,
            [1.2f32, 0.5, 1.5],
        ),
        (
            "bert.encoder.layer.0.attention.self.value",
            HeadAxis::Output,
            [0.5, 0.5, 0.5],
        ),
        (
            "bert.encoder.layer.1.attention.self.value",
            HeadAxis::Output,
            [0.25, 1.0, 3.0],
        ),
        (
            "bert.encoder.layer.1.attention.output.dense",
            HeadAxis::Input,
            [0.5, 0.0, 2.1],
        ),
    ];
    let mut modules = Vec::new();
    let mut expected: Vec<(String, Tensor)> = Vec::new();
    let mut ranks = Vec::new();
    for (i, (path, axis, alphas)) in specs.iter().enumerate() {
        let mut lin = linear(path, *axis, i as f64);
        ArdLora::attach(&mut lin, &ard_cfg).unwrap();
        let ard = lin.adapter.as_mut().unwrap().as_ard_mut().unwrap();
        let b = ard.b().shallow_clone();
        fill(
            &b,
            &(Tensor::randn(b.size(), (Kind::Float, Device::Cpu)) * 0.3),
        );
        ard.set_alpha(&Tensor::from_slice(alphas));
        let m = export(&lin);
        ranks.push(m.r);
        expected.push((path.to_string(), delta(&lin)));
        modules.push(m);
    }
    // Mixed ranks, so `rank_pattern` and `alpha_pattern` carry them.
    assert!(ranks.iter().any(|&r| r != ranks[0]), "{ranks:?}");
    let lora_dir = work.path().join("lora");
    write_folder(&lora_dir, PeftType::Lora, &modules, false, BTreeMap::new());
    let lora_expected = work.path().join("lora-expected.safetensors");
    write_expected(&lora_expected, &expected);

    // 2. DoRA: one module with its magnitude vector (trained away from its initial norms).
    let q = "bert.encoder.layer.0.attention.self.query";
    let mut lin = linear(q, HeadAxis::Output, 7.0);
    let dora_cfg = DoraConfig {
        r: 3,
        lora_alpha: 6.0,
        dropout: 0.0,
    };
    Dora::attach(&mut lin, &dora_cfg).unwrap();
    let tr = lin.adapter.as_ref().unwrap().trainable();
    fill(&tr[1].1, &(mat(12, 3, 3.0) * 0.1));
    fill(
        &tr[2].1,
        &Tensor::linspace(0.5, 2.0, 12, (Kind::Float, Device::Cpu)),
    );
    // PEFT's DoRA `get_delta_weight` is the plain low-rank part, B·A·(alpha / r).
    let (a, b, magnitude) = (&tr[0].1, &tr[1].1, &tr[2].1);
    let dora_delta = b.matmul(a) * (dora_cfg.lora_alpha / dora_cfg.r as f64);
    let dora_dir = work.path().join("dora");
    write_folder(
        &dora_dir,
        PeftType::Lora,
        &[export(&lin)],
        true,
        BTreeMap::new(),
    );
    let dora_expected = work.path().join("dora-expected.safetensors");
    write_expected(
        &dora_expected,
        &[
            (q.to_string(), dora_delta),
            (format!("{q}.magnitude"), magnitude.shallow_clone()),
        ],
    );

    // 3. AdaLoRA: triplets pruned by the real rank allocator (rank_pattern masks over init_r).
    //    PEFT's SVD update is B·(A⊙E)·alpha/(ranknum + 1e-5), and on load ranknum keeps the
    //    value it had at creation, init_r, whatever rank a module was pruned to.
    let total = 8;
    let ada_cfg = AdaLoraConfig {
        init_r: 6,
        target_r: 3,
        lora_alpha: 3.0,
        tinit: Some(2),
        tfinal: Some(3),
        delta_t: Some(1),
        ..Default::default()
    };
    let paths = [
        "bert.encoder.layer.0.attention.self.query",
        "bert.encoder.layer.1.attention.self.query",
        "bert.encoder.layer.1.attention.self.value",
    ];
    let mut lins: Vec<AdaptableLinear> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut l = linear(p, HeadAxis::Output, 20.0 + i as f64);
            AdaLora::attach(&mut l, &ada_cfg).unwrap();
            l
        })
        .collect();
    let refs: Vec<&AdaLora> = lins
        .iter()
        .map(|l| l.adapter.as_ref().unwrap().as_adalora().unwrap())
        .collect();
    let mut alloc = RankAllocator::new(&ada_cfg, &refs, total).unwrap();
    let x = Tensor::randn([16, 12], (Kind::Float, Device::Cpu));
    for step in 1..=total {
        let loss: Tensor = lins
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (l.forward(&x, true) * (i + 1) as f64)
                    .square()
                    .sum(Kind::Float)
            })
            .sum();
        loss.backward();
        tch::no_grad(|| {
            for l in &lins {
                for (_, p) in l.adapter.as_ref().unwrap().trainable() {
                    let g = p.grad();
                    let _ = p.shallow_clone().g_add_(&(g * -0.01));
                }
            }
        });
        let mut ms: Vec<&mut AdaLora> = lins
            .iter_mut()
            .map(|l| l.adapter.as_mut().unwrap().as_adalora_mut().unwrap())
            .collect();
        alloc.update_and_allocate(&mut ms, step).unwrap();
        for l in &lins {
            for (_, mut p) in l.adapter.as_ref().unwrap().trainable() {
                p.zero_grad();
            }
        }
    }
    let ada_ranks: Vec<usize> = lins
        .iter()
        .map(|l| l.adapter.as_ref().unwrap().as_adalora().unwrap().rank())
        .collect();
    assert!(
        ada_ranks.iter().any(|&r| r < ada_cfg.init_r),
        "the allocator pruned nothing: {ada_ranks:?}"
    );
    let s = alloc.schedule();
    let mut extra = BTreeMap::new();
    for (k, v) in [
        ("init_r", serde_json::json!(ada_cfg.init_r)),
        ("target_r", serde_json::json!(ada_cfg.target_r)),
        ("beta1", serde_json::json!(ada_cfg.beta1)),
        ("beta2", serde_json::json!(ada_cfg.beta2)),
        (
            "orth_reg_weight",
            serde_json::json!(ada_cfg.orth_reg_weight),
        ),
        ("tinit", serde_json::json!(s.tinit)),
        ("tfinal", serde_json::json!(s.tfinal)),
        ("deltaT", serde_json::json!(s.delta_t)),
        ("total_step", serde_json::json!(s.total_step)),
    ] {
        extra.insert(k.to_string(), v);
    }
    let ada_modules: Vec<PeftModule> = lins.iter().map(export).collect();
    let ada_expected: Vec<(String, Tensor)> = lins
        .iter()
        .map(|l| (l.path.clone(), delta(l).detach()))
        .collect();
    let ada_dir = work.path().join("adalora");
    write_folder(&ada_dir, PeftType::AdaLora, &ada_modules, false, extra);
    let ada_expected_path = work.path().join("adalora-expected.safetensors");
    write_expected(&ada_expected_path, &ada_expected);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peft_peer.py");
    let out = Command::new(&python)
        .arg(script)
        .args([
            &lora_dir,
            &lora_expected,
            &dora_dir,
            &dora_expected,
            &ada_dir,
            &ada_expected_path,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the peer failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("peer report: {stdout}");
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 3, "{stdout}");

    let lora = &results[0];
    for ((path, _, _), r) in specs.iter().zip(&ranks) {
        let e = &lora[path];
        assert_eq!(e["r"], *r, "{path}: PEFT built a different rank; {lora}");
        assert!(e["delta"].as_f64().unwrap() < 1e-5, "{path}: {lora}");
    }
    assert_eq!(
        lora.as_object().unwrap().len(),
        specs.len() + 1,
        "PEFT adapted other modules: {lora}"
    );
    assert!(
        lora["classifier"]["weight"].as_f64().unwrap() < 1e-7,
        "{lora}"
    );
    assert!(
        lora["classifier"]["bias"].as_f64().unwrap() < 1e-7,
        "{lora}"
    );

    let dora = &results[1];
    let dq = &dora[q];
    assert!(dq["delta"].as_f64().unwrap() < 1e-5, "{dora}");
    assert!(
        dq["magnitude"].as_f64().unwrap() < 1e-7,
        "DoRA magnitude not loaded: {dora}"
    );
    assert!(
        dora["classifier"]["weight"].as_f64().unwrap() < 1e-7,
        "{dora}"
    );

    let ada = &results[2];
    for (path, r) in paths.iter().zip(&ada_ranks) {
        assert_eq!(ada[path]["r"], *r, "{path}: {ada}");
        assert!(ada[path]["delta"].as_f64().unwrap() < 1e-6, "{path}: {ada}");
    }
    assert_eq!(ada.as_object().unwrap().len(), paths.len() + 1, "{ada}");
}

/// The same export for causal LMs of every decoder family ardpipe builds (Llama, Qwen2,
/// Mistral, Qwen3, Gemma, Gemma 2, Gemma 3 text): tiny random models saved by transformers
/// (engine/models/tests/peer/decoders.py), ARD-LoRA on the attention projections (per-head α
/// folded into mixed ranks) and LoRA on the MLP projections, exported as
/// `Trainer::export_peft` does (CAUSAL_LM); Hugging Face PEFT loads each folder onto
/// `AutoModelForCausalLM` and must give the logits ardpipe's forward pass gives with the
/// adapters attached; so must the merged model written as `ardpipe merge` writes it
/// (config.json of the family, sharded safetensors), loaded by transformers alone.
#[test]
fn peft_loads_decoder_family_exports_to_the_same_logits() {
    use ardpipe_engine::adapters::LoraConfig;
    use ardpipe_engine::adapters::lora::Lora;
    use ardpipe_engine::models::hf::export::{self as hf_export, ExportDtype};
    use ardpipe_engine::models::{LoadOptions, load_causal_lm};
    use ardpipe_engine::peft_merge::AdapterFolder;

    let python = peer_python();
    let work = tempfile::tempdir().unwrap();
    let models = work.path().join("models");
    let made = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/tests/peer/decoders.py"
        ))
        .arg(&models)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "the transformers peer failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let cases = [
        "llama", "qwen2", "mistral", "qwen3", "gemma", "gemma2", "gemma3",
    ];
    let ard_cfg = ArdLoraConfig {
        r0: 3,
        alpha_max: 3.0,
        scale: 6.0,
        ..Default::default()
    };
    let lora_cfg = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        dropout: 0.0,
    };
    tch::manual_seed(5);
    let mut args: Vec<PathBuf> = vec![];
    let mut effects = BTreeMap::new();
    let mut ranks_of = BTreeMap::new();
    for case in cases {
        let base = models.join(case);
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(base.join("reference.json")).unwrap()).unwrap();
        let ids: Vec<i64> = serde_json::from_value(reference["ids"][0].clone()).unwrap();
        let input = Tensor::from_slice(&ids).unsqueeze(0);
        let mut lm = load_causal_lm(&base, &LoadOptions::default()).unwrap();
        let plain = tch::no_grad(|| lm.model.forward(&input, None, false)).unwrap();
        let mut ranks = vec![];
        for lin in lm.model.linears_mut() {
            if lin.path.contains(".self_attn.") {
                ArdLora::attach(lin, &ard_cfg).unwrap();
                let ard = lin.adapter.as_mut().unwrap().as_ard_mut().unwrap();
                let b = ard.b().shallow_clone();
                fill(
                    &b,
                    &(Tensor::randn(b.size(), (Kind::Float, Device::Cpu)) * 0.2),
                );
                let n = ard.n_units() as i64;
                // α from 0 (a head switched off) to 3 (three times r0): mixed folded ranks.
                let alphas = Tensor::rand([n], (Kind::Float, Device::Cpu)) * 3.0;
                ard.set_alpha(&alphas);
            } else {
                Lora::attach(lin, &lora_cfg).unwrap();
                let tr = lin.adapter.as_ref().unwrap().trainable();
                fill(
                    &tr[1].1,
                    &(Tensor::randn(tr[1].1.size(), (Kind::Float, Device::Cpu)) * 0.2),
                );
            }
        }
        let with = tch::no_grad(|| lm.model.forward(&input, None, false)).unwrap();
        effects.insert(case, (&with - &plain).abs().max().double_value(&[]));
        let modules: Vec<PeftModule> = lm.model.linears().into_iter().map(export).collect();
        ranks.extend(modules.iter().map(|m| m.r));
        ranks_of.insert(case, ranks);
        let adapter = work.path().join(format!("{case}-adapter"));
        AdapterExport {
            peft_type: PeftType::Lora,
            modules: &modules,
            dropout: 0.0,
            use_dora: false,
            head: vec![],
            modules_to_save: vec![],
            task_type: "CAUSAL_LM",
            base_model: base.display().to_string(),
            extra: BTreeMap::new(),
        }
        .write(&adapter)
        .unwrap();
        let ours = work.path().join(format!("{case}-ours.safetensors"));
        Tensor::write_safetensors(
            &[
                ("ids", Tensor::from_slice(&ids)),
                ("logits", with.get(0).detach().contiguous()),
            ],
            &ours,
        )
        .unwrap();
        // `ardpipe merge`'s writer: the adapter merged by the engine, config.json from the
        // loaded config (the family's own keys), weights in small shards with their index.
        let merged = work.path().join(format!("{case}-merged"));
        let folder = AdapterFolder::read(&adapter).unwrap();
        let mut lm = load_causal_lm(&base, &LoadOptions::default()).unwrap();
        folder.merge_into(lm.model.linears_mut(), &[]).unwrap();
        std::fs::create_dir_all(&merged).unwrap();
        hf_export::write_json(
            &merged.join("config.json"),
            &hf_export::causal_lm_config(&lm.model.config, ExportDtype::F32),
        )
        .unwrap();
        let written = hf_export::write_weights(
            &merged,
            &lm.model.base_parameters(),
            ExportDtype::F32,
            100_000,
        )
        .unwrap();
        assert!(written.files.len() > 1, "{case}: {written:?}");
        args.extend([base, adapter, ours, merged]);
    }
    let out = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peft_peer.py"))
        .arg("--causal-lm")
        .args(&args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the peer failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), cases.len(), "{stdout}");
    for (case, r) in cases.iter().zip(&results) {
        let diff = r["max_abs_diff"].as_f64().unwrap();
        let effect = effects[case];
        let ranks = &ranks_of[case];
        let merged = r["merged_max_abs_diff"].as_f64().unwrap();
        println!(
            "{case}: PEFT vs ardpipe max |Δlogit| {diff:.2e}, the merged folder in transformers \
             {merged:.2e}, the adapters' effect {effect:.2e}, {} modules adapted by PEFT, ranks \
             {}..{}",
            r["adapted"],
            ranks.iter().min().unwrap(),
            ranks.iter().max().unwrap()
        );
        assert!(
            merged < 1e-4,
            "{case}: the merged folder's logits differ by {merged}: {r}"
        );
        assert_eq!(r["adapted"], ranks.len(), "{case}: {r}");
        assert!(diff < 1e-4, "{case}: PEFT's logits differ by {diff}: {r}");
        assert!(
            effect > 1e-2,
            "{case}: the adapters barely change the logits ({effect})"
        );
        assert!(
            ranks.iter().any(|&x| x != ranks[0]),
            "{case}: no mixed ranks {ranks:?}"
        );
    }
}
