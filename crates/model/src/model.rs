//! The transformer, read top to bottom: the typed parts ([`Embed`],
//! [`LayerNorm`], [`Attention`], [`Mlp`], [`Block`], [`Unembed`]), each with a
//! short `forward`, then [`Model`], which chains them.
//!
//! Every part holds its weights as views into the model's one flat parameter
//! buffer, bound once when the model is built (see `checkpoint.rs`); the
//! forward pass looks nothing up by name. Activations of the residual stream
//! are kept as [B*N, d] matrices; hooks see them as [B, N, d].

use rand::SeedableRng;
use rand_distr::Distribution;
use tch::{Device, Kind, Tensor};

use headlab_store::checkpoint::NamedArray;

use crate::config::{param_shapes, Activation, AttentionKind, AttentionScale, ModelConfig};
use crate::hooks::{hook_names, ActivationCache, Hooks, Point, Site};
use crate::norm::{Normalization, State};
use crate::{ModelError, Result};

// ---------------------------------------------------------------------------
// One forward pass in progress
// ---------------------------------------------------------------------------

/// How a forward pass runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardOptions {
    /// Training mode: dropout acts (when `model.dropout > 0`).
    pub train: bool,
    /// Fused kernels where no hook needs the activations they skip:
    /// softmax attention as one `scaled_dot_product_attention` call (no
    /// scores or pattern tensors), unless a hook wants `hook_attn_scores` or
    /// `hook_pattern` of that layer, or the scale is `inv-key-norm-sum`. The
    /// same function as the unfused pass, equal up to f32 rounding (not bit
    /// for bit); training uses it, evaluation and probes do not.
    pub fused: bool,
}

/// The batch geometry, the mode and the hooks of one forward pass.
struct Pass<'p, 'h> {
    b: i64,
    n: i64,
    dropout: f64,
    fused: bool,
    hooks: Option<&'p mut Hooks<'h>>,
}

impl<'p, 'h> Pass<'p, 'h> {
    /// A pass over `b` frames of `n` particles: dropout at `config.dropout` in training mode only.
    fn new(b: i64, n: i64, config: &ModelConfig, opts: ForwardOptions, hooks: Option<&'p mut Hooks<'h>>) -> Self {
        let dropout = if opts.train { config.dropout } else { 0.0 };
        Pass { b, n, dropout, fused: opts.fused, hooks }
    }
}

impl Pass<'_, '_> {
    fn wants(&self, p: Point) -> bool {
        self.hooks.as_ref().is_some_and(|h| h.wants(p))
    }

    /// A hook on a tensor the hooks see as it is ([B,H,N,N] scores and patterns).
    fn hook(&mut self, layer: Option<usize>, site: Site, t: Tensor) -> Result<Tensor> {
        match &mut self.hooks {
            Some(h) if h.wants(Point::new(layer, site)) => h.apply(Point::new(layer, site), t),
            _ => Ok(t),
        }
    }

    /// A hook on a per-token tensor [B*N, w]; the hooks see [B, N, w].
    fn hook_tokens(&mut self, layer: Option<usize>, site: Site, t: Tensor) -> Result<Tensor> {
        if !self.wants(Point::new(layer, site)) {
            return Ok(t);
        }
        let w = t.size()[1];
        let t = self.hook(layer, site, t.f_reshape([self.b, self.n, w])?)?;
        Ok(t.f_reshape([self.b * self.n, w])?)
    }

    /// A hook on a per-head tensor [B, H, N, dh]; the hooks see [B, N, H, dh].
    fn hook_heads(&mut self, layer: Option<usize>, site: Site, t: Tensor) -> Result<Tensor> {
        if !self.wants(Point::new(layer, site)) {
            return Ok(t);
        }
        Ok(self.hook(layer, site, t.transpose(1, 2))?.transpose(1, 2))
    }

    /// Dropout on a sublayer's output (training only).
    fn dropout(&self, t: Tensor) -> Result<Tensor> {
        Ok(if self.dropout > 0.0 { t.f_dropout(self.dropout, true)? } else { t })
    }
}

// ---------------------------------------------------------------------------
// The parts
// ---------------------------------------------------------------------------

