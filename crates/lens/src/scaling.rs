//! Attention score scaling (Bernhard 2023, "Alternatives to the scaled dot
//! product for attention in the transformer neural network architecture",
//! arXiv 2311.09406) and softmax saturation diagnostics.
//!
//! # Scale options
//! The score of query i and key j is s_ij = (q_i · k_j) / c_i, with the
//! divisor c_i chosen by [`ScoreScale`]. N_i is the number of keys query i
//! may attend to (its row of the mask), d the query/key width:
//!
//! | option              | c_i                          |
//! |---------------------|------------------------------|
//! | `inv-sqrt-d-head`   | √d (Vaswani et al.; default)  |
//! | `inv-d-head`        | d (µP-style)                  |
//! | `none`              | 1                             |
//! | `inv-n`             | N_i                           |
//! | `inv-sqrt-n`        | √N_i                          |
//! | `inv-log-n`         | ln N_i (1 when N_i = 1)       |
//! | `inv-key-norm-sum`  | Σ_{j visible to i} ‖k_j‖      |
//!
//! The key-norm sum is Bernhard's proposal: it grows with both the number
//! and the length of the keys, so that the dot products cannot outgrow it
//! (|q·k_j| ≤ ‖q‖ ‖k_j‖). It is computed per query row over that row's key
//! set and is differentiable (gradients flow through the key norms).
//!
//! # Saturation diagnostics ([`saturation`])
//! For attention rows p (softmax outputs):
//! - fraction of rows whose largest weight exceeds 1 − ε (saturated);
//! - mean Frobenius norm of the softmax Jacobian J = diag(p) − p pᵀ,
//!   ‖J‖²_F = Σp² − 2Σp³ + (Σp²)²; it vanishes both for a one-hot row
//!   (saturation: vanishing gradients) and for a uniform row over many keys
//!   (‖J‖_F = √(N−1)/N);
//! - mean entropy −Σ p ln p, and the same divided by ln N (1 = uniform);
//! - mean largest weight.
//!
//! [`run`] computes the same diagnostics per head on every checkpoint of a
//! physics run (`headlab lens scaling --run RUN`).
//!
//! The random-vector study ([`simulate`], `headlab lens scaling`) draws
//! i.i.d. normal queries and keys, multiplies each key by a log-normal
//! length factor exp(σ g), g ~ N(0,1) (σ = the "spread" of key norms), and
//! reports the diagnostics for every option as N and σ grow. It also reports
//! the *effective* Jacobian ‖J‖_F / c_i, the sensitivity of the pattern to
//! the raw dot products, since a large divisor keeps the softmax away from
//! saturation only by shrinking the gradient that reaches q and k.

mod output;
pub mod physics;
pub mod run;

pub use output::{write_h5, write_html};
pub use run::{run_saturation, write_run_h5, write_run_html, RunSaturation, RunSaturationOptions};

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::config::{parse_toml, ConfigError};
use headlab_sim::seed::{derive_seed, Stream};
use tch::{Device, Kind, Tensor};

