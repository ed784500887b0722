//! Fitting the probe series of whole runs: every head of every run, on the
//! training-step axis and on the cumulative-learning-rate axis (so that a
//! learning-rate schedule cannot masquerade as a law), stored in the run's
//! analysis.h5 (`/fits` attribute named after the series and axis, TOML);
//! and, over several runs (seeds), the collision heads summarized with seeds
//! as the unit of replication.

use std::path::{Path, PathBuf};

use headlab_store::analysis::{read_analysis, write_analysis, Analysis};
use serde::{Deserialize, Serialize};

use crate::fit::{fit_report, fit_seeds, FitOptions, FitReport, SeedSummary, Series};
use crate::heads::{analysis_path, score_se, tied_top};
use crate::series::SeriesKey;
use crate::{AnalysisError, Result};
use headlab_sim::seed::{derive_seed, Stream};

/// The score series fitted by default: self-excluded normalized collision
/// score with partners overlapping at the input frame.
pub const DEFAULT_SERIES: SeriesKey = SeriesKey::ScoreExclNormOverlap;

/// The time axis of a fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeAxis {
    /// Training step (number of optimizer updates).
    #[default]
    Step,
    /// Cumulative learning rate Σ lr over the updates before the checkpoint,
    /// divided by the peak learning rate: "steps at full learning rate". A
    /// constant schedule makes it equal to the step (after warm-up).
    Lr,
}

impl TimeAxis {
    /// Both axes.
    pub const ALL: [TimeAxis; 2] = [TimeAxis::Step, TimeAxis::Lr];
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            TimeAxis::Step => "step",
            TimeAxis::Lr => "lr",
        }
    }
    /// Axis label for plots and tables.
    pub fn label(self) -> &'static str {
        match self {
            TimeAxis::Step => "training step",
            TimeAxis::Lr => "cumulative learning rate (Σ lr / peak lr)",
        }
    }
    /// Parse `step` or `lr`.
    pub fn parse(s: &str) -> Option<TimeAxis> {
        TimeAxis::ALL.into_iter().find(|a| a.name() == s)
    }
    /// The key of the fits of `series` on this axis in analysis.h5.
    pub fn fits_key(self, series: &str) -> String {
        match self {
            TimeAxis::Step => series.to_string(),
            TimeAxis::Lr => format!("{series}@lr"),
        }
    }
}

/// One head's fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadFit {
    /// Layer index.
    pub layer: usize,
    /// Head index.
    pub head: usize,
    /// Whole curve, tail and emergence.
    pub report: FitReport,
}

/// All heads of one run, fitted on one series and one time axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFits {
    /// Series name.
    pub series: String,
    /// Time axis.
    #[serde(default)]
    pub axis: TimeAxis,
    /// Options used.
    pub options: FitOptions,
    /// Every head.
    pub heads: Vec<HeadFit>,
}

impl RunFits {
    /// TOML text as stored in analysis.h5.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| AnalysisError::Config {
            key: "fits".into(),
            value: self.series.clone(),
            hint: format!("cannot be written as TOML: {e}"),
        })
    }
    /// Parse stored fits; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<RunFits> {
        toml::from_str(text).map_err(|e| AnalysisError::Run {
            path: PathBuf::from(origin),
            msg: format!("fits cannot be read ({e}); run `headlab fit` again"),
        })
    }
    /// One head's fits.
    pub fn head(&self, layer: usize, head: usize) -> Option<&HeadFit> {
        self.heads.iter().find(|h| h.layer == layer && h.head == head)
    }
}

/// The time of every probed checkpoint of a run on `axis`. For `lr`, reads
/// the learning rate of every update from RUN/metrics.h5.
pub fn axis_times(run: &Path, a: &Analysis, axis: TimeAxis) -> Result<Vec<f64>> {
    let steps: Vec<f64> = a.steps.iter().map(|&s| s as f64).collect();
    match axis {
        TimeAxis::Step => Ok(steps),
        TimeAxis::Lr => {
            let p = run.join("metrics.h5");
            if !p.exists() {
                return Err(AnalysisError::Run {
                    path: p,
                    msg: "not found; the cumulative-learning-rate axis needs the training metrics (use --axis step)"
                        .into(),
                });
            }
            let m = headlab_store::metrics::read_metrics(&p)?;
            cumulative_lr(&m.step, &m.lr, &a.steps).map_err(|msg| AnalysisError::Run { path: p, msg })
        }
    }
}

