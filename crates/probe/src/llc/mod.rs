//! Local learning coefficient (LLC) by SGLD, localized at a checkpoint w*.
//!
//! The tempered, localized posterior around w* is
//!
//! ```text
//!     p(w) ∝ exp( −nβ·L_n(w) − (γ/2)·|w − w*|² ),
//! ```
//!
//! where `L_n(w) = (1/n) Σ_i ℓ_i(w)` is the mean over the `n` training
//! samples of the per-sample negative log-likelihood `ℓ_i` (up to a
//! constant), and β the inverse temperature, `1/ln n` by default. The LLC
//! estimate is
//!
//! ```text
//!     λ̂ = nβ · E_w[ L_n(w) − L_n(w*) ].
//! ```
//!
//! **Loss convention.** A problem's [`LlcProblem::loss`] must be this
//! per-sample NLL averaged over a batch, and [`LlcProblem::n_samples`] the
//! number of samples it is averaged over; then nβ·L_n is the tempered total
//! log-likelihood and a regular model with d parameters has λ = d/2 in the
//! limit of large n and small γ. The toy problems ([`toy`]) use unit-variance
//! Gaussian noise, `ℓ_i = ½ (y_i − f_i)²`. Headlab checkpoints ([`model`])
//! do the same on the normalized targets: by default a sample is one frame
//! and `ℓ_i = ½ Σ over its N particles and 2D outputs of (y − f)²`, so
//! `L_n = N·D·MSE` (the training loss, a mean over all N·2D outputs, times
//! N·D) and n counts training frames; with the per-particle normalization a
//! sample is one particle of one frame, `ℓ = ½ Σ over its 2D outputs`, `L_n =
//! D·MSE` and n = frames × N. Both give the same nL_n (so λ̂ differs only
//! through β = 1/ln n); the raw training loss (`mse`, the convention before)
//! under-weights the likelihood N·2D-fold, so its values depend on the
//! particle count and are not comparable with d/2. See
//! [`model::LossConvention`].
//!
//! It is sampled with stochastic-gradient Langevin dynamics (SGLD):
//!
//! ```text
//!     w ← w − (ε/2)·( γ·(w − w*) + nβ·∇L_B(w) ) + N(0, ε)
//! ```
//!
//! with a minibatch `B` drawn uniformly at every step. The estimate pairs the
//! losses batch by batch: `λ̂ = nβ · mean_t [ L_Bt(w_t) − L_Bt(w*) ]` over the
//! post-burn-in steps, with the *same* batch `B_t` on both sides (the values
//! `L_B(w*)` are cached per batch). Since `w_t` does not depend on `B_t`, each
//! term is an unbiased estimate of `L_n(w_t) − L_n(w*)`, and the batch-to-batch
//! noise of the loss cancels. The unpaired value that devinterp reports (one
//! reference loss on a single batch, shared by every chain) is computed too,
//! as a diagnostic only: its offset is common to every chain, so the spread
//! across chains never shows it.
//!
//! What is here:
//! - [`LlcProblem`]: the loss to sample (any differentiable tch computation),
//!   with `n` and a set of batches; optionally with several chains stacked
//!   along a leading dimension (fast for small problems).
//! - [`estimate`]: chains in parallel threads, seeded per chain (the same seed
//!   gives the same estimate whatever the thread count, for unstacked problems
//!   bit for bit), a [`Movable`] mask per parameter (for the weight-refined,
//!   per-head LLC), and diagnostics: failed chains (non-finite or diverging)
//!   are excluded and reported with a suggested smaller ε, drifting traces are
//!   warned about, the spread across chains comes with every estimate.
//! - [`calibrate`]: sweep ε (and γ) and recommend a stable step size.
//! - [`select`]: per-estimate step-size selection on a ladder of ε (few
//!   draws each), then the full estimate at the largest ε of the plateau,
//!   with the diagnostics of `headlab_analysis::llc_diag` (flags: no
//!   plateau, diverged chains, negative, not a minimum, not settled, R̂).
//! - [`toy`]: linear regression and the degenerate product model, with their
//!   exact finite-sample targets, used by the validation tests.
//! - [`model`]: the adapter for headlab checkpoints (whole model and per
//!   head).
//! - [`run`]: the driver over a run's checkpoints (`RUN/llc.h5`) and
//!   calibration sweeps; [`plot`]: the PNG of `RUN/llc.h5`.
//! - `sampler` (private): the SGLD chains behind [`estimate`].

