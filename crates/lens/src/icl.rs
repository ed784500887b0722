//! In-context linear regression with linear attention (Ahn et al. 2023,
//! "Linear attention is (maybe) all you need (to understand transformer
//! optimization)", arXiv 2310.01082).
//!
//! # The task
//! Each prompt holds `n` pairs (x_i, y_i = wᵀx_i + σ·ε_i) and a query x_q,
//! with w ~ N(0, I_d) drawn per prompt. The covariates are
//! - `gaussian`: x ~ N(0, I_d);
//! - `student-t:ν`: every coordinate an independent Student-t with ν degrees
//!   of freedom;
//! - `mv-t:ν`: multivariate t, x = g / sqrt(χ²_ν/ν) with g ~ N(0, I_d), one
//!   χ² per vector (heavy-tailed norms, an elliptical distribution).
//!
//! With `standardize = true` (default) t covariates are rescaled to unit
//! variance (needs ν > 2), so only the tails differ from the Gaussian case.
//! The prompt is the matrix Z₀ ∈ R^{(d+1)×(n+1)} whose columns are
//! (x_i; y_i) and (x_q; 0).
//!
//! # The model
//! Z_{l+1} = Z_l + (1/n) Σ_h W^{PV}_{l,h} Z_l M (Z_lᵀ W^{KQ}_{l,h} Z_l),
//! M = diag(1,…,1,0) masks the query column out of the keys/values; the
//! prediction is ŷ = −[Z_L]_{d+1,n+1} (the query's label slot). Parameters
//! W^{PV}, W^{KQ} ∈ R^{(d+1)×(d+1)} per layer and head, initialized i.i.d.
//! N(0, init_std²). Loss: mean squared error (ŷ − y_q)².
//!
//! # The experiments
//! - [`run_sweep`]: for each data setting × depth × optimizer (SGD, Adam), a
//!   learning-rate sweep at a matched step budget over several seeds. For each
//!   optimizer the best LR is the one with the lowest geometric-mean final
//!   loss over seeds (a seed that diverged counts as +∞); the Adam-vs-SGD gap
//!   is then computed per seed at those LRs, as `log10(L_SGD / L_Adam)`
//!   (positive: Adam better) and as `L_SGD − L_Adam`, with mean and standard
//!   deviation over seeds.
//! - Gradient noise: along the trajectory of a chosen optimizer at its best
//!   LR, at chosen steps, the noise ξ = g_batch − g_full (minibatch gradient
//!   minus the full training-set gradient) over many minibatches; its norm
//!   against a Gaussian reference with the same per-coordinate variances, its
//!   per-coordinate values (standardized per coordinate, pooled) against
//!   N(0,1), excess kurtosis and Hill tail index (see [`crate::noise`]).
//! - Curvature (optional): the top Hessian eigenvalue of the full-batch loss by
//!   power iteration on Hessian-vector products (double backward), and the
//!   directional smoothness uᵀHu/‖u‖² of the optimizer's actual update u.
//!
//! A caution on heavy tails: Z_{l+1} is cubic in Z_l, so the prediction of a
//! depth-L model is a polynomial of degree 3^L in the prompt and the squared
//! loss has degree 2·3^L. With Student-t covariates the expected loss is
//! finite only for ν > 2·3^L (ν > 6 at depth 1, > 18 at depth 2): below that,
//! training and evaluation losses are dominated by rare prompts, which is
//! part of what the lens shows (default heavy-tailed setting: `student-t:6`).
//!
//! Training uses a fixed training set of `n_train` prompts (so that the
//! full-batch gradient is well defined), minibatches drawn with replacement,
//! and reports the loss on `n_eval` fresh prompts.
//!
//! Layout (as `max_margin/`): this file holds the configuration, the result
//! types and the sweep; [`data`] the prompts, [`model`] the linear
//! transformer and its derivatives, `train` one training run and the noise
//! measurements along it, `output` `icl.h5` and the HTML page.

pub mod data;
pub mod model;
mod output;
mod train;

pub use data::{sample_prompts, Prompts, TaskData};
pub use model::{hvp, top_eigenvalue, LinearTransformer};
pub use output::{write_h5, write_html};

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::config::{parse_toml, ConfigError};
use crate::noise::{self, NoiseStats};
use headlab_sim::stats::{mean_std, Spread};
use train::{train_run, Probe};

