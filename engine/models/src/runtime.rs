//! Facts about the libtorch this process runs on, and CUDA start-up.

use std::path::{Path, PathBuf};

/// What `ardpipe doctor` and run manifests report about libtorch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LibtorchInfo {
    /// e.g. `2.13.0`, read from the installation the process actually loaded.
    pub version: Option<String>,
    /// Directory of the `libtorch_cpu.so` mapped into this process.
    pub lib_dir: Option<PathBuf>,
    pub threads: i32,
    pub has_mkl: bool,
    pub has_openmp: bool,
    pub cuda_available: bool,
    pub cuda_devices: Vec<String>,
}

/// The directory of the libtorch shared library mapped into this process, from /proc/self/maps.
pub fn loaded_lib_dir() -> Option<PathBuf> {
    // Touch libtorch so it is certainly mapped before we look.
    let _ = tch::get_num_threads();
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// The libtorch version of an installation, from `build-version` or `version.py` beside `lib/`.
pub fn version_of(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(v) = std::fs::read_to_string(root.join("build-version")) {
        return Some(v.trim().to_string());
    }
    let py = std::fs::read_to_string(root.join("version.py")).ok()?;
    py.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
}

/// CUDA becomes visible only once `libtorch_cuda.so` is loaded: the linker's as-needed drops it.
/// Returns an explanation when it cannot be loaded (CPU-only install, no driver).
pub fn enable_cuda() -> Result<(), String> {
    if tch::Cuda::is_available() {
        return Ok(());
    }
    let dir = loaded_lib_dir().ok_or("libtorch is not mapped into this process")?;
    let lib = dir.join("libtorch_cuda.so");
    if !lib.exists() {
        return Err(format!(
            "{} does not exist: this is the CPU-only libtorch. Run `python3 scripts/setup.py --gpu` and rebuild",
            lib.display()
        ));
    }
    // SAFETY: loading libtorch's own CUDA library; its initialisers register the CUDA backend.
    let handle = unsafe { libloading::Library::new(&lib) }.map_err(|e| {
        format!(
            "cannot load {}: {e} (is an NVIDIA driver installed?)",
            lib.display()
        )
    })?;
    // Libraries stay loaded for the life of the process.
    std::mem::forget(handle);
    if tch::Cuda::is_available() {
        Ok(())
    } else {
        Err("libtorch_cuda loaded, but no CUDA device is visible (driver missing or CUDA_VISIBLE_DEVICES empty)".into())
    }
}

fn cuda_device_names(count: i64) -> Vec<String> {
    // libtorch exposes no device names through tch; nvidia-smi does when the driver is there.
    let names = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    (0..count as usize)
        .map(|i| {
            format!(
                "cuda:{i} {}",
                names
                    .get(i)
                    .map(String::as_str)
                    .unwrap_or("(name unavailable)")
            )
        })
        .collect()
}

/// Gather [`LibtorchInfo`]; `probe_cuda` tries to load libtorch_cuda first.
pub fn libtorch_info(probe_cuda: bool) -> LibtorchInfo {
    let lib_dir = loaded_lib_dir();
    let version = lib_dir.as_deref().and_then(version_of);
    let cuda_available = if probe_cuda {
        enable_cuda().is_ok()
    } else {
        tch::Cuda::is_available()
    };
    let cuda_devices = if cuda_available {
        cuda_device_names(tch::Cuda::device_count())
    } else {
        vec![]
    };
    LibtorchInfo {
        version,
        lib_dir,
        threads: tch::get_num_threads(),
        has_mkl: tch::utils::has_mkl(),
        has_openmp: tch::utils::has_openmp(),
        cuda_available,
        cuda_devices,
    }
}

/// Set libtorch's intra-op thread count (the CLI has no direct tch dependency).
pub fn set_threads(n: i32) {
    tch::set_num_threads(n);
}

/// Give the memory that loading freed back to the system. Reading a checkpoint frees many
/// large temporaries (raw bytes, dequantised copies); glibc keeps such memory in its heap for
/// reuse (its mmap threshold rises after the first large frees), so without this a process
/// holds hundreds of MiB it no longer uses for the whole run: measured loading SmolLM2's GGUF
/// with an int8 base, the resident set after loading fell from 879 to 438 MiB.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This machine's memory (`MemTotal` of /proc/meminfo), in bytes.
pub fn machine_memory_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kib| kib << 10)
    })
}

/// Peak resident set size of this process (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
