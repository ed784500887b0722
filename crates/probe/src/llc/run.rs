//! LLC over a run's checkpoints: estimates into `RUN/llc.h5` (merged with
//! what is there) and calibration sweeps. The PNG of the result is drawn by
//! [`super::plot`].

use std::path::{Path, PathBuf};

use headlab_analysis::llc_diag::LadderPoint;
use headlab_sim::Dataset;
use headlab_store::checkpoint::list_checkpoints;
use headlab_store::llc::{
    llc_path, read_llc, write_llc, LlcCalibration, LlcSeries, LlcStep, LLC_COLUMNS, LLC_DIAG_COLUMNS,
    LLC_LADDER_COLUMNS,
};
use tch::Device;

use super::model::{llc_for_model, load_checkpoint, CheckpointLlcOptions, CheckpointProblem};
use super::{calibrate, Calibration, LlcError, LlcEstimate, Movable, Progress, Result};

/// Which checkpoints, and how.
#[derive(Debug, Clone)]
pub struct LlcRunOptions {
    /// What to estimate per checkpoint.
    pub checkpoint: CheckpointLlcOptions,
    /// Only these steps (all checkpoints when empty).
    pub steps: Vec<u64>,
    /// At most this many checkpoints, evenly spread (0: all).
    pub max_checkpoints: usize,
    /// Recompute steps already in llc.h5 (otherwise they are skipped).
    pub recompute: bool,
    /// Start llc.h5 afresh even if it was made with other settings.
    pub fresh: bool,
    /// Where to run.
    pub device: Device,
}

impl Default for LlcRunOptions {
    fn default() -> Self {
        LlcRunOptions {
            checkpoint: CheckpointLlcOptions::default(),
            steps: Vec::new(),
            max_checkpoints: 0,
            recompute: false,
            fresh: false,
            device: Device::Cpu,
        }
    }
}

impl LlcRunOptions {
    /// The settings that must match for results to share one file (an
    /// error, never an empty stand-in that would match other settings).
    pub fn settings_toml(&self) -> Result<String> {
        let mut t = toml::to_string(&self.checkpoint.llc).map_err(|e| LlcError::Config {
            key: "(all)".into(),
            value: format!("{:?}", self.checkpoint.llc),
            expected: format!("settings that can be written as TOML ({e}); report this as a bug"),
        })?;
        t.push_str(&format!("per_head = {}\nloss = \"{}\"\n", self.checkpoint.per_head, self.checkpoint.loss.name()));
        if let Some(lc) = &self.checkpoint.ladder {
            let l = toml::to_string(lc).map_err(|e| LlcError::Config {
                key: "ladder".into(),
                value: format!("{lc:?}"),
                expected: format!("settings that can be written as TOML ({e}); report this as a bug"),
            })?;
            t.push_str("\n[ladder]\n");
            t.push_str(&l);
        }
        Ok(t)
    }
}

#[derive(Debug, Clone)]
/// What an LLC run did.
pub struct LlcRunSummary {
    /// The `llc.h5` written.
    pub path: PathBuf,
    /// Steps estimated by this call.
    pub estimated: Vec<u64>,
    /// Checkpoints skipped (already in llc.h5, or not selected).
    pub skipped: usize,
    /// (step, warning) pairs of this call.
    pub warnings: Vec<(u64, String)>,
}

fn run_err(path: &Path, msg: impl std::fmt::Display) -> LlcError {
    LlcError::Problem(format!("{}: {msg}", path.display()))
}

