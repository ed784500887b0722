//! Scan-and-snap and max-margin measured on a physics run's heads.
//!
//! For every checkpoint of a probed run (the fixed evaluation frames come
//! from its `analysis.h5`), `headlab lens physics RUN` records into
//! `RUN/lens_physics.h5`:
//!
//! - **Scan and snap.** Each head's attention logits (`hook_attn_scores`)
//!   on the first `freeze_frames` evaluation frames, centred per query row
//!   (softmax ignores a row's constant), kept for every checkpoint. The
//!   freeze detector of [`headlab_analysis::freeze`] on that series gives a
//!   snap step per head (or none); the attention entropy over checkpoints is
//!   already in analysis.h5 (`series/entropy`).
//! - **Max margin.** A fixed sample (seeded) of `svm_queries` (frame, query)
//!   pairs whose query particle has a contact partner; for each, the nearest
//!   partner `p` and every other particle `j` (not the query, not another
//!   partner) give a constraint `q_iᵀ W (a_p − a_j) ≥ 1`, with
//!   `a = ln1(resid_pre)` the layer's normalized input and `q_i = [a_i; 1]`
//!   (the trailing 1 carries the query bias b_Q). The att-SVM
//!   `min ‖W‖_F` under these constraints is one per layer (its rows depend only
//!   on the layer input); each head's bilinear form
//!   `M_h = [W_Q; b_Q] W_Kᵀ` — exactly the part of the head's logits that varies
//!   over keys, up to the scale — is compared with it by the *restricted
//!   cosine* ([`headlab_analysis::att_svm`]): both projected onto span{q_i} ⊗ span{a_p − a_j}, the
//!   only part of `W` the constraints can see. Also stored: the full-space
//!   cosine, ‖W_svm‖, the head's margin ratio (1 = max-margin direction,
//!   ≤ 0 = some partner not preferred over some other particle) and the share
//!   of constraints it meets (partner's logit above the other particle's).
//!
//! The file is rewritten atomically (whole) as checkpoints are added;
//! already processed steps are skipped, so the command is incremental.
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use headlab_analysis::att_svm as svm;
use headlab_analysis::evalset::frame_geoms;
use headlab_analysis::lens_physics::{
    default_freeze, lens_physics_path, read_lens_physics, write_lens_physics, LensPhysics, SERIES,
};
use headlab_analysis::metrics::ContactSet;
use headlab_probe::run::ProbeOptions;
use headlab_sim::Dataset;
use headlab_store::analysis::{read_analysis, Analysis};
use headlab_store::checkpoint::list_checkpoints;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::config::ConfigError;
use crate::scan_snap::FreezeConfig;

#[derive(Debug, thiserror::Error)]
/// Why the physics lens could not run.
pub enum PhysicsLensError {
    /// Passed through from `ConfigError`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Shown as "{path}: {msg}".
    #[error("{path}: {msg}")]
    Run {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// Passed through from `headlab_store::StoreError`.
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    /// Passed through from `headlab_analysis::AnalysisError`.
    #[error(transparent)]
    Analysis(#[from] headlab_analysis::AnalysisError),
    /// Passed through from `headlab_model::ModelError`.
    #[error(transparent)]
    Model(#[from] headlab_model::ModelError),
    /// Shown as "libtorch: {0}".
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Results of the physics lens.
pub type Result<T, E = PhysicsLensError> = std::result::Result<T, E>;

/// Which contact set defines a query's partners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Contact {
    /// In contact at any sub-step of the predicted interval (the dataset's events).
    #[default]
    Interval,
    /// Overlapping at the input frame.
    Overlap,
}

/// What is measured (saved as `config`; a later call on the same file must
/// use the same options, except `freeze`, which is re-applied to all steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhysicsLensConfig {
    /// Evaluation frames (the first ones of analysis.h5) whose logits are kept.
    pub freeze_frames: usize,
    /// (frame, query) pairs with a partner sampled for the att-SVM.
    pub svm_queries: usize,
    /// Seed of that sample.
    pub seed: u64,
    /// Which contact definition picks the partners.
    pub contact: Contact,
    /// Freeze detector (not part of the stored measurements; re-applied on every call).
    #[serde(skip)]
    pub freeze: FreezeConfig,
}

impl Default for PhysicsLensConfig {
    fn default() -> Self {
        PhysicsLensConfig {
            freeze_frames: 16,
            svm_queries: 24,
            seed: 0,
            contact: Contact::Interval,
            freeze: default_freeze(),
        }
    }
}

impl PhysicsLensConfig {
    /// Check every value; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, value: String, hint: &str| Err(ConfigError::invalid("lens physics", key, value, hint).into());
        if self.freeze_frames == 0 {
            return bad("freeze_frames", "0".into(), "need at least one frame for the logit series");
        }
        if self.seed > i64::MAX as u64 {
            return bad("seed", self.seed.to_string(), "at most 2^63 - 1 (the largest integer a TOML file holds)");
        }
        if self.svm_queries == 0 {
            return bad("svm_queries", "0".into(), "need at least one query for the att-SVM");
        }
        if self.freeze.window == 0 {
            return bad("freeze.window", "0".into(), "the window is in training steps and must be positive");
        }
        if !(self.freeze.threshold > 0.0 && self.freeze.threshold.is_finite()) {
            return bad("freeze.threshold", self.freeze.threshold.to_string(), "must be a positive number");
        }
        Ok(())
    }
    /// The options as TOML (stored in lens_physics.h5 and compared on resume).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        crate::config::to_toml("lens physics", self)
    }
}

