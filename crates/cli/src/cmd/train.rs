//! `headlab train`: train the particle transformer on a simulated dataset.
use std::path::PathBuf;

use anyhow::Context;
use headlab_train::{RunOptions, TrainConfig};

/// Train the transformer (one token per particle) to predict the state change
/// over one frame interval. Writes into --out: config.toml (the full config,
/// defaults included), metrics.h5 (loss, lr, gradient norm per step;
/// validation loss at intervals) and ckpt/step_XXXXXXXX.h5 checkpoints
/// (weights under /params/<name>, optimizer and RNG state) at log-spaced
/// steps, dense early where collision heads emerge.
///
/// Ctrl-C, SIGTERM (scancel, a Slurm time limit) and SIGHUP write a
/// checkpoint and stop (a second signal more than a second later quits at
/// once, exit code 130);
/// --resume continues bit-identically. One writer per run folder: a second
/// command writing into --out is refused with the PID of the first.
///
/// Example:
///   headlab train --data data/demo.h5 --out checkpoints/demo
///   headlab train --out checkpoints/demo --resume --steps 5000
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Dataset written by `headlab simulate` (default: `data` in the config).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run folder (created). Holds config.toml, metrics.h5 and ckpt/.
    #[arg(long)]
    pub out: PathBuf,
    /// Training config (TOML; every key optional, see config.toml of any run
    /// for the full list). With --resume, defaults to OUT/config.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<headlab_model::DeviceSpec>,
    /// Seed for initialization, batches and the train/validation split.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of optimizer steps in total.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Samples (frames) per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// libtorch CPU threads (0 = default: 1 on machines with <= 2 cores, else half the cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Go on even when the dataset's content is not the one the run was
    /// trained on (its fingerprint in RUN/config.toml differs).
    #[arg(long)]
    pub allow_other_data: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg_path = args.config.clone().or_else(|| if args.resume { Some(args.out.join("config.toml")) } else { None });
    if args.resume && args.config.is_none() && !args.out.join("config.toml").exists() {
        anyhow::bail!("--resume: {} holds no run to resume (no config.toml; no checkpoint in ckpt/ either); drop --resume to start a new run there", args.out.display());
    }
    let mut cfg = match &cfg_path {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    if let Some(d) = &args.data {
        cfg.data = d.display().to_string();
    }
    if let Some(v) = &args.device {
        cfg.device = *v;
    }
    if let Some(v) = args.seed {
        cfg.seed = v;
    }
    if let Some(v) = args.steps {
        cfg.steps = v;
    }
    if let Some(v) = args.lr {
        cfg.optimizer.lr = v;
    }
    if let Some(v) = args.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = args.threads {
        cfg.threads = v;
    }
    cfg.validate()?;
    anyhow::ensure!(
        !cfg.data.is_empty(),
        "no dataset: pass --data FILE.h5 (written by `headlab simulate`) or set `data` in the config"
    );
    // The run folder's writer lock, before anything is read or written.
    let _lock = super::lock_run(&args.out, "headlab train")?;
    let data_path = if args.data.is_some() { PathBuf::from(&cfg.data) } else { cfg.data_path(&args.out) };
    let ds = headlab_store::dataset::read_dataset(&data_path)
        .with_context(|| format!("reading the dataset {}", data_path.display()))?;
    // A resumed run goes on with the data it was trained on (or is told to).
    if args.resume {
        super::check_run_dataset(&args.out, &ds, &data_path, args.allow_other_data)?;
    }
    cfg.data_fingerprint = ds.fingerprint();
    // Store the dataset's path absolute, so commands run from another folder find it.
    if let Ok(abs) = std::fs::canonicalize(&data_path) {
        cfg.data = abs.display().to_string();
    }
    // Ctrl-C, SIGTERM (scancel, Slurm time limit) and SIGHUP: checkpoint, then stop.
    let (stop, _catching) = crate::signals::catch();
    eprintln!(
        "training on {} ({} trajectories x {} frames x {} particles) -> {}",
        data_path.display(),
        ds.n_traj,
        ds.n_frames,
        ds.n_particles,
        args.out.display()
    );
    let s = headlab_train::train(
        &cfg,
        &ds,
        &args.out,
        &RunOptions { resume: args.resume, progress: !args.quiet, stop: Some(stop), stop_at: None },
    )?;
    println!(
        "{} at step {}: train loss {:.5}, val loss {:.5} ({:.1}x below the no-change baseline {:.5}); {:.1} steps/s on {} ({} threads)",
        if s.interrupted { "stopped" } else { "done" },
        s.step,
        s.train_loss,
        s.val_loss,
        s.baseline_val_loss / s.val_loss,
        s.baseline_val_loss,
        s.steps_per_sec,
        headlab_model::device_name(s.device),
        s.threads
    );
    println!("checkpoints: {} in {}", s.checkpoints.len(), args.out.join("ckpt").display());
    if s.interrupted {
        println!("resume with: headlab train --out {} --resume", args.out.display());
    }
    Ok(())
}
