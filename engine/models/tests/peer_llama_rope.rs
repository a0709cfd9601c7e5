//! RoPE's base and Llama 3's frequency scaling read from the config layout the current
//! transformers writes (transformers 5: `rope_parameters: {rope_theta, rope_type, ...}`) and
//! from transformers 4's (`rope_theta`, `rope_scaling`), checked against transformers' own
//! logits on tiny random Llamas it saved; other RoPE scalings are refused, never read as plain
//! RoPE. Needs the Python peer venv that `scripts/setup.sh` creates.

use std::path::{Path, PathBuf};

use ardpipe_models::{LoadOptions, load_causal_lm};
use tch::Tensor;

mod support;
use support::{matrix, peer_command, run_peer};

fn scratch(name: &str) -> PathBuf {
    support::scratch("rope", name)
}

fn load_error(dir: &Path) -> String {
    match load_causal_lm(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// The largest |difference| between ardpipe's logits for the folder's model and `want`.
fn max_diff(dir: &Path, ids: &[i64], want: &Tensor) -> f64 {
    let lm = load_causal_lm(dir, &LoadOptions::default()).unwrap();
    let got = tch::no_grad(|| {
        lm.model
            .forward(&Tensor::from_slice(ids).unsqueeze(0), None, false)
    })
    .unwrap()
    .get(0);
    (&got - want).abs().max().double_value(&[])
}

/// transformers saves a tiny Llama into `dir`; ardpipe's logits must equal its logits.
/// Returns the config it wrote, the ids and the logits.
fn same_logits_as_transformers(
    dir: &Path,
    peer_args: &[&str],
) -> (serde_json::Value, Vec<i64>, Tensor) {
    run_peer(peer_command("llama_rope.py").arg(dir).args(peer_args));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("logits.json")).unwrap()).unwrap();
    let ids: Vec<i64> = serde_json::from_value(reference["ids"].clone()).unwrap();
    let want = matrix(&reference["logits"]);
    let plain = matrix(&reference["logits_at_10000"]);
    let sensitivity = (&want - &plain).abs().max().double_value(&[]);
    assert!(
        sensitivity > 1e-2,
        "RoPE's settings barely change these logits ({sensitivity}): the check would not catch a wrong RoPE"
    );
    let diff = max_diff(dir, &ids, &want);
    println!(
        "{peer_args:?}: max |Δlogits| against transformers {diff:.2e} (plain RoPE of base 10000 would be off by {sensitivity:.2e})"
    );
    assert!(diff < 1e-4, "logits differ from transformers' by {diff}");
    (config, ids, want)
}

#[test]
fn llama3_rope_scaling_matches_transformers_in_both_layouts() {
    let dir = scratch("llama3");
    // Base 10000 and head_dim 8 give wavelengths of 6.3, 63, 628 and 6283 tokens: one kept,
    // one on the smooth ramp between 16 and 64, two slowed by the factor.
    let (config, ids, want) = same_logits_as_transformers(
        &dir,
        &[
            "10000",
            r#"{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}"#,
        ],
    );
    assert_eq!(
        config["rope_parameters"]["rope_type"], "llama3",
        "transformers wrote another layout: {config}"
    );
    // The same model in transformers 4's layout gives the same logits.
    let mut v4 = config.clone();
    let mut params = v4
        .as_object_mut()
        .unwrap()
        .remove("rope_parameters")
        .unwrap();
    v4["rope_theta"] = params
        .as_object_mut()
        .unwrap()
        .remove("rope_theta")
        .unwrap();
    v4["rope_scaling"] = params;
    std::fs::write(dir.join("config.json"), v4.to_string()).unwrap();
    let diff = max_diff(&dir, &ids, &want);
    assert!(
        diff < 1e-4,
        "transformers 4 layout: logits differ by {diff}"
    );
    // A llama3 scaling without one of its numbers is refused, naming it.
    let mut missing = config.clone();
    missing["rope_parameters"]
        .as_object_mut()
        .unwrap()
        .remove("low_freq_factor");
    std::fs::write(dir.join("config.json"), missing.to_string()).unwrap();
    let e = load_error(&dir);
    assert!(e.contains("no `low_freq_factor`"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rope_base_from_transformers_5_matches_its_logits_and_other_scalings_are_refused() {
    let dir = scratch("base");
    let (config, _, _) = same_logits_as_transformers(&dir, &["100000"]);
    assert_eq!(
        config["rope_parameters"]["rope_theta"], 100000.0,
        "transformers wrote another layout: {config}"
    );
    // Other scalings (dynamic, longrope, ...) in either layout, and unknown RoPE keys, are refused.
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = config.clone();
        edit(&mut c);
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        load_error(&dir)
    };
    let e = with(&|c| {
        c["rope_parameters"] =
            serde_json::json!({"rope_type": "longrope", "rope_theta": 100000.0, "factor": 4.0});
    });
    assert!(
        e.contains("rope_parameters") && e.contains("does not implement"),
        "{e}"
    );
    let e = with(&|c| {
        c.as_object_mut().unwrap().remove("rope_parameters");
        c["rope_scaling"] = serde_json::json!({"type": "dynamic", "factor": 2.0});
    });
    assert!(
        e.contains("rope_scaling") && e.contains("dynamic NTK"),
        "{e}"
    );
    let e = with(&|c| {
        c["rope_parameters"] = serde_json::json!(
            {"rope_type": "yarn", "rope_theta": 100000.0, "factor": 4.0, "extrapolation": 2}
        );
    });
    assert!(e.contains("rope_parameters.extrapolation"), "{e}");
    let e = with(&|c| c["rope_parameters"]["partial_rotary_factor"] = 0.5.into());
    assert!(e.contains("rope_parameters.partial_rotary_factor"), "{e}");
    let e = with(&|c| c["rope_theta"] = 10000.0.into());
    assert!(e.contains("contradicts itself"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn linear_and_yarn_rope_scaling_match_transformers() {
    let dir = scratch("linear");
    let (config, ..) = same_logits_as_transformers(
        &dir,
        &["10000", r#"{"rope_type": "linear", "factor": 2.0}"#],
    );
    assert_eq!(config["rope_parameters"]["rope_type"], "linear", "{config}");
    let _ = std::fs::remove_dir_all(&dir);
    // YaRN as Qwen2.5/Qwen3 document it, over a short original context so that head_dim 8
    // has kept, ramped and interpolated frequencies; cos/sin scaled by 0.1·ln(4) + 1.
    let dir = scratch("yarn");
    let (config, ..) = same_logits_as_transformers(
        &dir,
        &[
            "10000",
            r#"{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 24}"#,
        ],
    );
    assert_eq!(config["rope_parameters"]["rope_type"], "yarn", "{config}");
    let _ = std::fs::remove_dir_all(&dir);
    // The same with transformers' mscale / mscale_all_dim attention factor and betas.
    let dir = scratch("yarn-mscale");
    let _ = same_logits_as_transformers(
        &dir,
        &[
            "10000",
            r#"{"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 40, "beta_fast": 16, "beta_slow": 2, "mscale": 0.8, "mscale_all_dim": 0.5}"#,
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}
