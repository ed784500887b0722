//! Scale options compared on the physics task (`headlab lens scaling --physics`).
//!
//! The number of keys N is the number of particles, so scenes with different
//! particle counts are a natural test of the options that depend on N. For
//! each particle count the base scene is copied with `n_particles = N` and
//! its box scaled by (N / N₀)^(1/dimension) (same packing fraction, so the
//! collision rate per particle stays comparable), simulated, and for each
//! scale option a small model is trained at a fixed budget, probed
//! (`headlab probe`: collision scores per head) and measured for saturation
//! at its last checkpoint. Recorded per (N, option):
//! - `val_ratio`: validation one-step MSE / no-change baseline (lower is better);
//! - `best_score`, `best_auroc`: the best head's self-excluded normalized
//!   collision score and interval AUROC at the last checkpoint;
//! - `emergence_step`: first checkpoint where some head's score reaches 0.5
//!   (−1 = never within the budget);
//! - `frac_saturated`, `entropy_norm`, `jacobian_fro`: mean over heads at
//!   the last checkpoint.
//!
//! ```text
//! OUT/scaling_physics.h5  attrs: kind="lens", lens="scaling-physics", config (TOML), options (names)
//! /particles [P] u64;  /<metric> [P, options] f64
//! OUT/data_N<n>.h5 (datasets), OUT/N<n>_<option>/ (runs, probed), OUT/index.html, OUT/scaling_physics.png
//! ```
//! The default budget is tiny (minutes on two cores): the figures say which
//! option learns fastest at that budget, not which is best when trained out.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use headlab_model::{AttentionConfig, AttentionKind, AttentionScale, DeviceSpec, Model};
use headlab_sim::{Scene, SimOptions};
use headlab_store::h5util::{set_str_attr, write_array, Ctx};
use headlab_store::{atomic_write, FileKind, StoreError};
use serde::{Deserialize, Serialize};

use super::run::model_saturation;
use super::{bad, ScalingError};
use crate::plot::{num, write_png, Panel, Series};
use headlab_store::html::Page;

/// Configuration of the physics comparison; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhysicsScalingConfig {
    /// Base scene file (its particle count is N₀).
    pub scene: String,
    /// Particle counts compared.
    pub particles: Vec<usize>,
    /// Scale options compared.
    pub options: Vec<AttentionScale>,
    /// Trajectories simulated per particle count.
    pub trajectories: usize,
    /// Frames per trajectory.
    pub frames: usize,
    /// Training budget per run.
    pub steps: u64,
    /// Training batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Layers of each model.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// Width of each model.
    pub d_model: usize,
    /// Checkpoints per run (log-spaced; emergence is read on these).
    pub checkpoints: usize,
    /// Evaluation frames of the probe.
    pub eval_frames: usize,
    /// A row is saturated when its largest weight exceeds 1 − eps.
    pub eps: f64,
    /// Seed of the simulations and the training runs.
    pub seed: u64,
}

impl Default for PhysicsScalingConfig {
    fn default() -> Self {
        Self {
            scene: "scenes/demo.toml".into(),
            particles: vec![16, 64],
            options: vec![
                AttentionScale::InvSqrtDHead,
                AttentionScale::InvSqrtN,
                AttentionScale::InvLogN,
                AttentionScale::InvKeyNormSum,
            ],
            trajectories: 24,
            frames: 40,
            steps: 300,
            batch_size: 16,
            lr: 3e-3,
            n_layers: 2,
            n_heads: 4,
            d_model: 32,
            checkpoints: 8,
            eval_frames: 48,
            eps: 0.01,
            seed: 0,
        }
    }
}

impl PhysicsScalingConfig {
    /// The config as TOML (stored in scaling_physics.h5).
    pub fn to_toml(&self) -> Result<String, crate::config::ConfigError> {
        crate::config::to_toml("scaling physics", self)
    }

