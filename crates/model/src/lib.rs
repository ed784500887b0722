//! headlab-model: the transformer that learns particle physics, in one file.
//!
//! One token per particle. Each token's features are its position, velocity,
//! radius, mass and (optionally) its clipped gaps to the walls, normalized with
//! dataset statistics ([`Normalization`], saved in every checkpoint). The model
//! is nanoGPT-shaped and has no positional encoding, so it is
//! permutation-equivariant over particles:
//!
//! ```text
//! x [B,N,F] --embed--> h [B,N,d]
//!   L x { h += Attn(LN1(h));  h += MLP(LN2(h)) }      (pre-LayerNorm blocks)
//! LN_final --unembed--> y [B,N,2D] = normalized (Δposition, Δvelocity) over one frame
//! ```
//!
//! `mlp = false` drops the MLP sublayers and `layer_norm = false` makes every
//! LN the identity; their parameters are then absent.
//!
//! Parameters carry TransformerLens names and shapes (`embed.W_in` [F,d],
//! `blocks.{l}.attn.W_Q` [n_heads, d_model, d_head], `W_O` [n_heads, d_head,
//! d_model], ...; see [`param_shapes`]). They all live in one flat buffer
//! ([`Model::flat_params`]); each named parameter is a leaf view into it, so an
//! optimizer (or an SGLD sampler) can update the whole model with a handful
//! of tensor operations, while autograd still sees ordinary named leaves.
//!
//! [`Model::forward_with_cache`] is the only forward pass; with `record = true`
//! it also returns `blocks.{l}.attn.hook_attn_scores` and
//! `blocks.{l}.attn.hook_pattern` ([batch, head, query, key]) and the residual
//! stream `blocks.{l}.hook_resid_pre` / `hook_resid_post`.

use std::path::Path;

use headlab_store::checkpoint::{read_checkpoint, Checkpoint, NamedArray};
use rand::SeedableRng;
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model config: `{key}` = {value} is invalid: {hint}")]
    Config { key: String, value: String, hint: String },
    #[error("{path}: {msg}")]
    Checkpoint { path: String, msg: String },
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// How attention weights are formed from scores.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionKind {
    /// pattern = softmax(scores) over keys.
    #[default]
    Softmax,
    /// pattern = scores / n_keys (no softmax), as in Ahn et al. 2023.
    Linear,
}

/// Factor applied to q·k before the softmax.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionScale {
    /// 1/sqrt(d_head) (Vaswani et al.; default).
    #[default]
    InvSqrtDHead,
    /// 1/d_head (muP-style).
    InvDHead,
    /// No scaling: q·k.
    None,
    /// q·k / N, N = number of keys (particles).
    InvN,
    /// q·k / sqrt(N).
    InvSqrtN,
    /// q·k / ln N (1 when N = 1).
    InvLogN,
    /// q·k / Σ_j ‖k_j‖, the sum of the key lengths over the row's keys
    /// (Bernhard 2023); differentiable through the key norms.
    InvKeyNormSum,
}

impl AttentionScale {
    pub const ALL: [AttentionScale; 7] = [
        AttentionScale::InvSqrtDHead,
        AttentionScale::InvDHead,
        AttentionScale::None,
        AttentionScale::InvN,
        AttentionScale::InvSqrtN,
        AttentionScale::InvLogN,
        AttentionScale::InvKeyNormSum,
    ];

    /// The config name (`attention.scale = "..."`).
    pub fn name(&self) -> &'static str {
        match self {
            AttentionScale::InvSqrtDHead => "inv-sqrt-d-head",
            AttentionScale::InvDHead => "inv-d-head",
            AttentionScale::None => "none",
            AttentionScale::InvN => "inv-n",
            AttentionScale::InvSqrtN => "inv-sqrt-n",
            AttentionScale::InvLogN => "inv-log-n",
            AttentionScale::InvKeyNormSum => "inv-key-norm-sum",
        }
    }

    /// The formula, for tables and plots.
    pub fn formula(&self) -> &'static str {
        match self {
            AttentionScale::InvSqrtDHead => "q·k/√d",
            AttentionScale::InvDHead => "q·k/d",
            AttentionScale::None => "q·k",
            AttentionScale::InvN => "q·k/N",
            AttentionScale::InvSqrtN => "q·k/√N",
            AttentionScale::InvLogN => "q·k/ln N",
            AttentionScale::InvKeyNormSum => "q·k/Σ‖k‖",
        }
    }
}