/// Errors of the scaling lens.
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// Passed through from `ConfigError`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Shown as "scaling: {0}".
    #[error("scaling: {0}")]
    Option(#[from] headlab_model::UnknownScale),
    /// Passed through from `headlab_store::StoreError`.
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    /// Shown as "scaling: writing {path}: {msg}".
    #[error("scaling: writing {path}: {msg}")]
    Output {
        /// The file or folder concerned.
        path: String,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// Shown as "{path}: {msg}".
    #[error("{path}: {msg}")]
    Run {
        /// The file or folder concerned.
        path: String,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// Passed through from `headlab_model::ModelError`.
    #[error(transparent)]
    Model(#[from] headlab_model::ModelError),
}

fn bad(key: &str, value: impl std::fmt::Display, hint: &str) -> ScalingError {
    ConfigError::invalid("scaling", key, value, hint).into()
}

/// The divisor of the attention scores (see the module docs for formulas):
/// the physics model's own option enum, so a lens result names exactly what
/// a training run's `attention.scale` accepts.
pub use headlab_model::AttentionScale as ScoreScale;

/// Divisors c_i, shape [..., Nq, 1], for `keys` [..., Nk, d] and an optional
/// boolean `mask` (true = visible) broadcastable to [..., Nq, Nk]. `nq` is the
/// number of query rows.
pub fn divisors(keys: &Tensor, mask: Option<&Tensor>, nq: i64, scale: ScoreScale) -> Tensor {
    let ks = keys.size();
    let (nk, d) = (ks[ks.len() - 2], ks[ks.len() - 1]);
    let opts = (Kind::Float, keys.device());
    let mut batch: Vec<i64> = ks[..ks.len() - 2].to_vec();
    batch.extend([nq, 1]);
    let count = || match mask {
        Some(m) => m
            .to_kind(Kind::Float)
            .sum_dim_intlist([-1i64].as_slice(), true, Kind::Float)
            .expand(batch.as_slice(), false),
        None => Tensor::full(batch.as_slice(), nk as f64, opts),
    };
    match scale {
        ScoreScale::InvSqrtDHead => Tensor::full(batch.as_slice(), (d as f64).sqrt(), opts),
        ScoreScale::InvDHead => Tensor::full(batch.as_slice(), d as f64, opts),
        ScoreScale::None => Tensor::ones(batch.as_slice(), opts),
        ScoreScale::InvN => count().clamp_min(1.0),
        ScoreScale::InvSqrtN => count().clamp_min(1.0).sqrt(),
        ScoreScale::InvLogN => {
            let n = count();
            let ln = n.clamp_min(1.0).log();
            ln.where_self(&n.ge(2.0), &ln.ones_like())
        }
        ScoreScale::InvKeyNormSum => {
            let norms = keys
                .to_kind(Kind::Float)
                .square()
                .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
                .clamp_min(1e-30)
                .sqrt(); // [..., Nk]
            let s = match mask {
                // [..., Nq, Nk] x [..., Nk, 1]
                Some(m) => m
                    .to_kind(Kind::Float)
                    .expand(scores_shape(&batch, nk).as_slice(), false)
                    .matmul(&norms.unsqueeze(-1)),
                None => norms
                    .sum_dim_intlist([-1i64].as_slice(), true, Kind::Float)
                    .unsqueeze(-1)
                    .expand(batch.as_slice(), false),
            };
            s.clamp_min(1e-12)
        }
    }
}

fn scores_shape(batch_q1: &[i64], nk: i64) -> Vec<i64> {
    let mut s = batch_q1.to_vec();
    let l = s.len();
    s[l - 1] = nk;
    s
}

/// Scaled scores s_ij = (q_i·k_j)/c_i for queries [..., Nq, d] and keys
/// [..., Nk, d]; masked entries (mask false) are −∞.
pub fn scaled_scores(q: &Tensor, k: &Tensor, mask: Option<&Tensor>, scale: ScoreScale) -> Tensor {
    let nq = q.size()[q.dim() - 2];
    let dots = q.matmul(&k.transpose(-1, -2));
    let s = dots / divisors(k, mask, nq, scale);
    match mask {
        Some(m) => s.masked_fill(&m.logical_not(), f64::NEG_INFINITY),
        None => s,
    }
}

/// Softmax attention pattern with the chosen scaling.
pub fn pattern(q: &Tensor, k: &Tensor, mask: Option<&Tensor>, scale: ScoreScale) -> Tensor {
    scaled_scores(q, k, mask, scale).softmax(-1, Kind::Float)
}

/// Saturation diagnostics of a set of attention rows (see module docs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Saturation {
    /// Fraction of rows with max weight > 1 − ε.
    pub frac_saturated: f64,
    /// Mean ‖diag(p) − p pᵀ‖_F over rows.
    pub jacobian_fro: f64,
    /// Mean entropy (nats).
    pub entropy: f64,
    /// Mean entropy / ln(number of keys with p defined) (1 = uniform).
    pub entropy_norm: f64,
    /// Mean largest weight.
    pub max_weight: f64,
    /// Rows averaged.
    pub rows: usize,
}

/// Per-row Frobenius norm of the softmax Jacobian, shape [...] (rows).
pub fn jacobian_fro_rows(p: &Tensor) -> Tensor {
    let p = p.to_kind(Kind::Double);
    let s2 = p.square().sum_dim_intlist([-1i64].as_slice(), false, Kind::Double);
    let s3 = p.pow_tensor_scalar(3).sum_dim_intlist([-1i64].as_slice(), false, Kind::Double);
    (&s2 - s3 * 2.0 + s2.square()).clamp_min(0.0).sqrt()
}

/// Diagnostics over all rows of `p` [..., Nq, Nk] (rows sum to 1). `n_keys`
/// for the normalized entropy: the row's number of visible keys; if None,
/// Nk for every row.
pub fn saturation(p: &Tensor, eps: f64, n_keys: Option<&Tensor>) -> Saturation {
    let nk = p.size()[p.dim() - 1];
    let pd = p.to_kind(Kind::Double);
    let rows = (pd.numel() as i64 / nk.max(1)) as usize;
    let maxw = pd.amax([-1i64].as_slice(), false);
    let ent = -(&pd * pd.clamp_min(1e-300).log()).sum_dim_intlist([-1i64].as_slice(), false, Kind::Double);
    let lnn = match n_keys {
        Some(n) => n.to_kind(Kind::Double).clamp_min(2.0).log().expand(ent.size().as_slice(), false),
        None => Tensor::full(ent.size().as_slice(), (nk.max(2) as f64).ln(), (Kind::Double, p.device())),
    };
    let f = |t: Tensor| t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    Saturation {
        frac_saturated: f(maxw.gt(1.0 - eps).to_kind(Kind::Double)),
        jacobian_fro: f(jacobian_fro_rows(&pd)),
        entropy: f(ent.shallow_clone()),
        entropy_norm: f(&ent / lnn),
        max_weight: f(maxw),
        rows,
    }
}

/// Per-head diagnostics of a pattern [B, H, Nq, Nk] (e.g. a model's
/// `hook_pattern`).
pub fn saturation_per_head(pattern: &Tensor, eps: f64) -> Vec<Saturation> {
    let h = pattern.size()[1];
    (0..h).map(|i| saturation(&pattern.select(1, i), eps, None)).collect()
}

// ---------------------------------------------------------------------------
// The random-vector study
// ---------------------------------------------------------------------------

/// Configuration of `headlab lens scaling`; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingConfig {
    /// Query/key width d.
    pub d: usize,
    /// Numbers of keys N compared.
    pub ns: Vec<usize>,
    /// Spreads σ of the log-normal key-length factor exp(σ g).
    pub spreads: Vec<f64>,
    /// Standard deviation of the query components.
    pub query_std: f64,
    /// Standard deviation of the key components (before the length factor).
    pub key_std: f64,
    /// Query rows per key set.
    pub queries: usize,
    /// Independent key sets per (N, σ).
    pub trials: usize,
    /// A row is saturated when its largest weight exceeds 1 − ε.
    pub eps: f64,
    /// Options compared (default: all).
    pub options: Vec<ScoreScale>,
    /// Seed of the random queries and keys.
    pub seed: u64,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            d: 64,
            ns: vec![4, 16, 64, 256, 1024, 4096],
            spreads: vec![0.0, 0.5, 1.0, 1.5],
            query_std: 1.0,
            key_std: 1.0,
            queries: 64,
            trials: 16,
            eps: 0.01,
            options: ScoreScale::ALL.to_vec(),
            seed: 0,
        }
    }
}

