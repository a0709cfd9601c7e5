//! `ardpipe run --resume` against every way a run can stop: SIGKILL at chosen instants (while
//! loading, between checkpoints, while a checkpoint or an export is being written, through the
//! `ARDPIPE_TEST_PAUSE` hook), SIGINT / SIGTERM, junk folders in `checkpoints/`, changed input
//! files, a run that failed at start. Every method of the real trainer, on a tiny BERT the test
//! writes; each resumed run must end with the uninterrupted run's export, byte for byte
//! (`--threads 1`: libtorch's multi-threaded CPU kernels may round differently per process).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../../engine/core/tests/support/tiny.rs"]
pub(crate) mod tiny;

const STEPS: u64 = 8;

/// A scratch folder with the tiny model and data.
struct Scratch {
    root: PathBuf,
    model: PathBuf,
    data: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let root =
            std::env::temp_dir().join(format!("ardpipe-resume-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let model = root.join("model");
        tiny::write_tiny_bert(&model);
        let data = root.join("data.csv");
        tiny::write_data(&data);
        Scratch { root, model, data }
    }

    /// The pipeline file of `method`, training into `RUN` = root/`run`.
    fn pipeline(&self, method: &str, run: &str, steps: u64) -> (PathBuf, PathBuf) {
        let out = self.root.join(run);
        let file = self.root.join(format!("{run}.ard"));
        std::fs::write(
            &file,
            tiny::pipeline(method, &self.model, &self.data, &out, steps),
        )
        .unwrap();
        (file, out)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn ardpipe_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ardpipe"));
    cmd.args(["run", "-q", "--threads", "1"])
        .args(args)
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000")
        .env_remove("ARDPIPE_TEST_PAUSE");
    cmd
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn run_ok(args: &[&str]) -> Output {
    let o = ardpipe_cmd(args).output().unwrap();
    assert!(o.status.success(), "ardpipe run {args:?}:\n{}", text(&o));
    o
}

fn resume(run: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--resume", run.to_str().unwrap()];
    args.extend(extra);
    ardpipe_cmd(&args).output().unwrap()
}

/// Start a run that stops at `point` (see `ardpipe_engine::rundir::test_pause`) and wait until
/// it is there.
fn start_paused(args: &[&str], point: &str, marker: &Path) -> Child {
    let _ = std::fs::remove_file(marker);
    let mut child = ardpipe_cmd(args)
        .env("ARDPIPE_TEST_PAUSE", point)
        .env("ARDPIPE_TEST_PAUSE_MARKER", marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the run ended ({status}) before reaching {point}:\n{err}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{point} not reached in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn kill9(mut child: Child) {
    child.kill().unwrap();
    let _ = child.wait();
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn checkpoints(run: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `latest` names a checkpoint that exists; no export is there half-written.
fn assert_consistent(run: &Path, method: &str) {
    if let Ok(latest) = std::fs::read_to_string(run.join("checkpoints/latest")) {
        let dir = run.join("checkpoints").join(latest.trim());
        assert!(
            dir.join("state.json").is_file(),
            "latest names {} which is not a checkpoint; have {:?}",
            latest.trim(),
            checkpoints(run)
        );
    }
    let adapter = run.join("adapter");
    if adapter.exists() {
        assert!(
            adapter.join("adapter_config.json").is_file()
                && adapter.join("adapter_model.safetensors").is_file(),
            "{method}: a half-written adapter folder"
        );
    }
}

fn same_export(a: &Path, b: &Path, method: &str) {
    let f = tiny::export_file(method);
    let x = std::fs::read(a.join(f)).unwrap_or_else(|e| panic!("{}: {e}", a.join(f).display()));
    let y = std::fs::read(b.join(f)).unwrap_or_else(|e| panic!("{}: {e}", b.join(f).display()));
    assert!(
        x == y,
        "{method}: the resumed run's {f} differs from the uninterrupted run's"
    );
}

fn metrics_lines(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            // tokens_per_second is a wall-clock measure: it differs from run to run.
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("tokens_per_second");
            v.to_string()
        })
        .collect()
}

/// Each method is killed (SIGKILL) at other instants, then resumed until it finishes; the
/// export must be the uninterrupted run's, byte for byte, and the folder consistent after
/// every kill. The instants: while loading data and weights, mid-run between checkpoints, with
/// a checkpoint half-written (`.partial`, before its sidecar), right after a checkpoint's
/// rename (before `latest` and pruning), and with the adapter or report half-exported.
#[test]
fn every_method_killed_at_any_instant_resumes_to_the_same_export() {
    let s = Scratch::new("kill");
    let marker = s.root.join("paused");
    let plans: [(&str, &[&str]); 5] = [
        (
            "ard_lora",
            &[
                "checkpoint-partial@4",
                "checkpoint-committed@6",
                "export-partial:adapter",
            ],
        ),
        ("lora", &["loading", "step@3", "export-partial:report"]),
        ("dora", &["checkpoint-committed@2", "step@7"]),
        ("adalora", &["step@1", "checkpoint-partial@6"]),
        (
            "full",
            &["checkpoint-partial@2", "step@5", "export-partial:report"],
        ),
    ];
    for (method, points) in plans {
        let (file, whole) = s.pipeline(method, &format!("{method}-whole"), STEPS);
        run_ok(&[file.to_str().unwrap()]);
        let (file, run) = s.pipeline(method, &format!("{method}-killed"), STEPS);
        for (i, point) in points.iter().enumerate() {
            let child = if i == 0 {
                start_paused(&[file.to_str().unwrap()], point, &marker)
            } else {
                start_paused(&["--resume", run.to_str().unwrap()], point, &marker)
            };
            kill9(child);
            assert_consistent(&run, method);
            if point.starts_with("checkpoint-partial") {
                let partial = run.join(format!(
                    "checkpoints/step-{:07}.partial",
                    point.rsplit('@').next().unwrap().parse::<u64>().unwrap()
                ));
                assert!(
                    partial.join("tensors.safetensors").is_file(),
                    "{method} {point}"
                );
            }
            if *point == "export-partial:adapter" {
                assert!(run.join("adapter.partial").is_dir() && !run.join("adapter").exists());
            }
        }
        let o = resume(&run, &[]);
        assert!(o.status.success(), "{method}: {}", text(&o));
        assert_consistent(&run, method);
        same_export(&whole, &run, method);
        assert_eq!(metrics_lines(&whole), metrics_lines(&run), "{method}");
        let m = json(&run.join("manifest.json"));
        assert_eq!(m["status"], "completed", "{method}: {m}");
        assert!(!run.join("adapter.partial").exists() && !run.join("report.partial").exists());
    }
}

/// SIGTERM (preemption) and SIGINT (Ctrl-C) finish the step, write a checkpoint, mark the
/// manifest `interrupted` and exit 143 / 130; the run then resumes to the uninterrupted
/// export. A second signal exits at once, leaving the last committed checkpoint.
#[test]
fn sigterm_and_sigint_stop_with_a_checkpoint_and_a_second_one_at_once() {
    let s = Scratch::new("signals");
    let marker = s.root.join("paused");
    let (file, whole) = s.pipeline("lora", "whole", STEPS);
    run_ok(&[file.to_str().unwrap()]);
    let (file, run) = s.pipeline("lora", "signalled", STEPS);

    let child = start_paused(&[file.to_str().unwrap()], "step@3", &marker);
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", text(&o));
    assert!(text(&o).contains("SIGTERM received"), "{}", text(&o));
    assert_eq!(json(&run.join("manifest.json"))["status"], "interrupted");
    assert_eq!(
        std::fs::read_to_string(run.join("checkpoints/latest")).unwrap(),
        "step-0000003\n"
    );

    let child = start_paused(&["--resume", run.to_str().unwrap()], "step@5", &marker);
    signal(&child, libc::SIGINT);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let m = json(&run.join("manifest.json"));
    assert_eq!(m["status"], "interrupted", "{m}");
    assert_eq!(m["resumptions"][0]["from_step"], 3, "{m}");

    // Stuck in the middle of the step-6 checkpoint: the first SIGINT waits for it, the
    // second leaves at once; step 5 stays the checkpoint to resume from.
    let child = start_paused(
        &["--resume", run.to_str().unwrap()],
        "checkpoint-partial@6",
        &marker,
    );
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    let t0 = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(text(&o).contains("second signal"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(run.join("checkpoints/latest")).unwrap(),
        "step-0000005\n"
    );

    let o = resume(&run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    same_export(&whole, &run, "lora");
    assert_eq!(metrics_lines(&whole), metrics_lines(&run));
    let m = json(&run.join("manifest.json"));
    assert_eq!(m["status"], "completed", "{m}");
    let from: Vec<u64> = m["resumptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["from_step"].as_u64().unwrap())
        .collect();
    assert_eq!(from, [3, 5, 5], "{m}");
}

/// The observed loss: junk `step-9000000/` and `step-9000001/` (a `state.json` of `{}`) in a
/// finished run made `--resume` delete the real checkpoints, leave `latest` dangling, add a
/// duplicate evaluation line, and the next `--resume` train again from step 0.
#[test]
fn junk_checkpoint_folders_never_cost_real_ones_or_redo_work() {
    let s = Scratch::new("junk");
    let (file, run) = s.pipeline("lora", "finished", 6);
    run_ok(&[file.to_str().unwrap()]);
    assert_eq!(
        checkpoints(&run),
        ["latest", "step-0000004", "step-0000006"]
    );
    let metrics_before = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let export_before = std::fs::read(run.join(tiny::export_file("lora"))).unwrap();
    for junk in ["step-9000000", "step-9000001"] {
        std::fs::create_dir(run.join("checkpoints").join(junk)).unwrap();
        std::fs::write(run.join("checkpoints").join(junk).join("state.json"), "{}").unwrap();
    }
    let o = resume(&run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("moved it to") && text(&o).contains("rejected"),
        "{}",
        text(&o)
    );
    assert_eq!(
        checkpoints(&run),
        ["latest", "rejected", "step-0000004", "step-0000006"]
    );
    assert_consistent(&run, "lora");
    assert!(
        run.join("checkpoints/rejected/step-9000001/state.json")
            .is_file()
    );
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(),
        metrics_before,
        "the resume added or lost metrics lines"
    );
    let o = resume(&run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&run.join("manifest.json"));
    let from: Vec<u64> = m["resumptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["from_step"].as_u64().unwrap())
        .collect();
    assert_eq!(from, [6, 6], "a resume started over: {m}");
    assert_eq!(
        std::fs::read(run.join(tiny::export_file("lora"))).unwrap(),
        export_before
    );
}

/// No usable checkpoint after training is an error listing what was found and why, unless
/// `--restart`; a torn last metrics line cut inside a UTF-8 character does not block the resume.
#[test]
fn no_usable_checkpoint_is_refused_with_the_reasons_unless_restart() {
    let s = Scratch::new("none");
    let marker = s.root.join("paused");
    let (file, whole) = s.pipeline("lora", "whole", STEPS);
    run_ok(&[file.to_str().unwrap()]);
    let (file, run) = s.pipeline("lora", "broken", STEPS);
    kill9(start_paused(&[file.to_str().unwrap()], "step@5", &marker));
    // A torn line: `{"step": 6, "note": "α` cut after α's first byte.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("metrics.jsonl"))
        .unwrap();
    use std::io::Write;
    f.write_all(b"{\"step\": 6, \"note\": \"\xce").unwrap();
    drop(f);
    for step in ["step-0000002", "step-0000004"] {
        std::fs::write(
            run.join("checkpoints")
                .join(step)
                .join("tensors.safetensors"),
            b"x",
        )
        .unwrap();
    }
    let o = resume(&run, &[]);
    let err = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for want in [
        "no usable checkpoint",
        "step-0000004: tensors.safetensors has 1 bytes",
        "step-0000002: tensors.safetensors has 1 bytes",
        "metrics.jsonl shows training up to step 4",
        "--restart",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    // Refused again, not started over, the second time too (the folders are in rejected/ now).
    let o = resume(&run, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("an earlier resume rejected"),
        "{}",
        text(&o)
    );
    let o = resume(&run, &["--restart"]);
    assert!(o.status.success(), "{}", text(&o));
    same_export(&whole, &run, "lora");
    assert_eq!(metrics_lines(&whole), metrics_lines(&run));
}

/// Resume re-hashes the data files: changed bytes under the same path are refused with the
/// dataset, its path and both hashes; putting the file back lets the run continue.
#[test]
fn changed_data_refuses_the_resume_with_the_difference() {
    let s = Scratch::new("inputs");
    let marker = s.root.join("paused");
    let (file, run) = s.pipeline("lora", "run", STEPS);
    kill9(start_paused(&[file.to_str().unwrap()], "step@3", &marker));
    let original = std::fs::read(&s.data).unwrap();
    let mut changed = original.clone();
    changed.extend_from_slice(b"new tips,tips\n");
    std::fs::write(&s.data, &changed).unwrap();
    let o = resume(&run, &[]);
    let err = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("input files changed")
            && err.contains("datasets[d] content")
            && err.contains(s.data.to_str().unwrap())
            && err.contains("sha256 differs"),
        "{err}"
    );
    std::fs::write(&s.data, &original).unwrap();
    let o = resume(&run, &[]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A plugin library whose bytes changed since the run started refuses the resume too, naming
/// the plugin; the original library lets it continue.
#[test]
fn a_changed_plugin_library_refuses_the_resume() {
    let s = Scratch::new("plugin");
    let marker = s.root.join("paused");
    let lib = s.root.join("libmcc_copy.so");
    std::fs::copy(crate::plugin::plugin("mcc-metric"), &lib).unwrap();
    let (file, run) = s.pipeline("lora", "run", STEPS);
    let text_with_plugin = std::fs::read_to_string(&file).unwrap().replace(
        "metrics = [loss, accuracy]",
        "metrics = [loss, accuracy, plugin(mcc)]",
    ) + &format!("plugin mcc {{\n library = {lib:?}\n abi = 1\n}}\n");
    std::fs::write(&file, text_with_plugin).unwrap();
    kill9(start_paused(&[file.to_str().unwrap()], "step@3", &marker));
    let original = std::fs::read(&lib).unwrap();
    let mut changed = original.clone();
    changed.extend_from_slice(b"\0rebuilt");
    std::fs::write(&lib, &changed).unwrap();
    let o = resume(&run, &[]);
    let err = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("plugins[mcc] content") && err.contains("sha256 differs"),
        "{err}"
    );
    std::fs::write(&lib, &original).unwrap();
    let o = resume(&run, &[]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A run that fails at start (here: its model's weights are damaged) is marked `failed`;
/// running the pipeline again into the same folder says what to do instead of only "not
/// empty"; once fixed, `--resume` runs it from step 0.
#[test]
fn a_run_failing_at_start_is_marked_failed_and_the_next_run_explains_the_choice() {
    let s = Scratch::new("failed");
    let (file, run) = s.pipeline("lora", "run", 4);
    let weights = s.model.join("model.safetensors");
    let good = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &good[..good.len() / 2]).unwrap();
    let o = ardpipe_cmd(&[file.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let m = json(&run.join("manifest.json"));
    assert_eq!(m["status"], "failed", "{m}");
    assert!(run.join("pipeline.resolved.json").is_file());
    let o = ardpipe_cmd(&[file.to_str().unwrap()]).output().unwrap();
    let err = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("a run that failed")
            && err.contains(&format!("--resume {}", run.display()))
            && err.contains("remove the folder"),
        "{err}"
    );
    std::fs::write(&weights, &good).unwrap();
    let o = resume(&run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&run.join("manifest.json"))["status"], "completed");
}

/// Data parallel: SIGTERM to the `--nproc 2` launcher reaches both workers once; they stop
/// after the same step with one checkpoint and the launcher exits 143. Rank 0 alone then
/// chooses the checkpoint (moving a junk folder aside) and both ranks load that one: the
/// resumed run ends with the uninterrupted two-process run's export.
#[test]
fn data_parallel_runs_stop_together_and_resume_from_the_checkpoint_rank_0_chose() {
    let s = Scratch::new("parallel");
    let marker = s.root.join("paused");
    let (file, whole) = s.pipeline("lora", "whole", STEPS);
    run_ok(&[file.to_str().unwrap(), "--nproc", "2"]);
    let (file, run) = s.pipeline("lora", "stopped", STEPS);
    let launcher = start_paused(&[file.to_str().unwrap(), "--nproc", "2"], "step@3", &marker);
    signal(&launcher, libc::SIGTERM);
    let o = launcher.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", text(&o));
    assert_eq!(json(&run.join("manifest.json"))["status"], "interrupted");
    assert_eq!(
        std::fs::read_to_string(run.join("checkpoints/latest")).unwrap(),
        "step-0000003\n"
    );
    std::fs::create_dir(run.join("checkpoints/step-9000000")).unwrap();
    std::fs::write(run.join("checkpoints/step-9000000/state.json"), "{}").unwrap();
    let o = ardpipe_cmd(&["--resume", run.to_str().unwrap(), "--nproc", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(run.join("checkpoints/rejected/step-9000000").is_dir());
    let m = json(&run.join("manifest.json"));
    assert_eq!(m["resumptions"][0]["from_step"], 3, "{m}");
    same_export(&whole, &run, "lora");
}

/// A packed chat run (SmolLM2 over the first ChatterBot conversations, several to a row, loss on
/// the answers) killed mid-epoch resumes at its exact data position: the epoch's packed rows are
/// rebuilt from the seed and the checkpoint's position, so the export and the metrics log are the
/// uninterrupted run's, byte for byte, across an epoch boundary.
#[test]
fn a_packed_chat_run_killed_mid_epoch_resumes_at_its_exact_data_position() {
    let root = std::env::temp_dir().join(format!("ardpipe-resume-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ardpipe/assets");
    let chat = assets.join("chatterbot/chat.jsonl");
    let model = assets.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        chat.is_file() && model.is_file(),
        "the chatterbot and smollm2 assets are missing: run scripts/setup.sh"
    );
    let write = |run: &str| -> (PathBuf, PathBuf) {
        let out = root.join(run);
        let file = root.join(format!("{run}.ard"));
        std::fs::write(
            &file,
            format!(
                r#"pipeline {{
    name = "chat"
    seed = 4
}}

dataset chat {{
    format = jsonl
    path = "{chat}"
    messages = "messages"
    max_rows = 14
    split {{
        validation = 15%
        seed = 2
    }}
    preprocess {{
        max_length = 96
        packing = true
    }}
}}

model {{
    path = "{model}"
    format = gguf
    head = causal_lm
}}

adapter attention {{
    method = ard_lora
    modules = [q_proj, v_proj]
    layers = 0..2
    r0 = 2
}}

train {{
    lr = 1e-3
    batch_size = 2
    steps = 7
    checkpoint_every = 2 steps
    eval_every = 3 steps
}}

evaluate {{
    metrics = [loss, accuracy, exact_match]
}}

output {{
    dir = "{out}"
    export = [peft]
    report = false
}}
"#,
                chat = chat.display(),
                model = model.display(),
                out = out.display()
            ),
        )
        .unwrap();
        (file, out)
    };
    let (whole_file, whole) = write("whole");
    run_ok(&[whole_file.to_str().unwrap()]);
    let plan = json(&whole.join("plan.json"));
    let units = plan["data"]["train_units"].as_u64().unwrap();
    assert!(
        units < 7 * 2,
        "the run must cross an epoch boundary: {units} rows per epoch"
    );
    assert_eq!(plan["data"]["records"], "chat");

    let (split_file, split) = write("split");
    let marker = root.join("paused");
    kill9(start_paused(
        &[split_file.to_str().unwrap()],
        "step@3",
        &marker,
    ));
    let state = json(&split.join("checkpoints/step-0000002/state.json"));
    assert!(
        state.to_string().contains("examples_consumed"),
        "the checkpoint records the data position: {state}"
    );
    let o = resume(&split, &[]);
    assert!(o.status.success(), "{}", text(&o));
    same_export(&whole, &split, "ard_lora");
    assert_eq!(metrics_lines(&whole), metrics_lines(&split));
    std::fs::remove_dir_all(&root).ok();
}
