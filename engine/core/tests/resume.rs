//! Resume end to end on the real trainer, in process, for every method: ARD-LoRA (with
//! compaction and α on its own optimiser), LoRA, DoRA, AdaLoRA (with its rank allocator) and
//! full fine-tuning, on a tiny BERT written by the test. A run stopped twice (with a
//! checkpoint, as `RunOptions::stop_after` does) and resumed from what a crash leaves behind —
//! a half-written checkpoint folder, a junk `step-9000000/`, a metrics line torn inside a UTF-8
//! character — must end with the uninterrupted run's export, byte for byte, and the same
//! metrics log. The CLI's tests (tests/cli/resume.rs) kill real processes at chosen instants.

use std::path::{Path, PathBuf};

use ardpipe_engine::train::{self, RunOptions};

#[path = "support/tiny.rs"]
mod tiny;

const STEPS: u64 = 8;

fn pipeline(text: &str, file: &Path) -> ardpipe_dsl::Pipeline {
    std::fs::write(file, text).unwrap();
    match ardpipe_dsl::check_file(file, &ardpipe_dsl::Context::default()) {
        Ok(c) => c.pipeline,
        Err(d) => panic!("{}: {d:?}", file.display()),
    }
}

fn run(
    p: &ardpipe_dsl::Pipeline,
    resume: Option<&Path>,
    stop_after: Option<u64>,
) -> train::RunSummary {
    let opts = RunOptions {
        resume: resume.map(Path::to_path_buf),
        quiet: true,
        stop_after,
        ..RunOptions::default()
    };
    train::run(p, &opts).unwrap_or_else(|e| panic!("{}: {e}", p.name))
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    ardpipe_engine::rundir::read_jsonl(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .map(|mut v| {
            // A wall-clock measure: differs from run to run.
            v.as_object_mut().unwrap().remove("tokens_per_second");
            v
        })
        .collect()
}

/// What a crash leaves: a checkpoint half-written, a junk folder, a torn last metrics line.
fn leave_crash_debris(run: &Path) {
    let ck = run.join("checkpoints");
    let partial = ck.join("step-0000006.partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("tensors.safetensors"), b"half").unwrap();
    std::fs::create_dir_all(ck.join("step-9000000")).unwrap();
    std::fs::write(ck.join("step-9000000/state.json"), "{}").unwrap();
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("metrics.jsonl"))
        .unwrap();
    // `{"step":6,"note":"α` cut after the first byte of α.
    f.write_all(b"{\"step\":6,\"note\":\"\xce").unwrap();
}

#[test]
fn every_method_stopped_and_resumed_from_crash_debris_ends_bit_for_bit_the_same() {
    // One intra-op thread: libtorch's multi-threaded CPU kernels may round differently.
    tch::set_num_threads(1);
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    tiny::write_tiny_bert(&model);
    let data = root.path().join("data.csv");
    tiny::write_data(&data);
    for method in tiny::METHODS {
        let dir = |name: &str| -> PathBuf { root.path().join(format!("{method}-{name}")) };
        let whole = dir("whole");
        let p = pipeline(
            &tiny::pipeline(method, &model, &data, &whole, STEPS),
            &dir("whole.ard"),
        );
        let s = run(&p, None, None);
        assert_eq!(s.steps, STEPS);
        match method {
            // Compaction cut ranks below r0 = 4 (the checkpoint then holds narrower tensors).
            "ard_lora" => assert!(
                s.rank_map.iter().flat_map(|r| &r.ranks).any(|&r| r < 4),
                "{:?}",
                s.rank_map
            ),
            // The allocator pruned some triplets (its state travels in the checkpoint).
            "adalora" => {
                let cfg: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(whole.join("adapter/adapter_config.json")).unwrap(),
                )
                .unwrap();
                let pattern = cfg["rank_pattern"].to_string();
                assert!(pattern.contains("false"), "nothing pruned: {pattern}");
            }
            _ => {}
        }

        let split = dir("split");
        let p = pipeline(
            &tiny::pipeline(method, &model, &data, &split, STEPS),
            &dir("split.ard"),
        );
        let s = run(&p, None, Some(3));
        assert!(s.interrupted && s.steps == 3, "{method}");
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(split.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(m["status"], "interrupted", "{method}");
        let s = run(&p, Some(&split), Some(5));
        assert!(s.interrupted && s.steps == 5, "{method}");
        leave_crash_debris(&split);
        let s = run(&p, Some(&split), None);
        assert!(!s.interrupted && s.steps == STEPS, "{method}");

        let f = tiny::export_file(method);
        let a = std::fs::read(whole.join(f)).unwrap();
        let b = std::fs::read(split.join(f)).unwrap();
        assert!(
            a == b,
            "{method}: the resumed run's {f} differs from the uninterrupted run's"
        );
        assert_eq!(metrics(&whole), metrics(&split), "{method}");
        assert!(
            split
                .join("checkpoints/rejected/step-9000000/state.json")
                .is_file(),
            "{method}: the junk folder was not moved aside"
        );
        assert!(!split.join("checkpoints/step-0000006.partial").exists());
    }
}