/// Input projection of the particle features: `embed.W_in` [F, d], `embed.b_in` [d].
pub struct Embed {
    /// `embed.W_in` [F, d].
    pub w_in: Tensor,
    /// `embed.b_in` [d].
    pub b_in: Tensor,
}

impl Embed {
    /// x [B*N, F] -> [B*N, d].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.b_in.f_addmm(x, &self.w_in)?)
    }
}

/// LayerNorm over d_model with gain `w` and bias `b`; the identity (no
/// parameters) when `layer_norm = false`. Its output is the hook point
/// `*.hook_normalized` either way.
pub struct LayerNorm {
    /// (`w`, `b`), or `None` for the identity.
    pub weights: Option<(Tensor, Tensor)>,
    eps: f64,
    layer: Option<usize>,
    site: Site,
}

impl LayerNorm {
    fn forward(&self, t: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let out = match &self.weights {
            Some((w, b)) => t.f_layer_norm([t.size()[1]], Some(w), Some(b), self.eps, false)?,
            None => t.shallow_clone(),
        };
        pass.hook_tokens(self.layer, self.site, out)
    }
}

/// Multi-head attention over all particles (no mask, no positions):
/// `W_Q`, `W_K`, `W_V` [H, d, dh], `b_Q`, `b_K`, `b_V` [H, dh], `W_O` [H, dh, d], `b_O` [d].
pub struct Attention {
    /// `W_Q` [H, d, dh].
    pub w_q: Tensor,
    /// `W_K` [H, d, dh].
    pub w_k: Tensor,
    /// `W_V` [H, d, dh].
    pub w_v: Tensor,
    /// `b_Q` [H, dh].
    pub b_q: Tensor,
    /// `b_K` [H, dh].
    pub b_k: Tensor,
    /// `b_V` [H, dh].
    pub b_v: Tensor,
    /// `W_O` [H, dh, d].
    pub w_o: Tensor,
    /// `b_O` [d].
    pub b_o: Tensor,
    kind: AttentionKind,
    scale: AttentionScale,
    layer: usize,
}

impl Attention {
    /// The factor applied to q·k with `n` keys (see [`AttentionScale`]).
    fn factor(&self, n: i64, dh: i64) -> f64 {
        match self.scale {
            AttentionScale::InvSqrtDHead => 1.0 / (dh as f64).sqrt(),
            AttentionScale::InvDHead => 1.0 / dh as f64,
            AttentionScale::None | AttentionScale::InvKeyNormSum => 1.0,
            AttentionScale::InvN => 1.0 / n as f64,
            AttentionScale::InvSqrtN => 1.0 / (n as f64).sqrt(),
            AttentionScale::InvLogN => {
                if n >= 2 {
                    1.0 / (n as f64).ln()
                } else {
                    1.0
                }
            }
        }
    }

    /// a [B*N, d] (the normalized residual stream) -> attention output [B*N, d].
    fn forward(&self, a: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let z = self.z(a, pass)?;
        self.project(&z, pass)
    }

    /// a [B*N, d] -> z [B,N,H,dh] of every head (after `hook_z`).
    fn z(&self, a: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let l = Some(self.layer);
        let (b, n) = (pass.b, pass.n);
        let shape = self.w_q.size(); // [H, d, dh]
        let (h, d, dh) = (shape[0], shape[1], shape[2]);
        // One matmul for Q, K and V of all heads.
        let w_qkv = Tensor::f_cat(&[&self.w_q, &self.w_k, &self.w_v], 0)? // [3H, d, dh]
            .permute([1, 0, 2])
            .f_reshape([d, 3 * h * dh])?;
        let b_qkv = Tensor::f_cat(&[&self.b_q, &self.b_k, &self.b_v], 0)?.f_view([3 * h * dh])?;
        let [q, k, v] = Self::split_qkv(b_qkv.f_addmm(a, &w_qkv)?, b, n, h, dh)?;
        let q = pass.hook_heads(l, Site::Q, q)?;
        let k = pass.hook_heads(l, Site::K, k)?;
        let v = pass.hook_heads(l, Site::V, v)?;
        let z = self.mix(&q, &k, &v, pass)?;
        pass.hook(l, Site::Z, z)
    }

