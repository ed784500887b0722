//! The training configuration: one serde struct with defaults, written as
//! `config.toml` into the run folder. Every key is optional.

use headlab_model::{DeviceSpec, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
/// The optimizer (`[optimizer] kind`).
pub enum OptimizerKind {
    /// SGD with (heavy-ball) momentum.
    Sgd,
    #[default]
    /// Adam (Kingma & Ba), L2 penalty added to the gradient.
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// The `[optimizer]` table.
pub struct OptimizerConfig {
    /// Which optimizer.
    pub kind: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Adam's first-moment decay.
    pub beta1: f64,
    /// Adam's second-moment decay.
    pub beta2: f64,
    /// Adam's denominator epsilon.
    pub eps: f64,
    /// L2 penalty (sgd, adam) or decoupled decay (adamw).
    pub weight_decay: f64,
    /// Momentum for sgd.
    pub momentum: f64,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    pub clip: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.9,
            clip: 1.0,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
/// The learning-rate schedule after warm-up.
pub enum ScheduleKind {
    #[default]
    /// Cosine decay to `lr * min_lr_ratio`.
    Cosine,
    /// Constant `lr`.
    Constant,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// The `[schedule]` table.
pub struct ScheduleConfig {
    /// Which schedule.
    pub kind: ScheduleKind,
    /// Linear warm-up from 0 to `lr` over this many steps.
    pub warmup: u64,
    /// Cosine decays to `lr * min_lr_ratio` at the last step.
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self { kind: ScheduleKind::Cosine, warmup: 100, min_lr_ratio: 0.1 }
    }
}

/// Which steps get a checkpoint: step 0, the last step, `count - dense`
/// log-spaced steps over the whole run, and a dense linear band
/// [dense_start, dense_end] (clipped to the run) where heads emerge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Number of checkpoints in all.
    pub count: usize,
    /// First step of the dense band.
    pub dense_start: u64,
    /// Last step of the dense band.
    pub dense_end: u64,
    /// Share of `count` spent in the dense band.
    pub dense_fraction: f64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { count: 80, dense_start: 100, dense_end: 1500, dense_fraction: 0.5 }
    }
}

/// Gradient-noise measurement during training (`[grad_noise]`), off by
/// default. At step 0 and every `every` steps, `batches` minibatch
/// gradients (batch_size rows each, drawn like training batches but from a
/// separate generator, so training is unchanged) minus the reference gradient
/// over `reference_rows` training rows (0 = all) give K noise vectors; their
/// norms' and coordinates' Hill tail index (with SE), kurtosis and Gaussian
/// references go to `/noise` in metrics.h5. Dropout is off while measuring.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GradNoiseConfig {
    /// Measure every this many steps (and at step 0); 0 = off.
    pub every: u64,
    /// Number of minibatch gradients per measurement (K, at least 4).
    pub batches: usize,
    /// Rows in the reference ("full-batch") gradient; 0 = every training row.
    pub reference_rows: usize,
    /// Hill estimator k; 0 = √(number of values).
    pub hill_k: usize,
}

