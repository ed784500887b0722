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
    Ok(())
}