    /// The projection [B*N, 3·h·dh] of q, k and v of `h` heads, as three [B,h,N,dh] tensors.
    fn split_qkv(qkv: Tensor, b: i64, n: i64, h: i64, dh: i64) -> Result<[Tensor; 3]> {
        // q, k, v by unbind, not three selects: its backward stacks the three
        // gradients in one copy, where each select's would zero a whole
        // [3,B,H,N,dh] buffer and the three would then be added.
        qkv.f_view([b, n, 3, h, dh])?
            .permute([2, 0, 3, 1, 4]) // [3,B,H,N,dh]
            .f_unbind(0)?
            .try_into()
            .map_err(|_| ModelError::Input("the QKV projection did not split into three".into()))
    }

    /// softmax(q·kᵀ·factor)·v (or the linear form) of q, k, v [B,H,N,dh]: z [B,N,H,dh].
    fn mix(&self, q: &Tensor, k: &Tensor, v: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let l = Some(self.layer);
        let (n, dh) = (pass.n, q.size()[3]);
        // Fused path: softmax(q·k·factor)·v in one libtorch kernel
        // (scaled_dot_product_attention: the same function, fewer passes
        // over memory, no [B,H,N,N] tensors kept for the backward pass).
        // Taken unless a hook wants the scores or the pattern (they do not
        // exist on this path) or the scale depends on the keys.
        if pass.fused
            && self.kind == AttentionKind::Softmax
            && self.scale != AttentionScale::InvKeyNormSum
            && !pass.wants(Point::new(l, Site::AttnScores))
            && !pass.wants(Point::new(l, Site::Pattern))
        {
            let z =
                Tensor::f_scaled_dot_product_attention::<Tensor>(q, k, v, None, 0.0, false, self.factor(n, dh), false)?;
            return Ok(z.permute([0, 2, 1, 3])); // [B,N,H,dh]
        }
        let mut scores = q.f_matmul(&k.transpose(-1, -2))? * self.factor(n, dh); // [B,H,Nq,Nk]
        if self.scale == AttentionScale::InvKeyNormSum {
            let dims = [-1i64];
            let knorm = k.square().f_sum_dim_intlist(dims.as_slice(), false, Kind::Float)?.clamp_min(1e-30).sqrt(); // [B,H,Nk]
            #[allow(clippy::assign_op_pattern)] // out of place on purpose (autograd)
            {
                scores = scores
                    / knorm.f_sum_dim_intlist(dims.as_slice(), true, Kind::Float)?.unsqueeze(-1).clamp_min(1e-12);
            }
        }
        let scores = pass.hook(l, Site::AttnScores, scores)?;
        let pattern = match self.kind {
            AttentionKind::Softmax => scores.f_softmax(-1, Kind::Float)?,
            AttentionKind::Linear => &scores / n as f64,
        };
        let pattern = pass.hook(l, Site::Pattern, pattern)?;
        Ok(pattern.f_matmul(v)?.permute([0, 2, 1, 3])) // [B,N,H,dh]
    }

    /// z [B,N,H,dh] -> the attention output z·W_O + b_O [B*N, d].
    fn project(&self, z: &Tensor, pass: &Pass) -> Result<Tensor> {
        let shape = self.w_o.size(); // [H, dh, d]
        let (h, dh, d) = (shape[0], shape[1], shape[2]);
        let z = z.f_reshape([pass.b * pass.n, h * dh])?;
        Ok(self.b_o.f_addmm(&z, &self.w_o.f_view([h * dh, d])?)?)
    }

