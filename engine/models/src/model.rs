//! Entry points: find what a path holds, describe it without reading tensors (for the
//! planner and `inspect`), and load it onto a device in a precision.

use std::path::{Path, PathBuf};

use ardpipe_data::image::ImageProcessor;
use serde::Serialize;
use tch::Device;

use crate::arch::config::{ArchConfig, EncoderFamily, ModuleSpec};
use crate::arch::paligemma::PaliGemmaNames;
use crate::arch::{
    Bert, DecoderClassifier, EncoderHead, Llama, LlamaConfig, PaliGemma, PaliGemmaConfig,
};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::gguf::llama::{GgufSource, llama_config};
use crate::hf::config::read_config;
use crate::hf::safetensors::SafetensorsSource;
use crate::precision::Precision;
use crate::report::LoadReport;
use crate::weights::{TensorSource, WeightLoader};
use ardpipe_adapters::ops::QuantScheme;

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "format", content = "path", rename_all = "snake_case")]
pub enum ModelLocation {
    /// A single GGUF file (weights, config and tokenizer inside).
    Gguf(PathBuf),
    /// A Hugging Face folder: config.json, safetensors, tokenizer.json.
    HfFolder(PathBuf),
}

impl ModelLocation {
    pub fn path(&self) -> &Path {
        match self {
            ModelLocation::Gguf(p) | ModelLocation::HfFolder(p) => p,
        }
    }

    /// Decide from the path: a `.gguf` file (or any file starting with the GGUF magic), or a
    /// folder with config.json.
    pub fn detect(path: &Path) -> Result<Self> {
        // `hf:ORG/NAME`: the snapshot in the local Hugging Face cache, then as any folder.
        if let Some(snapshot) = crate::hf::hub_cache::resolve_path(path)? {
            return Self::detect(&snapshot);
        }
        let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
        if meta.is_dir() {
            if path.join("config.json").exists() {
                return Ok(Self::HfFolder(path.to_path_buf()));
            }
            let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| ModelError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            return match ggufs.as_slice() {
                [one] => Ok(Self::Gguf(one.clone())),
                [] => Err(ModelError::format(
                    path,
                    "not a model folder: no config.json (Hugging Face layout) and no .gguf file",
                )),
                many => Err(ModelError::format(
                    path,
                    format!("{} .gguf files here: name the one to use", many.len()),
                )),
            };
        }
        let mut magic = [0u8; 4];
        use std::io::Read;
        let read = std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok();
        if read && &magic == b"GGUF" {
            return Ok(Self::Gguf(path.to_path_buf()));
        }
        if path.file_name().is_some_and(|n| n == "config.json")
            && let Some(dir) = path.parent()
        {
            return Ok(Self::HfFolder(dir.to_path_buf()));
        }
        Err(ModelError::format(
            path,
            "not a model: expected a GGUF file or a Hugging Face folder (config.json + model.safetensors)",
        ))
    }
}

/// What the planner and `inspect` need, read from config.json or GGUF metadata only.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDescription {
    pub location: ModelLocation,
    pub config: ArchConfig,
    /// Parameters of the base model (embeddings, layers, norms, LM head when untied).
    pub parameters: usize,
    /// GGUF tensor storage types and their counts, e.g. `Q4_1: 210`.
    pub storage: Vec<(String, usize)>,
    /// Every linear an adapter may target, with shapes and head layouts.
    pub modules: Vec<ModuleSpec>,
}

/// Describe a model without reading tensor data. Encoders are described as the bare encoder
/// (module paths without `bert.`); [`Bert`] with a classification head prefixes them.
pub fn describe(path: &Path) -> Result<ModelDescription> {
    let location = ModelLocation::detect(path)?;
    let (config, storage) = match &location {
        ModelLocation::Gguf(p) => {
            let g = GgufFile::open(p)?;
            let mut counts = std::collections::BTreeMap::<String, usize>::new();
            for t in &g.tensors {
                *counts
                    .entry(crate::gguf::dequant::ggml_type_name(t.ty).to_string())
                    .or_default() += 1;
            }
            (
                ArchConfig::Llama(llama_config(&g)?),
                counts.into_iter().collect(),
            )
        }
        ModelLocation::HfFolder(dir) => (read_config(&dir.join("config.json"))?, vec![]),
    };
    let modules = match &config {
        ArchConfig::Llama(c) => c.modules(),
        ArchConfig::Bert(c) => c.modules(""),
        ArchConfig::PaliGemma(c) => c.modules(),
    };
    Ok(ModelDescription {
        parameters: config.parameter_count(),
        location,
        config,
        storage,
        modules,
    })
}

