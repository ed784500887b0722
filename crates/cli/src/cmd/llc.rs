//! `headlab llc`: local learning coefficient by SGLD at a run's checkpoints.
use std::path::PathBuf;

use anyhow::Context;
use headlab_analysis::llc_diag::flag_codes;
use headlab_probe::llc::model::{steps_per_checkpoint, CheckpointLlcOptions, LossConvention};
use headlab_probe::llc::plot::plot_llc;
use headlab_probe::llc::run::{calibrate_run, llc_run, select_checkpoints, LlcRunOptions};
use headlab_probe::llc::select::LadderConfig;
use headlab_probe::llc::LlcConfig;
use headlab_store::checkpoint::list_checkpoints;
use headlab_store::llc::{llc_path, read_llc, LlcSeries};

fn parse_loss(s: &str) -> Result<LossConvention, String> {
    LossConvention::parse(s).ok_or_else(|| format!("`{s}`: expected frame, particle or mse"))
}

/// The ladder of an LLC run given by the command line: none when ε is fixed.
pub fn ladder_from(fixed: bool, epsilons: &[f64], chains: Option<usize>, draws: Option<usize>) -> Option<LadderConfig> {
    if fixed {
        return None;
    }
    let mut lc = LadderConfig::default();
    if !epsilons.is_empty() {
        lc.epsilons = epsilons.to_vec();
    }
    if let Some(c) = chains {
        lc.chains = c;
    }
    if let Some(d) = draws {
        lc.draws = d;
    }
    Some(lc)
}

/// The whole-model estimates of a series as a table: flagged ones in
/// brackets with their flags, those without a step-size plateau marked
/// UNRELIABLE (never printed as a plain result).
pub fn llc_table(series: &LlcSeries) -> String {
    let mut out = format!("{:>10} {:>14} {:>8} {:>9} {:>7}  {}\n", "step", "llc", "se", "epsilon", "failed", "flags");
    let col = |n: &str| series.model_column(n).unwrap_or(&[]).to_vec();
    let (llc_v, se_v) = (col("llc"), col("se"));
    let eps = series.model_diag("epsilon").unwrap_or(&[]).to_vec();
    for (i, st) in series.steps.iter().enumerate() {
        let flags = series.model.flags.get(i).copied().unwrap_or(0);
        let v = if flags == 0 { format!("{:.3}", llc_v[i]) } else { format!("[{:.3}]", llc_v[i]) };
        let note = if flags & 1 != 0 {
            format!("UNRELIABLE: no step-size plateau; {}", flag_codes(flags))
        } else if flags != 0 {
            format!("flagged: {}", flag_codes(flags))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:>10} {:>14} {:>8.3} {:>9.1e} {:>7}  {}\n",
            st,
            v,
            se_v[i],
            eps.get(i).copied().unwrap_or(f64::NAN),
            series.model.n_failed[i],
            note
        ));
        if series.per_head {
            let bad: Vec<String> = (0..series.n_layers)
                .flat_map(|l| (0..series.n_heads).map(move |h| (l, h)))
                .filter_map(|(l, h)| {
                    let f = series.head_flags(l, h)[i];
                    (f != 0).then(|| format!("{l}.{h}: {}", flag_codes(f)))
                })
                .collect();
            if !bad.is_empty() {
                out.push_str(&format!("{:>10}   heads flagged: {}\n", "", bad.join("; ")));
            }
        }
    }
    out
}

/// Estimate the local learning coefficient (LLC) of a run's checkpoints by
/// SGLD around each checkpoint w* (Lau et al.):
///
///   w ← w − (ε/2)·(γ·(w − w*) + nβ·∇L_B(w)) + N(0, ε),   β = 1/ln n,
///   LLC = nβ · mean_t [L_Bt(w_t) − L_Bt(w*)]   (same batch on both sides)
///
/// L is a per-sample negative log-likelihood (--loss): by default a sample
/// is a training frame and L = ½ Σ (y − f)² over its N particles × 2D
/// normalized outputs = N·D × the training MSE, n = training frames, so a
/// regular model tends to d/2 and values compare across particle counts
/// (--loss particle: a sample is a particle, n = frames × N, same nL;
/// --loss mse: the raw training loss, the old convention).
///
/// The step size ε is chosen per estimate (each checkpoint, each head): a
/// ladder of ε (--ladder-epsilons, few draws each, from the largest down)
/// is run, and the largest ε of the plateau where neighbouring estimates
/// agree within 2 standard errors and no chain fails is used for the full
/// estimate; if the ladder at γ has no plateau, 10γ is tried. Every estimate
/// is diagnosed and flagged when it is not to be trusted:
///   no-plateau   the estimate depends on ε (shown in brackets, UNRELIABLE)
///   diverged     chains failed at the chosen ε (excluded)
///   negative     SGLD found lower loss than at the checkpoint
///   not-minimum  the loss keeps falling under SGLD (checkpoint not a minimum)
///   not-settled  nβ·ΔL still rises after burn-in
///   rhat         chains disagree (split R̂ > 1.1)
/// --epsilon fixes ε instead (no ladder; the other flags still apply).
/// With --per-head, each attention head's weight-refined LLC is estimated
/// too (only that head's W_Q, W_K, W_V, W_O slices and biases move).
///
/// Results (estimates, flags, ladders) go to RUN/llc.h5 (merged with
/// earlier calls) and a plot to RUN/llc.png. --calibrate sweeps ε (and γ)
/// with full draws at one checkpoint instead, to look at the ε-dependence.
///
/// Examples:
///   headlab llc checkpoints/demo/run --max-checkpoints 6
///   headlab llc checkpoints/demo/run --per-head --steps 200,400,3000
///   headlab llc checkpoints/demo/run --epsilon 3e-7 --calibrate
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
    /// The per-sample NLL and how n is counted: frame, particle or mse.
    #[arg(long, default_value = "frame", value_parser = parse_loss)]
    pub loss: LossConvention,
    /// A fixed SGLD step size ε (no ladder).
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// Step sizes of the ladder (default: 1e-8 to 1e-4 in half decades).
    #[arg(long, value_delimiter = ',')]
    pub ladder_epsilons: Vec<f64>,
    /// Chains per ladder rung.
    #[arg(long)]
    pub ladder_chains: Option<usize>,
    /// Draws per chain per ladder rung.
    #[arg(long)]
    pub ladder_draws: Option<usize>,
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
    let ladder = ladder_from(args.epsilon.is_some(), &args.ladder_epsilons, args.ladder_chains, args.ladder_draws);
    if let Some(lc) = &ladder {
        lc.validate()?;
    }
    if args.beta.is_some() {
        llc.beta = args.beta;
    }
    llc.validate()?;
    let device = args.device.resolve()?;
    let ds = headlab_store::dataset::read_dataset(&data)?;
    super::check_run_dataset(&args.run, &ds, &data, args.allow_other_data)?;
    let opts = LlcRunOptions {
        checkpoint: CheckpointLlcOptions { llc: llc.clone(), per_head: args.per_head, ladder, loss: args.loss },
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
        for p in cal.points.iter().map(|p| &p.rung) {
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
        print!("{}", llc_table(&series));
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
