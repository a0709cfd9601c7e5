//! What follows a run from outside while it trains, beside `metrics.jsonl` and `ranks.jsonl`:
//! TensorBoard event files in `RUN/tensorboard/` (crate::tensorboard), and with
//! `ardpipe run --log-format json` one JSON object per line on stdout for every event of the run
//! (start, each logged step, each evaluation, checkpoint, export, report; the CLI writes the
//! end). Only the process that writes the run directory follows it.

use std::io::Write;

use serde_json::{Value, json};

use super::{TrainError, Trainer};
use crate::tensorboard::{self, EventWriter};

/// Write one event as a line of JSON on stdout, flushed (a reader sees it at once).
pub fn emit_json(event: &str, mut fields: Value) {
    if let Some(o) = fields.as_object_mut() {
        o.insert("event".into(), json!(event));
    }
    let mut out = std::io::stdout().lock();
    // stdout gone (a reader that stopped): the run goes on, its logs are on disk.
    let _ = writeln!(out, "{fields}").and_then(|_| out.flush());
}

pub struct Follow {
    events: Option<EventWriter>,
    json: bool,
}

impl Follow {
    /// Open the run's new events file and say the run starts. A resumed run (from step S)
    /// first marks a TensorBoard restart at S and copies the records the truncated logs keep at
    /// S, so the event files read back as the logs (see crate::tensorboard).
    pub fn start(trainer: &Trainer, json: bool) -> Result<Follow, TrainError> {
        if !trainer.writes() {
            return Ok(Follow {
                events: None,
                json: false,
            });
        }
        let dir = trainer.run_dir.path(tensorboard::DIR);
        let earlier = dir.exists();
        let mut events = EventWriter::create(&dir)?;
        let step = trainer.state.step;
        // Without earlier event files (a run from before they were written) every record the
        // logs hold is copied.
        let from = if earlier {
            events.session_start(step)?;
            step
        } else {
            0
        };
        let kept = |path: &std::path::Path| -> Result<Vec<Value>, TrainError> {
            Ok(crate::rundir::read_jsonl(path)?
                .into_iter()
                .filter(|r| r.get("step").and_then(Value::as_u64) >= Some(from))
                .collect())
        };
        for r in kept(&trainer.run_dir.metrics_path())? {
            events.metrics_record(&r)?;
        }
        for r in kept(&trainer.run_dir.ranks_path())? {
            events.ranks_record(&r)?;
        }
        events.flush()?;
        if json {
            let plan = &trainer.plan;
            emit_json(
                "start",
                json!({
                    "run_dir": trainer.run_dir.root(),
                    "pipeline": plan.settings.name,
                    "step": step,
                    "total_steps": trainer.total_steps,
                    "steps_per_epoch": trainer.steps_per_epoch,
                    "model": plan.model,
                    "adapters": plan.adapters.iter().map(|a| json!({
                        "name": a.name, "method": a.method, "modules": a.modules.len(),
                    })).collect::<Vec<_>>(),
                    "trainable_parameters": plan.trainable_initial,
                    "trainable_percent": plan.trainable_percent,
                    "tensorboard": events.path(),
                }),
            );
        }
        Ok(Follow {
            events: Some(events),
            json,
        })
    }

    /// A `metrics.jsonl` record: its scalars, and a `step` (train) or `eval` event.
    pub fn metrics(&mut self, record: &Value) -> Result<(), TrainError> {
        if let Some(w) = self.events.as_mut() {
            w.metrics_record(record)?;
            w.flush()?;
        }
        if self.json {
            let kind = match record.get("split").and_then(Value::as_str) {
                Some("train") => "step",
                _ => "eval",
            };
            emit_json(kind, record.clone());
        }
        Ok(())
    }

    /// A `ranks.jsonl` record: per-module mean ranks and α histograms.
    pub fn ranks(&mut self, record: &Value) -> Result<(), TrainError> {
        if let Some(w) = self.events.as_mut() {
            w.ranks_record(record)?;
            w.flush()?;
        }
        Ok(())
    }

    /// Anything else the run does (`checkpoint`, `export`, `report`), for `--log-format json`.
    pub fn event(&self, event: &str, fields: Value) {
        if self.json {
            emit_json(event, fields);
        }
    }
}