use std::fmt;

use headlab_analysis::llc_diag::{diagnose, select_step, DiagInput, Diagnosis, LadderPoint, SelectOptions};
use headlab_sim::stats::{mean_std, Spread};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

pub mod model;
pub mod plot;
pub mod run;
mod sampler;
pub mod select;
pub mod toy;

/// Errors of the LLC estimator. Messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum LlcError {
    /// Shown as "llc config: '{key}' = {value} is invalid: {expected}".
    #[error("llc config: `{key}` = {value} is invalid: {expected}")]
    Config {
        /// The offending key or option.
        key: String,
        /// Its value.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// Every chain failed (diverged or became non-finite).
    #[error(
        "llc: all {chains} chains failed ({details}). The SGLD step size ε = {epsilon:e} is too large \
         for this checkpoint: try --epsilon {suggest:e} (or run with --calibrate to pick one)"
    )]
    AllChainsFailed {
        /// Number of chains.
        chains: usize,
        /// What each chain reported.
        details: String,
        /// The step size used.
        epsilon: f64,
        /// A step size to try instead.
        suggest: f64,
    },
    /// Shown as "llc: problem: {0}".
    #[error("llc: problem: {0}")]
    Problem(String),
    /// Shown as "llc: libtorch error: {0}".
    #[error("llc: libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

/// Results of the LLC.
pub type Result<T, E = LlcError> = std::result::Result<T, E>;

/// SGLD and estimator settings. Every field has a default; a TOML table
/// `[llc]` with any subset of them is accepted (unknown keys are an error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlcConfig {
    /// SGLD step size ε (the variance of the injected noise per step).
    pub epsilon: f64,
    /// Localization strength γ: the pull back towards w*.
    pub gamma: f64,
    /// Inverse temperature β; absent means 1/ln n.
    pub beta: Option<f64>,
    /// Independent chains (run in parallel threads).
    pub chains: usize,
    /// SGLD steps per chain; every step is a draw.
    pub draws: usize,
    /// Fraction of each chain's draws discarded as burn-in.
    pub burn_in: f64,
    /// Minibatch size, for problems built from a data set (checkpoints).
    pub batch_size: usize,
    /// Seed of the chains' noise and batch choices.
    pub seed: u64,
    /// CPU threads to use in all (0: all available). Chains are spread over
    /// them; libtorch's own threads get the rest.
    pub threads: usize,
    /// A chain whose nβ·(L_B(w) − L_B(w*)) exceeds this has diverged; absent
    /// means 1000 + 100 × (number of moving parameters).
    pub divergence_threshold: Option<f64>,
}

impl Default for LlcConfig {
    fn default() -> Self {
        LlcConfig {
            // A starting point only: on the demo model (raw-MSE convention)
            // the late checkpoint's estimate rose with ε (about 340, 560,
            // 870 at 1e-5, 2e-5, 3e-5) and chains diverged at 1e-4, so no
            // single ε suits every checkpoint. Choose it per checkpoint with
            // a ladder ([`select`], `headlab llc --ladder`).
            epsilon: 3e-5,
            gamma: 1000.0,
            beta: None,
            chains: 4,
            draws: 400,
            burn_in: 0.25,
            batch_size: 64,
            seed: 0,
            threads: 0,
            divergence_threshold: None,
        }
    }
}

