//! `ardpipe doctor`: is this installation ready, and if not, what to do.

use ardpipe_engine::dist::Backend;
use ardpipe_engine::models::{assets, runtime};
use serde::Serialize;

use crate::args::Format;
use crate::exit::Code;

#[derive(Serialize)]
struct Report {
    ardpipe: &'static str,
    libtorch_expected: String,
    libtorch: runtime::LibtorchInfo,
    /// c10d backends this build can start for data-parallel runs.
    distributed: Vec<&'static str>,
    cache: std::path::PathBuf,
    assets: Vec<assets::AssetStatus>,
    problems: Vec<String>,
}

pub fn run(deep: bool, format: Format) -> miette::Result<Code> {
    let manifest = assets::manifest();
    let libtorch = runtime::libtorch_info(true);
    let statuses: Vec<_> = manifest
        .assets
        .iter()
        .map(|a| assets::check_asset(a, deep))
        .collect();

    let mut problems = Vec::new();
    match &libtorch.version {
        Some(v) if v.split('+').next() == Some(manifest.libtorch.version.as_str()) => {}
        Some(v) => problems.push(format!(
            "libtorch {v} is loaded but ardpipe is built for {}: run `python3 scripts/setup.py` and rebuild",
            manifest.libtorch.version
        )),
        None => problems.push(
            "cannot tell which libtorch is loaded (no build-version or version.py beside its lib/): \
             run `python3 scripts/setup.py` and rebuild"
                .into(),
        ),
    }
    for s in &statuses {
        match s.state {
            assets::AssetState::Verified => {}
            // Set-up said why it could not fetch it; only its example pipeline needs it.
            assets::AssetState::Missing if s.optional => {}
            assets::AssetState::Missing => problems.push(format!(
                "example asset `{}` is missing from {}: run `python3 scripts/setup.py`",
                s.name,
                s.dir.display()
            )),
            assets::AssetState::Corrupt => problems.push(format!(
                "example asset `{}` does not match its pinned sha256 ({}): run `python3 scripts/setup.py --deep` to reinstall it",
                s.name,
                s.detail.as_deref().unwrap_or("changed on disk")
            )),
        }
    }

    let report = Report {
        ardpipe: env!("CARGO_PKG_VERSION"),
        libtorch_expected: manifest.libtorch.version.clone(),
        libtorch,
        distributed: [Backend::Gloo, Backend::Nccl]
            .into_iter()
            .filter(|b| b.compiled_in())
            .map(Backend::name)
            .collect(),
        cache: assets::cache_root(),
        assets: statuses,
        problems,
    };
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        ),
        Format::Yaml => print!("{}", crate::output::yaml(&report)?),
        Format::Text => print_text(&report),
    }
    Ok(if report.problems.is_empty() {
        Code::Success
    } else {
        Code::Environment
    })
}

fn print_text(r: &Report) {
    let lt = &r.libtorch;
    println!("ardpipe    {}", r.ardpipe);
    println!(
        "libtorch   {} (ardpipe needs {})",
        lt.version.as_deref().unwrap_or("unknown"),
        r.libtorch_expected
    );
    println!(
        "  loaded   {}",
        lt.lib_dir
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "unknown".into())
    );
    println!(
        "threads    {} (MKL {}, OpenMP {})",
        lt.threads,
        yes_no(lt.has_mkl),
        yes_no(lt.has_openmp)
    );
    if lt.cuda_available {
        println!("cuda       available: {}", lt.cuda_devices.join(", "));
    } else {
        println!(
            "cuda       not available (CPU only; `python3 scripts/setup.py --gpu` installs the CUDA build)"
        );
    }
    println!(
        "parallel   c10d {}{}",
        r.distributed.join(", "),
        if r.distributed.contains(&"nccl") {
            ""
        } else {
            " (no NCCL: it needs a CUDA libtorch and its headers when ardpipe is built)"
        }
    );
    println!("cache      {}", r.cache.display());
    println!("assets");
    for a in &r.assets {
        let state = match a.state {
            assets::AssetState::Verified => "verified",
            assets::AssetState::Missing if a.optional => "missing",
            assets::AssetState::Missing => "MISSING",
            assets::AssetState::Corrupt => "CORRUPT",
        };
        println!(
            "  {:<13} {:<9} {} ({} files)",
            a.name, state, a.description, a.files
        );
        if a.optional && a.state == assets::AssetState::Missing {
            println!(
                "                optional: `python3 scripts/setup.py` fetches it where apt-get works"
            );
        }
    }
    if r.problems.is_empty() {
        println!("\nall good: ardpipe is ready");
    } else {
        println!();
        for p in &r.problems {
            println!("problem: {p}");
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