    /// Check every value; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<(), ScalingError> {
        if self.particles.is_empty() || self.particles.contains(&0) {
            return Err(bad(
                "particles",
                format!("{:?}", self.particles),
                "give one or more positive particle counts, e.g. 16,64",
            ));
        }
        if self.options.is_empty() {
            return Err(bad("options", "[]", "compare at least one scale option"));
        }
        if self.trajectories < 2 || self.frames < 2 {
            return Err(bad(
                "trajectories/frames",
                format!("{}/{}", self.trajectories, self.frames),
                "need at least 2 trajectories (train/validation split) and 2 frames",
            ));
        }
        if self.steps == 0 || self.batch_size == 0 || self.checkpoints < 2 || self.eval_frames == 0 {
            return Err(bad(
                "steps/batch_size/checkpoints/eval_frames",
                format!("{}/{}/{}/{}", self.steps, self.batch_size, self.checkpoints, self.eval_frames),
                "steps, batch_size, eval_frames > 0 and checkpoints >= 2",
            ));
        }
        if !(self.eps > 0.0 && self.eps < 1.0) {
            return Err(bad("eps", self.eps, "use a small positive number such as 0.01"));
        }
        Ok(())
    }
}

/// Results for one (particle count, option).
#[derive(Debug, Clone, PartialEq)]
pub struct PhysicsPoint {
    /// Particle count N.
    pub particles: usize,
    /// The scale option.
    pub option: AttentionScale,
    /// The trained run's folder.
    pub run_dir: PathBuf,
    /// Validation one-step MSE / no-change baseline (lower is better).
    pub val_ratio: f64,
    /// The best head's self-excluded normalized collision score at the last checkpoint.
    pub best_score: f64,
    /// That head's interval AUROC.
    pub best_auroc: f64,
    /// That head (`L.H`).
    pub best_head: String,
    /// First checkpoint where some head's score reaches 0.5 (−1 = never).
    pub emergence_step: i64,
    /// Share of saturated rows, mean over heads at the last checkpoint.
    pub frac_saturated: f64,
    /// Attention entropy / ln N, mean over heads.
    pub entropy_norm: f64,
    /// Softmax Jacobian Frobenius norm, mean over heads.
    pub jacobian_fro: f64,
    /// Wall time of the point.
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
/// Result of [`run_physics_scaling`].
pub struct PhysicsScalingReport {
    /// The settings used.
    pub config: PhysicsScalingConfig,
    /// Row-major [particles][options].
    pub points: Vec<PhysicsPoint>,
}

fn other(path: &Path, e: impl std::fmt::Display) -> ScalingError {
    ScalingError::Run { path: path.display().to_string(), msg: e.to_string() }
}

/// The base scene with `n` particles in a box scaled to the same packing fraction.
pub fn scene_with_particles(base: &Scene, n: usize) -> Scene {
    let mut s = base.clone();
    let f = (n as f64 / base.n_particles.max(1) as f64).powf(1.0 / base.dimension.max(1) as f64);
    s.box_size.0 = base.box_size.0.iter().map(|x| x * f).collect();
    s.n_particles = n;
    s
}

/// Run the comparison into `out` (created). `progress(done, total)` after each run.
pub fn run_physics_scaling(
    cfg: &PhysicsScalingConfig,
    out: &Path,
    device: DeviceSpec,
    progress: &mut dyn FnMut(usize, usize, &PhysicsPoint),
) -> Result<PhysicsScalingReport, ScalingError> {
    cfg.validate()?;
    let torch_device = device.resolve()?;
    std::fs::create_dir_all(out).map_err(|e| other(out, e))?;
    let scene_path = Path::new(&cfg.scene);
    let base = Scene::from_file(scene_path).map_err(|e| other(scene_path, e))?;
    let total = cfg.particles.len() * cfg.options.len();
    let mut points = Vec::new();
    for &n in &cfg.particles {
        let scene = scene_with_particles(&base, n);
        let ds = headlab_sim::simulate(
            &scene,
            SimOptions { n_traj: cfg.trajectories, n_frames: cfg.frames, seed: cfg.seed, threads: 1 },
            None,
        )
        .map_err(|e| other(scene_path, e))?;
        let data_path = out.join(format!("data_N{n}.h5"));
        headlab_store::dataset::write_dataset(&data_path, &ds)?;
        for &option in &cfg.options {
            let t0 = std::time::Instant::now();
            let run_dir = out.join(format!("N{n}_{option}"));
            if run_dir.exists() {
                std::fs::remove_dir_all(&run_dir).map_err(|e| other(&run_dir, e))?;
            }
            let mut tc = headlab_train::TrainConfig {
                data: data_path.display().to_string(),
                seed: cfg.seed,
                steps: cfg.steps,
                batch_size: cfg.batch_size,
                eval_interval: cfg.steps.max(1),
                val_samples: 256,
                device,
                threads: 1,
                ..Default::default()
            };
            tc.model.n_layers = cfg.n_layers;
            tc.model.n_heads = cfg.n_heads;
            tc.model.d_model = cfg.d_model;
            tc.model.attention = AttentionConfig { kind: AttentionKind::Softmax, scale: option };
            tc.optimizer.lr = cfg.lr;
            tc.schedule.warmup = (cfg.steps / 10).min(100);
            tc.checkpoints.count = cfg.checkpoints;
            tc.checkpoints.dense_fraction = 0.0;
            let summary =
                headlab_train::train(&tc, &ds, &run_dir, &Default::default()).map_err(|e| other(&run_dir, e))?;
            let popts = headlab_probe::run::ProbeOptions {
                eval_frames: cfg.eval_frames,
                seed: cfg.seed,
                cache_trajectories: 0,
                ..Default::default()
            };
            let ctl = headlab_probe::run::ProbeControl {
                device: tc.device,
                progress: false,
                threads: 1,
                ..Default::default()
            };
            let ps = headlab_probe::run::probe_run(&run_dir, &ds, &data_path, &popts, &ctl)
                .map_err(|e| other(&run_dir, e))?;
            let an = headlab_store::analysis::read_analysis(&ps.analysis_path, false)?;
            let verdict = headlab_analysis::heads::run_verdict(&an, None);
            // The top head (the highest score; heads tied with it within one SE are named too).
            let top: Vec<&headlab_analysis::heads::HeadSummary> =
                verdict.as_ref().map(|v| v.top_heads()).unwrap_or_default();
            let best = top.first().copied();
            let lh = an.n_layers * an.n_heads;
            let emergence_step = an
                .series
                .get(headlab_analysis::series::SeriesKey::ScoreExclNormOverlap.name())
                .and_then(|sc| {
                    an.steps
                        .iter()
                        .enumerate()
                        .find(|(s, _)| sc[s * lh..(s + 1) * lh].iter().any(|&v| v >= 0.5))
                        .map(|(_, &st)| st as i64)
                })
                .unwrap_or(-1);
            let last = summary.checkpoints.last().ok_or_else(|| other(&run_dir, "no checkpoint written"))?;
            let model = Model::load(last, torch_device)?;
            let frames: Vec<(usize, usize)> =
                an.eval_traj.iter().zip(&an.eval_frame).map(|(&t, &f)| (t as usize, f as usize)).collect();
            let sat: Vec<_> = model_saturation(&model, &ds, &frames, cfg.eps, 32)?.into_iter().flatten().collect();
            let mean = |f: fn(&super::Saturation) -> f64| sat.iter().map(f).sum::<f64>() / sat.len().max(1) as f64;
            let p = PhysicsPoint {
                particles: n,
                option,
                run_dir: run_dir.clone(),
                val_ratio: summary.val_loss / summary.baseline_val_loss,
                best_score: best.map(|b| b.score).unwrap_or(f64::NAN),
                best_auroc: best.map(|b| b.auroc).unwrap_or(f64::NAN),
                best_head: if top.is_empty() {
                    "-".into()
                } else {
                    top.iter().map(|b| b.name()).collect::<Vec<_>>().join("=")
                },
                emergence_step,
                frac_saturated: mean(|s| s.frac_saturated),
                entropy_norm: mean(|s| s.entropy_norm),
                jacobian_fro: mean(|s| s.jacobian_fro),
                seconds: t0.elapsed().as_secs_f64(),
            };
            progress(points.len() + 1, total, &p);
            points.push(p);
        }
    }
    Ok(PhysicsScalingReport { config: cfg.clone(), points })
}

type Metric = (&'static str, &'static str, fn(&PhysicsPoint) -> f64);

const METRICS: [Metric; 7] = [
    ("val_ratio", "validation MSE / no-change baseline", |p| p.val_ratio),
    ("best_score", "best head's collision score (excl., normalized)", |p| p.best_score),
    ("best_auroc", "best head's interval AUROC", |p| p.best_auroc),
    ("emergence_step", "first checkpoint with a head's score ≥ 0.5 (−1: none)", |p| p.emergence_step as f64),
    ("frac_saturated", "mean fraction of saturated rows", |p| p.frac_saturated),
    ("entropy_norm", "mean entropy / ln N", |p| p.entropy_norm),
    ("jacobian_fro", "mean ‖softmax Jacobian‖_F", |p| p.jacobian_fro),
];

/// `OUT/scaling_physics.h5` (layout in the module docs).
pub fn write_physics_h5(path: &Path, r: &PhysicsScalingReport) -> Result<(), ScalingError> {
    let c = &r.config;
    let config_toml = c.to_toml()?;
    atomic_write(path, FileKind::Lens, |f| {
        let ctx = Ctx(path);
        set_str_attr(f, path, "lens", "scaling-physics")?;
        set_str_attr(f, path, "config", &config_toml)?;
        let names: Vec<VarLenUnicode> = c
            .options
            .iter()
            .map(|o| {
                o.name().parse().map_err(|e| StoreError::Invalid {
                    path: path.to_path_buf(),
                    key: "options".into(),
                    found: format!("`{o}` ({e})"),
                    expected: "an HDF5 string".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        let a = ctx.h5("options", f.new_attr::<VarLenUnicode>().shape(names.len()).create("options"))?;
        ctx.h5("options", a.write_raw(&names))?;
        write_array(
            f,
            path,
            "particles",
            &c.particles.iter().map(|&n| n as u64).collect::<Vec<_>>(),
            &[c.particles.len()],
        )?;
        let shape = [c.particles.len(), c.options.len()];
        for (name, _, get) in METRICS {
            write_array(f, path, name, &r.points.iter().map(get).collect::<Vec<f64>>(), &shape)?;
        }
        Ok::<(), StoreError>(())
    })?;
    Ok(())
}

/// `OUT/scaling_physics.png` and `OUT/index.html`.
pub fn write_physics_html(dir: &Path, r: &PhysicsScalingReport) -> Result<(), ScalingError> {
    let c = &r.config;
    let out_err = |p: &Path, msg: String| ScalingError::Output { path: p.display().to_string(), msg };
    let shown = [METRICS[0], METRICS[1], METRICS[4], METRICS[5]];
    let file = "scaling_physics.png";
    let p = dir.join(file);
    let panels = shown.map(|(_, desc, get)| {
        let series = c
            .options
            .iter()
            .map(|&o| {
                Series::line(
                    o.name(),
                    r.points.iter().filter(|p| p.option == o).map(|p| (p.particles as f64, get(p))).collect(),
                )
                .marked()
            })
            .collect();
        Panel {
            title: desc.into(),
            x_label: "particles N (= keys)".into(),
            y_label: desc.into(),
            log_x: true,
            series,
            ..Default::default()
        }
    });
    write_png(&p, &panels, panels.len(), (400 * panels.len() as u32, 360)).map_err(|e| out_err(&p, e))?;
    let mut page = Page::new("headlab lens: attention scale options on the physics task");
    page.p(&format!(
        "Attention scale options on the physics task (Bernhard 2023, arXiv 2311.09406). Base scene {} with N ∈ {:?} particles (box scaled to keep the packing fraction); \
         {} trajectories × {} frames each; per option a {}-layer, {}-head, d_model {} model trained for {} steps (batch {}, Adam lr {}), probed on {} frames. \
         This is a tiny budget: it shows which option learns fastest, not which is best when trained out.",
        c.scene, c.particles, c.trajectories, c.frames, c.n_layers, c.n_heads, c.d_model, c.steps, c.batch_size, c.lr, c.eval_frames
    ));
    page.img(file, "validation loss ratio, best collision score, saturation and entropy against the particle count, one line per option");
    let rows: Vec<Vec<String>> = r
        .points
        .iter()
        .map(|p| {
            vec![
                p.particles.to_string(),
                p.option.to_string(),
                num(p.val_ratio),
                format!("{} {}", num(p.best_score), p.best_head),
                num(p.best_auroc),
                if p.emergence_step < 0 { "none".into() } else { p.emergence_step.to_string() },
                num(p.frac_saturated),
                num(p.entropy_norm),
                num(p.jacobian_fro),
                format!("{:.0}", p.seconds),
            ]
        })
        .collect();
    page.table(
        &[
            "N",
            "option",
            "val / baseline",
            "best score (head)",
            "AUROC",
            "score ≥ 0.5 at",
            "saturated",
            "entropy / ln N",
            "‖J‖_F",
            "seconds",
        ],
        &rows,
    );
    Ok(page.write(&dir.join("index.html"))?)
}
