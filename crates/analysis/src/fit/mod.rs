//! Fits of a score series against training time (step, or cumulative
//! learning rate): does emergence follow a power law, or an exponential or
//! logistic relaxation? Least squares from several starts, degenerate fits
//! detected, model choice by an AICc that accounts for autocorrelated
//! residuals, profile-likelihood intervals for exponents, moving-block
//! bootstrap intervals for everything else, and the emergence step; on the
//! whole curve and on the tail after onset; seeds summarized in [`seeds`].
//!
//! Forms ([`FitModel`]; t = step, t₁ the first fitted step):
//! - `power`: S∞ − A·((t − t_on)/(t₁ − t_on))^(−α), time origin t_on free
//! - `power_onset`: the same with t_on fixed at the measured onset (tail only)
//! - `onset`: b + A·((t − t_c)/(t_N − t_c))^β after t_c, b before
//! - `exp`: S∞ − A·exp(−(t − t₁)/τ)
//! - `logistic`: b + A/(1 + exp(−(t − t_m)/w))
//! - `loglogistic`: b + A/(1 + exp(−(ln(1+t) − ln(1+t_m))/s))
//!
//! Nesting and equivalences (stated in the report): `power_onset` is
//! `power` with t_on fixed; the tail of a log-logistic (t ≫ t_m) is a power
//! law with α = 1/s, so on a tail the two are the same hypothesis; `power`
//! tends to `exp` as t_on → −∞ and α → ∞ with (t₁ − t_on)/α = τ; the tail of
//! a logistic is an exponential relaxation with τ = w. The test that matters
//! is therefore between families ([`Family`]): power-like (power,
//! power_onset, onset, loglogistic) against exponential-like (exp,
//! logistic), on the tail and on the whole curve.

pub mod forms;
mod lm;
pub mod predict;
pub mod seeds;
pub mod stats;
pub mod text;

pub use forms::{Family, FitContext, FitModel};
pub use seeds::{fit_seeds, SeedStat, SeedSummary, SeedTest, StudyVerdict};

use lm::{levenberg_marquardt, Problem};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use stats::{block_length, block_resample, chi2_1_quantile, quantile, rho_corrected, t_quantile};

/// AICc margin (in units of the autocorrelation-adjusted AICc) by which the
/// best form of one family must beat the best of the other for a verdict: a
/// likelihood ratio of e² ≈ 7.4 after the parameter penalty.
pub const FAMILY_MARGIN: f64 = 4.0;

/// RMS difference between two fitted curves, in units of the residual
/// standard deviation, below which they are the same curve on these points.
pub const COLLAPSE_RMS: f64 = 0.1;

/// One score series: times and values (same length; NaN values dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Times (steps or cumulative learning rate), increasing.
    pub t: Vec<f64>,
    /// Values.
    pub y: Vec<f64>,
}

impl Series {
    /// Pairs sorted by time, non-finite pairs dropped.
    pub fn new(t: &[f64], y: &[f64]) -> Self {
        let mut p: Vec<(f64, f64)> =
            t.iter().zip(y).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(&a, &b)| (a, b)).collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self { t: p.iter().map(|x| x.0).collect(), y: p.iter().map(|x| x.1).collect() }
    }
    /// Number of points.
    pub fn len(&self) -> usize {
        self.t.len()
    }
    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }
    /// The points from index `from` on.
    pub fn subset(&self, from: usize) -> Series {
        Series { t: self.t[from.min(self.len())..].to_vec(), y: self.y[from.min(self.len())..].to_vec() }
    }
    /// Near-duplicate checkpoints merged: consecutive points whose times lie
    /// within `rel` (relative) of the first of their group are replaced by
    /// their mean time and mean value, so that two checkpoints a step apart
    /// (e.g. 314 and 315) count once. Returns the series and how many
    /// points were merged away.
    pub fn merge_near(&self, rel: f64) -> (Series, usize) {
        let mut t = Vec::new();
        let mut y = Vec::new();
        let mut i = 0;
        while i < self.len() {
            let mut j = i + 1;
            while j < self.len() && self.t[j] - self.t[i] <= rel * self.t[j].abs() {
                j += 1;
            }
            let k = (j - i) as f64;
            t.push(self.t[i..j].iter().sum::<f64>() / k);
            y.push(self.y[i..j].iter().sum::<f64>() / k);
            i = j;
        }
        let merged = self.len() - t.len();
        (Series { t, y }, merged)
    }
}

