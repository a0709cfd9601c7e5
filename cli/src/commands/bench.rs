//! `ardpipe bench models` and `ardpipe bench matmul`: the Rust side of the model benchmark (one
//! model, dtype and method per call) and this machine's GEMM peak. `python3
//! scripts/bench_models.py` runs them alternately with the transformers + peft peer and writes
//! the side-by-side report (docs/BENCHMARKS.md).

use ardpipe_engine::adapters::ops::QuantScheme;
use ardpipe_engine::models::bench::{self, BenchMethod, BenchSpec};

use crate::args::{
    BenchMatmulArgs, BenchMethodArg, BenchModelsArgs, BenchQuantArg, BenchWhat, DtypeArg,
};
use crate::exit::Code;

pub fn run(what: BenchWhat) -> miette::Result<Code> {
    match what {
        BenchWhat::Models(a) => models(a),
        BenchWhat::Matmul(a) => matmul(a),
        BenchWhat::Distributed(a) => super::bench_distributed::run(a),
    }
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
    let spec = BenchSpec {
        model: a.model.clone(),
        bf16: a.dtype == DtypeArg::Bf16,
        base_bf16: a.base == DtypeArg::Bf16,
        quantize: a.quantize.map(|q| match q {
            BenchQuantArg::Int8 => QuantScheme::Int8,
            BenchQuantArg::Int4 => QuantScheme::Int4 { group: 32 },
        }),
        checkpointing: a.checkpointing,
        steps: a.steps,
        warmup: a.warmup,
        method: match a.method {
            BenchMethodArg::Full => BenchMethod::Full,
            BenchMethodArg::Lora => BenchMethod::Lora,
            BenchMethodArg::ArdLora => BenchMethod::ArdLora,
        },
        rank: a.rank,
        per_head: a.per_head,
        compacted: a.compacted,
        profile: a.profile.clone(),
    };
    let r = bench::run(&spec).map_err(|e| miette::miette!("{e}"))?;
    if a.json {
        println!("{}", serde_json::to_string(&r).expect("result serialises"));
    } else {
        println!(
            "{} {} (base {}{}{}) {}{} batch {}x{}, {} threads: median step {:.3} s, {:.0} tokens/s, \
             peak RSS {:.0} MiB, {} trainable, {:.1} GFLOP/step (loss {:.3})",
            r.model,
            r.dtype,
            r.base,
            r.quantize
                .as_deref()
                .map(|q| format!(", {q}"))
                .unwrap_or_default(),
            if r.checkpointing {
                ", checkpointing"
            } else {
                ""
            },
            r.method,
            if r.compacted { " (compacted)" } else { "" },
            r.batch[0],
            r.batch[1],
            r.threads,
            r.median_step_s,
            r.tokens_per_s,
            r.peak_rss_mb,
            r.trainable_params,
            r.flops_per_step / 1e9,
            r.loss
        );
    }
    Ok(Code::Success)
}

fn matmul(a: BenchMatmulArgs) -> miette::Result<Code> {
    if let Some(n) = a.threads {
        tch_threads(n)?;
    }
    if !(a.seconds > 0.0 && a.seconds.is_finite()) {
        return Err(miette::miette!("--seconds must be positive"));
    }
    let r = bench::matmul_peak(a.dtype == DtypeArg::Bf16, a.seconds);
    if a.json {
        println!("{}", serde_json::to_string(&r).expect("result serialises"));
    } else {
        let sizes: Vec<String> = r
            .sizes
            .iter()
            .map(|(n, g)| format!("{n}: {g:.1}"))
            .collect();
        println!(
            "{} matmul, {} threads: peak {:.1} GFLOP/s (n: GFLOP/s {})",
            r.dtype,
            r.threads,
            r.peak_gflops,
            sizes.join(", ")
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