/// An attention scale name that is not one of [`AttentionScale::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an attention scale option; use one of inv-sqrt-d-head, inv-d-head, none, inv-n, inv-sqrt-n, inv-log-n, inv-key-norm-sum")]
pub struct UnknownScale(pub String);

impl std::str::FromStr for AttentionScale {
    type Err = UnknownScale;
    fn from_str(s: &str) -> Result<Self, UnknownScale> {
        AttentionScale::ALL.iter().copied().find(|o| o.name() == s.trim()).ok_or_else(|| UnknownScale(s.into()))
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    #[default]
    Gelu,
    GeluTanh,
    Relu,
    Silu,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AttentionConfig {
    pub kind: AttentionKind,
    pub scale: AttentionScale,
}

/// The architecture. Every field has a default; `validate` checks ranges.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_model: usize,
    /// Width of each head; 0 means d_model / n_heads.
    pub d_head: usize,
    /// Hidden width of the MLP; 0 means 4 * d_model.
    pub d_mlp: usize,
    pub activation: Activation,
    pub attention: AttentionConfig,
    /// Dropout after attention and MLP (training only). Off by default.
    pub dropout: f64,
    pub ln_eps: f64,
    /// Add clipped distances to the walls (minus the radius) as features.
    pub wall_features: bool,
    /// Initial weights are N(0, init_scale / sqrt(3 * fan_in)), the standard
    /// deviation of PyTorch's default Linear initialisation when 1.
    pub init_scale: f64,
    /// The MLP sublayer of every block. With `false` the blocks are
    /// attention-only (`h += Attn(LN1(h))`) and the `mlp.*` and `ln2.*`
    /// parameters do not exist (Ahn et al. 2023 study such models).
    pub mlp: bool,
    /// LayerNorm before attention, before the MLP and before the unembedding.
    /// With `false` each is the identity and the `ln1.*`, `ln2.*` and
    /// `ln_final.*` parameters do not exist.
    pub layer_norm: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            n_layers: 2,
            n_heads: 4,
            d_model: 64,
            d_head: 0,
            d_mlp: 0,
            activation: Activation::Gelu,
            attention: AttentionConfig::default(),
            dropout: 0.0,
            ln_eps: 1e-5,
            wall_features: true,
            init_scale: 1.0,
            mlp: true,
            layer_norm: true,
        }
    }
}

impl ModelConfig {
    pub fn d_head(&self) -> usize {
        if self.d_head == 0 { self.d_model / self.n_heads.max(1) } else { self.d_head }
    }
    pub fn d_mlp(&self) -> usize {
        if self.d_mlp == 0 { 4 * self.d_model } else { self.d_mlp }
    }
    /// Number of input features for a `dimension`-D dataset.
    pub fn d_in(&self, dimension: usize) -> usize {
        2 * dimension + 2 + if self.wall_features { 2 * dimension } else { 0 }
    }
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, hint: &str| Err(ModelError::Config { key: key.into(), value, hint: hint.into() });
        if self.n_layers == 0 || self.n_layers > 64 {
            return bad("model.n_layers", self.n_layers.to_string(), "use 1..=64 layers");
        }
        if self.n_heads == 0 || self.n_heads > 256 {
            return bad("model.n_heads", self.n_heads.to_string(), "use 1..=256 heads");
        }
        if self.d_model == 0 || self.d_model > 16384 {
            return bad("model.d_model", self.d_model.to_string(), "use 1..=16384");
        }
        if self.d_head == 0 && self.d_model % self.n_heads != 0 {
            return bad("model.d_model", self.d_model.to_string(), "must be divisible by n_heads unless d_head is set");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("model.dropout", self.dropout.to_string(), "use a probability in [0, 1)");
        }
        if !(self.ln_eps > 0.0 && self.ln_eps < 1.0) {
            return bad("model.ln_eps", self.ln_eps.to_string(), "use a small positive number such as 1e-5");
        }
        if !(self.init_scale > 0.0 && self.init_scale.is_finite()) {
            return bad("model.init_scale", self.init_scale.to_string(), "use a positive number (1.0 = PyTorch's default)");
        }
        Ok(())
    }
}

