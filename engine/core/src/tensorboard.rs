//! TensorBoard event files, written beside `metrics.jsonl` and `ranks.jsonl` so
//! `tensorboard --logdir runs/` shows a run while it trains.
//!
//! The format is TensorFlow's: a file of TFRecords (u64 length LE, masked CRC32C of the length,
//! the bytes, masked CRC32C of the bytes), each holding a protobuf `Event` (`event.proto`):
//! `wall_time` = 1 (double), `step` = 2 (int64), `file_version` = 3 (string, in the first event),
//! `summary` = 5, `session_log` = 7. A `Summary` repeats `value` = 1: `tag` = 1, `simple_value`
//! = 2 (float) or `histo` = 5 (`HistogramProto`: min 1, max 2, num 3, sum 4, sum_squares 5,
//! bucket_limit 6 and bucket 7, packed doubles). The handful of messages is encoded here by hand.
//!
//! What goes in: every numeric field of a `metrics.jsonl` record as `SPLIT/FIELD` (train loss,
//! lr, regulariser, tokens/s, every eval metric), and from each `ranks.jsonl` record the mean
//! effective rank of each ARD-LoRA module (`rank/MODULE`) and the histogram of its heads' α
//! (`alpha/MODULE`). [`record_scalars`] and [`rank_summaries`] read the records as the logs
//! hold them, so a resumed run can copy what the logs kept into its new file.
//!
//! A resumed run appends a new events file that starts with a `SessionLog` START event at the
//! checkpoint's step: TensorBoard's reader then drops what earlier files hold from that step on
//! (what the killed process logged after its checkpoint), and the new file repeats the records
//! the truncated logs keep at that step. The steps then read back exactly as the logs have them,
//! in TensorBoard's Python reader (`EventAccumulator`, which honours the START event) and in
//! the data server `tensorboard --logdir` runs (which, per tag, drops the points from a step on
//! when that step is written again); tests/cli/tensorboard.rs checks both.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::rundir::{self, RunDirError};

/// The folder of a run's event files.
pub const DIR: &str = "tensorboard";
/// What TensorBoard looks for in a file name.
const PREFIX: &str = "events.out.tfevents.";

// ---- protobuf wire format ----

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u32, v: f32) {
    key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_packed_doubles(out: &mut Vec<u8>, field: u32, values: &[f64]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    put_bytes(out, field, &bytes);
}

/// An `Event` holding `payload` (its fields after `wall_time` and `step`).
fn event(wall_time: f64, step: u64, payload: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(payload.len() + 20);
    put_double(&mut e, 1, wall_time);
    put_varint(&mut e, 2, step);
    e.extend_from_slice(payload);
    e
}

/// `Summary.Value { tag, simple_value }`.
fn scalar_value(tag: &str, v: f64) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, 1, tag.as_bytes());
    put_float(&mut out, 2, v as f32);
    out
}

/// Equal-width buckets over [min, max] (at most 30, one per value for fewer values): the
/// `HistogramProto` of `values` (finite ones).
pub fn histogram_proto(values: &[f64]) -> Vec<u8> {
    let xs: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (min, max) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let (min, max) = if xs.is_empty() {
        (0.0, 0.0)
    } else {
        (min, max)
    };
    let n = xs.len().clamp(1, 30);
    let width = (max - min) / n as f64;
    // Right edges; the last is exactly `max`, so every value lands in a bucket.
    let limits: Vec<f64> = (1..=n)
        .map(|i| if i == n { max } else { min + width * i as f64 })
        .collect();
    let mut counts = vec![0f64; n];
    for &x in &xs {
        let i = limits.iter().position(|&l| x <= l).unwrap_or(n - 1);
        counts[i] += 1.0;
    }
    let mut h = Vec::new();
    put_double(&mut h, 1, min);
    put_double(&mut h, 2, max);
    put_double(&mut h, 3, xs.len() as f64);
    put_double(&mut h, 4, xs.iter().sum());
    put_double(&mut h, 5, xs.iter().map(|x| x * x).sum());
    put_packed_doubles(&mut h, 6, &limits);
    put_packed_doubles(&mut h, 7, &counts);
    h
}

