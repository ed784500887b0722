//! The architecture as configured: [`ModelConfig`] (the `[model]` table of a
//! run config), the attention and activation options, and [`param_shapes`],
//! the names and shapes of every parameter in flat-buffer order.

use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

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
    /// Every option, in the order tables list them.
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

impl std::fmt::Display for AttentionScale {
    /// The config name, as [`AttentionScale::name`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AttentionScale {
    type Err = UnknownScale;
    fn from_str(s: &str) -> Result<Self, UnknownScale> {
        AttentionScale::ALL.iter().copied().find(|o| o.name() == s.trim()).ok_or_else(|| UnknownScale(s.into()))
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
/// The MLP's nonlinearity.
pub enum Activation {
    #[default]
    /// GELU (exact, erf form).
    Gelu,
    /// GELU, tanh approximation.
    GeluTanh,
    /// max(0, x).
    Relu,
    /// x · sigmoid(x).
    Silu,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
/// How attention weights are formed (`[model.attention]`).
pub struct AttentionConfig {
    /// Softmax or linear.
    pub kind: AttentionKind,
    /// The factor applied to q·k.
    pub scale: AttentionScale,
}

/// The architecture. Every field has a default; `validate` checks ranges.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Transformer blocks.
    pub n_layers: usize,
    /// Attention heads per block.
    pub n_heads: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Width of each head; 0 means d_model / n_heads.
    pub d_head: usize,
    /// Hidden width of the MLP; 0 means 4 * d_model.
    pub d_mlp: usize,
    /// The MLP's nonlinearity.
    pub activation: Activation,
    /// How attention weights are formed.
    pub attention: AttentionConfig,
    /// Dropout after attention and MLP (training only). Off by default.
    pub dropout: f64,
    /// LayerNorm epsilon.
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
    /// Width of each head (`d_head`, or d_model / n_heads when 0).
    pub fn d_head(&self) -> usize {
        if self.d_head == 0 {
            self.d_model / self.n_heads.max(1)
        } else {
            self.d_head
        }
    }
    /// Hidden width of the MLP (`d_mlp`, or 4 d_model when 0).
    pub fn d_mlp(&self) -> usize {
        if self.d_mlp == 0 {
            4 * self.d_model
        } else {
            self.d_mlp
        }
    }
    /// Number of input features for a `dimension`-D dataset.
    pub fn d_in(&self, dimension: usize) -> usize {
        2 * dimension + 2 + if self.wall_features { 2 * dimension } else { 0 }
    }
    /// Check every field's range; the error names the key, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, hint: &str| {
            Err(ModelError::Config { key: key.into(), value, hint: hint.into() })
        };
        if self.n_layers == 0 || self.n_layers > 64 {
            return bad("model.n_layers", self.n_layers.to_string(), "use 1..=64 layers");
        }
        if self.n_heads == 0 || self.n_heads > 256 {
            return bad("model.n_heads", self.n_heads.to_string(), "use 1..=256 heads");
        }
        if self.d_model == 0 || self.d_model > 16384 {
            return bad("model.d_model", self.d_model.to_string(), "use 1..=16384");
        }
        if self.d_head == 0 && !self.d_model.is_multiple_of(self.n_heads) {
            return bad("model.d_model", self.d_model.to_string(), "must be divisible by n_heads unless d_head is set");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("model.dropout", self.dropout.to_string(), "use a probability in [0, 1)");
        }
        if !(self.ln_eps > 0.0 && self.ln_eps < 1.0) {
            return bad("model.ln_eps", self.ln_eps.to_string(), "use a small positive number such as 1e-5");
        }
        if !(self.init_scale > 0.0 && self.init_scale.is_finite()) {
            return bad(
                "model.init_scale",
                self.init_scale.to_string(),
                "use a positive number (1.0 = PyTorch's default)",
            );
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

/// Extract the `[model]` table from a run's TOML text (or a bare model config).
pub fn model_config_from_run_toml(text: &str) -> std::result::Result<ModelConfig, String> {
    let v: toml::Table = text.parse().map_err(|e| format!("config attribute is not valid TOML: {e}"))?;
    let m = v.get("model").cloned().unwrap_or(toml::Value::Table(toml::Table::new()));
    let cfg: ModelConfig = m.try_into().map_err(|e| format!("[model] table: {e}"))?;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}
