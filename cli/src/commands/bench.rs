//! `ardpipe bench models`: the Rust side of the model benchmark (one model, one dtype per
//! call). `python3 scripts/bench_models.py` runs it alternately with the transformers peer
//! and prints the side-by-side table.

use ardpipe_engine::models::bench;

use crate::args::{BenchModelsArgs, BenchWhat, DtypeArg};
use crate::exit::Code;

pub fn run(what: BenchWhat) -> miette::Result<Code> {
    let BenchWhat::Models(a) = what;
    models(a)
}

fn models(a: BenchModelsArgs) -> miette::Result<Code> {
    if let Some(n) = a.threads {
        tch_threads(n)?;
    }
    if let Some(dir) = &a.prepare {
        bench::prepare(dir).map_err(|e| miette::miette!("{e}"))?;
        eprintln!(
            "wrote the benchmark batches and the dequantised SmolLM2 to {}",
            dir.display()
        );
        return Ok(Code::Success);
    }
    let r = bench::run(&a.model, a.dtype == DtypeArg::Bf16, a.steps, a.warmup)
        .map_err(|e| miette::miette!("{e}"))?;
    if a.json {
        println!("{}", serde_json::to_string(&r).expect("result serialises"));
    } else {
        println!(
            "{} {} batch {}x{}, {} threads: median step {:.3} s, {:.0} tokens/s, peak RSS {:.0} MiB (loss {:.3})",
            r.model,
            r.dtype,
            r.batch[0],
            r.batch[1],
            r.threads,
            r.median_step_s,
            r.tokens_per_s,
            r.peak_rss_mb,
            r.loss
        );
    }
    Ok(Code::Success)
}

fn tch_threads(n: i32) -> miette::Result<()> {
    if n < 1 {
        return Err(miette::miette!("--threads must be at least 1"));
    }
    ardpipe_engine::models::runtime::set_threads(n);
    Ok(())
}
