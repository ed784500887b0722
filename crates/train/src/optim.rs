//! SGD (momentum), Adam and AdamW on the model's flat parameter buffer: a
//! handful of tensor operations per step for the whole model, and a state
//! (two flat tensors and a step count) that is trivial to save, so resuming
//! is bit-identical. The arithmetic follows torch.optim's single-tensor code.
//!
//! On the CPU, [`Optimizer::clip_and_update`] does the whole step (the
//! global gradient norm, clipping and the update) in two passes over the
//! flat buffers in plain Rust, instead of about fifteen libtorch operations
//! that each read and write the whole model; elsewhere (CUDA, other kinds)
//! it falls back to the tensor operations of [`Optimizer::update_tensor`].
//!
//! This is the one optimizer of the workspace: the lens toys, whose
//! parameters are separate tensors, hold one [`Optimizer`] per tensor
//! ([`Optimizer::for_tensor`], [`Optimizer::update_tensor`]).

use headlab_model::{tensor_to_array, Model};
use headlab_store::checkpoint::{NamedArray, OptimizerState};
use tch::{Kind, Tensor};

use crate::config::{OptimizerConfig, OptimizerKind};
use crate::{Result, TrainError};

/// SGD, Adam or AdamW on the model's flat parameter buffer (one tensor op per update).
pub struct Optimizer {
    /// Its settings.
    pub cfg: OptimizerConfig,
    /// Updates taken so far.
    pub step: u64,
    /// Adam: first moment; SGD: momentum buffer.
    m: Tensor,
    /// Adam: second moment (unused by SGD).
    v: Tensor,
}

impl Optimizer {
    /// An optimizer of the model's flat parameter buffer.
    pub fn new(cfg: OptimizerConfig, model: &Model) -> Optimizer {
        Optimizer::for_tensor(cfg, model.flat_params())
    }

    /// An optimizer of one parameter tensor shaped like `like` (its state is
    /// two zero tensors of that shape). `cfg.lr`, `cfg.clip` are not used
    /// here: the caller passes the learning rate to every update and clips.
    pub fn for_tensor(cfg: OptimizerConfig, like: &Tensor) -> Optimizer {
        let z = like.zeros_like();
        Optimizer { cfg, step: 0, v: z.zeros_like(), m: z }
    }

