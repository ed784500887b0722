//! headlab-train: trains the particle transformer on a simulated dataset,
//! writes `config.toml`, `metrics.h5` and `ckpt/step_<8 digits>.h5` into a run
//! folder, resumes bit-identically, and evaluates runs (one-step MSE and
//! rollouts).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ds = headlab_store::dataset::read_dataset(std::path::Path::new("data/demo.h5"))?;
//! let cfg = headlab_train::TrainConfig::default();
//! let summary = headlab_train::train(&cfg, &ds, std::path::Path::new("checkpoints/demo"), &Default::default())?;
//! println!("val loss {} (no-change baseline {})", summary.val_loss, summary.baseline_val_loss);
//! # Ok(()) }
//! ```

pub mod config;
pub mod data;
pub mod eval;
pub mod noise;
pub mod optim;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use headlab_model::{Model, Normalization};
use headlab_sim::seed::{derive_seed, Stream};
use headlab_sim::Dataset;
use headlab_store::checkpoint::{
    checkpoint_path, list_checkpoints, read_checkpoint, write_checkpoint, Checkpoint, RngState,
};
use headlab_store::metrics::{read_metrics, write_metrics, Metrics};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

pub use config::{
    default_threads, CheckpointConfig, GradNoiseConfig, OptimizerConfig, OptimizerKind, ScheduleConfig, ScheduleKind,
    TrainConfig,
};
pub use data::{split_trajectories, TrainData};
pub use optim::Optimizer;

#[derive(Debug, thiserror::Error)]
/// Why training or evaluation could not run.
pub enum TrainError {
    /// Shown as "{origin}: {msg}".
    #[error("{origin}: {msg}")]
    Config {
        /// Where the text came from (a file, or what built it).
        origin: String,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// Shown as "dataset: {0}".
    #[error("dataset: {0}")]
    Data(String),
    /// Shown as "cannot resume: {0}".
    #[error("cannot resume: {0}")]
    Resume(String),
    /// Shown as "{path}: {msg}".
    #[error("{path}: {msg}")]
    Io {
        /// The file or folder concerned.
        path: String,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// Training produced a non-finite value; nothing after the last good
    /// (all-finite) checkpoint was written.
    #[error(
        "training stopped: {what} became non-finite at step {step} (loss {loss:.4e}, lr {lr:.3e}, gradient norm {grad_norm:.3e}). \
         The last good checkpoint (all weights finite) is {last_checkpoint}. Lower optimizer.lr, keep optimizer.clip > 0, or check the dataset for NaNs."
    )]
    NonFinite {
        /// The training step.
        step: u64,
        /// What became non-finite (the loss, the gradient, a weight).
        what: String,
        /// The loss at that step.
        loss: f64,
        /// The learning rate at that step.
        lr: f64,
        /// The gradient norm at that step.
        grad_norm: f64,
        /// The last good checkpoint.
        last_checkpoint: String,
    },
    /// Passed through from `headlab_model::ModelError`.
    #[error(transparent)]
    Model(#[from] headlab_model::ModelError),
    /// Passed through from `headlab_store::StoreError`.
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    /// Shown as "libtorch: {0}".
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Results of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// How a training call behaves (not part of the saved config).
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Continue from the newest checkpoint in the run folder.
    pub resume: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Set (e.g. by a Ctrl-C handler) to write a checkpoint and stop cleanly.
    pub stop: Option<Arc<AtomicBool>>,
    /// Behave as if stopped once this step is reached (tests, time-boxed runs).
    pub stop_at: Option<u64>,
}

#[derive(Debug, Clone)]
/// What a `train` call did.
pub struct TrainSummary {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Step reached (number of updates).
    pub step: u64,
    /// True when stopped early (Ctrl-C or `stop_at`).
    pub interrupted: bool,
    /// Training loss at the end (normalized target units).
    pub train_loss: f64,
    /// Validation loss at the end.
    pub val_loss: f64,
    /// Validation loss of predicting no change.
    pub baseline_val_loss: f64,
    /// Update rate of this call.
    pub steps_per_sec: f64,
    /// Checkpoints written by this call.
    pub checkpoints: Vec<PathBuf>,
    /// The device it trained on (print it with [`headlab_model::device_name`]).
    pub device: Device,
    /// libtorch threads used.
    pub threads: usize,
}

/// Set libtorch's intra-op threads (0 = `default_threads()`); returns the number used.
/// More threads than cores never helps: a larger request is capped at the
/// number of cores, with a warning.
pub fn set_threads(threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut n = if threads == 0 { default_threads() } else { threads };
    if n > cores {
        tracing::warn!("{n} threads asked for, this machine has {cores} cores: using {cores}");
        n = cores;
    }
    tch::set_num_threads(n as i32);
    n
}

fn rng_state(rng: &ChaCha8Rng) -> RngState {
    RngState { seed: rng.get_seed(), word_pos: rng.get_word_pos(), stream: rng.get_stream() }
}

fn rng_from_state(s: &RngState) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::from_seed(s.seed);
    r.set_stream(s.stream);
    r.set_word_pos(s.word_pos);
    r
}

