include!("../../build-support/rpath.rs");
include!("../../build-support/libtorch_cc.rs");

fn main() {
    emit_libtorch_rpath();
    compile_autocast_shim();
}

/// The CPU autocast switch is not in tch's C API: compile a few lines against the same
/// libtorch headers torch-sys uses (it tells us where through `links = "tch"`).
fn compile_autocast_shim() {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    let (lib, root) = libtorch_dirs();
    libtorch_cpp(&root)
        .file("csrc/autocast.cpp")
        .compile("ardpipe_autocast");
    link_libtorch(&lib);
}