/// Σ lr over the updates that led to each checkpoint step, divided by the
/// peak learning rate. `steps`/`lr`: as in metrics.h5, the step each update
/// led to (1, 2, …) and its learning rate. Errors when an update a
/// checkpoint needs is missing.
pub fn cumulative_lr(steps: &[u64], lr: &[f32], checkpoints: &[u64]) -> std::result::Result<Vec<f64>, String> {
    if steps.len() != lr.len() {
        return Err(format!("/train/step has {} entries but /train/lr {}", steps.len(), lr.len()));
    }
    let peak = lr.iter().map(|&v| v as f64).fold(0.0, f64::max);
    if !(peak > 0.0) {
        return Err("no positive learning rate in /train/lr".into());
    }
    let mut pairs: Vec<(u64, f64)> = steps.iter().zip(lr).map(|(&s, &l)| (s, l as f64)).collect();
    pairs.sort_by_key(|p| p.0);
    pairs.dedup_by_key(|p| p.0);
    let mut out = Vec::with_capacity(checkpoints.len());
    for &c in checkpoints {
        let used: Vec<&(u64, f64)> = pairs.iter().filter(|p| p.0 >= 1 && p.0 <= c).collect();
        if used.len() as u64 != c {
            return Err(format!(
                "the learning rate of {} of the {c} updates before checkpoint {c} is not recorded",
                c - used.len() as u64
            ));
        }
        // (+ 0.0: an empty float sum is −0.0)
        out.push(used.iter().map(|p| p.1).sum::<f64>() / peak + 0.0);
    }
    Ok(out)
}

/// One head's series on the given times.
pub fn head_series(a: &Analysis, series: &str, layer: usize, head: usize) -> Option<Series> {
    let t: Vec<f64> = a.steps.iter().map(|&s| s as f64).collect();
    head_series_on(a, series, layer, head, &t)
}

/// One head's series with `times[k]` for the k-th probed checkpoint.
pub fn head_series_on(a: &Analysis, series: &str, layer: usize, head: usize, times: &[f64]) -> Option<Series> {
    let y = a.head_series(series, layer, head)?;
    Some(Series::new(times, &y))
}

/// Fit every head of an analysis on the given times.
pub fn fit_analysis(a: &Analysis, series: &str, axis: TimeAxis, times: &[f64], opts: &FitOptions) -> Result<RunFits> {
    if !a.series.contains_key(series) {
        return Err(AnalysisError::Config {
            key: "series".into(),
            value: series.into(),
            hint: format!("analysis.h5 has: {}", a.series.keys().cloned().collect::<Vec<_>>().join(", ")),
        });
    }
    if times.len() != a.steps.len() {
        return Err(AnalysisError::Config {
            key: "axis".into(),
            value: axis.name().into(),
            hint: format!("{} times for {} checkpoints", times.len(), a.steps.len()),
        });
    }
    use rayon::prelude::*;
    let ids: Vec<(usize, usize)> = (0..a.n_layers).flat_map(|l| (0..a.n_heads).map(move |h| (l, h))).collect();
    let heads: Vec<HeadFit> = ids
        .par_iter()
        .filter_map(|&(layer, head)| {
            let s = head_series_on(a, series, layer, head, times)?;
            let o = FitOptions { seed: derive_seed(opts.seed, Stream::FitHead { layer, head }), ..opts.clone() };
            Some(HeadFit { layer, head, report: fit_report(&s, &o) })
        })
        .collect();
    Ok(RunFits { series: series.into(), axis, options: opts.clone(), heads })
}

/// The fits stored in a run's analysis for `series` on `axis`, if any.
pub fn stored_fits(a: &Analysis, series: &str, axis: TimeAxis, origin: &Path) -> Option<Result<RunFits>> {
    a.fits.get(&axis.fits_key(series)).map(|t| RunFits::from_toml(t, &origin.display().to_string()))
}

/// The collision heads of a run: the heads whose final value of `series`
/// lies within one standard error of the highest ([`tied_top`]; the
/// standard error comes from the stored spread and query count when
/// `series` is a score that has them, else it is taken as 0 and only exact
/// ties join). Highest first; empty when nothing is finite.
pub fn collision_heads(a: &Analysis, series: &str) -> Vec<(usize, usize)> {
    let Some(s) = a.steps.len().checked_sub(1) else { return Vec::new() };
    if !a.series.contains_key(series) {
        return Vec::new();
    }
    let key = series.parse::<SeriesKey>().ok();
    let ids: Vec<(usize, usize)> = (0..a.n_layers).flat_map(|l| (0..a.n_heads).map(move |h| (l, h))).collect();
    let vals: Vec<(f64, f64)> =
        ids.iter().map(|&(l, h)| (a.value(series, s, l, h), key.map_or(0.0, |k| score_se(a, k, s, l, h)))).collect();
    tied_top(&vals).into_iter().map(|k| ids[k]).collect()
}

/// The series of a run's collision heads pooled into one, on the time axis
/// `times` (one per checkpoint): the mean over the tied heads at each
/// checkpoint (one series per run, so that runs — seeds — stay the unit of
/// replication).
pub fn collision_series(a: &Analysis, series: &str, heads: &[(usize, usize)], times: &[f64]) -> Option<Series> {
    let ys: Vec<Vec<f64>> = heads.iter().filter_map(|&(l, h)| a.head_series(series, l, h)).collect();
    let first = ys.first()?;
    let y: Vec<f64> = (0..first.len()).map(|s| ys.iter().map(|v| v[s]).sum::<f64>() / ys.len() as f64).collect();
    Some(Series::new(times, &y))
}