    fn slot_names(&self) -> &'static [&'static str] {
        match self.cfg.kind {
            OptimizerKind::Sgd => &["momentum"],
            _ => &["exp_avg", "exp_avg_sq"],
        }
    }

    /// Apply one update with learning rate `lr`, given the flat gradient.
    pub fn update(&mut self, model: &Model, grad: &Tensor, lr: f64) {
        self.update_tensor(model.flat_params(), grad, lr);
    }

    /// Apply one update in place to `param` (the tensor this optimizer was
    /// made for) with learning rate `lr`, given its gradient.
    pub fn update_tensor(&mut self, param: &Tensor, grad: &Tensor, lr: f64) {
        let _guard = tch::no_grad_guard();
        let c = &self.cfg;
        let mut p = param.shallow_clone();
        self.step += 1;
        let mut g = grad.shallow_clone();
        if c.weight_decay > 0.0 && c.kind != OptimizerKind::Adamw {
            g = &g + &p * c.weight_decay;
        }
        match c.kind {
            OptimizerKind::Sgd => {
                // buf = momentum * buf + g ; p -= lr * buf
                let _ = self.m.g_mul_scalar_(c.momentum).g_add_(&g);
                let _ = p.g_sub_(&(&self.m * lr));
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                if c.kind == OptimizerKind::Adamw && c.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let t = self.step as i32;
                let _ = self.m.lerp_(&g, 1.0 - c.beta1);
                let _ = self.v.g_mul_scalar_(c.beta2).g_add_(&(&g * &g * (1.0 - c.beta2)));
                let bc1 = 1.0 - c.beta1.powi(t);
                let bc2 = 1.0 - c.beta2.powi(t);
                let denom = (self.v.sqrt() / bc2.sqrt()) + c.eps;
                let _ = p.g_sub_(&(&self.m / denom * (lr / bc1)));
            }
        }
    }

    /// One training update of the model's flat buffer: the global L2 norm of
    /// `grad` (returned), clipping to `clip` like
    /// torch.nn.utils.clip_grad_norm_ (coefficient clip/(norm+1e-6), capped
    /// at 1; `clip = 0`: none), then the update with learning rate `lr`,
    /// taken only when the norm is finite and `apply` is true (the caller
    /// passes whether the loss is finite). `grad` is left as it was.
    ///
    /// On the CPU (contiguous f32 buffers) this is two fused passes in Rust;
    /// otherwise the tensor operations of [`clip_grad`] and
    /// [`Optimizer::update_tensor`]. Both follow torch.optim's arithmetic in
    /// f32; the norm is accumulated in f64 on the fused path.
    pub fn clip_and_update(&mut self, model: &Model, grad: &Tensor, lr: f64, clip: f64, apply: bool) -> f64 {
        let param = model.flat_params();
        let fused = tch::no_grad(|| {
            // SAFETY: the four buffers are distinct (checked: different
            // storage), contiguous f32 tensors on the CPU of equal length,
            // and nothing else touches them during this call.
            unsafe { fused_slices([param, grad, &self.m, &self.v]) }
        });
        let Some([p, g, m, v]) = fused else {
            let mut g = grad.copy();
            let norm = clip_grad(&mut g, clip);
            if apply && norm.is_finite() {
                self.update_tensor(param, &g, lr);
            }
            return norm;
        };
        let norm = sum_of_squares(g).sqrt();
        if !(apply && norm.is_finite()) {
            return norm;
        }
        let coef = if clip > 0.0 { (clip / (norm + 1e-6)).min(1.0) as f32 } else { 1.0 };
        self.step += 1;
        let c = &self.cfg;
        let (wd, lr32) = (c.weight_decay as f32, lr as f32);
        match c.kind {
            OptimizerKind::Sgd => {
                let mom = c.momentum as f32;
                for ((p, &g), m) in p.iter_mut().zip(g.iter()).zip(m.iter_mut()) {
                    let mut gi = g * coef;
                    if wd > 0.0 {
                        gi += *p * wd;
                    }
                    *m = *m * mom + gi;
                    *p -= *m * lr32;
                }
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let t = self.step as i32;
                let b2 = c.beta2 as f32;
                let bc1 = 1.0 - c.beta1.powi(t);
                let bc2_sqrt = ((1.0 - c.beta2.powi(t)).sqrt()) as f32;
                let step_size = (lr / bc1) as f32;
                let eps = c.eps as f32;
                let decoupled = c.kind == OptimizerKind::Adamw && wd > 0.0;
                let l2 = c.kind == OptimizerKind::Adam && wd > 0.0;
                let shrink = (1.0 - lr * c.weight_decay) as f32;
                let (w1, w2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
                let k = AdamConsts { coef, wd, l2, decoupled, shrink, w1, w2, b2, bc2_sqrt, eps, step_size };
                adam_pass(p, g, m, v, &k);
            }
        }
        norm
    }

    /// The moment buffers as named arrays, for a checkpoint.
    pub fn state(&self, model: &Model) -> Result<OptimizerState> {
        let bufs = [&self.m, &self.v];
        let slots = self
            .slot_names()
            .iter()
            .zip(bufs)
            .map(|(name, buf)| Ok((name.to_string(), split_flat(model, buf)?)))
            .collect::<Result<_>>()?;
        Ok(OptimizerState { kind: self.kind_name().into(), step: self.step, slots })
    }

    fn kind_name(&self) -> &'static str {
        match self.cfg.kind {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adamw => "adamw",
        }
    }

    /// Restore the moment buffers from a checkpoint at `path` (same optimizer kind and shapes, else an error).
    pub fn load_state(&mut self, _model: &Model, st: &OptimizerState, path: &str) -> Result<()> {
        let me = self.kind_name();
        if st.kind != me {
            return Err(TrainError::Resume(format!("{path}: optimizer state is `{}` but the config asks for `{me}`; resume with the same optimizer or start a new run", st.kind)));
        }
        let names = self.slot_names();
        let bufs = [&mut self.m, &mut self.v];
        for (name, buf) in names.iter().zip(bufs) {
            let arrays = st
                .slots
                .iter()
                .find(|(s, _)| s == name)
                .map(|(_, a)| a)
                .ok_or_else(|| TrainError::Resume(format!("{path}: optimizer slot `{name}` is missing")))?;
            let data: Vec<f32> = arrays.iter().flat_map(|a| a.data.iter().copied()).collect();
            if data.len() != buf.numel() {
                return Err(TrainError::Resume(format!(
                    "{path}: optimizer slot `{name}` has {} values, the model has {}",
                    data.len(),
                    buf.numel()
                )));
            }
            *buf = Tensor::from_slice(&data).to(buf.device());
        }
        self.step = st.step;
        Ok(())
    }
}

/// Split a flat tensor shaped like `model.flat_params()` into named arrays.
fn split_flat(model: &Model, flat: &Tensor) -> Result<Vec<NamedArray>> {
    model
        .named_parameters()
        .iter()
        .map(|(name, t)| {
            let (off, n) = model
                .param_range(name)
                .ok_or_else(|| TrainError::Resume(format!("parameter `{name}` has no range in the flat buffer")))?;
            Ok(tensor_to_array(name, &flat.narrow(0, off as i64, n as i64).view(t.size().as_slice()))?)
        })
        .collect()
}

