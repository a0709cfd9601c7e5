//! Write a model as a complete Hugging Face folder that transformers loads directly:
//! config.json, generation_config.json (where the base had one), the tokenizer files, and the
//! weights as safetensors in one dtype — `model.safetensors`, or, above the shard size,
//! `model-0000N-of-0000M.safetensors` with `model.safetensors.index.json`, split as
//! transformers' `save_pretrained` splits them.
//!
//! These functions fill a folder the caller gives them; making that folder appear whole or not
//! at all (written as a temp folder, then renamed) is the caller's (engine/core/src/rundir.rs
//! `write_dir_atomic`). [`save_llama`] is the plain f32 dump of a loaded Llama (a dequantised
//! GGUF for Python transformers to load).

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use tch::{Device, Kind, Tensor};

use crate::arch::Llama;
use crate::arch::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::gguf::llama::tokenizer_meta;
use crate::hf::safetensors::{INDEX, SINGLE, SafetensorsSource};
use crate::model::ModelLocation;
use crate::weights::TensorSource;

/// transformers' default `max_shard_size` ("5GB": 5·10⁹ bytes).
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// The floating-point dtype an exported folder stores its weights in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportDtype {
    F32,
    F16,
    Bf16,
}

impl ExportDtype {
    pub fn kind(self) -> Kind {
        match self {
            ExportDtype::F32 => Kind::Float,
            ExportDtype::F16 => Kind::Half,
            ExportDtype::Bf16 => Kind::BFloat16,
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            ExportDtype::F32 => Dtype::F32,
            ExportDtype::F16 => Dtype::F16,
            ExportDtype::Bf16 => Dtype::BF16,
        }
    }

    fn bytes(self) -> u64 {
        match self {
            ExportDtype::F32 => 4,
            ExportDtype::F16 | ExportDtype::Bf16 => 2,
        }
    }