    /// The attention output when only head `head` is computed from the
    /// weights and every other head's z is taken from `z` [B,N,H,dh]
    /// (head `head`'s own entry there is ignored): the other heads' part
    /// (and b_O) is a constant, outside the autograd graph. With `z` the
    /// other heads' z at the current weights, the same function as
    /// [`Attention::forward`] (equal up to f32 rounding).
    fn forward_one(&self, a: &Tensor, head: usize, z: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let (b, n) = (pass.b, pass.n);
        let hi = head as i64;
        let dh = self.w_q.size()[2];
        let w = Tensor::f_cat(&[self.w_q.select(0, hi), self.w_k.select(0, hi), self.w_v.select(0, hi)], 1)?; // [d, 3dh]
        let bias = Tensor::f_cat(&[self.b_q.select(0, hi), self.b_k.select(0, hi), self.b_v.select(0, hi)], 0)?;
        let [q, k, v] = Self::split_qkv(bias.f_addmm(a, &w)?, b, n, 1, dh)?;
        let z_head = self.mix(&q, &k, &v, pass)?.f_reshape([b * n, dh])?;
        let others = tch::no_grad(|| -> Result<Tensor> {
            let zeroed = z.f_index_fill(2, &Tensor::from(hi), 0.0)?;
            self.project(&zeroed, pass)
        })?;
        Ok(others + z_head.f_mm(&self.w_o.select(0, hi))?)
    }
}

/// The MLP sublayer: `mlp.W_in` [d, d_mlp], `b_in`, `W_out` [d_mlp, d], `b_out`.
pub struct Mlp {
    /// `mlp.W_in` [d, d_mlp].
    pub w_in: Tensor,
    /// `mlp.b_in` [d_mlp].
    pub b_in: Tensor,
    /// `mlp.W_out` [d_mlp, d].
    pub w_out: Tensor,
    /// `mlp.b_out` [d].
    pub b_out: Tensor,
    activation: Activation,
    layer: usize,
}

impl Mlp {
    /// m [B*N, d] -> [B*N, d].
    fn forward(&self, m: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let l = Some(self.layer);
        let pre = pass.hook_tokens(l, Site::MlpPre, self.b_in.f_addmm(m, &self.w_in)?)?;
        let post = match self.activation {
            Activation::Gelu => pre.f_gelu("none")?,
            Activation::GeluTanh => pre.f_gelu("tanh")?,
            Activation::Relu => pre.f_relu()?,
            Activation::Silu => pre.f_silu()?,
        };
        let post = pass.hook_tokens(l, Site::MlpPost, post)?;
        Ok(self.b_out.f_addmm(&post, &self.w_out)?)
    }
}

/// A pre-LayerNorm block: `h += Attn(LN1(h))`, then (with `mlp`) `h += MLP(LN2(h))`.
pub struct Block {
    /// The LayerNorm before attention.
    pub ln1: LayerNorm,
    /// The attention sublayer.
    pub attn: Attention,
    /// `None` when `mlp = false` (attention-only blocks).
    pub mlp: Option<(LayerNorm, Mlp)>,
    layer: usize,
}

impl Block {
    /// resid [B*N, d] -> resid [B*N, d].
    fn forward(&self, resid: Tensor, pass: &mut Pass) -> Result<Tensor> {
        self.forward_attending(resid, pass, |attn, a, pass| attn.forward(a, pass))
    }

    /// The block with its attention sublayer computed by `attend` (LN1's output -> attention output).
    fn forward_attending(
        &self,
        resid: Tensor,
        pass: &mut Pass,
        attend: impl FnOnce(&Attention, &Tensor, &mut Pass) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let l = Some(self.layer);
        let resid = pass.hook_tokens(l, Site::ResidPre, resid)?;
        let a = self.ln1.forward(&resid, pass)?;
        let attn_out = attend(&self.attn, &a, pass)?;
        let attn_out = pass.hook_tokens(l, Site::AttnOut, attn_out)?;
        let mut resid = resid + pass.dropout(attn_out)?;
        if let Some((ln2, mlp)) = &self.mlp {
            resid = pass.hook_tokens(l, Site::ResidMid, resid)?;
            let m = ln2.forward(&resid, pass)?;
            let mlp_out = mlp.forward(&m, pass)?;
            let mlp_out = pass.hook_tokens(l, Site::MlpOut, mlp_out)?;
            #[allow(clippy::assign_op_pattern)] // out of place on purpose (autograd)
            {
                resid = resid + pass.dropout(mlp_out)?;
            }
        }
        pass.hook_tokens(l, Site::ResidPost, resid)
    }
}

