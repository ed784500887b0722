//! Max-margin token selection (Tarzanagh, Li, Zhang, Oymak 2023, "Max-Margin
//! Token Selection in Attention Mechanism", arXiv 2306.13596).
//!
//! For the single-attention model `f(X) = vᵀ Xᵀ softmax(X p)` trained by
//! gradient descent on separable data, `‖p‖` grows without bound and its
//! direction converges to the solution of the attention SVM
//!
//! ```text
//! p_mm = argmin ‖p‖  s.t.  pᵀ(x_opt − x_t) ≥ 1  for every example and token t ≠ opt,
//! ```
//!
//! which separates each example's optimal token from the others; with keys
//! and queries, `softmax(X W z)`, W converges to the Frobenius-norm SVM
//! `min ‖W‖_F s.t. (x_opt − x_t)ᵀ W z ≥ 1`. The regularization path
//! `argmin_{‖p‖≤R} L(p)` has the same limit as `R → ∞`.
//!
//! [`run_toy`] trains p, W and (p, v) jointly, solves the SVMs with the
//! Clarabel QP solver ([`headlab_analysis::svm`]), records the cosine with the SVM solution,
//! the normalized margin and the softmax mass on the optimal token, and
//! follows the regularization path. [`min_norm_margin`] solves any such
//! problem, e.g. a physics head's contact-partner SVM in its key space.

pub mod data;
mod output;
pub mod train;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{parse_toml, ConfigError};

pub use data::{MmData, MmDataConfig};
pub use headlab_analysis::svm::{cosine, min_norm_margin, SvmError, SvmSolution};
pub use output::{write_h5, write_page, write_plots};
pub use train::{Loss, MmTrace, PathPoint, Variant};

