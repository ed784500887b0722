//! LLC of headlab checkpoints: the whole model, and each attention head
//! (weight-refined: only that head's slices of W_Q, W_K, W_V, b_Q, b_K, b_V
//! and W_O move; everything else stays at the checkpoint).
//!
//! The loss is a per-sample negative log-likelihood built on the model's own
//! training loss (the MSE over all N·2D normalized outputs,
//! [`headlab_model::Model::loss`], without input noise) on the run's training
//! frames, under one of the [`LossConvention`]s (see the parent module doc):
//! by default a sample is a frame, `ℓ = ½ Σ (y − f)²` over its N particles
//! and 2D outputs (unit-variance Gaussian noise on the normalized targets),
//! so `L_n = N·D·MSE` and n = training frames. Batches are a fixed, seeded
//! partition of the training frames.
//!
//! The sampler sees the model as one flat parameter vector (the model keeps
//! its weights in one buffer); a per-head estimate moves a 0/1 mask of it,
//! and only that layer's attention weights are differentiated. Its passes
//! start at the residual stream entering the head's block and compute only
//! that head there, the other heads' z taken at w* (both cached per batch,
//! shared by the heads of the layer; [`CheckpointProblem::for_head`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use headlab_model::{ForwardOptions, Model, ModelConfig, Normalization};
use headlab_sim::Dataset;
use headlab_store::checkpoint::{read_checkpoint, NamedArray};
use headlab_train::{split_trajectories, TrainConfig, TrainData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use headlab_analysis::llc_diag::LadderPoint;
use serde::{Deserialize, Serialize};

use super::select::{select_and_estimate, LadderConfig};
use super::{
    estimate, LlcConfig, LlcError, LlcEstimate, LlcProblem, Movable, Progress, Result, SharedTensor, StarCache,
};

/// What a sample is, and its negative log-likelihood, for the LLC of a
/// checkpoint. Targets are the normalized ones the model is trained on; the
/// noise model is Gaussian with unit variance on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossConvention {
    /// A sample is a frame: ℓ = ½ Σ over its N particles and 2D outputs of
    /// (y − f)², L_n = N·D·MSE, n = training frames.
    #[default]
    Frame,
    /// A sample is one particle of one frame: ℓ = ½ Σ over its 2D outputs,
    /// L_n = D·MSE, n = training frames × N. Same nL_n as `frame`; only
    /// β = 1/ln n differs.
    Particle,
    /// The raw training loss (MSE over all outputs) with n = frames: the
    /// convention before; under-weights the likelihood N·2D-fold, so values
    /// depend on the particle count. For comparison with old results only.
    Mse,
}

impl LossConvention {
    /// All conventions.
    pub const ALL: [LossConvention; 3] = [LossConvention::Frame, LossConvention::Particle, LossConvention::Mse];
    /// The name used in settings and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LossConvention::Frame => "frame",
            LossConvention::Particle => "particle",
            LossConvention::Mse => "mse",
        }
    }
    /// Parse a [`LossConvention::name`].
    pub fn parse(s: &str) -> Option<LossConvention> {
        LossConvention::ALL.into_iter().find(|c| c.name() == s)
    }
    /// The factor that turns the training loss (MSE) into the per-sample NLL
    /// for frames of `n_particles` particles in `dim` dimensions.
    pub fn scale(self, n_particles: usize, dim: usize) -> f64 {
        match self {
            LossConvention::Frame => (n_particles * dim) as f64,
            LossConvention::Particle => dim as f64,
            LossConvention::Mse => 1.0,
        }
    }
    /// The number of samples n for `frames` training frames.
    pub fn n_samples(self, frames: usize, n_particles: usize) -> usize {
        match self {
            LossConvention::Particle => frames * n_particles,
            _ => frames,
        }
    }
}

/// The parameters a head's weight-refined LLC moves.
pub const HEAD_PARAMS: [&str; 7] = ["W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O"];

fn load_err(path: &Path, e: impl std::fmt::Display) -> LlcError {
    LlcError::Problem(format!("{}: {e}", path.display()))
}

