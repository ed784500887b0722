//! One module per subcommand.
pub mod ablate;
pub mod demo;
pub mod eval;
pub mod fit;
pub mod inspect;
pub mod lens;
pub mod llc;
pub mod probe;
pub mod report;
pub mod simulate;
pub mod study;
pub mod study_predict;
pub mod sweep;
pub mod train;
pub mod view;

/// Take the run folder's writer lock for `what` (e.g. "headlab train"),
/// saying so when a lock left by a killed process is taken over. Hold the
/// returned guard while writing into the folder.
/// The folder must exist, except for `headlab train`, which creates it.
pub fn lock_run(run: &std::path::Path, what: &str) -> anyhow::Result<headlab_store::RunLock> {
    if what != "headlab train" && !run.is_dir() {
        anyhow::bail!(
            "{}: no such run folder (train one first: headlab train --data DATA.h5 --out {})",
            run.display(),
            run.display()
        );
    }
    let lock = headlab_store::RunLock::acquire(run, what)?;
    if let Some(h) = &lock.took_over {
        eprintln!(
            "note: {}: PID {}{} left this run's lock behind when it was stopped; taking it over (its finished files are kept, a half-written one never replaced a good one)",
            run.display(),
            h.pid,
            if h.what.is_empty() { String::new() } else { format!(" ({})", h.what) }
        );
    }
    Ok(lock)
}

/// The dataset of a run: `--data` when given, else the one its config.toml
/// records (a relative path is looked up beside the run first).
pub fn run_data(run: &std::path::Path, data: Option<&std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    if let Some(d) = data {
        return Ok(d.clone());
    }
    let p = run.join("config.toml");
    let cfg = headlab_train::TrainConfig::load(&p)
        .map_err(|e| anyhow::anyhow!("{e} (is {} a run folder? pass --data FILE.h5 otherwise)", run.display()))?;
    anyhow::ensure!(!cfg.data.is_empty(), "{}: no `data` recorded; pass --data FILE.h5", p.display());
    Ok(cfg.data_path(run))
}

/// Refuse a dataset whose content is not the one the run in `run` was
/// trained on (its config.toml records a fingerprint), unless `allow`.
pub fn check_run_dataset(
    run: &std::path::Path,
    ds: &headlab_sim::Dataset,
    data: &std::path::Path,
    allow: bool,
) -> anyhow::Result<()> {
    let p = run.join("config.toml");
    if !p.exists() {
        return Ok(());
    }
    let cfg = headlab_train::TrainConfig::load(&p)?;
    if cfg.data_fingerprint.is_empty() {
        return Ok(());
    }
    let fp = ds.fingerprint();
    if fp == cfg.data_fingerprint {
        return Ok(());
    }
    if allow {
        eprintln!(
            "warning: {} is not the dataset {} was trained on (fingerprint {fp}, recorded {}); going on as asked",
            data.display(),
            run.display(),
            cfg.data_fingerprint
        );
        return Ok(());
    }
    anyhow::bail!(
        "{}: not the dataset {} was trained on: its content fingerprint is {fp}, the run recorded {} (for {}). It was changed or replaced since training; pass the run's dataset, or --allow-other-data to go on anyway",
        data.display(),
        run.display(),
        cfg.data_fingerprint,
        cfg.data
    )
}

/// What an output file of `simulate` or `eval` is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OutKind {
    /// A simulated dataset (`headlab simulate`).
    Dataset,
    /// A model rollout (`headlab eval`).
    Rollout,
}

/// Refuse an `--out` that would destroy something else: anything inside a
/// run's `ckpt/` (always), and an existing file that is not of the kind
/// being written (a checkpoint, a run's dataset under `eval --out`, a file
/// that is not headlab's) unless `force`.
pub fn guard_out(out: &std::path::Path, kind: OutKind, force: bool) -> anyhow::Result<()> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
    if parent.file_name().is_some_and(|n| n == "ckpt")
        && parent.parent().is_some_and(|run| run.join("config.toml").exists() || run.join("metrics.h5").exists())
    {
        anyhow::bail!("--out {}: that is inside a run's ckpt/ folder, which holds only the run's own checkpoints; write somewhere else", out.display());
    }
    if out.is_dir() {
        anyhow::bail!("--out {}: is a folder; give a file name ending in .h5", out.display());
    }
    if !out.exists() || force {
        return Ok(());
    }
    let found = match headlab_store::open_kind(out, None) {
        Err(_) => "a file that is not a headlab HDF5 file".to_string(),
        Ok((_, headlab_store::FileKind::Dataset)) => match headlab_store::dataset::read_rollout_source(out) {
            Ok(Some(_)) if kind == OutKind::Rollout => return Ok(()),
            Ok(None) if kind == OutKind::Dataset => return Ok(()),
            Ok(Some(_)) => "a model rollout".to_string(),
            Ok(None) => "a simulated dataset".to_string(),
            Err(_) => "an unreadable dataset file".to_string(),
        },
        Ok((_, k)) => format!("a headlab {} file", k.as_str()),
    };
    let what = match kind {
        OutKind::Dataset => "a simulated dataset",
        OutKind::Rollout => "a rollout",
    };
    anyhow::bail!("--out {}: already exists and is {found}, not {what}; refusing to overwrite it (pass --force to replace it anyway)", out.display())
}
