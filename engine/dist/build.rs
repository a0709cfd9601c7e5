include!("../../build-support/rpath.rs");
include!("../../build-support/libtorch_cc.rs");

use std::path::{Path, PathBuf};

fn main() {
    emit_libtorch_rpath();
    let (lib, root) = libtorch_dirs();
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=NCCL_INCLUDE_DIR");

    let nccl = has_cuda_libtorch(&lib) && compile_nccl(&root);
    let mut bridge = build(&root);
    bridge
        .define("USE_C10D_GLOO", "1")
        .file("csrc/c10d_bridge.cpp");
    if nccl {
        bridge.define("ARDPIPE_WITH_NCCL", "1");
    }
    bridge.compile("ardpipe_c10d");
    println!("cargo:rustc-check-cfg=cfg(ardpipe_nccl)");
    if nccl {
        println!("cargo:rustc-cfg=ardpipe_nccl");
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
    }
    link_libtorch(&lib);
}

fn build(root: &Path) -> cc::Build {
    let mut b = libtorch_cpp(root);
    // libtorch has no Gloo headers: declarations of what its ProcessGroupGloo.hpp names.
    b.include("csrc/gloo_decls");
    b
}

fn has_cuda_libtorch(lib: &Path) -> bool {
    lib.join("libtorch_cuda.so").exists()
}

/// NCCL support needs ProcessGroupNCCL.hpp to compile, which needs the CUDA runtime and NCCL
/// headers. They come with a CUDA toolkit or the nvidia-* wheels next to a wheel's libtorch.
/// When they are missing the build goes on with Gloo alone and says so.
fn compile_nccl(root: &Path) -> bool {
    let dirs = cuda_include_dirs(root);
    let found = |h: &str| dirs.iter().any(|d| d.join(h).is_file());
    if !found("cuda.h") || !found("nccl.h") {
        // A CUDA libtorch without a toolkit beside it (the default PyPI wheel on a CPU
        // machine): nothing to build NCCL against, and nothing to warn about.
        return false;
    }
    let mut b = build(root);
    b.define("USE_C10D_NCCL", "1").file("csrc/nccl.cpp");
    for dir in dirs {
        b.include(dir);
    }
    match b.try_compile("ardpipe_c10d_nccl") {
        Ok(()) => true,
        Err(e) => {
            println!(
                "cargo:warning=NCCL support not built (the CUDA/NCCL headers did not compile: {e}); \
                 distributed training on this build uses Gloo. Set CUDA_HOME or NCCL_INCLUDE_DIR to add it."
            );
            false
        }
    }
}

fn cuda_include_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for var in ["NCCL_INCLUDE_DIR", "CUDA_HOME"] {
        if let Ok(v) = std::env::var(var) {
            let p = PathBuf::from(v);
            dirs.push(if var == "CUDA_HOME" {
                p.join("include")
            } else {
                p
            });
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    // A wheel's libtorch (site-packages/torch) sits beside nvidia/<package>/include.
    if let Some(site) = root.parent() {
        let nvidia = site.join("nvidia");
        if let Ok(entries) = std::fs::read_dir(&nvidia) {
            for e in entries.flatten() {
                let inc = e.path().join("include");
                if inc.is_dir() {
                    dirs.push(inc);
                }
                // CUDA 13 wheels nest their headers one level deeper (nvidia/cu13/include).
                if let Ok(sub) = std::fs::read_dir(e.path()) {
                    for s in sub.flatten() {
                        let inc = s.path().join("include");
                        if inc.is_dir() {
                            dirs.push(inc);
                        }
                    }
                }
            }
        }
    }
    dirs
}