/// Names and shapes of all parameters, in model (and flat-buffer) order.
/// Parameters of switched-off parts (`mlp = false`, `layer_norm = false`)
/// are absent; the names of the others do not change.
pub fn param_shapes(cfg: &ModelConfig, dimension: usize) -> Vec<(String, Vec<usize>)> {
    let (d, h, dh, dm, f) = (cfg.d_model, cfg.n_heads, cfg.d_head(), cfg.d_mlp(), cfg.d_in(dimension));
    let mut v: Vec<(String, Vec<usize>)> = vec![("embed.W_in".into(), vec![f, d]), ("embed.b_in".into(), vec![d])];
    for l in 0..cfg.n_layers {
        let p = |s: &str| format!("blocks.{l}.{s}");
        if cfg.layer_norm {
            v.push((p("ln1.w"), vec![d]));
            v.push((p("ln1.b"), vec![d]));
        }
        for w in ["W_Q", "W_K", "W_V"] {
            v.push((p(&format!("attn.{w}")), vec![h, d, dh]));
        }
        for b in ["b_Q", "b_K", "b_V"] {
            v.push((p(&format!("attn.{b}")), vec![h, dh]));
        }
        v.push((p("attn.W_O"), vec![h, dh, d]));
        v.push((p("attn.b_O"), vec![d]));
        if cfg.mlp {
            if cfg.layer_norm {
                v.push((p("ln2.w"), vec![d]));
                v.push((p("ln2.b"), vec![d]));
            }
            v.push((p("mlp.W_in"), vec![d, dm]));
            v.push((p("mlp.b_in"), vec![dm]));
            v.push((p("mlp.W_out"), vec![dm, d]));
            v.push((p("mlp.b_out"), vec![d]));
        }
    }
    if cfg.layer_norm {
        v.push(("ln_final.w".into(), vec![d]));
        v.push(("ln_final.b".into(), vec![d]));
    }
    v.push(("unembed.W_out".into(), vec![d, 2 * dimension]));
    v.push(("unembed.b_out".into(), vec![2 * dimension]));
    v
}

// ---------------------------------------------------------------------------
// Features and normalization
// ---------------------------------------------------------------------------

/// Dataset statistics that turn raw particle states into model inputs and
/// model outputs into physical state changes. Saved under `/norm` in every
/// checkpoint (`input_mean`, `input_std`, `target_mean`, `target_std`,
/// `box_size`, `wall_range`).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    pub dimension: usize,
    pub box_size: Vec<f64>,
    /// Wall gaps are divided by this and clipped to [-1, 1].
    pub wall_range: f64,
    pub wall_features: bool,
    pub input_mean: Vec<f32>,
    pub input_std: Vec<f32>,
    pub target_mean: Vec<f32>,
    pub target_std: Vec<f32>,
}

/// A batch of particle states on a device: pos/vel [B,N,D], radii/masses [B,N].
pub struct State {
    pub pos: Tensor,
    pub vel: Tensor,
    pub radii: Tensor,
    pub masses: Tensor,
}

impl State {
    /// Gather frames `(traj, frame)` of a dataset into one batch.
    pub fn from_dataset(ds: &headlab_sim::Dataset, frames: &[(usize, usize)], device: Device) -> State {
        let (n, d) = (ds.n_particles, ds.dim());
        let mut pos = Vec::with_capacity(frames.len() * n * d);
        let mut vel = Vec::with_capacity(frames.len() * n * d);
        let mut rad = Vec::with_capacity(frames.len() * n);
        let mut mass = Vec::with_capacity(frames.len() * n);
        for &(t, f) in frames {
            let i = ds.idx(t, f, 0);
            pos.extend_from_slice(&ds.positions[i..i + n * d]);
            vel.extend_from_slice(&ds.velocities[i..i + n * d]);
            rad.extend_from_slice(&ds.radii[t * n..(t + 1) * n]);
            mass.extend_from_slice(&ds.masses[t * n..(t + 1) * n]);
        }
        let b = frames.len() as i64;
        let (n, d) = (n as i64, d as i64);
        State {
            pos: Tensor::from_slice(&pos).view([b, n, d]).to(device),
            vel: Tensor::from_slice(&vel).view([b, n, d]).to(device),
            radii: Tensor::from_slice(&rad).view([b, n]).to(device),
            masses: Tensor::from_slice(&mass).view([b, n]).to(device),
        }
    }
}