    /// The name config.json gives it (transformers 5's `dtype`).
    pub fn torch_name(self) -> &'static str {
        match self {
            ExportDtype::F32 => "float32",
            ExportDtype::F16 => "float16",
            ExportDtype::Bf16 => "bfloat16",
        }
    }

    /// The dtype a base model's weights are stored in. A Hugging Face folder: the dtype of its
    /// floating-point tensors (one dtype, or the error names two that differ). A GGUF file:
    /// f32, because its quantised blocks dequantise to values (`d·q + m` with f16 `d`, `m`)
    /// that f16 and bf16 cannot hold exactly, and a merged adapter's update is not a multiple
    /// of any block scale either; f32 keeps both exact, at 4 bytes per parameter.
    pub fn of_base(location: &ModelLocation) -> Result<ExportDtype> {
        let dir = match location {
            ModelLocation::Gguf(_) => return Ok(ExportDtype::F32),
            ModelLocation::HfFolder(dir) => dir,
        };
        let src = SafetensorsSource::open_dir(dir)?;
        let mut found: Option<(Dtype, String)> = None;
        for name in src.names() {
            let Some(d) = src.dtype(&name) else { continue };
            if !matches!(d, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
                continue;
            }
            match &found {
                None => found = Some((d, name)),
                Some((first, first_name)) if *first != d => {
                    return Err(ModelError::format(
                        dir,
                        format!(
                            "the weights mix dtypes ({first_name} is {first:?}, {name} is {d:?}): \
                             choose the dtype of the merged folder with --dtype"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        match found {
            Some((Dtype::F16, _)) => Ok(ExportDtype::F16),
            Some((Dtype::BF16, _)) => Ok(ExportDtype::Bf16),
            // F64 checkpoints are written as f32, what ardpipe computes in.
            Some(_) => Ok(ExportDtype::F32),
            None => Err(ModelError::format(
                dir,
                "no floating-point weights in the safetensors files",
            )),
        }
    }
}

/// What [`write_weights`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenWeights {
    /// The safetensors files, in order.
    pub files: Vec<String>,
    /// Bytes of tensor data (the index's `metadata.total_size`).
    pub total_bytes: u64,
    pub tensors: usize,
    pub parameters: u64,
}

/// Shard file names as transformers writes them: `model-00001-of-00003.safetensors`.
fn shard_name(i: usize, n: usize) -> String {
    format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
}

/// Split tensors (in order) into shards of at most `max_bytes`, as huggingface_hub's
/// `split_torch_state_dict_into_shards` does: a tensor larger than the limit gets a shard of
/// its own; otherwise a new shard starts when the next tensor would pass the limit.
fn plan_shards(sizes: &[u64], max_bytes: u64) -> Vec<Vec<usize>> {
    let mut shards: Vec<Vec<usize>> = vec![];
    let mut current: Vec<usize> = vec![];
    let mut current_bytes = 0u64;
    for (i, &s) in sizes.iter().enumerate() {
        if s > max_bytes {
            shards.push(vec![i]);
            continue;
        }
        if !current.is_empty() && current_bytes + s > max_bytes {
            shards.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current.push(i);
        current_bytes += s;
    }
    if !current.is_empty() {
        shards.push(current);
    }
    shards
}

/// Write `tensors` (Hugging Face names) into `dir` as safetensors in `dtype`: one
/// `model.safetensors` when they fit in `max_shard_bytes`, else shards and their index. Each
/// shard is converted and written on its own, so memory holds one shard's bytes at a time.
pub fn write_weights(
    dir: &Path,
    tensors: &[(String, Tensor)],
    dtype: ExportDtype,
    max_shard_bytes: u64,
) -> Result<WrittenWeights> {
    if max_shard_bytes == 0 {
        return Err(ModelError::Usage(
            "the maximum shard size must be at least one byte".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (n, _) in tensors {
        if !seen.insert(n.as_str()) {
            return Err(ModelError::Usage(format!(
                "tensor `{n}` would be written twice"
            )));
        }
    }
    let sizes: Vec<u64> = tensors
        .iter()
        .map(|(_, t)| t.numel() as u64 * dtype.bytes())
        .collect();
    let shards = plan_shards(&sizes, max_shard_bytes);
    let n = shards.len();
    let mut files = vec![];
    let mut weight_map = serde_json::Map::new();
    let mut parameters = 0u64;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    for (i, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            SINGLE.to_string()
        } else {
            shard_name(i, n)
        };
        let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(shard.len());
        for &k in shard {
            let (name, t) = &tensors[k];
            let t = tch::no_grad(|| {
                t.detach()
                    .to_device(Device::Cpu)
                    .to_kind(dtype.kind())
                    .contiguous()
            });
            let numel = t.numel();
            let mut bytes = vec![0u8; sizes[k] as usize];
            t.f_copy_data_u8(&mut bytes, numel)?;
            let shape = t.size().iter().map(|&d| d as usize).collect();
            parameters += numel as u64;
            weight_map.insert(name.clone(), serde_json::Value::String(file.clone()));
            data.push((name.clone(), bytes, shape));
        }
        let views: Vec<(String, TensorView<'_>)> = data
            .iter()
            .map(|(n, b, s)| {
                TensorView::new(dtype.safetensors(), s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| ModelError::Usage(format!("cannot write tensor {n}: {e}")))
            })
            .collect::<Result<_>>()?;
        let path = dir.join(&file);
        safetensors::serialize_to_file(views, metadata.clone(), &path)
            .map_err(|e| ModelError::Usage(format!("cannot write {}: {e}", path.display())))?;
        // The safetensors crate writes through a private temporary file (mode 0600); a model
        // folder is meant to be shared like the rest of it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| ModelError::io(&path, e))?;
        }
        files.push(file);
    }
    let total_bytes: u64 = sizes.iter().sum();
    if n > 1 {
        let index = serde_json::json!({
            "metadata": {"total_size": total_bytes, "total_parameters": parameters},
            "weight_map": weight_map,
        });
        write_json(&dir.join(INDEX), &index)?;
    }
    Ok(WrittenWeights {
        files,
        total_bytes,
        tensors: tensors.len(),
        parameters,
    })
}

/// Pretty JSON with a final newline.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value serialises");
    text.push('\n');
    std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
}

/// A decoder's config.json: [`LlamaConfig::hf_config_json`] (transformers 5's layout, the
/// family's class and model_type) with the weights' dtype.
pub fn causal_lm_config(c: &LlamaConfig, dtype: ExportDtype) -> serde_json::Value {
    let mut j = c.hf_config_json();
    j["dtype"] = serde_json::json!(dtype.torch_name());
    j
}

/// `id2label` / `label2id` for class names in id order.
fn label_maps(labels: &[String]) -> (serde_json::Value, serde_json::Value) {
    let mut id2label = serde_json::Map::new();
    let mut label2id = serde_json::Map::new();
    for (i, l) in labels.iter().enumerate() {
        id2label.insert(i.to_string(), serde_json::json!(l));
        label2id.insert(l.clone(), serde_json::json!(i));
    }
    (id2label.into(), label2id.into())
}

/// A decoder classifier's config.json (transformers' `<Family>ForSequenceClassification`: the
/// decoder and a `score` head on the last token that is not `pad_token_id`).
pub fn decoder_classification_config(
    c: &LlamaConfig,
    labels: &[String],
    pad_token_id: i64,
    dtype: ExportDtype,
) -> serde_json::Value {
    let mut j = causal_lm_config(c, dtype);
    let class = match j["model_type"].as_str() {
        Some("gemma3_text") => "Gemma3TextForSequenceClassification".to_string(),
        _ => c
            .family
            .causal_lm_class()
            .replace("ForCausalLM", "ForSequenceClassification"),
    };
    let (id2label, label2id) = label_maps(labels);
    j["architectures"] = serde_json::json!([class]);
    j["id2label"] = id2label;
    j["label2id"] = label2id;
    j["pad_token_id"] = serde_json::json!(pad_token_id);
    j["problem_type"] = serde_json::json!("single_label_classification");
    j
}

/// A sequence classifier's config.json: the base encoder's own config.json (every key it has,
/// read by ardpipe or not) turned into `<Family>ForSequenceClassification` with the class
/// names as `id2label` / `label2id`.
pub fn sequence_classification_config(
    base_dir: &Path,
    labels: &[String],
    dtype: ExportDtype,
) -> Result<serde_json::Value> {
    let path = base_dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let mut v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::config(&path, format!("not JSON: {e}")))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| ModelError::config(&path, "config.json is not a JSON object"))?;
    let model_type = obj
        .get("model_type")
        .and_then(|m| m.as_str())
        .unwrap_or("bert")
        .to_string();
    let family = match model_type.as_str() {
        "bert" => "Bert",
        "roberta" => "Roberta",
        "xlm-roberta" => "XLMRoberta",
        "distilbert" => "DistilBert",
        other => {
            return Err(ModelError::config(
                &path,
                format!(
                    "model_type `{other}`: ardpipe writes sequence-classification folders for \
                     bert and roberta encoders"
                ),
            ));
        }
    };
    let (id2label, label2id) = label_maps(labels);
    obj.insert(
        "architectures".into(),
        serde_json::json!([format!("{family}ForSequenceClassification")]),
    );
    obj.insert("id2label".into(), id2label);
    obj.insert("label2id".into(), label2id);
    obj.insert(
        "problem_type".into(),
        serde_json::json!("single_label_classification"),
    );
    obj.remove("num_labels");
    // transformers 5 writes `dtype`, 4 wrote `torch_dtype`; one key, the current one.
    obj.remove("torch_dtype");
    obj.insert("dtype".into(), serde_json::json!(dtype.torch_name()));
    Ok(v)
}

/// Tokenizer files of a Hugging Face folder, copied as they are when present.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    // A vision-language model's image processor travels with its tokenizer.
    "preprocessor_config.json",
    "chat_template.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
];

/// Put the base model's tokenizer (and generation_config.json, where it has one) into `dir`.
/// A Hugging Face base: its files, copied. A GGUF base: `tokenizer.json` serialised from the
/// tokenizer ardpipe rebuilds from the metadata (`tokenizer_json`, the caller's), and a
/// `tokenizer_config.json` naming its special tokens and chat template. Returns the names
/// written.
pub fn write_tokenizer_files(
    dir: &Path,
    base: &ModelLocation,
    tokenizer_json: impl FnOnce() -> Result<String>,
) -> Result<Vec<String>> {
    let mut written = vec![];
    match base {
        ModelLocation::HfFolder(src) => {
            for name in TOKENIZER_FILES.iter().chain(&["generation_config.json"]) {
                let from = src.join(name);
                if from.is_file() {
                    let to = dir.join(name);
                    std::fs::copy(&from, &to).map_err(|e| ModelError::io(&from, e))?;
                    written.push(name.to_string());
                }
            }
            if !written.iter().any(|n| n == "tokenizer.json") {
                return Err(ModelError::format(
                    src,
                    "no tokenizer.json: a merged folder carries the base's tokenizer, and this \
                     base has none to copy",
                ));
            }
        }
        ModelLocation::Gguf(p) => {
            let g = GgufFile::open(p)?;
            let m = tokenizer_meta(&g)?;
            let json = tokenizer_json()?;
            let path = dir.join("tokenizer.json");
            std::fs::write(&path, json).map_err(|e| ModelError::io(&path, e))?;
            written.push("tokenizer.json".into());
            let token = |id: Option<u32>| -> serde_json::Value {
                id.and_then(|i| m.tokens.get(i as usize))
                    .map_or(serde_json::Value::Null, |t| serde_json::json!(t))
            };
            let mut cfg = serde_json::json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": token(m.bos),
                "eos_token": token(m.eos),
                "unk_token": token(m.unk),
                "pad_token": token(m.pad),
                "add_bos_token": m.adds_bos(),
                "add_eos_token": m.add_eos,
                "clean_up_tokenization_spaces": false,
            });
            if let Some(t) = &m.chat_template {
                cfg["chat_template"] = serde_json::json!(t);
            }
            write_json(&dir.join("tokenizer_config.json"), &cfg)?;
            written.push("tokenizer_config.json".into());
        }
    }
    Ok(written)
}

/// A loaded Llama as a Hugging Face folder in f32 (config.json + model.safetensors): the
/// weights as loaded, e.g. a GGUF dequantised.
pub fn save_llama(model: &Llama, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    write_json(
        &dir.join("config.json"),
        &causal_lm_config(&model.config, ExportDtype::F32),
    )?;
    write_weights(
        dir,
        &model.base_parameters(),
        ExportDtype::F32,
        DEFAULT_MAX_SHARD_BYTES,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_as_transformers_splits_them() {
        assert_eq!(plan_shards(&[4, 4, 4], 100), vec![vec![0, 1, 2]]);
        assert_eq!(plan_shards(&[4, 4, 4], 8), vec![vec![0, 1], vec![2]]);
        // A tensor above the limit sits alone; the shard in progress continues after it.
        assert_eq!(plan_shards(&[4, 20, 4], 8), vec![vec![1], vec![0, 2]]);
        assert_eq!(shard_name(0, 3), "model-00001-of-00003.safetensors");
    }
}