/// How a call behaves (not saved).
#[derive(Debug, Clone)]
pub struct PhysicsControl {
    /// Where to run the model.
    pub device: headlab_model::DeviceSpec,
    /// Show a progress bar.
    pub progress: bool,
    /// Discard an existing lens_physics.h5.
    pub fresh: bool,
    /// Rewrite the file after at most this many new checkpoints.
    pub save_every: usize,
}

impl Default for PhysicsControl {
    fn default() -> Self {
        PhysicsControl { device: headlab_model::DeviceSpec::Cpu, progress: true, fresh: false, save_every: 10 }
    }
}

/// One sampled query: evaluation-frame index, query particle, its nearest
/// partner, and the particles it must be preferred over.
#[derive(Debug, Clone, PartialEq)]
pub struct SvmQuery {
    /// Evaluation frame (index into the probe's frames).
    pub eval_index: usize,
    /// Query particle.
    pub query: usize,
    /// Its nearest contact partner.
    pub partner: usize,
    /// Particles not in contact with it.
    pub others: Vec<usize>,
}

/// Draw the constraint sample: (frame, query) pairs whose query has at
/// least one partner and at least one non-partner, shuffled with `seed`.
pub fn sample_queries(contacts: &[&ContactSet], ratios: &[&[f32]], n: usize, k: usize, seed: u64) -> Vec<SvmQuery> {
    let mut all: Vec<(usize, usize)> = Vec::new();
    for (e, cs) in contacts.iter().enumerate() {
        for i in 0..n {
            let deg = cs.degree(i);
            if deg > 0 && deg + 1 < n {
                all.push((e, i));
            }
        }
    }
    all.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(headlab_sim::seed::derive_seed(
        seed,
        headlab_sim::seed::Stream::PhysicsLensQueries,
    )));
    all.truncate(k);
    all.sort();
    // Every candidate query has degree > 0, so a partner always exists.
    all.into_iter()
        .filter_map(|(e, i)| {
            let cs = contacts[e];
            let r = ratios[e];
            let partner =
                (0..n).filter(|&j| cs.contains(i, j)).min_by(|&a, &b| r[i * n + a].total_cmp(&r[i * n + b]))?;
            let others = (0..n).filter(|&j| j != i && !cs.contains(i, j)).collect();
            Some(SvmQuery { eval_index: e, query: i, partner, others })
        })
        .collect()
}

/// `series[name][k] = v` (every name is created up front from `SERIES`).
fn set(series: &mut BTreeMap<String, Vec<f64>>, name: &str, k: usize, v: f64) {
    if let Some(s) = series.get_mut(name) {
        s[k] = v;
    }
}

/// Per-layer tensors of one checkpoint on some frames.
struct Forward {
    /// per layer: a = ln1(resid_pre) [B, N, d] (f64, row-major), the
    /// model's own `blocks.{l}.ln1.hook_normalized` (the identity of the
    /// residual stream when the run has `layer_norm = false`)
    a: Vec<Vec<f64>>,
    /// per layer: attention scores [B, H, N, N]
    scores: Vec<Vec<f32>>,
}

