//! The PEFT export against the real peer: Hugging Face PEFT loads the folders ardpipe writes
//! (folded ARD heads with mixed ranks in `rank_pattern`/`alpha_pattern`, a DoRA magnitude, a
//! classifier under `modules_to_save`) and must reconstruct exactly the update ardpipe meant.
//! Needs the Python peer venv that `scripts/setup.sh` creates.

use std::path::PathBuf;
use std::process::Command;

use ardpipe_engine::checkpoint::write_safetensors;
use ardpipe_engine::export::{
    AdaLoraSettings, HeadAxis, HeadUnit, ModuleAdapter, PeftAdapter, PeftKind, SavedModule,
    TaskType, fold_heads, write_peft_adapter,
};
use tch::{Device, Kind, Tensor};

fn peer_python() -> PathBuf {
    if let Some(p) = std::env::var_os("ARDPIPE_PEER_PYTHON") {
        return p.into();
    }
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.ardpipe/peer-venv/bin/python"
    ))
}

fn mat(rows: i64, cols: i64, offset: f64) -> Tensor {
    (Tensor::arange(rows * cols, (Kind::Float, Device::Cpu)).reshape([rows, cols]) * 0.37 + offset)
        .sin()
}

fn mask(r0_alpha: f32, r_max: i64) -> Tensor {
    let v: Vec<f32> = (0..r_max)
        .map(|i| (r0_alpha - i as f32).clamp(0.0, 1.0))
        .collect();
    Tensor::from_slice(&v)
}

/// One ARD module of the tiny BERT (hidden 12, 3 heads of 4): its folded LoRA pair and the
/// update the ARD units define, computed independently of the fold.
fn ard_module(
    path: &str,
    axis: HeadAxis,
    r0_alphas: [f32; 3],
    seed: f64,
) -> (ModuleAdapter, Tensor) {
    let r_max = 6;
    let scale = 2.0;
    let (a_in, b_out) = match axis {
        HeadAxis::Output => (12, 4),
        HeadAxis::Input => (4, 12),
    };
    let a: Vec<Tensor> = (0..3).map(|h| mat(r_max, a_in, seed + h as f64)).collect();
    let b: Vec<Tensor> = (0..3)
        .map(|h| mat(b_out, r_max, seed + 10.0 + h as f64) * 0.1)
        .collect();
    let m: Vec<Tensor> = r0_alphas.iter().map(|&x| mask(x, r_max)).collect();
    let units: Vec<HeadUnit> = (0..3)
        .map(|h| HeadUnit {
            a: &a[h],
            b: &b[h],
            mask: &m[h],
        })
        .collect();
    let blocks: Vec<Tensor> = units
        .iter()
        .map(|u| u.b.matmul(&u.mask.diag(0)).matmul(u.a) * scale)
        .collect();
    let delta = match axis {
        HeadAxis::Output => Tensor::cat(&blocks, 0),
        HeadAxis::Input => Tensor::cat(&blocks, 1),
    };
    let (fa, fb) = fold_heads(&units, axis, scale).unwrap();
    let r = fa.size()[0] as f64;
    (
        ModuleAdapter {
            module: path.to_string(),
            a: fa,
            b: fb,
            alpha: r, // scale already folded into B: PEFT's alpha / r must be 1
            magnitude: None,
            e: None,
        },
        delta,
    )
}

fn classifier() -> SavedModule {
    SavedModule {
        module: "classifier".into(),
        tensors: vec![
            ("weight".into(), mat(3, 12, 0.5)),
            ("bias".into(), Tensor::from_slice(&[0.1f32, -0.2, 0.3])),
        ],
    }
}

