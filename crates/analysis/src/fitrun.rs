//! Fitting the probe series of whole runs: every head of every run, stored
//! in the run's analysis.h5 (`/fits` attribute named after the series, TOML),
//! and the collision heads of several seeds pooled.

use std::path::{Path, PathBuf};

use headlab_store::analysis::{read_analysis, write_analysis, Analysis};
use serde::{Deserialize, Serialize};

use crate::fit::{fit_pooled, fit_report, FitOptions, FitReport, PooledFit, Series};
use crate::heads::analysis_path;
use crate::{AnalysisError, Result};
use headlab_sim::seed::{derive_seed, Stream};

/// The score series fitted by default: self-excluded normalized collision
/// score with partners overlapping at the input frame.
pub const DEFAULT_SERIES: &str = "score_excl_norm_overlap";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadFit {
    pub layer: usize,
    pub head: usize,
    pub report: FitReport,
}

/// All heads of one run, fitted on one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFits {
    pub series: String,
    pub options: FitOptions,
    pub heads: Vec<HeadFit>,
}

impl RunFits {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# could not serialize fits: {e}\n"))
    }
    pub fn from_toml(text: &str, origin: &str) -> Result<RunFits> {
        toml::from_str(text).map_err(|e| AnalysisError::Run { path: PathBuf::from(origin), msg: format!("fits cannot be read ({e}); run `headlab fit` again") })
    }
    pub fn head(&self, layer: usize, head: usize) -> Option<&HeadFit> {
        self.heads.iter().find(|h| h.layer == layer && h.head == head)
    }
}

/// One head's series as a fit input (steps as f64).
pub fn head_series(a: &Analysis, series: &str, layer: usize, head: usize) -> Option<Series> {
    let y = a.head_series(series, layer, head)?;
    let t: Vec<f64> = a.steps.iter().map(|&s| s as f64).collect();
    Some(Series::new(&t, &y))
}

/// Fit every head of an analysis.
pub fn fit_analysis(a: &Analysis, series: &str, opts: &FitOptions) -> Result<RunFits> {
    if !a.series.contains_key(series) {
        return Err(AnalysisError::Config {
            key: "series".into(),
            value: series.into(),
            hint: format!("analysis.h5 has: {}", a.series.keys().cloned().collect::<Vec<_>>().join(", ")),
        });
    }
    use rayon::prelude::*;
    let ids: Vec<(usize, usize)> = (0..a.n_layers).flat_map(|l| (0..a.n_heads).map(move |h| (l, h))).collect();
    let heads: Vec<HeadFit> = ids
        .par_iter()
        .map(|&(layer, head)| {
            let s = head_series(a, series, layer, head).ok_or_else(|| AnalysisError::Config {
                key: "series".into(),
                value: series.into(),
                hint: format!("analysis.h5 has no values of it for L{layer}.H{head}"),
            })?;
            let o = FitOptions { seed: derive_seed(opts.seed, Stream::FitHead { layer, head }), ..opts.clone() };
            Ok(HeadFit { layer, head, report: fit_report(&s, &o) })
        })
        .collect::<Result<_>>()?;
    Ok(RunFits { series: series.into(), options: opts.clone(), heads })
}

/// The fits stored in a run's analysis, if any.
pub fn stored_fits(a: &Analysis, series: &str, origin: &Path) -> Option<Result<RunFits>> {
    a.fits.get(series).map(|t| RunFits::from_toml(t, &origin.display().to_string()))
}

/// The collision head of a run: highest final value of `series`.
pub fn collision_head(a: &Analysis, series: &str) -> Option<(usize, usize)> {
    let s = a.steps.len().checked_sub(1)?;
    let v = a.series.get(series)?;
    let lh = a.n_layers * a.n_heads;
    let k = (0..lh).filter(|&k| v[s * lh + k].is_finite()).max_by(|&x, &y| v[s * lh + x].total_cmp(&v[s * lh + y]))?;
    Some((k / a.n_heads, k % a.n_heads))
}

#[derive(Debug, Clone)]
pub struct FitSummary {
    pub runs: Vec<PathBuf>,
    pub per_run: Vec<RunFits>,
    /// Collision head (layer, head) of each run.
    pub collision_heads: Vec<Option<(usize, usize)>>,
    /// The collision heads of all runs pooled (when there are ≥ 2 runs).
    pub pooled: Option<PooledFit>,
}

/// Fit every head of each run (storing the fits in its analysis.h5) and pool
/// the runs' collision heads. Runs must have been probed.
pub fn fit_runs(runs: &[PathBuf], series: &str, opts: &FitOptions) -> Result<FitSummary> {
    let mut per_run = Vec::new();
    let mut heads = Vec::new();
    let mut pooled_series = Vec::new();
    for run in runs {
        let p = analysis_path(run);
        if !p.exists() {
            return Err(AnalysisError::Run { path: p, msg: "not found; probe the run first (headlab probe RUN)".into() });
        }
        let mut a = read_analysis(&p, true)?;
        let f = fit_analysis(&a, series, opts)?;
        a.fits.insert(series.to_string(), f.to_toml());
        write_analysis(&p, &a)?;
        let ch = collision_head(&a, series);
        if let Some((l, h)) = ch {
            if let Some(s) = head_series(&a, series, l, h) {
                pooled_series.push(s);
            }
        }
        heads.push(ch);
        per_run.push(f);
    }
    let pooled = if pooled_series.len() >= 2 { Some(fit_pooled(&pooled_series, opts)) } else { None };
    Ok(FitSummary { runs: runs.to_vec(), per_run, collision_heads: heads, pooled })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::FitModel;

    #[test]
    fn fits_roundtrip_through_toml() {
        let t: Vec<f64> = (0..30).map(|k| (10.0 * 1.3f64.powi(k)).round()).collect();
        let y: Vec<f64> = t.iter().map(|&x| 0.8 - 0.8 * (1.0 + x / 50.0).powf(-0.7) + 0.003 * ((x * 7.1).sin())).collect();
        let r = fit_report(&Series::new(&t, &y), &FitOptions { bootstrap: 10, ..Default::default() });
        let rf = RunFits { series: "s".into(), options: FitOptions::default(), heads: vec![HeadFit { layer: 1, head: 2, report: r }] };
        let text = rf.to_toml();
        let back = RunFits::from_toml(&text, "x").unwrap();
        let (a, b) = (&rf.heads[0].report, &back.heads[0].report);
        assert_eq!(a.whole.as_ref().unwrap().best().unwrap().model, b.whole.as_ref().unwrap().best().unwrap().model);
        let pa = a.whole.as_ref().unwrap().get(FitModel::Power).unwrap();
        let pb = b.whole.as_ref().unwrap().get(FitModel::Power).unwrap();
        assert_eq!(pa.internal, pb.internal);
        assert_eq!(pa.predict(123.0), pb.predict(123.0));
        assert!(RunFits::from_toml("garbage = ", "here.h5").unwrap_err().to_string().contains("headlab fit"));
    }
}