fn forward(m: &headlab_model::Model, ds: &Dataset, frames: &[(usize, usize)]) -> Result<Forward> {
    tch::no_grad(|| {
        let st = headlab_model::State::from_dataset(ds, frames, m.device());
        let x = m.norm.features(&st);
        let (_, cache) = m.run_with_cache(&x, |name| {
            name.ends_with(".ln1.hook_normalized") || name.ends_with(".attn.hook_attn_scores")
        })?;
        let mut out = Forward { a: vec![], scores: vec![] };
        for l in 0..m.config.n_layers {
            let a = cache.require(&format!("blocks.{l}.ln1.hook_normalized"))?;
            out.a.push(Vec::<f64>::try_from(
                &a.to_kind(Kind::Double).to_device(tch::Device::Cpu).contiguous().view([-1]),
            )?);
            let s = cache.require(&format!("blocks.{l}.attn.hook_attn_scores"))?;
            out.scores.push(Vec::<f32>::try_from(
                &s.to_kind(Kind::Float).to_device(tch::Device::Cpu).contiguous().view([-1]),
            )?);
        }
        Ok(out)
    })
}

/// `[W_Q; b_Q] W_Kᵀ` of every head of layer `l`: per head row-major `(d+1) × d`.
fn head_forms(m: &headlab_model::Model, l: usize) -> Result<Vec<Vec<f64>>> {
    let get = |n: &str| -> Result<Tensor> {
        m.param(&format!("blocks.{l}.attn.{n}"))
            .map(|t| t.to_kind(Kind::Double).to_device(tch::Device::Cpu))
            .ok_or_else(|| PhysicsLensError::Run {
                path: PathBuf::new(),
                msg: format!("checkpoint has no blocks.{l}.attn.{n}"),
            })
    };
    let (wq, wk, bq) = (get("W_Q")?, get("W_K")?, get("b_Q")?); // [H,d,dh], [H,d,dh], [H,dh]
    let qa = Tensor::cat(&[wq, bq.unsqueeze(1)], 1); // [H, d+1, dh]
    let mm = qa.matmul(&wk.transpose(1, 2)); // [H, d+1, d]
    let h = mm.size()[0];
    (0..h).map(|k| Ok(Vec::<f64>::try_from(&mm.get(k).contiguous().view([-1]))?)).collect()
}

/// Summary of a call.
#[derive(Debug, Clone)]
pub struct PhysicsSummary {
    /// The `lens_physics.h5` written.
    pub path: PathBuf,
    /// Steps processed by this call.
    pub processed: Vec<u64>,
    /// Checkpoints already in the file.
    pub skipped: usize,
    /// att-SVM constraints per layer.
    pub n_constraints: usize,
}

/// Process every checkpoint of `run` not yet in `RUN/lens_physics.h5`.
/// The run must have been probed (`headlab probe`): its evaluation frames are
/// reused. `ds` is the run's dataset.
pub fn run_physics(run: &Path, ds: &Dataset, cfg: &PhysicsLensConfig, ctl: &PhysicsControl) -> Result<PhysicsSummary> {
    let out = lens_physics_path(run);
    if !ctl.fresh {
        return run_physics_into(run, ds, cfg, ctl, &out);
    }
    // --fresh builds the new file beside the old one and swaps them only at
    // the end: a failure half-way keeps the old results.
    let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let beside = out.with_file_name(format!(".{name}.fresh"));
    let r = run_physics_into(run, ds, cfg, ctl, &beside).and_then(|mut s| {
        if beside.exists() {
            std::fs::rename(&beside, &out).map_err(|e| PhysicsLensError::Run {
                path: out.clone(),
                msg: format!("cannot replace it with {}: {e}", beside.display()),
            })?;
        }
        s.path = out.clone();
        Ok(s)
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&beside);
    }
    r
}