/// Output projection to normalized (Δposition, Δvelocity):
/// `unembed.W_out` [d, 2D], `unembed.b_out` [2D].
pub struct Unembed {
    /// `unembed.W_out` [d, 2D].
    pub w_out: Tensor,
    /// `unembed.b_out` [2D].
    pub b_out: Tensor,
}

impl Unembed {
    /// [B*N, d] -> [B*N, 2D].
    fn forward(&self, t: &Tensor) -> Result<Tensor> {
        Ok(self.b_out.f_addmm(t, &self.w_out)?)
    }
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

pub(crate) struct Param {
    pub(crate) name: String,
    pub(crate) t: Tensor,
}

/// The particle transformer: typed parts bound to one flat parameter buffer (see the crate doc).
pub struct Model {
    /// The architecture.
    pub config: ModelConfig,
    /// The dataset statistics that make its inputs and outputs.
    pub norm: Normalization,
    flat: Tensor,
    params: Vec<Param>,
    embed: Embed,
    blocks: Vec<Block>,
    ln_final: LayerNorm,
    unembed: Unembed,
}

impl Model {
    /// The forward pass. `x`: normalized features [B,N,F]; returns the
    /// normalized prediction [B,N,2D]. Hooks (if any) read or replace
    /// activations on the way.
    fn run(&self, x: &Tensor, opts: ForwardOptions, mut hooks: Option<&mut Hooks>) -> Result<Tensor> {
        let (b, n, f) = self.check_input(x)?;
        if let Some(h) = hooks.as_deref_mut() {
            h.prepare(&self.config)?;
        }
        let hooks = hooks.filter(|h| !h.is_empty());
        let mut pass = Pass::new(b, n, &self.config, opts, hooks);

        let resid = pass.hook_tokens(None, Site::Embed, self.embed.forward(&x.f_reshape([b * n, f])?)?)?;
        self.run_blocks(resid, 0, &mut pass)
    }

    /// Blocks `first..`, the final LayerNorm and the unembedding, on the
    /// residual stream [B*N, d] entering block `first`; returns [B,N,2D].
    fn run_blocks(&self, mut resid: Tensor, first: usize, pass: &mut Pass) -> Result<Tensor> {
        for block in &self.blocks[first..] {
            resid = block.forward(resid, pass)?;
        }
        let fin = self.ln_final.forward(&resid, pass)?;
        Ok(self.unembed.forward(&fin)?.f_view([pass.b, pass.n, -1])?)
    }

    /// `layer` checked against the model's depth (`n_layers` is allowed: after the last block).
    fn check_layer(&self, layer: usize) -> Result<()> {
        if layer > self.blocks.len() {
            return Err(ModelError::Input(format!(
                "layer {layer} does not exist: the model has {} blocks (0..={} are valid here)",
                self.blocks.len(),
                self.blocks.len()
            )));
        }
        Ok(())
    }

    /// The residual stream entering block `layer` ([B,N,d];
    /// `blocks.{layer}.hook_resid_pre`, or the stream after the last block
    /// for `layer = n_layers`): the first part of the forward pass, stopped
    /// there (TransformerLens's `stop_at_layer`). No hooks.
    pub fn resid_pre(&self, x: &Tensor, layer: usize, opts: ForwardOptions) -> Result<Tensor> {
        self.check_layer(layer)?;
        let (b, n, f) = self.check_input(x)?;
        let mut pass = Pass::new(b, n, &self.config, opts, None);
        let mut resid = self.embed.forward(&x.f_reshape([b * n, f])?)?;
        for block in &self.blocks[..layer] {
            resid = block.forward(resid, &mut pass)?;
        }
        Ok(resid.f_view([b, n, -1])?)
    }

    /// The rest of the forward pass from the residual stream `resid`
    /// [B,N,d] entering block `layer` (TransformerLens's `start_at_layer`):
    /// `forward_from(l, &resid_pre(x, l, o), o)` is `forward_with(x, o)`.
    /// Lets a caller that moves only later layers' weights compute the
    /// earlier layers once. No hooks.
    pub fn forward_from(&self, layer: usize, resid: &Tensor, opts: ForwardOptions) -> Result<Tensor> {
        self.check_layer(layer)?;
        let (b, n) = self.check_stream(resid)?;
        let mut pass = Pass::new(b, n, &self.config, opts, None);
        self.run_blocks(resid.f_reshape([b * n, -1])?, layer, &mut pass)
    }

