//! Saturation diagnostics of a physics run (`headlab lens scaling --run RUN`).
//!
//! For every checkpoint of a run, the model's attention patterns
//! (`hook_pattern`) on a fixed set of evaluation frames give, per layer and
//! head, the diagnostics of [`super::saturation`]: the fraction of query rows
//! whose largest weight exceeds 1 − ε, the mean Frobenius norm of the softmax
//! Jacobian diag(p) − ppᵀ, the mean entropy (nats and / ln N) and the mean
//! largest weight. The evaluation frames are the probe's (`RUN/analysis.h5`,
//! `eval_traj`/`eval_frame`) when the run has been probed, else drawn the same
//! way from its validation trajectories.
//!
//! ```text
//! RUN/lens_scaling.h5  attrs: kind="lens", lens="scaling-run", config (run TOML), scale, eps,
//!                             n_layers, n_heads, n_particles, frames_source
//! /steps                      [S] u64
//! /eval_traj, /eval_frame     [F] u32
//! /val_loss                   [S] f64 (from the checkpoints; NaN when absent)
//! /series/<metric>            [S, L, H] f64  frac_saturated, jacobian_fro, entropy,
//!                                            entropy_norm, max_weight
//! ```

use std::path::{Path, PathBuf};

use headlab_model::{AttentionKind, Model, State};
use headlab_sim::Dataset;
use headlab_store::checkpoint::list_checkpoints;
use headlab_store::h5util::{set_attr, set_str_attr, write_array, Ctx};
use headlab_store::{atomic_write, FileKind, StoreError};
use tch::{Device, Tensor};

use super::{saturation_per_head, Saturation, ScalingError};
use crate::plot::{num, write_png, xy, Panel, Series};
use headlab_store::html::Page;

/// Options of the run diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSaturationOptions {
    /// A row is saturated when its largest weight exceeds 1 − eps.
    pub eps: f64,
    /// Evaluation frames drawn when the run has no analysis.h5.
    pub eval_frames: usize,
    /// Seed of that draw (the probe's default is 0).
    pub seed: u64,
    /// Frames per forward pass.
    pub batch: usize,
    /// At most this many checkpoints, evenly spaced over the run's list
    /// (first and last kept); 0 = all.
    pub max_checkpoints: usize,
    /// Where to run the model.
    pub device: Device,
}

impl Default for RunSaturationOptions {
    fn default() -> Self {
        Self { eps: 0.01, eval_frames: 128, seed: 0, batch: 32, max_checkpoints: 0, device: Device::Cpu }
    }
}

/// The diagnostics of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSaturation {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The run's config as TOML.
    pub config_toml: String,
    /// The run's attention scale option (kebab-case name).
    pub scale: String,
    /// A row is saturated when its largest weight exceeds 1 − eps.
    pub eps: f64,
    /// Layers of the model.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// Particles per frame.
    pub n_particles: usize,
    /// "analysis.h5" or "validation draw".
    pub frames_source: String,
    /// (trajectory, frame) evaluated.
    pub frames: Vec<(usize, usize)>,
    /// Checkpoint steps evaluated.
    pub steps: Vec<u64>,
    /// Validation loss at each of them (NaN when not recorded).
    pub val_loss: Vec<f64>,
    /// [step][layer][head].
    pub sat: Vec<Vec<Vec<Saturation>>>,
}

impl RunSaturation {
    /// Metric (see [`METRICS`]) of one head over the steps.
    pub fn series(&self, get: fn(&Saturation) -> f64, layer: usize, head: usize) -> Vec<f64> {
        self.sat.iter().map(|s| get(&s[layer][head])).collect()
    }
}

type Metric = (&'static str, &'static str, fn(&Saturation) -> f64);

/// Stored metrics: (name, description, getter).
pub const METRICS: [Metric; 5] = [
    ("frac_saturated", "fraction of saturated rows (max weight > 1 − ε)", |s| s.frac_saturated),
    ("jacobian_fro", "mean ‖softmax Jacobian‖_F", |s| s.jacobian_fro),
    ("entropy", "mean attention entropy (nats)", |s| s.entropy),
    ("entropy_norm", "mean entropy / ln N", |s| s.entropy_norm),
    ("max_weight", "mean largest weight", |s| s.max_weight),
];

fn run_err(path: &Path, msg: impl Into<String>) -> ScalingError {
    ScalingError::Run { path: path.display().to_string(), msg: msg.into() }
}