fn tail_mean(y: &[f64]) -> f64 {
    let k = (y.len() / 10).clamp(1, 3);
    y[y.len() - k..].iter().sum::<f64>() / k as f64
}

/// First time where the series reaches `level` (coming from below), linearly
/// interpolated in ln(1 + t) between the bracketing points. `None` when it
/// never does. If the first point is already at or above, its time.
pub fn crossing(s: &Series, level: f64) -> Option<f64> {
    let i = s.y.iter().position(|&y| y >= level)?;
    if i == 0 {
        return Some(s.t[0]);
    }
    let (t0, t1) = ((1.0 + s.t[i - 1]).ln(), (1.0 + s.t[i]).ln());
    let (y0, y1) = (s.y[i - 1], s.y[i]);
    let f = if y1 > y0 { (level - y0) / (y1 - y0) } else { 1.0 };
    Some((t0 + f * (t1 - t0)).exp() - 1.0)
}

/// The emergence step: where the series first reaches half its final value
/// (mean of the last few points). `None` if the final value is not
/// positive or it is never reached.
pub fn emergence_step(s: &Series) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let f = tail_mean(&s.y);
    if !(f > 0.0) {
        return None;
    }
    crossing(s, 0.5 * f)
}

/// Index of the first point at or above half the final value.
pub fn tail_start(s: &Series) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    let f = tail_mean(&s.y);
    if !(f > 0.0) {
        return None;
    }
    s.y.iter().position(|&y| y >= 0.5 * f)
}

/// Small-sample corrected Akaike information criterion of a Gaussian
/// least-squares fit with `p` parameters (+1 for the noise variance).
pub fn aicc(rss: f64, n: usize, p: usize) -> f64 {
    qaicc(rss, n, n as f64, p)
}

/// AICc with autocorrelated residuals: the log-likelihood is divided by
/// ĉ = n/n_eff (a quasi-likelihood with the variance inflation of AR(1)
/// noise) and the small-sample correction uses n_eff. Equals [`aicc`]
/// when n_eff = n. Infinite when n_eff ≤ p + 2.
pub fn qaicc(rss: f64, n: usize, n_eff: f64, p: usize) -> f64 {
    let nf = n as f64;
    let k = (p + 1) as f64;
    let c_hat = (nf / n_eff).max(1.0);
    let ll = nf * (rss.max(1e-300) / nf).ln() / c_hat;
    if n_eff - k - 1.0 > 0.0 {
        ll + 2.0 * k + 2.0 * k * (k + 1.0) / (n_eff - k - 1.0)
    } else {
        f64::INFINITY
    }
}

/// Options of a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitOptions {
    /// Moving-block bootstrap replicates for parameter intervals (0 = none).
    pub bootstrap: usize,
    /// Confidence level of the intervals.
    pub level: f64,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Fewest points a fit needs (per form: at least its parameters + 3).
    pub min_points: usize,
    /// Checkpoints closer than this relative gap are merged before fitting.
    pub merge_rel: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self { bootstrap: 200, level: 0.95, seed: 0, min_points: 6, merge_rel: 0.02 }
    }
}

/// An estimate with its interval (NaN bounds when there is none).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Point estimate.
    pub value: f64,
    /// Lower bound of the interval.
    pub lo: f64,
    /// Upper bound of the interval.
    pub hi: f64,
}

impl Estimate {
    /// True when both bounds are finite.
    pub fn has_interval(&self) -> bool {
        self.lo.is_finite() && self.hi.is_finite()
    }
}

/// One form fitted to one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFit {
    /// The form.
    pub model: FitModel,
    /// Reported parameters in `model.param_names()` order. Intervals: the
    /// exponent's from the profile likelihood (autocorrelation-adjusted),
    /// the others' from the moving-block bootstrap; all over the
    /// checkpoints of this one run.
    pub params: Vec<Estimate>,
    /// Residual sum of squares.
    pub rss: f64,
    /// Points fitted.
    pub n: usize,
    /// Plain AICc (independent residuals assumed).
    pub aicc: f64,
    /// AICc adjusted for the residuals' autocorrelation (see [`qaicc`]).
    pub qaicc: f64,
    /// `qaicc` minus the best non-degenerate form's (NaN when degenerate).
    pub delta: f64,
    /// Akaike weight among the non-degenerate forms (0 when degenerate).
    pub weight: f64,
    /// Why this fit is degenerate (empty when it is not): a parameter on its
    /// bound, diverging, or the curve collapsed onto a simpler form. A
    /// degenerate fit is not an estimate.
    pub degenerate: Vec<String>,
    /// Remarks that do not disqualify the fit (e.g. an exponent the data do
    /// not bound on one side, a form indistinguishable from another).
    pub notes: Vec<String>,
    /// Lag-1 autocorrelation of this fit's residuals (uncorrected).
    pub rho: f64,
    /// Internal parameters, for `predict`.
    pub internal: Vec<f64>,
    /// Evaluation context, for `predict`.
    pub ctx: FitContext,
}

