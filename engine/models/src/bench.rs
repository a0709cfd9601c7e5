//! The model benchmark's Rust side: training steps on a fixed batch, timed.
//!
//! Both sides (this and `scripts/bench_models.py`'s transformers + peft peer) run the same
//! step on the same f32 weights and the same token ids, which [`prepare`] writes to a shared
//! folder, either in f32 or under bf16 autocast:
//! - `lora`: LoRA (r = 8, lora_alpha = 16, no dropout) on the model's attention modules
//!   ([`target_modules`]), plus the classification head for MiniLM (PEFT's
//!   `modules_to_save`); a step is forward + backward + AdamW;
//! - `ard_lora`: ARD-LoRA at the same maximum rank per head (r0 = rank, α_max = 1), with its
//!   regulariser, α optimiser and projection, as the trainer runs it; optionally compacted
//!   first to a fixed rank pattern ([`compacted_rank`]) by the adapters' own compaction;
//! - `full`: every weight receives a gradient (forward + backward, no optimiser).
//!
//! Beyond the defaults (f32 weights, as the peer loads them), a case can keep the frozen base
//! in bf16 (`base_bf16`, cast once at load; the adapters stay f32), store the adaptable linears
//! quantised (`quantize`: int8 per channel or int4 in groups, dequantised on the fly under the
//! chosen autocast) and recompute SmolLM2's decoder layers in the backward pass
//! (`checkpointing`).
//!
//! [`matmul_peak`] measures the GEMM throughput the achieved FLOP/s are compared with.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use ardpipe_adapters::ard::{ArdLora, ArdRegulariser};
use ardpipe_adapters::ops::QuantScheme;
use ardpipe_adapters::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, split_by_role};
use ardpipe_adapters::{AdaptableLinear, ArdLoraConfig, LoraConfig, MethodConfig};

use crate::arch::{Bert, EncoderHead, Llama};
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

fn to_tensor(rows: &[Vec<i64>]) -> Tensor {
    let b = rows.len() as i64;
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).reshape([b, -1])
}

/// What a timed step trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchMethod {
    /// Every weight gets a gradient; forward + backward only (no optimiser).
    Full,
    /// LoRA (PEFT semantics) on the model's attention modules + AdamW.
    Lora,
    /// ARD-LoRA (per-head units, the regulariser, both optimisers, α projection).
    ArdLora,
}

impl BenchMethod {
    pub fn name(self) -> &'static str {
        match self {
            BenchMethod::Full => "full",
            BenchMethod::Lora => "lora",
            BenchMethod::ArdLora => "ard_lora",
        }
    }
}

/// PEFT's `lora_alpha / r` (16 / 8), used for every LoRA and as ARD-LoRA's s / r0.
pub const LORA_SCALING: f64 = 2.0;
/// AdamW of the adapter weights (and the classification head): torch.optim.AdamW's defaults
/// but for the learning rate, which does not change the work.
pub const LR: f64 = 1e-3;
pub const WEIGHT_DECAY: f64 = 0.01;
/// ARD-LoRA: α's own Adam (pooled second moment, no weight decay) and the regulariser weight λ
/// (the defaults of docs/LANGUAGE.md: `alpha_lr = 5e-2`, λ warming up to 0.1).
pub const ALPHA_LR: f64 = 5e-2;
pub const ARD_LAMBDA: f64 = 0.1;