/// Train (or resume) a run in `run_dir` on `dataset`.
pub fn train(cfg: &TrainConfig, dataset: &Dataset, run_dir: &Path, opts: &RunOptions) -> Result<TrainSummary> {
    cfg.validate()?;
    let device = cfg.device.resolve()?;
    let threads = set_threads(cfg.threads);
    let io = |p: &Path, e: std::io::Error| TrainError::Io { path: p.display().to_string(), msg: e.to_string() };
    std::fs::create_dir_all(run_dir).map_err(|e| io(run_dir, e))?;
    let existing = list_checkpoints(run_dir)?;
    if opts.resume && existing.is_empty() {
        return Err(TrainError::Resume(format!(
            "{} holds no checkpoint (nothing in {}); drop --resume to start a new run there",
            run_dir.display(),
            run_dir.join("ckpt").display()
        )));
    }
    if !opts.resume && !existing.is_empty() {
        return Err(TrainError::Resume(format!(
            "{} already holds {} checkpoint(s); pass --resume to continue it, or choose a new --out folder",
            run_dir.display(),
            existing.len()
        )));
    }
    let config_toml = cfg.to_toml()?;
    let cfg_path = run_dir.join("config.toml");
    // Atomically, and only when it changes (a resume with the same settings
    // leaves the file alone; a kill never leaves it empty).
    headlab_store::write_atomic_if_changed(&cfg_path, config_toml.as_bytes())?;

    check_batch_memory(cfg, dataset.n_particles)?;
    let (train_trajs, val_trajs) = split_trajectories(dataset.n_traj, cfg.val_fraction, cfg.seed)?;
    // Resume state, if any.
    let resume_ck: Option<(Checkpoint, String)> = match (opts.resume, existing.last()) {
        (true, Some((_, p))) => Some((read_checkpoint(p)?, p.display().to_string())),
        _ => None,
    };
    let norm: Option<Normalization> = match &resume_ck {
        Some((ck, p)) => Some(Normalization::from_arrays(&ck.norm, cfg.model.wall_features, p)?),
        None => None,
    };
    let data = TrainData::new(dataset, train_trajs, val_trajs, norm, cfg.model.wall_features, device)?;
    let (model, mut opt, mut rng, mut step, mut metrics) = match &resume_ck {
        Some((ck, p)) => {
            let model = Model::from_arrays(cfg.model.clone(), data.norm.clone(), &ck.params, device, p)?;
            let mut opt = Optimizer::new(cfg.optimizer.clone(), &model);
            let st =
                ck.optimizer.as_ref().ok_or_else(|| TrainError::Resume(format!("{p} holds no optimizer state")))?;
            opt.load_state(&model, st, p)?;
            let rng =
                rng_from_state(ck.rng.as_ref().ok_or_else(|| TrainError::Resume(format!("{p} holds no RNG state")))?);
            let mut m = resume_metrics(&run_dir.join("metrics.h5"), ck.step)?;
            // Metrics are written before each checkpoint, so they reach at
            // least its step; whatever was recorded after it is dropped.
            m.truncate_after(ck.step);
            if ck.step > 0 && m.step.last().copied().unwrap_or(0) < ck.step {
                tracing::warn!(
                    "{}: the loss history ends at step {} but the checkpoint is at step {}; the steps in between are missing from metrics.h5",
                    run_dir.join("metrics.h5").display(),
                    m.step.last().copied().unwrap_or(0),
                    ck.step
                );
            }
            if ck.step >= cfg.steps {
                tracing::warn!(
                    "{p} is already at step {} >= steps {}; nothing to do (raise --steps to train further)",
                    ck.step,
                    cfg.steps
                );
            }
            (model, opt, rng, ck.step, m)
        }
        None => {
            let model = Model::new(cfg.model.clone(), data.norm.clone(), cfg.seed, device)?;
            let opt = Optimizer::new(cfg.optimizer.clone(), &model);
            (model, opt, ChaCha8Rng::seed_from_u64(cfg.seed), 0, Metrics::default())
        }
    };
    metrics.config_toml = config_toml.clone();
    let val_rows = data.val_subset(cfg.val_samples);
    let (mut val_loss, baseline) = data.mse(&model, &val_rows)?;
    metrics.baseline_val_loss = baseline;
    let ckpt_steps = cfg.checkpoint_steps();
    let mut written: Vec<PathBuf> = existing.iter().filter(|(s, _)| *s <= step).map(|(_, p)| p.clone()).collect();
    let mut last_ckpt = written.last().map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".into());

    // The metrics go first, then the checkpoint: a kill between the two
    // leaves metrics ahead of the newest checkpoint, which a resume trims to
    // exactly that checkpoint's step (never a gap in the loss history).
    let save = |model: &Model,
                opt: &Optimizer,
                rng: &ChaCha8Rng,
                step: u64,
                metrics: &Metrics,
                train_loss: f64,
                val_loss: f64|
     -> Result<PathBuf> {
        let path = checkpoint_path(run_dir, step);
        let params = model.to_arrays()?;
        if let Some((name, v)) = first_non_finite(&params) {
            return Err(TrainError::NonFinite {
                step,
                what: format!("weight {name} = {v}"),
                lr: cfg.lr_at(step.saturating_sub(1)),
                loss: train_loss,
                grad_norm: metrics.grad_norm.last().map(|&g| g as f64).unwrap_or(f64::NAN),
                last_checkpoint: String::new(),
            });
        }
        write_metrics(&run_dir.join("metrics.h5"), metrics)?;
        crash_point("between-metrics-and-checkpoint", step);
        let ck = Checkpoint {
            step,
            config_toml: config_toml.clone(),
            params,
            norm: model.norm.to_arrays(),
            optimizer: Some(opt.state(model)?),
            rng: Some(rng_state(rng)),
            scalars: vec![
                ("train_loss".into(), train_loss),
                ("val_loss".into(), val_loss),
                ("baseline_val_loss".into(), baseline),
            ],
        };
        write_checkpoint(&path, &ck)?;
        crash_point("after-checkpoint", step);
        Ok(path)
    };

    let measure_noise = |model: &Model, step: u64, metrics: &mut Metrics| {
        if cfg.grad_noise.every > 0 && step.is_multiple_of(cfg.grad_noise.every) {
            match gradient_noise(cfg, model, &data, step) {
                Ok(r) => metrics.noise.push(r),
                Err(e) => tracing::warn!("gradient noise at step {step} not recorded: {e}"),
            }
        }
    };
    // A fresh run records step 0; a resume from the step-0 checkpoint already has it.
    if step == 0 && resume_ck.is_none() {
        measure_noise(&model, 0, &mut metrics);
        metrics.val_step.push(0);
        metrics.val_loss.push(val_loss as f32);
        let p = save(&model, &opt, &rng, 0, &metrics, f64::NAN, val_loss)?;
        last_ckpt = p.display().to_string();
        written.push(p);
    }

    let mut replicas = shard_replicas(cfg, &model, threads)?;
    let bar = if opts.progress { indicatif::ProgressBar::new(cfg.steps) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position(step);
    let start = Instant::now();
    let start_step = step;
    let mut train_loss = f64::NAN;
    let mut interrupted = false;
    while step < cfg.steps {
        if opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) || opts.stop_at.is_some_and(|s| step >= s) {
            interrupted = true;
            break;
        }
        let lr = cfg.lr_at(step);
        if cfg.model.dropout > 0.0 {
            tch::manual_seed(derive_seed(cfg.seed, Stream::Dropout { step }) as i64);
        }
        let (loss_v, gnorm) = train_step_with(cfg, &model, &mut replicas, &mut opt, &data, &mut rng, lr)?;
        if !loss_v.is_finite() || !gnorm.is_finite() {
            bar.abandon();
            // The loss history up to the blow-up, for diagnosis (a resume
            // trims it back to the checkpoint it starts from).
            write_metrics(&run_dir.join("metrics.h5"), &metrics)?;
            let what = if !loss_v.is_finite() {
                format!("the loss ({loss_v})")
            } else {
                format!("the gradient norm ({gnorm}; loss {loss_v})")
            };
            return Err(TrainError::NonFinite {
                step,
                what,
                loss: loss_v,
                lr,
                grad_norm: gnorm,
                last_checkpoint: last_ckpt,
            });
        }
        step += 1;
        train_loss = loss_v;
        metrics.step.push(step);
        metrics.loss.push(loss_v as f32);
        metrics.lr.push(lr as f32);
        metrics.grad_norm.push(gnorm as f32);
        measure_noise(&model, step, &mut metrics);
        let is_ckpt = ckpt_steps.binary_search(&step).is_ok();
        if is_ckpt || step % cfg.eval_interval == 0 {
            val_loss = data.mse(&model, &val_rows)?.0;
            metrics.val_step.push(step);
            metrics.val_loss.push(val_loss as f32);
        }
        if is_ckpt {
            let p =
                save(&model, &opt, &rng, step, &metrics, train_loss, val_loss).map_err(|e| with_last(e, &last_ckpt))?;
            last_ckpt = p.display().to_string();
            written.push(p);
        }
        bar.set_position(step);
        if step % 10 == 0 || step == cfg.steps {
            let rate = (step - start_step) as f64 / start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {train_loss:.4}  val {val_loss:.4} ({:.1}x below no-change)  {rate:.1} steps/s",
                baseline / val_loss
            ));
        }
    }
    if interrupted {
        stop_delay();
    }
    // Always leave a checkpoint at the step we stop at.
    if written.last().map(|p| p != &checkpoint_path(run_dir, step)).unwrap_or(true) {
        if metrics.val_step.last() != Some(&step) {
            val_loss = data.mse(&model, &val_rows)?.0;
            metrics.val_step.push(step);
            metrics.val_loss.push(val_loss as f32);
        }
        written.push(
            save(&model, &opt, &rng, step, &metrics, train_loss, val_loss).map_err(|e| with_last(e, &last_ckpt))?,
        );
    }
    bar.finish();
    let steps_per_sec = (step - start_step) as f64 / start.elapsed().as_secs_f64().max(1e-9);
    Ok(TrainSummary {
        run_dir: run_dir.to_path_buf(),
        step,
        interrupted,
        train_loss,
        val_loss,
        baseline_val_loss: baseline,
        steps_per_sec,
        checkpoints: written,
        device,
        threads,
    })
}

