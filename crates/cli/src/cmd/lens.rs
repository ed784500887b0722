//! `headlab lens ...`: the paper lenses, each a toy task reproducing a
//! finding, written as HDF5 + PNG plots + an HTML page in an --out folder.
use std::path::PathBuf;

use anyhow::Context;
use headlab_lens::icl::{DataDist, IclConfig};
use headlab_lens::scaling::{ScalingConfig, ScoreScale};

/// The paper lenses. Each subcommand writes NAME.h5 (kind `lens`), PNG plots
/// and index.html into --out.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: LensCommand,
}

#[derive(clap::Subcommand)]
pub enum LensCommand {
    IclRegression(IclArgs),
    Scaling(ScalingArgs),
    ScanSnap(ScanSnapArgs),
    MaxMargin(MaxMarginArgs),
    Physics(PhysicsArgs),
}

/// In-context linear regression with a linear transformer (Ahn et al. 2023,
/// arXiv 2310.01082): the Adam-versus-SGD gap and heavy-tailed gradient noise.
///
/// For every data setting and depth, SGD and Adam are each run over a
/// learning-rate grid at the same step budget and over several seeds; the
/// best LR per optimizer is compared (gap = log10(L_SGD / L_Adam), mean ± std
/// over seeds). Then, along the trajectory of one optimizer at its best LR,
/// the gradient noise (minibatch minus full-batch gradient) is measured at
/// chosen steps: norm and coordinate histograms against Gaussian references,
/// excess kurtosis and Hill tail index. Writes icl.h5, PNGs and index.html.
///
/// Examples:
///   headlab lens icl-regression --out lens/icl
///   headlab lens icl-regression --out lens/icl --data gaussian,student-t:6 --depths 1,2,3 --seeds 0,1,2
///   headlab lens icl-regression --out lens/icl --config icl.toml --curvature
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct IclArgs {
    /// Output folder (created): icl.h5, PNG plots, index.html.
    #[arg(long, default_value = "lens/icl")]
    pub out: PathBuf,
    /// Config TOML (every key optional; the full config is stored in icl.h5).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data settings, comma-separated: gaussian, student-t:NU (independent
    /// coordinates), mv-t:NU (multivariate t).
    #[arg(long, value_delimiter = ',')]
    pub data: Option<Vec<String>>,
    /// Depths (layers), comma-separated, e.g. 1,2,3.
    #[arg(long, value_delimiter = ',')]
    pub depths: Option<Vec<usize>>,
    /// Seeds, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Step budget per run (the same for every optimizer and LR).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Dimension of x.
    #[arg(long)]
    pub d: Option<usize>,
    /// In-context pairs per prompt.
    #[arg(long)]
    pub n: Option<usize>,
    /// Heads per layer.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Clip the gradient norm to this value (0 = off).
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// Steps at which to measure gradient noise, comma-separated (empty to skip).
    #[arg(long, value_delimiter = ',')]
    pub noise_steps: Option<Vec<usize>>,
    /// Also measure the top Hessian eigenvalue and the update's directional smoothness.
    #[arg(long)]
    pub curvature: bool,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: headlab_model::DeviceSpec,
    /// libtorch CPU threads (0 = headlab's default: 1 on machines with 2 cores or fewer, else half the cores, at most 8).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Attention score scaling (Bernhard 2023, arXiv 2311.09406): how softmax
/// saturation and its Jacobian behave under each scale option as the number
/// of keys N and the spread of key lengths grow.
///
/// Queries and keys are i.i.d. normal; each key is multiplied by exp(σ g),
/// g ~ N(0,1). Options: inv-sqrt-d-head (q·k/√d), inv-d-head (q·k/d), none,
/// inv-n (q·k/N), inv-sqrt-n, inv-log-n, inv-key-norm-sum (q·k/Σ_j‖k_j‖).
/// Writes scaling.h5, PNGs and index.html.
///
/// With --run RUN, measures instead the same diagnostics per head on every
/// checkpoint of a physics run (the probe's evaluation frames from
/// RUN/analysis.h5 when it was probed, else a seeded draw from the validation
/// trajectories): fraction of query rows with largest weight > 1 − eps, mean
/// softmax-Jacobian norm and attention entropy. Writes RUN/lens_scaling.h5
/// and RUN/lens_scaling/{scaling_run.png,index.html}.
///
/// Examples:
///   headlab lens scaling --out lens/scaling
///   headlab lens scaling --out lens/scaling --d 32 --ns 8,64,512,4096 --spreads 0,1,2
///   headlab lens scaling --run runs/demo
///   headlab lens scaling --physics --out lens/scaling-physics --particles 16,64
///
/// With --physics, compares the scale options on the physics task instead:
/// the base scene (--scene) copied with each --particles count N (box scaled
/// to keep the packing fraction), simulated, and per option a small model
/// trained at a tiny budget (--steps), probed and measured: validation loss
/// vs no-change, best collision score, first checkpoint with a score >= 0.5,
/// saturation. Writes OUT/scaling_physics.h5, a PNG and index.html (runs in
/// OUT/N<n>_<option>/). Default budget: a few minutes on two cores.
///
/// The three modes exclude each other: --run and --physics cannot be given
/// together, and an option of one mode given in another is refused (--d,
/// --ns, --spreads, --config, --queries and --trials belong to the
/// random-vector study; --scene, --particles and --steps to --physics;
/// --data, --eval-frames and --max-checkpoints to --run).
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ScalingArgs {
    /// Output folder (created): scaling.h5, PNG plots, index.html (with
    /// --physics: scaling_physics.h5 and the runs). Not with --run, which
    /// writes into the run folder.
    #[arg(long, default_value = "lens/scaling", conflicts_with = "run")]
    pub out: PathBuf,
    /// Config TOML (every key optional) of the random-vector study.
    #[arg(long, conflicts_with_all = ["run", "physics"])]
    pub config: Option<PathBuf>,
    /// Query/key width.
    #[arg(long, conflicts_with_all = ["run", "physics"])]
    pub d: Option<usize>,
    /// Numbers of keys, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["run", "physics"])]
    pub ns: Option<Vec<usize>>,
    /// Log-normal key-length spreads σ, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["run", "physics"])]
    pub spreads: Option<Vec<f64>>,
    /// Scale options compared, comma-separated (default: all). Not with
    /// --run, which measures the run's own scale option.
    #[arg(long, value_delimiter = ',', conflicts_with = "run")]
    pub options: Option<Vec<String>>,
    /// A row counts as saturated when its largest weight exceeds 1 − eps.
    #[arg(long)]
    pub eps: Option<f64>,
    /// Compare the scale options on the physics task (see above).
    #[arg(long, conflicts_with = "run")]
    pub physics: bool,
    /// With --physics: the base scene.
    #[arg(long, default_value = "scenes/demo.toml", requires = "physics")]
    pub scene: PathBuf,
    /// With --physics: particle counts, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "physics")]
    pub particles: Option<Vec<usize>>,
    /// With --physics: training steps per run.
    #[arg(long, requires = "physics")]
    pub steps: Option<u64>,
    /// A physics run folder: measure saturation on its checkpoints instead
    /// of the random-vector study.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// With --run: the run's dataset (default: the `data` of RUN/config.toml).
    #[arg(long, requires = "run")]
    pub data: Option<PathBuf>,
    /// With --run: evaluation frames drawn when the run was not probed.
    #[arg(long, default_value_t = 128, requires = "run")]
    pub eval_frames: usize,
    /// With --run: at most this many checkpoints, evenly spaced (0 = all).
    #[arg(long, default_value_t = 0, requires = "run")]
    pub max_checkpoints: usize,
    /// Query rows per key set (random-vector study).
    #[arg(long, conflicts_with_all = ["run", "physics"])]
    pub queries: Option<usize>,
    /// Independent key sets per point (random-vector study).
    #[arg(long, conflicts_with_all = ["run", "physics"])]
    pub trials: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: headlab_model::DeviceSpec,
    /// libtorch CPU threads (0 = headlab's default: 1 on machines with 2 cores or fewer, else half the cores, at most 8).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Scan-and-snap and max-margin on a physics run's heads (needs `headlab
/// probe RUN` first: the fixed evaluation frames of analysis.h5 are reused).
///
/// For every checkpoint not yet done, writes into RUN/lens_physics.h5: each
/// head's row-centred attention logits on the first --freeze-frames
/// evaluation frames (the freeze detector turns their series into a snap
/// step per head), and the att-SVM of each layer — min ‖W‖ such that every
/// sampled query prefers its nearest contact partner p over every other
/// particle j by a margin, q_iᵀ W (a_p − a_j) ≥ 1, with a = ln1(resid_pre),
/// q = [a; 1] — with each head's cosine between [W_Q; b_Q]·W_Kᵀ and W_svm,
/// both restricted to span{q_i} ⊗ span{a_p − a_j} (the only part of W the
/// constraints see). Incremental: run again after more training. Also draws
/// one PNG per head into RUN/lens_physics/; `headlab report` shows them
/// beside the collision score.
///
/// Examples:
///   headlab lens physics runs/demo
///   headlab lens physics runs/demo --svm-queries 48 --freeze-window 200 --freeze-threshold 0.1
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct PhysicsArgs {
    /// Run folder (with ckpt/ and analysis.h5).
    pub run: PathBuf,
    /// Dataset (default: the one analysis.h5 was probed on).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluation frames whose logits are kept for the freeze detector.
    #[arg(long, default_value_t = 16)]
    pub freeze_frames: usize,
    /// (frame, query) pairs with a contact partner sampled for the att-SVM
    /// (each gives N−1−partners constraints; the QP grows with this).
    #[arg(long, default_value_t = 24)]
    pub svm_queries: usize,
    /// Seed of the query sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Partners: interval (in contact during the predicted interval) or overlap (at the input frame).
    #[arg(long, default_value = "interval")]
    pub contact: String,
    /// Freeze window in training steps (the detector is re-applied to all
    /// stored steps on every call, so these three can change freely).
    #[arg(long, default_value_t = 100)]
    pub freeze_window: u64,
    /// Freeze threshold: the head has snapped once the change over the
    /// window stays below this until the end.
    #[arg(long, default_value_t = 0.15)]
    pub freeze_threshold: f32,
    /// Scale of the change: norm (‖Δz‖/‖z‖, default: logits of settled heads
    /// keep growing in size), rms (‖Δz‖/√dim, the toy's) or displacement.
    #[arg(long, default_value = "norm")]
    pub freeze_scale: String,
    /// Discard RUN/lens_physics.h5 and start over.
    #[arg(long)]
    pub fresh: bool,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: headlab_model::DeviceSpec,
    /// libtorch CPU threads (0 = headlab's default: 1 on machines with 2 cores or fewer, else half the cores, at most 8).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Go on even when the dataset's content is not the one the run was
    /// trained on (its fingerprint in RUN/config.toml differs).
    #[arg(long)]
    pub allow_other_data: bool,
}

pub fn run_physics(a: PhysicsArgs) -> anyhow::Result<()> {
    use headlab_analysis::lens_physics::{plot, read_lens_physics};
    use headlab_lens::physics::{run_physics, Contact, PhysicsControl, PhysicsLensConfig};
    let contact = match a.contact.as_str() {
        "interval" => Contact::Interval,
        "overlap" => Contact::Overlap,
        o => anyhow::bail!("--contact {o}: use interval or overlap"),
    };
    let _lock = super::lock_run(&a.run, "headlab lens physics")?;
    headlab_train::set_threads(a.threads);
    let apath = a.run.join("analysis.h5");
    let an = headlab_store::analysis::read_analysis(&apath, false).with_context(|| {
        format!("reading {} (probe the run first: headlab probe {})", apath.display(), a.run.display())
    })?;
    let data = a.data.clone().unwrap_or_else(|| PathBuf::from(&an.dataset));
    let ds = headlab_store::dataset::read_dataset(&data)
        .with_context(|| format!("reading the dataset {} (pass --data)", data.display()))?;
    super::check_run_dataset(&a.run, &ds, &data, a.allow_other_data)?;
    let mut cfg = PhysicsLensConfig {
        freeze_frames: a.freeze_frames,
        svm_queries: a.svm_queries,
        seed: a.seed,
        contact,
        ..Default::default()
    };
    cfg.freeze.window = a.freeze_window;
    cfg.freeze.threshold = a.freeze_threshold;
    cfg.freeze.scale = match a.freeze_scale.as_str() {
        "norm" => headlab_analysis::freeze::FreezeScale::Norm,
        "rms" => headlab_analysis::freeze::FreezeScale::Rms,
        "displacement" => headlab_analysis::freeze::FreezeScale::Displacement,
        o => anyhow::bail!("--freeze-scale {o}: use norm, rms or displacement"),
    };
    let ctl = PhysicsControl { device: a.device, progress: !a.quiet, fresh: a.fresh, ..Default::default() };
    let s = run_physics(&a.run, &ds, &cfg, &ctl)?;
    let lp = read_lens_physics(&s.path)?;
    let figs = a.run.join("lens_physics");
    std::fs::create_dir_all(&figs).with_context(|| format!("creating {}", figs.display()))?;
    plot::head_figures(&figs, "", &an, plot::SCORE_SERIES.name(), &lp, &cfg.freeze)?;
    println!(
        "{}: {} checkpoints added, {} already there; {} SVM constraints per layer; figures in {}",
        s.path.display(),
        s.processed.len(),
        s.skipped,
        s.n_constraints,
        figs.display()
    );
    println!("head    snap step  final SVM cosine (restricted / full)  margin ratio  constraints met");
    for l in 0..lp.n_layers {
        for h in 0..lp.n_heads {
            let last = |n: &str| lp.head_series(n, l, h).and_then(|v| v.last().copied()).unwrap_or(f64::NAN);
            let snap = lp.snap_step(l, h).map(|x| x.to_string()).unwrap_or_else(|| "none".into());
            println!(
                "L{l}.H{h}  {snap:>9}  {:>8.3} / {:<8.3}                   {:>8.3}  {:>6.1} %",
                last("svm_cosine"),
                last("svm_cosine_full"),
                last("svm_margin_ratio"),
                100.0 * last("svm_satisfied")
            );
        }
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        LensCommand::IclRegression(a) => run_icl(a),
        LensCommand::Scaling(a) => run_scaling(a),
        LensCommand::ScanSnap(a) => run_scan_snap(a),
        LensCommand::MaxMargin(a) => run_max_margin(a),
        LensCommand::Physics(a) => run_physics(a),
    }
}

fn read(p: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))
}

