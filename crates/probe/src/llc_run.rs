//! LLC over a run's checkpoints: estimates into `RUN/llc.h5` (merged with
//! what is there), calibration sweeps, and a PNG of the series, the chains'
//! traces and the calibration.

use std::path::{Path, PathBuf};

use headlab_sim::Dataset;
use headlab_store::checkpoint::list_checkpoints;
use headlab_store::llc::{llc_path, read_llc, write_llc, LlcCalibration, LlcSeries, LlcStep, LLC_COLUMNS};
use plotters::prelude::*;
use tch::Device;

use super::model::{head_mask, llc_for_model, load_checkpoint, CheckpointLlcOptions, CheckpointProblem};
use super::{calibrate, Calibration, LlcError, LlcEstimate, Movable, Progress, Result};

/// Which checkpoints, and how.
#[derive(Debug, Clone)]
pub struct LlcRunOptions {
    pub checkpoint: CheckpointLlcOptions,
    /// Only these steps (all checkpoints when empty).
    pub steps: Vec<u64>,
    /// At most this many checkpoints, evenly spread (0: all).
    pub max_checkpoints: usize,
    /// Recompute steps already in llc.h5 (otherwise they are skipped).
    pub recompute: bool,
    /// Start llc.h5 afresh even if it was made with other settings.
    pub fresh: bool,
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
    /// The settings that must match for results to share one file.
    pub fn settings_toml(&self) -> String {
        let mut t = toml::to_string(&self.checkpoint.llc).unwrap_or_default();
        t.push_str(&format!("per_head = {}\n", self.checkpoint.per_head));
        t
    }
}

