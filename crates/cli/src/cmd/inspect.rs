//! `headlab inspect FILE.h5`: a readable summary of any headlab HDF5 file.
use std::path::PathBuf;

/// Print what a headlab HDF5 file holds: its kind, groups and datasets with
/// shapes and types, and attributes (long text attributes are shortened;
/// use --full to see them whole).
///
/// Works on datasets from `headlab simulate`, rollouts, checkpoints,
/// metrics.h5 and analysis.h5. A truncated or foreign file gets an error
/// that says so.
#[derive(clap::Args)]
pub struct Args {
    /// A headlab HDF5 file (dataset, checkpoint, metrics.h5, analysis.h5).
    pub file: PathBuf,
    /// Print attributes (e.g. the embedded config TOML) in full.
    #[arg(long)]
    pub full: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let desc = headlab_store::inspect::describe(&args.file)?;
    println!("{}: headlab {} file", args.file.display(), desc.kind.as_str());
    print!("{}", desc.render(if args.full { usize::MAX } else { 100 }));
    if desc.kind == headlab_store::FileKind::Dataset {
        let ds = headlab_store::dataset::read_dataset(&args.file)?;
        print_dataset_summary(&ds);
    }
    Ok(())
}

/// Physics summary of a simulation dataset or rollout.
fn print_dataset_summary(ds: &headlab_sim::Dataset) {
    use headlab_sim::EventKind;
    let count = |k: EventKind| ds.events.iter().filter(|e| e.kind == k).count();
    println!("summary:");
    println!(
        "  {} trajectories x {} frames x {} particles in {}D, frame interval {:.4} ({} sub-steps of {:.3e})",
        ds.n_traj,
        ds.n_frames,
        ds.n_particles,
        ds.dim(),
        ds.frame_dt(),
        ds.meta.stride,
        ds.meta.dt
    );
    println!(
        "  events: {} contact starts, {} contact ends, {} wall starts, {} wall ends",
        count(EventKind::ContactStart),
        count(EventKind::ContactEnd),
        count(EventKind::WallStart),
        count(EventKind::WallEnd)
    );
    println!("  particle-intervals with a contact: {:.1} %", 100.0 * ds.contact_fraction());
    let d = headlab_sim::energy::energy_drift(ds);
    println!(
        "  energy: mean relative change first->last frame {:+.3e}, max |deviation| {:.3e}, max frame-to-frame increase {:.3e}",
        d.mean_relative_change, d.max_relative_deviation, d.max_relative_increase
    );
}