// ---- TFRecord framing ----

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `data`.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One events file, appended to as a run logs.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// A new events file in `dir` (created): `events.out.tfevents.SECONDS.HOST.PID`, named so
    /// that it sorts after every events file already there (TensorBoard reads a folder's files
    /// in name order), starting with the `file_version` event.
    pub fn create(dir: &Path) -> Result<EventWriter, RunDirError> {
        std::fs::create_dir_all(dir).map_err(rundir::io_err("cannot create", dir))?;
        let last: Option<u64> = std::fs::read_dir(dir)
            .map_err(rundir::io_err("cannot read", dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix(PREFIX)?.split('.').next()?.parse().ok()
            })
            .max();
        let secs = (now() as u64).max(last.map_or(0, |l| l + 1));
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().replace(['/', '.'], "-"))
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let path = dir.join(format!("{PREFIX}{secs}.{host}.{}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(rundir::io_err("cannot create", &path))?;
        let mut w = EventWriter {
            out: BufWriter::new(file),
            path,
        };
        let mut version = Vec::new();
        put_bytes(&mut version, 3, b"brain.Event:2");
        w.write(0, &version)?;
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, step: u64, payload: &[u8]) -> Result<(), RunDirError> {
        let record = frame(&event(now(), step, payload));
        self.out
            .write_all(&record)
            .map_err(rundir::io_err("cannot write", &self.path))
    }

    /// `SessionLog { status: START }` at `step`: readers drop what earlier files logged at
    /// `step` or later (a resumed run's restart point).
    pub fn session_start(&mut self, step: u64) -> Result<(), RunDirError> {
        let mut log = Vec::new();
        put_varint(&mut log, 1, 1);
        let mut payload = Vec::new();
        put_bytes(&mut payload, 7, &log);
        self.write(step, &payload)
    }

    /// One event with a scalar per `(tag, value)`.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<(), RunDirError> {
        if values.is_empty() {
            return Ok(());
        }
        let mut summary = Vec::new();
        for (tag, v) in values {
            put_bytes(&mut summary, 1, &scalar_value(tag, *v));
        }
        let mut payload = Vec::new();
        put_bytes(&mut payload, 5, &summary);
        self.write(step, &payload)
    }

    /// One event with a histogram per `(tag, values)`.
    pub fn histograms(
        &mut self,
        step: u64,
        values: &[(String, Vec<f64>)],
    ) -> Result<(), RunDirError> {
        if values.is_empty() {
            return Ok(());
        }
        let mut summary = Vec::new();
        for (tag, xs) in values {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_bytes(&mut v, 5, &histogram_proto(xs));
            put_bytes(&mut summary, 1, &v);
        }
        let mut payload = Vec::new();
        put_bytes(&mut payload, 5, &summary);
        self.write(step, &payload)
    }

    /// Hand what is written to the OS (after each log step: a reader sees it at once).
    pub fn flush(&mut self) -> Result<(), RunDirError> {
        self.out
            .flush()
            .map_err(rundir::io_err("cannot write", &self.path))
    }

    /// Write a `metrics.jsonl` record's scalars.
    pub fn metrics_record(&mut self, record: &Value) -> Result<(), RunDirError> {
        if let Some((step, values)) = record_scalars(record) {
            self.scalars(step, &values)?;
        }
        Ok(())
    }

    /// Write a `ranks.jsonl` record's per-module mean ranks and α histograms.
    pub fn ranks_record(&mut self, record: &Value) -> Result<(), RunDirError> {
        if let Some((step, ranks, alphas)) = rank_summaries(record) {
            self.scalars(step, &ranks)?;
            self.histograms(step, &alphas)?;
        }
        Ok(())
    }
}

/// The step and `SPLIT/FIELD` scalars of a `metrics.jsonl` record: every numeric field but
/// `step` (flags such as `initial` are booleans, and a null rank is no number).
pub fn record_scalars(record: &Value) -> Option<(u64, Vec<(String, f64)>)> {
    let obj = record.as_object()?;
    let step = obj.get("step")?.as_u64()?;
    let split = obj.get("split").and_then(Value::as_str).unwrap_or("train");
    let values = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "step")
        .filter_map(|(k, v)| Some((format!("{split}/{k}"), v.as_f64()?)))
        .collect();
    Some((step, values))
}

