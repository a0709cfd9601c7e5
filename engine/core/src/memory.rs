//! The plan's peak-memory estimate for one training process: the frozen base as it is stored
//! (dtype or quantised), the trainable tensors with their gradients and optimiser state, what the
//! forward pass keeps for the backward pass (all of it, or each decoder layer's input under
//! `checkpointing = layers`), the loss's logits, evaluation, and the runtime itself. The
//! activation terms count the tensors this engine's layers save (engine/models/src/arch/llama.rs
//! and engine/adapters/src/lora.rs), not a generic rule; tests/cli/memory.rs holds them against
//! measured peaks.

use ardpipe_dsl::pipeline as p;
use ardpipe_models::ModelDescription;
use ardpipe_models::arch::ArchConfig;
use serde::Serialize;

use crate::plan::{ExecutionPlan, RunSettings, TrainingPlan};

/// Bytes, estimated before anything is loaded.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MemoryEstimate {
    /// The frozen base: adaptable linears as stored (`base_storage`), the rest in the dtype.
    pub weights: u64,
    pub adapters: u64,
    pub gradients: u64,
    pub optimizer_state: u64,
    /// What a training step holds besides the above at its peak: saved activations, one
    /// layer's working set (recomputed under checkpointing), the loss's logits; or
    /// evaluation's logits when those are larger.
    pub activations: u64,
    /// libtorch and the process itself (code, allocator, tokenizer, data).
    pub runtime: u64,
    pub total: u64,
    /// How the base's linear weights are stored: `f32`, `bf16`, `f16`, `int8`,
    /// `int4 (groups of 32)`.
    pub base_storage: String,
    /// `train.checkpointing = layers`.
    pub checkpointing: bool,
}

/// A process's resident memory before any model is loaded, measured with `ardpipe run` on this
/// CPU build of libtorch (code pages, allocator arenas, thread pools, tokenizer).
const CPU_RUNTIME: u64 = 330 << 20;
/// What a CUDA context and libtorch's kernels take on a GPU (about 0.5 GiB on recent cards).
const CUDA_RUNTIME: u64 = 512 << 20;

/// How many rows of logits the fused loss computes at once (engine/models/src/lm_loss.rs).
fn loss_chunk_rows(vocab: usize) -> u64 {
    ardpipe_models::lm_loss::chunk_rows_for(vocab as i64) as u64
}

/// Where the estimate is for: the pipeline's device, or a GPU named to `ardpipe plan --fit`, and
/// how many data-parallel processes split each batch.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub gpu: bool,
    pub processes: u32,
}

impl Target {
    /// The pipeline's own device, one process.
    pub fn of(settings: &RunSettings) -> Target {
        Target {
            gpu: matches!(settings.model.device, p::Device::Cuda { .. }),
            processes: 1,
        }
    }
}

pub fn estimate(
    desc: &ModelDescription,
    pipeline: &RunSettings,
    adapted: &[String],
    trainable: usize,
    t: &TrainingPlan,
    target: Target,
) -> MemoryEstimate {
    let scheme = crate::convert::quant_scheme(pipeline.model.quantize);
    let dtype = pipeline.base_dtype();
    let dense_bytes: u64 = match dtype {
        p::DType::F16 | p::DType::Bf16 => 2,
        _ => 4,
    };
    // Adaptable linears as stored; everything else (embeddings, norms, heads) in the dtype.
    let (mut linear_params, mut linear_bytes) = (0u64, 0u64);
    for m in &desc.modules {
        let n = (m.d_out * m.d_in) as u64;
        linear_params += n;
        linear_bytes += match scheme {
            Some(s) if s.refuses(m.d_in).is_none() => s.bytes(m.d_out, m.d_in) as u64,
            _ => n * dense_bytes,
        };
    }
    let weights =
        linear_bytes + (desc.parameters as u64).saturating_sub(linear_params) * dense_bytes;
    let base_storage = match scheme {
        Some(s) => s.name(),
        None => match dtype {
            p::DType::Bf16 => "bf16".into(),
            p::DType::F16 => "f16".into(),
            _ => "f32".into(),
        },
    };
    let checkpointing = pipeline.train.checkpointing == p::Checkpointing::Layers;
    // Every process holds the whole model and takes its share of each micro-batch.
    let batch = (t.batch_size as u64).div_ceil(target.processes.max(1) as u64);
    let act = Activations {
        tokens: batch * t.sequence_length as u64,
        batch,
        seq: t.sequence_length as u64,
        // Under autocast the linears' outputs are 16-bit; norms and the residual stay f32.
        out_bytes: match pipeline.train.precision {
            p::Precision::F32 => 4,
            _ => 2,
        },
        autocast: pipeline.train.precision != p::Precision::F32,
    };
    let train = act.training(&desc.config, adapted, checkpointing);
    let eval = pipeline
        .evaluate
        .as_ref()
        .map_or(0, |e| act.evaluation(&desc.config, e.batch_size as u64));
    let activations = train.max(eval);
    let adapters = trainable as u64 * 4;
    let gradients = trainable as u64 * 4;
    let optimizer_state = match pipeline.train.optimizer {
        p::Optimizer::Sgd { momentum: 0.0, .. } => 0,
        p::Optimizer::Sgd { .. } => trainable as u64 * 4,
        _ => trainable as u64 * 8,
    };
    let runtime = if target.gpu {
        CUDA_RUNTIME
    } else {
        CPU_RUNTIME
    };
    MemoryEstimate {
        weights,
        adapters,
        gradients,
        optimizer_state,
        activations,
        runtime,
        total: weights + adapters + gradients + optimizer_state + activations + runtime,
        base_storage,
        checkpointing,
    }
}