#[derive(Debug, Clone)]
pub struct LlcRunSummary {
    pub path: PathBuf,
    pub estimated: Vec<u64>,
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

/// Estimate the LLC at the run's checkpoints and merge into `RUN/llc.h5`.
/// `progress` receives SGLD steps (see [`super::model::steps_per_checkpoint`]).
pub fn llc_run(run_dir: &Path, ds: &Dataset, opts: &LlcRunOptions, progress: Progress<'_>) -> Result<LlcRunSummary> {
    opts.checkpoint.llc.validate()?;
    let path = llc_path(run_dir);
    let all = list_checkpoints(run_dir).map_err(|e| run_err(run_dir, e))?;
    if all.is_empty() {
        return Err(run_err(run_dir, "no checkpoints in ckpt/; train the run first (headlab train)"));
    }
    let chosen = select_checkpoints(&all, &opts.steps, opts.max_checkpoints)?;
    let settings = opts.settings_toml();
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
            ..Default::default()
        };
        if opts.checkpoint.per_head {
            for (i, c) in LLC_COLUMNS.iter().enumerate() {
                rec.heads.insert(c.to_string(), r.heads.iter().map(|e| columns(e)[i]).collect());
            }
            rec.heads_failed = r.heads.iter().map(|e| e.n_failed() as u32).collect();
            rec.heads_delta_trace = r.heads.iter().flat_map(|e| f32s(&e.delta_trace)).collect();
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
        tracing::info!("step {step}: LLC {:.3} ± {:.3}", r.whole.llc, r.whole.se);
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
    let problem = CheckpointProblem::new(&model, &data, cfg.batch_size, cfg.seed)?;
    let cal = match head {
        None => calibrate(&problem, &w_star, &[Movable::All], cfg, epsilons, gammas, progress)?,
        Some((l, h)) => {
            let (mask, names) = head_mask(&model, l, h)?;
            let problem = problem.with_grad_params(&model, &names)?;
            calibrate(&problem, &w_star, &[Movable::Mask(mask)], cfg, epsilons, gammas, progress)?
        }
    };
    let path = llc_path(run_dir);
    let mut series = if path.exists() {
        read_llc(&path).map_err(|e| run_err(&path, e))?
    } else {
        LlcSeries {
            config_toml: opts.settings_toml(),
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
    let find = |e: f64, g: f64| cal.points.iter().find(|p| p.epsilon == e && p.gamma == g).expect("swept");
    let grid = |f: &dyn Fn(&super::CalibrationPoint) -> f64| -> Vec<f64> {
        gammas.iter().flat_map(|&g| eps.iter().map(move |&e| (g, e))).map(|(g, e)| f(find(e, g))).collect()
    };
    series.calibration = Some(LlcCalibration {
        step,
        epsilon: eps.clone(),
        gamma: gammas.to_vec(),
        llc: grid(&|p| p.llc),
        se: grid(&|p| p.se),
        n_failed: grid(&|p| p.n_failed as f64).into_iter().map(|x| x as u32).collect(),
        recommended: cal.recommended,
        note: cal.note.clone(),
    });
    write_llc(&path, &series).map_err(|e| run_err(&path, e))?;
    Ok((step, cal))
}

type DResult = std::result::Result<(), Box<dyn std::error::Error>>;


/// Draw `RUN/llc.h5` as a PNG: the LLC over checkpoints (whole model with
/// ±2 se, and each head), the chains' traces at the last checkpoint, and the
/// calibration sweep when there is one.
pub fn plot_llc(series: &LlcSeries, out: &Path) -> Result<()> {
    draw(series, out).map_err(|e| LlcError::Problem(format!("{}: cannot draw the plot: {e}", out.display())))
}

fn draw(s: &LlcSeries, out: &Path) -> DResult {
    let series_panels = if s.steps.is_empty() { 0 } else { 2 };
    let panels = series_panels + s.calibration.is_some() as usize;
    let root = BitMapBackend::new(out, (520 * panels.max(1) as u32, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.max(1)));
    if series_panels > 0 {
        draw_series(s, &areas[0], &areas[1])?;
    }
    if let Some(cal) = &s.calibration {
        draw_calibration(cal, &areas[series_panels])?;
    }
    root.present()?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_series(s: &LlcSeries, a0: &Area, a1: &Area) -> DResult {
    // 1. LLC over training steps.
    {
        let a = a0;
        let llc = s.model_column("llc").unwrap_or(&[]);
        let se = s.model_column("se").unwrap_or(&[]);
        let xs: Vec<f64> = s.steps.iter().map(|&x| (x.max(1)) as f64).collect();
        let mut ymax = llc.iter().zip(se).map(|(v, e)| v + 2.0 * e.max(0.0)).filter(|v| v.is_finite()).fold(0.0, f64::max);
        let mut ymin = llc.iter().cloned().filter(|v| v.is_finite()).fold(0.0, f64::min);
        if s.per_head {
            for l in 0..s.n_layers {
                for h in 0..s.n_heads {
                    for v in s.head_column("llc", l, h).unwrap_or_default() {
                        if v.is_finite() {
                            ymax = ymax.max(v);
                            ymin = ymin.min(v);
                        }
                    }
                }
            }
        }
        let (x0, x1) = (xs.first().cloned().unwrap_or(1.0), xs.last().cloned().unwrap_or(10.0).max(xs.first().cloned().unwrap_or(1.0) * 1.5));
        let mut chart = ChartBuilder::on(a)
            .caption("LLC over training", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d((x0..x1).log_scale(), ymin * 1.05..(ymax * 1.1).max(1e-6))?;
        chart.configure_mesh().x_desc("training step").y_desc("LLC (nβ·E[ΔL])").draw()?;
        if s.per_head {
            for l in 0..s.n_layers {
                for h in 0..s.n_heads {
                    let c = Palette99::pick(1 + l * s.n_heads + h).to_rgba();
                    let v = s.head_column("llc", l, h).unwrap_or_default();
                    chart
                        .draw_series(LineSeries::new(xs.iter().cloned().zip(v).filter(|p| p.1.is_finite()), c.stroke_width(1)))?
                        .label(format!("head {l}.{h}"))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c));
                }
            }
        }
        let pts: Vec<(f64, f64, f64)> = xs
            .iter()
            .zip(llc)
            .zip(se)
            .filter(|((_, v), _)| v.is_finite())
            .map(|((&x, &v), &e)| (x, v, if e.is_finite() { 2.0 * e } else { 0.0 }))
            .collect();
        chart.draw_series(pts.iter().map(|&(x, v, e)| PathElement::new(vec![(x, v - e), (x, v + e)], BLACK.stroke_width(1))))?;
        chart
            .draw_series(pts.iter().map(|&(x, v, _)| Circle::new((x, v), 3, BLACK.filled())))?
            .label("whole model ± 2 se")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
        chart.draw_series(LineSeries::new(xs.iter().cloned().zip(llc.iter().cloned()).filter(|p| p.1.is_finite()), BLACK.stroke_width(2)))?;
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).position(SeriesLabelPosition::UpperLeft).draw()?;
    }
    // 2. Traces of the last checkpoint.
    {
        let a = a1;
        let (c, t) = (s.chains, s.trace_len);
        let last = s.steps.len().saturating_sub(1);
        let tr: Vec<f32> = if s.steps.is_empty() || t == 0 { vec![] } else { s.model.delta_trace[last * c * t..(last + 1) * c * t].to_vec() };
        let fin = tr.iter().cloned().filter(|v| v.is_finite());
        let (lo, hi) = fin.fold((0f32, 0f32), |(a, b), v| (a.min(v), b.max(v)));
        let xmax = (t * s.trace_block.max(1)) as f64;
        let title = match s.steps.get(last) {
            Some(st) => format!("chains at step {st}: nβ·ΔL per draw"),
            None => "chains".into(),
        };
        let mut chart = ChartBuilder::on(a)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..xmax.max(1.0), (lo as f64 * 1.1 - 1e-6)..(hi as f64 * 1.1 + 1e-6))?;
        chart.configure_mesh().x_desc("SGLD draw").y_desc("nβ·(L_B(w) − L_B(w*))").draw()?;
        for ch in 0..c {
            let col = Palette99::pick(ch).to_rgba();
            let pts: Vec<(f64, f64)> = (0..t)
                .map(|i| (((i + 1) * s.trace_block.max(1)) as f64, tr.get(ch * t + i).copied().unwrap_or(f32::NAN) as f64))
                .filter(|p| p.1.is_finite())
                .collect();
            chart.draw_series(LineSeries::new(pts, col.stroke_width(1)))?.label(format!("chain {ch}")).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col));
        }
        if let Some(&v) = s.model_column("llc").and_then(|v| v.get(last)) {
            if v.is_finite() {
                chart.draw_series(LineSeries::new(vec![(0.0, v), (xmax, v)], BLACK.stroke_width(2)))?.label("estimate").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
            }
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).position(SeriesLabelPosition::LowerRight).draw()?;
    }
    Ok(())
}