/// Training frames of a run, as model inputs and targets on a device.
pub struct LlcData {
    norm: Normalization,
    x: SharedTensor, // [R, N, F]
    y: SharedTensor, // [R, N, 2D]
    /// Number of training frames.
    pub n: usize,
    /// Particles per frame (N).
    pub n_particles: usize,
    /// Spatial dimension (D; the targets have 2D outputs per particle).
    pub dim: usize,
}

impl LlcData {
    /// The training frames of `ds` under the run's split (`train` is the
    /// run's training config, `norm` the checkpoint's normalization).
    pub fn new(ds: &Dataset, train: &TrainConfig, norm: &Normalization, device: Device) -> Result<LlcData> {
        let (tr, va) = split_trajectories(ds.n_traj, train.val_fraction, train.seed)
            .map_err(|e| LlcError::Problem(format!("dataset split: {e}")))?;
        let data = TrainData::new(ds, tr, va, Some(norm.clone()), train.model.wall_features, device)
            .map_err(|e| LlcError::Problem(format!("dataset: {e}")))?;
        let rows = data.train_rows.clone();
        if rows.len() < 2 {
            return Err(LlcError::Problem(format!(
                "the run's training split has {} frame(s); the LLC needs at least 2",
                rows.len()
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (x, y) = tch::no_grad(|| data.batch(&rows, 0.0, &mut rng));
        // SAFETY: `x` and `y` are fresh batches (`data` is dropped here); the
        // wrappers are private fields read out of place (`index_select` in
        // `CheckpointProblem`), and `tensors` hands them out for reading only.
        let (x, y) = unsafe { (SharedTensor::new(x), SharedTensor::new(y)) };
        let ys = y.size();
        let (n_particles, dim) =
            (ys.get(1).copied().unwrap_or(1) as usize, (ys.last().copied().unwrap_or(2) / 2) as usize);
        Ok(LlcData { norm: norm.clone(), x, y, n: rows.len(), n_particles, dim: dim.max(1) })
    }
}

impl LlcData {
    /// Features [R, N, F] and targets [R, N, 2D] of the training frames.
    ///
    /// They are shared with the sampler threads: read them, never modify
    /// them in place (see [`SharedTensor::new`]).
    pub fn tensors(&self) -> (&Tensor, &Tensor) {
        (&self.x, &self.y)
    }
}

/// A checkpoint's loss as an [`LlcProblem`] over its flat parameter vector.
pub struct CheckpointProblem<'a> {
    config: ModelConfig,
    norm: Normalization,
    arrays: Vec<NamedArray>,
    device: Device,
    data: &'a LlcData,
    /// [n_batches, batch_size] row indices into the data.
    batches: SharedTensor,
    n_batches: usize,
    /// Idle per-thread model copies.
    pool: Mutex<Vec<Model>>,
    /// (name, offset, numel) of the parameters to differentiate (all if None).
    grad_params: Option<Vec<(String, usize, usize)>>,
    numel: usize,
    /// Training loss → per-sample NLL.
    scale: f64,
    /// n under the convention.
    n_samples: usize,
    /// L_B(w*) per batch, shared by every estimate on this checkpoint.
    star_cache: Arc<StarCache>,
    /// The residual streams at w* entering each block, per batch, shared
    /// like `star_cache`.
    prefix: Arc<PrefixCache>,
    /// The first block whose weights move (a head's layer), when the
    /// streams entering it are cached; 0: every pass starts at the input
    /// (unless `head` is set).
    from_layer: usize,
    /// The head of block `from_layer` that moves, when the other heads' z
    /// at w* are cached too (see [`CheckpointProblem::for_head`]).
    head: Option<usize>,
    /// A model that holds w* and is never written (built on first use):
    /// computes the cached streams and z at w*, whatever the draws do.
    star_model: Mutex<Option<Model>>,
    /// Fused attention on the CPU (the training path; see [`ForwardOptions::fused`]).
    opts: ForwardOptions,
}

/// The most memory the cached residual streams of one layer may take (one
/// layer's are kept at a time: `llc_for_model` releases a layer's when its
/// heads are done).
const PREFIX_CACHE_BYTES: usize = 512 << 20;

/// The residual stream entering block l at w*, per batch: while only block
/// l's weights (or later ones) move, blocks 0..l compute the same thing at
/// every draw, so a head's estimate computes them once per batch, shared by
/// every head of that layer, every rung of a ladder and every chain. With
/// them, block l's z of every head at w* (the `hook_z` [B,N,H,dh]): while
/// only head h of block l moves, the other heads' z do not change.
struct PrefixCache {
    /// [layer][batch], filled on first use.
    streams: Table,
    /// [layer][batch], filled on first use by the per-head estimates.
    zs: Table,
}

/// A [layer][batch] table of cached tensors.
type Table = Mutex<Vec<Vec<Option<Arc<SharedTensor>>>>>;

impl PrefixCache {
    fn new(n_layers: usize, n_batches: usize) -> PrefixCache {
        let table = || Mutex::new(vec![vec![None; n_batches]; n_layers]);
        PrefixCache { streams: table(), zs: table() }
    }
    fn get(table: &Table, layer: usize, batch: usize) -> Option<Arc<SharedTensor>> {
        let s = table.lock().unwrap_or_else(|e| e.into_inner());
        s.get(layer).and_then(|v| v.get(batch)).and_then(|t| t.clone())
    }
    fn put(table: &Table, layer: usize, batch: usize, t: Arc<SharedTensor>) {
        let mut s = table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = s.get_mut(layer).and_then(|v| v.get_mut(batch)) {
            *slot = Some(t);
        }
    }
    fn release(&self, layer: usize) {
        for table in [&self.streams, &self.zs] {
            let mut s = table.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = s.get_mut(layer) {
                v.iter_mut().for_each(|slot| *slot = None);
            }
        }
    }
}

impl<'a> CheckpointProblem<'a> {
    /// `batch_size` and `seed` fix the partition of the training frames;
    /// `loss` the per-sample NLL and n.
    pub fn new(model: &Model, data: &'a LlcData, batch_size: usize, seed: u64, loss: LossConvention) -> Result<Self> {
        if model.norm != data.norm {
            return Err(LlcError::Problem(
                "the checkpoint's normalization differs from the data's; build LlcData from this checkpoint".into(),
            ));
        }
        let bs = batch_size.min(data.n).max(1);
        let n_batches = data.n / bs;
        let mut order: Vec<i64> = (0..data.n as i64).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(headlab_sim::seed::derive_seed(
            seed,
            headlab_sim::seed::Stream::LlcRowOrder,
        )));
        order.truncate(n_batches * bs);
        let batches = Tensor::from_slice(&order).view([n_batches as i64, bs as i64]).to(model.device());
        // SAFETY: a fresh index tensor owned only by the private field
        // `batches`, which `loss_and_grad` only reads (`get`).
        let batches = unsafe { SharedTensor::new(batches) };
        Ok(CheckpointProblem {
            config: model.config.clone(),
            norm: model.norm.clone(),
            arrays: model.to_arrays().map_err(|e| LlcError::Problem(e.to_string()))?,
            device: model.device(),
            data,
            batches,
            n_batches,
            pool: Mutex::new(Vec::new()),
            grad_params: None,
            numel: model.num_params(),
            scale: loss.scale(data.n_particles, data.dim),
            n_samples: loss.n_samples(data.n, data.n_particles),
            star_cache: Arc::new(StarCache::new(n_batches)),
            prefix: Arc::new(PrefixCache::new(model.config.n_layers, n_batches)),
            from_layer: 0,
            head: None,
            star_model: Mutex::new(None),
            opts: ForwardOptions { train: false, fused: model.device() == Device::Cpu },
        })
    }

    /// Share the caches of `other`, a problem on the same checkpoint, data,
    /// batch size, seed and loss convention (the whole model's, for a
    /// head): each batch's loss at w*, and the residual streams at w*
    /// entering a head's block, are then computed once for all of them.
    pub fn sharing_star_cache(mut self, other: &CheckpointProblem<'_>) -> Self {
        if other.n_batches == self.n_batches
            && other.scale == self.scale
            && other.arrays.len() == self.arrays.len()
            && other.config == self.config
        {
            self.star_cache = other.star_cache.clone();
            self.prefix = other.prefix.clone();
        }
        self
    }

    /// Differentiate only these parameters (the others get zero gradient
    /// and stay at w*). When they all lie in blocks l.. with l > 0 (a
    /// head's), the residual streams entering block l are computed at w*
    /// once per batch and every pass starts there (the same numbers:
    /// blocks 0..l see only w*), unless caching them would take more than
    /// 512 MiB.
    pub fn with_grad_params(mut self, model: &Model, names: &[String]) -> Result<Self> {
        let mut v = Vec::new();
        let mut first_block = model.config.n_layers;
        for n in names {
            let (off, numel) =
                model.param_range(n).ok_or_else(|| LlcError::Problem(format!("the model has no parameter {n}")))?;
            v.push((n.clone(), off, numel));
            let block = n.strip_prefix("blocks.").and_then(|r| r.split('.').next()).and_then(|l| l.parse().ok());
            first_block = first_block.min(block.unwrap_or(0));
        }
        self.from_layer = if v.is_empty() || self.stream_bytes(model) > PREFIX_CACHE_BYTES { 0 } else { first_block };
        self.grad_params = Some(v);
        Ok(self)
    }

    /// The bytes of one layer's cached streams (one [batch, N, d_model] per batch).
    fn stream_bytes(&self, model: &Model) -> usize {
        let bs = self.batches.size().get(1).copied().unwrap_or(0) as usize;
        self.n_batches * bs * self.data.n_particles * model.config.d_model * 4
    }

    /// Move only head `head` of block `layer` (its slices of W_Q, W_K, W_V,
    /// b_Q, b_K, b_V and W_O): returns the problem and the mask to estimate
    /// with. Every pass starts at the stream entering block `layer` and
    /// computes only that head in it, the other heads' z taken from their
    /// values at w* ([`Model::forward_from_head`]; both cached once per
    /// batch, shared by every head of the layer through
    /// [`CheckpointProblem::sharing_star_cache`]); the same function as the
    /// full pass, up to f32 rounding. When the two caches would take more
    /// than 512 MiB: as [`CheckpointProblem::with_grad_params`] with the
    /// head's parameters.
    pub fn for_head(self, model: &Model, layer: usize, head: usize) -> Result<(Self, Tensor)> {
        let (mask, names) = head_mask(model, layer, head)?;
        let mut p = self.with_grad_params(model, &names)?;
        if 2 * p.stream_bytes(model) <= PREFIX_CACHE_BYTES {
            p.from_layer = layer;
            p.head = Some(head);
        }
        Ok((p, mask))
    }

    /// Free the cached streams entering block `layer` (shared by every
    /// problem that shares this one's caches).
    pub fn release_streams(&self, layer: usize) {
        self.prefix.release(layer);
    }

    /// The first block a pass runs (see [`CheckpointProblem::with_grad_params`]).
    pub fn first_block(&self) -> usize {
        self.from_layer
    }

    /// Every pass from the input (no cached streams or z): the same
    /// function, slower; for comparisons.
    pub fn starting_at_input(mut self) -> Self {
        self.from_layer = 0;
        self.head = None;
        self
    }

    /// The head computed alone in block [`CheckpointProblem::first_block`], if any.
    pub fn only_head(&self) -> Option<usize> {
        self.head
    }

    /// The model's prediction on batch `batch` (rows `idx`, features `x`),
    /// from the cached stream entering block `from_layer` when there is one.
    fn predict(&self, model: &Model, batch: usize, x: &Tensor) -> Result<Tensor> {
        let l = self.from_layer;
        let err = |e: headlab_model::ModelError| LlcError::Problem(e.to_string());
        if let Some(h) = self.head {
            let (stream, z) = self.stream_and_z(batch, x)?;
            return model.forward_from_head(l, h, &stream, &z, self.opts).map_err(err);
        }
        if l == 0 {
            return model.forward_with(x, self.opts).map_err(err);
        }
        // Blocks 0..l of `model` hold w* exactly (only blocks l.. move).
        let stream = self.stream(model, batch, x)?;
        model.forward_from(l, &stream, self.opts).map_err(err)
    }

    /// The stream entering block `from_layer` on batch `batch` (features
    /// `x`) at w*, from the cache or computed by `model`, whose blocks
    /// before `from_layer` must hold w*.
    fn stream(&self, model: &Model, batch: usize, x: &Tensor) -> Result<Arc<SharedTensor>> {
        let l = self.from_layer;
        if let Some(t) = PrefixCache::get(&self.prefix.streams, l, batch) {
            return Ok(t);
        }
        let r = tch::no_grad(|| model.resid_pre(x, l, self.opts)).map_err(|e| LlcError::Problem(e.to_string()))?;
        // SAFETY: a fresh tensor without autograd history, kept in the
        // private cache and only read (`forward_from` is out of place).
        let t = Arc::new(unsafe { SharedTensor::new(r) });
        PrefixCache::put(&self.prefix.streams, l, batch, t.clone());
        Ok(t)
    }

    /// The stream entering block `from_layer` and that block's z at w* on
    /// batch `batch` (features `x`), from the cache or computed by the
    /// model that holds w* (the moving head's weights must not enter the
    /// z that the other heads of its layer read from the shared cache).
    fn stream_and_z(&self, batch: usize, x: &Tensor) -> Result<(Arc<SharedTensor>, Arc<SharedTensor>)> {
        let l = self.from_layer;
        let z = PrefixCache::get(&self.prefix.zs, l, batch);
        if let (Some(z), Some(s)) = (&z, PrefixCache::get(&self.prefix.streams, l, batch)) {
            return Ok((s, z.clone()));
        }
        let mut guard = self.star_model.lock().unwrap_or_else(|e| e.into_inner());
        let star = match &mut *guard {
            Some(m) => m,
            slot @ None => slot.insert(self.model_at_star()?),
        };
        let stream = self.stream(star, batch, x)?;
        let z = match z {
            Some(z) => z,
            None => {
                let z = tch::no_grad(|| star.attn_z(l, &stream, self.opts))
                    .map_err(|e| LlcError::Problem(e.to_string()))?;
                // SAFETY: as the stream.
                let z = Arc::new(unsafe { SharedTensor::new(z) });
                PrefixCache::put(&self.prefix.zs, l, batch, z.clone());
                z
            }
        };
        Ok((stream, z))
    }

    /// A new model holding w*.
    fn model_at_star(&self) -> Result<Model> {
        Model::from_arrays(self.config.clone(), self.norm.clone(), &self.arrays, self.device, "<llc>")
            .map_err(|e| LlcError::Problem(e.to_string()))
    }

    fn take_model(&self) -> Result<Model> {
        if let Some(m) = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(m);
        }
        self.model_at_star()
    }

    fn put_model(&self, m: Model) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(m);
    }