/// Refuse a batch whose activations (kept for the backward pass) cannot fit
/// in memory, with the estimate: per frame and layer, the residual stream,
/// queries/keys/values, the MLP and the attention pattern, in f32, about
/// three times over (forward, backward, optimizer temporaries).
fn check_batch_memory(cfg: &TrainConfig, n_particles: usize) -> Result<()> {
    let m = &cfg.model;
    let per_token = 6 * m.d_model + 4 * m.n_heads * m.d_head + 2 * m.d_mlp + 3 * m.n_heads * n_particles;
    let rows = cfg.batch_size.max(cfg.val_samples.min(4096));
    let bytes = headlab_sim::limits::product(&[rows, n_particles, m.n_layers.max(1), per_token, 4, 3]);
    headlab_sim::limits::check_fits(&format!("a batch of {rows} frames × {n_particles} particles"), bytes).map_err(
        |msg| TrainError::Config {
            origin: "config".into(),
            msg: format!("`batch_size` = {}: {msg}; use a smaller batch", cfg.batch_size),
        },
    )
}

/// The first parameter value that is not finite: (parameter name, value).
fn first_non_finite(params: &[headlab_store::checkpoint::NamedArray]) -> Option<(String, f32)> {
    params.iter().find_map(|a| a.data.iter().find(|v| !v.is_finite()).map(|&v| (a.name.clone(), v)))
}

