//! Scan and snap (Tian et al. 2023, "Scan and Snap: Understanding Training
//! Dynamics and Token Composition in 1-layer Transformer", arXiv 2305.16380).
//!
//! The paper's testbed: a next-token task where the label is determined by
//! which *distinctive* context tokens co-occur with the query, diluted by
//! *common* tokens that occur with every label. A one-layer transformer
//! trained by SGD first *scans* — attention moves from uniform towards the
//! distinctive tokens, its entropy falls — and then *snaps*: once the decoder
//! has fitted the labels the gradient reaching the attention vanishes and the
//! attention logits freeze. The decoder's learning rate relative to the
//! attention's decides when: a faster decoder snaps earlier, leaving the
//! attention less sparse. With little data, attention also latches onto
//! common tokens that happen to co-occur with one label in the sample.
//!
//! [`run_toy`] reproduces all three observations (a main run, a sweep over
//! the learning-rate ratio, a sweep over dataset size); [`write_h5`],
//! [`write_plots`] and [`write_page`] store and show them. The freeze
//! detector ([`detect_freeze`]) takes any series of logit vectors, so the
//! same measure applies to a physics run's heads across checkpoints.

pub(crate) mod model;
mod output;
pub mod task;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{parse_toml, ConfigError};

pub use headlab_analysis::freeze::{
    detect_freeze, relative_change, snap_from_changes, steepest_drop, FreezeConfig, FreezeScale,
};
pub use output::{write_h5, write_page, write_plots};
pub use task::{Batch, Task, TaskConfig, TokenKind};