/// One benchmark case of the Rust side.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// `smollm2` or `minilm`.
    pub model: String,
    /// bf16 autocast (as `torch.autocast("cpu", dtype=torch.bfloat16)`); over f32 weights
    /// unless `base_bf16`.
    pub bf16: bool,
    /// The frozen base stored in bf16 (cast once at load; adapters stay f32), as transformers'
    /// `from_pretrained(..., dtype=torch.bfloat16)`. Only with `bf16` (autocast).
    pub base_bf16: bool,
    /// Store the adaptable linears' weights quantised, dequantised on the fly.
    pub quantize: Option<QuantScheme>,
    /// SmolLM2 only: recompute each decoder layer in the backward pass.
    pub checkpointing: bool,
    pub steps: usize,
    pub warmup: usize,
    pub method: BenchMethod,
    /// LoRA rank per module; ARD-LoRA's r0 (= its maximum rank per head, α_max = 1).
    pub rank: usize,
    /// LoRA only: rank × the module's heads per module, i.e. ARD-LoRA's maximum rank per
    /// module at r0 = `rank` ("LoRA at the same maximum rank").
    pub per_head: bool,
    /// ARD-LoRA only: before timing, set α to [`compacted_rank`]'s pattern and run the
    /// adapters' compaction (after one real training step, so AdamW's moments are resliced).
    pub compacted: bool,
    /// Record the timed steps' operators with libtorch's profiler and write them here as a
    /// Chrome trace (the timings then include the profiler's overhead).
    pub profile: Option<PathBuf>,
}

impl Default for BenchSpec {
    fn default() -> Self {
        Self {
            model: "smollm2".into(),
            bf16: false,
            base_bf16: false,
            quantize: None,
            checkpointing: false,
            steps: 5,
            warmup: 1,
            method: BenchMethod::Full,
            rank: 8,
            per_head: false,
            compacted: false,
            profile: None,
        }
    }
}

/// The modules each benchmark model adapts (last segment of the module path): SmolLM2's four
/// attention projections, MiniLM's query and value.
pub fn target_modules(model: &str) -> &'static [&'static str] {
    match model {
        "smollm2" => &["q_proj", "k_proj", "v_proj", "o_proj"],
        "minilm" => &["query", "value"],
        _ => &[],
    }
}

/// The effective rank ARD-LoRA's head `head` of layer `layer` is given before compaction in a
/// `compacted` case: 2 + (layer + head) mod 3 at r0 = 8 (ranks 2, 3, 4 cycling over heads and
/// layers; mean 3 of 8, 37.5%), scaled to other r0 and at least 1: a fixed, mid-range outcome
/// of learning, so the compacted timings do not depend on a training run.
pub fn compacted_rank(layer: usize, head: usize, r0: usize) -> usize {
    let r8 = 2 + (layer + head) % 3;
    ((r8 * r0) as f64 / 8.0).round().max(1.0) as usize
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub side: &'static str,
    pub model: String,
    /// Compute: `f32` or `bf16` (autocast).
    pub dtype: String,
    /// The frozen base's storage: `f32` or `bf16`.
    pub base: String,
    /// `int8`, `int4` or none: how the adaptable linears are stored.
    pub quantize: Option<String>,
    pub checkpointing: bool,
    pub method: &'static str,
    pub rank: usize,
    pub per_head: bool,
    pub compacted: bool,
    pub threads: i32,
    pub batch: [usize; 2],
    pub steps: usize,
    pub median_step_s: f64,
    pub tokens_per_s: f64,
    pub peak_rss_mb: f64,
    pub loss: f64,
    /// Adapted modules (0 for `full`).
    pub modules: usize,
    /// Tensors the step updates or differentiates (adapters, α, the classification head).
    pub trainable_params: usize,
    /// The dtypes those tensors are stored in (`f32`, `bf16`), sorted.
    pub trainable_dtypes: Vec<String>,
    /// Σ over adapted modules of the allocated rank (LoRA r; ARD-LoRA units × stored rows).
    pub rank_total: usize,
    /// ARD-LoRA: mean of max(1, round(r0·α)) over heads, when the timed steps start.
    pub mean_effective_rank: Option<f64>,
    /// Matmul FLOPs of one step, from the shapes ([`step_flops`]).
    pub flops_per_step: f64,
}

/// The two benchmark models behind one interface.
enum Net {
    Lm(Box<Llama>),
    Enc(Box<Bert>),
}