impl LlcConfig {
    /// Check every field; the error names the key, the value and the range.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(LlcError::Config { key: key.into(), value, expected: expected.into() })
        };
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return bad("epsilon", self.epsilon.to_string(), "a positive step size, e.g. 1e-4");
        }
        if self.seed > i64::MAX as u64 {
            return bad("seed", self.seed.to_string(), "at most 2^63 - 1 (the largest integer a TOML file holds)");
        }
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return bad("gamma", self.gamma.to_string(), "a localization strength ≥ 0, e.g. 100");
        }
        if let Some(b) = self.beta {
            if !(b.is_finite() && b > 0.0) {
                return bad("beta", b.to_string(), "a positive inverse temperature (leave it out for 1/ln n)");
            }
        }
        if self.chains == 0 {
            return bad("chains", "0".into(), "at least 1 chain (4 or more to see the spread)");
        }
        if self.draws < 8 {
            return bad("draws", self.draws.to_string(), "at least 8 draws per chain");
        }
        if !(0.0..0.9).contains(&self.burn_in) {
            return bad("burn_in", self.burn_in.to_string(), "a fraction in [0, 0.9)");
        }
        if self.draws - self.burn_in_steps() < 4 {
            return bad("burn_in", self.burn_in.to_string(), "a fraction leaving at least 4 draws after burn-in");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into(), "at least 1 sample per batch");
        }
        if let Some(t) = self.divergence_threshold {
            if !(t > 0.0) {
                return bad("divergence_threshold", t.to_string(), "a positive value (leave it out for the default)");
            }
        }
        Ok(())
    }

    /// Number of draws discarded at the start of each chain.
    pub fn burn_in_steps(&self) -> usize {
        ((self.burn_in * self.draws as f64).floor() as usize).min(self.draws)
    }

    /// nβ for `n` training samples.
    pub fn n_beta(&self, n: usize) -> f64 {
        let n = n as f64;
        n * self.beta.unwrap_or_else(|| 1.0 / n.ln())
    }

    /// Threads in use: `threads`, or all cores for 0; never more than the
    /// cores (a larger request would only start idle threads).
    fn resolved_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if self.threads > 0 {
            self.threads.min(cores)
        } else {
            cores
        }
    }
}

/// The loss that SGLD samples around w*.
///
/// `Sync` because the sampler threads share it; tensors that it holds for
/// reading (data) can be wrapped in [`SharedTensor`].
pub trait LlcProblem: Sync {
    /// Number of training samples n (sets nβ).
    fn n_samples(&self) -> usize;
    /// Number of batches; each SGLD step draws one uniformly. They should
    /// have equal sizes (then the mean of the batch losses is L_n).
    fn n_batches(&self) -> usize;
    /// Whether [`LlcProblem::loss`] takes several chains at once, stacked
    /// along a new leading dimension.
    fn stacked(&self) -> bool {
        false
    }
    /// A cache of L_B(w*) that outlives one estimate (see [`StarCache`]);
    /// `None`: each estimate keeps its own. Only for problems whose w* is
    /// the same in every estimate that uses it.
    fn star_cache(&self) -> Option<&StarCache> {
        None
    }
    /// The mean per-sample loss on batch `batches[0]` at `params` (in the
    /// order and shapes of w*), as a scalar (or one-element) tensor.
    ///
    /// For a [`stacked`](LlcProblem::stacked) problem, each parameter has an
    /// extra leading dimension of size k = `batches.len()`, chain i is
    /// evaluated on batch `batches[i]`, and the result has shape [k]. Chains
    /// must not interact (chain i's loss depends on row i only).
    fn loss(&self, params: &[Tensor], batches: &[usize]) -> Result<Tensor>;

    /// The loss (as [`LlcProblem::loss`]) and its gradient with respect to
    /// each parameter whose `moving` flag is set (`None` for the others).
    ///
    /// The default differentiates [`LlcProblem::loss`] with autograd. A
    /// problem whose loss runs through its own model object (holding its
    /// own parameter tensors) overrides this: copy `params` in, evaluate,
    /// return the gradients.
    fn loss_and_grad(
        &self,
        params: &[Tensor],
        batches: &[usize],
        moving: &[bool],
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let leaves: Vec<Tensor> = params
            .iter()
            .zip(moving)
            .map(|(p, &m)| if m { p.detach().set_requires_grad(true) } else { p.shallow_clone() })
            .collect();
        let loss = self.loss(&leaves, batches)?;
        let inputs: Vec<&Tensor> = leaves.iter().zip(moving).filter(|(_, &m)| m).map(|(t, _)| t).collect();
        let mut grads = Tensor::f_run_backward(&[loss.sum(Kind::Double)], &inputs, false, false)?.into_iter();
        let grads = moving.iter().map(|&m| if m { grads.next() } else { None }).collect();
        Ok((loss.detach(), grads))
    }
}