impl Default for GradNoiseConfig {
    fn default() -> Self {
        Self { every: 0, batches: 16, reference_rows: 4096, hill_k: 0 }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// A run's training config (`config.toml` of a run folder); every field has a default.
pub struct TrainConfig {
    /// Dataset written by `headlab simulate` (the CLI's --data overrides).
    pub data: String,
    /// Content fingerprint of that dataset ([`headlab_sim::Dataset::fingerprint`]),
    /// recorded by `headlab train`; resume, probe, eval and llc refuse a
    /// dataset with another one. Empty: not recorded (older runs).
    pub data_fingerprint: String,
    /// Seed of the initial weights, the split, the batches and dropout.
    pub seed: u64,
    /// Number of optimizer updates.
    pub steps: u64,
    /// Frame pairs per minibatch.
    pub batch_size: usize,
    /// Share of trajectories held out for validation (split by trajectory).
    pub val_fraction: f64,
    /// Validation loss every this many steps (and at every checkpoint).
    pub eval_interval: u64,
    /// Up to this many validation frames are used for the validation loss.
    pub val_samples: usize,
    /// auto, cpu, cuda or cuda:N (resolved, and checked, when training starts).
    pub device: DeviceSpec,
    /// libtorch intra-op threads on CPU; 0 picks the default (see `default_threads`).
    pub threads: usize,
    /// Random-walk-style input noise (GNS): Gaussian noise with this many
    /// one-frame-change standard deviations is added to input positions and
    /// velocities, and the targets are corrected so the model learns to undo it.
    pub noise: f64,
    /// The `[model]` table.
    pub model: ModelConfig,
    /// The `[optimizer]` table.
    pub optimizer: OptimizerConfig,
    /// The `[schedule]` table.
    pub schedule: ScheduleConfig,
    /// The `[checkpoints]` table.
    pub checkpoints: CheckpointConfig,
    /// The `[grad_noise]` table (off by default).
    pub grad_noise: GradNoiseConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data: String::new(),
            data_fingerprint: String::new(),
            seed: 0,
            // Measured on scenes/demo.toml (256 trajectories): 3000 steps of
            // batch 64 at lr 3e-3 bring the validation one-step MSE 11.7x
            // below the no-change baseline in ~3 minutes on one busy CPU core.
            steps: 3000,
            batch_size: 64,
            val_fraction: 0.1,
            eval_interval: 100,
            val_samples: 512,
            device: DeviceSpec::Auto,
            threads: 0,
            noise: 0.0,
            model: ModelConfig::default(),
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            checkpoints: CheckpointConfig::default(),
            grad_noise: GradNoiseConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Parse TOML text (unknown keys are errors); `origin` names the file in messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<TrainConfig> {
        let cfg: TrainConfig =
            toml::from_str(text).map_err(|e| TrainError::Config { origin: origin.into(), msg: e.to_string() })?;
        cfg.validate().map_err(|e| match e {
            TrainError::Config { msg, .. } => TrainError::Config { origin: origin.into(), msg },
            e => e,
        })?;
        Ok(cfg)
    }

    /// Read and validate a config file.
    pub fn load(path: &std::path::Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Io { path: path.display().to_string(), msg: e.to_string() })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The config as TOML (every key written). Fails only on values TOML
    /// cannot hold, which [`TrainConfig::validate`] refuses first.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| TrainError::Config { origin: "config".into(), msg: format!("cannot be written as TOML: {e}") })
    }

    /// Check every field's range; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, hint: &str| {
            Err(TrainError::Config { origin: "config".into(), msg: format!("`{key}` = {value}: {hint}") })
        };
        self.model.validate().map_err(|e| TrainError::Config { origin: "config".into(), msg: e.to_string() })?;
        // TOML integers are signed 64-bit: larger values could not be saved.
        let max = i64::MAX as u64;
        for (key, v) in [
            ("seed", self.seed),
            ("steps", self.steps),
            ("eval_interval", self.eval_interval),
            ("schedule.warmup", self.schedule.warmup),
            ("checkpoints.dense_start", self.checkpoints.dense_start),
            ("checkpoints.dense_end", self.checkpoints.dense_end),
            ("grad_noise.every", self.grad_noise.every),
        ] {
            if v > max {
                return bad(
                    key,
                    v.to_string(),
                    &format!("must be at most {max} (2^63 - 1), the largest integer a TOML file holds"),
                );
            }
        }
        if self.steps == 0 {
            return bad("steps", "0".into(), "train for at least one step");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into(), "use a positive batch size (e.g. 32)");
        }
        if self.batch_size > MAX_BATCH_SIZE {
            return bad("batch_size", self.batch_size.to_string(), &format!("at most {MAX_BATCH_SIZE} frames per batch (the attention of one batch alone would not fit in memory)"));
        }
        if self.val_samples > MAX_BATCH_SIZE {
            return bad(
                "val_samples",
                self.val_samples.to_string(),
                &format!("at most {MAX_BATCH_SIZE} validation frames"),
            );
        }
        if self.threads > MAX_THREADS {
            return bad(
                "threads",
                self.threads.to_string(),
                &format!(
                    "at most {MAX_THREADS} (this machine has {} cores; 0 picks a good default)",
                    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
                ),
            );
        }
        if self.checkpoints.count > MAX_CHECKPOINTS {
            return bad(
                "checkpoints.count",
                self.checkpoints.count.to_string(),
                &format!("at most {MAX_CHECKPOINTS} checkpoints per run"),
            );
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad("val_fraction", self.val_fraction.to_string(), "use a fraction in [0, 1), e.g. 0.1");
        }
        if self.eval_interval == 0 {
            return bad("eval_interval", "0".into(), "use a positive number of steps");
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return bad("noise", self.noise.to_string(), "use a non-negative number (0 disables noise)");
        }
        let o = &self.optimizer;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return bad("optimizer.lr", o.lr.to_string(), "use a positive learning rate such as 1e-3");
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return bad("optimizer.beta1/beta2", format!("{}/{}", o.beta1, o.beta2), "betas must lie in [0, 1)");
        }
        if !(o.eps > 0.0) {
            return bad("optimizer.eps", o.eps.to_string(), "use a small positive number such as 1e-8");
        }
        if !(o.weight_decay >= 0.0) || !(0.0..1.0).contains(&o.momentum) || !(o.clip >= 0.0) {
            return bad(
                "optimizer",
                format!("weight_decay {}, momentum {}, clip {}", o.weight_decay, o.momentum, o.clip),
                "weight_decay and clip must be >= 0, momentum in [0, 1)",
            );
        }
        if !(0.0..=1.0).contains(&self.schedule.min_lr_ratio) {
            return bad("schedule.min_lr_ratio", self.schedule.min_lr_ratio.to_string(), "use a ratio in [0, 1]");
        }
        let c = &self.checkpoints;
        if c.count < 2 || !(0.0..=1.0).contains(&c.dense_fraction) || c.dense_start > c.dense_end {
            return bad(
                "checkpoints",
                format!("count {}, dense {}..{} ({})", c.count, c.dense_start, c.dense_end, c.dense_fraction),
                "count >= 2, dense_start <= dense_end, dense_fraction in [0, 1]",
            );
        }
        let g = &self.grad_noise;
        if g.every > 0 && g.batches < 4 {
            return bad(
                "grad_noise.batches",
                g.batches.to_string(),
                "use at least 4 minibatches per measurement (16 or more for a usable tail index)",
            );
        }
        Ok(())
    }

    /// The dataset named by `data`, for the run in `run_dir`: training stores
    /// it absolute; a relative path (older runs, hand-written configs) is
    /// taken relative to the run folder when the file is there, else to the
    /// current folder.
    pub fn data_path(&self, run_dir: &std::path::Path) -> std::path::PathBuf {
        let p = std::path::PathBuf::from(&self.data);
        if p.is_absolute() {
            return p;
        }
        let beside = run_dir.join(&p);
        if beside.exists() {
            beside
        } else {
            p
        }
    }

    /// Learning rate for the update that takes the model from `step` to `step + 1`.
    pub fn lr_at(&self, step: u64) -> f64 {
        let lr = self.optimizer.lr;
        let w = self.schedule.warmup;
        if step < w {
            return lr * (step + 1) as f64 / w as f64;
        }
        match self.schedule.kind {
            ScheduleKind::Constant => lr,
            ScheduleKind::Cosine => {
                let span = self.steps.saturating_sub(w).max(1) as f64;
                let t = ((step - w) as f64 / span).min(1.0);
                let min = lr * self.schedule.min_lr_ratio;
                min + 0.5 * (lr - min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }

    /// The steps at which checkpoints are written (sorted, unique, 0 and
    /// `steps` included, no two closer than [`MIN_CHECKPOINT_GAP`]).
    pub fn checkpoint_steps(&self) -> Vec<u64> {
        let total = self.steps;
        let c = &self.checkpoints;
        let n_dense = ((c.count as f64) * c.dense_fraction).round() as u64;
        let n_log = (c.count as u64).saturating_sub(n_dense).max(2);
        let mut s = std::collections::BTreeSet::new();
        s.insert(0);
        s.insert(total);
        for i in 0..n_log {
            let x = (i as f64 / (n_log - 1) as f64) * (total as f64).ln();
            s.insert((x.exp().round() as u64).min(total));
        }
        let (a, b) = (c.dense_start.min(total), c.dense_end.min(total));
        if n_dense > 0 && b > a {
            for i in 0..n_dense {
                let x = a as f64 + (b - a) as f64 * i as f64 / (n_dense.max(2) - 1) as f64;
                s.insert(x.round() as u64);
            }
        }
        // Near-duplicates (a log-spaced step a step or two from a dense one,
        // e.g. 136 and 138) would count twice in the fits: keep a step only
        // if it lies at least 2 % (and one step) after the last one kept; the
        // last step always stays, replacing a kept step too close before it.
        let mut out: Vec<u64> = Vec::with_capacity(s.len());
        for step in s {
            let too_close = |last: u64| ((step - last) as f64) < (MIN_CHECKPOINT_GAP * step as f64).max(1.0);
            match out.last().copied() {
                Some(last) if too_close(last) => {
                    if step == total && last != 0 {
                        out.pop();
                        out.push(step);
                    }
                }
                _ => out.push(step),
            }
        }
        out
    }
}

/// Smallest relative gap between two checkpoints (see `checkpoint_steps`).
pub const MIN_CHECKPOINT_GAP: f64 = 0.02;

/// Largest batch (and validation set) in frames: far above any useful
/// setting, far below what would exhaust memory before a step runs.
pub const MAX_BATCH_SIZE: usize = 1 << 20;
/// Most libtorch threads a config may ask for.
pub const MAX_THREADS: usize = 1024;
/// Most checkpoints a run may be configured to write.
pub const MAX_CHECKPOINTS: usize = 100_000;

/// libtorch intra-op threads when `threads = 0`: one thread on machines with
/// two or fewer cores (small models spend their time in many tiny kernels,
/// and a second thread that competes with the data pipeline or another
/// process costs more than it gains), otherwise half the cores, at most 8.
pub fn default_threads() -> usize {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if n <= 2 {
        1
    } else {
        (n / 2).min(8)
    }
}
