//! `headlab view`: launch the 3D viewer (the separate `headlab-viewer`
//! binary, which links bevy and not libtorch) with the same arguments.
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;

/// Replay particles in 3D, colored by what an attention head attends to
/// (runs `headlab-viewer`; `headlab view --help` shows all its options).
///
/// Examples:
///   headlab view checkpoints/demo/run
///   headlab view checkpoints/demo/run --head 1.1 --step 200 --frame 10
///   headlab view checkpoints/demo/run --screenshot shot.png
#[derive(clap::Args)]
#[command(verbatim_doc_comment, disable_help_flag = true)]
pub struct Args {
    /// Arguments for headlab-viewer: PATH [--traj K] [--frame F] [--step S] [--head L.H] ...
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// Where the viewer binary is: $HEADLAB_VIEWER, next to this binary, or on PATH.
pub fn viewer_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HEADLAB_VIEWER") {
        return Some(PathBuf::from(p));
    }
    let name = format!("headlab-viewer{}", std::env::consts::EXE_SUFFIX);
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(PathBuf::from)) {
        let p = dir.join(&name);
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(&name)).find(|p| p.is_file()))
}

/// How to get the viewer when it is not there.
const BUILD_ADVICE: &str = "run `tools/headlab view …` (which builds it), or `cargo build -p headlab-viewer`";

pub fn run(args: Args) -> anyhow::Result<()> {
    let bin = viewer_binary().with_context(|| {
        format!("the viewer is a separate binary, headlab-viewer, and it is not built: {BUILD_ADVICE}")
    })?;
    if !bin.is_file() {
        // Only $HEADLAB_VIEWER can name a file that is not there.
        anyhow::bail!(
            "{}: no viewer binary there (named by $HEADLAB_VIEWER); build it: {BUILD_ADVICE}, or unset HEADLAB_VIEWER",
            bin.display()
        );
    }
    let status = std::process::Command::new(&bin)
        .args(&args.args)
        .status()
        .with_context(|| format!("starting {}", bin.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}