impl Normalization {
    /// Raw (unnormalized) features [B,N,F]: pos, vel, radius, mass, then per
    /// axis clamp((x - r)/wall_range) and clamp((L - x - r)/wall_range).
    pub fn raw_features(&self, s: &State) -> Tensor {
        let r = s.radii.unsqueeze(-1);
        let mut parts = vec![s.pos.shallow_clone(), s.vel.shallow_clone(), r.shallow_clone(), s.masses.unsqueeze(-1)];
        if self.wall_features {
            let lo = ((&s.pos - &r) / self.wall_range).clamp(-1.0, 1.0);
            let bx = Tensor::from_slice(&self.box_size.iter().map(|&x| x as f32).collect::<Vec<_>>()).to(s.pos.device());
            let hi = ((bx - &s.pos - &r) / self.wall_range).clamp(-1.0, 1.0);
            parts.push(lo);
            parts.push(hi);
        }
        Tensor::cat(&parts, -1)
    }

    fn vec_t(v: &[f32], device: Device) -> Tensor {
        Tensor::from_slice(v).to(device)
    }

    /// Normalized model inputs [B,N,F].
    pub fn features(&self, s: &State) -> Tensor {
        let dev = s.pos.device();
        (self.raw_features(s) - Self::vec_t(&self.input_mean, dev)) / Self::vec_t(&self.input_std, dev)
    }

    /// Normalized targets from the state change (Δpos, Δvel) [B,N,2D].
    pub fn targets(&self, dpos: &Tensor, dvel: &Tensor) -> Tensor {
        let dev = dpos.device();
        (Tensor::cat(&[dpos, dvel], -1) - Self::vec_t(&self.target_mean, dev)) / Self::vec_t(&self.target_std, dev)
    }

    /// Physical (Δpos, Δvel) [B,N,2D] from normalized model output.
    pub fn denormalize(&self, y: &Tensor) -> Tensor {
        let dev = y.device();
        y * Self::vec_t(&self.target_std, dev) + Self::vec_t(&self.target_mean, dev)
    }

    /// Statistics over the given trajectories of a dataset (all frame pairs).
    /// Constant features (e.g. equal masses) get std 1 so they normalize to 0.
    pub fn from_dataset(ds: &headlab_sim::Dataset, trajs: &[usize], wall_features: bool) -> Normalization {
        let d = ds.dim();
        let max_r = ds.radii.iter().cloned().fold(0.0f32, f32::max) as f64;
        let mut norm = Normalization {
            dimension: d,
            box_size: ds.meta.box_size.clone(),
            wall_range: if max_r > 0.0 { 3.0 * max_r } else { 1.0 },
            wall_features,
            input_mean: vec![],
            input_std: vec![],
            target_mean: vec![],
            target_std: vec![],
        };
        let frames: Vec<(usize, usize)> = trajs.iter().flat_map(|&t| (0..ds.n_frames).map(move |f| (t, f))).collect();
        let s = State::from_dataset(ds, &frames, Device::Cpu);
        let feats = norm.raw_features(&s).to_kind(Kind::Double);
        let fdim = feats.size()[2];
        let feats = feats.view([-1, fdim]);
        let (m, sd) = mean_std(&feats);
        norm.input_mean = m;
        norm.input_std = sd;
        let pairs: Vec<(usize, usize)> = trajs.iter().flat_map(|&t| (0..ds.n_frames.saturating_sub(1)).map(move |f| (t, f))).collect();
        let nxt: Vec<(usize, usize)> = pairs.iter().map(|&(t, f)| (t, f + 1)).collect();
        let (a, b) = (State::from_dataset(ds, &pairs, Device::Cpu), State::from_dataset(ds, &nxt, Device::Cpu));
        let tg = Tensor::cat(&[&b.pos - &a.pos, &b.vel - &a.vel], -1).to_kind(Kind::Double).view([-1, 2 * d as i64]);
        let (m, sd) = mean_std(&tg);
        norm.target_mean = m;
        norm.target_std = sd;
        norm
    }

