//! ARD-LoRA's α through the real trainer (engine/core/src/train/mod.rs), on a tiny BERT written
//! by the test. With the adapter weights frozen (lr 0) B stays zero, so the task pulls on no α:
//! then λ = 0 must leave every α exactly where it started (α takes no weight decay, although the
//! weights' optimiser has 0.01), and λ > 0 must lower every α by exactly the proximal steps
//! Σ_t lr_α·λ·(β·c_u + γ·∂TV_u) (here all units cost the same and start equal, so ∂TV = 0).

use std::path::Path;

use ardpipe_engine::train::{self, RunOptions};

#[path = "support/tiny.rs"]
mod tiny;

const STEPS: u64 = 4;

fn alphas(run: &Path) -> Vec<f64> {
    let last = ardpipe_engine::rundir::read_jsonl(&run.join("ranks.jsonl"))
        .unwrap()
        .pop()
        .unwrap();
    last["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["alpha"].as_f64().unwrap())
        .collect()
}

fn run_with(root: &Path, name: &str, lambda: &str) -> Vec<f64> {
    let model = root.join("model");
    if !model.exists() {
        tiny::write_tiny_bert(&model);
        tiny::write_data(&root.join("data.csv"));
    }
    let out = root.join(name);
    let text = tiny::pipeline("ard_lora", &model, &root.join("data.csv"), &out, STEPS)
        .replace("lambda = 0.5", &format!("lambda = {lambda}"))
        .replace(" lr = 2e-2\n", " lr = 0\n")
        // No compaction: α alone is under test.
        .replace("compaction {\n every = 25%\n margin = 1\n }\n", "");
    let file = root.join(format!("{name}.ard"));
    std::fs::write(&file, text).unwrap();
    let p = match ardpipe_dsl::check_file(&file, &ardpipe_dsl::Context::default()) {
        Ok(c) => c.pipeline,
        Err(d) => panic!("{d:?}"),
    };
    let opts = RunOptions {
        quiet: true,
        ..RunOptions::default()
    };
    train::run(&p, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    alphas(&out)
}

#[test]
fn alpha_moves_only_by_the_proximal_step_when_the_task_does_not_pull() {
    tch::set_num_threads(1);
    let root = tempfile::tempdir().unwrap();
    let still = run_with(root.path(), "no_lambda", "0");
    assert!(!still.is_empty());
    for a in &still {
        assert_eq!(*a, 1.0, "α moved without λ or task pull: {still:?}");
    }
    // λ = 0.5 constant, α lr 0.3, β = 1, every cost weight 1 (query and value units have the same
    // size): each step takes 0.15 from every α.
    let pruned = run_with(root.path(), "lambda", "0.5");
    let want = 1.0 - STEPS as f64 * 0.3 * 0.5;
    for a in &pruned {
        assert!((a - want).abs() < 1e-5, "α {a}, want {want}: {pruned:?}");
    }
}
