//! The prompts of the in-context regression task: covariates from the
//! configured distribution, a fresh weight vector per prompt, the prompt
//! matrix Z₀ and its target; a training and an evaluation set per seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{ChiSquared, Distribution, StandardNormal, StudentT};
use tch::{Device, Tensor};

use super::{DataDist, IclConfig, IclError};
use headlab_sim::seed::{derive_seed, Stream};

/// A set of prompts: `z` [P, d+1, n+1] (query label slot 0) and targets `y` [P].
pub struct Prompts {
    /// Prompt matrices [P, d+1, n+1].
    pub z: Tensor,
    /// Query targets [P].
    pub y: Tensor,
}

impl Prompts {
    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.y.size()[0] as usize
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The prompts at `idx`.
    pub fn select(&self, idx: &Tensor) -> Prompts {
        Prompts { z: self.z.index_select(0, idx), y: self.y.index_select(0, idx) }
    }
}

/// Draw `count` prompts (host RNG, so results do not depend on the device).
pub fn sample_prompts(
    cfg: &IclConfig,
    dist: DataDist,
    count: usize,
    seed: u64,
    device: Device,
) -> Result<Prompts, IclError> {
    let (d, n) = (cfg.d, cfg.n);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = match dist {
        DataDist::Gaussian => 1.0,
        _ if cfg.standardize => ((dist.dof() - 2.0) / dist.dof()).sqrt(),
        _ => 1.0,
    };
    let t = match dist {
        DataDist::StudentT(nu) => Some(StudentT::new(nu).map_err(|_| IclError::Data(format!("student-t:{nu}")))?),
        _ => None,
    };
    let chi = match dist {
        DataDist::MultiT(nu) => Some(ChiSquared::new(nu).map_err(|_| IclError::Data(format!("mv-t:{nu}")))?),
        _ => None,
    };
    let cols = n + 1;
    let mut z = vec![0f32; count * (d + 1) * cols];
    let mut y = vec![0f32; count];
    let mut x = vec![0f64; d];
    let mut w = vec![0f64; d];
    for p in 0..count {
        for wi in w.iter_mut() {
            *wi = rng.sample(StandardNormal);
        }
        let base = p * (d + 1) * cols;
        for i in 0..cols {
            let r = match (&chi, dist) {
                (Some(c), DataDist::MultiT(nu)) => 1.0 / (c.sample(&mut rng) / nu).sqrt(),
                _ => 1.0,
            };
            for xk in x.iter_mut() {
                let v: f64 = match &t {
                    Some(t) => t.sample(&mut rng),
                    None => rng.sample(StandardNormal),
                };
                *xk = v * r * scale;
            }
            let eps: f64 =
                if cfg.label_noise > 0.0 { cfg.label_noise * rng.sample::<f64, _>(StandardNormal) } else { 0.0 };
            let yi: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + eps;
            for k in 0..d {
                z[base + k * cols + i] = x[k] as f32;
            }
            if i < n {
                z[base + d * cols + i] = yi as f32;
            } else {
                y[p] = yi as f32;
            }
        }
    }
    let z = Tensor::from_slice(&z).view([count as i64, (d + 1) as i64, cols as i64]).to_device(device);
    let y = Tensor::from_slice(&y).to_device(device);
    Ok(Prompts { z, y })
}

/// Training data for one (data setting, seed).
pub struct TaskData {
    /// Training prompts.
    pub train: Prompts,
    /// Evaluation prompts.
    pub eval: Prompts,
}

impl TaskData {
    /// Training and evaluation prompts of one seed.
    pub fn new(cfg: &IclConfig, dist: DataDist, seed: u64, device: Device) -> Result<Self, IclError> {
        Ok(TaskData {
            train: sample_prompts(cfg, dist, cfg.n_train, derive_seed(seed, Stream::IclTrainPrompts), device)?,
            eval: sample_prompts(cfg, dist, cfg.n_eval, derive_seed(seed, Stream::IclEvalPrompts), device)?,
        })
    }
}