fn draw_calibration(cal: &LlcCalibration, a: &Area) -> DResult {
    {
        let e = cal.epsilon.len();
        let fin: Vec<f64> = cal.llc.iter().zip(&cal.se).map(|(v, s)| v + 2.0 * s.max(0.0)).filter(|v| v.is_finite()).collect();
        let hi = fin.iter().cloned().fold(1e-6, f64::max);
        let lo = cal.llc.iter().cloned().filter(|v| v.is_finite()).fold(0.0, f64::min);
        let (x0, x1) = (cal.epsilon.first().cloned().unwrap_or(1e-6) / 1.5, cal.epsilon.last().cloned().unwrap_or(1e-3) * 1.5);
        let mut chart = ChartBuilder::on(a)
            .caption(format!("calibration at step {}", cal.step), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d((x0..x1).log_scale(), lo * 1.1..hi * 1.1)?;
        chart.configure_mesh().x_desc("step size ε").y_desc("LLC estimate").x_label_formatter(&|x| format!("{x:.0e}")).draw()?;
        for (gi, g) in cal.gamma.iter().enumerate() {
            let col = Palette99::pick(gi).to_rgba();
            let row: Vec<(f64, f64, f64, u32)> = (0..e).map(|i| (cal.epsilon[i], cal.llc[gi * e + i], cal.se[gi * e + i], cal.n_failed[gi * e + i])).collect();
            chart
                .draw_series(LineSeries::new(row.iter().filter(|r| r.1.is_finite()).map(|r| (r.0, r.1)), col.stroke_width(2)))?
                .label(format!("γ = {g}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col));
            chart.draw_series(row.iter().filter(|r| r.1.is_finite()).map(|r| {
                let e2 = if r.2.is_finite() { 2.0 * r.2 } else { 0.0 };
                PathElement::new(vec![(r.0, r.1 - e2), (r.0, r.1 + e2)], col.stroke_width(1))
            }))?;
            chart.draw_series(row.iter().filter(|r| r.1.is_finite()).map(|r| Circle::new((r.0, r.1), 3, col.filled())))?;
            // Failed points: red crosses at the bottom.
            chart.draw_series(row.iter().filter(|r| r.3 > 0).map(|r| Cross::new((r.0, lo * 1.1 + (hi - lo) * 0.03), 6, RED.stroke_width(2))))?;
        }
        if let Some((re, _)) = cal.recommended {
            chart.draw_series(LineSeries::new(vec![(re, lo * 1.1), (re, hi * 1.1)], BLUE.stroke_width(2)))?.label("recommended ε").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).position(SeriesLabelPosition::UpperLeft).draw()?;
    }
    Ok(())
}
