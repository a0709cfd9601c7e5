// Shared by the build scripts that compile C++ against libtorch (`include!`d, like rpath.rs):
// the libtorch torch-sys built against (it reports it through `links = "tch"`), a C++ build
// with the flags tch's own C++ is compiled with, and the libraries to link.

/// (lib dir, root) of the libtorch torch-sys uses.
fn libtorch_dirs() -> (std::path::PathBuf, std::path::PathBuf) {
    let lib = std::path::PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys reports its libtorch lib dir (DEP_TCH_LIBTORCH_LIB)"),
    );
    let root = lib
        .parent()
        .expect("libtorch lib dir has a parent")
        .to_path_buf();
    (lib, root)
}

fn libtorch_cpp(root: &std::path::Path) -> cc::Build {
    let mut b = cc::Build::new();
    b.cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1");
    b
}

fn link_libtorch(lib: &std::path::Path) {
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
