//! Makes the `lmloop` binaries find libtorch at run time without `LD_LIBRARY_PATH`,
//! and makes them load libtorch's CUDA library where the installed libtorch has one.
//!
//! torch-sys (links = "tch") reports the folder holding libtorch's shared libraries
//! as `DEP_TCH_LIBTORCH_LIB`. We embed it as an rpath, and link the torch libraries
//! with `--no-as-needed`: nothing in our code calls into `libtorch_cuda.so` directly,
//! so an as-needed linker would drop it and CUDA would silently be unavailable.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report libtorch's lib folder; no rpath embedded");
        return;
    };
    println!("cargo:rustc-env=LMLOOP_LIBTORCH_VERSION={}", libtorch_version(Path::new(&lib_dir)));
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("apple") || target.contains("windows") {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    for lib in ["torch_cuda", "torch_cuda_cu", "torch_cuda_cpp"] {
        if Path::new(&lib_dir).join(format!("lib{lib}.so")).exists() {
            println!("cargo:rustc-link-arg=-l{lib}");
        }
    }
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}

/// The libtorch version, read from the PyTorch package (`torch/version.py`) or a
/// C++ distribution (`build-version`) that holds `lib_dir`.
fn libtorch_version(lib_dir: &Path) -> String {
    let Some(root) = lib_dir.parent() else { return "unknown".into() };
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("__version__ = ") {
                return v.trim_matches(|c| c == '\'' || c == '"').to_string();
            }
        }
    }
    std::fs::read_to_string(root.join("build-version"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
