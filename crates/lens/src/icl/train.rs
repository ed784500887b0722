//! One training run of the sweep (train's optimizer after global gradient
//! clipping, periodic evaluation, divergence check) and the gradient-noise
//! and curvature measurements taken along it.

use headlab_train::{Optimizer, OptimizerConfig, OptimizerKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::data::TaskData;
use super::model::{dot, flat, full_grad, grads, hvp, scalar, top_eigenvalue, LinearTransformer};
use super::{DataDist, IclConfig, IclError, NoiseMeasurement, Optim, RunResult};
use crate::noise;
use headlab_sim::seed::{derive_seed, Stream};

/// One optimizer run: train's [`Optimizer`] (one per parameter tensor, the
/// workspace's single SGD/Adam implementation) after the global gradient
/// norm clipping of `clip_norm`.
struct OptState {
    lr: f64,
    per_param: Vec<Optimizer>,
}

impl OptState {
    fn new(cfg: &IclConfig, optim: Optim, lr: f64, params: &[Tensor]) -> Self {
        let oc = OptimizerConfig {
            kind: match optim {
                Optim::Sgd => OptimizerKind::Sgd,
                Optim::Adam => OptimizerKind::Adam,
            },
            lr,
            beta1: cfg.adam_beta1,
            beta2: cfg.adam_beta2,
            eps: cfg.adam_eps,
            weight_decay: 0.0,
            momentum: cfg.sgd_momentum,
            clip: cfg.clip_norm,
        };
        OptState { lr, per_param: params.iter().map(|p| Optimizer::for_tensor(oc.clone(), p)).collect() }
    }

    /// Apply one update in place.
    fn step(&mut self, cfg: &IclConfig, params: &[Tensor], grads: &[Tensor]) {
        let mut g: Vec<Tensor> = grads.iter().map(|g| g.shallow_clone()).collect();
        if cfg.clip_norm > 0.0 {
            let norm = dot(&g, &g).sqrt();
            if norm > cfg.clip_norm {
                g = g.iter().map(|t| t * (cfg.clip_norm / norm)).collect();
            }
        }
        for ((opt, p), g) in self.per_param.iter_mut().zip(params).zip(&g) {
            opt.update_tensor(p, g, self.lr);
        }
    }
}

/// What [`train_run`] should measure along the way.
#[derive(Default)]
pub(super) struct Probe<'a> {
    pub(super) noise_steps: &'a [usize],
    pub(super) out: Vec<NoiseMeasurement>,
}

/// Train one model; returns the run and any noise measurements requested.
#[allow(clippy::too_many_arguments)]
pub(super) fn train_run(
    cfg: &IclConfig,
    data: &TaskData,
    dist: DataDist,
    depth: usize,
    optim: Optim,
    lr: f64,
    seed: u64,
    device: Device,
    probe: &mut Probe,
) -> Result<RunResult, IclError> {
    let model = LinearTransformer::new(cfg.d, depth, cfg.heads, cfg.init_std, seed, device);
    let params = model.params();
    let mut opt = OptState::new(cfg, optim, lr, &params);
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, Stream::IclBatches));
    let limit = cfg.diverge_factor * cfg.trivial_loss(dist);
    let mut eval_steps = Vec::new();
    let mut eval_loss = Vec::new();
    let mut diverged = false;
    let eval = |m: &LinearTransformer| tch::no_grad(|| scalar(&m.loss(&data.eval)));
    for step in 0..=cfg.steps {
        if step % cfg.eval_every == 0 || step == cfg.steps {
            let l = eval(&model);
            eval_steps.push(step);
            eval_loss.push(l);
            if !l.is_finite() || l > limit {
                diverged = true;
                break;
            }
        }
        let measure = probe.noise_steps.contains(&step);
        if measure {
            let m = measure_noise(cfg, &model, data, dist, depth, optim, lr, step, seed)?;
            probe.out.push(m);
        }
        if step == cfg.steps {
            break;
        }
        let idx: Vec<i64> = (0..cfg.batch).map(|_| rng.gen_range(0..cfg.n_train as i64)).collect();
        let batch = data.train.select(&Tensor::from_slice(&idx).to_device(device));
        let (_, g) = grads(&model, &batch);
        if measure && cfg.noise.curvature {
            // Directional smoothness of the actual update u = θ_{t+1} − θ_t, at θ_t.
            let before: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
            opt.step(cfg, &params, &g);
            let after: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
            let u: Vec<Tensor> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
            set_params(&params, &before);
            let hu = hvp(&model, &data.train, &u);
            let uu = dot(&u, &u);
            set_params(&params, &after);
            if let Some(last) = probe.out.last_mut() {
                last.directional_smoothness = Some(if uu > 0.0 { dot(&u, &hu) / uu } else { 0.0 });
            }
        } else {
            opt.step(cfg, &params, &g);
        }
    }
    let final_loss = if diverged { f64::INFINITY } else { *eval_loss.last().unwrap_or(&f64::INFINITY) };
    Ok(RunResult { data: dist, depth, optim, lr, seed, eval_steps, eval_loss, final_loss, diverged })
}

fn set_params(params: &[Tensor], values: &[Tensor]) {
    tch::no_grad(|| {
        for (p, v) in params.iter().zip(values) {
            let mut p = p.shallow_clone();
            p.copy_(v);
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn measure_noise(
    cfg: &IclConfig,
    model: &LinearTransformer,
    data: &TaskData,
    dist: DataDist,
    depth: usize,
    optim: Optim,
    lr: f64,
    step: usize,
    seed: u64,
) -> Result<NoiseMeasurement, IclError> {
    let nc = &cfg.noise;
    let device = data.train.z.device();
    let gfull = flat(&full_grad(model, &data.train, 4096)?);
    let full_grad_norm = scalar(&gfull.norm());
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, Stream::IclNoiseBatches { step: step as u64 }));
    let mut rows = Vec::with_capacity(nc.minibatches);
    for _ in 0..nc.minibatches {
        let idx: Vec<i64> = (0..cfg.batch).map(|_| rng.gen_range(0..cfg.n_train as i64)).collect();
        let batch = data.train.select(&Tensor::from_slice(&idx).to_device(device));
        let (_, g) = grads(model, &batch);
        rows.push(flat(&g) - &gfull);
    }
    let xi = Tensor::stack(&rows, 0); // [K, P]
    let noise::GradientNoise { norms, gaussian_norms, coords, norm_stats, gaussian_norm_stats, coord_stats } =
        noise::gradient_noise(&xi, nc.hill_k, derive_seed(seed, Stream::IclNoiseGaussian { step: step as u64 }), seed)?;
    let top_eigenvalue =
        if nc.curvature { Some(top_eigenvalue(model, &data.train, nc.power_iters, seed)) } else { None };
    Ok(NoiseMeasurement {
        data: dist,
        depth,
        optim,
        lr,
        step,
        norms,
        gaussian_norms,
        coords,
        norm_stats,
        gaussian_norm_stats,
        coord_stats,
        full_grad_norm,
        top_eigenvalue,
        directional_smoothness: None,
    })
}