impl ScalingConfig {
    /// Parse and validate a config (`path` names it in errors).
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ScalingError> {
        let c: ScalingConfig = parse_toml("scaling", text, path)?;
        c.validate()?;
        Ok(c)
    }

    /// The config as TOML (stored in the output file).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        crate::config::to_toml("scaling", self)
    }

    /// Check every value; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<(), ScalingError> {
        if !(1..=4096).contains(&self.d) {
            return Err(bad("d", self.d, "use a width in 1..=4096"));
        }
        if self.ns.is_empty() || self.ns.iter().any(|&n| !(1..=1 << 16).contains(&n)) {
            return Err(bad("ns", format!("{:?}", self.ns), "list key counts in 1..=65536"));
        }
        if self.spreads.is_empty() || self.spreads.iter().any(|&s| !(0.0..=5.0).contains(&s)) {
            return Err(bad("spreads", format!("{:?}", self.spreads), "list log-normal spreads in [0, 5]"));
        }
        for (k, v) in [("query_std", self.query_std), ("key_std", self.key_std)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(bad(k, v, "use a positive standard deviation"));
            }
        }
        if self.queries == 0 || self.trials == 0 {
            return Err(bad("queries/trials", format!("{}/{}", self.queries, self.trials), "use at least 1 of each"));
        }
        if !(self.eps > 0.0 && self.eps < 1.0) {
            return Err(bad("eps", self.eps, "use 0 < eps < 1, e.g. 0.01"));
        }
        if self.options.is_empty() {
            return Err(bad("options", "[]", "list at least one scale option"));
        }
        Ok(())
    }
}

/// Diagnostics for one (option, spread, N).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingPoint {
    /// The scale option.
    pub option: ScoreScale,
    /// Spread of the raw scores.
    pub spread: f64,
    /// Number of keys.
    pub n: usize,
    /// Saturation of the softmax rows.
    pub sat: Saturation,
    /// Mean ‖J‖_F / c over rows: sensitivity to the raw dot products.
    pub effective_jacobian: f64,
    /// Mean standard deviation of the scaled scores within a row.
    pub score_std: f64,
}

/// Result of [`simulate`]: points in the order options × spreads × ns.
#[derive(Debug, Clone)]
pub struct ScalingReport {
    /// The settings used.
    pub config: ScalingConfig,
    /// One point per (option, spread, N).
    pub points: Vec<ScalingPoint>,
}

