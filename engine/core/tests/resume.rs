//! The run infrastructure end to end on a small real training loop (libtorch autograd, dropout,
//! momentum SGD, warm-up + cosine schedule, shuffled epochs): a run interrupted mid-way — with a
//! torn metrics line and a half-written checkpoint left behind — and resumed from its last
//! checkpoint ends with bit-identical weights and an identical metrics log.

use std::path::Path;

use ardpipe_engine::checkpoint::{Checkpoints, TrainingState, load_latest};
use ardpipe_engine::metrics::MetricsRecord;
use ardpipe_engine::rundir::{RunDir, read_jsonl};
use ardpipe_engine::schedule::{Position, ResolvedSchedule, Schedule};
use tch::{Device, Kind, Tensor};

const N: usize = 64;
const BATCH: usize = 8;
const TOTAL: u64 = 20;
const CHECKPOINT_EVERY: u64 = 5;

struct Data {
    x: Tensor,
    y: Tensor,
}

fn data() -> Data {
    let x = (Tensor::arange((N * 8) as i64, (Kind::Float, Device::Cpu)) * 0.731)
        .sin()
        .reshape([N as i64, 8]);
    let w_true = Tensor::linspace(-1.0, 1.0, 8, (Kind::Float, Device::Cpu)).reshape([8, 1]);
    let y = x.matmul(&w_true)
        + (Tensor::arange(N as i64, (Kind::Float, Device::Cpu)) * 1.3)
            .cos()
            .reshape([N as i64, 1])
            * 0.1;
    Data { x, y }
}

fn lr() -> ResolvedSchedule {
    Schedule::WarmUp {
        over: Position::Fraction(0.2),
        then: Box::new(Schedule::Cosine {
            from: 0.1,
            to: 0.0,
            start: Position::Steps(4),
            end: Position::Fraction(1.0),
        }),
    }
    .resolve(TOTAL, (N / BATCH) as u64)
    .unwrap()
}

struct Trainer {
    w: Tensor,
    v: Tensor,
    state: TrainingState,
}

impl Trainer {
    fn fresh() -> Trainer {
        let state = TrainingState::new(1234);
        Trainer {
            w: Tensor::zeros([8, 1], (Kind::Float, Device::Cpu)),
            v: Tensor::zeros([8, 1], (Kind::Float, Device::Cpu)),
            state,
        }
    }

    fn from_checkpoint(run: &Path) -> Trainer {
        let ck = load_latest(run)
            .unwrap()
            .expect("a checkpoint to resume from");
        Trainer {
            w: ck.tensor("w").unwrap().shallow_clone(),
            v: ck.tensor("momentum/w").unwrap().shallow_clone(),
            state: ck.state,
        }
    }

    /// One optimizer step; returns the batch loss.
    fn step(&mut self, d: &Data, lr: &ResolvedSchedule) -> f64 {
        let s = &mut self.state;
        let perm = s.rng.epoch_permutation(s.data.epoch, N);
        let start = s.data.examples_consumed as usize;
        let idx: Vec<i64> = perm[start..start + BATCH]
            .iter()
            .map(|&i| i as i64)
            .collect();
        let idx = Tensor::from_slice(&idx);
        s.rng.seed_torch_for_step(s.step);
        let x = d.x.index_select(0, &idx).dropout(0.2, true);
        let y = d.y.index_select(0, &idx);
        let w = self.w.detach().set_requires_grad(true);
        let loss = (x.matmul(&w) - y).square().mean(Kind::Float);
        loss.backward();
        tch::no_grad(|| {
            self.v = &self.v * 0.9 + w.grad();
            self.w = w.detach() - &self.v * lr.value_at(s.step);
        });
        s.step += 1;
        s.data.examples_consumed += BATCH as u64;
        if s.data.examples_consumed as usize == N {
            s.data.epoch += 1;
            s.data.examples_consumed = 0;
        }
        loss.double_value(&[])
    }

    /// Train until `stop_after` steps are done (or the end), logging and checkpointing.
    fn run(&mut self, run: &RunDir, stop_after: u64) {
        let d = data();
        let lr = lr();
        let checkpoints = Checkpoints::new(&run.checkpoints_dir(), 2).unwrap();
        let mut log = run.metrics_log().unwrap();
        while self.state.step < TOTAL.min(stop_after) {
            let loss = self.step(&d, &lr);
            log.append(&MetricsRecord {
                step: self.state.step,
                split: "train".into(),
                values: [
                    ("loss".to_string(), loss),
                    ("lr".to_string(), lr.value_at(self.state.step - 1)),
                ]
                .into(),
            })
            .unwrap();
            if self.state.step.is_multiple_of(CHECKPOINT_EVERY) {
                log.sync().unwrap();
                checkpoints
                    .save(&self.state, &[("w", &self.w), ("momentum/w", &self.v)])
                    .unwrap();
            }
        }
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_identical_result() {
    let base = tempfile::tempdir().unwrap();
    let pipeline = serde_json::json!({"name": "resume-test", "train": {"steps": TOTAL}});

    // Uninterrupted.
    let run_a = RunDir::create(&base.path().join("a")).unwrap();
    run_a.write_resolved_pipeline(&pipeline).unwrap();
    let mut a = Trainer::fresh();
    a.run(&run_a, TOTAL);

    // Interrupted after step 13: checkpoints at 5 and 10 exist; the process "dies" while
    // writing a metrics line and while saving a checkpoint.
    let root_b = base.path().join("b");
    {
        let run_b = RunDir::create(&root_b).unwrap();
        run_b.write_resolved_pipeline(&pipeline).unwrap();
        let mut b = Trainer::fresh();
        b.run(&run_b, 13);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(run_b.metrics_path())
            .unwrap();
        f.write_all(b"{\"step\":14,\"split\":\"tra").unwrap();
        let partial = run_b.checkpoints_dir().join("step-0000015.partial");
        std::fs::create_dir(&partial).unwrap();
        std::fs::write(partial.join("tensors.safetensors"), b"half").unwrap();
    } // the lock goes with the process

    // Resume.
    let run_b = RunDir::open(&root_b).unwrap();
    let mut b = Trainer::from_checkpoint(&root_b);
    assert_eq!(b.state.step, 10);
    run_b.truncate_logs_to_step(b.state.step).unwrap();
    b.run(&run_b, TOTAL);

    assert_eq!(a.state, b.state);
    assert!(a.w.equal(&b.w), "weights differ: {:?} vs {:?}", a.w, b.w);
    assert!(a.v.equal(&b.v));
    let (la, lb) = (
        read_jsonl(&run_a.metrics_path()).unwrap(),
        read_jsonl(&run_b.metrics_path()).unwrap(),
    );
    assert_eq!(la.len(), TOTAL as usize);
    assert_eq!(la, lb);
    // Training did something: the loss fell.
    let first = la[0]["values"]["loss"].as_f64().unwrap();
    let last = la[TOTAL as usize - 1]["values"]["loss"].as_f64().unwrap();
    assert!(last < first * 0.5, "loss {first} → {last}");
    // Only the newest two checkpoints remain, no partial leftovers.
    let mut names: Vec<String> = std::fs::read_dir(run_b.checkpoints_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["latest", "step-0000015", "step-0000020"]);
}