/// Where and how to load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    pub device: Device,
    pub precision: Precision,
    /// Store adaptable linears' weights quantised (`model.quantize`).
    pub quantize: Option<QuantScheme>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            precision: Precision::F32,
            quantize: None,
        }
    }
}

/// A loaded causal LM and the report of its load.
pub struct LoadedLm {
    pub model: Llama,
    pub location: ModelLocation,
    pub report: LoadReport,
}

/// A decoder's config and tensors, from a GGUF file or a Hugging Face folder.
fn decoder_source(location: &ModelLocation) -> Result<(LlamaConfig, Box<dyn TensorSource>)> {
    Ok(match location {
        ModelLocation::Gguf(p) => {
            let g = GgufFile::open(p)?;
            let cfg = llama_config(&g)?;
            let src = GgufSource::new(g, &cfg);
            (cfg, Box::new(src))
        }
        ModelLocation::HfFolder(dir) => match read_config(&dir.join("config.json"))? {
            ArchConfig::Llama(c) => (c, Box::new(SafetensorsSource::open_dir(dir)?)),
            ArchConfig::PaliGemma(_) => {
                return Err(ModelError::config(
                    dir.join("config.json"),
                    "this is a vision-language model (PaliGemma): it reads an image with its \
                     prompt; train it with a dataset that maps `image`, or generate with --image",
                ));
            }
            other => {
                return Err(ModelError::config(
                    dir.join("config.json"),
                    format!(
                        "this is a {} encoder, not a causal LM: use it with classify or embed",
                        other.name()
                    ),
                ));
            }
        },
    })
}

/// Load a Llama-family causal LM from a GGUF file or a Hugging Face folder.
pub fn load_causal_lm(path: &Path, opts: &LoadOptions) -> Result<LoadedLm> {
    opts.precision.validate()?;
    let location = ModelLocation::detect(path)?;
    let (config, source) = decoder_source(&location)?;
    let _g = tch::no_grad_guard();
    // Every name and shape is checked against the config before any data is read.
    let mut check = WeightLoader::shapes_only(source.as_ref(), "llama");
    Llama::load(config.clone(), &mut check, Device::Cpu, opts.precision)?;
    check.finish(&[])?;
    let mut w = WeightLoader::new(
        source.as_ref(),
        "llama",
        opts.device,
        opts.precision.storage.kind(),
    )
    .quantizing(opts.quantize);
    let model = Llama::load(config, &mut w, opts.device, opts.precision)?;
    let report = w.finish(&[])?;
    Ok(LoadedLm {
        model,
        location,
        report,
    })
}

pub struct LoadedEncoder {
    pub model: Bert,
    pub location: ModelLocation,
    pub report: LoadReport,
}

/// Load a BERT-family encoder (BERT, RoBERTa, XLM-RoBERTa) from a Hugging Face folder with the
/// given head.
pub fn load_encoder(path: &Path, head: EncoderHead, opts: &LoadOptions) -> Result<LoadedEncoder> {
    opts.precision.validate()?;
    let location = ModelLocation::detect(path)?;
    let dir = match &location {
        ModelLocation::HfFolder(d) => d.clone(),
        ModelLocation::Gguf(p) => {
            return Err(ModelError::config(
                p,
                "GGUF files hold causal LMs here; encoders load from a Hugging Face folder (config.json + model.safetensors)",
            ));
        }
    };
    let config = match read_config(&dir.join("config.json"))? {
        ArchConfig::Bert(c) => c,
        other => {
            return Err(ModelError::config(
                dir.join("config.json"),
                format!(
                    "this is a {} causal LM, not an encoder: use it with generate",
                    other.name()
                ),
            ));
        }
    };
    let source = SafetensorsSource::open_dir(&dir)?;
    // A saved task model (`BertForSequenceClassification`, `RobertaForMaskedLM`, …) nests the
    // encoder under the family's prefix; a bare encoder has none.
    let family_prefix = config.family.prefix();
    let ckpt_prefix = if source
        .shape(&format!("{family_prefix}embeddings.word_embeddings.weight"))
        .is_some()
    {
        family_prefix
    } else {
        ""
    };
    // Pre-training heads (BERT's `cls.` masked LM / next sentence, RoBERTa's `lm_head.`) are
    // not used by ardpipe's heads.
    let mut unused_heads = vec![match config.family {
        EncoderFamily::Bert => "cls.",
        EncoderFamily::Roberta | EncoderFamily::XlmRoberta => "lm_head.",
    }];
    if head == EncoderHead::Embedding {
        // Nor does mean pooling use a fine-tuned classification head.
        unused_heads.push("classifier.");
    }
    let _g = tch::no_grad_guard();
    // Every name and shape is checked against the config before any data is read.
    let mut check = WeightLoader::shapes_only(&source, "bert");
    Bert::load(
        config.clone(),
        head,
        ckpt_prefix,
        &mut check,
        Device::Cpu,
        opts.precision,
    )?;
    check.finish(&unused_heads)?;
    let mut w = WeightLoader::new(&source, "bert", opts.device, opts.precision.storage.kind())
        .quantizing(opts.quantize);
    let model = Bert::load(
        config,
        head,
        ckpt_prefix,
        &mut w,
        opts.device,
        opts.precision,
    )?;
    let report = w.finish(&unused_heads)?;
    Ok(LoadedEncoder {
        model,
        location,
        report,
    })
}