impl Net {
    fn linears(&self) -> Vec<&AdaptableLinear> {
        match self {
            Net::Lm(m) => m.linears(),
            Net::Enc(m) => m.linears(),
        }
    }
    fn linears_mut(&mut self) -> Vec<&mut AdaptableLinear> {
        match self {
            Net::Lm(m) => m.linears_mut(),
            Net::Enc(m) => m.linears_mut(),
        }
    }
    /// The task head that trains with the adapters (PEFT's `modules_to_save`).
    fn head_parameters(&self) -> Vec<(String, Tensor)> {
        match self {
            Net::Lm(_) => vec![],
            Net::Enc(m) => m.head_parameters(),
        }
    }
    fn all_parameters(&self) -> Vec<Tensor> {
        match self {
            Net::Lm(m) => m.base_parameters().into_iter().map(|(_, t)| t).collect(),
            Net::Enc(m) => m
                .base_parameters()
                .into_iter()
                .chain(m.head_parameters())
                .map(|(_, t)| t)
                .collect(),
        }
    }
    fn loss(&self, ids: &Tensor, mask: &Tensor, labels: &Tensor) -> Result<Tensor> {
        match self {
            Net::Lm(m) => {
                // As the trainer's step (`TaskModel::train_loss`): labels already shifted
                // (−100 at the end), the head and cross-entropy fused a chunk of rows at a
                // time, never the [b, t, vocab] logits (engine/models/src/lm_loss.rs).
                let h = m.last_hidden_state(ids, None, true)?;
                m.lm_loss(&h, labels)
            }
            Net::Enc(m) => {
                let logits = m.classify(ids, mask, true)?;
                Ok(logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0))
            }
        }
    }
    fn ard_adapters(&self) -> Vec<&ArdLora> {
        self.linears()
            .into_iter()
            .filter_map(|l| l.adapter.as_ref().and_then(|a| a.as_ard()))
            .collect()
    }
}

fn is_target(model: &str, path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    target_modules(model).contains(&last)
}

/// Matmul FLOPs of one training step (2 per multiply-add), from the shapes; the same count
/// serves both sides, which do the same work. With N = batch × tokens:
/// - each linear: 2·N·d_in·d_out forward; backward 1× that (input gradient) when its weight
///   is frozen, 2× (input and weight gradients) when it trains (`full`);
/// - each adapter (LoRA or ARD-LoRA): 2·N·(|A| + |B|) forward, 2× that backward (|A|, |B|
///   the stored sizes: for ARD-LoRA units × stored rows × per-unit width, as its batched
///   products compute);
/// - attention: 4·b·t²·d_q per layer forward (QKᵀ and PV over all t×t), 2× that backward;
/// - SmolLM2's tied LM head: 2·N·d·V forward, 1× backward (2× under `full`); MiniLM's pooler
///   and classifier on the b CLS rows, 3× their forward (they train).
///
/// Elementwise work (norms, softmax, activations, the optimiser) is not counted.
fn step_flops(net: &Net, b: i64, t: i64, method: BenchMethod) -> f64 {
    let n = (b * t) as f64;
    let base_mult = if method == BenchMethod::Full {
        3.0
    } else {
        2.0
    };
    let mut f = 0.0;
    for l in net.linears() {
        let (d_out, d_in) = (l.base.d_out() as f64, l.base.d_in() as f64);
        f += base_mult * 2.0 * n * d_in * d_out;
        if let Some(a) = l.adapter.as_ref().filter(|a| a.method() != "full") {
            let ab: usize = a
                .trainable()
                .iter()
                .filter(|(k, _)| k == "lora_A" || k == "lora_B")
                .map(|(_, t)| t.numel())
                .sum();
            f += 3.0 * 2.0 * n * ab as f64;
        }
        let last = l.path.rsplit('.').next().unwrap_or("");
        if last == "q_proj" || last == "query" {
            f += 3.0 * 4.0 * (b * t * t) as f64 * d_out;
        }
    }
    match net {
        Net::Lm(m) => {
            let w = m.lm_head.as_ref().unwrap_or(&m.embed_tokens).size();
            f += base_mult * 2.0 * n * (w[0] * w[1]) as f64;
        }
        Net::Enc(m) => {
            let head: f64 = m
                .head_parameters()
                .iter()
                .filter(|(k, _)| k.ends_with(".weight"))
                .map(|(_, t)| t.numel() as f64)
                .sum();
            f += 3.0 * 2.0 * b as f64 * head;
        }
    }
    f
}

