//! `headlab ablate`: causal tests of the heads (ablation and activation patching).
use std::path::PathBuf;

use anyhow::Context;
use headlab_analysis::ablation::{effect_sentence, fmt_est, read_ablation, share_sentence, Est, Kind};
use headlab_probe::ablate::{ablate_run, AblateControl, AblateOptions};

/// Causal tests of the heads: ablation and activation patching.
///
/// Does a head that attends to the right particles actually do the work?
/// On the probe's evaluation frames (RUN/analysis.h5: run `headlab probe`
/// first), every head, every whole layer and the group of collision heads
/// (those meeting the probe's bar; --group names others) is ablated in
/// each of these ways:
///
///   zero          the head's output (hook_z) set to 0
///   mean          hook_z replaced by its mean over training frames
///   resample      hook_z taken from another evaluation frame
///   off-self      attention only on the query itself (a_ii = 1): drops what
///                 the head reads from other particles, keeps its self-copy
///   geo-distance  keeps a_ii; off-self attention by distance alone (the
///                 head's own average attention vs distance, on training frames)
///   geo-approach  the same on distance and the distance after one frame of
///                 free flight (distance and approach rate)
///   oracle        keeps a_ii; a contact query's off-self attention evenly on
///                 its true partners (free queries keep the head's own)
///
/// Collision heads park most attention on the query itself, so zero and mean
/// ablation mostly remove the particle's copy of its own state and hurt every
/// particle; off-self ablation and the pattern replacements isolate what the
/// head does with other particles.
///
/// Measured, each as ablated / intact with a 95 % bootstrap interval over the
/// evaluation trajectories (frames of one trajectory are not independent):
/// the one-step error of particles in contact with another particle during
/// the predicted interval and of free particles, their ratio (selectivity),
/// the error of the contact pairs' velocity-change difference; for pattern
/// replacements the share of the off-self damage they repair. At the final
/// checkpoint also: rollouts (16 validation trajectories from frame 0) with
/// the collision heads, each layer and the group ablated, position error
/// after 10 and 50 frames; and activation
/// patching on counterfactual pairs (a frame where i and j touch, and a copy
/// with j moved to the nearest spot where it touches nothing during the
/// interval, velocities kept): per head (hook_z) and per layer (residual
/// stream), at the query i, the share of the clean-vs-corrupted difference
/// in i's predicted velocity change restored by patching clean into
/// corrupted (denoising) and destroyed by patching corrupted into clean
/// (noising): Σ (patched − corrupted)·(clean − corrupted) / Σ |clean −
/// corrupted|² over pairs, with a bootstrap interval over pairs.
///
/// Checkpoints: by default 12: the last, half log-spaced around the emergence
/// window of the collision score (from analysis.h5), the rest log-spaced over
/// the run. Results go to RUN/ablation.h5 after each checkpoint; running it
/// again resumes. `headlab report` draws them (section "Causal evidence").
///
/// Examples:
///   headlab ablate checkpoints/demo/run
///   headlab ablate checkpoints/demo/run --kinds zero,off-self --steps 300,3000
///   headlab ablate checkpoints/demo/run --group L1.H0,L1.H1 --fresh
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Run folder, trained and probed.
    pub run: PathBuf,
    /// Dataset (default: the `data` of RUN/config.toml).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Ablation kinds, comma-separated (default: all; see above).
    #[arg(long, value_delimiter = ',')]
    pub kinds: Option<Vec<String>>,
    /// Heads ablated together as the group `collision`, e.g. L1.H0,L1.H1
    /// (default: the heads meeting the probe's collision-head bar).
    #[arg(long, value_delimiter = ',')]
    pub group: Option<Vec<String>>,
    /// Checkpoint steps to ablate, comma-separated (default: --n-steps chosen).
    #[arg(long, value_delimiter = ',')]
    pub steps: Option<Vec<u64>>,
    /// Number of checkpoints chosen when --steps is not given.
    #[arg(long, default_value_t = 12)]
    pub n_steps: usize,
    /// Training frames for the mean ablation and the geometry patterns.
    #[arg(long)]
    pub train_frames: Option<usize>,
    /// Bootstrap resamples.
    #[arg(long)]
    pub bootstrap: Option<usize>,
    /// Rollouts at the final checkpoint (0: none).
    #[arg(long)]
    pub rollouts: Option<usize>,
    /// Counterfactual pairs for activation patching (0: none).
    #[arg(long)]
    pub patch_pairs: Option<usize>,
    /// Seed of the random choices.
    #[arg(long)]
    pub seed: Option<u64>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: headlab_model::DeviceSpec,
    /// Start over: discard RUN/ablation.h5 (needed after changing options).
    #[arg(long)]
    pub fresh: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // ablate writes RUN/ablation.h5: one writer per run folder.
    let _lock = super::lock_run(&args.run, "headlab ablate")?;
    let data = super::run_data(&args.run, args.data.as_ref())?;
    let mut opts = AblateOptions::default();
    if let Some(k) = args.kinds {
        opts.kinds = k;
    }
    if let Some(g) = args.group {
        opts.group = g;
    }
    if let Some(v) = args.train_frames {
        opts.train_frames = v;
    }
    if let Some(v) = args.bootstrap {
        opts.bootstrap = v;
    }
    if let Some(v) = args.rollouts {
        opts.rollouts = v;
    }
    if let Some(v) = args.patch_pairs {
        opts.patch_pairs = v;
    }
    if let Some(v) = args.seed {
        opts.seed = v;
    }
    opts.validate()?;
    let ds = headlab_store::dataset::read_dataset(&data)
        .with_context(|| format!("reading the dataset {}", data.display()))?;
    let ctl = AblateControl {
        device: args.device,
        steps: args.steps,
        n_steps: args.n_steps,
        progress: true,
        fresh: args.fresh,
        threads: 0,
    };
    let s = ablate_run(&args.run, &ds, &opts, &ctl)?;
    println!(
        "{}: ablated {} checkpoint(s) ({} already done) in {:.1}s",
        s.path.display(),
        s.done.len(),
        s.skipped,
        s.seconds
    );
    let a = read_ablation(&s.path)?;
    let Some(last) = a.steps.len().checked_sub(1) else { return Ok(()) };
    println!("at step {}:", a.steps[last]);
    let shown: Vec<usize> = match a.group() {
        Some(g) => {
            let mut v: Vec<usize> =
                g.heads.iter().filter_map(|&(l, h)| a.target_index(&format!("L{l}.H{h}"))).collect();
            v.extend(a.target_index("collision"));
            v
        }
        None => (0..a.targets.len()).collect(),
    };
    for t in shown {
        for k in [Kind::Zero, Kind::OffSelf] {
            if let Some(line) = effect_sentence(&a, last, t, k) {
                println!("  {line}");
            }
        }
        for k in [Kind::GeoDistance, Kind::GeoApproach, Kind::Oracle] {
            if let (Some(ki), Some(_)) = (a.kind_index(k), a.kind_index(Kind::OffSelf)) {
                println!("    {}", share_sentence(k, a.onestep_est("share_of_offself", last, t, ki)));
            }
        }
    }
    if let Some(p) = &a.patching {
        println!("activation patching ({} pairs; median |Δv_clean − Δv_corrupted| of the query {:.3e}, median true |Δv| {:.3e}):", p.n_pairs, p.median_gap, p.median_true_dv);
        for (i, site) in p.sites.iter().enumerate() {
            println!(
                "  {site}: restores {} when patched clean→corrupted, destroys {} corrupted→clean",
                fmt_est(Est::from_slice(&p.denoise[i * 3..i * 3 + 3])),
                fmt_est(Est::from_slice(&p.noise[i * 3..i * 3 + 3]))
            );
        }
    }
    println!("draw the figures with: headlab report {}", args.run.display());
    Ok(())
}