    pub fn to_arrays(&self) -> Vec<NamedArray> {
        let f = |n: &str, v: &[f32]| NamedArray::new(n, vec![v.len()], v.to_vec());
        vec![
            f("input_mean", &self.input_mean),
            f("input_std", &self.input_std),
            f("target_mean", &self.target_mean),
            f("target_std", &self.target_std),
            f("box_size", &self.box_size.iter().map(|&x| x as f32).collect::<Vec<_>>()),
            f("wall_range", &[self.wall_range as f32]),
        ]
    }

    pub fn from_arrays(arrays: &[NamedArray], wall_features: bool, path: &str) -> Result<Normalization> {
        let get = |n: &str| -> Result<Vec<f32>> {
            arrays.iter().find(|a| a.name == n).map(|a| a.data.clone()).ok_or_else(|| ModelError::Checkpoint {
                path: path.into(),
                msg: format!("missing normalization array /norm/{n}; the checkpoint was not written by headlab train"),
            })
        };
        let box_size: Vec<f64> = get("box_size")?.iter().map(|&x| x as f64).collect();
        Ok(Normalization {
            dimension: box_size.len(),
            box_size,
            wall_range: get("wall_range")?.first().copied().unwrap_or(1.0) as f64,
            wall_features,
            input_mean: get("input_mean")?,
            input_std: get("input_std")?,
            target_mean: get("target_mean")?,
            target_std: get("target_std")?,
        })
    }
}

