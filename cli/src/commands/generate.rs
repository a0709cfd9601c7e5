//! `ardpipe generate`: text from a causal LM, streamed to stdout as it is produced.

use std::io::Write;

use ardpipe_engine::adapters::AdaptableLinear;
use ardpipe_engine::models::generate::Sampling;
use ardpipe_engine::models::precision::parse_device;
use ardpipe_engine::models::text::generate_text;
use ardpipe_engine::models::tokenizer::load_tokenizer;
use ardpipe_engine::models::{LoadOptions, Precision, load_causal_lm};
use ardpipe_engine::peft_merge::{AdapterFolder, MergeReport};

use crate::args::{Compute, DtypeArg, GenerateArgs};
use crate::exit::Code;

/// Device and precision from the command line.
pub fn load_options(c: &Compute) -> miette::Result<LoadOptions> {
    let device = parse_device(&c.device).map_err(|e| miette::miette!("{e}"))?;
    let precision = match c.dtype {
        DtypeArg::F32 => Precision::F32,
        DtypeArg::Bf16 => Precision::BF16,
    };
    Ok(LoadOptions { device, precision })
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
    let mut lm = load_causal_lm(&a.model, &opts).map_err(|e| miette::miette!("{e}"))?;
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