impl ModelFit {
    /// The fitted curve at time `t` (NaN where the form is undefined).
    pub fn predict(&self, t: f64) -> f64 {
        self.model.eval(&self.internal, t, &self.ctx)
    }
    /// A reported parameter by name.
    pub fn param(&self, name: &str) -> Option<Estimate> {
        let k = self.model.param_names().iter().position(|&p| p == name)?;
        self.params.get(k).copied()
    }
    /// True when the fit is degenerate (not an estimate).
    pub fn is_degenerate(&self) -> bool {
        !self.degenerate.is_empty()
    }
    /// The exponent (α of the power forms) with its profile interval, when
    /// the fit is not degenerate.
    pub fn exponent(&self) -> Option<Estimate> {
        if self.is_degenerate() {
            return None;
        }
        self.params.get(self.model.exponent_index()?).copied()
    }
}

/// The verdict of the test that matters on one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The best power-like form beats the best exponential-like form by at least [`FAMILY_MARGIN`].
    PowerLike,
    /// The reverse.
    ExpLike,
    /// Neither by the margin.
    Undecided,
    /// No non-degenerate form of one or both families could be compared.
    NoFit,
}

impl Verdict {
    /// Words for tables.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::PowerLike => "power-like",
            Verdict::ExpLike => "exponential-like",
            Verdict::Undecided => "undecided",
            Verdict::NoFit => "no comparison",
        }
    }
}

/// Every form fitted to one series (whole curve or tail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesFit {
    /// Sorted by adjusted AICc: non-degenerate forms first, best first.
    pub fits: Vec<ModelFit>,
    /// First and last time used.
    pub t_from: f64,
    /// Last time used.
    pub t_to: f64,
    /// Points fitted (after merging near-duplicates).
    pub n: usize,
    /// Confidence level of the intervals.
    pub level: f64,
    /// Lag-1 autocorrelation of the best fit's residuals (bias-corrected, ≥ 0).
    pub rho: f64,
    /// Effective number of independent points, n·(1 − ρ)/(1 + ρ).
    pub n_eff: f64,
    /// Block length of the moving-block bootstrap.
    pub block: usize,
    /// Summed Akaike weight of the power-like forms (non-degenerate only).
    pub weight_power_like: f64,
    /// Summed Akaike weight of the exponential-like forms.
    pub weight_exp_like: f64,
    /// Adjusted AICc of the best exponential-like form minus that of the
    /// best power-like form (> 0 favours power-like); NaN when a family has
    /// no non-degenerate fit.
    pub family_delta: f64,
    /// The verdict of the family comparison.
    pub verdict: Verdict,
    /// Which forms are nested in or equivalent to which on these points.
    pub notes: Vec<String>,
    /// Prediction bands (bootstrap) of every form: times, and (lo, hi) per
    /// form in the order of `fits` (empty for degenerate forms).
    pub band_t: Vec<f64>,
    /// Lower band per form.
    pub band_lo: Vec<Vec<f64>>,
    /// Upper band per form.
    pub band_hi: Vec<Vec<f64>>,
}

impl SeriesFit {
    /// The best non-degenerate form.
    pub fn best(&self) -> Option<&ModelFit> {
        self.fits.first().filter(|f| !f.is_degenerate())
    }
    /// A form by name.
    pub fn get(&self, m: FitModel) -> Option<&ModelFit> {
        self.fits.iter().find(|f| f.model == m)
    }
    /// Adjusted-AICc margin of the best form over the next non-degenerate
    /// one (∞ when there is only one).
    pub fn margin(&self) -> f64 {
        self.fits.iter().filter(|f| !f.is_degenerate()).nth(1).map(|f| f.delta).unwrap_or(f64::INFINITY)
    }
    /// The best non-degenerate form of a family.
    pub fn best_of(&self, fam: Family) -> Option<&ModelFit> {
        self.fits.iter().find(|f| !f.is_degenerate() && f.model.family() == fam)
    }
}

