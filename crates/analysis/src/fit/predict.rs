//! Predicting the emergence step from early training (issue 19): from what
//! is known before the collision score reaches a tenth of its final value,
//! predict the step at which it crosses half its final value; and the
//! honest evaluation of such predictions across runs against a baseline
//! that predicts the mean emergence step of the other runs.
//!
//! Definitions (used everywhere, stated once; README "Predicting the
//! emergence step"):
//! - The score curve is a run's collision-head series (the study's), with
//!   checkpoints closer than 2 % merged ([`Series::merge_near`]).
//! - **Final value** F: the mean of the last k raw points, k = n/10 clamped
//!   to [1, 3] (the same as [`super::emergence_step`]).
//! - The **smoothed curve** is the running median of 3 consecutive
//!   checkpoints (the first and last points kept as they are), so that one
//!   noisy checkpoint cannot make a crossing.
//! - A level is **crossed** at the first checkpoint where the smoothed curve
//!   is at or above it, interpolated in ln(1 + t) with the checkpoint before
//!   ([`super::crossing`]).
//! - The **actual emergence step** is where the smoothed curve crosses
//!   [`TARGET_FRACTION`]·F; the **early window** ends where it crosses
//!   [`EARLY_FRACTION`]·F: predictors see only checkpoints (and training
//!   metrics) at steps ≤ the **cutoff**, the last checkpoint before that
//!   crossing.
//!
//! Predictors ([`Predictor`]):
//! - `extrapolate`: the log-logistic ([`EXTRAPOLATION_FORM`], the demo's
//!   best whole-curve form) fitted to the early checkpoints of the score and
//!   followed to the planned last step t_end; its crossing of half its
//!   value at t_end is the prediction ([`extrapolate_form`]).
//! - `extrap_any`: every emergence form fitted with the study's fit
//!   machinery, degeneracy rules included; the best non-degenerate form by
//!   adjusted AICc, followed the same way ([`extrapolate`]).
//! - `loss_clock`: a landmark of the training loss, the first logged step
//!   where its running mean over [`LOSS_SMOOTH`] steps falls below
//!   [`LOSS_LANDMARK`] × the no-change validation loss, times a ratio
//!   (geometric mean of actual step / landmark) calibrated on other runs.
//! - `qk_clock`: the first checkpoint where the largest ‖W_Q·W_Kᵀ‖_F over
//!   all heads reaches [`QK_LANDMARK`] × its value at the first checkpoint,
//!   times a ratio calibrated the same way.
//! - Baselines: `mean_all`, the mean actual step of the other runs (every
//!   setting), and `mean_setting`, that of the other runs of the same
//!   setting (it knows the setting, so it is the harder one to beat).
//!
//! Landmark thresholds were fixed before any run was evaluated; they are
//! not tuned on the runs they are judged on.

use serde::{Deserialize, Serialize};

use super::stats::{mean_std, t_quantile};
use super::{crossing, fit_series, FitModel, FitOptions, Series};

/// Fraction of the final value at which the early window ends.
pub const EARLY_FRACTION: f64 = 0.1;
/// Fraction of the final value whose crossing step is predicted.
pub const TARGET_FRACTION: f64 = 0.5;
/// Checkpoints closer than this relative gap are merged (as for the fits).
pub const MERGE_REL: f64 = 0.02;
/// The form the `extrapolate` predictor fits: the log-logistic, the best
/// whole-curve form in every seed of the demo (README).
pub const EXTRAPOLATION_FORM: FitModel = FitModel::LogLogistic;
/// Fewest early checkpoints the extrapolation fits.
pub const MIN_EARLY_POINTS: usize = 6;
/// Loss landmark: the smoothed training loss falls below this multiple of
/// the no-change validation loss.
pub const LOSS_LANDMARK: f64 = 0.5;
/// Logged steps in the running mean of the training loss.
pub const LOSS_SMOOTH: usize = 20;
/// W_Q·W_Kᵀ landmark: the largest norm over heads reaches this multiple of
/// its value at the first checkpoint.
pub const QK_LANDMARK: f64 = 2.0;

/// Running median of 3 consecutive values; the first and last values kept.
pub fn smooth(y: &[f64]) -> Vec<f64> {
    let n = y.len();
    (0..n)
        .map(|i| {
            if i == 0 || i + 1 == n {
                y[i]
            } else {
                let mut w = [y[i - 1], y[i], y[i + 1]];
                w.sort_by(|a, b| a.total_cmp(b));
                w[1]
            }
        })
        .collect()
}

/// The final value: mean of the last k raw points, k = n/10 in [1, 3].
/// `None` for an empty series.
pub fn final_value(s: &Series) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let k = (s.len() / 10).clamp(1, 3);
    Some(s.y[s.len() - k..].iter().sum::<f64>() / k as f64)
}