#[derive(Debug, thiserror::Error)]
/// Why the scan-and-snap lens could not run.
pub enum ScanSnapError {
    /// Passed through from `ConfigError`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Shown as "scan-snap: training diverged at step {step} (lr_attention {lr_attention}, lr_decoder {l...".
    #[error("scan-snap: training diverged at step {step} (lr_attention {lr_attention}, lr_decoder {lr_decoder}); lower the learning rates")]
    Diverged {
        /// The training step.
        step: u64,
        /// The `lr_attention` shown in the message.
        lr_attention: f64,
        /// The `lr_decoder` shown in the message.
        lr_decoder: f64,
    },
    /// Passed through from `headlab_store::StoreError`.
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    /// Shown as "scan-snap: torch error: {0}".
    #[error("scan-snap: torch error: {0}")]
    Torch(#[from] tch::TchError),
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

/// How tokens are embedded (fixed, not trained).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Embedding {
    /// One-hot: d_model = vocabulary size, tokens exactly orthogonal (the paper's assumption).
    OneHot,
    /// Gaussian with variance 1/d_model: nearly orthogonal for d_model ≫ 1.
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// The `[model]` table: the one-layer toy transformer.
pub struct ToyModelConfig {
    /// How tokens are embedded.
    pub embedding: Embedding,
    /// Embedding width for `embedding = "random"` (ignored for one-hot).
    pub d_model: usize,
    /// Query/key width of the single head.
    pub d_head: usize,
}

impl Default for ToyModelConfig {
    fn default() -> Self {
        ToyModelConfig { embedding: Embedding::OneHot, d_model: 32, d_head: 16 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// The `[train]` table.
pub struct ToyTrainConfig {
    /// SGD steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Constant SGD rate of W_Q and W_K (the paper's Z).
    pub lr_attention: f64,
    /// Constant SGD rate of W_V, W_out, b_out (the paper's Y).
    pub lr_decoder: f64,
    /// Measure every this many steps.
    pub eval_every: u64,
    /// Seed of the main run (sweeps use seed, seed+1, ...).
    /// Seed of the run.
    pub seed: u64,
}

impl Default for ToyTrainConfig {
    fn default() -> Self {
        ToyTrainConfig { steps: 2000, batch_size: 64, lr_attention: 1.0, lr_decoder: 1.0, eval_every: 10, seed: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// The `[sweep]` table: the learning-rate and dataset-size sweeps.
pub struct SweepConfig {
    /// Decoder/attention learning-rate ratios (lr_decoder = ratio · lr_attention).
    pub lr_ratios: Vec<f64>,
    /// Training-set sizes for the accidental co-occurrence sweep (0 = infinite).
    pub dataset_sizes: Vec<usize>,
    /// Seeds per dataset size.
    pub seeds: usize,
    /// Steps per sweep run (0 = train.steps).
    pub steps: u64,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            lr_ratios: vec![0.1, 0.3, 1.0, 3.0, 10.0],
            dataset_sizes: vec![12, 24, 48, 192, 0],
            seeds: 3,
            steps: 0,
        }
    }
}

/// Everything the toy lens needs; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScanSnapConfig {
    /// The `[task]` table.
    pub task: TaskConfig,
    /// The `[model]` table.
    pub model: ToyModelConfig,
    /// The `[train]` table.
    pub train: ToyTrainConfig,
    /// The `[freeze]` table: the snap detector.
    pub freeze: FreezeConfig,
    /// The `[sweep]` table.
    pub sweep: SweepConfig,
}

impl ScanSnapConfig {
    /// Parse and validate a config (`path` names it in errors).
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Self, ScanSnapError> {
        let cfg: ScanSnapConfig = parse_toml("scan-snap", text, &path.display().to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config as TOML (stored in the output file).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        crate::config::to_toml("scan-snap", self)
    }

    /// All range checks in one place.
    pub fn validate(&self) -> Result<(), ScanSnapError> {
        fn bad(key: &str, value: impl std::fmt::Display, hint: &str) -> Result<(), ScanSnapError> {
            Err(ConfigError::invalid("scan-snap", key, value, hint).into())
        }
        let t = &self.task;
        if t.n_classes < 2 {
            return bad("task.n_classes", t.n_classes, "need at least 2 classes");
        }
        if t.distinct_per_class == 0 {
            return bad("task.distinct_per_class", 0, "each class needs at least one distinctive token");
        }
        if t.n_queries == 0 {
            return bad("task.n_queries", 0, "need at least one query token");
        }
        if t.context_len == 0 {
            return bad("task.context_len", 0, "need at least one context token");
        }
        if !(t.distinct_prob > 0.0 && t.distinct_prob <= 1.0) {
            return bad("task.distinct_prob", t.distinct_prob, "must be in (0, 1]");
        }
        if t.eval_size == 0 {
            return bad("task.eval_size", 0, "need at least one evaluation sequence");
        }
        let m = &self.model;
        if m.d_head == 0 {
            return bad("model.d_head", 0, "must be positive");
        }
        if m.embedding == Embedding::Random && m.d_model == 0 {
            return bad("model.d_model", 0, "must be positive");
        }
        let tr = &self.train;
        if tr.steps == 0 {
            return bad("train.steps", 0, "must be positive");
        }
        if tr.batch_size == 0 {
            return bad("train.batch_size", 0, "must be positive");
        }
        for (k, v) in [("train.lr_attention", tr.lr_attention), ("train.lr_decoder", tr.lr_decoder)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(k, v, "must be a finite, non-negative learning rate");
            }
        }
        if tr.eval_every == 0 {
            return bad("train.eval_every", 0, "must be positive");
        }
        if self.freeze.window == 0 || self.freeze.window < tr.eval_every {
            return bad("freeze.window", self.freeze.window, "must be at least train.eval_every");
        }
        if !(self.freeze.threshold > 0.0) {
            return bad("freeze.threshold", self.freeze.threshold, "must be positive");
        }
        for &r in &self.sweep.lr_ratios {
            if !(r.is_finite() && r > 0.0) {
                return bad("sweep.lr_ratios", r, "ratios must be positive");
            }
        }
        if !self.sweep.dataset_sizes.is_empty() && self.sweep.seeds == 0 {
            return bad("sweep.seeds", 0, "need at least one seed per dataset size");
        }
        Ok(())
    }

    fn sweep_steps(&self) -> u64 {
        if self.sweep.steps == 0 {
            self.train.steps
        } else {
            self.sweep.steps
        }
    }
}

/// Measurements of one training run, one entry per evaluation step.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Recorded steps.
    pub steps: Vec<u64>,
    /// Loss of the last training batch before the evaluation (NaN at step 0).
    pub train_loss: Vec<f32>,
    /// Evaluation loss at those steps.
    pub eval_loss: Vec<f32>,
    /// Evaluation accuracy at those steps.
    pub eval_acc: Vec<f32>,
    /// Mean entropy (nats) of the query's attention over the sequence.
    pub entropy: Vec<f32>,
    /// Mean attention mass on the (true class's) distinctive tokens.
    pub mass_distinct: Vec<f32>,
    /// Mean attention mass on common tokens.
    pub mass_common: Vec<f32>,
    /// Mean attention mass on the query token itself.
    pub mass_self: Vec<f32>,
    /// Centred attention logits, row-major `[steps, n_queries, vocab]`.
    pub logits: Vec<f32>,
    /// `n_queries · vocab`.
    pub dim: usize,
    /// Relative change of `logits` over the freeze window (NaN where undefined).
    pub rel_change: Vec<f32>,
    /// Step at which the logits froze, if they did.
    pub snap_step: Option<u64>,
    /// Where the entropy falls fastest (middle of the freeze window).
    pub steepest_drop_step: Option<u64>,
}

impl Trace {
    /// Last value of a trace (NaN when empty).
    pub fn last(v: &[f32]) -> f32 {
        v.last().copied().unwrap_or(f32::NAN)
    }
    /// Final centred logits `[n_queries · vocab]`.
    pub fn final_logits(&self) -> &[f32] {
        &self.logits[self.logits.len() - self.dim..]
    }
}

/// One point of the learning-rate-ratio sweep.
#[derive(Debug, Clone)]
pub struct LrPoint {
    /// lr_decoder / lr_attention.
    pub ratio: f64,
    /// Learning rate of W_Q, W_K.
    pub lr_attention: f64,
    /// Learning rate of W_V, W_out.
    pub lr_decoder: f64,
    /// The run's trace.
    pub trace: Trace,
}

/// One run of the dataset-size sweep.
#[derive(Debug, Clone)]
pub struct DataPoint {
    /// Training-set size (0 = infinite).
    pub size: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Share of the attention's top choices taken by common tokens: of the
    /// `K·distinct_per_class` context tokens with the highest final logits,
    /// the fraction that are common (0 when attention selects exactly the
    /// distinctive tokens; a common token gets there by looking distinctive
    /// in the training sample — an accidental co-occurrence).
    pub lock_rate: f32,
    /// Final mean attention mass on common tokens (true distribution).
    pub mass_common: f32,
    /// Final evaluation accuracy.
    pub eval_acc: f32,
    /// Pearson correlation, over common tokens, between their class purity in
    /// the training set and their final attention logit (NaN for infinite data).
    pub purity_logit_corr: f32,
    /// Mean class purity of common tokens in the training set (1/K expected).
    pub mean_common_purity: f32,
}

#[derive(Debug, Clone)]
/// Everything the lens computed.
pub struct ScanSnapResult {
    /// The settings used.
    pub config: ScanSnapConfig,
    /// Kind of every vocabulary token.
    pub kinds: Vec<TokenKind>,
    /// The main run.
    pub main: Trace,
    /// The learning-rate-ratio sweep.
    pub lr_sweep: Vec<LrPoint>,
    /// The dataset-size sweep.
    pub data_sweep: Vec<DataPoint>,
}

/// Progress callback: (stage, finished runs, total runs).
pub type Progress<'a> = &'a dyn Fn(&str, usize, usize);

/// Train the main run, then the learning-rate and dataset sweeps.
pub fn run_toy(cfg: &ScanSnapConfig, progress: Option<Progress>) -> Result<ScanSnapResult, ScanSnapError> {
    cfg.validate()?;
    let task = Task::new(cfg.task.clone());
    let total = 1 + cfg.sweep.lr_ratios.len() + cfg.sweep.dataset_sizes.len() * cfg.sweep.seeds;
    let report = |stage: &str, done: usize| {
        if let Some(p) = progress {
            p(stage, done, total)
        }
    };
    let t = &cfg.train;
    report("main run", 0);
    let (main, _) = model::train_run(cfg, t.lr_attention, t.lr_decoder, cfg.task.train_size, t.seed, t.steps)?;
    tracing::info!(snap = ?main.snap_step, entropy = Trace::last(&main.entropy), "scan-snap main run done");
    let mut done = 1;
    let mut lr_sweep = Vec::new();
    for &ratio in &cfg.sweep.lr_ratios {
        report("learning-rate ratio sweep", done);
        let lr_dec = ratio * t.lr_attention;
        let (trace, _) = model::train_run(cfg, t.lr_attention, lr_dec, cfg.task.train_size, t.seed, cfg.sweep_steps())?;
        tracing::info!(ratio, snap = ?trace.snap_step, "lr sweep point");
        lr_sweep.push(LrPoint { ratio, lr_attention: t.lr_attention, lr_decoder: lr_dec, trace });
        done += 1;
    }
    let mut data_sweep = Vec::new();
    for &size in &cfg.sweep.dataset_sizes {
        for s in 0..cfg.sweep.seeds as u64 {
            report("dataset-size sweep", done);
            let seed = headlab_sim::seed::derive_seed(t.seed, headlab_sim::seed::Stream::Replicate { index: s });
            let (trace, train_set) =
                model::train_run(cfg, t.lr_attention, t.lr_decoder, size, seed, cfg.sweep_steps())?;
            data_sweep.push(lock_measures(&task, size, seed, &trace, train_set.as_ref()));
            done += 1;
        }
    }
    report("done", total);
    Ok(ScanSnapResult { config: cfg.clone(), kinds: task.kinds(), main, lr_sweep, data_sweep })
}

/// Accidental co-occurrence measures of one run (averaged over query tokens).
pub fn lock_measures(task: &Task, size: usize, seed: u64, trace: &Trace, train_set: Option<&Batch>) -> DataPoint {
    let v = task.vocab_size();
    let nq = task.cfg.n_queries;
    let fl = trace.final_logits();
    let logit: Vec<f32> = (0..v).map(|t| (0..nq).map(|q| fl[q * v + t]).sum::<f32>() / nq as f32).collect();
    let n_distinct = (0..v).filter(|&t| matches!(task.kind(t), TokenKind::Distinct(_))).count();
    let common: Vec<usize> = (0..v).filter(|&t| task.kind(t) == TokenKind::Common).collect();
    // Context tokens ranked by final logit; the top `n_distinct` are what attention selects.
    let mut ranked: Vec<usize> = (0..v).filter(|&t| !matches!(task.kind(t), TokenKind::Query(_))).collect();
    ranked.sort_by(|&a, &b| logit[b].total_cmp(&logit[a]));
    let lock_rate =
        ranked[..n_distinct].iter().filter(|&&t| task.kind(t) == TokenKind::Common).count() as f32 / n_distinct as f32;
    let (corr, mean_purity) = match train_set {
        Some(ts) => {
            let pur = task.purity(ts);
            let pairs: Vec<(f32, f32)> =
                common.iter().filter(|&&t| pur[t].is_finite()).map(|&t| (pur[t], logit[t])).collect();
            let mp = pairs.iter().map(|p| p.0).sum::<f32>() / pairs.len().max(1) as f32;
            (pearson(&pairs), mp)
        }
        None => (f32::NAN, 1.0 / task.cfg.n_classes as f32),
    };
    DataPoint {
        size,
        seed,
        lock_rate,
        mass_common: Trace::last(&trace.mass_common),
        eval_acc: Trace::last(&trace.eval_acc),
        purity_logit_corr: corr,
        mean_common_purity: mean_purity,
    }
}

fn pearson(p: &[(f32, f32)]) -> f32 {
    let n = p.len() as f64;
    if n < 2.0 {
        return f32::NAN;
    }
    let mx = p.iter().map(|q| q.0 as f64).sum::<f64>() / n;
    let my = p.iter().map(|q| q.1 as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in p {
        let (dx, dy) = (x as f64 - mx, y as f64 - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        f32::NAN
    } else {
        (sxy / (sxx * syy).sqrt()) as f32
    }
}

/// Train one run with the config's main settings (no sweeps).
pub fn train_main(cfg: &ScanSnapConfig) -> Result<Trace, ScanSnapError> {
    cfg.validate()?;
    let t = &cfg.train;
    Ok(model::train_run(cfg, t.lr_attention, t.lr_decoder, cfg.task.train_size, t.seed, t.steps)?.0)
}

/// Everything the `headlab lens scan-snap` command does: train, sweep, and
/// write `scan_snap.h5`, the PNGs and `index.html` into `out`. Returns the
/// result and the page's path.
pub fn run_lens(
    cfg: &ScanSnapConfig,
    out: &std::path::Path,
    progress: Option<Progress>,
) -> Result<(ScanSnapResult, PathBuf), ScanSnapError> {
    let res = run_toy(cfg, progress)?;
    std::fs::create_dir_all(out).map_err(|source| ScanSnapError::Io { path: out.to_path_buf(), source })?;
    write_h5(&out.join("scan_snap.h5"), &res)?;
    let plots = write_plots(out, &res)?;
    let page = write_page(out, &res, &plots, "scan_snap.h5")?;
    Ok((res, page))
}