    fn eval(&self, params: &[Tensor], batch: usize, grad: bool) -> Result<(Tensor, Option<Tensor>)> {
        let model = self.take_model()?;
        let out = (|| -> Result<(Tensor, Option<Tensor>)> {
            let mut flat = model.flat_params().shallow_clone();
            tch::no_grad(|| flat.f_copy_(&params[0]))?;
            let idx = self.batches.get(batch as i64);
            let (x, y) = (self.data.x.index_select(0, &idx), self.data.y.index_select(0, &idx));
            let mse = |pred: Tensor| -> Result<Tensor> { Ok(pred.f_mse_loss(&y, tch::Reduction::Mean)? * self.scale) };
            if !grad {
                // L_B(w*): the same pass from the input (it is also the
                // whole model's, which has no cached streams).
                let l = tch::no_grad(|| model.forward_with(&x, self.opts))
                    .map_err(|e| LlcError::Problem(e.to_string()))
                    .and_then(mse)?;
                return Ok((l.reshape([1]), None));
            }
            let loss = mse(self.predict(&model, batch, &x)?)?;
            let g = match &self.grad_params {
                None => model.flat_grad(&loss),
                Some(list) => {
                    let leaves: Vec<&Tensor> = list
                        .iter()
                        .map(|(n, _, _)| {
                            model.param(n).ok_or_else(|| LlcError::Problem(format!("the model has no parameter `{n}`")))
                        })
                        .collect::<Result<_>>()?;
                    let gs = Tensor::f_run_backward(&[&loss], &leaves, false, false)?;
                    let flat_g = Tensor::f_zeros([self.numel as i64], (Kind::Float, self.device))?;
                    for (g, (_, off, numel)) in gs.iter().zip(list) {
                        flat_g.narrow(0, *off as i64, *numel as i64).f_copy_(&g.reshape([-1]))?;
                    }
                    flat_g
                }
            };
            Ok((loss.detach().reshape([1]), Some(g)))
        })();
        self.put_model(model);
        out
    }
}

