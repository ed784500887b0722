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
    pub device: String,
    /// libtorch CPU threads (0 = libtorch's default).
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
/// Examples:
///   headlab lens scaling --out lens/scaling
///   headlab lens scaling --out lens/scaling --d 32 --ns 8,64,512,4096 --spreads 0,1,2
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ScalingArgs {
    /// Output folder (created): scaling.h5, PNG plots, index.html.
    #[arg(long, default_value = "lens/scaling")]
    pub out: PathBuf,
    /// Config TOML (every key optional).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Query/key width.
    #[arg(long)]
    pub d: Option<usize>,
    /// Numbers of keys, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub ns: Option<Vec<usize>>,
    /// Log-normal key-length spreads σ, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub spreads: Option<Vec<f64>>,
    /// Scale options compared, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub options: Option<Vec<String>>,
    /// A row counts as saturated when its largest weight exceeds 1 − eps.
    #[arg(long)]
    pub eps: Option<f64>,
    /// Query rows per key set.
    #[arg(long)]
    pub queries: Option<usize>,
    /// Independent key sets per point.
    #[arg(long)]
    pub trials: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch CPU threads (0 = libtorch's default).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        LensCommand::IclRegression(a) => run_icl(a),
        LensCommand::Scaling(a) => run_scaling(a),
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
    headlab_lens::icl::set_torch_threads(a.threads);
    let device = headlab_model::parse_device(&a.device)?;
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("icl-regression [{bar:30}] {pos}/{len} runs  {elapsed_precise} (eta {eta})")
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

fn run_scaling(a: ScalingArgs) -> anyhow::Result<()> {
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
    headlab_lens::icl::set_torch_threads(a.threads);
    let device = headlab_model::parse_device(&a.device)?;
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