/// [`run_physics`] writing to `target` (the run's lens_physics.h5, or the
/// file that --fresh builds beside it).
fn run_physics_into(
    run: &Path,
    ds: &Dataset,
    cfg: &PhysicsLensConfig,
    ctl: &PhysicsControl,
    target: &Path,
) -> Result<PhysicsSummary> {
    cfg.validate()?;
    let device = ctl.device.resolve()?;
    let apath = run.join("analysis.h5");
    if !apath.exists() {
        return Err(PhysicsLensError::Run {
            path: apath,
            msg: "not found; probe the run first (headlab probe RUN)".into(),
        });
    }
    let an: Analysis = read_analysis(&apath, false)?;
    let popts: ProbeOptions = toml::from_str(&an.config_toml).map_err(|e| PhysicsLensError::Run {
        path: apath.clone(),
        msg: format!("cannot read the probe options: {e}"),
    })?;
    if an.n_particles != ds.n_particles {
        return Err(PhysicsLensError::Run {
            path: apath.clone(),
            msg: format!(
                "was probed on {} particles, the dataset has {}; pass the run's dataset",
                an.n_particles, ds.n_particles
            ),
        });
    }
    let frames: Vec<(usize, usize)> =
        an.eval_traj.iter().zip(&an.eval_frame).map(|(&t, &f)| (t as usize, f as usize)).collect();
    if frames.iter().any(|&(t, f)| t >= ds.n_traj || f >= ds.n_frames) {
        return Err(PhysicsLensError::Run {
            path: apath.clone(),
            msg: "evaluation frames are not in this dataset; pass the run's dataset".into(),
        });
    }
    let out = target.to_path_buf();
    let cfg_toml = cfg.to_toml()?;
    let n = ds.n_particles;
    let ff = cfg.freeze_frames.min(frames.len());
    let mut lp = if out.exists() && !ctl.fresh {
        let lp = read_lens_physics(&out)?;
        if lp.config_toml != cfg_toml {
            return Err(PhysicsLensError::Run { path: out.clone(), msg: format!("was computed with other options:\n{}\nnow:\n{}\npass --fresh to start over, or use the same options", lp.config_toml, cfg_toml) });
        }
        if (lp.n_layers, lp.n_heads, lp.n_particles) != (an.n_layers, an.n_heads, n) {
            return Err(PhysicsLensError::Run {
                path: out.clone(),
                msg: "holds another model shape than analysis.h5; pass --fresh".into(),
            });
        }
        lp
    } else {
        LensPhysics {
            config_toml: cfg_toml.clone(),
            n_layers: an.n_layers,
            n_heads: an.n_heads,
            n_particles: n,
            freeze_frames: ff,
            ..Default::default()
        }
    };

    // The constraint sample (fixed for the run).
    let geoms = frame_geoms(ds, &frames, popts.contact_factor);
    let sets: Vec<&ContactSet> =
        geoms.iter().map(|g| if cfg.contact == Contact::Interval { &g.interval } else { &g.overlap }).collect();
    let ratios: Vec<&[f32]> = geoms.iter().map(|g| g.ratios.as_slice()).collect();
    let sample = sample_queries(&sets, &ratios, n, cfg.svm_queries, cfg.seed);
    if sample.is_empty() {
        tracing::warn!("no query with a contact partner in the evaluation frames: the SVM series will be NaN");
    }
    lp.svm_eval_index = sample.iter().map(|q| q.eval_index as u32).collect();
    lp.svm_query = sample.iter().map(|q| q.query as u32).collect();
    lp.svm_partner = sample.iter().map(|q| q.partner as u32).collect();
    let n_constraints: usize = sample.iter().map(|q| q.others.len()).sum();
    // Frames to run: the freeze frames, then the sample's other frames.
    let mut fwd_idx: Vec<usize> = (0..ff).collect();
    for q in &sample {
        if !fwd_idx.contains(&q.eval_index) {
            fwd_idx.push(q.eval_index);
        }
    }
    let fwd_frames: Vec<(usize, usize)> = fwd_idx.iter().map(|&e| frames[e]).collect();
    // Position of each evaluation frame in the forward batch (every sampled
    // frame is in fwd_idx by construction).
    let mut fwd_pos = vec![0usize; frames.len()];
    for (p, &e) in fwd_idx.iter().enumerate() {
        fwd_pos[e] = p;
    }
    let pos_of = |e: usize| fwd_pos[e];

    let ckpts = list_checkpoints(run)?;
    let todo: Vec<(u64, PathBuf)> = ckpts.iter().filter(|(s, _)| lp.steps.binary_search(s).is_err()).cloned().collect();
    let skipped = ckpts.len() - todo.len();
    let bar = if ctl.progress {
        let b = indicatif::ProgressBar::new(todo.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "lens physics {bar:30} {pos}/{len} checkpoints  {elapsed} (eta {eta})  {msg}",
            )
            .map_err(|e| PhysicsLensError::Run { path: run.to_path_buf(), msg: format!("progress bar: {e}") })?,
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (nl, nh) = (an.n_layers, an.n_heads);
    let mut since = 0;
    let mut processed = Vec::new();
    for (step, path) in &todo {
        let m = headlab_model::Model::load(path, device)?;
        if (m.config.n_layers, m.config.n_heads) != (nl, nh) {
            return Err(PhysicsLensError::Run {
                path: path.clone(),
                msg: format!("has {}×{} heads, analysis.h5 {nl}×{nh}", m.config.n_layers, m.config.n_heads),
            });
        }
        let d = m.config.d_model;
        let f = forward(&m, ds, &fwd_frames)?;
        let mut series: BTreeMap<String, Vec<f64>> =
            SERIES.iter().map(|s| (s.to_string(), vec![f64::NAN; nl * nh])).collect();
        let mut logits = Vec::with_capacity(nl * nh * ff * n * n);
        for l in 0..nl {
            // Centred logits of the freeze frames, [H, F, N, N].
            for h in 0..nh {
                let mut ss = 0.0f64;
                for b in 0..ff {
                    for i in 0..n {
                        let off = ((b * nh + h) * n + i) * n;
                        let row = &f.scores[l][off..off + n];
                        let mean = row.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
                        for &x in row {
                            let c = x as f64 - mean;
                            ss += c * c;
                            logits.push(c as f32);
                        }
                    }
                }
                set(&mut series, "logit_rms", l * nh + h, (ss / (ff * n * n) as f64).sqrt());
            }
            // The layer's att-SVM.
            let a = &f.a[l];
            let av = |e: usize, i: usize| -> &[f64] {
                let off = (pos_of(e) * n + i) * d;
                &a[off..off + d]
            };
            let mut pairs = Vec::with_capacity(n_constraints);
            for q in &sample {
                let mut qv = av(q.eval_index, q.query).to_vec();
                qv.push(1.0);
                let ap = av(q.eval_index, q.partner);
                for &j in &q.others {
                    let aj = av(q.eval_index, j);
                    pairs.push((qv.clone(), ap.iter().zip(aj).map(|(x, y)| x - y).collect::<Vec<f64>>()));
                }
            }
            match svm::LayerSvm::solve(&pairs, d + 1, d) {
                Ok(sol) => {
                    let forms = head_forms(&m, l)?;
                    for (h, mh) in forms.iter().enumerate() {
                        let c = sol.compare(mh);
                        let k = l * nh + h;
                        set(&mut series, "svm_cosine", k, c.cosine);
                        set(&mut series, "svm_cosine_full", k, c.cosine_full);
                        set(&mut series, "svm_margin_ratio", k, c.margin_ratio);
                        set(&mut series, "svm_satisfied", k, c.satisfied);
                        set(&mut series, "svm_norm", k, sol.norm);
                        set(&mut series, "svm_constraints", k, pairs.len() as f64);
                    }
                }
                Err(e) => {
                    tracing::warn!("step {step}, layer {l}: att-SVM not solved ({e}); its series are NaN at this step")
                }
            }
        }
        lp.add_step(*step, &series, logits);
        processed.push(*step);
        let best = series["svm_cosine"].iter().copied().filter(|v| v.is_finite()).fold(f64::NAN, f64::max);
        bar.set_message(format!("step {step}: best SVM cosine {best:.2}"));
        bar.inc(1);
        since += 1;
        if since >= ctl.save_every.max(1) {
            lp.detect_snaps(&cfg.freeze);
            write_lens_physics(&out, &lp)?;
            since = 0;
        }
    }
    if let (Some(a), Some(b)) = (lp.steps.first(), lp.steps.last()) {
        if b - a < cfg.freeze.window {
            tracing::warn!("the freeze window ({} steps) is longer than the checkpoints span ({a}..{b}): no snap step can be found; use a smaller window", cfg.freeze.window);
        }
    }
    // Snap steps are re-derived with the current detector even when nothing new came in.
    let old_snap = (lp.snap.clone(), lp.snap_config.clone());
    lp.detect_snaps(&cfg.freeze);
    if since > 0 || (lp.snap.clone(), lp.snap_config.clone()) != old_snap {
        write_lens_physics(&out, &lp)?;
    }
    bar.finish_and_clear();
    Ok(PhysicsSummary { path: out, processed, skipped, n_constraints })
}
