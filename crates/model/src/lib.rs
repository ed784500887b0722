//! headlab-model: the transformer that learns particle physics.
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
//! # Modules
//!
//! - [`config`]: [`ModelConfig`] and [`param_shapes`];
//! - [`norm`]: [`State`] and [`Normalization`] (features in, state changes out);
//! - [`model`]: [`Model`], built from typed parts ([`Embed`], [`LayerNorm`],
//!   [`Attention`], [`Mlp`], [`Block`], [`Unembed`]); `model.rs` reads top to
//!   bottom like nanoGPT's `model.py`;
//! - [`hooks`]: [`Hooks`] (interventions) and [`ActivationCache`] (recording);
//! - [`checkpoint`]: named arrays in and out, [`Model::load`];
//! - [`device`]: [`DeviceSpec`] (`auto`, `cpu`, `cuda`, `cuda:N`).
//!
//! # Names: which follow TransformerLens, which are headlab's own
//!
//! Following TransformerLens (names, shapes and meaning):
//! `blocks.{l}.attn.W_Q`, `W_K`, `W_V` [n_heads, d_model, d_head], `b_Q`,
//! `b_K`, `b_V` [n_heads, d_head], `W_O` [n_heads, d_head, d_model], `b_O`
//! [d_model]; `blocks.{l}.mlp.W_in` [d_model, d_mlp], `b_in`, `W_out`
//! [d_mlp, d_model], `b_out`; and every hook name (see [`hooks`]:
//! `hook_embed`, `blocks.{l}.hook_resid_pre`, `blocks.{l}.attn.hook_pattern`,
//! ...), whose hooks replace the activation with their return value.
//!
//! headlab's own:
//! - `embed.W_in` [F, d_model] and `embed.b_in`: the inputs are continuous
//!   particle features, not tokens of a vocabulary, so there is no `W_E`
//!   (and no `W_pos`: no positional embedding at all);
//! - `unembed.W_out` [d_model, 2D] and `unembed.b_out`: the output is a
//!   regression of (Δposition, Δvelocity), not logits over a vocabulary, so
//!   there is no `W_U`;
//! - LayerNorm parameters are `ln1.w`/`ln1.b` (TransformerLens: `ln1.w`,
//!   `ln1.b` too, but it usually folds them away; headlab never folds);
//! - `hook_embed` is the output of the input projection (TransformerLens:
//!   the token embedding lookup).
//!
//! All parameters live in one flat buffer ([`Model::flat_params`]); each named
//! parameter is a leaf view into it, so an optimizer (or an SGLD sampler) can
//! update the whole model with a handful of tensor operations, while autograd
//! still sees ordinary named leaves. The typed parts hold those same views,
//! bound once at construction.

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod hooks;
pub mod model;
pub mod norm;

pub use checkpoint::tensor_to_array;
pub use config::{
    model_config_from_run_toml, param_shapes, Activation, AttentionConfig, AttentionKind, AttentionScale, ModelConfig,
    UnknownScale,
};
pub use device::{cuda_available, device_name, load_cuda_backend, parse_device, DeviceError, DeviceSpec, TorchThreads};
pub use hooks::{hook_names, ActivationCache, HookContext, HookFn, Hooks};
pub use model::{Attention, Block, Embed, ForwardOptions, LayerNorm, Mlp, Model, Unembed};
pub use norm::{Normalization, State};

#[derive(Debug, thiserror::Error)]
/// Errors of the model: a bad config, checkpoint, input, hook or device, or libtorch.
pub enum ModelError {
    /// Shown as "model config: '{key}' = {value} is invalid: {hint}".
    #[error("model config: `{key}` = {value} is invalid: {hint}")]
    Config {
        /// The offending key or option.
        key: String,
        /// Its value.
        value: String,
        /// What is allowed, or what to do.
        hint: String,
    },
    /// Shown as "{path}: {msg}".
    #[error("{path}: {msg}")]
    Checkpoint {
        /// The file or folder concerned.
        path: String,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// The model input has the wrong rank or width.
    #[error("model input: {0}")]
    Input(String),
    /// A hook that does not exist in this model, or a hook whose return value
    /// cannot replace the activation.
    #[error("hook `{name}`: {msg}")]
    Hook {
        /// The name concerned.
        name: String,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// Passed through from `DeviceError`.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Passed through from `headlab_store::StoreError`.
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    /// Shown as "libtorch: {0}".
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Results of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