/// Errors of the in-context regression lens.
#[derive(Debug, thiserror::Error)]
pub enum IclError {
    /// Passed through from `ConfigError`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Shown as "icl: data setting '{0}' is not understood; use 'gaussian', 'student-t:NU' or 'mv-t:NU' ...".
    #[error("icl: data setting `{0}` is not understood; use `gaussian`, `student-t:NU` or `mv-t:NU` (NU > 0 degrees of freedom, e.g. student-t:3)")]
    Data(String),
    /// Passed through from `headlab_store::StoreError`.
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    /// Passed through from `noise::NoiseError`.
    #[error(transparent)]
    Noise(#[from] noise::NoiseError),
    /// Shown as "icl: writing {path}: {msg}".
    #[error("icl: writing {path}: {msg}")]
    Output {
        /// The file or folder concerned.
        path: String,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// Shown as "icl: torch error: {0}".
    #[error("icl: torch error: {0}")]
    Torch(#[from] tch::TchError),
}

fn bad(key: &str, value: impl fmt::Display, hint: &str) -> IclError {
    ConfigError::invalid("icl", key, value, hint).into()
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Distribution of the covariates x. Written `gaussian`, `student-t:3`, `mv-t:3`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataDist {
    /// Standard normal coordinates.
    Gaussian,
    /// Independent Student-t coordinates with this many degrees of freedom.
    StudentT(f64),
    /// Multivariate t: one χ² scale per vector.
    MultiT(f64),
}

impl DataDist {
    /// The setting as written in configs (`gaussian`, `student-t:3`, ...).
    pub fn label(&self) -> String {
        String::from(*self)
    }
    /// Degrees of freedom (∞ for the Gaussian).
    pub fn dof(&self) -> f64 {
        match self {
            DataDist::Gaussian => f64::INFINITY,
            DataDist::StudentT(v) | DataDist::MultiT(v) => *v,
        }
    }
}

impl From<DataDist> for String {
    fn from(d: DataDist) -> String {
        match d {
            DataDist::Gaussian => "gaussian".into(),
            DataDist::StudentT(v) => format!("student-t:{v}"),
            DataDist::MultiT(v) => format!("mv-t:{v}"),
        }
    }
}

impl TryFrom<String> for DataDist {
    type Error = IclError;
    fn try_from(s: String) -> Result<Self, IclError> {
        s.parse()
    }
}

impl std::str::FromStr for DataDist {
    type Err = IclError;
    fn from_str(s: &str) -> Result<Self, IclError> {
        let t = s.trim().to_ascii_lowercase();
        if t == "gaussian" || t == "normal" {
            return Ok(DataDist::Gaussian);
        }
        let (kind, nu) = t.split_once(':').ok_or_else(|| IclError::Data(s.into()))?;
        let nu: f64 = nu.trim().parse().map_err(|_| IclError::Data(s.into()))?;
        if !(nu > 0.0 && nu.is_finite()) {
            return Err(IclError::Data(s.into()));
        }
        match kind.trim() {
            "student-t" | "t" => Ok(DataDist::StudentT(nu)),
            "mv-t" | "multivariate-t" => Ok(DataDist::MultiT(nu)),
            _ => Err(IclError::Data(s.into())),
        }
    }
}

/// Optimizers compared by the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Optim {
    /// SGD (with momentum `sgd_momentum`).
    Sgd,
    /// Adam.
    Adam,
}

impl Optim {
    /// `sgd` or `adam`.
    pub fn name(&self) -> &'static str {
        match self {
            Optim::Sgd => "sgd",
            Optim::Adam => "adam",
        }
    }
}

/// The whole experiment. Every field has a default (`IclConfig::default()`
/// is a small CPU-friendly run); `validate` checks ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IclConfig {
    /// Dimension of x.
    pub d: usize,
    /// Number of in-context pairs per prompt.
    pub n: usize,
    /// Data settings compared (e.g. ["gaussian", "student-t:3"]).
    pub data: Vec<DataDist>,
    /// Rescale t covariates to unit variance (needs ν > 2).
    pub standardize: bool,
    /// Standard deviation σ of the label noise.
    pub label_noise: f64,
    /// Depths (number of layers) compared.
    pub depths: Vec<usize>,
    /// Heads per layer.
    pub heads: usize,
    /// Standard deviation of the initial weights.
    pub init_std: f64,
    /// Training-set size (prompts); minibatches are drawn from it.
    pub n_train: usize,
    /// Evaluation-set size (fresh prompts).
    pub n_eval: usize,
    /// Minibatch size.
    pub batch: usize,
    /// Step budget, the same for every optimizer and LR.
    pub steps: usize,
    /// Evaluate every this many steps (and at the end).
    pub eval_every: usize,
    /// Learning rates tried for SGD.
    pub sgd_lrs: Vec<f64>,
    /// SGD momentum (0 = plain SGD).
    pub sgd_momentum: f64,
    /// Learning rates tried for Adam.
    pub adam_lrs: Vec<f64>,
    /// Adam's first-moment decay.
    pub adam_beta1: f64,
    /// Adam's second-moment decay.
    pub adam_beta2: f64,
    /// Adam's denominator epsilon.
    pub adam_eps: f64,
    /// Clip the global gradient norm to this value (0 = no clipping). On by
    /// default (1.0): without it a single heavy-tailed prompt can throw any
    /// learning rate off, and the sweep then compares divergences rather than
    /// optimizers. Set 0 to see that regime.
    pub clip_norm: f64,
    /// Seeds: each gives its own data, initialization and minibatch order
    /// (shared between optimizers, so that they are compared on equal terms).
    pub seeds: Vec<u64>,
    /// A final loss above `diverge_factor` × the trivial loss E[y²] counts as diverged.
    pub diverge_factor: f64,
    /// Gradient-noise measurement (set `noise.steps = []` to skip).
    pub noise: NoiseConfig,
}

/// Where and how gradient noise (and optionally curvature) is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoiseConfig {
    /// Training steps at which to measure (0 = at initialization). Empty: no measurement.
    pub steps: Vec<usize>,
    /// Trajectory followed: that optimizer at its best LR from the sweep.
    pub optimizer: Optim,
    /// Number of minibatch gradients per measurement.
    pub minibatches: usize,
    /// Hill estimator k (0 = √(number of values)).
    pub hill_k: usize,
    /// Histogram bins.
    pub bins: usize,
    /// Also measure the top Hessian eigenvalue and the directional smoothness of the update.
    pub curvature: bool,
    /// Power-iteration steps for the top eigenvalue.
    pub power_iters: usize,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        NoiseConfig {
            steps: vec![0, 100, 400],
            optimizer: Optim::Adam,
            minibatches: 256,
            hill_k: 0,
            bins: 40,
            curvature: false,
            power_iters: 20,
        }
    }
}

