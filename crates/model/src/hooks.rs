//! Hooks: named points of the forward pass where a closure can read or
//! replace an activation (TransformerLens names and semantics: the hook's
//! return value replaces the activation), and [`ActivationCache`], what a
//! recording pass keeps.
//!
//! The hook points, in forward order (`{l}` = layer):
//!
//! | name | shape |
//! |---|---|
//! | `hook_embed` | [batch, pos, d_model] |
//! | `blocks.{l}.hook_resid_pre` | [batch, pos, d_model] |
//! | `blocks.{l}.ln1.hook_normalized` | [batch, pos, d_model] |
//! | `blocks.{l}.attn.hook_q`, `hook_k`, `hook_v` | [batch, pos, head, d_head] |
//! | `blocks.{l}.attn.hook_attn_scores` | [batch, head, query, key] |
//! | `blocks.{l}.attn.hook_pattern` | [batch, head, query, key] |
//! | `blocks.{l}.attn.hook_z` | [batch, pos, head, d_head] |
//! | `blocks.{l}.hook_attn_out` | [batch, pos, d_model] |
//! | `blocks.{l}.hook_resid_mid` | [batch, pos, d_model] (only with `mlp`) |
//! | `blocks.{l}.ln2.hook_normalized` | [batch, pos, d_model] (only with `mlp`) |
//! | `blocks.{l}.mlp.hook_pre`, `hook_post` | [batch, pos, d_mlp] (only with `mlp`) |
//! | `blocks.{l}.hook_mlp_out` | [batch, pos, d_model] (only with `mlp`) |
//! | `blocks.{l}.hook_resid_post` | [batch, pos, d_model] |
//! | `ln_final.hook_normalized` | [batch, pos, d_model] |
//!
//! `pos` is the particle index. The `ln*.hook_normalized` points exist with
//! `layer_norm = false` too (the LayerNorm is then the identity and the hook
//! sees its input). `hook_attn_scores` are the scaled scores the pattern is
//! formed from (softmax or `/ n_keys` for linear attention);
//! `hook_attn_out` and `hook_mlp_out` are the sublayer outputs before
//! dropout (which only acts when training). Hook closures run on the
//! activation after the preceding hooks of the same name (in the order they
//! were added); recording keeps the value after all of them.

use tch::Tensor;

use crate::config::ModelConfig;
use crate::{ModelError, Result};

/// Where a hook sits inside a block, or (`Embed`, `LnFinal`) outside blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site {
    Embed,
    ResidPre,
    Ln1,
    Q,
    K,
    V,
    AttnScores,
    Pattern,
    Z,
    AttnOut,
    ResidMid,
    Ln2,
    MlpPre,
    MlpPost,
    MlpOut,
    ResidPost,
    LnFinal,
}

/// The hook sites of a block, in forward order, with their names after `blocks.{l}.`.
const BLOCK_SITES: [(Site, &str); 15] = [
    (Site::ResidPre, "hook_resid_pre"),
    (Site::Ln1, "ln1.hook_normalized"),
    (Site::Q, "attn.hook_q"),
    (Site::K, "attn.hook_k"),
    (Site::V, "attn.hook_v"),
    (Site::AttnScores, "attn.hook_attn_scores"),
    (Site::Pattern, "attn.hook_pattern"),
    (Site::Z, "attn.hook_z"),
    (Site::AttnOut, "hook_attn_out"),
    (Site::ResidMid, "hook_resid_mid"),
    (Site::Ln2, "ln2.hook_normalized"),
    (Site::MlpPre, "mlp.hook_pre"),
    (Site::MlpPost, "mlp.hook_post"),
    (Site::MlpOut, "hook_mlp_out"),
    (Site::ResidPost, "hook_resid_post"),
];

impl Site {
    /// Sites that only exist in blocks with an MLP sublayer.
    fn needs_mlp(self) -> bool {
        matches!(self, Site::ResidMid | Site::Ln2 | Site::MlpPre | Site::MlpPost | Site::MlpOut)
    }
}

/// A hook point: a site and its layer (`None` outside the blocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Point {
    pub layer: Option<usize>,
    pub site: Site,
}

impl Point {
    pub(crate) fn new(layer: Option<usize>, site: Site) -> Point {
        Point { layer, site }
    }