fn run_icl(a: IclArgs) -> anyhow::Result<()> {
    let mut c = match &a.config {
        Some(p) => IclConfig::from_toml(&read(p)?, &p.display().to_string())?,
        None => IclConfig::default(),
    };
    if let Some(v) = a.data {
        c.data = v.iter().map(|s| s.parse::<DataDist>()).collect::<Result<_, _>>()?;
    }
    if let Some(v) = a.depths {
        c.depths = v;
    }
    if let Some(v) = a.seeds {
        c.seeds = v;
    }
    if let Some(v) = a.steps {
        c.steps = v;
    }
    if let Some(v) = a.d {
        c.d = v;
    }
    if let Some(v) = a.n {
        c.n = v;
    }
    if let Some(v) = a.heads {
        c.heads = v;
    }
    if let Some(v) = a.clip_norm {
        c.clip_norm = v;
    }
    if let Some(v) = a.noise_steps {
        c.noise.steps = v;
    }
    if a.curvature {
        c.noise.curvature = true;
    }
    c.validate()?;
    headlab_train::set_threads(a.threads);
    let device = a.device.resolve()?;
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "icl-regression [{bar:30}] {pos}/{len} runs  {elapsed_precise} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let r = headlab_lens::icl::run_lens(&c, &a.out, device, Some(&mut progress))?;
    bar.finish_and_clear();
    for g in &r.gaps {
        println!(
            "{:>14} depth {}: SGD {:.4} ± {:.4} (lr {}), Adam {:.4} ± {:.4} (lr {}), log10 gap {:+.3} ± {:.3}",
            g.data.label(),
            g.depth,
            g.sgd.mean,
            g.sgd.std,
            g.sgd.lr,
            g.adam.mean,
            g.adam.std,
            g.adam.lr,
            g.log_gap_mean,
            g.log_gap_std
        );
    }
    println!("wrote {}", a.out.join("index.html").display());
    Ok(())
}

