//! Link libtorch_cuda even though no symbol of it is referenced directly
//! (the linker would drop it with --as-needed, and CUDA would then be
//! invisible at run time), and embed an rpath to torch's lib/ so the binary
//! runs without LD_LIBRARY_PATH. Only when the torch in use ships
//! libtorch_cuda.so; a CPU-only libtorch builds the same binary without it.
use std::path::PathBuf;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Ok(l) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(l).join("lib"));
    }
    if let Ok(d) = std::env::var("HEADLAB_TORCH_LIB") {
        return Some(PathBuf::from(d));
    }
    // LIBTORCH_USE_PYTORCH=1: ask the python on PATH, as torch-sys does.
    let py = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(py)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output()
        .ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=HEADLAB_TORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    let Some(dir) = torch_lib_dir() else { return };
    if !dir.is_dir() {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    if dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