/// Everything known about one series: whole-curve fit, tail fit, emergence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// All forms on the whole curve.
    pub whole: Option<SeriesFit>,
    /// All forms on the tail (from the first point at half the final value).
    pub tail: Option<SeriesFit>,
    /// Emergence step (half the final value), with a moving-block bootstrap
    /// interval over the checkpoints of this run, inside the data's range.
    pub emergence: Option<Estimate>,
    /// Mean of the last few points.
    pub final_value: f64,
    /// Near-duplicate checkpoints merged before fitting.
    pub merged: usize,
}

/// 64 times spread in ln(1 + t) over the series.
fn band_grid(s: &Series) -> Vec<f64> {
    let a = (1.0 + s.t[0]).ln();
    let b = (1.0 + s.t[s.len() - 1]).ln();
    (0..64).map(|k| (a + (b - a) * k as f64 / 63.0).exp() - 1.0).collect()
}

/// Fit one form from all its starts (plus `extra`); best internal
/// parameters and RSS.
fn fit_form(model: FitModel, s: &Series, ctx: &FitContext, yscale: f64, extra: &[Vec<f64>]) -> Option<(Vec<f64>, f64)> {
    let f = |th: &[f64], t: f64| model.eval(th, t, ctx);
    let (lo, hi) = model.bounds(ctx, yscale);
    let pb = Problem { f: &f, t: &s.t, y: &s.y, lo: &lo, hi: &hi };
    let mut best: Option<(Vec<f64>, f64)> = None;
    for st in model.starts(&s.t, &s.y, ctx).iter().chain(extra) {
        let (th, c) = levenberg_marquardt(&pb, st, 300);
        if c.is_finite() && best.as_ref().is_none_or(|b| c < b.1) {
            best = Some((th, c));
        }
    }
    best
}

/// Reasons a fit is degenerate by its parameters alone: on a bound of its
/// box, or shaped so that the data cannot tell it from a simpler curve.
fn bound_flags(model: FitModel, th: &[f64], ctx: &FitContext, s: &Series, yscale: f64) -> Vec<String> {
    let (lo, hi) = model.bounds(ctx, yscale);
    let names = model.param_names();
    let nat = model.natural(th, ctx);
    let mut out = Vec::new();
    // Shape parameters live on a log (or bounded linear) scale: being within
    // 1 % of the box width of an end is being on the bound.
    for k in 2..th.len() {
        let w = hi[k] - lo[k];
        if th[k] - lo[k] < 0.01 * w.min(1.0) || hi[k] - th[k] < 0.01 * w.min(1.0) {
            out.push(format!("{} = {:.4} is on its bound", names[k], nat[k]));
        }
    }
    let range = yscale.max(1e-12);
    let amp = nat[1].abs();
    if amp > 10.0 * range {
        out.push(format!("amplitude A = {:.3e} diverges (10× the data range {:.3e})", nat[1], range));
    }
    let x1 = ctx.t_first / ctx.t_scale;
    let span = (1.0 - x1).max(1e-9);
    match model {
        FitModel::Power => {
            // (1 + u/d)^(−α) → exp(−u·α/d) as d, α → ∞: a steep power law
            // whose origin lies more than the fitted span before the data
            // is the exponential limit, not a power law.
            let d = th[2].exp();
            let a = th[3].exp();
            if d > span && a > 8.0 {
                out.push(format!("t_on = {:.0} and α = {:.1} run away together: the curve is the exponential limit of the power law (τ = {:.0})", nat[2], a, d / a * ctx.t_scale));
            }
        }
        FitModel::Exp if th[2].exp() > 10.0 * span => {
            out.push("τ beyond 10× the span: no curvature (a straight line)".into());
        }
        FitModel::Logistic if th[3].exp() > span => {
            out.push("w exceeds the span: no sigmoid".into());
        }
        FitModel::LogLogistic if th[2] > (1.0 + s.t[s.len() - 1]).ln() => {
            out.push("midpoint after the last point: the sigmoid is never reached".into());
        }
        _ => {}
    }
    out
}