fn run_scaling_run(a: &ScalingArgs, run: &std::path::Path) -> anyhow::Result<()> {
    use headlab_lens::scaling::{run_saturation, write_run_h5, write_run_html, RunSaturationOptions};
    let _lock = super::lock_run(run, "headlab lens scaling")?;
    headlab_train::set_threads(a.threads);
    let data = super::run_data(run, a.data.as_ref())?;
    let ds = headlab_store::dataset::read_dataset(&data)
        .with_context(|| format!("reading the dataset {} (pass --data)", data.display()))?;
    let mut opts = RunSaturationOptions {
        eval_frames: a.eval_frames,
        max_checkpoints: a.max_checkpoints,
        device: a.device.resolve()?,
        ..Default::default()
    };
    if let Some(e) = a.eps {
        opts.eps = e;
    }
    if let Some(s) = a.seed {
        opts.seed = s;
    }
    let r = run_saturation(run, &ds, &opts)?;
    let h5 = run.join("lens_scaling.h5");
    write_run_h5(&h5, &r)?;
    let page = run.join("lens_scaling");
    write_run_html(&page, &r)?;
    println!(
        "{} checkpoints, {} evaluation frames ({}), scale {}; at step {}:",
        r.steps.len(),
        r.frames.len(),
        r.frames_source,
        r.scale,
        r.steps.last().copied().unwrap_or(0)
    );
    println!("head    saturated  max weight  ‖J‖_F    entropy/ln N");
    if let Some(last) = r.sat.last() {
        for (l, layer) in last.iter().enumerate() {
            for (h, s) in layer.iter().enumerate() {
                println!(
                    "L{l}.H{h}  {:>9.3}  {:>10.3}  {:>7.4}  {:>12.3}",
                    s.frac_saturated, s.max_weight, s.jacobian_fro, s.entropy_norm
                );
            }
        }
    }
    println!("wrote {} and {}", h5.display(), page.join("index.html").display());
    Ok(())
}

