//! `ardpipe generate`: text from a causal LM, or a vision-language model's answer to a
//! question about an image (`--image`), streamed to stdout as it is produced.

use std::io::Write;
use std::path::Path;

use ardpipe_engine::adapters::AdaptableLinear;
use ardpipe_engine::data::image::ImageProcessor;
use ardpipe_engine::data::vision::VisionEncoder;
use ardpipe_engine::models::arch::ArchConfig;
use ardpipe_engine::models::generate::Sampling;
use ardpipe_engine::models::precision::parse_device;
use ardpipe_engine::models::text::{answer_image, generate_text};
use ardpipe_engine::models::tokenizer::load_tokenizer;
use ardpipe_engine::models::{
    LoadOptions, Precision, describe, load_causal_lm, load_vision_lm, vision_processor,
};
use ardpipe_engine::peft_merge::{AdapterFolder, MergeReport};
use ardpipe_engine::tch::Tensor;

use crate::args::{Compute, DtypeArg, GenerateArgs};
use crate::exit::Code;

/// Device and precision from the command line.
pub fn load_options(c: &Compute) -> miette::Result<LoadOptions> {
    let device = parse_device(&c.device).map_err(|e| miette::miette!("{e}"))?;
    let precision = match c.dtype {
        DtypeArg::F32 => Precision::F32,
        DtypeArg::Bf16 => Precision::BF16,
    };
    Ok(LoadOptions {
        device,
        precision,
        quantize: None,
    })
}

/// Merge a PEFT adapter into a loaded model's weights and say what was applied.
pub fn merge_adapter(
    folder: &AdapterFolder,
    linears: Vec<&mut AdaptableLinear>,
    head: &[(String, ardpipe_engine::tch::Tensor)],
) -> miette::Result<MergeReport> {
    let r = folder
        .merge_into(linears, head)
        .map_err(|e| miette::miette!("{e}"))?;
    let ranks: Vec<usize> = r.ranks.iter().map(|(_, r)| *r).collect();
    eprintln!(
        "adapter {}: merged {} modules (ranks {}–{}){}",
        folder.dir.display(),
        r.modules,
        ranks.iter().min().unwrap_or(&0),
        ranks.iter().max().unwrap_or(&0),
        if r.head_tensors > 0 {
            format!(", {} head tensors", r.head_tensors)
        } else {
            String::new()
        }
    );
    Ok(r)
}

pub fn run(a: GenerateArgs) -> miette::Result<Code> {
    let adapter = match &a.adapter {
        Some(p) => Some(AdapterFolder::read(p).map_err(|e| miette::miette!("{e}"))?),
        None => None,
    };
    let sampling = Sampling {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
        max_tokens: a.max_tokens,
    };
    sampling.validate().map_err(|e| miette::miette!("{e}"))?;
    let opts = load_options(&a.compute)?;
    if let Some(image) = &a.image {
        return answer(&a, image, adapter.as_ref(), &sampling, &opts);
    }
    let mut lm = match load_causal_lm(&a.model, &opts) {
        Ok(lm) => lm,
        Err(e) => {
            if let Ok(d) = describe(&a.model)
                && let ArchConfig::PaliGemma(_) = d.config
            {
                return Err(miette::miette!(
                    help = "pass the image to ask about with --image FILE (PNG or JPEG); the \
                            prompt is the question",
                    "{} is a vision-language model (PaliGemma): it answers a question about an \
                     image, and no --image was given",
                    a.model.display()
                ));
            }
            return Err(miette::miette!("{e}"));
        }
    };
    if let Some(f) = &adapter {
        merge_adapter(f, lm.model.linears_mut(), &[])?;
    }
    let tok = load_tokenizer(&lm.location).map_err(|e| miette::miette!("{e}"))?;
    tracing::info!(
        "loaded {} ({} tensors) on {:?}",
        lm.location.path().display(),
        lm.report.applied,
        opts.device
    );
    let mut stdout = std::io::stdout().lock();
    let out = generate_text(&lm.model, &tok, &a.prompt, a.chat, &sampling, |piece| {
        let _ = stdout.write_all(piece.as_bytes());
        let _ = stdout.flush();
    })
    .map_err(|e| miette::miette!("{e}"))?;
    let _ = writeln!(stdout);
    tracing::info!(
        "{} prompt tokens, {} generated, stopped: {:?}",
        out.prompt_tokens,
        out.tokens,
        out.stop
    );
    Ok(Code::Success)
}