    /// (B, N) of a residual stream [B,N,d], checked.
    fn check_stream(&self, resid: &Tensor) -> Result<(i64, i64)> {
        let d = self.config.d_model as i64;
        let (b, n, w) = resid.size3().map_err(|_| {
            ModelError::Input(format!(
                "the residual stream must be [batch, particles, d_model], got {:?}",
                resid.size()
            ))
        })?;
        if w != d || resid.kind() != Kind::Float || resid.device() != self.device() {
            return Err(ModelError::Input(format!(
                "the residual stream is {:?} {:?} on {:?}; the model takes [batch, particles, {d}] Float on {:?}",
                resid.size(),
                resid.kind(),
                resid.device(),
                self.device()
            )));
        }
        Ok((b, n))
    }

    /// z [B,N,H,dh] of block `layer` (its `hook_z`) given the residual
    /// stream `resid` [B,N,d] entering it. No hooks. With
    /// [`Model::forward_from_head`], a caller that moves one head's weights
    /// computes the other heads once.
    pub fn attn_z(&self, layer: usize, resid: &Tensor, opts: ForwardOptions) -> Result<Tensor> {
        let block = self.block(layer)?;
        let (b, n) = self.check_stream(resid)?;
        let mut pass = Pass::new(b, n, &self.config, opts, None);
        let a = block.ln1.forward(&resid.f_reshape([b * n, -1])?, &mut pass)?;
        block.attn.z(&a, &mut pass)
    }

    /// [`Model::forward_from`] where block `layer`'s attention computes only
    /// head `head` from the weights and takes every other head's z from `z`
    /// [B,N,H,dh] (as [`Model::attn_z`] gives it; head `head`'s entry is
    /// ignored). The other heads' part is a constant outside the autograd
    /// graph, so gradients reach only head `head`'s slices of W_Q, W_K,
    /// W_V, b_Q, b_K, b_V, W_O (and later blocks). With `z =
    /// attn_z(layer, resid)` at the current weights it is the same function
    /// as `forward_from(layer, resid)`, equal up to f32 rounding. No hooks.
    pub fn forward_from_head(
        &self,
        layer: usize,
        head: usize,
        resid: &Tensor,
        z: &Tensor,
        opts: ForwardOptions,
    ) -> Result<Tensor> {
        let block = self.block(layer)?;
        let (b, n) = self.check_stream(resid)?;
        let (h, dh) = (self.config.n_heads as i64, self.config.d_head() as i64);
        if head as i64 >= h {
            return Err(ModelError::Input(format!("head {head} does not exist: the model has {h} heads per layer")));
        }
        if z.size() != [b, n, h, dh] || z.kind() != Kind::Float || z.device() != self.device() {
            return Err(ModelError::Input(format!(
                "z is {:?} {:?} on {:?}; block {layer} takes [{b}, {n}, {h}, {dh}] Float on {:?}",
                z.size(),
                z.kind(),
                z.device(),
                self.device()
            )));
        }
        let mut pass = Pass::new(b, n, &self.config, opts, None);
        let resid = block.forward_attending(resid.f_reshape([b * n, -1])?, &mut pass, |attn, a, pass| {
            attn.forward_one(a, head, z, pass)
        })?;
        self.run_blocks(resid, layer + 1, &mut pass)
    }

    /// Block `layer`, checked against the model's depth.
    fn block(&self, layer: usize) -> Result<&Block> {
        self.blocks.get(layer).ok_or_else(|| {
            ModelError::Input(format!("layer {layer} does not exist: the model has {} blocks", self.blocks.len()))
        })
    }

