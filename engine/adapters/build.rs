include!("../../build-support/rpath.rs");
include!("../../build-support/libtorch_cc.rs");

fn main() {
    emit_libtorch_rpath();
    compile_ops();
}

/// Quantised linears, checkpointing, fused AdamW and the operator profiler are not in tch's C API: compile them against
/// the same libtorch headers torch-sys uses (it tells us where through `links = "tch"`).
fn compile_ops() {
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    println!("cargo:rerun-if-changed=csrc/profile.cpp");
    let (lib, root) = libtorch_dirs();
    libtorch_cpp(&root)
        .file("csrc/ops.cpp")
        .file("csrc/profile.cpp")
        .compile("ardpipe_ops");
    link_libtorch(&lib);
}