    /// The TransformerLens name.
    pub(crate) fn name(&self) -> String {
        match (self.site, self.layer) {
            (Site::Embed, _) => "hook_embed".into(),
            (Site::LnFinal, _) => "ln_final.hook_normalized".into(),
            (site, layer) => {
                let suffix = BLOCK_SITES.iter().find(|(s, _)| *s == site).map(|(_, n)| *n).unwrap_or("?");
                format!("blocks.{}.{suffix}", layer.unwrap_or(0))
            }
        }
    }

    /// Parse a hook name; `None` when it names no hook point of any model.
    fn parse(name: &str) -> Option<Point> {
        match name {
            "hook_embed" => return Some(Point::new(None, Site::Embed)),
            "ln_final.hook_normalized" => return Some(Point::new(None, Site::LnFinal)),
            _ => {}
        }
        let rest = name.strip_prefix("blocks.")?;
        let (layer, suffix) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let site = BLOCK_SITES.iter().find(|(_, n)| *n == suffix)?.0;
        Some(Point::new(Some(layer), site))
    }

    /// Whether the point exists in a model of this configuration.
    fn exists_in(&self, cfg: &ModelConfig) -> bool {
        match self.layer {
            None => true,
            Some(l) => l < cfg.n_layers && (cfg.mlp || !self.site.needs_mlp()),
        }
    }
}

/// Every hook point of a model of this configuration, in forward order.
pub(crate) fn points(cfg: &ModelConfig) -> Vec<Point> {
    let mut v = vec![Point::new(None, Site::Embed)];
    for l in 0..cfg.n_layers {
        v.extend(BLOCK_SITES.iter().map(|&(s, _)| Point::new(Some(l), s)).filter(|p| p.exists_in(cfg)));
    }
    v.push(Point::new(None, Site::LnFinal));
    v
}

/// Every hook name of a model of this configuration, in forward order.
pub fn hook_names(cfg: &ModelConfig) -> Vec<String> {
    points(cfg).iter().map(Point::name).collect()
}

/// What a hook closure is told besides the activation.
#[derive(Clone, Copy, Debug)]
pub struct HookContext<'n> {
    /// The hook's name, e.g. `blocks.0.attn.hook_z`.
    pub name: &'n str,
    /// The block (`None` for `hook_embed` and `ln_final.hook_normalized`).
    pub layer: Option<usize>,
}

/// A hook closure: gets the activation, returns its replacement (return
/// `t.shallow_clone()` to only look). The replacement must have the
/// activation's shape, kind and device.
pub type HookFn<'a> = Box<dyn FnMut(&Tensor, HookContext<'_>) -> Result<Tensor> + 'a>;

struct Entry<'a> {
    name: String,
    /// Set by `prepare` (the name is checked against the model there).
    point: Option<Point>,
    f: HookFn<'a>,
}

/// A set of hooks for one or more forward passes:
/// [`Model::run_with_hooks`](crate::Model::run_with_hooks).
///
/// ```no_run
/// # use headlab_model::*;
/// # fn demo(model: &Model, x: &tch::Tensor) -> Result<()> {
/// let head = 1;
/// let mut hooks = Hooks::new();
/// hooks.add("blocks.0.attn.hook_z", move |z, _| {
///     let z = z.copy(); // [batch, pos, head, d_head]
///     let _ = z.narrow(2, head, 1).fill_(0.0);
///     Ok(z)
/// });
/// let y = model.run_with_hooks(x, &mut hooks)?;
/// # Ok(()) }
/// ```
#[derive(Default)]
#[allow(clippy::type_complexity)]
pub struct Hooks<'a> {
    entries: Vec<Entry<'a>>,
    record: Option<Box<dyn Fn(&str) -> bool + 'a>>,
    /// Points to record (resolved from `record` by `prepare`).
    recorded: Vec<Point>,
    cache: ActivationCache,
}