/// The trainer's step, minus data loading: task loss backward, both Adam updates (α's with its
/// pooled second moment), the regulariser's proximal step on α with its projection, and the
/// regulariser's EMA (what `engine/core/src/train/mod.rs` does per step).
struct Training {
    main: AdamW,
    alpha: Option<AdamW>,
    regulariser: Option<ArdRegulariser>,
}

impl Training {
    fn new(net: &Net, ard: Option<&ArdLoraConfig>) -> Result<Self> {
        let (adapter_weights, alphas) = split_by_role(net.linears());
        let mut weights = net.head_parameters();
        weights.extend(adapter_weights);
        let main = AdamW::new(
            "main",
            AdamWConfig::default(),
            vec![ParamGroup::new("weights", LR, WEIGHT_DECAY, weights)],
        );
        let alpha = (!alphas.is_empty()).then(|| {
            AdamW::new(
                "alpha",
                AdamWConfig {
                    pooled: true,
                    ..AdamWConfig::default()
                },
                vec![ParamGroup::new("alpha", ALPHA_LR, 0.0, alphas)],
            )
        });
        let regulariser = match ard {
            Some(cfg) => Some(ArdRegulariser::new(&net.ard_adapters(), cfg).map_err(other)?),
            None => None,
        };
        Ok(Self {
            main,
            alpha,
            regulariser,
        })
    }

    fn trainable(&self) -> usize {
        self.main.num_params() + self.alpha.as_ref().map_or(0, |o| o.num_params())
    }

    fn zero_grad(&mut self) {
        self.main.zero_grad();
        if let Some(o) = self.alpha.as_mut() {
            o.zero_grad();
        }
    }

    fn step(&mut self, net: &mut Net, loss: &Tensor) -> Result<()> {
        loss.backward();
        self.main.step();
        if let Some(o) = self.alpha.as_mut() {
            o.step();
        }
        let shifts = match &self.regulariser {
            Some(reg) => reg
                .proximal_shifts(
                    &net.ard_adapters(),
                    ALPHA_LR * ARD_LAMBDA,
                    reg.beta,
                    reg.gamma,
                )
                .map_err(other)?,
            None => Vec::new(),
        };
        let mut shifts = shifts.iter();
        for l in net.linears_mut() {
            if let Some(a) = l.adapter.as_mut().and_then(|a| a.as_ard_mut()) {
                match shifts.next() {
                    Some(s) => a.shift_alpha(s),
                    None => a.project_alpha(),
                }
            }
        }
        if let Some(reg) = self.regulariser.as_mut() {
            reg.update_ema(&net.ard_adapters()).map_err(other)?;
        }
        Ok(())
    }
}

/// Set every ARD-LoRA head's α to [`compacted_rank`] / r0 and compact, through the adapters'
/// own compaction (optimiser state resliced). Returns (params before, after).
fn compact_to_pattern(net: &mut Net, training: &mut Training, r0: usize) -> Result<(usize, usize)> {
    for l in net.linears_mut() {
        let (layer, _) = ardpipe_adapters::ard::layer_and_kind(&l.path);
        if let Some(a) = l.adapter.as_mut().and_then(|a| a.as_ard_mut()) {
            let alpha: Vec<f64> = (0..a.n_units())
                .map(|h| compacted_rank(layer.unwrap_or(0), h, r0) as f64 / r0 as f64)
                .collect();
            a.set_alpha(&Tensor::from_slice(&alpha));
        }
    }
    let report = ardpipe_adapters::ard::compact_linears(net.linears_mut(), &mut training.main)
        .map_err(other)?;
    Ok((report.params_before, report.params_after))
}