fn mean_std(x: &Tensor) -> (Vec<f32>, Vec<f32>) {
    let m = x.mean_dim(0, false, Kind::Double);
    let sd = (x - &m).square().mean_dim(0, false, Kind::Double).sqrt();
    let m: Vec<f64> = Vec::try_from(m).unwrap_or_default();
    let sd: Vec<f64> = Vec::try_from(sd).unwrap_or_default();
    let sd = sd.iter().zip(&m).map(|(&s, &mu)| if s > 1e-6 * mu.abs().max(1e-12) { s as f32 } else { 1.0 }).collect();
    (m.iter().map(|&x| x as f32).collect(), sd)
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

struct Param {
    name: String,
    t: Tensor,
}

/// Tensors recorded by a forward pass, under TransformerLens hook names.
#[derive(Default)]
pub struct ActivationCache {
    pub entries: Vec<(String, Tensor)>,
}

impl ActivationCache {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
    /// `blocks.{layer}.attn.hook_pattern` [batch, head, query, key].
    pub fn pattern(&self, layer: usize) -> Option<&Tensor> {
        self.get(&format!("blocks.{layer}.attn.hook_pattern"))
    }
    pub fn attn_scores(&self, layer: usize) -> Option<&Tensor> {
        self.get(&format!("blocks.{layer}.attn.hook_attn_scores"))
    }
}

pub struct Model {
    pub config: ModelConfig,
    pub norm: Normalization,
    flat: Tensor,
    params: Vec<Param>,
}

impl Model {
    /// A freshly initialised model; weights come from a ChaCha8 generator
    /// seeded with `seed`, so they do not depend on the device or on libtorch.
    pub fn new(config: ModelConfig, norm: Normalization, seed: u64, device: Device) -> Result<Model> {
        config.validate()?;
        let shapes = param_shapes(&config, norm.dimension);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut arrays = Vec::new();
        let depth_scale = 1.0 / (2.0 * config.n_layers as f64).sqrt();
        for (name, shape) in &shapes {
            let n: usize = shape.iter().product();
            let leaf = name.rsplit('.').next().unwrap_or("");
            let data: Vec<f32> = if leaf.starts_with('b') {
                vec![0.0; n]
            } else if leaf == "w" {
                vec![1.0; n]
            } else {
                // fan_in: the contracted axis (d_model for W_Q/K/V, d_head*n_heads for W_O).
                let fan_in = match leaf {
                    "W_Q" | "W_K" | "W_V" => shape[1],
                    "W_O" => shape[0] * shape[1],
                    _ => shape[0],
                } as f64;
                let mut std = config.init_scale / (3.0 * fan_in).sqrt();
                if leaf == "W_O" || name.ends_with("mlp.W_out") {
                    std *= depth_scale;
                }
                let dist = rand_distr::Normal::new(0.0, std).expect("finite std");
                (0..n).map(|_| dist.sample(&mut rng) as f32).collect()
            };
            arrays.push(NamedArray::new(name.clone(), shape.clone(), data));
        }
        Model::from_arrays(config, norm, &arrays, device, "<new model>")
    }

    /// Build from named arrays (e.g. a checkpoint's `/params`); checks names and shapes.
    pub fn from_arrays(config: ModelConfig, norm: Normalization, arrays: &[NamedArray], device: Device, path: &str) -> Result<Model> {
        config.validate()?;
        let shapes = param_shapes(&config, norm.dimension);
        let total: usize = shapes.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        let mut data = Vec::with_capacity(total);
        for (name, shape) in &shapes {
            let a = arrays.iter().find(|a| &a.name == name).ok_or_else(|| ModelError::Checkpoint {
                path: path.into(),
                msg: format!("missing parameter /params/{name} (shape {shape:?}); does the [model] config match the checkpoint?"),
            })?;
            if &a.shape != shape {
                return Err(ModelError::Checkpoint {
                    path: path.into(),
                    msg: format!("parameter {name} has shape {:?}, the [model] config implies {shape:?}", a.shape),
                });
            }
            data.extend_from_slice(&a.data);
        }
        let flat = Tensor::from_slice(&data).to(device);
        let mut params = Vec::new();
        let mut off = 0i64;
        for (name, shape) in shapes {
            let n: i64 = shape.iter().product::<usize>() as i64;
            let dims: Vec<i64> = shape.iter().map(|&x| x as i64).collect();
            let t = flat.narrow(0, off, n).view(dims.as_slice()).set_requires_grad(true);
            params.push(Param { name, t });
            off += n;
        }
        Ok(Model { config, norm, flat, params })
    }

    /// Load the weights of a checkpoint written by `headlab train`.
    /// `config_toml` is the run's TOML text; its `[model]` table is used.
    pub fn from_checkpoint(ck: &Checkpoint, device: Device, path: &str) -> Result<Model> {
        let config = model_config_from_run_toml(&ck.config_toml).map_err(|msg| ModelError::Checkpoint { path: path.into(), msg })?;
        let norm = Normalization::from_arrays(&ck.norm, config.wall_features, path)?;
        Model::from_arrays(config, norm, &ck.params, device, path)
    }

    /// Read a checkpoint file and build the model on `device`.
    pub fn load(path: &Path, device: Device) -> Result<Model> {
        let ck = read_checkpoint(path)?;
        Model::from_checkpoint(&ck, device, &path.display().to_string())
    }

    pub fn device(&self) -> Device {
        self.flat.device()
    }

    /// All parameters as one flat f32 tensor (no grad). Updating it in place
    /// (under `tch::no_grad`) updates every named parameter.
    pub fn flat_params(&self) -> &Tensor {
        &self.flat
    }

    /// (name, tensor) in model order; tensors are leaf views that require grad.
    pub fn named_parameters(&self) -> Vec<(&str, &Tensor)> {
        self.params.iter().map(|p| (p.name.as_str(), &p.t)).collect()
    }

    pub fn parameters(&self) -> Vec<&Tensor> {
        self.params.iter().map(|p| &p.t).collect()
    }

    pub fn param(&self, name: &str) -> Option<&Tensor> {
        self.params.iter().find(|p| p.name == name).map(|p| &p.t)
    }

    /// (offset, numel) of a named parameter in the flat buffer.
    pub fn param_range(&self, name: &str) -> Option<(usize, usize)> {
        let mut off = 0;
        for p in &self.params {
            let n = p.t.numel();
            if p.name == name {
                return Some((off, n));
            }
            off += n;
        }
        None
    }

    pub fn num_params(&self) -> usize {
        self.flat.numel()
    }

    /// Gradients of `loss` w.r.t. all parameters, concatenated like `flat_params`.
    pub fn flat_grad(&self, loss: &Tensor) -> Tensor {
        let grads = Tensor::run_backward(&[loss], &self.parameters(), false, false);
        let flat: Vec<Tensor> = grads.iter().map(|g| g.reshape([-1])).collect();
        Tensor::cat(&flat, 0)
    }

    /// An independent copy (own flat buffer) on `device`.
    pub fn deep_clone(&self, device: Device) -> Model {
        Model::from_arrays(self.config.clone(), self.norm.clone(), &self.to_arrays(), device, "<clone>").expect("same shapes")
    }

    /// Parameters as named host arrays (for checkpoints).
    pub fn to_arrays(&self) -> Vec<NamedArray> {
        self.params.iter().map(|p| tensor_to_array(&p.name, &p.t)).collect()
    }

    /// The one forward pass. `x`: normalized features [B,N,F]. Returns the
    /// normalized prediction [B,N,2D] and, if `record`, the hook tensors.
    /// `train` enables dropout (when configured).
    pub fn forward_with_cache(&self, x: &Tensor, record: bool, train: bool) -> (Tensor, ActivationCache) {
        let c = &self.config;
        let (b, n, f) = x.size3().expect("features must be [batch, particles, features]");
        let (d, h, dh) = (c.d_model as i64, c.n_heads as i64, c.d_head() as i64);
        let p = |name: &str| self.param(name).unwrap_or_else(|| panic!("parameter {name}"));
        let mut cache = ActivationCache::default();
        let dropout = |t: Tensor| if train && c.dropout > 0.0 { t.dropout(c.dropout, true) } else { t };
        let scale = match c.attention.scale {
            AttentionScale::InvSqrtDHead => 1.0 / (dh as f64).sqrt(),
            AttentionScale::InvDHead => 1.0 / dh as f64,
            AttentionScale::None | AttentionScale::InvKeyNormSum => 1.0,
            AttentionScale::InvN => 1.0 / n as f64,
            AttentionScale::InvSqrtN => 1.0 / (n as f64).sqrt(),
            AttentionScale::InvLogN => if n >= 2 { 1.0 / (n as f64).ln() } else { 1.0 },
        };

        // Embed; the residual stream is kept as [B*N, d].
        let mut resid = p("embed.b_in").addmm(&x.reshape([b * n, f]), p("embed.W_in"));
        for l in 0..c.n_layers {
            let w = |s: &str| p(&format!("blocks.{l}.{s}"));
            if record {
                cache.entries.push((format!("blocks.{l}.hook_resid_pre"), resid.view([b, n, d]).detach()));
            }
            // Attention: one matmul for Q, K and V of all heads.
            let ln = |t: &Tensor, which: &str| {
                if c.layer_norm {
                    t.layer_norm([d], Some(w(&format!("{which}.w"))), Some(w(&format!("{which}.b"))), c.ln_eps, false)
                } else {
                    t.shallow_clone()
                }
            };
            let a = ln(&resid, "ln1");
            let w_qkv = Tensor::cat(&[w("attn.W_Q"), w("attn.W_K"), w("attn.W_V")], 0) // [3H, d, dh]
                .permute([1, 0, 2])
                .reshape([d, 3 * h * dh]);
            let b_qkv = Tensor::cat(&[w("attn.b_Q"), w("attn.b_K"), w("attn.b_V")], 0).view([3 * h * dh]);
            let qkv = b_qkv.addmm(&a, &w_qkv).view([b, n, 3, h, dh]).permute([2, 0, 3, 1, 4]); // [3,B,H,N,dh]
            let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
            let mut scores = q.matmul(&k.transpose(-1, -2)) * scale; // [B,H,Nq,Nk]
            if c.attention.scale == AttentionScale::InvKeyNormSum {
                let dims = [-1i64];
                let knorm = k.square().sum_dim_intlist(dims.as_slice(), false, Kind::Float).clamp_min(1e-30).sqrt(); // [B,H,Nk]
                scores = scores / knorm.sum_dim_intlist(dims.as_slice(), true, Kind::Float).unsqueeze(-1).clamp_min(1e-12);
            }
            let pattern = match c.attention.kind {
                AttentionKind::Softmax => scores.softmax(-1, Kind::Float),
                AttentionKind::Linear => &scores / n as f64,
            };
            let z = pattern.matmul(&v).permute([0, 2, 1, 3]).reshape([b * n, h * dh]); // [B*N, H*dh]
            let attn_out = w("attn.b_O").addmm(&z, &w("attn.W_O").view([h * dh, d]));
            if record {
                cache.entries.push((format!("blocks.{l}.attn.hook_attn_scores"), scores.detach()));
                cache.entries.push((format!("blocks.{l}.attn.hook_pattern"), pattern.detach()));
            }
            resid = resid + dropout(attn_out);
            // MLP.
            if c.mlp {
                let m = ln(&resid, "ln2");
                let hid = w("mlp.b_in").addmm(&m, w("mlp.W_in"));
                let hid = match c.activation {
                    Activation::Gelu => hid.gelu("none"),
                    Activation::GeluTanh => hid.gelu("tanh"),
                    Activation::Relu => hid.relu(),
                    Activation::Silu => hid.silu(),
                };
                resid = resid + dropout(w("mlp.b_out").addmm(&hid, w("mlp.W_out")));
            }
            if record {
                cache.entries.push((format!("blocks.{l}.hook_resid_post"), resid.view([b, n, d]).detach()));
            }
        }
        let fin = if c.layer_norm { resid.layer_norm([d], Some(p("ln_final.w")), Some(p("ln_final.b")), c.ln_eps, false) } else { resid };
        let out = p("unembed.b_out").addmm(&fin, p("unembed.W_out"));
        (out.view([b, n, -1]), cache)
    }

    /// Plain forward (no hooks, no dropout).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with_cache(x, false, false).0
    }

    /// Training loss: MSE between prediction and normalized targets.
    /// Differentiable w.r.t. the parameters.
    pub fn loss(&self, x: &Tensor, y: &Tensor, train: bool) -> Tensor {
        let (pred, _) = self.forward_with_cache(x, false, train);
        pred.mse_loss(y, tch::Reduction::Mean)
    }

    /// Predict the next state (physical units) from a state: one simulator step.
    pub fn step_state(&self, s: &State) -> State {
        let d = self.norm.dimension as i64;
        let y = tch::no_grad(|| self.norm.denormalize(&self.forward(&self.norm.features(s))));
        State {
            pos: &s.pos + y.narrow(-1, 0, d),
            vel: &s.vel + y.narrow(-1, d, d),
            radii: s.radii.shallow_clone(),
            masses: s.masses.shallow_clone(),
        }
    }
}

/// Copy a tensor to a host array.
pub fn tensor_to_array(name: &str, t: &Tensor) -> NamedArray {
    let shape: Vec<usize> = t.size().iter().map(|&x| x as usize).collect();
    let flat = t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    let data: Vec<f32> = Vec::try_from(&flat).unwrap_or_default();
    NamedArray { name: name.into(), shape, data }
}

/// Extract the `[model]` table from a run's TOML text (or a bare model config).
pub fn model_config_from_run_toml(text: &str) -> std::result::Result<ModelConfig, String> {
    let v: toml::Table = text.parse().map_err(|e| format!("config attribute is not valid TOML: {e}"))?;
    let m = v.get("model").cloned().unwrap_or(toml::Value::Table(toml::Table::new()));
    let cfg: ModelConfig = m.try_into().map_err(|e| format!("[model] table: {e}"))?;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// Parse `auto`, `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    let bad = || ModelError::Config { key: "device".into(), value: s.into(), hint: "use auto, cpu, cuda or cuda:N".into() };
    match s {
        "auto" => Ok(if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => {
            let i: usize = s.strip_prefix("cuda:").and_then(|x| x.parse().ok()).ok_or_else(bad)?;
            Ok(Device::Cuda(i))
        }
    }
}
