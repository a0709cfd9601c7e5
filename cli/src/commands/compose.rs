//! `ardpipe compose`: a vision-language model in the PaliGemma layout from a pretrained
//! decoder and a new SigLIP tower and projector (engine/models/src/compose.rs), written as a
//! Hugging Face folder by the one folder writer (engine/core/src/peft_merge.rs).

use ardpipe_engine::models::ModelLocation;
use ardpipe_engine::models::arch::siglip::SiglipVisionConfig;
use ardpipe_engine::models::compose::compose_vision_lm;
use ardpipe_engine::models::hf::export::ExportDtype;
use ardpipe_engine::peft_merge::{self, FolderOptions};

use crate::args::ComposeArgs;
use crate::exit::Code;

pub fn run(a: ComposeArgs) -> miette::Result<Code> {
    peft_merge::check_output(&a.out, a.force, &[&a.decoder]).map_err(|e| miette::miette!("{e}"))?;
    let vision = SiglipVisionConfig {
        hidden_size: a.hidden_size,
        intermediate_size: a.intermediate_size,
        num_hidden_layers: a.layers,
        num_attention_heads: a.heads,
        num_channels: 3,
        image_size: a.image_size,
        patch_size: a.patch_size,
        layer_norm_eps: 1e-6,
    };
    let base = ModelLocation::detect(&a.decoder).map_err(|e| miette::miette!("{e}"))?;
    let composed =
        compose_vision_lm(&a.decoder, &vision, a.seed).map_err(|e| miette::miette!("{e}"))?;
    let opts = FolderOptions {
        // The decoder's values as loaded (a GGUF's dequantised weights need f32).
        dtype: Some(ExportDtype::F32),
        force: a.force,
        extra_json: vec![("preprocessor_config.json".into(), composed.preprocessor)],
        ..Default::default()
    };
    let written =
        peft_merge::write_model_folder(&a.out, &base, composed.config, &composed.tensors, &opts)
            .map_err(|e| miette::miette!("{e}"))?;
    eprintln!(
        "composed {}: PaliGemma layout from {} with a new {}-layer SigLIP tower ({}×{} px, {} image tokens) and \
         projector (seed {}); {} tensors, {}",
        a.out.display(),
        a.decoder.display(),
        a.layers,
        a.image_size,
        a.image_size,
        vision.num_patches(),
        a.seed,
        written.weights.tensors,
        written.dtype.torch_name()
    );
    Ok(Code::Success)
}