impl Default for IclConfig {
    fn default() -> Self {
        IclConfig {
            d: 5,
            n: 20,
            data: vec![DataDist::Gaussian, DataDist::StudentT(6.0)],
            standardize: true,
            label_noise: 0.0,
            depths: vec![1, 2, 3],
            heads: 1,
            init_std: 0.1,
            n_train: 4096,
            n_eval: 2048,
            batch: 32,
            steps: 400,
            eval_every: 50,
            sgd_lrs: vec![0.003, 0.01, 0.03, 0.1, 0.3],
            sgd_momentum: 0.0,
            adam_lrs: vec![0.001, 0.003, 0.01, 0.03, 0.1],
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            clip_norm: 1.0,
            seeds: vec![0, 1, 2],
            diverge_factor: 100.0,
            noise: NoiseConfig::default(),
        }
    }
}

impl IclConfig {
    /// Parse a TOML config (all keys optional) and validate it.
    pub fn from_toml(text: &str, path: &str) -> Result<Self, IclError> {
        let c: IclConfig = parse_toml("icl", text, path)?;
        c.validate()?;
        Ok(c)
    }

    /// The config as TOML (stored in the output file).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        crate::config::to_toml("icl", self)
    }

    /// Check every range in one place.
    pub fn validate(&self) -> Result<(), IclError> {
        if !(1..=256).contains(&self.d) {
            return Err(bad("d", self.d, "use 1..=256 (the paper uses 5)"));
        }
        if !(1..=4096).contains(&self.n) {
            return Err(bad("n", self.n, "use 1..=4096 in-context pairs (the paper uses 20)"));
        }
        if self.data.is_empty() {
            return Err(bad("data", "[]", "list at least one data setting, e.g. [\"gaussian\"]"));
        }
        for d in &self.data {
            if self.standardize && d.dof() <= 2.0 {
                return Err(bad(
                    "data",
                    d.label(),
                    "t covariates with ν <= 2 have infinite variance; use ν > 2 or set standardize = false",
                ));
            }
        }
        if !(self.label_noise >= 0.0 && self.label_noise.is_finite()) {
            return Err(bad("label_noise", self.label_noise, "use a standard deviation >= 0"));
        }
        if self.depths.is_empty() || self.depths.iter().any(|&l| !(1..=8).contains(&l)) {
            return Err(bad("depths", format!("{:?}", self.depths), "list depths in 1..=8 (the paper uses 1 to 4)"));
        }
        if !(1..=16).contains(&self.heads) {
            return Err(bad("heads", self.heads, "use 1..=16 heads per layer"));
        }
        if !(self.init_std > 0.0 && self.init_std.is_finite()) {
            return Err(bad("init_std", self.init_std, "use a positive standard deviation, e.g. 0.1"));
        }
        if self.batch == 0 || self.batch > self.n_train {
            return Err(bad("batch", self.batch, "use 1..=n_train"));
        }
        if self.n_eval == 0 {
            return Err(bad("n_eval", 0, "use at least 1 evaluation prompt"));
        }
        if self.steps == 0 {
            return Err(bad("steps", 0, "use at least 1 training step"));
        }
        if self.eval_every == 0 {
            return Err(bad("eval_every", 0, "use at least 1"));
        }
        for (key, lrs) in [("sgd_lrs", &self.sgd_lrs), ("adam_lrs", &self.adam_lrs)] {
            if lrs.is_empty() || lrs.iter().any(|&x| !(x > 0.0 && x.is_finite())) {
                return Err(bad(key, format!("{lrs:?}"), "list at least one positive learning rate"));
            }
        }
        if !(0.0..1.0).contains(&self.sgd_momentum) {
            return Err(bad("sgd_momentum", self.sgd_momentum, "use 0 <= momentum < 1"));
        }
        if !(0.0..1.0).contains(&self.adam_beta1) || !(0.0..1.0).contains(&self.adam_beta2) {
            return Err(bad(
                "adam_beta1/adam_beta2",
                format!("{}/{}", self.adam_beta1, self.adam_beta2),
                "use betas in [0, 1)",
            ));
        }
        if !(self.adam_eps > 0.0) {
            return Err(bad("adam_eps", self.adam_eps, "use a small positive number, e.g. 1e-8"));
        }
        if !(self.clip_norm >= 0.0 && self.clip_norm.is_finite()) {
            return Err(bad("clip_norm", self.clip_norm, "use 0 (off) or a positive norm"));
        }
        if self.seeds.is_empty() {
            return Err(bad("seeds", "[]", "list at least one seed"));
        }
        if !(self.diverge_factor > 1.0) {
            return Err(bad("diverge_factor", self.diverge_factor, "use a factor > 1, e.g. 100"));
        }
        let nz = &self.noise;
        if let Some(&s) = nz.steps.iter().find(|&&s| s > self.steps) {
            return Err(bad("noise.steps", s, "measurement steps must be <= steps"));
        }
        if !nz.steps.is_empty() && nz.minibatches < 8 {
            return Err(bad(
                "noise.minibatches",
                nz.minibatches,
                "use at least 8 minibatches (256 or more for tail estimates)",
            ));
        }
        if nz.bins == 0 {
            return Err(bad("noise.bins", 0, "use at least 1 bin"));
        }
        if nz.curvature && nz.power_iters == 0 {
            return Err(bad("noise.power_iters", 0, "use at least 1 power-iteration step"));
        }
        Ok(())
    }

    /// E[y_q²]: the loss of always predicting 0 (x has unit variance per coordinate).
    pub fn trivial_loss(&self, dist: DataDist) -> f64 {
        let var_x = match dist {
            DataDist::Gaussian => 1.0,
            _ if self.standardize => 1.0,
            // Unit-scale t: variance ν/(ν−2), infinite for ν <= 2.
            d if d.dof() > 2.0 => d.dof() / (d.dof() - 2.0),
            _ => f64::INFINITY,
        };
        self.d as f64 * var_x + self.label_noise * self.label_noise
    }

    fn lrs(&self, o: Optim) -> &[f64] {
        match o {
            Optim::Sgd => &self.sgd_lrs,
            Optim::Adam => &self.adam_lrs,
        }
    }
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

