// Shared by the build scripts of every package whose binaries or tests link libtorch
// (`include!`d, because `cargo:rustc-link-arg` reaches only the printing package's targets).
// It gives those artifacts a RUNPATH to the libtorch they were built against, so users
// never set LD_LIBRARY_PATH.
fn emit_libtorch_rpath() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        let lib = std::path::Path::new(&dir).join("lib");
        // Canonical path: the link in the checkout may be moved; the cache is what stays.
        let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        // libtorch_cpu finds libcudart/libcupti through its own RUNPATH ($ORIGIN/../../nvidia/...).
    }
}