#[test]
fn peft_loads_ardpipe_exports_and_reconstructs_the_same_updates() {
    let python = peer_python();
    assert!(
        python.exists(),
        "the Python peer is missing at {}; run scripts/setup.sh (without --no-peer) or set ARDPIPE_PEER_PYTHON",
        python.display()
    );
    let work = tempfile::tempdir().unwrap();

    // 1. ARD-LoRA folded to LoRA: four modules whose heads keep ⌈r0·α⌉ components (at least 1).
    let specs = [
        (
            "bert.encoder.layer.0.attention.self.query",
            HeadAxis::Output,
            [2.4, 1.0, 3.0],
        ),
        (
            "bert.encoder.layer.0.attention.self.value",
            HeadAxis::Output,
            [1.0, 1.0, 1.0],
        ),
        (
            "bert.encoder.layer.1.attention.self.value",
            HeadAxis::Output,
            [0.5, 2.0, 6.0],
        ),
        (
            "bert.encoder.layer.1.attention.output.dense",
            HeadAxis::Input,
            [1.0, 0.0, 4.2],
        ),
    ];
    let mut modules = Vec::new();
    let mut expected: Vec<(String, Tensor)> = Vec::new();
    for (i, (path, axis, alphas)) in specs.iter().enumerate() {
        let (m, delta) = ard_module(path, *axis, *alphas, i as f64);
        expected.push((path.to_string(), delta));
        modules.push(m);
    }
    let ranks: Vec<i64> = modules.iter().map(|m| m.a.size()[0]).collect();
    assert_eq!(ranks, [7, 3, 9, 7]);
    for (n, t) in &classifier().tensors {
        expected.push((format!("classifier.{n}"), t.shallow_clone()));
    }
    let lora_dir = work.path().join("lora");
    let summary = write_peft_adapter(
        &lora_dir,
        &PeftAdapter {
            kind: PeftKind::Lora,
            task_type: TaskType::SeqCls,
            base_model_name_or_path: "tiny-bert".into(),
            modules,
            modules_to_save: vec![classifier()],
            lora_dropout: 0.0,
            adalora: None,
        },
    )
    .unwrap();
    assert_eq!(summary.total_rank, 26);
    let lora_expected = work.path().join("lora-expected.safetensors");
    let refs: Vec<(&str, &Tensor)> = expected.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&lora_expected, &refs, None).unwrap();

    // 2. DoRA: one module with a magnitude vector.
    let (mut m, delta) = ard_module(
        "bert.encoder.layer.0.attention.self.query",
        HeadAxis::Output,
        [2.0, 2.0, 2.0],
        7.0,
    );
    let magnitude = Tensor::linspace(0.5, 2.0, 12, (Kind::Float, Device::Cpu));
    m.magnitude = Some(magnitude.shallow_clone());
    let dora_dir = work.path().join("dora");
    write_peft_adapter(
        &dora_dir,
        &PeftAdapter {
            kind: PeftKind::Dora,
            task_type: TaskType::SeqCls,
            base_model_name_or_path: "tiny-bert".into(),
            modules: vec![m],
            modules_to_save: vec![classifier()],
            lora_dropout: 0.0,
            adalora: None,
        },
    )
    .unwrap();
    let dora_expected = work.path().join("dora-expected.safetensors");
    let head = classifier();
    write_safetensors(
        &dora_expected,
        &[
            ("bert.encoder.layer.0.attention.self.query", &delta),
            (
                "bert.encoder.layer.0.attention.self.query.magnitude",
                &magnitude,
            ),
            ("classifier.weight", &head.tensors[0].1),
            ("classifier.bias", &head.tensors[1].1),
        ],
        None,
    )
    .unwrap();

    // 3. AdaLoRA: pruned triplets of different sizes (rank_pattern masks over init_r = 6).
    //    PEFT's SVD update is B·(A⊙E)·alpha/(ranknum + 1e-5), and on load ranknum keeps the
    //    value it had at creation, init_r, whatever rank a module was pruned to.
    let alpha = 3.0;
    let mut ada_modules = Vec::new();
    let mut ada_expected: Vec<(String, Tensor)> = Vec::new();
    for (i, (path, r)) in [
        ("bert.encoder.layer.0.attention.self.query", 4i64),
        ("bert.encoder.layer.1.attention.self.query", 2),
        ("bert.encoder.layer.1.attention.self.value", 2),
    ]
    .into_iter()
    .enumerate()
    {
        let a = mat(r, 12, 20.0 + i as f64);
        let b = mat(12, r, 30.0 + i as f64) * 0.1;
        let e = mat(r, 1, 40.0 + i as f64);
        let delta = b.matmul(&(&a * &e)) * (alpha / (6.0 + 1e-5));
        ada_expected.push((path.to_string(), delta));
        ada_modules.push(ModuleAdapter {
            module: path.to_string(),
            a,
            b,
            alpha,
            magnitude: None,
            e: Some(e),
        });
    }
    for (n, t) in &classifier().tensors {
        ada_expected.push((format!("classifier.{n}"), t.shallow_clone()));
    }
    let ada_dir = work.path().join("adalora");
    write_peft_adapter(
        &ada_dir,
        &PeftAdapter {
            kind: PeftKind::AdaLora,
            task_type: TaskType::SeqCls,
            base_model_name_or_path: "tiny-bert".into(),
            modules: ada_modules,
            modules_to_save: vec![classifier()],
            lora_dropout: 0.0,
            adalora: Some(AdaLoraSettings {
                init_r: 6,
                target_r: 3,
                tinit: 0,
                tfinal: 0,
                delta_t: 1,
                beta1: 0.85,
                beta2: 0.85,
                orth_reg_weight: 0.5,
                total_step: 100,
            }),
        },
    )
    .unwrap();
    let ada_expected_path = work.path().join("adalora-expected.safetensors");
    let refs: Vec<(&str, &Tensor)> = ada_expected.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&ada_expected_path, &refs, None).unwrap();

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
    for ((path, _, _), r) in specs.iter().zip(ranks) {
        let e = &lora[path];
        assert_eq!(e["r"], r, "{path}: PEFT built a different rank; {lora}");
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
    let q = &dora["bert.encoder.layer.0.attention.self.query"];
    assert!(q["delta"].as_f64().unwrap() < 1e-5, "{dora}");
    assert!(
        q["magnitude"].as_f64().unwrap() < 1e-7,
        "DoRA magnitude not loaded: {dora}"
    );
    assert!(
        dora["classifier"]["weight"].as_f64().unwrap() < 1e-7,
        "{dora}"
    );

    let ada = &results[2];
    for (path, r) in [
        ("bert.encoder.layer.0.attention.self.query", 4),
        ("bert.encoder.layer.1.attention.self.query", 2),
        ("bert.encoder.layer.1.attention.self.value", 2),
    ] {
        assert_eq!(ada[path]["r"], r, "{path}: {ada}");
        assert!(ada[path]["delta"].as_f64().unwrap() < 1e-6, "{path}: {ada}");
    }
    assert_eq!(ada.as_object().unwrap().len(), 4, "{ada}");
}