fn run_scaling_physics(a: &ScalingArgs) -> anyhow::Result<()> {
    use headlab_lens::scaling::physics::{
        run_physics_scaling, write_physics_h5, write_physics_html, PhysicsScalingConfig,
    };
    headlab_train::set_threads(a.threads);
    let mut c = PhysicsScalingConfig { scene: a.scene.display().to_string(), ..Default::default() };
    if let Some(v) = &a.particles {
        c.particles = v.clone();
    }
    if let Some(v) = a.steps {
        c.steps = v;
    }
    if let Some(v) = &a.options {
        c.options = v
            .iter()
            .map(|s| s.parse::<headlab_model::AttentionScale>().map_err(|e| anyhow::anyhow!("--options: {e}")))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(v) = a.eps {
        c.eps = v;
    }
    if let Some(v) = a.seed {
        c.seed = v;
    }
    a.device.resolve()?;
    println!(
        "N     option             val/baseline  best score  AUROC   score>=0.5 at  saturated  entropy/lnN  seconds"
    );
    let r = run_physics_scaling(&c, &a.out, a.device, &mut |_, _, p| {
        let em = if p.emergence_step < 0 { "none".to_string() } else { p.emergence_step.to_string() };
        println!(
            "{:<5} {:<18} {:>12.3}  {:>10.3}  {:>5.3}  {:>13}  {:>9.3}  {:>11.3}  {:>7.0}",
            p.particles,
            p.option.name(),
            p.val_ratio,
            p.best_score,
            p.best_auroc,
            em,
            p.frac_saturated,
            p.entropy_norm,
            p.seconds
        );
    })?;
    write_physics_h5(&a.out.join("scaling_physics.h5"), &r)?;
    write_physics_html(&a.out, &r)?;
    println!("wrote {}", a.out.join("index.html").display());
    Ok(())
}

fn run_scaling(a: ScalingArgs) -> anyhow::Result<()> {
    if let Some(run) = a.run.clone() {
        return run_scaling_run(&a, &run);
    }
    if a.physics {
        return run_scaling_physics(&a);
    }
    let mut c = match &a.config {
        Some(p) => ScalingConfig::from_toml(&read(p)?, &p.display().to_string())?,
        None => ScalingConfig::default(),
    };
    if let Some(v) = a.d {
        c.d = v;
    }
    if let Some(v) = a.ns {
        c.ns = v;
    }
    if let Some(v) = a.spreads {
        c.spreads = v;
    }
    if let Some(v) = a.options {
        c.options = v.iter().map(|s| s.parse::<ScoreScale>()).collect::<Result<_, _>>()?;
    }
    if let Some(v) = a.eps {
        c.eps = v;
    }
    if let Some(v) = a.queries {
        c.queries = v;
    }
    if let Some(v) = a.trials {
        c.trials = v;
    }
    if let Some(v) = a.seed {
        c.seed = v;
    }
    c.validate()?;
    headlab_train::set_threads(a.threads);
    let device = a.device.resolve()?;
    let r = headlab_lens::scaling::run_lens(&c, &a.out, device)?;
    let nmax = *c.ns.iter().max().unwrap_or(&1);
    let smax = c.spreads.iter().cloned().fold(0.0, f64::max);
    println!("at N = {nmax}, key-length spread {smax}:");
    for o in &c.options {
        if let Some(p) = r.get(*o, smax, nmax) {
            println!(
                "  {:>17}: saturated rows {:.3}, ‖J‖_F {:.4}, ‖J‖_F/c {:.2e}, entropy/ln N {:.3}",
                o.name(),
                p.sat.frac_saturated,
                p.sat.jacobian_fro,
                p.effective_jacobian,
                p.sat.entropy_norm
            );
        }
    }
    println!("wrote {}", a.out.join("index.html").display());
    Ok(())
}

/// Scan and snap (Tian et al. 2023, arXiv 2305.16380): a one-layer
/// transformer on a next-token task with co-occurrence structure first scans
/// (attention moves to the tokens distinctive for the label, its entropy
/// falls), then snaps (the attention logits freeze once the decoder fits).
///
/// The task: the label is one of K classes; each context token is, with
/// probability --distinct-prob, one of the label's distinctive tokens,
/// otherwise a common token shared by all labels; the query is last; no
/// positional encoding. Plain SGD, separate constant learning rates for the
/// attention (W_Q, W_K) and the decoder (W_V, W_out). Besides the main run it
/// sweeps the decoder/attention LR ratio (a faster decoder snaps earlier and
/// leaves attention less sparse) and the training-set size (small samples
/// make common tokens look distinctive: accidental co-occurrences).
/// Writes scan_snap.h5, PNGs and index.html.
///
/// Examples:
///   headlab lens scan-snap --out lens/scan-snap
///   headlab lens scan-snap --out lens/scan-snap --lr-ratios 0.1,1,10 --dataset-sizes 16,64,0 --seeds 5
///   headlab lens scan-snap --out lens/scan-snap --config scan_snap.toml
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ScanSnapArgs {
    /// Output folder (created): scan_snap.h5, PNG plots, index.html.
    #[arg(long, default_value = "lens/scan-snap")]
    pub out: PathBuf,
    /// Config TOML (sections task, model, train, freeze, sweep; every key
    /// optional; the full config is stored in scan_snap.h5).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training steps of the main run (and of sweep runs unless sweep.steps is set).
    #[arg(long)]
    pub steps: Option<u64>,
    /// SGD learning rate of W_Q and W_K.
    #[arg(long)]
    pub lr_attention: Option<f64>,
    /// SGD learning rate of W_V, W_out, b_out.
    #[arg(long)]
    pub lr_decoder: Option<f64>,
    /// Number of next-token classes.
    #[arg(long)]
    pub classes: Option<usize>,
    /// Common tokens shared by all classes.
    #[arg(long)]
    pub common: Option<usize>,
    /// Probability that a context token is distinctive.
    #[arg(long)]
    pub distinct_prob: Option<f64>,
    /// Decoder/attention LR ratios to sweep, comma-separated (empty to skip: --lr-ratios=).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub lr_ratios: Option<Vec<f64>>,
    /// Training-set sizes to sweep, comma-separated, 0 = infinite (empty to skip).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub dataset_sizes: Option<Vec<usize>>,
    /// Seeds per dataset size.
    #[arg(long)]
    pub seeds: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// libtorch CPU threads (0 = headlab's default: 1 on machines with 2 cores or fewer, else half the cores, at most 8).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn run_scan_snap(a: ScanSnapArgs) -> anyhow::Result<()> {
    use headlab_lens::scan_snap::{ScanSnapConfig, Trace};
    let mut c = match &a.config {
        Some(p) => ScanSnapConfig::from_toml(&read(p)?, p)?,
        None => ScanSnapConfig::default(),
    };
    if let Some(v) = a.steps {
        c.train.steps = v;
    }
    if let Some(v) = a.lr_attention {
        c.train.lr_attention = v;
    }
    if let Some(v) = a.lr_decoder {
        c.train.lr_decoder = v;
    }
    if let Some(v) = a.classes {
        c.task.n_classes = v;
    }
    if let Some(v) = a.common {
        c.task.n_common = v;
    }
    if let Some(v) = a.distinct_prob {
        c.task.distinct_prob = v;
    }
    if let Some(v) = a.lr_ratios {
        c.sweep.lr_ratios = v;
    }
    if let Some(v) = a.dataset_sizes {
        c.sweep.dataset_sizes = v;
    }
    if let Some(v) = a.seeds {
        c.sweep.seeds = v;
    }
    if let Some(v) = a.seed {
        c.train.seed = v;
    }
    c.validate()?;
    headlab_train::set_threads(a.threads);
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("scan-snap [{bar:30}] {pos}/{len} runs  {msg}  {elapsed_precise}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |stage: &str, done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(stage.to_string());
    };
    let (r, page) = headlab_lens::scan_snap::run_lens(&c, &a.out, Some(&progress))?;
    bar.finish_and_clear();
    let m = &r.main;
    let snap = |s: Option<u64>| s.map(|s| s.to_string()).unwrap_or_else(|| "none".into());
    println!(
        "main run: entropy {:.3} -> {:.3} nats, distinctive mass {:.3} -> {:.3}, common mass {:.3} -> {:.3}, snap at step {}",
        m.entropy[0],
        Trace::last(&m.entropy),
        m.mass_distinct[0],
        Trace::last(&m.mass_distinct),
        m.mass_common[0],
        Trace::last(&m.mass_common),
        snap(m.snap_step)
    );
    for q in &r.lr_sweep {
        println!(
            "  lr_decoder/lr_attention {:>6}: snap at step {:>5}, final entropy {:.3}",
            q.ratio,
            snap(q.trace.snap_step),
            Trace::last(&q.trace.entropy)
        );
    }
    println!("wrote {}", page.display());
    Ok(())
}

/// Max-margin token selection (Tarzanagh et al. 2023, arXiv 2306.13596):
/// gradient descent on the attention of f(X) = vᵀXᵀ softmax(X p) converges in
/// direction to the att-SVM, min ‖p‖ s.t. pᵀ(x_opt − x_t) ≥ 1, which
/// separates each example's optimal token from the others.
///
/// Trains p (v fixed), W in softmax(X W z) (v fixed) and p jointly with v on
/// separable synthetic data; solves the SVMs with the Clarabel QP solver;
/// records the cosine with the SVM solution, the normalized margin and the
/// softmax mass on the optimal token; follows the regularization path
/// argmin_{‖p‖≤R} L(p) for growing R. Writes max_margin.h5, PNGs and index.html.
///
/// Examples:
///   headlab lens max-margin --out lens/max-margin
///   headlab lens max-margin --out lens/max-margin --dim 16 --examples 4 --tokens 3 --plain-gd --lr 1 --steps 20000
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct MaxMarginArgs {
    /// Output folder (created): max_margin.h5, PNG plots, index.html.
    #[arg(long, default_value = "lens/max-margin")]
    pub out: PathBuf,
    /// Config TOML (sections data, train, path; every key optional).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Examples.
    #[arg(long)]
    pub examples: Option<usize>,
    /// Tokens per example.
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Token dimension.
    #[arg(long)]
    pub dim: Option<usize>,
    /// Spread of the non-optimal tokens' scores (0 = equal scores, the
    /// paper's global-convergence setting).
    #[arg(long)]
    pub score_spread: Option<f64>,
    #[arg(long)]
    pub steps: Option<u64>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Plain gradient descent instead of normalized GD (much slower in direction).
    #[arg(long)]
    pub plain_gd: bool,
    /// Variants to train, comma-separated: p, w, joint.
    #[arg(long, value_delimiter = ',')]
    pub variants: Option<Vec<String>>,
    #[arg(long)]
    pub seed: Option<u64>,
}

fn run_max_margin(a: MaxMarginArgs) -> anyhow::Result<()> {
    use headlab_lens::max_margin::{MaxMarginConfig, Variant};
    let mut c = match &a.config {
        Some(p) => MaxMarginConfig::from_toml(&read(p)?, p)?,
        None => MaxMarginConfig::default(),
    };
    if let Some(v) = a.examples {
        c.data.n = v;
    }
    if let Some(v) = a.tokens {
        c.data.tokens = v;
    }
    if let Some(v) = a.dim {
        c.data.dim = v;
    }
    if let Some(v) = a.score_spread {
        c.data.score_spread = v;
    }
    if let Some(v) = a.steps {
        c.train.steps = v;
    }
    if let Some(v) = a.lr {
        c.train.lr = v;
    }
    if a.plain_gd {
        c.train.normalized = false;
    }
    if let Some(v) = a.seed {
        c.data.seed = v;
    }
    if let Some(v) = a.variants {
        c.train.variants = v
            .iter()
            .map(|s| match s.to_ascii_lowercase().as_str() {
                "p" => Ok(Variant::P),
                "w" => Ok(Variant::W),
                "joint" => Ok(Variant::Joint),
                other => Err(anyhow::anyhow!("--variants: unknown variant `{other}`; use p, w or joint")),
            })
            .collect::<anyhow::Result<_>>()?;
    }
    c.validate()?;
    let (r, page) = headlab_lens::max_margin::run_lens(&c, &a.out)?;
    println!("att-SVM: ‖p_mm‖ = {:.4}, {} support constraints", r.p_svm.norm(), r.p_svm.support.len());
    for run in &r.runs {
        let t = &run.trace;
        let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
        print!(
            "  {:>5}: cos with SVM {:.5}, margin ratio {:.4}, optimal-token mass {:.4}",
            run.variant.name(),
            last(&t.cos),
            last(&t.margin_ratio),
            last(&t.opt_mass)
        );
        if let Some(cs) = run.cos_selected {
            print!(" (attention selected other tokens; cos with their SVM {cs:.5})");
        }
        println!();
    }
    if let (Some(f), Some(l)) = (r.path.first(), r.path.last()) {
        println!("  regularization path: cos {:.4} at R = {} -> {:.4} at R = {}", f.cos, f.radius, l.cos, l.radius);
    }
    println!("wrote {}", page.display());
    Ok(())
}