impl LlcProblem for CheckpointProblem<'_> {
    fn n_samples(&self) -> usize {
        self.n_samples
    }
    fn n_batches(&self) -> usize {
        self.n_batches
    }
    fn star_cache(&self) -> Option<&StarCache> {
        Some(&self.star_cache)
    }
    fn loss(&self, params: &[Tensor], batches: &[usize]) -> Result<Tensor> {
        Ok(self.eval(params, batches[0], false)?.0)
    }
    fn loss_and_grad(
        &self,
        params: &[Tensor],
        batches: &[usize],
        _moving: &[bool],
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let (l, g) = self.eval(params, batches[0], true)?;
        Ok((l, vec![g]))
    }
}

/// The flat 0/1 mask of head `head` in layer `layer`, and the names of the
/// parameters it touches.
pub fn head_mask(model: &Model, layer: usize, head: usize) -> Result<(Tensor, Vec<String>)> {
    let c = &model.config;
    if layer >= c.n_layers || head >= c.n_heads {
        return Err(LlcError::Problem(format!(
            "head {layer}.{head} does not exist: the model has {} layers × {} heads",
            c.n_layers, c.n_heads
        )));
    }
    let mut mask = vec![0f32; model.num_params()];
    let mut names = Vec::new();
    for p in HEAD_PARAMS {
        let name = format!("blocks.{layer}.attn.{p}");
        let (off, numel) = model.param_range(&name).ok_or_else(|| LlcError::Problem(format!("no parameter {name}")))?;
        let per_head = numel / c.n_heads; // heads are the first dimension
        for v in &mut mask[off + head * per_head..off + (head + 1) * per_head] {
            *v = 1.0;
        }
        names.push(name);
    }
    Ok((Tensor::from_slice(&mask).to(model.device()), names))
}

