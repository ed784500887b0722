//! `headlab llc`: local learning coefficient by SGLD at a run's checkpoints.
use std::path::PathBuf;

use anyhow::Context;
use headlab_probe::llc::model::{steps_per_checkpoint, CheckpointLlcOptions};
use headlab_probe::llc::plot::plot_llc;
use headlab_probe::llc::run::{calibrate_run, llc_run, select_checkpoints, LlcRunOptions};
use headlab_probe::llc::LlcConfig;
use headlab_store::checkpoint::list_checkpoints;
use headlab_store::llc::{llc_path, read_llc};

/// Estimate the local learning coefficient (LLC) of a run's checkpoints by
/// SGLD around each checkpoint w* (Lau et al.):
///
///   w ← w − (ε/2)·(γ·(w − w*) + nβ·∇L_B(w)) + N(0, ε),   β = 1/ln n,
///   LLC = nβ · mean_t [L_Bt(w_t) − L_Bt(w*)]   (same batch on both sides)
///
/// n is the number of training frames, L the model's training loss (MSE of
/// normalized targets). Chains run in parallel, seeded. A chain that goes
/// non-finite or diverges is excluded and reported with a suggested smaller
/// ε; a loss that drifts down along the chains (checkpoint not at a minimum)
/// is warned about. With --per-head, each attention head's weight-refined
/// LLC is estimated too (only that head's W_Q, W_K, W_V, W_O slices and
/// biases move).
///
/// Results go to RUN/llc.h5 (merged with earlier calls) and a plot to
/// RUN/llc.png. Pick ε first with --calibrate: it sweeps ε (and γ) at one
/// checkpoint and recommends the largest step whose estimate agrees with
/// its neighbours'.
///
/// Examples:
///   headlab llc checkpoints/demo --calibrate
///   headlab llc checkpoints/demo --epsilon 3e-5 --per-head --max-checkpoints 12
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Run folder written by `headlab train`.
    pub run: PathBuf,
    /// Dataset (default: the `data` of RUN/config.toml).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// LLC settings as a TOML file (keys: epsilon, gamma, beta, chains, draws,
    /// burn_in, batch_size, seed, threads, divergence_threshold); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also each head's weight-refined LLC.
    #[arg(long)]
    pub per_head: bool,
    /// SGLD step size ε.
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// Localization strength γ.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Inverse temperature β (default 1/ln n).
    #[arg(long)]
    pub beta: Option<f64>,
    /// Independent chains.
    #[arg(long)]
    pub chains: Option<usize>,
    /// SGLD draws (steps) per chain.
    #[arg(long)]
    pub draws: Option<usize>,
    /// Fraction of draws discarded as burn-in.
    #[arg(long)]
    pub burn_in: Option<f64>,
    /// Frames per SGLD minibatch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of the chains.
    #[arg(long)]
    pub seed: Option<u64>,
    /// CPU threads (0: all).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Only these checkpoint steps (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<u64>,
    /// At most this many checkpoints, evenly spread over training (0: all).
    #[arg(long, default_value_t = 0)]
    pub max_checkpoints: usize,
    /// Sweep ε (and γ) at one checkpoint instead (the last, or --steps' first).
    #[arg(long)]
    pub calibrate: bool,
    /// Step sizes for --calibrate.
    #[arg(long, value_delimiter = ',', default_value = "1e-6,3e-6,1e-5,3e-5,1e-4,3e-4,1e-3")]
    pub epsilons: Vec<f64>,
    /// Localization strengths for --calibrate (default: the γ in use).
    #[arg(long, value_delimiter = ',')]
    pub gammas: Vec<f64>,
    /// Calibrate one head (LAYER.HEAD) instead of the whole model.
    #[arg(long)]
    pub head: Option<String>,
    /// Recompute checkpoints already in RUN/llc.h5.
    #[arg(long)]
    pub recompute: bool,
    /// Start RUN/llc.h5 afresh (needed after changing settings).
    #[arg(long)]
    pub fresh: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: headlab_model::DeviceSpec,
    /// Go on even when the dataset's content is not the one the run was
    /// trained on (its fingerprint in RUN/config.toml differs).
    #[arg(long)]
    pub allow_other_data: bool,
}