#[derive(Debug, thiserror::Error)]
/// Why the max-margin lens could not run.
pub enum MaxMarginError {
    /// Passed through from `ConfigError`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Passed through from `SvmError`.
    #[error(transparent)]
    Svm(#[from] SvmError),
    /// Passed through from `headlab_store::StoreError`.
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    /// Shown as "{path}: cannot draw plot: {msg}".
    #[error("{path}: cannot draw plot: {msg}")]
    Plot {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// Shown as "{path}: {source}".
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// The `[train]` table: gradient descent on the toy.
pub struct MmTrainConfig {
    /// Gradient steps.
    pub steps: u64,
    /// Step size; with `normalized` the step length in parameter space.
    pub lr: f64,
    /// Normalized gradient descent (θ ← θ − lr·∇/‖∇‖): ‖θ‖ grows linearly and
    /// the direction converges in hundreds of steps instead of millions.
    pub normalized: bool,
    /// The training loss.
    pub loss: Loss,
    /// Record the trace every this many steps.
    pub record_every: u64,
    /// Which variants to train.
    pub variants: Vec<Variant>,
}

impl Default for MmTrainConfig {
    fn default() -> Self {
        MmTrainConfig {
            steps: 2000,
            lr: 0.05,
            normalized: true,
            loss: Loss::Logistic,
            record_every: 10,
            variants: vec![Variant::P, Variant::W, Variant::Joint],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// The `[path]` table: the regularization path (norm-constrained optima).
pub struct PathConfig {
    /// Radii R of the norm ball (increasing); empty = skip the path.
    pub radii: Vec<f64>,
    /// Projected-gradient steps per radius.
    pub steps_per_radius: u64,
    /// Inner step as a fraction of R (decayed as 1/√k).
    pub lr: f64,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig { radii: vec![0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0], steps_per_radius: 300, lr: 0.2 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
/// The lens's config file; every table has defaults.
pub struct MaxMarginConfig {
    /// The `[data]` table.
    pub data: MmDataConfig,
    /// The `[train]` table.
    pub train: MmTrainConfig,
    /// The `[path]` table.
    pub path: PathConfig,
}

impl MaxMarginConfig {
    /// Parse and validate a config (`path` names it in errors).
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Self, MaxMarginError> {
        let cfg: MaxMarginConfig = parse_toml("max-margin", text, &path.display().to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config as TOML (stored in the output file).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        crate::config::to_toml("max-margin", self)
    }

    /// Check every value; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<(), MaxMarginError> {
        fn bad(key: &str, value: impl std::fmt::Display, hint: &str) -> Result<(), MaxMarginError> {
            Err(ConfigError::invalid("max-margin", key, value, hint).into())
        }
        let d = &self.data;
        if d.n == 0 {
            return bad("data.n", 0, "need at least one example");
        }
        if d.tokens < 2 {
            return bad("data.tokens", d.tokens, "need at least two tokens per example");
        }
        if d.dim == 0 {
            return bad("data.dim", 0, "must be positive");
        }
        if !(d.opt_score.is_finite() && d.other_score.is_finite()) || d.opt_score <= d.other_score + d.score_spread {
            return bad(
                "data.opt_score",
                d.opt_score,
                "must exceed other_score + score_spread, so that the designated token is the best one",
            );
        }
        if !(d.head_norm > 0.0 && d.head_norm.is_finite()) {
            return bad("data.head_norm", d.head_norm, "must be positive");
        }
        if !(d.score_spread >= 0.0 && d.score_spread.is_finite()) {
            return bad("data.score_spread", d.score_spread, "must be finite and non-negative");
        }
        let t = &self.train;
        if t.steps == 0 {
            return bad("train.steps", 0, "must be positive");
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return bad("train.lr", t.lr, "must be positive");
        }
        if t.record_every == 0 {
            return bad("train.record_every", 0, "must be positive");
        }
        if t.variants.is_empty() {
            return bad("train.variants", "[]", "name at least one of \"p\", \"w\", \"joint\"");
        }
        let p = &self.path;
        if p.radii.iter().any(|r| !(r.is_finite() && *r > 0.0)) || p.radii.windows(2).any(|w| w[1] <= w[0]) {
            return bad("path.radii", format!("{:?}", p.radii), "must be positive and increasing");
        }
        if !p.radii.is_empty() && (p.steps_per_radius == 0 || !(p.lr > 0.0)) {
            return bad("path.steps_per_radius", p.steps_per_radius, "steps and lr must be positive");
        }
        Ok(())
    }
}

/// One trained variant.
#[derive(Debug, Clone)]
pub struct VariantRun {
    /// Which parameters were trained.
    pub variant: Variant,
    /// Its trajectory.
    pub trace: MmTrace,
    /// Final θ (p, or W row-major) and v.
    pub theta: Vec<f64>,
    /// (the final v)
    pub v: Vec<f64>,
    /// Most-attended token of each example at the end.
    pub selected: Vec<usize>,
    /// When training selected other tokens than the designated ones: cosine
    /// of the final θ (and v) with the SVM built on the selected tokens (the
    /// locally optimal solution the paper predicts GD converges to then).
    /// None when selected = designated or that SVM is infeasible.
    pub cos_selected: Option<f64>,
    /// The same for v.
    pub cos_v_selected: Option<f64>,
}

#[derive(Debug, Clone)]
/// Everything the lens computed.
pub struct MaxMarginResult {
    /// The settings used.
    pub config: MaxMarginConfig,
    /// The toy data.
    pub data: MmData,
    /// The att-SVM of the p-parameterization.
    pub p_svm: SvmSolution,
    /// The att-SVM of the W-parameterization, if trained.
    pub w_svm: Option<SvmSolution>,
    /// Classifier SVM of the joint problem (`min ‖v‖ s.t. Y_i vᵀx_{i,opt} ≥ 1`).
    pub v_svm: Option<SvmSolution>,
    /// Every trained variant.
    pub runs: Vec<VariantRun>,
    /// The regularization path.
    pub path: Vec<PathPoint>,
}

impl MaxMarginResult {
    /// The run of variant `v`.
    pub fn run(&self, v: Variant) -> Option<&VariantRun> {
        self.runs.iter().find(|r| r.variant == v)
    }
}

/// Generate the data, solve the SVMs, train every variant, follow the path.
pub fn run_toy(cfg: &MaxMarginConfig) -> Result<MaxMarginResult, MaxMarginError> {
    cfg.validate()?;
    let data = MmData::generate(&cfg.data);
    let p_rows = data.p_rows(&data.opt);
    let p_svm = min_norm_margin(&p_rows, data.d)?;
    let wants = |v: Variant| cfg.train.variants.contains(&v);
    let w_rows = wants(Variant::W).then(|| data.w_rows(&data.opt));
    let w_svm = w_rows.as_ref().map(|r| min_norm_margin(r, data.d * data.d)).transpose()?;
    let v_svm = wants(Variant::Joint).then(|| min_norm_margin(&data.v_rows(&data.opt), data.d)).transpose()?;
    let t = &cfg.train;
    let gd = train::GdSettings {
        steps: t.steps,
        lr: t.lr,
        normalized: t.normalized,
        record_every: t.record_every,
        loss: t.loss,
    };
    let mut runs = Vec::new();
    for &variant in &t.variants {
        if runs.iter().any(|r: &VariantRun| r.variant == variant) {
            continue;
        }
        let (len, rows, mm, vmm) = match variant {
            Variant::P => (data.d, &p_rows, &p_svm.x, None),
            Variant::Joint => (data.d, &p_rows, &p_svm.x, v_svm.as_ref().map(|s| s.x.as_slice())),
            Variant::W => match (w_rows.as_ref(), w_svm.as_ref()) {
                (Some(r), Some(s)) => (data.d * data.d, r, &s.x, None),
                _ => {
                    return Err(ConfigError::invalid(
                        "max-margin",
                        "variants",
                        "w",
                        "the W variant needs the W att-SVM, which was not computed",
                    )
                    .into())
                }
            },
        };
        let init = train::Params { theta: vec![0.0; len], v: data.v.clone() };
        let (trace, params) = train::gradient_descent(&data, variant, init, &gd, rows, mm, vmm);
        tracing::info!(
            variant = variant.name(),
            cos = trace.cos.last().copied().unwrap_or(f64::NAN),
            "max-margin run done"
        );
        let selected = train::evaluate(&data, variant, t.loss, &params).selected;
        let (mut cos_selected, mut cos_v_selected) = (None, None);
        if selected != data.opt {
            let rows = if variant == Variant::W { data.w_rows(&selected) } else { data.p_rows(&selected) };
            let dim = if variant == Variant::W { data.d * data.d } else { data.d };
            cos_selected = min_norm_margin(&rows, dim).ok().map(|s| cosine(&params.theta, &s.x));
            if variant == Variant::Joint {
                cos_v_selected = min_norm_margin(&data.v_rows(&selected), data.d).ok().map(|s| cosine(&params.v, &s.x));
            }
        }
        runs.push(VariantRun {
            variant,
            trace,
            theta: params.theta,
            v: params.v,
            selected,
            cos_selected,
            cos_v_selected,
        });
    }
    let path =
        train::regularization_path(&data, t.loss, &cfg.path.radii, cfg.path.steps_per_radius, cfg.path.lr, &p_svm.x);
    Ok(MaxMarginResult { config: cfg.clone(), data, p_svm, w_svm, v_svm, runs, path })
}

/// Everything the `headlab lens max-margin` command does: solve, train, and
/// write `max_margin.h5`, the PNGs and `index.html` into `out`. Returns the
/// result and the page's path.
pub fn run_lens(cfg: &MaxMarginConfig, out: &std::path::Path) -> Result<(MaxMarginResult, PathBuf), MaxMarginError> {
    let res = run_toy(cfg)?;
    std::fs::create_dir_all(out).map_err(|source| MaxMarginError::Io { path: out.to_path_buf(), source })?;
    write_h5(&out.join("max_margin.h5"), &res)?;
    let plots = write_plots(out, &res)?;
    let page = write_page(out, &res, &plots, "max_margin.h5")?;
    Ok((res, page))
}