/// Where the smoothed curve first reaches `level` (see the module docs).
pub fn smoothed_crossing(s: &Series, level: f64) -> Option<f64> {
    crossing(&Series { t: s.t.clone(), y: smooth(&s.y) }, level)
}

/// The landmarks of one full score curve (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Landmarks {
    /// Final value F.
    pub final_value: f64,
    /// Where the smoothed curve crosses [`EARLY_FRACTION`]·F.
    pub t_early_end: f64,
    /// The last checkpoint before that crossing: predictors see steps ≤ this.
    pub cutoff: f64,
    /// Where the smoothed curve crosses [`TARGET_FRACTION`]·F: the actual emergence step.
    pub actual: f64,
}

/// The landmarks of a full score curve, or why there are none (no positive
/// final value, a crossing never made, no checkpoint before the early
/// window ends).
pub fn landmarks(s: &Series) -> Result<Landmarks, String> {
    let (s, _) = s.merge_near(MERGE_REL);
    let f = final_value(&s).ok_or("the score series is empty")?;
    if !(f > 0.0) {
        return Err(format!("the final score {f:.3} is not positive: nothing emerged"));
    }
    let early = smoothed_crossing(&s, EARLY_FRACTION * f).ok_or_else(|| {
        format!("the smoothed score never reaches {:.0} % of its final value", EARLY_FRACTION * 100.0)
    })?;
    let actual = smoothed_crossing(&s, TARGET_FRACTION * f).ok_or_else(|| {
        format!("the smoothed score never reaches {:.0} % of its final value", TARGET_FRACTION * 100.0)
    })?;
    let cutoff = s.t.iter().copied().filter(|&t| t < early).fold(f64::NAN, f64::max);
    if !cutoff.is_finite() {
        return Err(format!(
            "the score is at {:.0} % of its final value from the first checkpoint on: no early window",
            EARLY_FRACTION * 100.0
        ));
    }
    Ok(Landmarks { final_value: f, t_early_end: early, cutoff, actual })
}

/// The ways of predicting the emergence step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Predictor {
    /// The log-logistic ([`EXTRAPOLATION_FORM`]) fitted to the early score, extrapolated.
    Extrapolate,
    /// The best non-degenerate form of every emergence form fitted to the early score, extrapolated.
    ExtrapolateAny,
    /// Training-loss landmark × a ratio calibrated on other runs.
    LossClock,
    /// W_Q·W_Kᵀ-norm landmark × a ratio calibrated on other runs.
    QkClock,
    /// Baseline: the mean actual step of the other runs (all settings).
    MeanAll,
    /// Baseline: the mean actual step of the other runs of the same setting.
    MeanSetting,
}

impl Predictor {
    /// Every predictor, in display order (baselines last).
    pub const ALL: [Predictor; 6] = [
        Predictor::Extrapolate,
        Predictor::ExtrapolateAny,
        Predictor::LossClock,
        Predictor::QkClock,
        Predictor::MeanAll,
        Predictor::MeanSetting,
    ];
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Predictor::Extrapolate => "extrapolate",
            Predictor::ExtrapolateAny => "extrapolate_any",
            Predictor::LossClock => "loss_clock",
            Predictor::QkClock => "qk_clock",
            Predictor::MeanAll => "mean_all",
            Predictor::MeanSetting => "mean_setting",
        }
    }
    /// One line saying what it does.
    pub fn describe(self) -> &'static str {
        match self {
            Predictor::Extrapolate => {
                "log-logistic fitted to the early score, followed to the last step; half its value there"
            }
            Predictor::ExtrapolateAny => {
                "every emergence form fitted to the early score with the fits' degeneracy rules; the best by AICc, followed to the last step"
            }
            Predictor::LossClock => {
                "step where the smoothed training loss falls below half the no-change loss × a ratio calibrated on other runs"
            }
            Predictor::QkClock => {
                "step where the largest ‖W_Q·W_Kᵀ‖ over heads doubles × a ratio calibrated on other runs"
            }
            Predictor::MeanAll => "baseline: mean emergence step of the other runs, every setting",
            Predictor::MeanSetting => "baseline: mean emergence step of the other runs of the same setting",
        }
    }
    /// True for the two baselines.
    pub fn is_baseline(self) -> bool {
        matches!(self, Predictor::MeanAll | Predictor::MeanSetting)
    }
}

/// What a run offers up to its cutoff step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyData {
    /// The planned last step of the run (the step whose score is the final value).
    pub t_end: f64,
    /// The last step seen.
    pub cutoff: f64,
    /// The score at the checkpoints ≤ cutoff (the heads on top at the cutoff).
    pub score: Series,
    /// The training loss at the logged steps ≤ cutoff.
    pub loss: Series,
    /// The no-change validation loss (same units as the loss).
    pub loss_reference: f64,
    /// The largest ‖W_Q·W_Kᵀ‖_F over heads at the checkpoints ≤ cutoff.
    pub qk: Series,
}

