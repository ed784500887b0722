//! For `headlab-torch`, the binary of this package that links libtorch:
//! link libtorch_cuda even though no symbol of it is referenced directly
//! (the linker would drop it with --as-needed, and CUDA would then be
//! invisible at run time), and embed an rpath to torch's lib/ so the binary
//! runs without LD_LIBRARY_PATH. Only when the torch in use ships
//! libtorch_cuda.so; a CPU-only libtorch builds the same binary without it.
//! The front binary `headlab` gets neither: it must not load libtorch at all
//! (see `main` below for how its link keeps libtorch out).
//!
//! For both binaries: the build identity HEADLAB_BUILD_ID (the package
//! version and a hash of the sources that go into them), which the front
//! passes to headlab-torch so that a stale headlab-torch beside a newer
//! headlab refuses to run (see `build_identity`).
use std::path::{Path, PathBuf};

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

/// FNV-1a, 64 bits: a stable hash without a dependency (not for security:
/// it tells builds apart).
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// A field, length first, so that ("ab", "c") and ("a", "bc") differ.
    fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }
}

/// Every file under `path` (or `path` itself), sorted.
fn files_under(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for c in children {
        files_under(&c, out)?;
    }
    Ok(())
}

/// The workspace crates this package is built from: crates/cli and, through
/// the `headlab-*` entries of each [dependencies] table, the crates it
/// depends on (crates/<name without "headlab-">), directly or not.
fn workspace_crates(root: &Path) -> Vec<PathBuf> {
    let mut todo = vec![root.join("crates/cli")];
    let mut seen: Vec<PathBuf> = Vec::new();
    while let Some(dir) = todo.pop() {
        if seen.contains(&dir) {
            continue;
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        let mut in_deps = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_deps = line == "[dependencies]";
            } else if let Some(rest) = line.strip_prefix("headlab-").filter(|_| in_deps) {
                let name: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
                let dep = root.join("crates").join(name);
                if dep.is_dir() {
                    todo.push(dep);
                }
            }
        }
        seen.push(dir);
    }
    seen.sort();
    seen
}

/// The build identity: `<version>+<16 hex digits>`, a hash of the version,
/// profile and target and of every source that goes into the two binaries
/// (the workspace manifest and lock file, scenes/ (include_str!), and each
/// workspace crate this package depends on: its Cargo.toml, build.rs and
/// src/). Cargo reruns this script when any of them changes, so the two
/// binaries of one build always agree, and two builds of different sources
/// differ. Computed here, once per build: the binaries only compare strings.
fn build_identity(root: &Path) -> Result<String, String> {
    let mut inputs = vec![root.join("Cargo.toml"), root.join("Cargo.lock"), root.join("scenes")];
    for dir in workspace_crates(root) {
        inputs.extend([dir.join("Cargo.toml"), dir.join("build.rs"), dir.join("src")]);
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    for key in [&version, &std::env::var("PROFILE").unwrap_or_default(), &std::env::var("TARGET").unwrap_or_default()] {
        h.field(key.as_bytes());
    }
    let mut files = Vec::new();
    for input in inputs.iter().filter(|p| p.exists()) {
        // A path that does not exist would make cargo rerun this every build.
        println!("cargo:rerun-if-changed={}", input.display());
        files_under(input, &mut files)?;
    }
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        h.field(f.strip_prefix(root).unwrap_or(&f).to_string_lossy().as_bytes());
        h.field(&bytes);
    }
    Ok(format!("{version}+{:016x}", h.0))
}

fn main() -> Result<(), String> {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?);
    let root = manifest_dir.join("../..");
    let root = root.canonicalize().unwrap_or(root);
    println!("cargo:rustc-env=HEADLAB_BUILD_ID={}", build_identity(&root)?);
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
    let Some(dir) = torch_lib_dir() else { return Ok(()) };
    if !dir.is_dir() {
        return Ok(());
    }
    println!("cargo:rustc-link-arg-bin={TORCH_BIN}=-Wl,-rpath,{}", dir.display());
    if dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-arg-bin={TORCH_BIN}=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-bin={TORCH_BIN}=-ltorch_cuda");
        println!("cargo:rustc-link-arg-bin={TORCH_BIN}=-Wl,--as-needed");
    }
    Ok(())
}
