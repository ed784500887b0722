//! The `RUN/lens_physics.h5` file that `headlab lens physics` writes (see
//! `headlab_lens::physics` for what is measured): its contents, reading and
//! writing, the snap steps re-derived by the freeze detector, and one figure
//! per head ([`plot`]). tch-free, so the report reads and draws it without
//! libtorch.
//!
//! ```text
//! RUN/lens_physics.h5  attrs: kind="lens", lens="physics", config (TOML), n_layers, n_heads,
//!                             n_particles, freeze_frames, snap_config (TOML of the detector used)
//! /steps                  [S] u64
//! /series/<name>          [S, L, H] f64   svm_cosine, svm_cosine_full, svm_margin_ratio,
//!                                           svm_satisfied, svm_norm, svm_constraints,
//!                                           logit_rms, freeze_change
//! /logits/step_XXXXXXXX   [L, H, F, N, N] f32  row-centred attention logits
//! /svm/eval_index, /svm/query, /svm/partner  [Q] u32  the constraint sample
//! /snap/step              [L, H] i64      snap step (−1: none)
//! ```

pub mod plot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use headlab_store::h5util::{
    atomic_write, get_attr, get_str_attr, open_kind, read_array, set_attr, set_str_attr, write_array, Ctx,
};
use headlab_store::FileKind;

use crate::freeze::{relative_change, snap_from_changes, FreezeConfig, FreezeScale};
use crate::{AnalysisError, Result};

/// The detector's defaults for physics runs: the `norm` scale, ‖Δz‖/‖z‖
/// over 100 steps, below 0.15. Not the toy's `rms` scale: a collision head's
/// logits keep growing in size after its pattern has settled (its W_Q·W_Kᵀ
/// grows along a fixed direction, as the max-margin picture predicts), so the
/// absolute RMS change never falls below a fixed threshold on the demo run
/// (≈ 1 nat per 300 steps at step 3000), while the relative change of the
/// logit vector falls to ≈ 0.03–0.1 for the collision heads and stays
/// ≈ 0.2–0.9 for the others.
pub fn default_freeze() -> FreezeConfig {
    FreezeConfig { window: 100, threshold: 0.15, scale: FreezeScale::Norm }
}

/// The per-head series the physics lens stores (each [steps, layers, heads]).
pub const SERIES: [&str; 8] = [
    "svm_cosine",
    "svm_cosine_full",
    "svm_margin_ratio",
    "svm_satisfied",
    "svm_norm",
    "svm_constraints",
    "logit_rms",
    "freeze_change",
];

/// Contents of `RUN/lens_physics.h5`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LensPhysics {
    /// The lens options as TOML (compared on resume).
    pub config_toml: String,
    /// Layers of the model.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// Particles per frame.
    pub n_particles: usize,
    /// Frames used by the freeze (scan-then-snap) detector.
    pub freeze_frames: usize,
    /// Probed checkpoint steps, ascending.
    pub steps: Vec<u64>,
    /// name → [S, L, H]
    pub series: BTreeMap<String, Vec<f64>>,
    /// per step: [L, H, F, N, N]
    pub logits: Vec<Vec<f32>>,
    /// Evaluation-frame index of each att-SVM query.
    pub svm_eval_index: Vec<u32>,
    /// The query particle of each att-SVM query.
    pub svm_query: Vec<u32>,
    /// Its contact partner (the index the att-SVM should pick).
    pub svm_partner: Vec<u32>,
    /// [L, H], −1 = none
    pub snap: Vec<i64>,
    /// The freeze-detector options as TOML.
    pub snap_config: String,
}

impl LensPhysics {
    fn lh(&self) -> usize {
        self.n_layers * self.n_heads
    }
    /// One head's values of series `name` over the steps, if stored.
    pub fn head_series(&self, name: &str, layer: usize, head: usize) -> Option<Vec<f64>> {
        let v = self.series.get(name)?;
        let (lh, k) = (self.lh(), layer * self.n_heads + head);
        Some((0..self.steps.len()).map(|s| v[s * lh + k]).collect())
    }
    /// The freeze detector the stored snap steps came from.
    pub fn freeze_config(&self) -> FreezeConfig {
        toml::from_str(&self.snap_config).unwrap_or_else(|_| default_freeze())
    }
    /// The step at which the head's attention snaps (freezes), if it does.
    pub fn snap_step(&self, layer: usize, head: usize) -> Option<u64> {
        self.snap.get(layer * self.n_heads + head).copied().filter(|&s| s >= 0).map(|s| s as u64)
    }
    fn per_head_logits(&self) -> usize {
        self.freeze_frames * self.n_particles * self.n_particles
    }
    /// Insert one step's `[L, H]` series and logits, keeping steps sorted
    /// (used by `headlab lens physics` as it processes checkpoints).
    pub fn add_step(&mut self, step: u64, series: &BTreeMap<String, Vec<f64>>, logits: Vec<f32>) {
        let lh = self.lh();
        let pos = self.steps.partition_point(|&s| s < step);
        self.steps.insert(pos, step);
        self.logits.insert(pos, logits);
        for (name, v) in series {
            let e = self.series.entry(name.clone()).or_default();
            let tail = e.split_off(pos * lh);
            e.extend_from_slice(v);
            e.extend(tail);
        }
    }
    /// Re-run the freeze detector on the whole logit series: fills
    /// `freeze_change` and `snap`.
    pub fn detect_snaps(&mut self, f: &FreezeConfig) {
        let (lh, r, s) = (self.lh(), self.per_head_logits(), self.steps.len());
        let mut change = vec![f64::NAN; s * lh];
        self.snap = vec![-1; lh];
        for k in 0..lh {
            let vals: Vec<f32> = self.logits.iter().flat_map(|l| l[k * r..(k + 1) * r].iter().copied()).collect();
            let ch = relative_change(&self.steps, &vals, r, f.window, f.scale);
            for (i, c) in ch.iter().enumerate() {
                change[i * lh + k] = *c as f64;
            }
            if let Some(st) = snap_from_changes(&self.steps, &ch, f.window, f.threshold) {
                self.snap[k] = st as i64;
            }
        }
        self.series.insert("freeze_change".into(), change);
        self.snap_config = toml::to_string(f).unwrap_or_default();
    }
}