fn load_net(model: &str, opts: &LoadOptions) -> Result<Net> {
    match model {
        "smollm2" => {
            let lm = load_causal_lm(
                &asset_file("smollm2", SMOLLM2_GGUF).map_err(ModelError::Usage)?,
                opts,
            )?;
            Ok(Net::Lm(Box::new(lm.model)))
        }
        "minilm" => {
            let head = EncoderHead::Classification {
                num_labels: CLS_LABELS,
                seed: 0,
            };
            Ok(Net::Enc(Box::new(
                load_encoder(&minilm_dir()?, head, opts)?.model,
            )))
        }
        other => Err(ModelError::Usage(format!(
            "unknown benchmark model `{other}` (smollm2 or minilm)"
        ))),
    }
}

fn check(spec: &BenchSpec) -> Result<()> {
    let bad = |m: &str| Err(ModelError::Usage(m.to_string()));
    if spec.rank == 0 {
        return bad("--rank must be at least 1");
    }
    if spec.per_head && spec.method != BenchMethod::Lora {
        return bad("--per-head applies to --method lora only");
    }
    if spec.compacted && spec.method != BenchMethod::ArdLora {
        return bad("--compacted applies to --method ard_lora only");
    }
    if spec.base_bf16 && !spec.bf16 {
        return bad(
            "--base bf16 needs bf16 autocast (--dtype bf16): f32 activations cannot multiply \
             bf16 weights",
        );
    }
    if spec.checkpointing && spec.model != "smollm2" {
        return bad(
            "--checkpointing recomputes decoder layers (SmolLM2); MiniLM is an encoder and keeps \
             its activations: drop --checkpointing or use --model smollm2",
        );
    }
    if spec.quantize.is_some() && spec.method == BenchMethod::Full {
        return bad(
            "--quantize stores the frozen base quantised; --method full trains every weight: \
             use --method lora or ard_lora",
        );
    }
    Ok(())
}