/// One training run of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Data setting.
    pub data: DataDist,
    /// Layers.
    pub depth: usize,
    /// Optimizer.
    pub optim: Optim,
    /// Learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
    /// Steps at which the eval loss was recorded.
    pub eval_steps: Vec<usize>,
    /// Eval loss at those steps.
    pub eval_loss: Vec<f64>,
    /// Eval loss at the end (+∞ if diverged).
    pub final_loss: f64,
    /// Whether the loss exceeded the divergence limit.
    pub diverged: bool,
}

/// One gradient-noise measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseMeasurement {
    /// Data setting.
    pub data: DataDist,
    /// Layers.
    pub depth: usize,
    /// Optimizer.
    pub optim: Optim,
    /// Learning rate.
    pub lr: f64,
    /// Training step of the measurement.
    pub step: usize,
    /// ‖ξ_b‖ for each minibatch b.
    pub norms: Vec<f64>,
    /// Norms of Gaussian vectors with the same per-coordinate variances.
    pub gaussian_norms: Vec<f64>,
    /// ξ_b,j standardized per coordinate j, pooled over b and j.
    pub coords: Vec<f64>,
    /// Statistics of `norms`.
    pub norm_stats: NoiseStats,
    /// Statistics of `gaussian_norms`.
    pub gaussian_norm_stats: NoiseStats,
    /// Statistics of `coords`.
    pub coord_stats: NoiseStats,
    /// ‖g_full‖ at this step, for scale.
    pub full_grad_norm: f64,
    /// Top Hessian eigenvalue (if curvature was requested).
    pub top_eigenvalue: Option<f64>,
    /// uᵀHu/‖u‖² along the optimizer's update at this step (if requested;
    /// none at the last step, which takes no update).
    pub directional_smoothness: Option<f64>,
}