/// `(step, per-module scalars, per-module histograms)` of a rank record.
pub type RankSummaries = (u64, Vec<(String, f64)>, Vec<(String, Vec<f64>)>);

/// Per-module scalars and histograms of one ARD-LoRA rank record
/// (`ArdLora::telemetry` units): `rank/MODULE`, the mean effective rank over the module's heads,
/// and `alpha/MODULE`, its heads' α. The record flagged `final` repeats the last step's (the
/// last step is always logged) and gives none.
pub fn rank_summaries(record: &Value) -> Option<RankSummaries> {
    if record.get("final").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let step = record.get("step")?.as_u64()?;
    // Module order as the record lists them (the model's order).
    let mut modules: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for u in record.get("units")?.as_array()? {
        let (Some(module), Some(alpha), Some(rank)) = (
            u.get("module").and_then(Value::as_str),
            u.get("alpha").and_then(Value::as_f64),
            u.get("effective_rank").and_then(Value::as_f64),
        ) else {
            continue;
        };
        match modules.iter_mut().find(|m| m.0 == module) {
            Some(m) => {
                m.1.push(rank);
                m.2.push(alpha);
            }
            None => modules.push((module.to_string(), vec![rank], vec![alpha])),
        }
    }
    let ranks = modules
        .iter()
        .map(|(m, r, _)| (format!("rank/{m}"), r.iter().sum::<f64>() / r.len() as f64))
        .collect();
    let alphas = modules
        .into_iter()
        .map(|(m, _, a)| (format!("alpha/{m}"), a))
        .collect();
    Some((step, ranks, alphas))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // TensorFlow's mask as its spec writes it, against the rotation the writer uses.
    #[allow(clippy::manual_rotate)]
    fn crc32c_and_its_mask_match_tensorflow() {
        // The CRC-32C check value, and TensorFlow's masked CRC of an empty length record.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let framed = frame(b"");
        assert_eq!(framed.len(), 16);
        let crc = crc32c::crc32c(&0u64.to_le_bytes());
        let masked = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(framed[8..12], masked.to_le_bytes());
    }

    #[test]
    fn varints_and_histograms_encode_as_protobuf_does() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        // Three values, three buckets: one each, the last edge exactly the maximum.
        let h = histogram_proto(&[0.5, 1.2, 2.0, f64::NAN]);
        let limits = &h[h.len() - 2 * (2 + 24)..h.len() - (2 + 24)];
        assert_eq!(limits[0], (6 << 3) | 2);
        assert_eq!(&limits[limits.len() - 8..], &2.0f64.to_le_bytes());
        let counts = &h[h.len() - (2 + 24)..];
        let c: Vec<f64> = counts[2..]
            .chunks(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(c, [1.0, 1.0, 1.0]);
    }

    #[test]
    fn records_become_tagged_scalars_and_module_summaries() {
        let rec = serde_json::json!({"step": 4, "split": "eval", "loss": 1.5, "initial": true,
                                     "mean_effective_rank": null});
        let (step, v) = record_scalars(&rec).unwrap();
        assert_eq!((step, v), (4, vec![("eval/loss".to_string(), 1.5)]));
        let unit = |m: &str, a: f64, r: u64| serde_json::json!({"module": m, "alpha": a, "effective_rank": r});
        let rec = serde_json::json!({"step": 2, "units": [unit("q", 0.5, 2), unit("q", 1.0, 4), unit("v", 2.0, 8)]});
        let (step, ranks, alphas) = rank_summaries(&rec).unwrap();
        assert_eq!(step, 2);
        assert_eq!(
            ranks,
            vec![("rank/q".to_string(), 3.0), ("rank/v".to_string(), 8.0)]
        );
        assert_eq!(alphas[0], ("alpha/q".to_string(), vec![0.5, 1.0]));
        let last = serde_json::json!({"step": 2, "final": true, "units": [unit("q", 0.5, 2)]});
        assert!(rank_summaries(&last).is_none());
    }
}
