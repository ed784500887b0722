//! `headlab probe`: measure what every attention head does at every checkpoint.
use std::path::PathBuf;

use anyhow::Context;
use headlab_analysis::heads::run_verdict;
use headlab_probe::run::{probe_run, ProbeControl, ProbeOptions};

/// Probe every checkpoint of a run that is not probed yet: on a fixed set of
/// evaluation frames (drawn once from the run's validation trajectories and
/// stored), run the model with attention hooks and measure per layer × head
/// the collision score (attention mass on contact partners; raw and
/// normalized against uniform attention; self-inclusive and self-excluded),
/// the gating signature (off-self mass for queries in contact vs not), the
/// AUROC of a_ij for "i and j touch during the predicted interval", the
/// attention–distance correlation g(r) and the attention entropy. Results,
/// plus the attention of every head on a few whole validation trajectories
/// (for the viewer), go to RUN/analysis.h5. Running it again only probes new
/// checkpoints.
///
/// Example:
///   headlab probe checkpoints/demo
///   headlab probe checkpoints/demo --eval-frames 256 --contact-factor 1.1 --fresh
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Run folder written by `headlab train`.
    pub run: PathBuf,
    /// Dataset (default: the `data` of RUN/config.toml).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Probe options as a TOML file (keys: eval_frames, seed, contact_factor,
    /// g_edges, cache_trajectories, cache_frames); flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Number of evaluation frames.
    #[arg(long)]
    pub eval_frames: Option<usize>,
    /// Partners at the input frame: closer than FACTOR × (r_i + r_j).
    #[arg(long)]
    pub contact_factor: Option<f32>,
    /// Frames per cached trajectory for the viewer (0: cache nothing).
    #[arg(long)]
    pub cache_frames: Option<usize>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: headlab_model::DeviceSpec,
    /// Frames per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Start over: discard RUN/analysis.h5 (needed after changing options).
    #[arg(long)]
    pub fresh: bool,
    /// Go on even when the dataset's content is not the one the run was
    /// trained on (its fingerprint in RUN/config.toml differs).
    #[arg(long)]
    pub allow_other_data: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let _lock = super::lock_run(&args.run, "headlab probe")?;
    let data = super::run_data(&args.run, args.data.as_ref())?;
    let mut opts = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str::<ProbeOptions>(&text).with_context(|| format!("{}: invalid probe options", p.display()))?
        }
        None => ProbeOptions::default(),
    };
    if let Some(v) = args.eval_frames {
        opts.eval_frames = v;
    }
    if let Some(v) = args.contact_factor {
        opts.contact_factor = v;
    }
    if let Some(v) = args.cache_frames {
        opts.cache_frames = v;
    }
    let ds = headlab_store::dataset::read_dataset(&data)
        .with_context(|| format!("reading the dataset {}", data.display()))?;
    super::check_run_dataset(&args.run, &ds, &data, args.allow_other_data)?;
    let ctl = ProbeControl {
        device: args.device,
        batch: args.batch,
        progress: true,
        fresh: args.fresh,
        save_every: 10,
        threads: 0,
    };
    let s = probe_run(&args.run, &ds, &data, &opts, &ctl)?;
    println!(
        "{}: probed {} checkpoint(s), {} already done, {} evaluation frames",
        s.analysis_path.display(),
        s.probed.len(),
        s.skipped,
        s.n_eval_frames
    );
    let a = headlab_store::analysis::read_analysis(&s.analysis_path, false)?;
    if let Some(v) = run_verdict(&a, None) {
        println!("at step {}: {}", v.step, v.line());
    }
    Ok(())
}
