//! The linear transformer of Ahn et al. (Z_{l+1} = Z_l + (1/n) Σ_h W^{PV} Z_l M
//! (Z_lᵀ W^{KQ} Z_l)), its loss, gradients, Hessian-vector products and the
//! top Hessian eigenvalue by power iteration.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::{Device, Kind, Tensor};

use super::data::Prompts;
use super::IclError;
use crate::config::ConfigError;
use headlab_sim::seed::{derive_seed, Stream};

/// The linear transformer of the paper: per layer, `w_pv` and `w_kq` of shape
/// [heads, d+1, d+1].
pub struct LinearTransformer {
    /// Input dimension d.
    pub d: usize,
    /// Layers.
    pub depth: usize,
    /// Heads per layer.
    pub heads: usize,
    /// Per layer, W^{PV} [heads, d+1, d+1].
    pub w_pv: Vec<Tensor>,
    /// Per layer, W^{KQ} [heads, d+1, d+1].
    pub w_kq: Vec<Tensor>,
}

impl LinearTransformer {
    /// I.i.d. N(0, init_std²) weights from a host RNG.
    pub fn new(d: usize, depth: usize, heads: usize, init_std: f64, seed: u64, device: Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, Stream::IclInit));
        let m = (d + 1) as i64;
        let mut mk = || {
            let v: Vec<f32> = (0..heads * (d + 1) * (d + 1))
                .map(|_| (init_std * rng.sample::<f64, _>(StandardNormal)) as f32)
                .collect();
            Tensor::from_slice(&v).view([heads as i64, m, m]).to_device(device).set_requires_grad(true)
        };
        let mut w_pv = Vec::new();
        let mut w_kq = Vec::new();
        for _ in 0..depth {
            w_pv.push(mk());
            w_kq.push(mk());
        }
        LinearTransformer { d, depth, heads, w_pv, w_kq }
    }

    /// Build from given weights (each [heads, d+1, d+1]); used by tests.
    pub fn from_weights(w_pv: Vec<Tensor>, w_kq: Vec<Tensor>) -> Self {
        let s = w_pv[0].size();
        LinearTransformer { d: s[1] as usize - 1, depth: w_pv.len(), heads: s[0] as usize, w_pv, w_kq }
    }

    /// Parameters in a fixed order: layer 0 PV, layer 0 KQ, layer 1 PV, …
    pub fn params(&self) -> Vec<Tensor> {
        self.w_pv.iter().zip(&self.w_kq).flat_map(|(a, b)| [a.shallow_clone(), b.shallow_clone()]).collect()
    }

    /// Number of scalar parameters.
    pub fn n_params(&self) -> usize {
        2 * self.depth * self.heads * (self.d + 1) * (self.d + 1)
    }

    /// Final Z_L for prompts `z` [B, d+1, n+1].
    pub fn forward_z(&self, z0: &Tensor) -> Tensor {
        let cols = z0.size()[2];
        let n = (cols - 1) as f64;
        let mut mask = vec![1f32; cols as usize];
        mask[cols as usize - 1] = 0.0;
        let mask = Tensor::from_slice(&mask).to_device(z0.device()).view([1, 1, 1, cols]);
        let mut z = z0.shallow_clone();
        for l in 0..self.depth {
            let zu = z.unsqueeze(1); // [B,1,d+1,n+1]
            let zm = &zu * &mask; // Z M
                                  // A_h = Zᵀ W^{KQ}_h Z : [B,H,n+1,n+1]
            let a = zu.transpose(-1, -2).matmul(&self.w_kq[l].matmul(&zu));
            // Σ_h W^{PV}_h (Z M) A_h : [B,d+1,n+1]
            let upd = self.w_pv[l].matmul(&zm.matmul(&a)).sum_dim_intlist([1i64].as_slice(), false, None::<Kind>);
            #[allow(clippy::assign_op_pattern)] // out of place on purpose (autograd)
            {
                z = z + upd / n;
            }
        }
        z
    }

    /// Prediction ŷ = −[Z_L]_{d+1,n+1}, shape [B].
    pub fn predict(&self, z0: &Tensor) -> Tensor {
        let z = self.forward_z(z0);
        let (rows, cols) = (z.size()[1], z.size()[2]);
        -z.select(1, rows - 1).select(1, cols - 1)
    }

    /// Mean squared error on a set of prompts.
    pub fn loss(&self, p: &Prompts) -> Tensor {
        (self.predict(&p.z) - &p.y).square().mean(None::<Kind>)
    }
}

pub(super) fn flat(ts: &[Tensor]) -> Tensor {
    Tensor::cat(&ts.iter().map(|t| t.flatten(0, -1)).collect::<Vec<_>>(), 0)
}

pub(super) fn scalar(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).double_value(&[])
}

/// Gradients of the mean loss on `p`.
pub(super) fn grads(model: &LinearTransformer, p: &Prompts) -> (f64, Vec<Tensor>) {
    let params = model.params();
    let loss = model.loss(p);
    let g = Tensor::run_backward(&[&loss], &params, false, false);
    (scalar(&loss), g)
}

/// Full-batch gradient over a large set, in chunks (memory-bounded), weighted
/// by chunk size so that it equals the gradient of the mean loss. An empty
/// set (or a chunk size of 0) has no mean loss: an error, not an empty list.
pub(super) fn full_grad(model: &LinearTransformer, p: &Prompts, chunk: usize) -> Result<Vec<Tensor>, IclError> {
    let n = p.len();
    let empty = || -> IclError {
        ConfigError::invalid("icl", "n_train", n, "the full-batch gradient needs at least one training prompt").into()
    };
    if chunk == 0 {
        return Err(empty());
    }
    let mut acc: Option<Vec<Tensor>> = None;
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let part = Prompts { z: p.z.narrow(0, start as i64, len as i64), y: p.y.narrow(0, start as i64, len as i64) };
        let (_, g) = grads(model, &part);
        let w = len as f64 / n as f64;
        acc = Some(match acc {
            None => g.iter().map(|t| t * w).collect(),
            Some(a) => a.iter().zip(&g).map(|(s, t)| s + t * w).collect(),
        });
        start += len;
    }
    acc.ok_or_else(empty)
}

/// Hessian-vector product of the mean loss on `p` at the current parameters.
pub fn hvp(model: &LinearTransformer, p: &Prompts, v: &[Tensor]) -> Vec<Tensor> {
    let params = model.params();
    let loss = model.loss(p);
    let g = Tensor::run_backward(&[&loss], &params, true, true);
    let dot = g
        .iter()
        .zip(v)
        .map(|(a, b)| (a * b).sum(None::<Kind>))
        .fold(Tensor::zeros([], (p.z.kind(), p.z.device())), |s, x| s + x);
    Tensor::run_backward(&[&dot], &params, false, false)
}

pub(super) fn dot(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter().zip(b).map(|(x, y)| scalar(&(x * y).sum(Kind::Double))).sum()
}

/// Top Hessian eigenvalue (largest in magnitude, with its sign) by power iteration.
pub fn top_eigenvalue(model: &LinearTransformer, p: &Prompts, iters: usize, seed: u64) -> f64 {
    tch::manual_seed(seed as i64);
    let mut v: Vec<Tensor> = model.params().iter().map(|t| Tensor::randn(t.size(), (t.kind(), t.device()))).collect();
    let mut lambda = 0.0;
    for _ in 0..iters {
        let nv = dot(&v, &v).sqrt().max(1e-30);
        v = v.iter().map(|t| t / nv).collect();
        let hv = hvp(model, p, &v);
        lambda = dot(&v, &hv);
        v = hv;
    }
    lambda
}
