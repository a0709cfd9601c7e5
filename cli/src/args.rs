//! The command line. clap types stay in this crate; commands convert them into domain settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ardpipe",
    version,
    about = "Fine-tune foundation models with ARD-LoRA from a pipeline file",
    long_about = "Fine-tune foundation models with ARD-LoRA (adaptive per-head LoRA ranks learned \
                  through continuous scaling factors, kept small by an l1 term and smooth by a \
                  total-variation term) and its baselines, from a pipeline file kept in Git.",
    after_help = "Exit codes: 0 success, 1 failure (bad input or a failed run), 2 bad command line, \
                  3 environment not ready (see `ardpipe doctor`), 130 / 143 a run stopped by \
                  SIGINT / SIGTERM after writing a checkpoint (continue it with `run --resume`), \
                  141 output closed early (SIGPIPE, e.g. `| head`)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides both -v and -q.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q warnings only, -qq errors only); plain progress lines.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// When to use colour in diagnostics and logs.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, env = "ARDPIPE_COLOR")]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    Yaml,
}

/// `--set path.to.key=value` overrides, checked like file content.
#[derive(Debug, Args, Clone, Default)]
pub struct Overrides {
    /// Override a pipeline value, e.g. `--set train.steps=100` (repeatable). A relative path is
    /// relative to the pipeline file, like one written in it.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline: train, evaluate and export into a run directory.
    Run {
        /// The pipeline file (.ard).
        file: Option<PathBuf>,
        /// Continue a killed or stopped run from its last checkpoint (with FILE: refuse if the
        /// pipeline changed in a way that would change the result). Refuses a run that trained
        /// but has no usable checkpoint left, listing what it found.
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// With --resume: when the run has no usable checkpoint, train it again from step 0
        /// instead of refusing (a usable checkpoint is always continued).
        #[arg(long, requires = "resume")]
        restart: bool,
        /// Run only this variant of a pipeline with `variant` blocks (default: all, in order).
        #[arg(long, value_name = "NAME")]
        variant: Option<String>,
        /// Train with N data-parallel worker processes on this machine (c10d: Gloo on CPU,
        /// NCCL on CUDA), at the pipeline's global batch. Under torchrun, srun or another
        /// launcher that sets RANK and WORLD_SIZE, leave it out. See docs/DISTRIBUTED.md.
        #[arg(long, value_name = "N")]
        nproc: Option<usize>,
        /// libtorch intra-op threads (default: libtorch's choice, OMP_NUM_THREADS or all
        /// cores). On CPU, `--threads 1` makes reruns and resumes bit-for-bit reproducible;
        /// libtorch's multi-threaded kernels occasionally round differently from run to run.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        threads: Option<i32>,
        /// Also evaluate the validation split at the end when the pipeline evaluates another
        /// split (say test), into summary.json's `validation_eval`: what `ardpipe study` selects
        /// settings on, so that the test split is only reported.
        #[arg(long)]
        validate: bool,
        /// `json`: the run's events (start, each logged step, each evaluation, checkpoints,
        /// exports, the end with its status) as one JSON object per line on stdout; the log
        /// and progress stay on stderr.
        #[arg(long, value_enum, default_value_t, value_name = "FORMAT")]
        log_format: crate::output::LogFormat,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Check pipeline files and report every problem at once.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Diagnostics as text (default) or JSON for editors and CI.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Serve the language server on stdin/stdout for editors: the checker's diagnostics,
    /// completion, hover, formatting and go to definition for .ard files.
    Lsp,
    /// Format pipeline files canonically (keeps comments).
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only report files that are not formatted; change nothing.
        #[arg(long)]
        check: bool,
    },
    /// Print the execution plan: resolved targets, parameter counts, memory, schedules.
    Plan {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Print the checked pipeline (imports, defaults, overrides and variants resolved)
        /// instead of the plan; nothing is read but the pipeline files.
        #[arg(long)]
        resolved: bool,
        /// Plan only this variant (default: all).
        #[arg(long, value_name = "NAME")]
        variant: Option<String>,
        /// Say whether a training process fits this device: a GPU by name (h100, h200,
        /// a100-80, a100-40, l40s, a10g, l4, rtx4090, t4), `cpu` (this machine's memory) or a
        /// size such as `24GiB`.
        #[arg(long, value_name = "DEVICE")]
        fit: Option<String>,
        /// With --fit: data-parallel processes, one per device, splitting each batch.
        #[arg(long, value_name = "N", requires = "fit", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..))]
        nproc: u32,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// List the runs under a folder: status, method, steps, best evaluation, exported
    /// parameters, wall time.
    Runs {
        /// The folder holding run directories (default: `runs`; with --pipeline, the folder the
        /// pipeline's output.dir writes into).
        dir: Option<PathBuf>,
        /// Only the runs made from some version of this pipeline file: its committed versions
        /// (renames followed) and its working copy, matched by Git blob id (docs/GIT.md).
        #[arg(long, value_name = "FILE")]
        pipeline: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
    },
    /// Compare runs side by side: final and best evaluation, training loss, parameters, the
    /// settings that differ, mean rank per module and layer.
    Compare {
        #[arg(required = true, num_args = 2.., value_name = "RUN")]
        runs: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
    },
    /// Compare two pipelines as resolved (imports, variables, defaults), then their plans:
    /// modules, ranks, trainable parameters, steps. OLD and NEW are files or `REV:path` (Git).
    Diff {
        #[arg(required_unless_present = "textconv", value_name = "OLD")]
        old: Option<String>,
        #[arg(required_unless_present = "textconv", value_name = "NEW")]
        new: Option<String>,
        /// Print FILE's resolved pipeline as `key = value` lines, for Git's textconv
        /// (`git config diff.ard.textconv "ardpipe diff --textconv"`; docs/GIT.md).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["old", "new"])]
        textconv: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
    },
    /// Upgrade a pipeline file to the current language version (prints the result; --write
    /// rewrites the file).
    Migrate {
        file: PathBuf,
        #[arg(long)]
        write: bool,
    },
    /// Print the JSON Schema of the pipeline, the plan or the run manifest.
    Schema {
        #[arg(value_enum, default_value_t = SchemaKind::Pipeline)]
        kind: SchemaKind,
    },
    /// Inspect a model (architecture, parameters, adaptable modules and heads) or a run.
    Inspect {
        #[command(subcommand)]
        what: InspectWhat,
    },
    /// Generate text with a causal LM, optionally with a trained adapter.
    Generate(GenerateArgs),
    /// Classify texts with a sequence-classification model or a fine-tuned run.
    Classify(ClassifyArgs),
    /// Embed texts with an encoder (masked mean pooling, L2-normalised).
    Embed(EmbedArgs),
    /// Merge a trained adapter into its base model and write a complete Hugging Face folder
    /// (config.json, tokenizer files, safetensors) that transformers loads with from_pretrained.
    Merge(MergeArgs),
    /// Compose a vision-language model (PaliGemma layout) from a pretrained decoder and a new
    /// SigLIP vision tower and projector (random, seeded), LLaVA-style; transformers'
    /// PaliGemmaForConditionalGeneration loads the folder too.
    Compose(ComposeArgs),
    /// Check this installation: libtorch, threads, CUDA, example assets.
    Doctor {
        /// Re-hash every example asset file instead of trusting set-up's stamp.
        #[arg(long)]
        deep: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Look at a pipeline's data as the model will see it (no weights are loaded).
    Data {
        #[command(subcommand)]
        what: DataCommand,
    },
    /// Work with data-loader and metric plugins.
    Plugin {
        #[command(subcommand)]
        what: PluginCommand,
    },
    /// Measure training step speed and memory side by side with Python transformers + peft.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Run the method comparison study (ARD-LoRA against the baselines) over several seeds and
    /// write the results report.
    Study(StudyArgs),
    /// Write a commented pipeline for a model and task that check, plan and run accept as written.
    New(NewArgs),
    /// Print a completion script for bash, zsh, fish, elvish or PowerShell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per subcommand into --out.
    Man {
        /// Write ardpipe.1 and ardpipe-SUBCOMMAND.1 pages into this folder.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The pipeline file to write (.ard); an existing one is refused unless --force.
    pub file: PathBuf,
    /// The model: a Hugging Face folder, a .gguf file or hf:ORG/NAME (from the local cache).
    #[arg(long)]
    pub model: PathBuf,
    /// What to train it for (default: causal_lm for a decoder, classification for an encoder,
    /// vqa for a vision-language model).
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// Replace FILE when it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    /// Sequence classification (the health-tweets example data).
    Classification,
    /// Causal language modelling (the Shakespeare example data).
    #[value(name = "causal_lm")]
    CausalLm,
    /// Instruction tuning on conversations (the ChatterBot example data).
    Instruct,
    /// Visual question answering (the easy-VQA example data).
    Vqa,
}

#[derive(Debug, Args)]
pub struct StudyArgs {
    /// Study pipelines: every variant of each runs once per seed (default: pipelines/study/*.ard).
    pub files: Vec<PathBuf>,
    /// Seeds per variant (default 3; 1 with --quick).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// A smoke-sized study: one seed and a few training steps per run (what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Only these variants (repeatable; default: all).
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Where the runs go (default: runs/study, or runs/study-quick with --quick).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The results report to write (default: docs/RESULTS.md, or OUT/RESULTS.md with --quick).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// libtorch intra-op threads for every run (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Learning-rate factors to try per variant, e.g. `0.5,1,2` (each run gets
    /// `--set train.lr_scale=F`); per variant the factor with the best validation score is
    /// chosen, and only its test scores are reported (default: the pipeline's own rate).
    #[arg(long = "lr-grid", value_name = "F,F,…", value_delimiter = ',')]
    pub lr_grid: Vec<f64>,
    /// Override a pipeline value in every run, as in `ardpipe run` (repeatable).
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// The first examples of a split as the model will see them: the split sizes, how
    /// examples become rows, and per example its source (file:line), its length in tokens and
    /// its tokens decoded with the model's tokenizer and chat template (no weights are read).
    #[command(
        after_help = "Marks: on a terminal, masked (no-loss) tokens are dimmed; otherwise \
                            (a pipe, a file, or --color never) the tokens the loss trains on are \
                            written between [[ and ]] and masked tokens as they are. Packed rows \
                            list their examples (segments 1, 2, ...) one by one. The training \
                            split is shown in the first epoch's seeded order, an evaluation split \
                            in its own. --format json gives the ids, decoded pieces, loss mask, \
                            segments and lengths."
    )]
    Preview(DataPreviewArgs),
}

#[derive(Debug, Args)]
pub struct DataPreviewArgs {
    /// The pipeline file (.ard).
    pub file: PathBuf,
    /// The split to show; `eval`: the one the pipeline's `evaluate` block reads.
    #[arg(long, value_enum, default_value_t = PreviewSplitArg::Train)]
    pub split: PreviewSplitArg,
    /// How many examples (and packed rows or blocks) to show.
    #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 3)]
    pub count: usize,
    /// Preview this variant's data (default: the first run of the pipeline).
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// Text, or JSON (ids, decoded pieces, loss mask, segments, lengths).
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    pub format: TextOrJson,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PreviewSplitArg {
    Train,
    Validation,
    Test,
    Eval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TextOrJson {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaKind {
    Pipeline,
    Plan,
    Manifest,
}

#[derive(Debug, Subcommand)]
pub enum InspectWhat {
    /// A model folder (config.json + safetensors) or a GGUF file.
    Model {
        path: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// A run directory: manifest, status, last evaluation, checkpoints, export.
    Run {
        path: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show a plugin's name, version, ABI, capabilities and options.
    Inspect { path: PathBuf },
}

/// Where a model runs and in which precision.
#[derive(Debug, Args, Clone)]
pub struct Compute {
    /// cpu, cuda or cuda:N (cuda needs the GPU install: `python3 scripts/setup.py --gpu`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, or bf16 (bf16 weights with bf16 autocast).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DtypeArg {
    F32,
    Bf16,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model folder or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// A trained adapter (run directory or PEFT adapter folder).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The text to continue; with --image, the question about the image.
    #[arg(long)]
    pub prompt: String,
    /// The image a vision-language model (PaliGemma) answers the prompt about (PNG or JPEG);
    /// such a model needs one, a text-only model takes none.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Wrap the prompt in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// 0 means greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub compute: Compute,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Encoder folder (config.json + model.safetensors + tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// A trained adapter (run directory or PEFT adapter folder).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Number of classes when the model has no classifier of its own (a new, untrained head).
    #[arg(long)]
    pub num_labels: Option<usize>,
    /// Seed of a new classifier head.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub compute: Compute,
    /// Texts to classify (one per argument).
    #[arg(required = true)]
    pub texts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// text: first dimensions and the cosine matrix; json: full vectors.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub compute: Compute,
    #[arg(required = true)]
    pub texts: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Timed training steps of SmolLM2 and MiniLM (LoRA, ARD-LoRA or full), f32 and bf16. The
    /// side-by-side table with Python transformers + peft comes from
    /// `python3 scripts/bench_models.py`, which runs this for the Rust side.
    Models(BenchModelsArgs),
    /// This machine's peak GEMM throughput through libtorch (square matmuls, f32 or bf16).
    Matmul(BenchMatmulArgs),
    /// Data-parallel scaling: training steps/s of one pipeline on 1 and on N local workers at
    /// the same global batch (CPU: Gloo, one thread per worker by default; CUDA: NCCL, one GPU
    /// per worker), alternating, and the scaling efficiency.
    Distributed(BenchDistributedArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BenchMethodArg {
    /// Every weight gets a gradient (forward + backward, no optimiser).
    Full,
    /// LoRA on the attention modules (SmolLM2: q,k,v,o; MiniLM: query,value) + AdamW.
    Lora,
    /// ARD-LoRA on the same modules, r0 = --rank per head, with its regulariser and α optimiser.
    #[value(name = "ard_lora")]
    ArdLora,
}

/// `ardpipe bench models --quantize`: how the adaptable linears of the frozen base are stored.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BenchQuantArg {
    /// Symmetric int8, one scale per output channel.
    Int8,
    /// Symmetric 4-bit, one scale per group of 64 input columns.
    Int4,
}

#[derive(Debug, Args)]
pub struct BenchModelsArgs {
    /// smollm2 or minilm.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Compute dtype: f32, or bf16 autocast (bf16 matmuls).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// The frozen base's storage: f32 (the default, as the peer loads it) or bf16 (cast once at
    /// load; the adapters stay f32). bf16 needs --dtype bf16.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub base: DtypeArg,
    /// Store the adaptable linears quantised (int8 per channel, int4 in groups of 32),
    /// dequantised on the fly under the chosen --dtype.
    #[arg(long, value_enum)]
    pub quantize: Option<BenchQuantArg>,
    /// SmolLM2 only: recompute each decoder layer in the backward pass (layer checkpointing).
    #[arg(long)]
    pub checkpointing: bool,
    /// What trains: full (the default), lora or ard_lora.
    #[arg(long, value_enum, default_value_t = BenchMethodArg::Full)]
    pub method: BenchMethodArg,
    /// LoRA rank per module; ARD-LoRA's r0 (its maximum rank per head).
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// With --method lora: rank × the module's heads per module (ARD-LoRA's maximum rank per
    /// module at r0 = --rank).
    #[arg(long)]
    pub per_head: bool,
    /// With --method ard_lora: let ranks fall to a fixed pattern (2, 3, 4 of r0 = 8 cycling over
    /// heads and layers) and compact the adapters before timing.
    #[arg(long)]
    pub compacted: bool,
    /// Record the timed steps' operators with libtorch's profiler and write a Chrome trace here
    /// (what scripts/bench_models.py --profile reads; the profiler slows the steps).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Write the batch (token ids) and, for SmolLM2, the dequantised weights as a Hugging Face
    /// folder here, so the Python peer runs the very same model on the very same tokens.
    #[arg(long, value_name = "DIR")]
    pub prepare: Option<PathBuf>,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchDistributedArgs {
    /// The pipeline to train (evaluated and checkpointed once, after the timed steps).
    #[arg(long, default_value = "pipelines/quickstart.ard")]
    pub pipeline: PathBuf,
    /// Worker counts to compare (repeatable; default 1 and 2).
    #[arg(long = "nproc", value_name = "N")]
    pub nproc: Vec<usize>,
    /// Training steps per run.
    #[arg(long, default_value_t = 20)]
    pub steps: u32,
    /// Rounds; each runs every worker count once, in alternating order.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// libtorch threads per worker.
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
    /// Where the runs go (default: a temporary folder, removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the table as Markdown, with the machine it ran on, to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Override a pipeline value in every run, e.g. `--set model.device=cuda` (repeatable).
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Debug, Args)]
pub struct BenchMatmulArgs {
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Seconds of timing per matrix size.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// The decoder: any causal LM ardpipe loads (GGUF file or Hugging Face folder).
    #[arg(long)]
    pub decoder: PathBuf,
    /// The folder to write; it must not exist (unless --force). Written whole or not at all.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace --out when it exists.
    #[arg(long)]
    pub force: bool,
    /// Seed of the tower's and projector's initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Side of the (square) images the tower reads, in pixels.
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    /// Side of a patch in pixels: (image_size / patch_size)² image tokens.
    #[arg(long, default_value_t = 14)]
    pub patch_size: usize,
    /// The tower's width.
    #[arg(long, default_value_t = 384)]
    pub hidden_size: usize,
    /// The tower's MLP width.
    #[arg(long, default_value_t = 1536)]
    pub intermediate_size: usize,
    /// The tower's layers.
    #[arg(long, default_value_t = 6)]
    pub layers: usize,
    /// The tower's attention heads.
    #[arg(long, default_value_t = 6)]
    pub heads: usize,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// A run directory (its exported adapter/) or a PEFT adapter folder (LoRA, DoRA, AdaLoRA).
    pub adapter: PathBuf,
    /// The base model (folder or GGUF file). Default for a run directory: the run's own base
    /// model; a PEFT adapter folder needs it.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The folder to write; it must not exist (unless --force). Written as OUT.partial, then
    /// renamed: it appears whole or not at all.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace --out when it exists.
    #[arg(long)]
    pub force: bool,
    /// Largest safetensors file; above it the weights are split into
    /// model-0000N-of-0000M.safetensors with model.safetensors.index.json, as transformers
    /// does. Bytes, or with a unit as transformers writes them: 5GB (10^9), 500MB, 2GiB (2^30).
    #[arg(long, value_name = "SIZE", default_value = "5GB", value_parser = parse_size)]
    pub max_shard_size: u64,
    /// The weights' dtype. base: the base model's (a Hugging Face folder's safetensors dtype;
    /// f32 for a GGUF file, whose dequantised values f16 and bf16 cannot hold exactly).
    #[arg(long, value_enum, default_value_t = MergeDtype::Base)]
    pub dtype: MergeDtype,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MergeDtype {
    Base,
    F32,
    F16,
    Bf16,
}

/// A size as transformers' `max_shard_size` takes it: an integer number of bytes, or a number
/// with KB/MB/GB (powers of 10) or KiB/MiB/GiB (powers of 2).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` (use B, KB, MB, GB, KiB, MiB or GiB, e.g. 5GB)"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 5GB, 500MB, 1048576)"))?;
    let bytes = (n * mult).floor();
    if !(1.0..1e18).contains(&bytes) {
        return Err(format!("`{s}`: a shard size is at least one byte"));
    }
    Ok(bytes as u64)
}
