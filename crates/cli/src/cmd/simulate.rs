//! `headlab simulate`: run a scene and write an HDF5 dataset.
use std::path::PathBuf;

use anyhow::Context;
use headlab_sim::{energy, simulate, Scene, SimOptions};

/// Simulate particle trajectories from a scene file and write them as an HDF5
/// dataset (positions, velocities, radii, masses, collision events).
///
/// The scene (TOML, see scenes/*.toml) sets the box, the particles, the
/// contact law and the frame interval; its `trajectories`, `frames` and
/// `seed` are the defaults that the options below override. The same seed
/// gives a byte-identical file for any number of threads.
///
/// Example:
///   headlab simulate --scene scenes/demo.toml --out data/demo.h5
///   headlab simulate --scene scenes/box3d.toml --trajectories 16 --frames 200 --out data/box3d.h5 --seed 3
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Scene file (TOML).
    #[arg(long, default_value = "scenes/demo.toml")]
    pub scene: PathBuf,
    /// Number of independent trajectories [default: the scene's `trajectories`].
    #[arg(long)]
    pub trajectories: Option<usize>,
    /// Recorded frames per trajectory, including the initial one [default: the scene's `frames`].
    #[arg(long)]
    pub frames: Option<usize>,
    /// Output dataset (.h5); written atomically, parent folders are created.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed [default: the scene's `seed`]. Trajectory t uses stream t of this seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads (0 = all cores). Does not change the result.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Replace --out even when it is not a simulated dataset (never inside a run's ckpt/).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::guard_out(&args.out, super::OutKind::Dataset, args.force)?;
    let scene = Scene::from_file(&args.scene)?;
    let res = scene.resolve(&args.scene.display().to_string())?;
    let mut opts = SimOptions::from_scene(&scene);
    if let Some(t) = args.trajectories {
        opts.n_traj = t;
    }
    if let Some(f) = args.frames {
        opts.n_frames = f;
    }
    if let Some(s) = args.seed {
        opts.seed = s;
    }
    opts.threads = args.threads;
    let pb = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let pb = indicatif::ProgressBar::new(opts.n_traj as u64);
        pb.set_style(indicatif::ProgressStyle::with_template(
            "simulating {bar:40} {pos}/{len} trajectories [{elapsed} < {eta}]",
        )?);
        pb
    };
    let progress = |_done: usize| pb.inc(1);
    let start = std::time::Instant::now();
    let ds = simulate(&scene, opts, Some(&progress))
        .with_context(|| format!("simulating scene {}", args.scene.display()))?;
    pb.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    headlab_store::dataset::write_dataset(&args.out, &ds)?;
    let drift = energy::energy_drift(&ds);
    let pair_events = ds.events.iter().filter(|e| e.j >= 0).count();
    println!("wrote {}", args.out.display());
    println!(
        "  {} trajectories × {} frames × {} particles ({}D), {:.2} s",
        ds.n_traj, ds.n_frames, ds.n_particles, ds.meta.dimension, elapsed
    );
    println!(
        "  sub-step {:.3e}, {} sub-steps per frame, frame interval {:.3e} = {:.2} contact times",
        ds.meta.dt,
        ds.meta.stride,
        ds.frame_dt(),
        ds.frame_dt() / res.contact_time
    );
    println!(
        "  events: {} ({} particle–particle, {} wall)",
        ds.events.len(),
        pair_events,
        ds.events.len() - pair_events
    );
    println!("  particle-intervals with a contact: {:.1}%", 100.0 * ds.contact_fraction());
    println!(
        "  energy: mean relative change {:+.3e} first→last frame, largest frame-to-frame increase {:+.2e}",
        drift.mean_relative_change, drift.max_relative_increase
    );
    Ok(())
}