/// Result of [`run_sweep`].
#[derive(Debug, Clone)]
pub struct IclReport {
    /// The settings used.
    pub config: IclConfig,
    /// Every training run.
    pub runs: Vec<RunResult>,
    /// One comparison per data setting and depth.
    pub gaps: Vec<GapRow>,
    /// Gradient-noise measurements, if requested.
    pub noise: Vec<NoiseMeasurement>,
}

/// The Adam-vs-SGD comparison for one data setting and depth.
#[derive(Debug, Clone, PartialEq)]
pub struct GapRow {
    /// Data setting.
    pub data: DataDist,
    /// Layers.
    pub depth: usize,
    /// Loss of predicting 0 (E[y²]).
    pub trivial_loss: f64,
    /// SGD at its best learning rate.
    pub sgd: BestLr,
    /// Adam at its best learning rate.
    pub adam: BestLr,
    /// log10(L_SGD / L_Adam) per seed at the best LRs: mean and std over seeds.
    pub log_gap_mean: f64,
    /// (population std over seeds)
    pub log_gap_std: f64,
    /// L_SGD − L_Adam per seed: mean and std.
    pub gap_mean: f64,
    /// (population std over seeds)
    pub gap_std: f64,
    /// Per-seed log gaps.
    pub log_gaps: Vec<f64>,
}

/// The best learning rate of one optimizer and its losses over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct BestLr {
    /// The learning rate.
    pub lr: f64,
    /// Final losses per seed at that LR.
    pub losses: Vec<f64>,
    /// Mean final loss over seeds.
    pub mean: f64,
    /// Population std of the final losses over seeds.
    pub std: f64,
    /// Geometric mean over seeds (the selection criterion).
    pub geo_mean: f64,
}