/// LLC estimates of one checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointLlc {
    /// The checkpoint's step.
    pub step: u64,
    /// Layers of the model.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// The LLC of the whole model.
    pub whole: LlcEstimate,
    /// Per head, layer-major ([layer * n_heads + head]); empty unless asked.
    pub heads: Vec<LlcEstimate>,
    /// The whole model's step-size ladder (empty without one).
    pub whole_ladder: Vec<LadderPoint>,
    /// Per head, its ladder (empty without one).
    pub heads_ladder: Vec<Vec<LadderPoint>>,
}

/// What to estimate for a checkpoint.
#[derive(Debug, Clone, Default)]
pub struct CheckpointLlcOptions {
    /// The sampler's settings.
    pub llc: LlcConfig,
    /// Also the weight-refined LLC of every head.
    pub per_head: bool,
    /// Choose ε per estimate on this ladder (`llc.epsilon` is then unused);
    /// `None`: every estimate at `llc.epsilon`.
    pub ladder: Option<LadderConfig>,
    /// The per-sample NLL and how n is counted.
    pub loss: LossConvention,
}

/// Load a checkpoint and the run's training frames from `ds`.
pub fn load_checkpoint(path: &Path, ds: &Dataset, device: Device) -> Result<(u64, Model, LlcData)> {
    let ck = read_checkpoint(path).map_err(|e| load_err(path, e))?;
    let train = TrainConfig::from_toml(&ck.config_toml, &path.display().to_string())
        .map_err(|e| load_err(path, format!("run config: {e}")))?;
    let model = Model::from_checkpoint(&ck, device, &path.display().to_string()).map_err(|e| load_err(path, e))?;
    let data = LlcData::new(ds, &train, &model.norm, device)?;
    Ok((ck.step, model, data))
}