/// The evaluation frames: the probe's if the run was probed, else a seeded
/// draw from the validation trajectories (as `headlab probe` would make).
fn eval_frames(
    run_dir: &Path,
    ds: &Dataset,
    opts: &RunSaturationOptions,
) -> Result<(Vec<(usize, usize)>, String), ScalingError> {
    let apath = run_dir.join("analysis.h5");
    if apath.exists() {
        let an = headlab_store::analysis::read_analysis(&apath, false)?;
        let frames: Vec<(usize, usize)> =
            an.eval_traj.iter().zip(&an.eval_frame).map(|(&t, &f)| (t as usize, f as usize)).collect();
        if let Some(&(t, f)) = frames.iter().find(|&&(t, f)| t >= ds.n_traj || f >= ds.n_frames) {
            return Err(run_err(&apath, format!("evaluation frame (traj {t}, frame {f}) is not in the dataset; was the run probed on another dataset? pass the run's dataset with --data")));
        }
        if !frames.is_empty() {
            return Ok((frames, "analysis.h5".into()));
        }
    }
    let val = headlab_probe::run::eval_trajectories(run_dir, ds).map_err(|e| run_err(run_dir, e.to_string()))?;
    Ok((headlab_analysis::evalset::choose_eval_frames(ds, &val, opts.eval_frames, opts.seed), "validation draw".into()))
}

/// Evenly thinned list (first and last kept).
fn thin<T: Clone>(v: &[T], max: usize) -> Vec<T> {
    if max == 0 || v.len() <= max {
        return v.to_vec();
    }
    let max = max.max(2);
    let mut idx: Vec<usize> =
        (0..max).map(|i| ((i as f64) * (v.len() - 1) as f64 / (max - 1) as f64).round() as usize).collect();
    idx.dedup();
    idx.into_iter().map(|i| v[i].clone()).collect()
}

/// Per-head saturation diagnostics of one model on the given frames.
pub fn model_saturation(
    model: &Model,
    ds: &Dataset,
    frames: &[(usize, usize)],
    eps: f64,
    batch: usize,
) -> Result<Vec<Vec<Saturation>>, ScalingError> {
    let nl = model.config.n_layers;
    let mut pats: Vec<Vec<Tensor>> = (0..nl).map(|_| Vec::new()).collect();
    tch::no_grad(|| -> Result<(), ScalingError> {
        for chunk in frames.chunks(batch.max(1)) {
            let s = State::from_dataset(ds, chunk, model.device());
            let (_, cache) =
                model.run_with_cache(&model.norm.features(&s), |name| name.ends_with(".attn.hook_pattern"))?;
            for (l, p) in pats.iter_mut().enumerate() {
                if let Some(t) = cache.pattern(l) {
                    p.push(t.shallow_clone());
                }
            }
        }
        Ok(())
    })?;
    Ok(pats.iter().map(|p| saturation_per_head(&Tensor::cat(p, 0), eps)).collect())
}

/// Diagnostics on every checkpoint of the run in `run_dir` (trained on `ds`).
pub fn run_saturation(
    run_dir: &Path,
    ds: &Dataset,
    opts: &RunSaturationOptions,
) -> Result<RunSaturation, ScalingError> {
    if !(opts.eps > 0.0 && opts.eps < 1.0) {
        return Err(super::bad("eps", opts.eps, "use a small positive number such as 0.01"));
    }
    let ckpts = thin(&list_checkpoints(run_dir)?, opts.max_checkpoints);
    if ckpts.is_empty() {
        return Err(run_err(run_dir, "holds no checkpoints (ckpt/step_*.h5); train it first with headlab train"));
    }
    let (frames, frames_source) = eval_frames(run_dir, ds, opts)?;
    if frames.is_empty() {
        return Err(run_err(
            run_dir,
            "no evaluation frames (the dataset has no validation frames?); raise --eval-frames",
        ));
    }
    let mut out = RunSaturation {
        run_dir: run_dir.to_path_buf(),
        config_toml: String::new(),
        scale: String::new(),
        eps: opts.eps,
        n_layers: 0,
        n_heads: 0,
        n_particles: ds.n_particles,
        frames_source,
        frames: frames.clone(),
        steps: vec![],
        val_loss: vec![],
        sat: vec![],
    };
    for (step, path) in &ckpts {
        let ck = headlab_store::checkpoint::read_checkpoint(path)?;
        let model = Model::from_checkpoint(&ck, opts.device, &path.display().to_string())?;
        let c = &model.config;
        if c.attention.kind != AttentionKind::Softmax {
            return Err(run_err(path, "uses linear attention: its weights are not a softmax distribution, so saturation diagnostics do not apply"));
        }
        if model.norm.dimension != ds.dim() {
            return Err(run_err(
                path,
                format!(
                    "is a {}-D model but the dataset is {}-D; pass the run's dataset with --data",
                    model.norm.dimension,
                    ds.dim()
                ),
            ));
        }
        if out.steps.is_empty() {
            out.config_toml = ck.config_toml.clone();
            out.scale = c.attention.scale.name().to_string();
            out.n_layers = c.n_layers;
            out.n_heads = c.n_heads;
        } else if (c.n_layers, c.n_heads) != (out.n_layers, out.n_heads) {
            return Err(run_err(
                path,
                format!("has {}×{} heads, earlier checkpoints {}×{}", c.n_layers, c.n_heads, out.n_layers, out.n_heads),
            ));
        }
        out.sat.push(model_saturation(&model, ds, &frames, opts.eps, opts.batch)?);
        out.steps.push(*step);
        out.val_loss.push(ck.scalars.iter().find(|(n, _)| n == "val_loss").map(|(_, v)| *v).unwrap_or(f64::NAN));
    }
    Ok(out)
}