/// The extrapolation of a fitted form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extrapolation {
    /// Predicted emergence step.
    pub step: f64,
    /// The form used.
    pub form: String,
    /// Its value at t_end (the predicted final value).
    pub final_value: f64,
}

/// Follow a fitted curve from `t0` to `t_end`: where it first reaches half
/// its value at `t_end`.
fn half_crossing(f: &dyn Fn(f64) -> f64, t0: f64, t_end: f64, form: &str) -> Result<Extrapolation, String> {
    let f_end = f(t_end);
    if !(f_end.is_finite() && f_end > 0.0) {
        return Err(format!("{form} predicts no positive final score ({f_end:.3} at step {t_end})"));
    }
    // A fine grid in ln(1 + t) from the first checkpoint.
    let (a, b) = ((1.0 + t0).ln(), (1.0 + t_end).ln());
    let n = 4000;
    let grid: Vec<f64> = (0..=n).map(|k| (a + (b - a) * k as f64 / n as f64).exp() - 1.0).collect();
    let y: Vec<f64> = grid.iter().map(|&t| f(t)).collect();
    let step = crossing(&Series { t: grid, y }, TARGET_FRACTION * f_end)
        .ok_or_else(|| format!("{form} never reaches half its final value"))?;
    Ok(Extrapolation { step, form: form.to_string(), final_value: f_end })
}

fn early_checks(score: &Series, t_end: f64) -> Result<Series, String> {
    let (s, _) = score.merge_near(MERGE_REL);
    if s.len() < MIN_EARLY_POINTS {
        return Err(format!("{} early checkpoints; the fit needs at least {MIN_EARLY_POINTS}", s.len()));
    }
    if !(t_end > s.t[s.len() - 1]) {
        return Err(format!("the last step {t_end} is not after the early checkpoints"));
    }
    Ok(s)
}

/// Fit one form to the early score by least squares (several starts, in the
/// form's box) and follow it to `t_end`: the prediction is where it first
/// reaches half its value at `t_end`. This is extrapolation on purpose: the
/// fits' rules that call a sigmoid whose midpoint lies beyond the data
/// degenerate are not applied; a shape parameter on its box bound still
/// means no prediction. Errors say why there is none.
pub fn extrapolate_form(score: &Series, t_end: f64, model: FitModel) -> Result<Extrapolation, String> {
    let s = early_checks(score, t_end)?;
    let n = s.len();
    let ctx = super::FitContext { t_scale: s.t[n - 1].abs().max(1e-12), t_first: s.t[0], t_anchor: f64::NAN };
    let ymax = s.y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ymin = s.y.iter().copied().fold(f64::INFINITY, f64::min);
    let yscale = (ymax - ymin).max(1e-9 * ymax.abs().max(1e-12));
    let (th, _) = super::fit_form(model, &s, &ctx, yscale, &[]).ok_or("the fit did not converge")?;
    let on_bound: Vec<String> =
        super::bound_flags(model, &th, &ctx, &s, yscale).into_iter().filter(|r| r.contains("on its bound")).collect();
    if !on_bound.is_empty() {
        return Err(format!("{}: {}", model.name(), on_bound.join("; ")));
    }
    half_crossing(&|t| model.eval(&th, t, &ctx), s.t[0], t_end, model.name())
}

/// Fit every emergence form to the early score with the study's fit
/// machinery ([`fit_series`], its degeneracy rules included) and follow the
/// best non-degenerate one (by adjusted AICc) to `t_end`.
pub fn extrapolate(score: &Series, t_end: f64) -> Result<Extrapolation, String> {
    let s = early_checks(score, t_end)?;
    let opt = FitOptions { bootstrap: 0, min_points: MIN_EARLY_POINTS, ..Default::default() };
    let fit = fit_series(&s, f64::NAN, &opt).ok_or("no form could be fitted")?;
    let Some(best) = fit.best() else {
        let why: Vec<String> =
            fit.fits.iter().map(|f| format!("{}: {}", f.model.name(), f.degenerate.join("; "))).collect();
        return Err(format!("every form is degenerate on the early checkpoints ({})", why.join(" | ")));
    };
    half_crossing(&|t| best.predict(t), s.t[0], t_end, best.model.name())
}

/// First step where the running mean of `window` consecutive values of `s`
/// (ending at that step) is at or below `level`.
fn first_mean_below(s: &Series, window: usize, level: f64) -> Option<f64> {
    let w = window.max(1);
    if s.len() < w {
        return None;
    }
    let mut sum: f64 = s.y[..w].iter().sum();
    for i in w - 1..s.len() {
        if i >= w {
            sum += s.y[i] - s.y[i - w];
        }
        if sum / w as f64 <= level {
            return Some(s.t[i]);
        }
    }
    None
}