/// One micro-batch's shape and the activation dtype.
struct Activations {
    tokens: u64,
    batch: u64,
    seq: u64,
    /// Bytes of a linear's output (4, or 2 under autocast).
    out_bytes: u64,
    autocast: bool,
}

impl Activations {
    /// The training step's peak beyond weights and trainable state.
    fn training(&self, config: &ArchConfig, adapted: &[String], checkpointing: bool) -> u64 {
        match config {
            ArchConfig::Llama(c) => {
                self.decoder(c, adapted, checkpointing) + self.loss(c.vocab_size)
            }
            ArchConfig::PaliGemma(c) => {
                let v = &c.vision;
                let vision = self.encoder_layers(
                    v.num_patches() as u64 * self.batch,
                    v.num_patches() as u64,
                    v.hidden_size as u64,
                    v.num_attention_heads as u64,
                    v.num_hidden_layers as u64,
                );
                self.decoder(&c.text, adapted, checkpointing)
                    + vision
                    + self.loss(c.text.vocab_size)
            }
            ArchConfig::Bert(c) => self.encoder_layers(
                self.tokens,
                self.seq,
                c.hidden_size as u64,
                c.num_attention_heads as u64,
                c.num_hidden_layers as u64,
            ),
        }
    }

    /// Decoder layers: what each keeps for the backward pass, and one layer's working set.
    fn decoder(
        &self,
        c: &ardpipe_models::arch::LlamaConfig,
        adapted: &[String],
        ckpt: bool,
    ) -> u64 {
        let n = self.tokens;
        let (h, f) = (c.hidden_size as u64, c.intermediate_size as u64);
        let q = (c.num_attention_heads * c.head_dim) as u64;
        let kv = (c.num_key_value_heads * c.head_dim) as u64;
        let o = self.out_bytes;
        let has = |name: &str| adapted.iter().any(|p| p.ends_with(name));
        // A 16-bit copy of an adapted linear's input is saved beside the f32 one under autocast.
        let input = |adapted: bool| {
            if adapted {
                n * h * (4 + if self.autocast { 2 } else { 0 })
            } else {
                0
            }
        };
        let mut layer = 0;
        // The residual stream entering each norm (f32), and the normed input of q/k/v.
        layer += 2 * n * h * 4;
        layer += input(has("q_proj") || has("k_proj") || has("v_proj"));
        layer += input(has("gate_proj") || has("up_proj"));
        // Attention keeps queries, keys, values and its output; with soft-capping (Gemma 2)
        // the scores are explicit: scores, capped scores and probabilities.
        layer += n * (2 * q + 2 * kv) * o;
        if c.attn_logit_softcapping.is_some() {
            layer += 3 * self.batch * c.num_attention_heads as u64 * self.seq * self.seq * 4;
        }
        if has("o_proj") {
            layer += n * q * o;
        }
        // The MLP keeps the gate, its activation and the up projection (and the down
        // projection's input when it is adapted).
        layer += 3 * n * f * o;
        if has("down_proj") {
            layer += n * f * o;
        }
        if c.sandwich_norms {
            layer += 2 * n * h * 4;
        }
        let layers = c.num_hidden_layers as u64;
        // Working set of the layer being differentiated: its activation gradients.
        let working = layer;
        if ckpt {
            // Each layer's input only; the layer being differentiated is recomputed whole.
            layers * n * h * 4 + layer + working
        } else {
            layers * layer + working
        }
    }

    /// The fused loss: one chunk of logits with its softmax and gradient (f32), and the final
    /// hidden states with their gradient.
    fn loss(&self, vocab: usize) -> u64 {
        3 * loss_chunk_rows(vocab).min(self.tokens) * vocab as u64 * 4
    }

    /// Post-LN encoder layers (BERT, SigLIP), after Korthikanti et al. (2022): per layer
    /// s·b·h·(34 + 5·a·s/h) bytes at 16 bits.
    fn encoder_layers(&self, tokens: u64, seq: u64, h: u64, heads: u64, layers: u64) -> u64 {
        let per_layer = tokens * h * 34 + 5 * heads * seq * tokens;
        per_layer * layers * (if self.autocast { 2 } else { 4 }) / 2
    }