/// The checkpoints to estimate: `steps` if given, else all, thinned to
/// `max` evenly spread ones (first and last kept).
pub fn select_checkpoints(all: &[(u64, PathBuf)], steps: &[u64], max: usize) -> Result<Vec<(u64, PathBuf)>> {
    let mut v: Vec<(u64, PathBuf)> = if steps.is_empty() {
        all.to_vec()
    } else {
        let mut out = Vec::new();
        for s in steps {
            let c = all.iter().find(|(x, _)| x == s).ok_or_else(|| {
                LlcError::Problem(format!(
                    "no checkpoint at step {s}; the run has steps {:?}",
                    all.iter().map(|x| x.0).collect::<Vec<_>>()
                ))
            })?;
            out.push(c.clone());
        }
        out
    };
    if max > 0 && v.len() > max {
        let n = v.len();
        let idx: Vec<usize> = (0..max).map(|i| if max == 1 { n - 1 } else { i * (n - 1) / (max - 1) }).collect();
        v = idx.into_iter().map(|i| v[i].clone()).collect();
        v.dedup();
    }
    Ok(v)
}

fn f32s(trace: &[Vec<f64>]) -> Vec<f32> {
    trace.iter().flatten().map(|&x| x as f32).collect()
}

fn columns(e: &LlcEstimate) -> [f64; 5] {
    [e.llc, e.se, e.std, e.llc_all_steps, e.llc_unpaired]
}

/// The values of [`LLC_DIAG_COLUMNS`].
fn diag_columns(e: &LlcEstimate) -> [f64; 5] {
    let d = &e.diagnosis;
    [e.config.epsilon, e.config.gamma, d.rhat, d.drift, d.drift_z]
}

/// The values of [`LLC_LADDER_COLUMNS`] of one ladder, column by column.
fn ladder_columns(l: &[LadderPoint]) -> [Vec<f64>; 5] {
    [
        l.iter().map(|p| p.epsilon).collect(),
        l.iter().map(|p| p.gamma).collect(),
        l.iter().map(|p| p.llc).collect(),
        l.iter().map(|p| p.se).collect(),
        l.iter().map(|p| p.n_failed as f64).collect(),
    ]
}

/// Estimate the LLC at the run's checkpoints and merge into `RUN/llc.h5`.
/// `progress` receives SGLD steps (see [`super::model::steps_per_checkpoint`]).
pub fn llc_run(run_dir: &Path, ds: &Dataset, opts: &LlcRunOptions, progress: Progress<'_>) -> Result<LlcRunSummary> {
    let path = llc_path(run_dir);
    if !opts.fresh {
        return llc_into(run_dir, ds, opts, progress, &path);
    }
    // --fresh builds the new file beside the old one and swaps them only at
    // the end: a failure half-way keeps the old estimates.
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let beside = path.with_file_name(format!(".{name}.fresh"));
    let r = llc_into(run_dir, ds, opts, progress, &beside).and_then(|mut s| {
        if beside.exists() {
            std::fs::rename(&beside, &path)
                .map_err(|e| run_err(&path, format!("cannot replace it with {}: {e}", beside.display())))?;
        }
        s.path = path.clone();
        Ok(s)
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&beside);
    }
    r
}