/// A decoder with a sequence-classification head and the report of its load.
pub struct LoadedDecoderClassifier {
    pub model: DecoderClassifier,
    pub location: ModelLocation,
    pub report: LoadReport,
}

/// What transformers' `*ForSequenceClassification` reads from a decoder's config.json beyond
/// the decoder itself.
#[derive(serde::Deserialize)]
struct SeqClsFields {
    #[serde(default)]
    pad_token_id: Option<i64>,
    #[serde(default)]
    initializer_range: Option<f64>,
    #[serde(default)]
    text_config: Option<Box<SeqClsFields>>,
}

/// `pad_token_id` (required: the head looks for each row's last token that is not padding)
/// and `initializer_range` (for a new `score`; transformers' default 0.02).
pub fn seq_cls_fields(location: &ModelLocation) -> Result<(i64, f64)> {
    let missing = |path: &Path, fix: &str| {
        ModelError::config(
            path,
            format!(
                "no pad_token_id: a decoder's sequence-classification head takes each row's last \
                 token that is not padding (as transformers' *ForSequenceClassification does), so it \
                 needs the padding id; {fix}"
            ),
        )
    };
    match location {
        ModelLocation::Gguf(p) => {
            let g = GgufFile::open(p)?;
            let pad = g
                .get("tokenizer.ggml.padding_token_id")
                .and_then(crate::gguf::Value::as_u64)
                .ok_or_else(|| {
                    missing(
                        p,
                        "this GGUF has no tokenizer.ggml.padding_token_id (convert the model with one)",
                    )
                })?;
            Ok((pad as i64, 0.02))
        }
        ModelLocation::HfFolder(dir) => {
            let path = dir.join("config.json");
            let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
            let f: SeqClsFields = serde_json::from_str(&text)
                .map_err(|e| ModelError::config(&path, format!("not a valid config.json: {e}")))?;
            let inner = f.text_config.as_deref();
            let pad = f
                .pad_token_id
                .or_else(|| inner.and_then(|t| t.pad_token_id))
                .ok_or_else(|| {
                    missing(
                        &path,
                        "set `pad_token_id` in config.json (the tokenizer's padding id, often its \
                         end-of-sequence id)",
                    )
                })?;
            let range = f
                .initializer_range
                .or_else(|| inner.and_then(|t| t.initializer_range))
                .unwrap_or(0.02);
            Ok((pad, range))
        }
    }
}

