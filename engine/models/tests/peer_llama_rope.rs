//! RoPE's base read from the config layout the current transformers writes (transformers 5:
//! `rope_parameters: {rope_theta, rope_type}`), checked against transformers' own logits on a
//! tiny random Llama it saved; RoPE scaling in either layout is refused, never read as plain
//! RoPE. Needs the Python peer venv that `scripts/setup.sh` creates.

use std::path::{Path, PathBuf};
use std::process::Command;

use ardpipe_models::{LoadOptions, load_causal_lm};
use tch::Tensor;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn peer_python() -> PathBuf {
    let p = std::env::var_os("ARDPIPE_PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".ardpipe/peer-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: the Python peer venv comes from the README's first command (scripts/setup.sh)",
        p.display()
    );
    p
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-rope-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn matrix(v: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
    let flat: Vec<f32> = rows.concat();
    Tensor::from_slice(&flat).reshape([rows.len() as i64, -1])
}

fn load_error(dir: &Path) -> String {
    match load_causal_lm(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rope_base_from_transformers_5_matches_its_logits_and_scaling_is_refused() {
    let dir = scratch("base");
    let out = Command::new(peer_python())
        .arg(repo().join("engine/models/tests/peer/llama_rope.py"))
        .arg(&dir)
        .arg("100000")
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the transformers peer failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["rope_parameters"]["rope_theta"], 100000.0,
        "transformers wrote another layout: {config}"
    );
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("logits.json")).unwrap()).unwrap();
    let ids: Vec<i64> = serde_json::from_value(reference["ids"].clone()).unwrap();
    let want = matrix(&reference["logits"]);
    let at_10000 = matrix(&reference["logits_at_10000"]);
    let sensitivity = (&want - &at_10000).abs().max().double_value(&[]);
    assert!(
        sensitivity > 1e-2,
        "RoPE's base barely changes these logits ({sensitivity}): the check would not catch a wrong base"
    );

    let lm = load_causal_lm(&dir, &LoadOptions::default()).unwrap();
    let got = tch::no_grad(|| {
        lm.model
            .forward(&Tensor::from_slice(&ids).unsqueeze(0), None, false)
    })
    .unwrap()
    .get(0);
    let diff = (&got - &want).abs().max().double_value(&[]);
    println!(
        "max |Δlogits| against transformers: {diff:.2e} (a base of 10000 would be off by {sensitivity:.2e})"
    );
    assert!(diff < 1e-4, "logits differ from transformers' by {diff}");

    // Scaling (llama3, linear, ...) in either layout, and unknown RoPE keys, are refused.
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = config.clone();
        edit(&mut c);
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        load_error(&dir)
    };
    let e = with(&|c| {
        c["rope_parameters"] = serde_json::json!({"rope_type": "llama3", "rope_theta": 500000.0,
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
    });
    assert!(
        e.contains("rope_parameters") && e.contains("not supported"),
        "{e}"
    );
    let e = with(&|c| {
        c.as_object_mut().unwrap().remove("rope_parameters");
        c["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0});
    });
    assert!(
        e.contains("rope_scaling") && e.contains("not supported"),
        "{e}"
    );
    let e = with(&|c| c["rope_parameters"]["partial_rotary_factor"] = 0.5.into());
    assert!(e.contains("rope_parameters.partial_rotary_factor"), "{e}");
    let e = with(&|c| c["rope_theta"] = 10000.0.into());
    assert!(e.contains("contradicts itself"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