/// Global L2 norm of a flat gradient, and clip it in place like
/// torch.nn.utils.clip_grad_norm_ (coefficient clip/(norm+1e-6), capped at 1).
pub fn clip_grad(grad: &mut Tensor, clip: f64) -> f64 {
    let norm = grad.norm().to_kind(Kind::Double).double_value(&[]);
    if clip > 0.0 && norm.is_finite() {
        let coef = (clip / (norm + 1e-6)).min(1.0);
        let _ = grad.g_mul_scalar_(coef);
    }
    norm
}

/// The constants of one fused Adam/AdamW step (see `clip_and_update`).
struct AdamConsts {
    coef: f32,
    wd: f32,
    l2: bool,
    decoupled: bool,
    shrink: f32,
    w1: f32,
    w2: f32,
    b2: f32,
    bc2_sqrt: f32,
    eps: f32,
    step_size: f32,
}

/// The Adam/AdamW update of every element, in f32 as torch.optim does it.
#[inline(always)]
fn adam_body(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &AdamConsts) {
    for (((p, &g), m), v) in p.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
        let mut gi = g * k.coef;
        if k.l2 {
            gi += *p * k.wd;
        }
        if k.decoupled {
            *p *= k.shrink;
        }
        *m += (gi - *m) * k.w1;
        *v = *v * k.b2 + gi * gi * k.w2;
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *p -= k.step_size * (*m / denom);
    }
}

/// [`adam_body`] compiled for AVX2 (8 lanes) where the CPU has it, else for
/// the baseline (SSE2, 4 lanes). The same IEEE operations in the same
/// order per element (no fused multiply-add: Rust never contracts), so both
/// give the same bits: results do not depend on the machine.
fn adam_pass(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &AdamConsts) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &AdamConsts) {
            adam_body(p, g, m, v, k)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2(p, g, m, v, k) };
        }
    }
    adam_body(p, g, m, v, k)
}

/// Σ x² in f64, over 8 independent partial sums (a serial f64 sum is one
/// long dependency chain: 4 cycles an element; these vectorize).
fn sum_of_squares(g: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = g.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += (x as f64) * (x as f64);
        }
    }
    acc.iter().sum::<f64>() + rest.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()
}

/// Mutable f32 slices over K tensors when each is a contiguous f32 CPU
/// tensor of the same length and no two share a storage; `None` otherwise.
///
/// # Safety
/// The caller must make sure that nothing else reads or writes these
/// tensors while the slices live.
// A `Tensor` is a handle to C memory that libtorch also writes through
// shared handles; the contract above is what makes the `&mut` unique.
#[allow(clippy::mut_from_ref)]
pub(crate) unsafe fn fused_slices<const K: usize>(ts: [&Tensor; K]) -> Option<[&mut [f32]; K]> {
    let n = ts[0].numel();
    for t in ts {
        if t.device() != tch::Device::Cpu || t.kind() != Kind::Float || !t.is_contiguous() || t.numel() != n {
            return None;
        }
    }
    let ptrs = ts.map(|t| t.data_ptr() as *mut f32);
    for i in 0..K {
        if ptrs[i].is_null() && n > 0 {
            return None;
        }
        for j in i + 1..K {
            let (a, b) = (ptrs[i] as usize, ptrs[j] as usize);
            let bytes = n * std::mem::size_of::<f32>();
            if a < b + bytes && b < a + bytes {
                return None;
            }
        }
    }
    if n == 0 {
        return None;
    }
    // SAFETY: checked above: non-null, contiguous f32 of length n, pairwise disjoint.
    Some(ptrs.map(|p| unsafe { std::slice::from_raw_parts_mut(p, n) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 build of the Adam pass (taken where the CPU has AVX2) gives
    /// the same bits as the baseline build: a run's weights do not depend
    /// on the machine it ran on.
    #[test]
    fn adam_pass_is_the_same_bits_on_every_code_path() {
        let n = 1003; // not a multiple of any vector width
        let vals = |s: f32| (0..n).map(|i| (i as f32 * 0.7 + s).sin() * 3.0).collect::<Vec<f32>>();
        for (l2, decoupled) in [(false, false), (true, false), (false, true)] {
            let k = AdamConsts {
                coef: 0.8,
                wd: 0.01,
                l2,
                decoupled,
                shrink: 0.999,
                w1: 0.1,
                w2: 0.001,
                b2: 0.999,
                bc2_sqrt: 0.3,
                eps: 1e-8,
                step_size: 1e-3,
            };
            let g = vals(1.0);
            let (mut p1, mut m1, mut v1) = (vals(2.0), vals(3.0), vals(4.0).iter().map(|x| x.abs()).collect());
            let (mut p2, mut m2, mut v2) = (p1.clone(), m1.clone(), Vec::clone(&v1));
            adam_body(&mut p1, &g, &mut m1, &mut v1, &k);
            adam_pass(&mut p2, &g, &mut m2, &mut v2, &k);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&p1), bits(&p2));
            assert_eq!(bits(&m1), bits(&m2));
            assert_eq!(bits(&v1), bits(&v2));
            assert_ne!(bits(&p1), bits(&vals(2.0)), "the pass changed nothing");
        }
    }
}