    /// (B, N, F) of a model input, checked.
    fn check_input(&self, x: &Tensor) -> Result<(i64, i64, i64)> {
        let (b, n, f) = x.size3().map_err(|_| {
            ModelError::Input(format!("features must be [batch, particles, features], got shape {:?}", x.size()))
        })?;
        let want = self.embed.w_in.size()[0];
        if f != want {
            return Err(ModelError::Input(format!(
                "{f} features per particle, the model takes {want} (shape {:?})",
                x.size()
            )));
        }
        if x.kind() != Kind::Float || x.device() != self.device() {
            return Err(ModelError::Input(format!(
                "features are {:?} on {:?}, the model is Float on {:?}",
                x.kind(),
                x.device(),
                self.device()
            )));
        }
        Ok((b, n, f))
    }

    /// Plain forward (no hooks, no dropout).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, ForwardOptions::default(), None)
    }

    /// Forward with options (training mode: dropout; fused kernels).
    pub fn forward_with(&self, x: &Tensor, opts: ForwardOptions) -> Result<Tensor> {
        self.run(x, opts, None)
    }

    /// Forward with hooks that read or replace activations (evaluation mode).
    /// An unknown hook name, or a replacement of another shape, kind or
    /// device, is an error.
    pub fn run_with_hooks(&self, x: &Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        self.run(x, ForwardOptions::default(), Some(hooks))
    }

    /// Forward with hooks and options.
    pub fn run_with_hooks_opts(&self, x: &Tensor, hooks: &mut Hooks, opts: ForwardOptions) -> Result<Tensor> {
        self.run(x, opts, Some(hooks))
    }

    /// Forward (evaluation mode) recording every activation whose hook name
    /// passes `filter` (e.g. `|_| true`, or `|n| n.ends_with("hook_pattern")`).
    pub fn run_with_cache(&self, x: &Tensor, filter: impl Fn(&str) -> bool) -> Result<(Tensor, ActivationCache)> {
        let mut hooks = Hooks::new();
        hooks.record(filter);
        let y = self.run(x, ForwardOptions::default(), Some(&mut hooks))?;
        Ok((y, hooks.take_cache()))
    }

    /// Every hook name of this model, in forward order.
    pub fn hook_names(&self) -> Vec<String> {
        hook_names(&self.config)
    }

    /// Training loss: MSE between prediction and normalized targets.
    /// Differentiable w.r.t. the parameters. `train`: dropout acts, and on
    /// the CPU the fused kernels are used ([`ForwardOptions::fused`]). Not
    /// on CUDA: there the fused attention's backward (memory-efficient
    /// attention) accumulates with atomics, so two runs need not agree bit
    /// for bit, and resumed training must.
    pub fn loss(&self, x: &Tensor, y: &Tensor, train: bool) -> Result<Tensor> {
        self.loss_with(x, y, ForwardOptions { train, fused: train && self.device() == Device::Cpu })
    }

    /// [`Model::loss`] with every option explicit (e.g. fused kernels without dropout).
    pub fn loss_with(&self, x: &Tensor, y: &Tensor, opts: ForwardOptions) -> Result<Tensor> {
        let pred = self.forward_with(x, opts)?;
        Ok(pred.f_mse_loss(y, tch::Reduction::Mean)?)
    }

    /// Predict the next state (physical units) from a state: one simulator step.
    pub fn step_state(&self, s: &State) -> Result<State> {
        let d = self.norm.dimension as i64;
        let y = tch::no_grad(|| self.forward(&self.norm.features(s)))?;
        let y = self.norm.denormalize(&y);
        Ok(State {
            pos: &s.pos + y.narrow(-1, 0, d),
            vel: &s.vel + y.narrow(-1, d, d),
            radii: s.radii.shallow_clone(),
            masses: s.masses.shallow_clone(),
        })
    }

    /// The parts, for reading weights ([`Embed`], [`Block`], ...).
    pub fn embed(&self) -> &Embed {
        &self.embed
    }
    /// The blocks, first to last.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }
    /// The final LayerNorm (the identity without `layer_norm`).
    pub fn ln_final(&self) -> &LayerNorm {
        &self.ln_final
    }
    /// The output projection.
    pub fn unembed(&self) -> &Unembed {
        &self.unembed
    }