/// `generate --image`: a PaliGemma model's answer to the prompt about the image, greedy or
/// sampled, streamed.
fn answer(
    a: &GenerateArgs,
    image: &Path,
    adapter: Option<&AdapterFolder>,
    sampling: &Sampling,
    opts: &LoadOptions,
) -> miette::Result<Code> {
    let err = |e: ardpipe_engine::models::ModelError| miette::miette!("{e}");
    // What the model is, from its config alone, before any weights or pixels are read.
    let config = match describe(&a.model).map_err(err)?.config {
        ArchConfig::PaliGemma(c) => *c,
        other => {
            return Err(miette::miette!(
                help = "drop --image: a text-only model continues the prompt alone; an image \
                        goes to a vision-language model (a PaliGemma-layout folder, e.g. from \
                        `ardpipe compose`)",
                "--image was given, but {} is a text-only {} model: it reads no image",
                a.model.display(),
                other.name()
            ));
        }
    };
    if a.chat {
        return Err(miette::miette!(
            help = "drop --chat: the prompt is the question, which the model reads after the \
                    image as PaliGemma's processor writes it",
            "--chat does not apply with --image"
        ));
    }
    let processor = vision_processor(&a.model, &config).map_err(err)?;
    let (pixels, [c, h, w]) = read_image(&processor, image)?;
    let mut lm = load_vision_lm(&a.model, opts).map_err(err)?;
    if let Some(f) = adapter {
        merge_adapter(f, lm.model.linears_mut(), &[])?;
    }
    let tok = load_tokenizer(&lm.location).map_err(err)?.tokenizer;
    let image_token = u32::try_from(config.image_token_id)
        .map_err(|_| miette::miette!("image token id {} is out of range", config.image_token_id))?;
    let ctx = config.text.max_position_embeddings;
    let data_err = |e: ardpipe_engine::data::DataError| match &e.help {
        Some(h) => miette::miette!(help = h.clone(), "{}", e.message),
        None => miette::miette!("{}", e.message),
    };
    let encoder = VisionEncoder::new(
        &tok,
        image_token,
        config.num_image_tokens(),
        ctx.max(config.num_image_tokens() + 2),
        processor,
    )
    .map_err(data_err)?;
    let pixel_values = Tensor::from_slice(&pixels)
        .reshape([1, c as i64, h as i64, w as i64])
        .to_device(opts.device);
    tracing::info!(
        "loaded {} ({} tensors) on {:?}",
        lm.location.path().display(),
        lm.report.applied,
        opts.device
    );
    let mut stdout = std::io::stdout().lock();
    let out = answer_image(
        &lm.model,
        &tok,
        &encoder,
        &a.prompt,
        &pixel_values,
        sampling,
        |piece| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        },
    )
    .map_err(err)?;
    let _ = writeln!(stdout);
    tracing::info!(
        "{} prompt tokens ({} of the image), {} generated, stopped: {:?}",
        out.prompt_tokens,
        config.num_image_tokens(),
        out.tokens,
        out.stop
    );
    Ok(Code::Success)
}

/// The image's pixel values, or an error naming the file and why it cannot be read.
fn read_image(p: &ImageProcessor, image: &Path) -> miette::Result<(Vec<f32>, [usize; 3])> {
    let help = "pass a readable PNG or JPEG file";
    match std::fs::metadata(image) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(miette::miette!(
                help = help,
                "--image {} is not a file",
                image.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(miette::miette!(
                help = help,
                "--image {} does not exist",
                image.display()
            ));
        }
        Err(e) => {
            return Err(miette::miette!(
                help = help,
                "--image {}: {e}",
                image.display()
            ));
        }
    }
    p.load(image)
        .map_err(|e| miette::miette!(help = help, "--image {}: {}", image.display(), e.message))
}