/// Profile-likelihood interval of the exponent of `model` (internal index
/// `idx`, on a ln scale): the exponents whose profile deviance
/// n·ln(RSS(α)/RSS_min)/ĉ stays below the threshold of `level` (χ²₁,
/// calibrated for the effective degrees of freedom). A side
/// the deviance never crosses before the bound is open (NaN). Returns
/// (lo, hi) in natural units.
#[allow(clippy::too_many_arguments)]
fn profile_exponent(
    model: FitModel,
    idx: usize,
    s: &Series,
    ctx: &FitContext,
    yscale: f64,
    th_hat: &[f64],
    rss_hat: f64,
    c_hat: f64,
    level: f64,
) -> (f64, f64) {
    let (lo, hi) = model.bounds(ctx, yscale);
    let n = s.len() as f64;
    // Small-sample calibration: with ν = n_eff − p residual degrees of
    // freedom the deviance threshold is n_eff·ln(1 + t²_ν/ν) (the F-based
    // interval of nonlinear least squares), which tends to χ²₁ for large ν.
    let n_eff = n / c_hat;
    let nu = (n_eff - model.n_params() as f64).max(1.0);
    let tq = t_quantile(0.5 + level / 2.0, nu);
    let thr = if tq.is_finite() { n_eff * (1.0 + tq * tq / nu).ln() } else { chi2_1_quantile(level) };
    let rlo: Vec<f64> = lo.iter().enumerate().filter(|(k, _)| *k != idx).map(|(_, v)| *v).collect();
    let rhi: Vec<f64> = hi.iter().enumerate().filter(|(k, _)| *k != idx).map(|(_, v)| *v).collect();
    let reduce =
        |th: &[f64]| -> Vec<f64> { th.iter().enumerate().filter(|(k, _)| *k != idx).map(|(_, v)| *v).collect() };
    // Profile RSS at ln-exponent `la`, starting from `from` (reduced).
    let prof = |la: f64, from: &[Vec<f64>]| -> (Vec<f64>, f64) {
        let f = |r: &[f64], t: f64| {
            let mut th = Vec::with_capacity(r.len() + 1);
            th.extend_from_slice(&r[..idx]);
            th.push(la);
            th.extend_from_slice(&r[idx..]);
            model.eval(&th, t, ctx)
        };
        let pb = Problem { f: &f, t: &s.t, y: &s.y, lo: &rlo, hi: &rhi };
        let mut best = (from[0].clone(), f64::INFINITY);
        for st in from {
            let (th, c) = levenberg_marquardt(&pb, st, 200);
            if c < best.1 {
                best = (th, c);
            }
        }
        best
    };
    let dev = |rss: f64| n * (rss / rss_hat).ln() / c_hat;
    let hat_r = reduce(th_hat);
    let mut ends = [f64::NAN, f64::NAN];
    for (side, dir) in [(0usize, -1.0f64), (1, 1.0)] {
        let bound = if dir < 0.0 { lo[idx] } else { hi[idx] };
        let mut prev_la = th_hat[idx];
        let mut prev_dev = 0.0;
        let mut prev_th = hat_r.clone();
        let mut h = 0.02;
        loop {
            let la = prev_la + dir * h;
            let beyond = (la - bound) * dir >= 0.0;
            let la = if beyond { bound } else { la };
            let (th, c) = prof(la, &[prev_th.clone(), hat_r.clone()]);
            let d = dev(c);
            if d >= thr {
                // Bracketed between prev_la and la: bisect.
                let (mut a, mut b, mut da) = (prev_la, la, prev_dev);
                let mut tha = prev_th.clone();
                for _ in 0..8 {
                    let m = 0.5 * (a + b);
                    let (tm, cm) = prof(m, &[tha.clone(), hat_r.clone()]);
                    let dm = dev(cm);
                    if dm >= thr {
                        b = m;
                    } else {
                        a = m;
                        da = dm;
                        tha = tm;
                    }
                }
                let _ = da;
                ends[side] = (0.5 * (a + b)).exp();
                break;
            }
            if beyond {
                break;
            }
            prev_la = la;
            prev_dev = d.max(0.0);
            prev_th = th;
            h = (h * 1.5).min(0.3);
        }
    }
    (ends[0], ends[1])
}

