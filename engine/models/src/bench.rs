//! The model benchmark's Rust side: forward+backward steps on a fixed batch, timed.
//!
//! Both sides (this and `scripts/bench_models.py`'s transformers peer) run the same step: the
//! same weights in f32, every weight receiving a gradient (full-parameter backward, the
//! heaviest case and independent of any adapter implementation), either in f32 or under bf16
//! autocast, on the same token ids, which [`prepare`] writes to a shared folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use crate::arch::EncoderHead;
use crate::assets::asset_file;
use crate::error::{ModelError, Result};
use crate::precision::{Precision, StorageDtype};
use crate::text::encode_batch;
use crate::tokenizer::load_tokenizer;
use crate::{LoadOptions, ModelLocation, load_causal_lm, load_encoder};

pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const LM_BATCH: (usize, usize) = (4, 128);
pub const CLS_BATCH: (usize, usize) = (32, 64);
pub const CLS_LABELS: usize = 16;

/// The batch both sides run: token ids, mask and (for classification) labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchBatch {
    pub input_ids: Vec<Vec<i64>>,
    pub attention_mask: Vec<Vec<i64>>,
    pub labels: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub side: &'static str,
    pub model: String,
    pub dtype: String,
    pub threads: i32,
    pub batch: [usize; 2],
    pub steps: usize,
    pub median_step_s: f64,
    pub tokens_per_s: f64,
    pub peak_rss_mb: f64,
    pub loss: f64,
}

fn other(e: impl std::fmt::Display) -> ModelError {
    ModelError::Usage(e.to_string())
}

fn shakespeare_text() -> Result<String> {
    let p = asset_file("shakespeare", "hamlet_gut.txt").map_err(ModelError::Usage)?;
    std::fs::read_to_string(&p).map_err(|e| ModelError::io(p, e))
}

/// First `n` (text, label) rows of healthtweets.csv: label = source_id up to its last `-`,
/// URLs stripped. A small quote-aware CSV reader (the file quotes texts that hold commas).
fn health_tweets(n: usize) -> Result<Vec<(String, String)>> {
    let p = asset_file("healthtweets", "healthtweets.csv").map_err(ModelError::Usage)?;
    let text = std::fs::read_to_string(&p).map_err(|e| ModelError::io(&p, e))?;
    let mut rows = Vec::new();
    let mut field = String::new();
    let mut fields = Vec::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            ('\n', false) => {
                fields.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut fields));
                if rows.len() > n {
                    break;
                }
            }
            ('\r', false) => {}
            _ => field.push(c),
        }
    }
    let out: Vec<(String, String)> = rows
        .into_iter()
        .skip(1)
        .filter(|r| r.len() >= 2)
        .map(|r| {
            let label = r[0]
                .rsplit_once('-')
                .map(|(a, _)| a)
                .unwrap_or(&r[0])
                .to_string();
            let text: Vec<&str> = r[1]
                .split_whitespace()
                .filter(|w| !w.starts_with("http"))
                .collect();
            (text.join(" "), label)
        })
        .collect();
    if out.len() < n {
        return Err(ModelError::Usage(format!(
            "{} has fewer than {n} rows",
            p.display()
        )));
    }
    Ok(out)
}

fn minilm_dir() -> Result<PathBuf> {
    asset_file("minilm", "config.json")
        .map_err(ModelError::Usage)
        .map(|p| p.parent().expect("file in a folder").to_path_buf())
}

/// Build the batch of `model` (`smollm2` or `minilm`).
pub fn batch(model: &str) -> Result<BenchBatch> {
    match model {
        "smollm2" => {
            let loc = ModelLocation::Gguf(
                asset_file("smollm2", SMOLLM2_GGUF).map_err(ModelError::Usage)?,
            );
            let tok = load_tokenizer(&loc)?.tokenizer;
            let text = shakespeare_text()?;
            let ids = tok.encode(&text, false).map_err(other)?.ids;
            let (b, t) = LM_BATCH;
            // Skip the Gutenberg preamble; consecutive blocks of the play.
            let start = 2000;
            if ids.len() < start + b * t {
                return Err(ModelError::Usage(
                    "the Shakespeare text is too short".into(),
                ));
            }
            let input_ids = (0..b)
                .map(|r| {
                    ids[start + r * t..start + (r + 1) * t]
                        .iter()
                        .map(|&i| i as i64)
                        .collect()
                })
                .collect();
            Ok(BenchBatch {
                input_ids,
                attention_mask: vec![vec![1; t]; b],
                labels: vec![],
            })
        }
        "minilm" => {
            let dir = minilm_dir()?;
            let tok = load_tokenizer(&ModelLocation::HfFolder(dir))?.tokenizer;
            let (b, t) = CLS_BATCH;
            let rows = health_tweets(b)?;
            let mut labels: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
            labels.sort();
            labels.dedup();
            let texts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let (ids, mask) = encode_batch(&tok, &texts, t)?;
            // Pad to exactly t columns so both sides see [b, t].
            let pad = |x: Tensor, v: i64| {
                let w = x.size()[1];
                if w < t as i64 {
                    Tensor::cat(
                        &[
                            x,
                            Tensor::full(
                                [b as i64, t as i64 - w],
                                v,
                                (Kind::Int64, tch::Device::Cpu),
                            ),
                        ],
                        1,
                    )
                } else {
                    x
                }
            };
            let ids = pad(ids, tok.pad_id().unwrap_or(0) as i64);
            let mask = pad(mask, 0);
            let to_rows = |x: &Tensor| -> Result<Vec<Vec<i64>>> {
                (0..b as i64)
                    .map(|i| Ok(Vec::<i64>::try_from(x.get(i))?))
                    .collect()
            };
            Ok(BenchBatch {
                input_ids: to_rows(&ids)?,
                attention_mask: to_rows(&mask)?,
                labels: rows
                    .iter()
                    .map(|r| (labels.binary_search(&r.1).unwrap_or(0) % CLS_LABELS) as i64)
                    .collect(),
            })
        }
        other => Err(ModelError::Usage(format!(
            "unknown benchmark model `{other}` (smollm2 or minilm)"
        ))),
    }
}