/// Load any decoder ardpipe builds (GGUF or Hugging Face folder) with transformers'
/// sequence-classification head: `score` (no bias) on each row's last non-padding token. A
/// checkpoint saved by `*ForSequenceClassification` with `num_labels` rows brings its `score`;
/// otherwise a new one is initialised as transformers does (normal(0, initializer_range)).
pub fn load_decoder_classifier(
    path: &Path,
    num_labels: usize,
    seed: u64,
    opts: &LoadOptions,
) -> Result<LoadedDecoderClassifier> {
    opts.precision.validate()?;
    let location = ModelLocation::detect(path)?;
    let (pad_token_id, initializer_range) = seq_cls_fields(&location)?;
    let (config, source) = decoder_source(&location)?;
    if pad_token_id < 0 || pad_token_id as u64 >= config.vocab_size as u64 {
        return Err(ModelError::config(
            location.path(),
            format!(
                "pad_token_id {pad_token_id} is outside the vocabulary of {}",
                config.vocab_size
            ),
        ));
    }
    // `*ForSequenceClassification` has no LM head: loaded as tied, an untied checkpoint's
    // `lm_head.weight` is skipped (unused) and a classification checkpoint needs none.
    let load_config = LlamaConfig {
        tie_word_embeddings: true,
        ..config.clone()
    };
    let d = config.hidden_size as i64;
    let score_shape = [num_labels as i64, d];
    let _g = tch::no_grad_guard();
    let build =
        |w: &mut WeightLoader<'_>, device: Device| -> Result<(Llama, Option<tch::Tensor>)> {
            let model = Llama::load(load_config.clone(), w, device, opts.precision)?;
            let score = if w.shape_of("score.weight").as_deref() == Some(&score_shape[..]) {
                Some(w.f32("score.weight", &score_shape)?)
            } else {
                w.ignore("score.weight");
                None
            };
            Ok((model, score))
        };
    // Every name and shape is checked against the config before any data is read.
    let mut check = WeightLoader::shapes_only(source.as_ref(), "llama");
    build(&mut check, Device::Cpu)?;
    check.finish(&[])?;
    let mut w = WeightLoader::new(
        source.as_ref(),
        "llama",
        opts.device,
        opts.precision.storage.kind(),
    )
    .quantizing(opts.quantize);
    let (mut llama, score) = build(&mut w, opts.device)?;
    let report = w.finish(&[])?;
    llama.config.tie_word_embeddings = config.tie_word_embeddings;
    let model = DecoderClassifier::new(
        llama,
        num_labels,
        score,
        pad_token_id,
        initializer_range,
        seed,
    )?;
    Ok(LoadedDecoderClassifier {
        model,
        location,
        report,
    })
}

/// The image processor of a vision-language model folder: its preprocessor_config.json, else
/// SigLIP's at the tower's size (PaliGemma's processor). It must make the images the tower
/// reads. Training and `generate --image` both take it from here.
pub fn vision_processor(path: &Path, config: &PaliGemmaConfig) -> Result<ImageProcessor> {
    let location = ModelLocation::detect(path)?;
    let file = location.path().join("preprocessor_config.json");
    let size = config.vision.image_size;
    if !file.is_file() {
        return Ok(ImageProcessor::siglip(size));
    }
    let p = ImageProcessor::from_config(&file).map_err(|e| {
        let help = e.help.map(|h| format!(" ({h})")).unwrap_or_default();
        ModelError::config(&file, format!("{}{help}", e.message))
    })?;
    if p.size != Some((size, size)) {
        return Err(ModelError::config(
            &file,
            format!(
                "the processor makes {:?} images, but the vision tower reads {size}×{size}: make \
                 its size the vision tower's image_size",
                p.size
            ),
        ));
    }
    Ok(p)
}

/// A loaded vision-language model and the report of its load.
pub struct LoadedVisionLm {
    pub model: PaliGemma,
    pub location: ModelLocation,
    pub report: LoadReport,
}

/// Load a PaliGemma-layout vision-language model from a Hugging Face folder (single or sharded
/// safetensors, in transformers 4's or 5's tensor names).
pub fn load_vision_lm(path: &Path, opts: &LoadOptions) -> Result<LoadedVisionLm> {
    opts.precision.validate()?;
    let location = ModelLocation::detect(path)?;
    let dir = match &location {
        ModelLocation::HfFolder(d) => d.clone(),
        ModelLocation::Gguf(p) => {
            return Err(ModelError::config(
                p,
                "a GGUF file holds a text model; a vision-language model loads from a Hugging \
                 Face folder (config.json with model_type paligemma + safetensors)",
            ));
        }
    };
    let config = match read_config(&dir.join("config.json"))? {
        ArchConfig::PaliGemma(c) => *c,
        other => {
            return Err(ModelError::config(
                dir.join("config.json"),
                format!(
                    "this is a {} model, not a vision-language model (model_type paligemma): \
                     it reads no image",
                    other.name()
                ),
            ));
        }
    };
    let file = SafetensorsSource::open_dir(&dir)?;
    let source = PaliGemmaNames::new(&file);
    let _g = tch::no_grad_guard();
    // Every name and shape is checked against the config before any data is read.
    let mut check = WeightLoader::shapes_only(&source, "paligemma");
    PaliGemma::load(config.clone(), &mut check, Device::Cpu, opts.precision)?;
    check.finish(PaliGemma::UNUSED)?;
    let mut w = WeightLoader::new(
        &source,
        "paligemma",
        opts.device,
        opts.precision.storage.kind(),
    )
    .quantizing(opts.quantize);
    let model = PaliGemma::load(config, &mut w, opts.device, opts.precision)?;
    let report = w.finish(PaliGemma::UNUSED)?;
    Ok(LoadedVisionLm {
        model,
        location,
        report,
    })
}