/// Fill in the last good checkpoint of a non-finite stop found while saving.
fn with_last(e: TrainError, last: &str) -> TrainError {
    match e {
        TrainError::NonFinite { step, what, loss, lr, grad_norm, .. } => {
            TrainError::NonFinite { step, what, loss, lr, grad_norm, last_checkpoint: last.to_string() }
        }
        e => e,
    }
}

/// Test hook for the kill drills: with `HEADLAB_CRASH_AT=NAME:STEP` in the
/// environment, the process kills itself (SIGKILL, no cleanup, like `kill -9`)
/// when it reaches the point NAME (`between-metrics-and-checkpoint`,
/// `after-checkpoint`) at STEP.
fn crash_point(name: &str, step: u64) {
    if let Ok(v) = std::env::var("HEADLAB_CRASH_AT") {
        if v.split_once(':').is_some_and(|(n, s)| n == name && s.parse() == Ok(step)) {
            let _ = std::process::Command::new("kill").args(["-KILL", &std::process::id().to_string()]).status();
            std::process::abort();
        }
    }
}

/// Test hook for the signal drills: with `HEADLAB_TEST_STOP_DELAY_MS=N` in
/// the environment, a stopped training waits N ms before writing its final
/// checkpoint, so that a test can send a second signal while it stops.
fn stop_delay() {
    if let Some(ms) = std::env::var("HEADLAB_TEST_STOP_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
    }
}