/// The loss landmark: the first logged step where the running mean of the
/// training loss over [`LOSS_SMOOTH`] steps is at or below
/// [`LOSS_LANDMARK`] × `reference` (the no-change validation loss).
pub fn loss_landmark(loss: &Series, reference: f64) -> Result<f64, String> {
    if !(reference > 0.0) {
        return Err(format!("no usable no-change loss ({reference})"));
    }
    first_mean_below(loss, LOSS_SMOOTH, LOSS_LANDMARK * reference).ok_or_else(|| {
        format!(
            "the training loss has not fallen below {LOSS_LANDMARK} × the no-change loss by step {}",
            loss.t.last().copied().unwrap_or(f64::NAN)
        )
    })
}

/// The W_Q·W_Kᵀ landmark: the first checkpoint where the largest norm over
/// heads reaches [`QK_LANDMARK`] × its value at the first checkpoint.
pub fn qk_landmark(qk: &Series) -> Result<f64, String> {
    let first = *qk.y.first().ok_or("no checkpoint with W_Q, W_K")?;
    if !(first > 0.0) {
        return Err(format!("‖W_Q·W_Kᵀ‖ is {first} at the first checkpoint"));
    }
    let k = qk.y.iter().position(|&v| v >= QK_LANDMARK * first).ok_or_else(|| {
        format!(
            "the largest ‖W_Q·W_Kᵀ‖ has not reached {QK_LANDMARK} × its first value by step {}",
            qk.t.last().copied().unwrap_or(f64::NAN)
        )
    })?;
    Ok(qk.t[k])
}

/// The calibrated ratio of a clock: the geometric mean of actual step /
/// landmark over calibration pairs (landmark, actual), both positive.
/// `None` without any usable pair.
pub fn clock_ratio(pairs: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<f64> = pairs
        .iter()
        .filter(|(l, a)| *l > 0.0 && *a > 0.0 && l.is_finite() && a.is_finite())
        .map(|(l, a)| (a / l).ln())
        .collect();
    if logs.is_empty() {
        return None;
    }
    Some((logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

/// One run to predict, or to calibrate with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// The run's name.
    pub name: String,
    /// Its setting (runs of one setting differ only by seed).
    pub setting: String,
    /// What it offers up to its cutoff.
    pub early: EarlyData,
    /// Its actual emergence step (`None`: not known, e.g. the run is not finished).
    pub actual: Option<f64>,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Which predictor.
    pub predictor: Predictor,
    /// The predicted emergence step (NaN: no prediction).
    pub step: f64,
    /// How it was made, or why there is none.
    pub note: String,
}

impl Prediction {
    /// True when a step was predicted.
    pub fn made(&self) -> bool {
        self.step.is_finite()
    }
    /// ln(predicted / actual), NaN when either is missing.
    pub fn log_error(&self, actual: Option<f64>) -> f64 {
        match actual {
            Some(a) if a > 0.0 && self.step > 0.0 => (self.step / a).ln(),
            _ => f64::NAN,
        }
    }
}

/// Every prediction for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The run's name.
    pub name: String,
    /// Its setting.
    pub setting: String,
    /// The last step the predictors saw.
    pub cutoff: f64,
    /// The actual emergence step, when known (NaN otherwise).
    pub actual: f64,
    /// The loss landmark (NaN: not reached by the cutoff).
    pub loss_landmark: f64,
    /// The W_Q·W_Kᵀ landmark (NaN: not reached by the cutoff).
    pub qk_landmark: f64,
    /// One per predictor, in [`Predictor::ALL`] order.
    pub predictions: Vec<Prediction>,
}

impl CaseResult {
    /// The prediction of `p`.
    pub fn get(&self, p: Predictor) -> Option<&Prediction> {
        self.predictions.iter().find(|x| x.predictor == p)
    }
    fn actual_opt(&self) -> Option<f64> {
        self.actual.is_finite().then_some(self.actual)
    }
}

/// How one predictor did over the runs with a known actual step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorSummary {
    /// Which predictor.
    pub predictor: Predictor,
    /// Runs with a known actual step.
    pub n_runs: usize,
    /// Of those, runs where it made a prediction.
    pub n_predicted: usize,
    /// Mean |ln(predicted / actual)| over the runs it predicted (NaN: none).
    pub mean_abs_log_error: f64,
    /// Median |predicted − actual| / actual.
    pub median_abs_rel_error: f64,
    /// Largest |predicted − actual| / actual.
    pub max_abs_rel_error: f64,
    /// Median |predicted − actual| in steps.
    pub median_abs_error: f64,
    /// Runs where it is closer (in ln) than the `mean_all` baseline, of the
    /// runs where both predicted.
    pub wins_vs_mean_all: usize,
    /// Runs where both it and `mean_all` predicted.
    pub paired_vs_mean_all: usize,
    /// Mean over those runs of |log error| − |log error of mean_all|
    /// (< 0: better than the baseline), with a Student-t interval over runs.
    pub diff_vs_mean_all: [f64; 3],
    /// The same against `mean_setting`.
    pub diff_vs_mean_setting: [f64; 3],
    /// Mean |log error| per setting, in the order of [`Evaluation::settings`].
    pub per_setting: Vec<f64>,
}

