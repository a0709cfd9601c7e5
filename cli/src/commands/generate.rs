//! `ardpipe generate`: text from a causal LM, streamed to stdout as it is produced.

use std::io::Write;

use ardpipe_engine::models::generate::Sampling;
use ardpipe_engine::models::precision::parse_device;
use ardpipe_engine::models::text::generate_text;
use ardpipe_engine::models::tokenizer::load_tokenizer;
use ardpipe_engine::models::{LoadOptions, Precision, load_causal_lm};

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

/// Adapters come with training (a later issue): say so plainly instead of ignoring the flag.
pub fn adapter_unavailable(cmd: &str) -> Code {
    eprintln!(
        "ardpipe {cmd}: --adapter is not available until adapters can be trained (a later \
         issue of this version); run without --adapter to use the base model. Nothing was done."
    );
    Code::Unavailable
}

pub fn run(a: GenerateArgs) -> miette::Result<Code> {
    if a.adapter.is_some() {
        return Ok(adapter_unavailable("generate"));
    }
    let sampling = Sampling {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
        max_tokens: a.max_tokens,
    };
    sampling.validate().map_err(|e| miette::miette!("{e}"))?;
    let opts = load_options(&a.compute)?;
    let lm = load_causal_lm(&a.model, &opts).map_err(|e| miette::miette!("{e}"))?;
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