/// Write what the Python peer needs into `dir`: `<model>.batch.json` for both models and
/// `smollm2-hf/` (the GGUF dequantised to an f32 Hugging Face folder).
pub fn prepare(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    for m in ["smollm2", "minilm"] {
        let p = dir.join(format!("{m}.batch.json"));
        let json = serde_json::to_string(&batch(m)?).expect("batch serialises");
        std::fs::write(&p, json).map_err(|e| ModelError::io(&p, e))?;
    }
    let lm = load_causal_lm(
        &asset_file("smollm2", SMOLLM2_GGUF).map_err(ModelError::Usage)?,
        &LoadOptions::default(),
    )?;
    crate::hf::export::save_llama(&lm.model, &dir.join("smollm2-hf"))?;
    let p = dir.join("minilm.path");
    std::fs::write(&p, minilm_dir()?.display().to_string()).map_err(|e| ModelError::io(&p, e))
}

/// Peak resident set size of this process (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn to_tensor(rows: &[Vec<i64>]) -> Tensor {
    let b = rows.len() as i64;
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).reshape([b, -1])
}

/// Run `warmup + steps` forward+backward steps; all weights get gradients.
pub fn run(model: &str, bf16: bool, steps: usize, warmup: usize) -> Result<BenchResult> {
    // f32 weights; bf16 means autocast, exactly as the peer's `torch.autocast("cpu", bfloat16)`.
    let precision = Precision {
        storage: StorageDtype::F32,
        autocast: bf16.then_some(StorageDtype::Bf16),
    };
    let opts = LoadOptions {
        precision,
        ..Default::default()
    };
    let data = batch(model)?;
    let ids = to_tensor(&data.input_ids);
    let mask = to_tensor(&data.attention_mask);
    let (b, t) = ids.size2()?;
    let step: Box<dyn Fn() -> Result<Tensor>>;
    let params: Vec<Tensor>;
    match model {
        "smollm2" => {
            let lm = load_causal_lm(
                &asset_file("smollm2", SMOLLM2_GGUF).map_err(ModelError::Usage)?,
                &opts,
            )?;
            params = lm
                .model
                .base_parameters()
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            let m = lm.model;
            let ids = ids.shallow_clone();
            step = Box::new(move || {
                let logits = m.forward(&ids, None, true)?;
                let v = logits.size()[2];
                Ok(logits
                    .narrow(1, 0, t - 1)
                    .reshape([-1, v])
                    .cross_entropy_loss::<Tensor>(
                        &ids.narrow(1, 1, t - 1).reshape([-1]),
                        None,
                        Reduction::Mean,
                        -100,
                        0.0,
                    ))
            });
        }
        "minilm" => {
            let head = EncoderHead::Classification {
                num_labels: CLS_LABELS,
                seed: 0,
            };
            let enc = load_encoder(&minilm_dir()?, head, &opts)?;
            params = enc
                .model
                .base_parameters()
                .into_iter()
                .chain(enc.model.head_parameters())
                .map(|(_, t)| t)
                .collect();
            let m = enc.model;
            let labels = Tensor::from_slice(&data.labels);
            step = Box::new(move || {
                let logits = m.classify(&ids, &mask, true)?;
                Ok(logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0))
            });
        }
        other => {
            return Err(ModelError::Usage(format!(
                "unknown benchmark model `{other}`"
            )));
        }
    }
    for p in &params {
        let _ = p.shallow_clone().set_requires_grad(true);
    }
    let mut times = Vec::with_capacity(steps);
    let mut loss = f64::NAN;
    for i in 0..warmup + steps {
        let start = Instant::now();
        let l = step()?;
        l.backward();
        let dt = start.elapsed().as_secs_f64();
        // Zeroing outside the timed region, as the Python peer does.
        for p in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        loss = l.double_value(&[]);
        if i >= warmup {
            times.push(dt);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = if times.is_empty() {
        f64::NAN
    } else {
        times[times.len() / 2]
    };
    Ok(BenchResult {
        side: "ardpipe",
        model: model.to_string(),
        dtype: if bf16 { "bf16".into() } else { "f32".into() },
        threads: tch::get_num_threads(),
        batch: [b as usize, t as usize],
        steps,
        median_step_s: median,
        tokens_per_s: (b * t) as f64 / median,
        peak_rss_mb: peak_rss_mb(),
        loss,
    })
}