impl<'a> Hooks<'a> {
    /// No interventions and nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a hook at `name`. The name is checked when the hooks are run.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        f: impl FnMut(&Tensor, HookContext<'_>) -> Result<Tensor> + 'a,
    ) -> &mut Self {
        self.entries.push(Entry { name: name.into(), point: None, f: Box::new(f) });
        self
    }

    /// Also record (a detached view of) every activation whose hook name
    /// passes `filter`, after the hooks at that point; read them with
    /// [`Hooks::take_cache`]. Each run starts a new cache.
    pub fn record(&mut self, filter: impl Fn(&str) -> bool + 'a) -> &mut Self {
        self.record = Some(Box::new(filter));
        self
    }

    /// The activations recorded by the last run.
    pub fn take_cache(&mut self) -> ActivationCache {
        std::mem::take(&mut self.cache)
    }

    /// No closures and no recording.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.record.is_none()
    }

    /// Check every hook name against the model and start a new cache.
    pub(crate) fn prepare(&mut self, cfg: &ModelConfig) -> Result<()> {
        for e in &mut self.entries {
            let p = Point::parse(&e.name).ok_or_else(|| ModelError::Hook {
                name: e.name.clone(),
                msg: format!(
                    "no such hook point; the hook names are hook_embed, blocks.{{l}}.{{{}}}, ln_final.hook_normalized",
                    BLOCK_SITES.map(|(_, n)| n).join(", ")
                ),
            })?;
            if !p.exists_in(cfg) {
                let why = if p.layer.is_some_and(|l| l >= cfg.n_layers) {
                    format!("the model has {} layers", cfg.n_layers)
                } else {
                    "the model has no MLP sublayers (mlp = false)".into()
                };
                return Err(ModelError::Hook {
                    name: e.name.clone(),
                    msg: format!("not a hook point of this model: {why}"),
                });
            }
            e.point = Some(p);
        }
        self.recorded = match &self.record {
            Some(f) => points(cfg).into_iter().filter(|p| f(&p.name())).collect(),
            None => vec![],
        };
        self.cache = ActivationCache::default();
        Ok(())
    }

    /// Whether anything happens at `p`.
    pub(crate) fn wants(&self, p: Point) -> bool {
        self.entries.iter().any(|e| e.point == Some(p)) || self.recorded.contains(&p)
    }

    /// Run the closures at `p` on `t` in order, check each replacement and
    /// record the result if asked.
    pub(crate) fn apply(&mut self, p: Point, mut t: Tensor) -> Result<Tensor> {
        for e in self.entries.iter_mut().filter(|e| e.point == Some(p)) {
            let ctx = HookContext { name: &e.name, layer: p.layer };
            let r = (e.f)(&t, ctx).map_err(|err| match err {
                ModelError::Hook { .. } => err,
                other => ModelError::Hook { name: e.name.clone(), msg: other.to_string() },
            })?;
            if r.size() != t.size() || r.kind() != t.kind() || r.device() != t.device() {
                return Err(ModelError::Hook {
                    name: e.name.clone(),
                    msg: format!(
                        "returned a {:?} {:?} tensor on {:?}; the activation is {:?} {:?} on {:?}",
                        r.size(),
                        r.kind(),
                        r.device(),
                        t.size(),
                        t.kind(),
                        t.device()
                    ),
                });
            }
            t = r;
        }
        if self.recorded.contains(&p) {
            self.cache.entries.push((p.name(), t.detach()));
        }
        Ok(t)
    }
}

/// Tensors recorded by a forward pass, under TransformerLens hook names, in
/// forward order. They are detached (no autograd history).
#[derive(Default)]
pub struct ActivationCache {
    /// (hook name, activation), in the order of the forward pass.
    pub entries: Vec<(String, Tensor)>,
}

impl ActivationCache {
    /// The activation recorded at `name`, if it was recorded.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
    /// Like [`ActivationCache::get`], but a missing name is an error that says
    /// what was recorded.
    pub fn require(&self, name: &str) -> Result<&Tensor> {
        self.get(name).ok_or_else(|| ModelError::Hook {
            name: name.into(),
            msg: format!(
                "was not recorded (recorded: {})",
                self.entries.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })
    }
    /// `blocks.{layer}.attn.hook_pattern` [batch, head, query, key].
    pub fn pattern(&self, layer: usize) -> Option<&Tensor> {
        self.get(&format!("blocks.{layer}.attn.hook_pattern"))
    }
    /// `blocks.{layer}.attn.hook_attn_scores` [batch, head, query, key].
    pub fn attn_scores(&self, layer: usize) -> Option<&Tensor> {
        self.get(&format!("blocks.{layer}.attn.hook_attn_scores"))
    }
}
