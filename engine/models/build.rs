include!("../../build-support/rpath.rs");

fn main() {
    emit_libtorch_rpath();
    compile_autocast_shim();
}

/// The CPU autocast switch is not in tch's C API: compile a few lines against the same
/// libtorch headers torch-sys uses (it tells us where through `links = "tch"`).
fn compile_autocast_shim() {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys reports its libtorch lib dir (DEP_TCH_LIBTORCH_LIB)");
    let root = std::path::Path::new(&lib)
        .parent()
        .expect("libtorch lib dir has a parent")
        .to_path_buf();
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .file("csrc/autocast.cpp")
        .compile("ardpipe_autocast");
    println!("cargo:rustc-link-search=native={lib}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