/// One optimizer update: draw a batch, compute the loss and its gradient,
/// clip, and (only if loss and gradient norm are finite) update the weights.
/// Returns (loss, gradient norm before clipping).
/// The metrics of a run being resumed from a checkpoint at `step`. A file
/// that is there but cannot be read is an error (resuming would overwrite the
/// loss history with a new, partial one); a missing file (training stopped
/// between the first checkpoint and its metrics) starts an empty history,
/// with a warning.
fn resume_metrics(path: &Path, step: u64) -> Result<Metrics> {
    if !path.exists() {
        tracing::warn!("{} is missing; resuming from step {step} without the loss history before it", path.display());
        return Ok(Metrics::default());
    }
    read_metrics(path).map_err(|e| {
        TrainError::Resume(format!(
            "{}: cannot read the run's metrics ({e}); resuming would replace the loss history up to step {step}. \
             Restore the file, or move it away to resume without that history",
            path.display()
        ))
    })
}

/// One update on one minibatch; returns (loss, gradient norm before clipping).
pub fn train_step(
    cfg: &TrainConfig,
    model: &Model,
    opt: &mut Optimizer,
    data: &TrainData,
    rng: &mut ChaCha8Rng,
    lr: f64,
) -> Result<(f64, f64)> {
    train_step_with(cfg, model, &mut Vec::new(), opt, data, rng, lr)
}

/// The replicas that [`train_step_with`] runs the batch's other shards on:
/// with `threads` ≥ 2 on the CPU, `threads - 1` models sharing `model`'s
/// weights ([`Model::share`]), so that the batch is split into `threads`
/// shards whose forward and backward passes run at the same time on their
/// own OS threads, each with one libtorch thread (data parallelism: on small
/// models it scales better than splitting every small operation between
/// threads). None (every operation split between libtorch's threads as
/// usual) with one thread, on CUDA, with dropout (its random stream is
/// global) or when the batch has fewer than 8 frames per shard.
pub fn shard_replicas(cfg: &TrainConfig, model: &Model, threads: usize) -> Result<Vec<Model>> {
    if threads < 2 || model.device() != Device::Cpu || cfg.model.dropout > 0.0 || cfg.batch_size < 8 * threads {
        return Ok(Vec::new());
    }
    Ok((1..threads).map(|_| model.share()).collect::<Result<Vec<_>, _>>()?)
}