/// [`llc_run`] writing to `target` (the run's llc.h5, or the file that
/// --fresh builds beside it).
fn llc_into(
    run_dir: &Path,
    ds: &Dataset,
    opts: &LlcRunOptions,
    progress: Progress<'_>,
    target: &Path,
) -> Result<LlcRunSummary> {
    opts.checkpoint.llc.validate()?;
    let path = target.to_path_buf();
    let all = list_checkpoints(run_dir).map_err(|e| run_err(run_dir, e))?;
    if all.is_empty() {
        return Err(run_err(run_dir, "no checkpoints in ckpt/; train the run first (headlab train)"));
    }
    let chosen = select_checkpoints(&all, &opts.steps, opts.max_checkpoints)?;
    let settings = opts.settings_toml()?;
    let mut series: Option<LlcSeries> = None;
    if path.exists() && !opts.fresh {
        let s = read_llc(&path).map_err(|e| run_err(&path, e))?;
        if s.steps.is_empty() {
            // Only a calibration so far: keep it, take the new settings.
            series = Some(LlcSeries { calibration: s.calibration, ..Default::default() });
        } else if s.config_toml != settings {
            return Err(run_err(
                &path,
                format!(
                    "holds estimates made with other settings:\n{}\nnow:\n{}\npass --fresh to start over, or use the same settings",
                    s.config_toml, settings
                ),
            ));
        } else {
            series = Some(s);
        }
    }
    let mut summary = LlcRunSummary { path: path.clone(), estimated: Vec::new(), skipped: 0, warnings: Vec::new() };
    for (step, ck) in chosen {
        if !opts.recompute && series.as_ref().is_some_and(|s| s.steps.contains(&step)) {
            summary.skipped += 1;
            continue;
        }
        let (step_read, model, data) = load_checkpoint(&ck, ds, opts.device)?;
        debug_assert_eq!(step_read, step);
        let r = llc_for_model(step, &model, &data, &opts.checkpoint, progress)?;
        let fresh = || LlcSeries {
            config_toml: settings.clone(),
            n_layers: r.n_layers,
            n_heads: r.n_heads,
            chains: opts.checkpoint.llc.chains,
            trace_len: r.whole.delta_trace.first().map_or(0, |t| t.len()),
            trace_block: r.whole.trace_block,
            per_head: opts.checkpoint.per_head,
            ladder_len: opts.checkpoint.ladder.as_ref().map_or(0, |lc| lc.max_rungs(opts.checkpoint.llc.gamma)),
            ..Default::default()
        };
        let s = series.get_or_insert_with(fresh);
        if s.steps.is_empty() {
            let cal = s.calibration.take();
            *s = LlcSeries { calibration: cal, ..fresh() };
        }
        let mut warnings: Vec<String> = r.whole.warnings.iter().map(|w| format!("whole model: {w}")).collect();
        let mut rec = LlcStep {
            step,
            n_samples: r.whole.n_samples as u64,
            n_beta: r.whole.n_beta,
            model: LLC_COLUMNS.iter().map(|c| c.to_string()).zip(columns(&r.whole)).collect(),
            model_failed: r.whole.n_failed() as u32,
            model_delta_trace: f32s(&r.whole.delta_trace),
            model_loss_trace: f32s(&r.whole.loss_trace),
            model_diag: LLC_DIAG_COLUMNS.iter().map(|c| c.to_string()).zip(diag_columns(&r.whole)).collect(),
            model_flags: r.whole.diagnosis.bits(),
            model_ladder: LLC_LADDER_COLUMNS
                .iter()
                .map(|c| c.to_string())
                .zip(ladder_columns(&r.whole_ladder))
                .collect(),
            ..Default::default()
        };
        if opts.checkpoint.per_head {
            for (i, c) in LLC_COLUMNS.iter().enumerate() {
                rec.heads.insert(c.to_string(), r.heads.iter().map(|e| columns(e)[i]).collect());
            }
            rec.heads_failed = r.heads.iter().map(|e| e.n_failed() as u32).collect();
            rec.heads_delta_trace = r.heads.iter().flat_map(|e| f32s(&e.delta_trace)).collect();
            for (i, c) in LLC_DIAG_COLUMNS.iter().enumerate() {
                rec.heads_diag.insert(c.to_string(), r.heads.iter().map(|e| diag_columns(e)[i]).collect());
            }
            rec.heads_flags = r.heads.iter().map(|e| e.diagnosis.bits()).collect();
            if s.ladder_len > 0 {
                // Each head's ladder padded to the series' length.
                for (i, c) in LLC_LADDER_COLUMNS.iter().enumerate() {
                    let v: Vec<f64> = r
                        .heads_ladder
                        .iter()
                        .flat_map(|l| {
                            let mut col = ladder_columns(l)[i].clone();
                            col.resize(s.ladder_len, f64::NAN);
                            col
                        })
                        .collect();
                    rec.heads_ladder.insert(c.to_string(), v);
                }
            }
            for (i, e) in r.heads.iter().enumerate() {
                for w in &e.warnings {
                    warnings.push(format!("head {}.{}: {w}", i / r.n_heads, i % r.n_heads));
                }
            }
        }
        rec.warnings = warnings.join("\n");
        s.add_step(rec).map_err(|e| run_err(&path, e))?;
        write_llc(&path, s).map_err(|e| run_err(&path, e))?;
        summary.warnings.extend(warnings.into_iter().map(|w| (step, w)));
        summary.estimated.push(step);
        tracing::info!("step {step}: LLC {:.3} ± {:.3} {}", r.whole.llc, r.whole.se, r.whole.diagnosis.codes());
    }
    Ok(summary)
}

