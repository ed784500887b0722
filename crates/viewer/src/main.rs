//! headlab-viewer: replay particle trajectories in 3D, colored by what an
//! attention head attends to, across trajectories and across training.
//! Reads HDF5 only (datasets, rollouts, analysis.h5) and never links
//! libtorch; `headlab view` launches it.

mod app;
mod ui;

use headlab_viewer::data;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Replay particles in 3D, colored by what a chosen attention head does.
///
/// PATH is a dataset (headlab simulate), a rollout (headlab eval), a run
/// folder, or a run's analysis.h5. Head coloring needs a probed run: the
/// probe caches attention patterns of a few validation trajectories and
/// frames at every checkpoint, and the checkpoint slider swaps between them.
///
/// Color modes:
///   attention  a_ij from the query particle (click one; it is outlined) to every other
///   score      per-particle collision score of the head: of the attention a particle
///              gives to others, the share on its contact partners, against chance
///              (0 = chance, 1 = all on partners; gray = no partner)
///   speed      |v|
/// Contact partners are the pairs in contact during the interval after the
/// shown frame (the simulator's event table), drawn as lines; the head grid
/// shows the probe's score for the same definition (score_excl_norm_interval).
///
/// Examples:
///   headlab view checkpoints/demo/run
///   headlab view checkpoints/demo/run --head 1.1 --step 200 --frame 10
///   headlab view checkpoints/demo/dataset.h5 --traj 3 --play
///   headlab view checkpoints/demo/run --screenshot shot.png   # renders and exits
///
/// Headless: --screenshot works under Xvfb (xvfb-run -a) with Mesa's software
/// Vulkan; without a DISPLAY the viewer starts xvfb-run itself when it can.
#[derive(Parser, Debug)]
#[command(name = "headlab-viewer", version, verbatim_doc_comment)]
struct Args {
    /// Dataset, rollout, run folder or analysis.h5.
    path: PathBuf,
    /// Ground-truth dataset, when the recorded path is not right.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Trajectory to show (default: the first with cached attention).
    #[arg(long)]
    traj: Option<usize>,
    /// Frame to start at (default: the first cached frame).
    #[arg(long)]
    frame: Option<usize>,
    /// Checkpoint step of the attention cache (nearest cached; default: the last).
    #[arg(long)]
    step: Option<u64>,
    /// Head as LAYER.HEAD, e.g. 1.2 (default: the head with the highest interval score; heads tied with it are listed in the report).
    #[arg(long, value_parser = parse_head)]
    head: Option<(usize, usize)>,
    /// What to color particles by (default: attention when cached, else speed).
    #[arg(long, value_enum)]
    color: Option<app::ColorMode>,
    /// Query particle for attention coloring (default: the one with most partners).
    #[arg(long)]
    query: Option<usize>,
    /// Render one frame to this PNG and exit.
    #[arg(long, value_name = "FILE.png")]
    screenshot: Option<PathBuf>,
    /// Window size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x800", value_parser = parse_size)]
    size: (u32, u32),
    /// Hide the side panel (Tab toggles it in the window).
    #[arg(long)]
    no_ui: bool,
    /// Start playing.
    #[arg(long)]
    play: bool,
    /// With --screenshot: render this many frames first (the panel's frame
    /// time then shows the steady state; it is also printed).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(5..))]
    shot_after: u32,
}

fn parse_head(s: &str) -> Result<(usize, usize), String> {
    data::parse_head(s).ok_or_else(|| format!("`{s}` is not LAYER.HEAD (e.g. 1.2)"))
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
    let w: u32 = w.parse().map_err(|_| format!("`{s}`: bad width"))?;
    let h: u32 = h.parse().map_err(|_| format!("`{s}`: bad height"))?;
    if !(64..=8192).contains(&w) || !(64..=8192).contains(&h) {
        return Err(format!("`{s}`: width and height must be 64..8192"));
    }
    Ok((w, h))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(p) = &args.screenshot {
        if p.extension().and_then(|e| e.to_str()).map(|e| e.eq_ignore_ascii_case("png")) != Some(true) {
            eprintln!("headlab-viewer: error: --screenshot {}: the file must end in .png", p.display());
            return ExitCode::from(2);
        }
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                eprintln!(
                    "headlab-viewer: error: --screenshot {}: folder {} does not exist",
                    p.display(),
                    dir.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    // Load and check everything before a window opens: bad input is a clear
    // message in the terminal, never a window that crashes.
    let replay = match data::open(&args.path, args.dataset.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("headlab-viewer: error: {e}");
            return ExitCode::from(2);
        }
    };
    let launch = app::Launch {
        traj: args.traj,
        frame: args.frame,
        step: args.step,
        head: args.head,
        color: args.color,
        query: args.query,
        screenshot: args.screenshot.clone(),
        size: args.size,
        no_ui: args.no_ui,
        play: args.play,
        shot_after: args.shot_after,
    };
    if let Err(e) = app::validate(&replay, &launch) {
        eprintln!("headlab-viewer: error: {e}");
        return ExitCode::from(2);
    }
    if std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
        if args.screenshot.is_some() && std::env::var_os("HEADLAB_VIEWER_NO_XVFB").is_none() {
            return rerun_under_xvfb();
        }
        eprintln!(
            "headlab-viewer: error: no X display (DISPLAY is not set). Run it on a desktop, over `ssh -X`, \
             or headless with `xvfb-run -a headlab view … --screenshot FILE.png`"
        );
        return ExitCode::from(2);
    }
    let runtime_dir = quiet_runtime_dir();
    install_panic_hook();
    let code = match app::run(replay, launch) {
        bevy::app::AppExit::Success => ExitCode::SUCCESS,
        bevy::app::AppExit::Error(c) => ExitCode::from(c.get()),
    };
    if let Some(d) = runtime_dir {
        let _ = std::fs::remove_dir_all(d);
    }
    code
}

/// Headless sessions (xvfb-run, ssh, containers) often lack XDG_RUNTIME_DIR,
/// and the windowing libraries then print an alarming but harmless error.
/// Give them a private one (before any thread starts).
fn quiet_runtime_dir() -> Option<PathBuf> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("headlab-viewer-runtime-{}", std::process::id()));
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
    std::env::set_var("XDG_RUNTIME_DIR", &dir);
    Some(dir)
}

/// Headless screenshot: run ourselves again under `xvfb-run -a`.
// xvfb-run's -s takes the X server's options as one argument.
#[allow(clippy::suspicious_command_arg_space)]
fn rerun_under_xvfb() -> ExitCode {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("headlab-viewer"));
    let status = std::process::Command::new("xvfb-run")
        .arg("-a")
        .arg("-s")
        .arg("-screen 0 1920x1200x24")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env("HEADLAB_VIEWER_NO_XVFB", "1")
        .status();
    match status {
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(_) => {
            eprintln!(
                "headlab-viewer: error: no X display and no xvfb-run to make one; install xvfb (tools/setup.sh does) or set DISPLAY"
            );
            ExitCode::from(2)
        }
    }
}

/// Turn the renderer's panics (no GPU adapter, no Vulkan) into advice.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let lower = msg.to_lowercase();
        if lower.contains("adapter") || lower.contains("gpu") || lower.contains("vulkan") || lower.contains("surface") {
            eprintln!(
                "headlab-viewer: error: no usable graphics adapter ({msg}). Install Vulkan drivers \
                 (Debian: mesa-vulkan-drivers libvulkan1; tools/setup.sh installs them) or run on a machine with a GPU."
            );
            std::process::exit(3);
        }
        default(info);
    }));
}