/// [`train_step`] with the batch split over `model` and `replicas` (see
/// [`shard_replicas`]; empty: one pass over the whole batch). The loss and
/// gradient are the shard-size-weighted means of the shards' (the same as
/// over the whole batch, up to rounding).
pub fn train_step_with(
    cfg: &TrainConfig,
    model: &Model,
    replicas: &mut Vec<Model>,
    opt: &mut Optimizer,
    data: &TrainData,
    rng: &mut ChaCha8Rng,
    lr: f64,
) -> Result<(f64, f64)> {
    let rows = data.sample_rows(rng, cfg.batch_size);
    let (x, y) = data.batch(&rows, cfg.noise, rng);
    let (loss_v, grad) = if replicas.is_empty() {
        let loss = model.loss(&x, &y, true)?;
        let grad = model.flat_grad(&loss);
        (loss.double_value(&[]), grad)
    } else {
        sharded_loss_grad(model, replicas, &x, &y)?
    };
    let gnorm = opt.clip_and_update(model, &grad, lr, cfg.optimizer.clip, loss_v.is_finite());
    Ok((loss_v, gnorm))
}

/// Loss and flat gradient of (x, y) split into `1 + replicas.len()` shards,
/// the first on this thread, each other on its own thread and replica, every
/// one with a single libtorch thread; the caller's libtorch thread count is
/// restored afterwards.
fn sharded_loss_grad(
    model: &Model,
    replicas: &mut Vec<Model>,
    x: &tch::Tensor,
    y: &tch::Tensor,
) -> Result<(f64, tch::Tensor)> {
    let k = replicas.len() + 1;
    let b = x.size()[0];
    // One libtorch thread per shard; the caller's count comes back when this
    // returns, on every path (an error in a shard included).
    let _restore = headlab_model::TorchThreads::set(1);
    let (base, extra) = (b / k as i64, b % k as i64);
    let mut shards = Vec::with_capacity(k);
    let mut start = 0;
    for i in 0..k as i64 {
        let len = base + i64::from(i < extra);
        shards.push((x.narrow(0, start, len), y.narrow(0, start, len), len as f64 / b as f64));
        start += len;
    }
    let pass = |m: &Model, x: &tch::Tensor, y: &tch::Tensor| -> Result<(f64, tch::Tensor)> {
        tch::set_num_threads(1); // each shard's own OS thread (OpenMP's setting is per thread)
        let loss = m.loss(x, y, true)?;
        let grad = m.flat_grad(&loss);
        Ok((loss.double_value(&[]), grad))
    };
    let mut rest = shards.split_off(1);
    let (x0, y0, w0) = shards.remove(0);
    let taken: Vec<Model> = std::mem::take(replicas);
    let (first, others) = std::thread::scope(|s| {
        let handles: Vec<_> = taken
            .into_iter()
            .zip(rest.drain(..))
            .map(|(rep, (xs, ys, w))| {
                s.spawn(move || {
                    let r = pass(&rep, &xs, &ys);
                    (rep, r, w)
                })
            })
            .collect();
        let first = pass(model, &x0, &y0);
        (first, handles.into_iter().map(|h| h.join()).collect::<Vec<_>>())
    });
    let (l0, grad) = first?;
    let mut loss = l0 * w0;
    let mut scaled = false;
    for joined in others {
        let (rep, r, w) = joined.map_err(|_| TrainError::Data("a training shard's thread panicked".into()))?;
        replicas.push(rep);
        let (l, g) = r?;
        loss += l * w;
        // grad = w0 g0 + Σ w g, in one pass per shard (still on one libtorch
        // thread: a pass over the model is too small to split).
        let done = tch::no_grad(|| {
            // SAFETY: two distinct gradient tensors (checked), owned here.
            match unsafe { optim::fused_slices([&grad, &g]) } {
                Some([acc, gs]) => {
                    let (a, b) = (if scaled { 1.0 } else { w0 as f32 }, w as f32);
                    for (acc, &gv) in acc.iter_mut().zip(gs.iter()) {
                        *acc = *acc * a + gv * b;
                    }
                    true
                }
                None => false,
            }
        });
        if !done {
            let mut acc = grad.shallow_clone();
            if !scaled {
                let _ = acc.g_mul_scalar_(w0);
            }
            let _ = acc.g_add_(&(g * w));
        }
        scaled = true;
    }
    Ok((loss, grad))
}