/// Losses at w* per batch, L_B(w*), shared by every estimate made on one
/// problem (the rungs of a ladder) or on problems with the same w* and
/// batches (the whole model and every head of one checkpoint): the paired
/// estimator needs L_Bt(w*) for each batch drawn, and computing it once per
/// batch instead of once per estimate saves a forward pass per new batch.
pub struct StarCache {
    values: std::sync::Mutex<Vec<f64>>,
}

impl StarCache {
    /// An empty cache for `n_batches` batches.
    pub fn new(n_batches: usize) -> StarCache {
        StarCache { values: std::sync::Mutex::new(vec![f64::NAN; n_batches]) }
    }
    /// Number of batches it covers.
    pub fn len(&self) -> usize {
        self.values.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    /// Whether it covers no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub(crate) fn get(&self, b: usize) -> Option<f64> {
        let v = self.values.lock().unwrap_or_else(|e| e.into_inner()).get(b).copied().unwrap_or(f64::NAN);
        (!v.is_nan()).then_some(v)
    }
    pub(crate) fn put(&self, b: usize, v: f64) {
        if let Some(x) = self.values.lock().unwrap_or_else(|e| e.into_inner()).get_mut(b) {
            *x = v;
        }
    }
}

/// A tensor read by several sampler threads at once (training data, say).
///
/// `tch::Tensor` is `Send` but not `Sync`: libtorch allows concurrent reads of
/// one tensor, but nothing stops a holder of `&Tensor` from writing to it
/// (`shallow_clone()` then an in-place op, or `set_requires_grad`), which
/// would race with the readers. This wrapper is `Sync` on a promise made
/// when it is built, hence the `unsafe` constructor; see [`SharedTensor::new`].
pub struct SharedTensor(Tensor);

// SAFETY: every `SharedTensor` is built by `SharedTensor::new`, whose caller
// promises that the tensor's storage and metadata are only read for as long
// as the wrapper lives; concurrent reads of a libtorch tensor are safe.
unsafe impl Sync for SharedTensor {}

impl SharedTensor {
    /// Wrap `t` (detached from autograd) for reading from several threads.
    ///
    /// # Safety
    ///
    /// For as long as the returned value lives, neither the caller nor any
    /// code that reaches the tensor through it (by `Deref`) may modify the
    /// tensor or any tensor sharing its storage (`t` itself, its views and
    /// shallow clones): no in-place operation (`fill_`, `copy_`, `add_`, ...),
    /// no `set_requires_grad`, no `backward` into it, from any thread. Only
    /// out-of-place reads (indexing, `matmul`, `to_device`, ...) are allowed.
    /// The simplest way to keep this promise is to build the tensor just for
    /// the wrapper, keep the wrapper in a private field and use it only in
    /// out-of-place expressions.
    pub unsafe fn new(t: Tensor) -> Self {
        SharedTensor(t.detach())
    }
}

impl std::ops::Deref for SharedTensor {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        &self.0
    }
}

/// Which part of a parameter moves during sampling.
#[derive(Debug)]
pub enum Movable {
    /// Stays at w* (and costs no gradient).
    Frozen,
    /// Every element moves.
    All,
    /// Only elements where this 0/1 tensor (same shape) is 1 move.
    Mask(Tensor),
}

impl Movable {
    /// Every parameter moves.
    pub fn all(n_params: usize) -> Vec<Movable> {
        (0..n_params).map(|_| Movable::All).collect()
    }
    /// Elements `index` along the first dimension of a parameter of shape
    /// `shape` move (one head's slice of `W_Q` [n_heads, d_model, d_head],
    /// say).
    pub fn first_dim_slice(shape: &[i64], index: i64, kind: Kind, device: Device) -> Movable {
        let m = Tensor::zeros(shape, (kind, device));
        let mut slice = m.get(index);
        let _ = slice.fill_(1.0);
        Movable::Mask(m)
    }
    fn copy_to(&self, device: Device) -> Movable {
        match self {
            Movable::Frozen => Movable::Frozen,
            Movable::All => Movable::All,
            Movable::Mask(m) => Movable::Mask(m.to_device(device).copy().detach()),
        }
    }
    fn moving_count(&self, numel: usize) -> usize {
        match self {
            Movable::Frozen => 0,
            Movable::All => numel,
            Movable::Mask(m) => m.sum(Kind::Double).double_value(&[]).round() as usize,
        }
    }
}