/// Write `path` (normally RUN/lens_scaling.h5); layout in the module docs.
pub fn write_run_h5(path: &Path, r: &RunSaturation) -> Result<(), ScalingError> {
    atomic_write(path, FileKind::Lens, |f| {
        let ctx = Ctx(path);
        set_str_attr(f, path, "lens", "scaling-run")?;
        set_str_attr(f, path, "config", &r.config_toml)?;
        set_str_attr(f, path, "scale", &r.scale)?;
        set_str_attr(f, path, "frames_source", &r.frames_source)?;
        set_attr(f, path, "eps", r.eps)?;
        set_attr(f, path, "n_layers", r.n_layers as u64)?;
        set_attr(f, path, "n_heads", r.n_heads as u64)?;
        set_attr(f, path, "n_particles", r.n_particles as u64)?;
        let s = r.steps.len();
        write_array(f, path, "steps", &r.steps, &[s])?;
        write_array(f, path, "val_loss", &r.val_loss, &[s])?;
        let nf = r.frames.len();
        write_array(f, path, "eval_traj", &r.frames.iter().map(|x| x.0 as u32).collect::<Vec<_>>(), &[nf])?;
        write_array(f, path, "eval_frame", &r.frames.iter().map(|x| x.1 as u32).collect::<Vec<_>>(), &[nf])?;
        let g = ctx.h5("series", f.create_group("series"))?;
        for (name, _, get) in METRICS {
            let v: Vec<f64> = r.sat.iter().flat_map(|st| st.iter().flat_map(|l| l.iter().map(get))).collect();
            write_array(&g, path, name, &v, &[s, r.n_layers, r.n_heads])?;
        }
        Ok::<(), StoreError>(())
    })?;
    Ok(())
}

/// `dir/scaling_run.png` (one panel per metric, one line per head, against
/// the training step) and `dir/index.html` (the figure and a final-step table).
pub fn write_run_html(dir: &Path, r: &RunSaturation) -> Result<(), ScalingError> {
    let out_err = |p: &Path, msg: String| ScalingError::Output { path: p.display().to_string(), msg };
    std::fs::create_dir_all(dir).map_err(|e| out_err(dir, e.to_string()))?;
    let shown: Vec<Metric> = METRICS.iter().copied().filter(|m| m.0 != "entropy" && m.0 != "max_weight").collect();
    let file = "scaling_run.png";
    let p = dir.join(file);
    // Step 0 cannot sit on a log axis: plot step + 1.
    let xs: Vec<f64> = r.steps.iter().map(|&s| s as f64 + 1.0).collect();
    let panels: Vec<Panel> = shown
        .iter()
        .map(|&(_, desc, get)| {
            let series = (0..r.n_layers)
                .flat_map(|l| (0..r.n_heads).map(move |h| (l, h)))
                .map(|(l, h)| Series::line(format!("L{l}.H{h}"), xy(&xs, r.series(get, l, h))).marked())
                .collect();
            Panel {
                title: desc.into(),
                x_label: "training step + 1".into(),
                y_label: desc.into(),
                log_x: true,
                series,
                ..Default::default()
            }
        })
        .collect();
    write_png(&p, &panels, panels.len(), (420 * panels.len() as u32, 380)).map_err(|e| out_err(&p, e))?;
    let mut page = Page::new("headlab lens: attention saturation of a run");
    page.p(&format!(
        "Softmax saturation of the run {} (attention scale {}, {} particles) on {} evaluation frames ({}). \
         A query row is saturated when its largest weight exceeds 1 − ε = {}; ‖J‖_F is the Frobenius norm of the softmax Jacobian \
         diag(p) − ppᵀ, which vanishes for one-hot rows (no gradient reaches q·k) and is √(N−1)/N for uniform rows.",
        r.run_dir.display(),
        r.scale,
        r.n_particles,
        r.frames.len(),
        r.frames_source,
        1.0 - r.eps
    ));
    page.img(file, "saturated fraction, Jacobian norm and normalized entropy per head against the training step");
    if let Some(last) = r.sat.last() {
        page.h(2, &format!("At step {}", r.steps.last().copied().unwrap_or(0)));
        let rows: Vec<Vec<String>> = (0..r.n_layers)
            .flat_map(|l| (0..r.n_heads).map(move |h| (l, h)))
            .map(|(l, h)| {
                let s = &last[l][h];
                vec![
                    format!("L{l}.H{h}"),
                    num(s.frac_saturated),
                    num(s.max_weight),
                    num(s.jacobian_fro),
                    num(s.entropy),
                    num(s.entropy_norm),
                ]
            })
            .collect();
        page.table(&["head", "saturated", "max weight", "‖J‖_F", "entropy", "entropy / ln N"], &rows);
    }
    Ok(page.write(&dir.join("index.html"))?)
}