/// Fit every form to `s`, detect degenerate fits, compare by
/// autocorrelation-adjusted AICc, and put intervals on the parameters.
/// `t_anchor` is the measured onset for `power_onset` (NaN: not fitted).
/// `None` if there are too few points.
pub fn fit_series(s: &Series, t_anchor: f64, opt: &FitOptions) -> Option<SeriesFit> {
    let n = s.len();
    if n < opt.min_points.max(4) {
        return None;
    }
    let t_scale = s.t[n - 1].abs().max(1e-12);
    let ctx = FitContext { t_scale, t_first: s.t[0], t_anchor };
    let ymax = s.y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ymin = s.y.iter().copied().fold(f64::INFINITY, f64::min);
    let yscale = (ymax - ymin).max(1e-9 * ymax.abs().max(1e-12));
    struct Raw {
        model: FitModel,
        th: Vec<f64>,
        rss: f64,
        pred: Vec<f64>,
        degenerate: Vec<String>,
        notes: Vec<String>,
    }
    let mut raw: Vec<Raw> = Vec::new();
    for model in FitModel::ALL {
        if n < model.n_params() + 3 {
            continue;
        }
        if model == FitModel::PowerOnset && !(t_anchor < s.t[0]) {
            continue;
        }
        let Some((th, rss)) = fit_form(model, s, &ctx, yscale, &[]) else { continue };
        let pred: Vec<f64> = s.t.iter().map(|&t| model.eval(&th, t, &ctx)).collect();
        let degenerate = bound_flags(model, &th, &ctx, s, yscale);
        raw.push(Raw { model, th, rss, pred, degenerate, notes: Vec::new() });
    }
    if raw.is_empty() {
        return None;
    }
    // Residual scale from the best fit not on a bound.
    let plain = |r: &Raw| aicc(r.rss, n, r.model.n_params());
    let ref_fit = raw
        .iter()
        .filter(|r| r.degenerate.is_empty())
        .min_by(|a, b| plain(a).total_cmp(&plain(b)))
        .or_else(|| raw.iter().min_by(|a, b| plain(a).total_cmp(&plain(b))))?;
    let sigma = (ref_fit.rss / (n - ref_fit.model.n_params()).max(1) as f64).sqrt();
    // Forms that draw the same curve: the one with more parameters has collapsed onto the other.
    let mut series_notes = Vec::new();
    for i in 0..raw.len() {
        for j in 0..raw.len() {
            if i == j {
                continue;
            }
            let rms =
                (raw[i].pred.iter().zip(&raw[j].pred).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / n as f64).sqrt();
            if !(rms < COLLAPSE_RMS * sigma) {
                continue;
            }
            let (pi, pj) = (raw[i].model.n_params(), raw[j].model.n_params());
            let (mi, mj) = (raw[i].model, raw[j].model);
            if pi > pj {
                let msg = format!(
                    "collapsed onto {} (the same curve within {:.2} residual s.d., with more parameters)",
                    mj.name(),
                    rms / sigma.max(1e-300)
                );
                raw[i].degenerate.push(msg);
            } else if pi == pj && i < j {
                let msg = format!(
                    "{} and {} draw the same curve on these points (RMS difference {:.2} residual s.d.)",
                    mi.name(),
                    mj.name(),
                    rms / sigma.max(1e-300)
                );
                raw[i].notes.push(format!("indistinguishable from {}", mj.name()));
                raw[j].notes.push(format!("indistinguishable from {}", mi.name()));
                series_notes.push(msg);
            }
        }
    }
    // Effective sample size from the best non-degenerate fit's residuals.
    let best_nd = raw.iter().filter(|r| r.degenerate.is_empty()).min_by(|a, b| plain(a).total_cmp(&plain(b)));
    let resid_of = |r: &Raw| -> Vec<f64> { s.y.iter().zip(&r.pred).map(|(y, f)| y - f).collect() };
    let rho = best_nd.map(|r| rho_corrected(&resid_of(r))).unwrap_or(0.0);
    let n_eff = stats::effective_n(n, rho);
    let c_hat = n as f64 / n_eff;
    let block = block_length(n, rho);
    let q: Vec<f64> = raw.iter().map(|r| qaicc(r.rss, n, n_eff, r.model.n_params())).collect();
    let best_q =
        raw.iter().zip(&q).filter(|(r, _)| r.degenerate.is_empty()).map(|(_, &v)| v).fold(f64::INFINITY, f64::min);
    let wsum: f64 = raw
        .iter()
        .zip(&q)
        .filter(|(r, _)| r.degenerate.is_empty() && best_q.is_finite())
        .map(|(_, &v)| (-(v - best_q) / 2.0).exp())
        .sum();

    let grid = band_grid(s);
    let a2 = (1.0 - opt.level) / 2.0;
    let mut fits = Vec::new();
    let mut bands = Vec::new();
    for (mi, (r, &qv)) in raw.iter().zip(&q).enumerate() {
        let model = r.model;
        let nat = model.natural(&r.th, &ctx);
        let resid = resid_of(r);
        let own_rho = stats::lag1_autocorr(&resid);
        let mut params: Vec<Estimate> =
            nat.iter().map(|&v| Estimate { value: v, lo: f64::NAN, hi: f64::NAN }).collect();
        let mut notes = r.notes.clone();
        let mut band = (Vec::new(), Vec::new());
        if r.degenerate.is_empty() {
            if opt.bootstrap > 0 {
                // Moving-block bootstrap of the residuals; every replicate is
                // refitted from the estimate and from the best of the form's
                // own starts on the replicate.
                let f = |th: &[f64], t: f64| model.eval(th, t, &ctx);
                let (lo, hi) = model.bounds(&ctx, yscale);
                let mut rng =
                    rand_chacha::ChaCha8Rng::seed_from_u64(opt.seed ^ (0x9E37_79B9u64.wrapping_mul(mi as u64 + 1)));
                let mut boots: Vec<Vec<f64>> = vec![Vec::new(); model.n_params()];
                let mut bpred: Vec<Vec<f64>> = vec![Vec::new(); grid.len()];
                for _ in 0..opt.bootstrap {
                    let e = block_resample(&resid, block, &mut rng);
                    let ys: Vec<f64> = r.pred.iter().zip(&e).map(|(p, e)| p + e).collect();
                    let pb = Problem { f: &f, t: &s.t, y: &ys, lo: &lo, hi: &hi };
                    let starts = model.starts(&s.t, &ys, &ctx);
                    let alt = starts.iter().min_by(|a, b| pb.rss(a).total_cmp(&pb.rss(b)));
                    let (mut tb, mut cb) = levenberg_marquardt(&pb, &r.th, 200);
                    if let Some(alt) = alt {
                        let (t2, c2) = levenberg_marquardt(&pb, alt, 200);
                        if c2 < cb {
                            tb = t2;
                            cb = c2;
                        }
                    }
                    if !cb.is_finite() {
                        continue;
                    }
                    for (k, v) in model.natural(&tb, &ctx).into_iter().enumerate() {
                        boots[k].push(v);
                    }
                    for (k, &t) in grid.iter().enumerate() {
                        bpred[k].push(model.eval(&tb, t, &ctx));
                    }
                }
                for (p, b) in params.iter_mut().zip(boots.iter_mut()) {
                    let (lo, hi) = (quantile(b, a2), quantile(b, 1.0 - a2));
                    if hi - lo > 1e-12 * p.value.abs().max(1e-12) {
                        p.lo = lo.min(p.value);
                        p.hi = hi.max(p.value);
                    }
                }
                band = (
                    bpred.iter_mut().map(|b| quantile(b, a2)).collect(),
                    bpred.iter_mut().map(|b| quantile(b, 1.0 - a2)).collect(),
                );
            }
            if let Some(idx) = model.exponent_index() {
                let (lo, hi) = profile_exponent(model, idx, s, &ctx, yscale, &r.th, r.rss, c_hat, opt.level);
                params[idx].lo = lo;
                params[idx].hi = hi;
                if lo.is_nan() || hi.is_nan() {
                    notes.push(format!(
                        "the data do not bound α on the {} (profile likelihood stays within the {:.0} % threshold up to the bound)",
                        match (lo.is_nan(), hi.is_nan()) {
                            (true, true) => "either side",
                            (true, false) => "low side",
                            _ => "high side",
                        },
                        opt.level * 100.0
                    ));
                }
            }
        }
        let deg = !r.degenerate.is_empty();
        fits.push(ModelFit {
            model,
            params,
            rss: r.rss,
            n,
            aicc: plain(r),
            qaicc: qv,
            delta: if deg || !best_q.is_finite() { f64::NAN } else { qv - best_q },
            weight: if deg || !best_q.is_finite() || !(wsum > 0.0) { 0.0 } else { (-(qv - best_q) / 2.0).exp() / wsum },
            degenerate: r.degenerate.clone(),
            notes,
            rho: own_rho,
            internal: r.th.clone(),
            ctx,
        });
        bands.push(band);
    }
    let mut order: Vec<usize> = (0..fits.len()).collect();
    order.sort_by(|&a, &b| {
        (fits[a].is_degenerate(), fits[a].qaicc)
            .partial_cmp(&(fits[b].is_degenerate(), fits[b].qaicc))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let fits: Vec<ModelFit> = order.iter().map(|&k| fits[k].clone()).collect();
    let band_lo = order.iter().map(|&k| bands[k].0.clone()).collect();
    let band_hi = order.iter().map(|&k| bands[k].1.clone()).collect();
    let fam_w = |fam: Family| fits.iter().filter(|f| f.model.family() == fam).map(|f| f.weight).sum::<f64>();
    let best_q_of = |fam: Family| fits.iter().find(|f| !f.is_degenerate() && f.model.family() == fam).map(|f| f.qaicc);
    let family_delta = match (best_q_of(Family::PowerLike), best_q_of(Family::ExpLike)) {
        (Some(p), Some(e)) => e - p,
        _ => f64::NAN,
    };
    let verdict = if !family_delta.is_finite() {
        Verdict::NoFit
    } else if family_delta >= FAMILY_MARGIN {
        Verdict::PowerLike
    } else if family_delta <= -FAMILY_MARGIN {
        Verdict::ExpLike
    } else {
        Verdict::Undecided
    };
    // Standing nesting statements.
    let has = |m: FitModel| fits.iter().any(|f| f.model == m);
    if has(FitModel::PowerOnset) && has(FitModel::Power) {
        series_notes.push("power_onset is power with its time origin fixed at the measured onset (nested)".into());
    }
    if has(FitModel::LogLogistic) && has(FitModel::Power) {
        series_notes.push(
            "after its midpoint a log-logistic is a power law with α = 1/s: the two are the same hypothesis on a tail"
                .into(),
        );
    }
    if has(FitModel::Exp) && has(FitModel::Logistic) {
        series_notes.push("after its midpoint a logistic relaxes exponentially with τ = w".into());
    }
    Some(SeriesFit {
        weight_power_like: fam_w(Family::PowerLike),
        weight_exp_like: fam_w(Family::ExpLike),
        fits,
        t_from: s.t[0],
        t_to: s.t[n - 1],
        n,
        level: opt.level,
        rho,
        n_eff,
        block,
        family_delta,
        verdict,
        notes: series_notes,
        band_t: grid,
        band_lo,
        band_hi,
    })
}

/// Merge near-duplicate checkpoints, fit the whole curve and the tail
/// (from the first point at half the final value; `power_onset` anchored at
/// the emergence step), and put a moving-block bootstrap interval on the
/// emergence step (around the best whole-curve fit, clipped to the data).
pub fn fit_report(s: &Series, opt: &FitOptions) -> FitReport {
    let (s, merged) = s.merge_near(opt.merge_rel);
    let whole = fit_series(&s, f64::NAN, opt);
    let e = emergence_step(&s).map(|e| e.clamp(s.t[0], s.t[s.len() - 1]));
    let tail = tail_start(&s).and_then(|k| {
        // The onset anchor must precede the tail's first point.
        let anchor = match e {
            Some(e) if e < s.t[k] => e,
            _ if k > 0 => s.t[k - 1],
            _ => f64::NAN,
        };
        fit_series(&s.subset(k), anchor, opt)
    });
    let final_value = if s.is_empty() { f64::NAN } else { tail_mean(&s.y) };
    let emergence = e.map(|e| {
        let (mut lo, mut hi) = (f64::NAN, f64::NAN);
        if let (Some(best), Some(w)) = (whole.as_ref().and_then(|w| w.best()), whole.as_ref()) {
            if opt.bootstrap > 0 {
                let fitted: Vec<f64> = s.t.iter().map(|&t| best.predict(t)).collect();
                let resid: Vec<f64> = s.y.iter().zip(&fitted).map(|(y, f)| y - f).collect();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opt.seed ^ 0xE3E);
                let e_fit = emergence_step(&Series { t: s.t.clone(), y: fitted.clone() }).unwrap_or(e);
                let mut v = Vec::new();
                for _ in 0..opt.bootstrap {
                    // Replicates scatter around the fitted curve; their
                    // crossings' spread about the fit's own crossing is moved
                    // onto the data's crossing.
                    let eb = block_resample(&resid, w.block, &mut rng);
                    let ys: Vec<f64> = fitted.iter().zip(&eb).map(|(f, e)| f + e).collect();
                    if let Some(x) = emergence_step(&Series { t: s.t.clone(), y: ys }) {
                        v.push(x - e_fit + e);
                    }
                }
                let a = (1.0 - opt.level) / 2.0;
                let (t0, t1) = (s.t[0], s.t[s.len() - 1]);
                lo = quantile(&mut v.clone(), a).min(e).clamp(t0, t1);
                hi = quantile(&mut v, 1.0 - a).max(e).clamp(t0, t1);
            }
        }
        Estimate { value: e, lo, hi }
    });
    FitReport { whole, tail, emergence, final_value, merged }
}

#[cfg(test)]
mod tests;