/// The predictions for every run and how each predictor did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Every run predicted.
    pub cases: Vec<CaseResult>,
    /// The settings, in order of first appearance.
    pub settings: Vec<String>,
    /// One per predictor.
    pub summary: Vec<PredictorSummary>,
    /// What the calibration used.
    pub calibration: String,
    /// Confidence level of the intervals.
    pub level: f64,
}

/// The loss and W_Q·W_Kᵀ landmarks of a case (each an error when not reached).
type CaseLandmarks = (Result<f64, String>, Result<f64, String>);

/// The landmarks of a case.
fn case_landmarks(c: &Case) -> CaseLandmarks {
    (loss_landmark(&c.early.loss, c.early.loss_reference), qk_landmark(&c.early.qk))
}

/// Predict every target with every predictor. Calibration (the clocks'
/// ratios and the baselines' means) uses `references` and, when
/// `leave_one_out`, the other targets with a known actual step — never the
/// target itself.
pub fn evaluate(targets: &[Case], references: &[Case], leave_one_out: bool, level: f64) -> Evaluation {
    let lm_t: Vec<_> = targets.iter().map(case_landmarks).collect();
    let lm_r: Vec<_> = references.iter().map(case_landmarks).collect();
    let mut cases = Vec::new();
    for (i, c) in targets.iter().enumerate() {
        // The calibration set: (case, its landmarks).
        let mut cal: Vec<(&Case, &CaseLandmarks)> =
            references.iter().zip(&lm_r).filter(|(r, _)| r.actual.is_some()).collect();
        if leave_one_out {
            cal.extend(
                targets
                    .iter()
                    .zip(&lm_t)
                    .enumerate()
                    .filter(|(j, (t, _))| *j != i && t.actual.is_some())
                    .map(|(_, x)| x),
            );
        }
        let mut preds = Vec::new();
        for p in Predictor::ALL {
            let pred = |step: f64, note: String| Prediction { predictor: p, step, note };
            let none = |note: String| Prediction { predictor: p, step: f64::NAN, note };
            let pr = match p {
                Predictor::Extrapolate | Predictor::ExtrapolateAny => {
                    let e = if p == Predictor::Extrapolate {
                        extrapolate_form(&c.early.score, c.early.t_end, EXTRAPOLATION_FORM)
                    } else {
                        extrapolate(&c.early.score, c.early.t_end)
                    };
                    match e {
                        Ok(e) => pred(e.step, format!("{} (predicted final score {:.3})", e.form, e.final_value)),
                        Err(e) => none(e),
                    }
                }
                Predictor::LossClock | Predictor::QkClock => {
                    let pick = |l: &CaseLandmarks| -> Result<f64, String> {
                        if p == Predictor::LossClock {
                            l.0.clone()
                        } else {
                            l.1.clone()
                        }
                    };
                    match pick(&lm_t[i]) {
                        Err(e) => none(e),
                        Ok(l) => {
                            let pairs: Vec<(f64, f64)> =
                                cal.iter().filter_map(|(r, lm)| Some((pick(lm).ok()?, r.actual?))).collect();
                            match clock_ratio(&pairs) {
                                Some(r) => {
                                    pred(l * r, format!("landmark {l:.0} × ratio {r:.2} from {} runs", pairs.len()))
                                }
                                None => none("no calibration run reached the landmark".into()),
                            }
                        }
                    }
                }
                Predictor::MeanAll | Predictor::MeanSetting => {
                    let v: Vec<f64> = cal
                        .iter()
                        .filter(|(r, _)| p == Predictor::MeanAll || r.setting == c.setting)
                        .filter_map(|(r, _)| r.actual)
                        .collect();
                    if v.is_empty() {
                        none("no calibration run".into())
                    } else {
                        pred(v.iter().sum::<f64>() / v.len() as f64, format!("mean of {} runs", v.len()))
                    }
                }
            };
            preds.push(pr);
        }
        let f = |r: &Result<f64, String>| r.as_ref().copied().unwrap_or(f64::NAN);
        cases.push(CaseResult {
            name: c.name.clone(),
            setting: c.setting.clone(),
            cutoff: c.early.cutoff,
            actual: c.actual.unwrap_or(f64::NAN),
            loss_landmark: f(&lm_t[i].0),
            qk_landmark: f(&lm_t[i].1),
            predictions: preds,
        });
    }
    let mut settings: Vec<String> = Vec::new();
    for c in &cases {
        if !settings.contains(&c.setting) {
            settings.push(c.setting.clone());
        }
    }
    let summary = Predictor::ALL.iter().map(|&p| summarize(&cases, &settings, p, level)).collect();
    let calibration = match (references.len(), leave_one_out) {
        (0, true) => "leave-one-out over the runs predicted".to_string(),
        (n, true) => format!("{n} reference runs and, leaving one out, the other runs predicted"),
        (n, false) => format!("{n} reference runs"),
    };
    Evaluation { cases, settings, summary, calibration, level }
}