/// How a chain ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainStatus {
    /// The chain ran to the end.
    Ok,
    /// The loss became NaN or infinite at this step.
    NonFinite {
        /// The draw at which it happened.
        step: usize,
    },
    /// nβ·(L_B(w) − L_B(w*)) passed the divergence threshold at this step.
    Diverged {
        /// The draw at which it happened.
        step: usize,
        /// nβ·ΔL at that draw.
        value: f64,
        /// The threshold it passed.
        threshold: f64,
    },
}

impl ChainStatus {
    /// Whether the chain finished without failing.
    pub fn is_ok(&self) -> bool {
        matches!(self, ChainStatus::Ok)
    }
}

impl fmt::Display for ChainStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainStatus::Ok => write!(f, "ok"),
            ChainStatus::NonFinite { step } => write!(f, "loss became non-finite at step {step}"),
            ChainStatus::Diverged { step, value, threshold } => {
                write!(f, "diverged at step {step} (nβ·ΔL = {value:.3e} > {threshold:.3e})")
            }
        }
    }
}

/// One chain's result.
#[derive(Debug, Clone)]
pub struct ChainReport {
    /// Chain index.
    pub chain: usize,
    /// How it ended.
    pub status: ChainStatus,
    /// Paired estimate from this chain's post-burn-in draws (NaN if failed).
    pub llc: f64,
    /// Paired estimate over all draws, burn-in included (diagnostic).
    pub llc_all_steps: f64,
    /// Mean nβ·ΔL over the first and second halves of the post-burn-in draws.
    pub half_means: (f64, f64),
}

/// The LLC estimate with everything needed to judge it.
#[derive(Debug, Clone)]
pub struct LlcEstimate {
    /// Paired estimate: mean over the good chains.
    pub llc: f64,
    /// Standard deviation of the per-chain estimates (NaN for one chain).
    pub std: f64,
    /// Standard error of `llc`: std / sqrt(good chains).
    pub se: f64,
    /// Paired estimate over all draws, burn-in included (diagnostic only).
    pub llc_all_steps: f64,
    /// devinterp-style unpaired estimate: the chains' mean loss minus one
    /// reference loss L_Bref(w*) on a single batch shared by every chain
    /// (diagnostic only).
    pub llc_unpaired: f64,
    /// The batch of that reference loss.
    pub reference_batch: usize,
    /// Training samples n.
    pub n_samples: usize,
    /// nβ (n times the inverse temperature).
    pub n_beta: f64,
    /// Number of parameter elements that move.
    pub moving_params: usize,
    /// The settings used.
    pub config: LlcConfig,
    /// Every chain's result.
    pub chains: Vec<ChainReport>,
    /// Traces are averaged over blocks of this many consecutive draws.
    pub trace_block: usize,
    /// Per chain, block means of L_Bt(w_t) (NaN after a failure).
    pub loss_trace: Vec<Vec<f64>>,
    /// Per chain, block means of nβ·(L_Bt(w_t) − L_Bt(w*)).
    pub delta_trace: Vec<Vec<f64>>,
    /// Human-readable warnings (failed chains, drift, outliers).
    pub warnings: Vec<String>,
    /// Diagnostics and reliability flags (see `headlab_analysis::llc_diag`;
    /// the no-plateau flag is added by [`select`]).
    pub diagnosis: Diagnosis,
}

impl LlcEstimate {
    /// Chains that finished.
    pub fn n_good(&self) -> usize {
        self.chains.iter().filter(|c| c.status.is_ok()).count()
    }
    /// Chains that failed.
    pub fn n_failed(&self) -> usize {
        self.chains.len() - self.n_good()
    }
}

/// Progress callback: receives the number of SGLD steps just completed
/// (summed over chains). Called from the sampler threads.
pub type Progress<'a> = Option<&'a (dyn Fn(u64) + Sync)>;