/// Progress callback: (runs done, runs total).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// The full experiment: LR sweeps, gaps, and gradient-noise measurements.
pub fn run_sweep(cfg: &IclConfig, device: Device, mut progress: Option<Progress>) -> Result<IclReport, IclError> {
    cfg.validate()?;
    let optims = [Optim::Sgd, Optim::Adam];
    let per_combo: usize = optims.iter().map(|o| cfg.lrs(*o).len()).sum::<usize>() * cfg.seeds.len();
    let noise_runs = if cfg.noise.steps.is_empty() { 0 } else { 1 };
    let total = cfg.data.len() * cfg.depths.len() * (per_combo + noise_runs);
    let mut done = 0;
    let mut runs = Vec::new();
    let mut gaps = Vec::new();
    let mut noise_out = Vec::new();
    for &dist in &cfg.data {
        let datas: Vec<TaskData> =
            cfg.seeds.iter().map(|&s| TaskData::new(cfg, dist, s, device)).collect::<Result<_, _>>()?;
        for &depth in &cfg.depths {
            let mut best = Vec::new();
            for &optim in &optims {
                let mut by_lr = Vec::new();
                for &lr in cfg.lrs(optim) {
                    let mut losses = Vec::new();
                    for (si, &seed) in cfg.seeds.iter().enumerate() {
                        let r =
                            train_run(cfg, &datas[si], dist, depth, optim, lr, seed, device, &mut Probe::default())?;
                        tracing::debug!(data = %dist.label(), depth, optim = optim.name(), lr, seed, loss = r.final_loss, "icl run");
                        losses.push(r.final_loss);
                        runs.push(r);
                        done += 1;
                        if let Some(p) = progress.as_mut() {
                            p(done, total);
                        }
                    }
                    by_lr.push((lr, losses));
                }
                best.push(
                    pick_best(&by_lr)
                        .ok_or_else(|| bad("sgd_lrs/adam_lrs", "[]", "give at least one learning rate"))?,
                );
            }
            let (sgd, adam) = (best[0].clone(), best[1].clone());
            let log_gaps: Vec<f64> = sgd.losses.iter().zip(&adam.losses).map(|(s, a)| (s / a).log10()).collect();
            let abs: Vec<f64> = sgd.losses.iter().zip(&adam.losses).map(|(s, a)| s - a).collect();
            let (log_gap_mean, log_gap_std) = mean_std(&log_gaps, Spread::Population);
            let (gap_mean, gap_std) = mean_std(&abs, Spread::Population);
            tracing::info!(data = %dist.label(), depth, sgd_lr = sgd.lr, sgd = sgd.mean, adam_lr = adam.lr, adam = adam.mean, log_gap_mean, "icl gap");
            let row = GapRow {
                data: dist,
                depth,
                trivial_loss: cfg.trivial_loss(dist),
                sgd,
                adam,
                log_gap_mean,
                log_gap_std,
                gap_mean,
                gap_std,
                log_gaps,
            };
            if !cfg.noise.steps.is_empty() {
                let o = cfg.noise.optimizer;
                let lr = if o == Optim::Sgd { row.sgd.lr } else { row.adam.lr };
                let mut probe = Probe { noise_steps: &cfg.noise.steps, out: Vec::new() };
                train_run(cfg, &datas[0], dist, depth, o, lr, cfg.seeds[0], device, &mut probe)?;
                noise_out.extend(probe.out);
                done += 1;
                if let Some(p) = progress.as_mut() {
                    p(done, total);
                }
            }
            gaps.push(row);
        }
    }
    Ok(IclReport { config: cfg.clone(), runs, gaps, noise: noise_out })
}

/// Best LR by geometric-mean final loss over seeds (a diverged seed is +∞;
/// if every LR diverged, the smallest LR is reported with infinite losses).
fn pick_best(by_lr: &[(f64, Vec<f64>)]) -> Option<BestLr> {
    let geo = |l: &[f64]| (l.iter().map(|x| x.max(1e-300).ln()).sum::<f64>() / l.len() as f64).exp();
    let mut best: Option<BestLr> = None;
    for (lr, losses) in by_lr {
        let g = geo(losses);
        let better = match &best {
            None => true,
            Some(b) => g < b.geo_mean || (!b.geo_mean.is_finite() && *lr < b.lr),
        };
        if better {
            let (mean, std) = mean_std(losses, Spread::Population);
            best = Some(BestLr { lr: *lr, losses: losses.clone(), mean, std, geo_mean: g });
        }
    }
    best
}

/// Run the lens end to end: sweep, `icl.h5`, PNG plots and `index.html` in `out_dir`.
pub fn run_lens(
    cfg: &IclConfig,
    out_dir: &Path,
    device: Device,
    progress: Option<Progress>,
) -> Result<IclReport, IclError> {
    let report = run_sweep(cfg, device, progress)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| IclError::Output { path: out_dir.display().to_string(), msg: e.to_string() })?;
    write_h5(&out_dir.join("icl.h5"), &report)?;
    write_html(out_dir, &report)?;
    Ok(report)
}
