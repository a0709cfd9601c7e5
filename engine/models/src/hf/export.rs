//! Write a loaded model back out as a Hugging Face folder (config.json + model.safetensors, f32),
//! e.g. a dequantised GGUF for Python transformers to load, or a merged fine-tuned model.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use tch::{Device, Kind};

use crate::arch::Llama;
use crate::error::{ModelError, Result};

pub fn save_llama(model: &Llama, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let config = model.config.hf_config_json();
    let cfg_path = dir.join("config.json");
    std::fs::write(
        &cfg_path,
        serde_json::to_string_pretty(&config).expect("json"),
    )
    .map_err(|e| ModelError::io(&cfg_path, e))?;
    let tensors: Vec<(String, Vec<u8>, Vec<usize>)> = model
        .base_parameters()
        .into_iter()
        .map(|(name, t)| {
            let t = t
                .detach()
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .contiguous();
            let shape = t.size().iter().map(|&d| d as usize).collect();
            let values: Vec<f32> = Vec::try_from(t.flatten(0, -1))?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok((name, bytes, shape))
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, b, s)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ModelError::Usage(format!("cannot write tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let out = dir.join("model.safetensors");
    // Write beside and rename, so a reader never sees half a file.
    let tmp = dir.join("model.safetensors.partial");
    safetensors::serialize_to_file(views, None, &tmp)
        .map_err(|e| ModelError::Usage(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &out).map_err(|e| ModelError::io(&out, e))
}