/// Longest trace kept per chain (longer chains are block-averaged).
pub const MAX_TRACE_LEN: usize = 1000;

/// Estimate the LLC of `problem` at `w_star`, moving the parts of the
/// parameters that `movable` selects (one entry per parameter).
pub fn estimate<P: LlcProblem + ?Sized>(
    problem: &P,
    w_star: &[Tensor],
    movable: &[Movable],
    cfg: &LlcConfig,
    progress: Progress<'_>,
) -> Result<LlcEstimate> {
    estimate_impl(problem, w_star, movable, cfg, progress, true)
}

/// [`estimate`] without logging its warnings (the ladder's rungs, whose
/// failures at large ε are expected).
pub(crate) fn estimate_quiet<P: LlcProblem + ?Sized>(
    problem: &P,
    w_star: &[Tensor],
    movable: &[Movable],
    cfg: &LlcConfig,
    progress: Progress<'_>,
) -> Result<LlcEstimate> {
    estimate_impl(problem, w_star, movable, cfg, progress, false)
}

fn estimate_impl<P: LlcProblem + ?Sized>(
    problem: &P,
    w_star: &[Tensor],
    movable: &[Movable],
    cfg: &LlcConfig,
    progress: Progress<'_>,
    log: bool,
) -> Result<LlcEstimate> {
    cfg.validate()?;
    if w_star.len() != movable.len() {
        return Err(LlcError::Problem(format!(
            "{} parameters but {} movable entries; give one per parameter",
            w_star.len(),
            movable.len()
        )));
    }
    let n = problem.n_samples();
    if n < 2 {
        return Err(LlcError::Problem(format!("n_samples = {n}; need at least 2 training samples")));
    }
    if problem.n_batches() == 0 {
        return Err(LlcError::Problem("the problem has no batches".into()));
    }
    let mut moving = 0usize;
    for (i, (w, m)) in w_star.iter().zip(movable).enumerate() {
        if let Movable::Mask(mask) = m {
            if mask.size() != w.size() {
                return Err(LlcError::Problem(format!(
                    "mask of parameter {i} has shape {:?}, the parameter {:?}",
                    mask.size(),
                    w.size()
                )));
            }
        }
        if m.moving_count(w.numel()) > 0 && !matches!(w.kind(), Kind::Float | Kind::Double) {
            return Err(LlcError::Problem(format!(
                "parameter {i} has dtype {:?}; SGLD needs float or double parameters",
                w.kind()
            )));
        }
        moving += m.moving_count(w.numel());
    }
    if moving == 0 {
        return Err(LlcError::Problem("no parameter moves: the movable mask selects nothing".into()));
    }
    let n_beta = cfg.n_beta(n);
    let threshold = cfg.divergence_threshold.unwrap_or(1000.0 + 100.0 * moving as f64);
    let out = sampler::run(problem, w_star, movable, cfg, n_beta, threshold, progress)?;
    summarize(out, cfg, n, n_beta, moving, log)
}