/// Whole-model (and optionally per-head) LLC of the checkpoint at `ckpt`,
/// on the run's training frames of `ds`. Failed or misbehaving chains are
/// reported in each estimate's `warnings`; an estimate whose chains all
/// failed is an error.
pub fn llc_for_checkpoint(
    ckpt: &Path,
    ds: &Dataset,
    opts: &CheckpointLlcOptions,
    device: Device,
    progress: Progress<'_>,
) -> Result<CheckpointLlc> {
    let (step, model, data) = load_checkpoint(ckpt, ds, device)?;
    llc_for_model(step, &model, &data, opts, progress)
}

/// [`llc_for_checkpoint`] for a model already loaded.
pub fn llc_for_model(
    step: u64,
    model: &Model,
    data: &LlcData,
    opts: &CheckpointLlcOptions,
    progress: Progress<'_>,
) -> Result<CheckpointLlc> {
    let cfg = &opts.llc;
    let w_star = [model.flat_params().detach().copy()];
    // One estimate: at the ladder's choice, or at the fixed ε.
    let one = |problem: &CheckpointProblem<'_>, movable: Movable| -> Result<(LlcEstimate, Vec<LadderPoint>)> {
        match &opts.ladder {
            Some(lc) => {
                let s = select_and_estimate(problem, &w_star, &[movable], cfg, lc, progress)?;
                Ok((s.estimate, s.ladder))
            }
            None => Ok((estimate(problem, &w_star, &[movable], cfg, progress)?, Vec::new())),
        }
    };
    let whole_problem = CheckpointProblem::new(model, data, cfg.batch_size, cfg.seed, opts.loss)?;
    let (whole, whole_ladder) = one(&whole_problem, Movable::All)?;
    let (l, h) = (model.config.n_layers, model.config.n_heads);
    let mut heads = Vec::new();
    let mut heads_ladder = Vec::new();
    if opts.per_head {
        for layer in 0..l {
            for head in 0..h {
                let (problem, mask) = CheckpointProblem::new(model, data, cfg.batch_size, cfg.seed, opts.loss)?
                    .for_head(model, layer, head)?;
                let problem = problem.sharing_star_cache(&whole_problem);
                let (est, ladder) = one(&problem, Movable::Mask(mask)).map_err(|e| match e {
                    LlcError::AllChainsFailed { chains, details, epsilon, suggest } => LlcError::AllChainsFailed {
                        chains,
                        details: format!("head {layer}.{head}: {details}"),
                        epsilon,
                        suggest,
                    },
                    e => e,
                })?;
                heads.push(est);
                heads_ladder.push(ladder);
            }
            whole_problem.release_streams(layer);
        }
    }
    Ok(CheckpointLlc { step, n_layers: l, n_heads: h, whole, heads, whole_ladder, heads_ladder })
}

/// The number of SGLD steps (chains × draws, all estimates) of one
/// checkpoint, for progress bars.
pub fn steps_per_checkpoint(model_cfg: &ModelConfig, opts: &CheckpointLlcOptions) -> u64 {
    let per = match &opts.ladder {
        Some(lc) => lc.max_steps(&opts.llc),
        None => (opts.llc.chains * opts.llc.draws) as u64,
    };
    per * (1 + if opts.per_head { (model_cfg.n_layers * model_cfg.n_heads) as u64 } else { 0 })
}