/// Run `warmup + steps` training steps of `spec` on its fixed batch; time each step
/// (forward, backward and, for the adapters, the optimiser step); gradients are zeroed
/// outside the timed region.
pub fn run(spec: &BenchSpec) -> Result<BenchResult> {
    check(spec)?;
    // f32 weights unless `base_bf16`; bf16 means autocast, exactly as the peer's
    // `torch.autocast("cpu", bfloat16)`.
    let precision = Precision {
        storage: if spec.base_bf16 {
            StorageDtype::Bf16
        } else {
            StorageDtype::F32
        },
        autocast: spec.bf16.then_some(StorageDtype::Bf16),
    };
    precision.validate()?;
    let opts = LoadOptions {
        precision,
        quantize: spec.quantize,
        ..Default::default()
    };
    let data = batch(&spec.model)?;
    let ids = to_tensor(&data.input_ids);
    let mask = to_tensor(&data.attention_mask);
    let (b, t) = ids.size2()?;
    let labels = match spec.model.as_str() {
        // Next-token targets; the last position has none (what transformers' loss does too).
        "smollm2" => Tensor::cat(
            &[
                ids.narrow(1, 1, t - 1),
                Tensor::full([b, 1], -100, (Kind::Int64, tch::Device::Cpu)),
            ],
            1,
        ),
        _ => Tensor::from_slice(&data.labels),
    };
    let mut net = load_net(&spec.model, &opts)?;
    if spec.checkpointing
        && let Net::Lm(m) = &mut net
    {
        m.checkpointing = true;
    }
    tracing::debug!(
        "peak RSS after loading: {:.0} MiB",
        crate::runtime::peak_rss_mb()
    );
    tch::manual_seed(0);

    let r = spec.rank;
    let ard_cfg = ArdLoraConfig {
        r0: r,
        alpha_init: 1.0,
        alpha_min: 0.0,
        alpha_max: 1.0,
        scale: LORA_SCALING * r as f64,
        dropout: 0.0,
        compaction_interval: 0,
        ..ArdLoraConfig::default()
    };
    let mut modules = 0;
    for l in net.linears_mut() {
        if spec.method == BenchMethod::Full || !is_target(&spec.model, &l.path) {
            continue;
        }
        let method = match spec.method {
            BenchMethod::Lora => {
                let r = if spec.per_head {
                    r * l.heads.n_heads
                } else {
                    r
                };
                MethodConfig::Lora(LoraConfig {
                    r,
                    lora_alpha: LORA_SCALING * r as f64,
                    dropout: 0.0,
                })
            }
            _ => MethodConfig::ArdLora(ard_cfg.clone()),
        };
        ardpipe_adapters::attach(l, &method).map_err(other)?;
        modules += 1;
    }

    let mut training = match spec.method {
        BenchMethod::Full => {
            for p in net.all_parameters() {
                let _ = p.set_requires_grad(true);
            }
            None
        }
        BenchMethod::Lora => Some(Training::new(&net, None)?),
        BenchMethod::ArdLora => Some(Training::new(&net, Some(&ard_cfg))?),
    };
    let zero_all = |net: &Net| {
        for p in net.all_parameters() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    };
    let one_step = |net: &mut Net, training: &mut Option<Training>| -> Result<(f64, f64)> {
        let start = Instant::now();
        let l = net.loss(&ids, &mask, &labels)?;
        match training.as_mut() {
            Some(tr) => tr.step(net, &l)?,
            None => l.backward(),
        }
        let dt = start.elapsed().as_secs_f64();
        // Zeroing outside the timed region, as the Python peer does.
        match training.as_mut() {
            Some(tr) => tr.zero_grad(),
            None => zero_all(net),
        }
        Ok((dt, l.double_value(&[])))
    };

    if spec.compacted {
        // One real step first, so compaction has AdamW moments to reslice, as in a run.
        one_step(&mut net, &mut training)?;
        let tr = training.as_mut().expect("ard_lora trains");
        let (before, after) = compact_to_pattern(&mut net, tr, r)?;
        tracing::info!("compaction: adapter parameters {before} → {after}");
    }

    // The ranks of the configuration being timed, read before the timed steps move α: the rows
    // each step computes with stay fixed (only a compaction changes them), while α drifts.
    let mut rank_total = 0;
    let mut eff = Vec::new();
    for l in net.linears() {
        let Some(a) = &l.adapter else { continue };
        if let Some(ard) = a.as_ard() {
            rank_total += ard.n_units() * ard.allocated_rank();
            eff.extend(ard.effective_ranks());
        } else if let Some((_, t)) = a.trainable().iter().find(|(k, _)| k == "lora_A") {
            rank_total += t.size()[0] as usize;
        }
    }
    let mut times = Vec::with_capacity(spec.steps);
    let mut loss = f64::NAN;
    let mut profile = None;
    for i in 0..spec.warmup + spec.steps {
        if i == spec.warmup && spec.profile.is_some() {
            profile = Some(ardpipe_adapters::profile::Profile::start().map_err(other)?);
        }
        let (dt, l) = one_step(&mut net, &mut training)?;
        loss = l;
        if i >= spec.warmup {
            times.push(dt);
        }
        tracing::debug!(
            "step {i}: {dt:.3} s, peak RSS {:.0} MiB",
            crate::runtime::peak_rss_mb()
        );
    }
    if let (Some(p), Some(path)) = (profile, &spec.profile) {
        p.finish(path).map_err(other)?;
    }
    times.sort_by(f64::total_cmp);
    let median = if times.is_empty() {
        f64::NAN
    } else if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };

    let mut trainable_dtypes: Vec<String> = net
        .linears()
        .iter()
        .filter_map(|l| l.adapter.as_ref())
        .flat_map(|a| a.trainable())
        .chain(net.head_parameters())
        .map(|(_, t)| match t.kind() {
            Kind::Float => "f32".to_string(),
            Kind::BFloat16 => "bf16".to_string(),
            k => format!("{k:?}"),
        })
        .collect();
    trainable_dtypes.sort();
    trainable_dtypes.dedup();
    let trainable_params = match &training {
        Some(tr) => tr.trainable(),
        None => net.all_parameters().iter().map(Tensor::numel).sum(),
    };
    Ok(BenchResult {
        side: "ardpipe",
        model: spec.model.clone(),
        dtype: if spec.bf16 {
            "bf16".into()
        } else {
            "f32".into()
        },
        base: if spec.base_bf16 {
            "bf16".into()
        } else {
            "f32".into()
        },
        quantize: spec.quantize.map(|q| match q {
            QuantScheme::Int8 => "int8".to_string(),
            QuantScheme::Int4 { group } => format!("int4/{group}"),
        }),
        checkpointing: spec.checkpointing,
        method: spec.method.name(),
        rank: spec.rank,
        per_head: spec.per_head,
        compacted: spec.compacted,
        threads: tch::get_num_threads(),
        batch: [b as usize, t as usize],
        steps: spec.steps,
        median_step_s: median,
        tokens_per_s: (b * t) as f64 / median,
        peak_rss_mb: crate::runtime::peak_rss_mb(),
        loss,
        modules,
        trainable_params,
        trainable_dtypes,
        rank_total,
        mean_effective_rank: (!eff.is_empty())
            .then(|| eff.iter().sum::<usize>() as f64 / eff.len() as f64),
        flops_per_step: step_flops(&net, b, t, spec.method),
    })
}