    // -----------------------------------------------------------------------
    // Construction and parameters
    // -----------------------------------------------------------------------

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
                let dist = rand_distr::Normal::new(0.0, std).map_err(|e| ModelError::Config {
                    key: "model.init_scale".into(),
                    value: config.init_scale.to_string(),
                    hint: e.to_string(),
                })?;
                (0..n).map(|_| dist.sample(&mut rng) as f32).collect()
            };
            arrays.push(NamedArray::new(name.clone(), shape.clone(), data));
        }
        Model::from_arrays(config, norm, &arrays, device, "<new model>")
    }

    /// Bind the parts to the named leaf views of `flat` (once, here).
    pub(crate) fn bind(config: ModelConfig, norm: Normalization, flat: Tensor, params: Vec<Param>) -> Result<Model> {
        let get =
            |name: &str| -> Result<Tensor> {
                params.iter().find(|p| p.name == name).map(|p| p.t.shallow_clone()).ok_or_else(|| {
                    ModelError::Checkpoint { path: "<model>".into(), msg: format!("no parameter {name}") }
                })
            };
        let ln = |prefix: &str, layer: Option<usize>, site: Site| -> Result<LayerNorm> {
            let weights = if config.layer_norm {
                Some((get(&format!("{prefix}.w"))?, get(&format!("{prefix}.b"))?))
            } else {
                None
            };
            Ok(LayerNorm { weights, eps: config.ln_eps, layer, site })
        };
        let mut blocks = Vec::with_capacity(config.n_layers);
        for l in 0..config.n_layers {
            let p = |s: &str| get(&format!("blocks.{l}.{s}"));
            let attn = Attention {
                w_q: p("attn.W_Q")?,
                w_k: p("attn.W_K")?,
                w_v: p("attn.W_V")?,
                b_q: p("attn.b_Q")?,
                b_k: p("attn.b_K")?,
                b_v: p("attn.b_V")?,
                w_o: p("attn.W_O")?,
                b_o: p("attn.b_O")?,
                kind: config.attention.kind,
                scale: config.attention.scale,
                layer: l,
            };
            let mlp = if config.mlp {
                let mlp = Mlp {
                    w_in: p("mlp.W_in")?,
                    b_in: p("mlp.b_in")?,
                    w_out: p("mlp.W_out")?,
                    b_out: p("mlp.b_out")?,
                    activation: config.activation,
                    layer: l,
                };
                Some((ln(&format!("blocks.{l}.ln2"), Some(l), Site::Ln2)?, mlp))
            } else {
                None
            };
            blocks.push(Block { ln1: ln(&format!("blocks.{l}.ln1"), Some(l), Site::Ln1)?, attn, mlp, layer: l });
        }
        let embed = Embed { w_in: get("embed.W_in")?, b_in: get("embed.b_in")? };
        let ln_final = ln("ln_final", None, Site::LnFinal)?;
        let unembed = Unembed { w_out: get("unembed.W_out")?, b_out: get("unembed.b_out")? };
        Ok(Model { config, norm, flat, params, embed, blocks, ln_final, unembed })
    }

    /// The device its parameters live on.
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

    /// Every named parameter (leaf views into the flat buffer), in flat-buffer order.
    pub fn parameters(&self) -> Vec<&Tensor> {
        self.params.iter().map(|p| &p.t).collect()
    }

    /// The parameter called `name` (TransformerLens-style, e.g. `blocks.0.attn.W_Q`), if the model has it.
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

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.flat.numel()
    }

    /// Gradients of `loss` w.r.t. all parameters, concatenated like
    /// `flat_params`; zero for a parameter `loss` does not depend on (e.g.
    /// earlier blocks under [`Model::forward_from`]).
    pub fn flat_grad(&self, loss: &Tensor) -> Tensor {
        let params = self.parameters();
        let grads = Tensor::run_backward(&[loss], &params, false, false);
        let flat: Vec<Tensor> = grads
            .iter()
            .zip(&params)
            .map(|(g, p)| if g.defined() { g.reshape([-1]) } else { p.zeros_like().detach().reshape([-1]) })
            .collect();
        Tensor::cat(&flat, 0)
    }
}