/// One gradient-noise measurement on the current weights (see
/// [`GradNoiseConfig`]): touches neither the training generator nor the
/// optimizer, and computes gradients without dropout.
pub fn gradient_noise(
    cfg: &TrainConfig,
    model: &Model,
    data: &TrainData,
    step: u64,
) -> Result<headlab_store::metrics::NoiseRecord, noise::NoiseError> {
    let g = &cfg.grad_noise;
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, Stream::GradNoiseBatches { step }));
    let grad_of = |rows: &[i64], rng: &mut ChaCha8Rng| -> Result<tch::Tensor, noise::NoiseError> {
        let (x, y) = data.batch(rows, cfg.noise, rng);
        let loss = model.loss(&x, &y, false).map_err(|e| noise::NoiseError::Model(e.to_string()))?;
        Ok(model.flat_grad(&loss).to_kind(tch::Kind::Double))
    };
    // Reference gradient: the mean over the reference rows, in chunks.
    let mut reference: Vec<i64> = data.train_rows.clone();
    if g.reference_rows > 0 && g.reference_rows < reference.len() {
        rand::seq::SliceRandom::shuffle(reference.as_mut_slice(), &mut rng);
        reference.truncate(g.reference_rows);
    }
    let mut full: Option<tch::Tensor> = None;
    for chunk in reference.chunks(512) {
        let gc = grad_of(chunk, &mut rng)? * (chunk.len() as f64 / reference.len() as f64);
        full = Some(match full {
            Some(f) => f + gc,
            None => gc,
        });
    }
    let full = full.ok_or(noise::NoiseError::TooFew { need: 1, got: 0 })?;
    let rows: Vec<tch::Tensor> = (0..g.batches)
        .map(|_| Ok(grad_of(&data.sample_rows(&mut rng, cfg.batch_size), &mut rng)? - &full))
        .collect::<Result<_, noise::NoiseError>>()?;
    let xi = tch::Tensor::stack(&rows, 0);
    let gn = noise::gradient_noise(
        &xi,
        g.hill_k,
        derive_seed(cfg.seed, Stream::GradNoiseGaussian { step }),
        derive_seed(cfg.seed, Stream::GradNoiseStats { step }),
    )?;
    let (ns, cs) = (&gn.norm_stats, &gn.coord_stats);
    Ok(headlab_store::metrics::NoiseRecord {
        step,
        batches: g.batches as u64,
        batch_size: cfg.batch_size as u64,
        reference_rows: reference.len() as u64,
        full_grad_norm: full.norm().double_value(&[]),
        norm_mean: ns.mean,
        norm_std: ns.std,
        norm_hill_alpha: ns.hill.alpha,
        norm_hill_se: ns.hill.se,
        norm_hill_k: ns.hill.k as f64,
        norm_gaussian_hill_alpha: gn.gaussian_norm_stats.hill.alpha,
        norm_kurtosis: ns.excess_kurtosis,
        coord_hill_alpha: cs.hill.alpha,
        coord_hill_se: cs.hill.se,
        coord_hill_k: cs.hill.k as f64,
        coord_gaussian_hill_alpha: cs.hill_gaussian.alpha,
        coord_kurtosis: cs.excess_kurtosis,
        coord_abs_max: gn.coords.iter().fold(0.0f64, |m, x| m.max(x.abs())),
        norms: gn.norms,
    })
}

/// Device chosen by a config string, for messages.
pub fn device_of(cfg: &TrainConfig) -> Result<Device> {
    Ok(cfg.device.resolve()?)
}