/// Mean and Student-t interval of `v` at `level` ([NaN; 3] when empty).
fn mean_interval(v: &[f64], level: f64) -> [f64; 3] {
    let (m, sd) = mean_std(v);
    if v.len() < 2 || !sd.is_finite() {
        return [m, f64::NAN, f64::NAN];
    }
    let h = t_quantile(0.5 + level / 2.0, (v.len() - 1) as f64) * sd / (v.len() as f64).sqrt();
    [m, m - h, m + h]
}

fn median(mut v: Vec<f64>) -> f64 {
    super::stats::quantile(&mut v, 0.5)
}

fn summarize(cases: &[CaseResult], settings: &[String], p: Predictor, level: f64) -> PredictorSummary {
    let known: Vec<&CaseResult> = cases.iter().filter(|c| c.actual_opt().is_some()).collect();
    let err = |c: &CaseResult, q: Predictor| c.get(q).map_or(f64::NAN, |x| x.log_error(c.actual_opt()));
    let logs: Vec<f64> = known.iter().map(|c| err(c, p)).filter(|x| x.is_finite()).collect();
    let rel: Vec<f64> = known
        .iter()
        .filter_map(|c| {
            let x = c.get(p)?;
            x.made().then(|| ((x.step - c.actual) / c.actual).abs())
        })
        .collect();
    let abs: Vec<f64> = known
        .iter()
        .filter_map(|c| {
            let x = c.get(p)?;
            x.made().then(|| (x.step - c.actual).abs())
        })
        .collect();
    let paired = |q: Predictor| -> Vec<f64> {
        known.iter().map(|c| err(c, p).abs() - err(c, q).abs()).filter(|d| d.is_finite()).collect::<Vec<f64>>()
    };
    let d_all = paired(Predictor::MeanAll);
    let per_setting = settings
        .iter()
        .map(|s| {
            let v: Vec<f64> =
                known.iter().filter(|c| &c.setting == s).map(|c| err(c, p).abs()).filter(|x| x.is_finite()).collect();
            mean_std(&v).0
        })
        .collect();
    PredictorSummary {
        predictor: p,
        n_runs: known.len(),
        n_predicted: logs.len(),
        mean_abs_log_error: mean_std(&logs.iter().map(|x| x.abs()).collect::<Vec<_>>()).0,
        median_abs_rel_error: median(rel.clone()),
        max_abs_rel_error: rel.iter().copied().fold(f64::NAN, f64::max),
        median_abs_error: median(abs),
        wins_vs_mean_all: d_all.iter().filter(|&&d| d < 0.0).count(),
        paired_vs_mean_all: d_all.len(),
        diff_vs_mean_all: mean_interval(&d_all, level),
        diff_vs_mean_setting: mean_interval(&paired(Predictor::MeanSetting), level),
        per_setting,
    }
}

impl PredictorSummary {
    /// One sentence: how it did, against the pooled baseline, with the
    /// interval over runs; a tie when the interval holds 0.
    pub fn sentence(&self) -> String {
        let name = self.predictor.name();
        if self.n_predicted == 0 {
            return format!("{name}: no prediction in any of the {} runs.", self.n_runs);
        }
        let mut s = format!(
            "{name}: predicted {} of {} runs; mean |ln(predicted/actual)| {:.2} (a factor {:.2}), median relative error {:.0} %.",
            self.n_predicted,
            self.n_runs,
            self.mean_abs_log_error,
            self.mean_abs_log_error.exp(),
            self.median_abs_rel_error * 100.0
        );
        if !self.predictor.is_baseline() {
            let [m, lo, hi] = self.diff_vs_mean_all;
            let verdict = if !(lo.is_finite() && hi.is_finite()) {
                "too few runs for an interval".to_string()
            } else if hi < 0.0 {
                "better than the mean baseline".to_string()
            } else if lo > 0.0 {
                "worse than the mean baseline".to_string()
            } else {
                "a tie with the mean baseline (the interval holds 0)".to_string()
            };
            s.push_str(&format!(
                " Against mean_all: closer in {} of {} runs; |log error| difference {m:+.2} [{lo:+.2}, {hi:+.2}] over runs: {verdict}.",
                self.wins_vs_mean_all, self.paired_vs_mean_all
            ));
        }
        s
    }
}