/// Sweep ε × γ at one checkpoint (whole model, or one head given as
/// (layer, head)), store it in `RUN/llc.h5` (creating the file if needed)
/// and return it.
#[allow(clippy::too_many_arguments)]
pub fn calibrate_run(
    run_dir: &Path,
    ds: &Dataset,
    opts: &LlcRunOptions,
    step: Option<u64>,
    head: Option<(usize, usize)>,
    epsilons: &[f64],
    gammas: &[f64],
    progress: Progress<'_>,
) -> Result<(u64, Calibration)> {
    let all = list_checkpoints(run_dir).map_err(|e| run_err(run_dir, e))?;
    let (step, ck) = match step {
        Some(s) => select_checkpoints(&all, &[s], 0)?.remove(0),
        None => all.last().cloned().ok_or_else(|| run_err(run_dir, "no checkpoints in ckpt/; train the run first"))?,
    };
    let (_, model, data) = load_checkpoint(&ck, ds, opts.device)?;
    let cfg = &opts.checkpoint.llc;
    let w_star = [model.flat_params().detach().copy()];
    let problem = CheckpointProblem::new(&model, &data, cfg.batch_size, cfg.seed, opts.checkpoint.loss)?;
    let cal = match head {
        None => calibrate(&problem, &w_star, &[Movable::All], cfg, epsilons, gammas, progress)?,
        Some((l, h)) => {
            let (problem, mask) = problem.for_head(&model, l, h)?;
            calibrate(&problem, &w_star, &[Movable::Mask(mask)], cfg, epsilons, gammas, progress)?
        }
    };
    let path = llc_path(run_dir);
    let mut series = if path.exists() {
        read_llc(&path).map_err(|e| run_err(&path, e))?
    } else {
        LlcSeries {
            config_toml: opts.settings_toml()?,
            n_layers: model.config.n_layers,
            n_heads: model.config.n_heads,
            chains: cfg.chains,
            per_head: opts.checkpoint.per_head,
            ..Default::default()
        }
    };
    let mut eps: Vec<f64> = epsilons.to_vec();
    eps.sort_by(|a, b| a.total_cmp(b));
    eps.dedup();
    let find = |e: f64, g: f64| cal.points.iter().find(|p| p.rung.epsilon == e && p.rung.gamma == g);
    // A grid point that was not swept is drawn as missing (NaN).
    let grid = |f: &dyn Fn(&super::CalibrationPoint) -> f64| -> Vec<f64> {
        gammas
            .iter()
            .flat_map(|&g| eps.iter().map(move |&e| (g, e)))
            .map(|(g, e)| find(e, g).map_or(f64::NAN, f))
            .collect()
    };
    series.calibration = Some(LlcCalibration {
        step,
        epsilon: eps.clone(),
        gamma: gammas.to_vec(),
        llc: grid(&|p| p.rung.llc),
        se: grid(&|p| p.rung.se),
        n_failed: grid(&|p| p.rung.n_failed as f64).into_iter().map(|x| x as u32).collect(),
        recommended: cal.recommended,
        note: cal.note.clone(),
    });
    write_llc(&path, &series).map_err(|e| run_err(&path, e))?;
    Ok((step, cal))
}