/// This machine's GEMM throughput through the same libtorch at the current thread count.
#[derive(Debug, Clone, Serialize)]
pub struct MatmulPeak {
    pub dtype: String,
    pub threads: i32,
    /// (n, GFLOP/s) of an n×n×n product, best of repeated timings.
    pub sizes: Vec<(i64, f64)>,
    pub peak_gflops: f64,
}

/// Time square matmuls of a few sizes (f32, or bf16 operands — what autocast feeds the
/// kernels) for about `seconds` each and keep the best rate: the machine's practical peak.
pub fn matmul_peak(bf16: bool, seconds: f64) -> MatmulPeak {
    let kind = if bf16 { Kind::BFloat16 } else { Kind::Float };
    let _g = tch::no_grad_guard();
    tch::manual_seed(0);
    let mut sizes = Vec::new();
    for n in [512i64, 1024, 2048, 3072] {
        let a = Tensor::randn([n, n], (Kind::Float, tch::Device::Cpu)).to_kind(kind);
        let b = Tensor::randn([n, n], (Kind::Float, tch::Device::Cpu)).to_kind(kind);
        let out = Tensor::empty([n, n], (kind, tch::Device::Cpu));
        let _ = a.mm_out(&out, &b); // warm-up (allocations, kernel selection)
        let flops = 2.0 * (n * n * n) as f64;
        let mut best = f64::INFINITY;
        let start = Instant::now();
        let mut reps = 0;
        while reps < 3 || start.elapsed().as_secs_f64() < seconds {
            let t0 = Instant::now();
            let _ = a.mm_out(&out, &b);
            best = best.min(t0.elapsed().as_secs_f64());
            reps += 1;
        }
        sizes.push((n, flops / best / 1e9));
    }
    let peak_gflops = sizes.iter().map(|s| s.1).fold(0.0, f64::max);
    MatmulPeak {
        dtype: if bf16 { "bf16".into() } else { "f32".into() },
        threads: tch::get_num_threads(),
        sizes,
        peak_gflops,
    }
}