    /// Evaluation without gradients: the largest of one layer's activations and the logits of
    /// a batch (with their log-softmax).
    fn evaluation(&self, config: &ArchConfig, batch: u64) -> u64 {
        let vocab = match config {
            ArchConfig::Llama(c) => c.vocab_size,
            ArchConfig::PaliGemma(c) => c.text.vocab_size,
            ArchConfig::Bert(_) => return 0,
        } as u64;
        2 * batch * self.seq * vocab * 4
    }
}

/// A device's memory, by the name `ardpipe plan --fit` takes or as a size (`24GiB`, `80GB`).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Device {
    pub name: String,
    /// Bytes a process can use (what `nvidia-smi` reports as total for a GPU, `MemTotal`
    /// for this machine).
    pub bytes: u64,
    pub gpu: bool,
}

/// GPUs by name, with the total memory `nvidia-smi` reports for each (MiB).
const GPUS: &[(&str, &str, u64)] = &[
    ("h100", "NVIDIA H100 80GB", 81_559),
    ("h200", "NVIDIA H200 141GB", 143_771),
    ("a100-80", "NVIDIA A100 80GB", 81_920),
    ("a100-40", "NVIDIA A100 40GB", 40_960),
    ("l40s", "NVIDIA L40S 48GB", 46_068),
    ("a10g", "NVIDIA A10G 24GB", 23_028),
    ("l4", "NVIDIA L4 24GB", 23_034),
    ("rtx4090", "NVIDIA GeForce RTX 4090 24GB", 24_564),
    ("t4", "NVIDIA T4 16GB", 15_360),
];

impl Device {
    /// `h100`, `a100-40`, … (see `GPUS`), `cpu` (this machine's memory), or a size.
    pub fn parse(s: &str) -> Result<Device, String> {
        let lower = s.to_ascii_lowercase();
        if let Some((_, name, mib)) = GPUS.iter().find(|(k, _, _)| *k == lower) {
            return Ok(Device {
                name: (*name).into(),
                bytes: mib << 20,
                gpu: true,
            });
        }
        if lower == "cpu" {
            let bytes = ardpipe_models::runtime::machine_memory_bytes()
                .ok_or("cannot read this machine's memory from /proc/meminfo")?;
            return Ok(Device {
                name: "this machine's memory".into(),
                bytes,
                gpu: false,
            });
        }
        let size = parse_size(&lower).ok_or_else(|| {
            format!(
                "unknown device `{s}`: name one of {}, `cpu`, or give a size such as `24GiB`",
                GPUS.iter()
                    .map(|(k, _, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        Ok(Device {
            name: s.into(),
            bytes: size,
            gpu: true,
        })
    }
}

/// `24GiB`, `80GB`, `512MiB` in bytes.
fn parse_size(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "gib" | "g" => (1u64 << 30) as f64,
        "gb" => 1e9,
        "mib" | "m" => (1u64 << 20) as f64,
        "mb" => 1e6,
        "tib" => (1u64 << 40) as f64,
        "tb" => 1e12,
        _ => return None,
    };
    (n > 0.0).then_some((n * mult) as u64)
}

/// The plan's run on `device` with `processes` data-parallel processes.
pub fn fit(plan: &ExecutionPlan, device: Device, processes: u32) -> Result<Fit, String> {
    let s = &plan.settings;
    let desc = ardpipe_models::describe(&s.model.path).map_err(|e| e.to_string())?;
    let adapted: Vec<String> = plan
        .adapters
        .iter()
        .flat_map(|a| a.modules.iter().map(|m| m.path.clone()))
        .collect();
    let target = Target {
        gpu: device.gpu,
        processes,
    };
    let memory = estimate(
        &desc,
        s,
        &adapted,
        plan.trainable_max,
        &plan.training,
        target,
    );
    Ok(Fit {
        fits: memory.total <= device.bytes,
        device,
        processes,
        memory,
    })
}

/// Whether a run fits a device: the per-process estimate against its memory.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Fit {
    pub device: Device,
    pub processes: u32,
    pub memory: MemoryEstimate,
    pub fits: bool,
}

impl Fit {
    pub fn text(&self) -> String {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let each = if self.processes > 1 {
            format!(
                "{} processes, one per device, each holding the whole model and 1/{} of each batch",
                self.processes, self.processes
            )
        } else {
            "one process".into()
        };
        if self.fits {
            format!(
                "fits {} ({:.1} GiB): ~{:.1} GiB per process, {each}",
                self.device.name,
                gib(self.device.bytes),
                gib(self.memory.total)
            )
        } else {
            let mut levers = Vec::new();
            if !self.memory.base_storage.starts_with("int4") {
                levers.push("a smaller base (`model.quantize = int4`)");
            }
            if !self.memory.checkpointing {
                levers.push("`train.checkpointing = layers`");
            }
            levers.push("a smaller batch");
            format!(
                "does not fit {} ({:.1} GiB): ~{:.1} GiB per process, {each}; {} would need less",
                self.device.name,
                gib(self.device.bytes),
                gib(self.memory.total),
                levers.join(", ")
            )
        }
    }
}