fn bar(len: u64) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} SGLD steps ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let _lock = super::lock_run(&args.run, "headlab llc")?;
    let data = super::run_data(&args.run, args.data.as_ref())?;
    let mut llc = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str::<LlcConfig>(&text).with_context(|| format!("{}: invalid LLC settings", p.display()))?
        }
        None => LlcConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = args.$f { llc.$f = v; } )* };
    }
    set!(epsilon, gamma, chains, draws, burn_in, batch_size, seed, threads);
    if args.beta.is_some() {
        llc.beta = args.beta;
    }
    llc.validate()?;
    let device = args.device.resolve()?;
    let ds = headlab_store::dataset::read_dataset(&data)?;
    super::check_run_dataset(&args.run, &ds, &data, args.allow_other_data)?;
    let opts = LlcRunOptions {
        checkpoint: CheckpointLlcOptions { llc: llc.clone(), per_head: args.per_head },
        steps: args.steps.clone(),
        max_checkpoints: args.max_checkpoints,
        recompute: args.recompute,
        fresh: args.fresh,
        device,
    };
    let png = args.run.join("llc.png");
    if args.calibrate {
        let gammas = if args.gammas.is_empty() { vec![llc.gamma] } else { args.gammas.clone() };
        let head = match &args.head {
            None => None,
            Some(s) => {
                let (l, h) = s.split_once('.').context("--head must be LAYER.HEAD, e.g. 1.0")?;
                Some((l.parse::<usize>().context("--head layer")?, h.parse::<usize>().context("--head head")?))
            }
        };
        let b = bar((args.epsilons.len() * gammas.len() * llc.chains * llc.draws) as u64);
        let inc = |n: u64| b.inc(n);
        let (step, cal) = calibrate_run(
            &args.run,
            &ds,
            &opts,
            args.steps.first().copied(),
            head,
            &args.epsilons,
            &gammas,
            Some(&inc),
        )?;
        b.finish_and_clear();
        println!("calibration at step {step}{}:", head.map(|(l, h)| format!(", head {l}.{h}")).unwrap_or_default());
        println!("  {:>10} {:>8} {:>12} {:>10} {:>8}", "epsilon", "gamma", "llc", "se", "failed");
        for p in &cal.points {
            println!(
                "  {:>10.1e} {:>8} {:>12.4} {:>10.4} {:>5}/{}",
                p.epsilon, p.gamma, p.llc, p.se, p.n_failed, p.chains
            );
        }
        println!("{}", cal.note);
    } else {
        let all = list_checkpoints(&args.run)?;
        let chosen = select_checkpoints(&all, &args.steps, args.max_checkpoints)?;
        let first = chosen.first().context("no checkpoints; train the run first")?;
        let model_cfg = headlab_model::model_config_from_run_toml(
            &headlab_store::checkpoint::read_checkpoint(&first.1)?.config_toml,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", first.1.display()))?;
        let b = bar(chosen.len() as u64 * steps_per_checkpoint(&model_cfg, &opts.checkpoint));
        let inc = |n: u64| b.inc(n);
        let summary = llc_run(&args.run, &ds, &opts, Some(&inc))?;
        b.finish_and_clear();
        for (step, w) in &summary.warnings {
            eprintln!("warning: step {step}: {w}");
        }
        let series = read_llc(&summary.path)?;
        println!("{:>10} {:>10} {:>8} {:>7}", "step", "llc", "se", "failed");
        let (llc_v, se_v) = (series.model_column("llc").unwrap_or(&[]), series.model_column("se").unwrap_or(&[]));
        for (i, st) in series.steps.iter().enumerate() {
            println!("{:>10} {:>10.3} {:>8.3} {:>7}", st, llc_v[i], se_v[i], series.model.n_failed[i]);
        }
        println!(
            "estimated {} checkpoint(s), skipped {} already in {}",
            summary.estimated.len(),
            summary.skipped,
            summary.path.display()
        );
    }
    let series = read_llc(&llc_path(&args.run))?;
    plot_llc(&series, &png)?;
    println!("plot: {}", png.display());
    Ok(())
}