impl ScalingReport {
    /// The point of (option, spread, n).
    pub fn get(&self, option: ScoreScale, spread: f64, n: usize) -> Option<&ScalingPoint> {
        self.points.iter().find(|p| p.option == option && p.spread == spread && p.n == n)
    }
}

fn normals(rng: &mut ChaCha8Rng, count: usize, std: f64) -> Vec<f32> {
    (0..count).map(|_| (std * rng.sample::<f64, _>(StandardNormal)) as f32).collect()
}

/// The random-vector study: for each spread and N, the same queries and keys
/// are scored under every option.
pub fn simulate(cfg: &ScalingConfig, device: Device) -> Result<ScalingReport, ScalingError> {
    cfg.validate()?;
    let d = cfg.d;
    let mut points = Vec::new();
    #[allow(clippy::type_complexity)]
    let mut acc: Vec<(ScoreScale, f64, usize, Vec<(Saturation, f64, f64)>)> = Vec::new();
    for (si, &spread) in cfg.spreads.iter().enumerate() {
        for (ni, &n) in cfg.ns.iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, Stream::ScalingCell { spread: si, n: ni }));
            let mut per_opt: Vec<Vec<(Saturation, f64, f64)>> = vec![Vec::new(); cfg.options.len()];
            for _ in 0..cfg.trials {
                let q = Tensor::from_slice(&normals(&mut rng, cfg.queries * d, cfg.query_std))
                    .view([cfg.queries as i64, d as i64])
                    .to_device(device);
                let k = Tensor::from_slice(&normals(&mut rng, n * d, cfg.key_std)).view([n as i64, d as i64]);
                let len: Vec<f32> =
                    (0..n).map(|_| (spread * rng.sample::<f64, _>(StandardNormal)).exp() as f32).collect();
                let k = (k * Tensor::from_slice(&len).view([n as i64, 1])).to_device(device);
                for (oi, &opt) in cfg.options.iter().enumerate() {
                    let s = scaled_scores(&q, &k, None, opt);
                    let p = s.softmax(-1, Kind::Float);
                    let sat = saturation(&p, cfg.eps, None);
                    let c = divisors(&k, None, cfg.queries as i64, opt).squeeze_dim(-1).to_kind(Kind::Double);
                    let eff = (jacobian_fro_rows(&p) / c).mean(Kind::Double).double_value(&[]);
                    let sstd = if n > 1 {
                        s.to_kind(Kind::Double)
                            .std_dim([-1i64].as_slice(), true, false)
                            .mean(Kind::Double)
                            .double_value(&[])
                    } else {
                        0.0
                    };
                    per_opt[oi].push((sat, eff, sstd));
                }
            }
            for (oi, &opt) in cfg.options.iter().enumerate() {
                acc.push((opt, spread, n, std::mem::take(&mut per_opt[oi])));
            }
        }
    }
    for &opt in &cfg.options {
        for &spread in &cfg.spreads {
            for &n in &cfg.ns {
                let Some((_, _, _, v)) = acc.iter().find(|a| a.0 == opt && a.1 == spread && a.2 == n) else { continue };
                let m = v.len() as f64;
                let mean = |f: &dyn Fn(&(Saturation, f64, f64)) -> f64| v.iter().map(f).sum::<f64>() / m;
                let sat = Saturation {
                    frac_saturated: mean(&|x| x.0.frac_saturated),
                    jacobian_fro: mean(&|x| x.0.jacobian_fro),
                    entropy: mean(&|x| x.0.entropy),
                    entropy_norm: mean(&|x| x.0.entropy_norm),
                    max_weight: mean(&|x| x.0.max_weight),
                    rows: v.iter().map(|x| x.0.rows).sum(),
                };
                points.push(ScalingPoint {
                    option: opt,
                    spread,
                    n,
                    sat,
                    effective_jacobian: mean(&|x| x.1),
                    score_std: mean(&|x| x.2),
                });
            }
        }
    }
    Ok(ScalingReport { config: cfg.clone(), points })
}

/// Run the lens end to end: `scaling.h5`, PNG plots and `index.html` in `out_dir`.
pub fn run_lens(cfg: &ScalingConfig, out_dir: &Path, device: Device) -> Result<ScalingReport, ScalingError> {
    let r = simulate(cfg, device)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| ScalingError::Output { path: out_dir.display().to_string(), msg: e.to_string() })?;
    write_h5(&out_dir.join("scaling.h5"), &r)?;
    write_html(out_dir, &r)?;
    Ok(r)
}