/// Combine the chains' outcomes into the estimate and its diagnostics.
fn summarize(
    out: sampler::Output,
    cfg: &LlcConfig,
    n: usize,
    n_beta: f64,
    moving: usize,
    log: bool,
) -> Result<LlcEstimate> {
    let mut warnings = Vec::new();
    let burn = cfg.burn_in_steps();
    let post = (cfg.draws - burn) as f64;
    let half = (cfg.draws - burn) / 2;
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (c, ch) in out.chains.iter().enumerate() {
        let ok = ch.status.is_ok();
        if !ok {
            failures.push(format!("chain {c} {}", ch.status));
        }
        let first = ch.sum_first / half as f64;
        let second = ch.sum_second / (cfg.draws - burn - half) as f64;
        reports.push(ChainReport {
            chain: c,
            status: ch.status.clone(),
            llc: if ok { ch.sum_post / post } else { f64::NAN },
            llc_all_steps: if ok { ch.sum_all / cfg.draws as f64 } else { f64::NAN },
            half_means: if ok { (first, second) } else { (f64::NAN, f64::NAN) },
        });
    }
    let good: Vec<usize> = (0..reports.len()).filter(|&c| reports[c].status.is_ok()).collect();
    let suggest = cfg.epsilon / 3.0;
    if good.is_empty() {
        return Err(LlcError::AllChainsFailed {
            chains: reports.len(),
            details: failures.join("; "),
            epsilon: cfg.epsilon,
            suggest,
        });
    }
    if !failures.is_empty() {
        warnings.push(format!(
            "{} of {} chains failed and were excluded from the estimate: {}. The step size ε = {:e} is too \
             large for this checkpoint; try --epsilon {:e} (or run with --calibrate)",
            failures.len(),
            reports.len(),
            failures.join("; "),
            cfg.epsilon,
            suggest
        ));
    }
    let vals: Vec<f64> = good.iter().map(|&c| reports[c].llc).collect();
    let (llc, std) = mean_std(&vals, Spread::Sample);
    let se = if vals.len() > 1 { std / (vals.len() as f64).sqrt() } else { f64::NAN };
    let llc_all_steps = mean_std(&good.iter().map(|&c| reports[c].llc_all_steps).collect::<Vec<_>>(), Spread::Sample).0;
    let mean_loss_post =
        mean_std(&good.iter().map(|&c| out.chains[c].sum_loss_post / post).collect::<Vec<_>>(), Spread::Sample).0;
    let llc_unpaired = n_beta * (mean_loss_post - out.reference_loss);

    // Drift, negative values, R̂: the flags of llc_diag (failures were warned about above).
    let burn_points = burn.div_ceil(out.trace_block);
    let delta_trace: Vec<Vec<f64>> = out.chains.iter().map(|c| c.delta_trace.clone()).collect();
    let diagnosis = diagnose(&DiagInput {
        llc,
        se,
        delta_trace: &delta_trace,
        burn_in_points: burn_points,
        n_failed: failures.len(),
        plateau: None,
    });
    for f in &diagnosis.flags {
        if !matches!(f, headlab_analysis::llc_diag::Flag::Diverged { .. }) {
            warnings.push(f.reason());
        }
    }
    // Outlying chains (kept, but pointed out).
    if vals.len() >= 4 {
        let mut sorted = vals.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let med = sorted[sorted.len() / 2];
        let mut dev: Vec<f64> = sorted.iter().map(|v| (v - med).abs()).collect();
        dev.sort_by(|a, b| a.total_cmp(b));
        let mad = dev[dev.len() / 2].max(1e-12 + 1e-6 * med.abs());
        for &c in &good {
            let v = reports[c].llc;
            if (v - med).abs() > 8.0 * mad && (v - med).abs() > 0.25 * med.abs().max(1e-3) {
                warnings.push(format!(
                    "chain {c} gives {v:.3}, far from the other chains (median {med:.3}); look at its trace \
                     (a slowly diverging or stuck chain); a smaller ε or more draws may help"
                ));
            }
        }
    }
    if log {
        for w in &warnings {
            tracing::warn!("{w}");
        }
    }
    Ok(LlcEstimate {
        llc,
        std,
        se,
        llc_all_steps,
        llc_unpaired,
        reference_batch: out.reference_batch,
        n_samples: n,
        n_beta,
        moving_params: moving,
        config: cfg.clone(),
        chains: reports,
        trace_block: out.trace_block,
        loss_trace: out.chains.iter().map(|c| c.loss_trace.clone()).collect(),
        delta_trace,
        warnings,
        diagnosis,
    })
}

/// One point of a calibration sweep: a ladder rung (ε, γ, estimate, its
/// standard error, failed chains) with the estimate's warnings and traces.
#[derive(Debug, Clone)]
pub struct CalibrationPoint {
    /// The rung, as the per-estimate step-size ladder stores it (`llc` is
    /// NaN when every chain failed).
    pub rung: headlab_analysis::llc_diag::LadderPoint,
    /// Warnings of the estimate.
    pub warnings: Vec<String>,
    /// Per chain, block means of nβ·ΔL (empty when every chain failed).
    pub delta_trace: Vec<Vec<f64>>,
}