impl Evaluation {
    /// The evaluation in words and a per-run table (plain text).
    pub fn text(&self) -> String {
        let mut s = format!(
            "Predicting the emergence step (smoothed score crosses {:.0} % of its final value) from checkpoints before it reaches {:.0} %; calibration: {}.\n",
            TARGET_FRACTION * 100.0,
            EARLY_FRACTION * 100.0,
            self.calibration
        );
        s.push_str(&format!("{:<28} {:<16} {:>8} {:>8}", "run", "setting", "cutoff", "actual"));
        for p in Predictor::ALL {
            s.push_str(&format!(" {:>15}", p.name()));
        }
        s.push('\n');
        for c in &self.cases {
            s.push_str(&format!("{:<28} {:<16} {:>8.0} {:>8.0}", c.name, c.setting, c.cutoff, c.actual));
            for p in &c.predictions {
                s.push_str(&format!(" {:>15}", if p.made() { format!("{:.0}", p.step) } else { "–".into() }));
            }
            s.push('\n');
        }
        for p in &self.summary {
            if p.n_runs > 0 {
                s.push_str(&p.sentence());
                s.push('\n');
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checkpoints like `train`'s: step 0, log-spaced steps and a dense band.
    fn steps(t_end: f64) -> Vec<f64> {
        let mut t: Vec<f64> = (0..40).map(|k| (t_end.ln() * k as f64 / 39.0).exp().round()).collect();
        t.extend((0..40).map(|k| (100.0 + 1400.0 * k as f64 / 39.0).round()));
        t.push(0.0);
        t.sort_by(|a, b| a.total_cmp(b));
        t.dedup();
        t
    }

    /// Deterministic noise in [-1, 1] (a hash, no RNG crate state).
    fn noise(k: usize, seed: u64) -> f64 {
        let mut x = (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 31;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 29;
        (x % 2_000_001) as f64 / 1_000_000.0 - 1.0
    }

    /// A log-logistic emergence with midpoint `tm` and slope `s`, final 0.6, noise `sd`.
    fn curve(tm: f64, s: f64, sd: f64, seed: u64) -> Series {
        let t = steps(3000.0);
        let y: Vec<f64> = t
            .iter()
            .enumerate()
            .map(|(k, &x)| 0.6 / (1.0 + (-((1.0 + x).ln() - (1.0 + tm).ln()) / s).exp()) + sd * noise(k, seed))
            .collect();
        Series::new(&t, &y)
    }

    #[test]
    fn smoothing_removes_single_outliers() {
        assert_eq!(smooth(&[0.0, 0.0, 1.0, 0.0, 0.0]), vec![0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(smooth(&[1.0, 2.0]), vec![1.0, 2.0]);
        // One spike above half the final value does not make the crossing.
        let t: Vec<f64> = (0..20).map(|k| k as f64 * 10.0).collect();
        let mut y: Vec<f64> = t.iter().map(|&x| if x >= 120.0 { 1.0 } else { 0.0 }).collect();
        y[5] = 0.9;
        let lm = landmarks(&Series::new(&t, &y)).unwrap();
        assert!(lm.actual > 110.0 && lm.actual <= 120.0, "{lm:?}");
        assert!(lm.cutoff < lm.t_early_end && lm.t_early_end <= lm.actual);
    }

    #[test]
    fn landmarks_refuse_curves_without_emergence() {
        let t: Vec<f64> = (0..20).map(|k| k as f64).collect();
        assert!(landmarks(&Series::new(&t, &[-0.1; 20])).unwrap_err().contains("not positive"));
        assert!(landmarks(&Series::new(&t, &[0.5; 20])).unwrap_err().contains("no early window"));
    }

    /// The log-logistic extrapolation recovers the emergence step of a known
    /// log-logistic law from the checkpoints before 10 % of the final value
    /// (0.6): within 3 % without noise, within 15 % with uniform noise of
    /// ±0.0001 (s.d. 0.00006). It degrades fast with more noise (measured:
    /// off by up to ×3 at ±0.0005, ×5 at ±0.001, ×7 at ±0.002; the demo's
    /// early checkpoints scatter with an s.d. of 0.001–0.003): README,
    /// "Predicting the emergence step".
    #[test]
    fn extrapolation_recovers_a_known_law() {
        for (sd, tol) in [(0.0, 0.03), (0.0001, 0.15)] {
            for (seed, &(tm, s)) in [(250.0, 0.35), (700.0, 0.4), (150.0, 0.3)].iter().enumerate() {
                let full = curve(tm, s, sd, seed as u64);
                let lm = landmarks(&full).unwrap();
                // Half the final value (0.6/2) at tm, up to the small
                // difference between the curve at the last step and 0.6.
                assert!((lm.actual / tm - 1.0).abs() < 0.1, "tm {tm}: actual {}", lm.actual);
                let early = Series {
                    t: full.t.iter().copied().filter(|&t| t <= lm.cutoff).collect(),
                    y: full.t.iter().zip(&full.y).filter(|(&t, _)| t <= lm.cutoff).map(|(_, &y)| y).collect(),
                };
                let e = extrapolate_form(&early, 3000.0, EXTRAPOLATION_FORM).unwrap();
                assert!(
                    (e.step / lm.actual - 1.0).abs() < tol,
                    "noise {sd}, tm {tm}: predicted {} vs actual {}",
                    e.step,
                    lm.actual
                );
            }
        }
    }

    /// With noise as large as the early signal, the extrapolation is not
    /// allowed to pretend: it either refuses or its error is reported.
    #[test]
    fn extrapolation_refuses_too_few_points() {
        let s = Series::new(&[0.0, 1.0, 2.0], &[0.0, 0.0, 0.01]);
        assert!(extrapolate(&s, 100.0).unwrap_err().contains("at least"));
        assert!(extrapolate_form(&s, 100.0, EXTRAPOLATION_FORM).unwrap_err().contains("at least"));
    }

    /// Clocks: a landmark proportional to the emergence step (with noise of
    /// ±5 % in each) predicts it within 25 % leaving one run out,
    /// across a threefold change of time scale; the mean baseline does not.
    #[test]
    fn clocks_recover_a_proportional_law() {
        let mut cases = Vec::new();
        for (k, &scale) in [1.0, 1.0, 1.0, 3.0, 3.0, 3.0].iter().enumerate() {
            let actual = 250.0 * scale * (1.0 + 0.05 * noise(k, 7));
            // Loss: exponential decay from 1 to 0.1 with time constant ∝ scale
            // (no-change loss 1): crosses 0.5 at 50·scale·ln 2 / ln... smoothed.
            let lt: Vec<f64> = (1..=3000).map(|s| s as f64).collect();
            let tau = 60.0 * scale * (1.0 + 0.05 * noise(k, 9));
            let ly: Vec<f64> = lt.iter().map(|&s| 0.1 + 0.9 * (-s / tau).exp()).collect();
            // QK: doubles at 40·scale.
            let qt = steps(3000.0);
            let qy: Vec<f64> = qt.iter().map(|&s| 1.0 + s / (40.0 * scale * (1.0 + 0.05 * noise(k, 11)))).collect();
            let cutoff = 0.8 * actual;
            let cut = |s: &Series| Series {
                t: s.t.iter().copied().filter(|&t| t <= cutoff).collect(),
                y: s.t.iter().zip(&s.y).filter(|(&t, _)| t <= cutoff).map(|(_, &y)| y).collect(),
            };
            cases.push(Case {
                name: format!("r{k}"),
                setting: format!("s{scale}"),
                early: EarlyData {
                    t_end: 3000.0,
                    cutoff,
                    score: Series::new(&[0.0], &[0.0]),
                    loss: cut(&Series::new(&lt, &ly)),
                    loss_reference: 1.0,
                    qk: cut(&Series::new(&qt, &qy)),
                },
                actual: Some(actual),
            });
        }
        let ev = evaluate(&cases, &[], true, 0.95);
        for c in &ev.cases {
            for p in [Predictor::LossClock, Predictor::QkClock] {
                let x = c.get(p).unwrap();
                assert!((x.step / c.actual - 1.0).abs() < 0.25, "{}: {:?} vs {}", c.name, x, c.actual);
            }
            // Extrapolation has one point: it says why it does not predict.
            assert!(!c.get(Predictor::Extrapolate).unwrap().made());
        }
        let s = |p: Predictor| ev.summary.iter().find(|x| x.predictor == p).unwrap().clone();
        assert!(s(Predictor::LossClock).mean_abs_log_error < 0.5 * s(Predictor::MeanAll).mean_abs_log_error);
        assert!(s(Predictor::LossClock).diff_vs_mean_all[2] < 0.0, "{:?}", s(Predictor::LossClock));
        assert_eq!(s(Predictor::Extrapolate).n_predicted, 0);
        assert!(ev.text().contains("no prediction in any"));
        // Without leave-one-out and without references nothing is calibrated.
        let ev = evaluate(&cases, &[], false, 0.95);
        assert!(ev.cases.iter().all(|c| !c.get(Predictor::LossClock).unwrap().made()));
        // The target itself is never in its own calibration: with one run, no baseline.
        let ev = evaluate(&cases[..1], &[], true, 0.95);
        assert!(!ev.cases[0].get(Predictor::MeanAll).unwrap().made());
    }
}