fn step_name(step: u64) -> String {
    format!("step_{step:08}")
}

/// Where a run's physics lens results live: `RUN/lens_physics.h5`.
pub fn lens_physics_path(run: &Path) -> PathBuf {
    run.join("lens_physics.h5")
}

/// Write the physics lens results to `path` (atomically).
pub fn write_lens_physics(path: &Path, a: &LensPhysics) -> Result<()> {
    let (s, l, h) = (a.steps.len(), a.n_layers, a.n_heads);
    let ctx = Ctx(path);
    atomic_write(path, FileKind::Lens, |file| {
        set_str_attr(file, path, "lens", "physics")?;
        set_str_attr(file, path, "config", &a.config_toml)?;
        set_str_attr(file, path, "snap_config", &a.snap_config)?;
        set_attr(file, path, "n_layers", l as u64)?;
        set_attr(file, path, "n_heads", h as u64)?;
        set_attr(file, path, "n_particles", a.n_particles as u64)?;
        set_attr(file, path, "freeze_frames", a.freeze_frames as u64)?;
        write_array(file, path, "steps", &a.steps, &[s])?;
        let sg = ctx.h5("series", file.create_group("series"))?;
        for (name, v) in &a.series {
            write_array(&sg, path, name, v, &[s, l, h])?;
        }
        let lg = ctx.h5("logits", file.create_group("logits"))?;
        let n = a.n_particles;
        for (st, v) in a.steps.iter().zip(&a.logits) {
            write_array(&lg, path, &step_name(*st), v, &[l, h, a.freeze_frames, n, n])?;
        }
        let vg = ctx.h5("svm", file.create_group("svm"))?;
        let q = a.svm_query.len();
        write_array(&vg, path, "eval_index", &a.svm_eval_index, &[q])?;
        write_array(&vg, path, "query", &a.svm_query, &[q])?;
        write_array(&vg, path, "partner", &a.svm_partner, &[q])?;
        let ng = ctx.h5("snap", file.create_group("snap"))?;
        write_array(&ng, path, "step", &a.snap, &[l, h])?;
        Ok(())
    })?;
    Ok(())
}

/// Read the physics lens results from `path`.
pub fn read_lens_physics(path: &Path) -> Result<LensPhysics> {
    let (file, _) = open_kind(path, Some(FileKind::Lens))?;
    let ctx = Ctx(path);
    if get_str_attr(&file, path, "lens")? != "physics" {
        return Err(AnalysisError::Run {
            path: path.into(),
            msg: "is a lens file of another lens, not `physics`".into(),
        });
    }
    let l = get_attr::<u64>(&file, path, "n_layers")? as usize;
    let h = get_attr::<u64>(&file, path, "n_heads")? as usize;
    let n = get_attr::<u64>(&file, path, "n_particles")? as usize;
    let ff = get_attr::<u64>(&file, path, "freeze_frames")? as usize;
    let (steps, _) = read_array::<u64>(&file, path, "steps", Some(1))?;
    let grp = |name: &str| file.group(name).map_err(|_| ctx.missing(name, FileKind::Lens));
    let sg = grp("series")?;
    let mut series = BTreeMap::new();
    for name in ctx.h5("series", sg.member_names())? {
        let (v, shape) = read_array::<f64>(&sg, path, &name, Some(3))?;
        if shape != [steps.len(), l, h] {
            return Err(ctx
                .invalid(&format!("series/{name}"), format!("shape {shape:?}"), format!("[{}, {l}, {h}]", steps.len()))
                .into());
        }
        series.insert(name, v);
    }
    let lg = grp("logits")?;
    let logits = steps
        .iter()
        .map(|&s| read_array::<f32>(&lg, path, &step_name(s), Some(5)).map(|x| x.0))
        .collect::<Result<Vec<_>, _>>()?;
    let vg = grp("svm")?;
    let ng = grp("snap")?;
    Ok(LensPhysics {
        config_toml: get_str_attr(&file, path, "config")?,
        snap_config: get_str_attr(&file, path, "snap_config")?,
        n_layers: l,
        n_heads: h,
        n_particles: n,
        freeze_frames: ff,
        steps,
        series,
        logits,
        svm_eval_index: read_array(&vg, path, "eval_index", Some(1))?.0,
        svm_query: read_array(&vg, path, "query", Some(1))?.0,
        svm_partner: read_array(&vg, path, "partner", Some(1))?.0,
        snap: read_array(&ng, path, "step", Some(2))?.0,
    })
}