/// A sweep of the estimate over ε (and γ).
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Every (ε, γ) point swept.
    pub points: Vec<CalibrationPoint>,
    /// (ε, γ) recommended: per γ the ladder's rule (the largest ε of a
    /// plateau below the first failure, `llc_diag::select_step`), for the γ
    /// with the longest plateau; without any plateau the best available
    /// step, which the note says is not to be trusted.
    pub recommended: Option<(f64, f64)>,
    /// Why (or why nothing) was recommended.
    pub note: String,
}

/// Sweep the estimate over every (ε, γ) pair, with the rest of `base`.
pub fn calibrate<P: LlcProblem + ?Sized>(
    problem: &P,
    w_star: &[Tensor],
    movable: &[Movable],
    base: &LlcConfig,
    epsilons: &[f64],
    gammas: &[f64],
    progress: Progress<'_>,
) -> Result<Calibration> {
    if epsilons.is_empty() || gammas.is_empty() {
        return Err(LlcError::Config {
            key: "calibration".into(),
            value: format!("{} step sizes × {} γ values", epsilons.len(), gammas.len()),
            expected: "at least one ε and one γ".into(),
        });
    }
    let mut eps = epsilons.to_vec();
    eps.sort_by(|a, b| a.total_cmp(b));
    eps.dedup();
    let mut points = Vec::new();
    for &g in gammas {
        for &e in &eps {
            let cfg = LlcConfig { epsilon: e, gamma: g, ..base.clone() };
            match estimate(problem, w_star, movable, &cfg, progress) {
                Ok(est) => points.push(CalibrationPoint {
                    rung: LadderPoint {
                        epsilon: e,
                        gamma: g,
                        llc: est.llc,
                        se: est.se,
                        n_failed: est.n_failed(),
                        chains: est.chains.len(),
                    },
                    warnings: est.warnings.clone(),
                    delta_trace: est.delta_trace.clone(),
                }),
                Err(LlcError::AllChainsFailed { chains, details, .. }) => points.push(CalibrationPoint {
                    rung: LadderPoint { epsilon: e, gamma: g, llc: f64::NAN, se: f64::NAN, n_failed: chains, chains },
                    warnings: vec![format!("all chains failed: {details}")],
                    delta_trace: Vec::new(),
                }),
                Err(e) => return Err(e),
            }
        }
    }
    let (recommended, note) = recommend(&points, &eps, gammas);
    Ok(Calibration { points, recommended, note })
}

/// The recommendation of a sweep: per γ, the step-size rule of the
/// per-estimate ladder ([`select_step`]: the largest ε of a plateau below
/// the first failure); the γ with the longest plateau wins (the first on a
/// tie). Without a plateau at any γ, the best available step is named as
/// such, not recommended as stable.
fn recommend(points: &[CalibrationPoint], eps: &[f64], gammas: &[f64]) -> (Option<(f64, f64)>, String) {
    let mut best: Option<(usize, f64, f64, String)> = None; // (plateau length, ε, γ, reason)
    let mut fallback: Option<(f64, f64, String)> = None;
    for &g in gammas {
        // Every (ε, γ) of the grid was swept; a missing one leaves the row out.
        let Some(row) = eps
            .iter()
            .map(|&e| points.iter().find(|p| p.rung.epsilon == e && p.rung.gamma == g).map(|p| p.rung.clone()))
            .collect::<Option<Vec<LadderPoint>>>()
        else {
            continue;
        };
        let choice = select_step(&row, &SelectOptions::default());
        match (choice.chosen, choice.plateau) {
            (Some(i), Some((s, e))) if choice.reliable && best.as_ref().is_none_or(|b| e - s + 1 > b.0) => {
                best = Some((e - s + 1, row[i].epsilon, g, choice.reason));
            }
            (Some(i), None) if fallback.is_none() => fallback = Some((row[i].epsilon, g, choice.reason)),
            _ => {}
        }
    }
    match (best, fallback) {
        (Some((_, e, g, why)), _) => (Some((e, g)), format!("at γ = {g}: {why}")),
        (None, Some((e, g, why))) => (
            Some((e, g)),
            format!(
                "at γ = {g}: {why}; ε = {e:e} is only the best available: widen the sweep or use more draws before \
                 trusting it"
            ),
        ),
        (None, None) => (None, "every step size had failed chains: sweep smaller ε".into()),
    }
}
