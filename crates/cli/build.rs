//! For `headlab-torch`, the binary of this package that links libtorch:
//! link libtorch_cuda even though no symbol of it is referenced directly
//! (the linker would drop it with --as-needed, and CUDA would then be
//! invisible at run time), and embed an rpath to torch's lib/ so the binary
//! runs without LD_LIBRARY_PATH. Only when the torch in use ships
//! libtorch_cuda.so; a CPU-only libtorch builds the same binary without it.
//! The front binary `headlab` gets neither: it must not load libtorch at all
//! (see `main` below for how its link keeps libtorch out).
use std::path::PathBuf;

/// The one binary that links libtorch.
const TORCH_BIN: &str = "headlab-torch";

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
    // The front binary compiles the torch subcommands' Args (and so names
    // the crates that wrap libtorch), and the linker pulls in objects of the
    // C++ wrapper of torch-sys for them. It never calls into them, and
    // --gc-sections with --as-needed drop libtorch, except that a symbol of
    // an archive member that a shared library also defines (template
    // instances of libtorch's own types) is exported from an executable by
    // default, which keeps it and everything it calls. --exclude-libs=ALL
    // exports nothing from static archives (this binary exports nothing to
    // anyone), so only code reachable from main stays, and with it no
    // libtorch DT_NEEDED entry. tests/cli.rs checks the result with readelf.
    println!("cargo:rustc-link-arg-bin=headlab=-Wl,--exclude-libs=ALL");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=HEADLAB_TORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    let Some(dir) = torch_lib_dir() else { return };
    if !dir.is_dir() {
        return;
    }
    println!("cargo:rustc-link-arg-bin={TORCH_BIN}=-Wl,-rpath,{}", dir.display());
    if dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-arg-bin={TORCH_BIN}=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-bin={TORCH_BIN}=-ltorch_cuda");
        println!("cargo:rustc-link-arg-bin={TORCH_BIN}=-Wl,--as-needed");
    }
}
