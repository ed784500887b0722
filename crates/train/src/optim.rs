//! SGD (momentum), Adam and AdamW on the model's flat parameter buffer: a
//! handful of tensor operations per step for the whole model, and a state
//! (two flat tensors and a step count) that is trivial to save, so resuming
//! is bit-identical. The arithmetic follows torch.optim's single-tensor code.
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