/// What [`fit_runs`] computed.
#[derive(Debug, Clone)]
pub struct FitSummary {
    /// The runs, in order.
    pub runs: Vec<PathBuf>,
    /// Per run: its fits on every axis asked for.
    pub per_run: Vec<Vec<RunFits>>,
    /// Collision heads (layer, head) of each run: tied within one standard error, highest first.
    pub collision_heads: Vec<Vec<(usize, usize)>>,
    /// Per axis: the runs' collision-head series (mean over each run's tied
    /// heads) summarized over the runs (seeds), when there are at least two runs.
    pub seeds: Vec<(TimeAxis, SeedSummary)>,
}

/// Fit every head of each run on each axis (storing the fits in its
/// analysis.h5) and summarize the runs' collision heads over seeds. Runs
/// must have been probed.
pub fn fit_runs(runs: &[PathBuf], series: &str, axes: &[TimeAxis], opts: &FitOptions) -> Result<FitSummary> {
    let mut per_run = Vec::new();
    let mut heads = Vec::new();
    let mut seed_reports: Vec<Vec<FitReport>> = vec![Vec::new(); axes.len()];
    for run in runs {
        let p = analysis_path(run);
        if !p.exists() {
            return Err(AnalysisError::Run {
                path: p,
                msg: "not found; probe the run first (headlab probe RUN)".into(),
            });
        }
        let mut a = read_analysis(&p, true)?;
        let ch = collision_heads(&a, series);
        let mut fits = Vec::new();
        for (ai, &axis) in axes.iter().enumerate() {
            let times = axis_times(run, &a, axis)?;
            let f = fit_analysis(&a, series, axis, &times, opts)?;
            a.fits.insert(axis.fits_key(series), f.to_toml()?);
            if let Some(s) = collision_series(&a, series, &ch, &times) {
                seed_reports[ai].push(fit_report(&s, opts));
            }
            fits.push(f);
        }
        write_analysis(&p, &a)?;
        heads.push(ch);
        per_run.push(fits);
    }
    let seeds = if runs.len() >= 2 {
        axes.iter().zip(seed_reports).map(|(&ax, r)| (ax, fit_seeds(r, opts.level))).collect()
    } else {
        Vec::new()
    };
    Ok(FitSummary { runs: runs.to_vec(), per_run, collision_heads: heads, seeds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::FitModel;

    #[test]
    fn fits_roundtrip_through_toml() {
        let t: Vec<f64> = (0..30).map(|k| (10.0 * 1.3f64.powi(k)).round()).collect();
        let y: Vec<f64> =
            t.iter().map(|&x| 0.8 - 0.8 * (1.0 + x / 50.0).powf(-0.7) + 0.003 * ((x * 7.1).sin())).collect();
        let r = fit_report(&Series::new(&t, &y), &FitOptions { bootstrap: 10, ..Default::default() });
        let rf = RunFits {
            series: "s".into(),
            axis: TimeAxis::Lr,
            options: FitOptions::default(),
            heads: vec![HeadFit { layer: 1, head: 2, report: r }],
        };
        let text = rf.to_toml().unwrap();
        let back = RunFits::from_toml(&text, "x").unwrap();
        assert_eq!(back.axis, TimeAxis::Lr);
        let (a, b) = (&rf.heads[0].report, &back.heads[0].report);
        let pa = a.whole.as_ref().unwrap().get(FitModel::Power).unwrap();
        let pb = b.whole.as_ref().unwrap().get(FitModel::Power).unwrap();
        assert_eq!(pa.internal, pb.internal);
        assert_eq!(pa.predict(123.0), pb.predict(123.0));
        assert_eq!(pa.degenerate, pb.degenerate);
        assert!(RunFits::from_toml("garbage = ", "here.h5").unwrap_err().to_string().contains("headlab fit"));
    }

    #[test]
    fn cumulative_learning_rate_axis() {
        // Warm-up over 2 updates to 1e-3, then constant.
        let steps: Vec<u64> = (1..=10).collect();
        let lr: Vec<f32> = (0..10).map(|s| if s < 2 { 1e-3 * (s + 1) as f32 / 2.0 } else { 1e-3 }).collect();
        let c = cumulative_lr(&steps, &lr, &[0, 1, 2, 5, 10]).unwrap();
        let want = [0.0, 0.5, 1.5, 4.5, 9.5];
        for (a, b) in c.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{c:?}");
        }
        assert!(cumulative_lr(&steps, &lr, &[11]).unwrap_err().contains("not recorded"));
        assert!(cumulative_lr(&steps, &lr[..3], &[1]).is_err());
    }
}
