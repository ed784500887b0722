//! The fitted forms: formulas, their parametrization (in scaled time
//! x = t/T, T the last step, so every problem is well conditioned), the box
//! each parameter lives in, starting points, and which family of relaxation
//! each form belongs to.

use serde::{Deserialize, Serialize};

/// A fitted form. See [`FitModel::formula`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitModel {
    /// Saturating power law with a free time origin t_on (before the first point).
    Power,
    /// Saturating power law in t − t_on with t_on fixed at the measured onset
    /// (the emergence step); fitted on the tail only.
    PowerOnset,
    /// Power-law growth from a fitted onset step, b + A·(t − t_c)^β.
    Onset,
    /// Exponential relaxation.
    Exp,
    /// Logistic in t.
    Logistic,
    /// Logistic in ln t (log-logistic).
    LogLogistic,
}

/// The two kinds of approach the test that matters tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Power-like: fast early, slower later, with no time scale
    /// (power, power_onset, onset, loglogistic).
    PowerLike,
    /// Exponential-like: relaxation with a time scale (exp, logistic).
    ExpLike,
}

impl Family {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Family::PowerLike => "power-like",
            Family::ExpLike => "exponential-like",
        }
    }
}

/// Where a form is evaluated: the time scale and the anchors it needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitContext {
    /// Time scale T (the last step fitted): x = t/T.
    pub t_scale: f64,
    /// First step fitted.
    pub t_first: f64,
    /// The measured onset (emergence step) for `power_onset`; NaN when none.
    pub t_anchor: f64,
}

impl FitModel {
    /// Every form, in display order.
    pub const ALL: [FitModel; 6] = [
        FitModel::Power,
        FitModel::PowerOnset,
        FitModel::Onset,
        FitModel::Exp,
        FitModel::Logistic,
        FitModel::LogLogistic,
    ];

    /// Short name used in files and tables.
    pub fn name(self) -> &'static str {
        match self {
            FitModel::Power => "power",
            FitModel::PowerOnset => "power_onset",
            FitModel::Onset => "onset",
            FitModel::Exp => "exp",
            FitModel::Logistic => "logistic",
            FitModel::LogLogistic => "loglogistic",
        }
    }
    /// Human-readable formula (t = step or the chosen time axis).
    pub fn formula(self) -> &'static str {
        match self {
            FitModel::Power => "S∞ − A·((t − t_on)/(t₁ − t_on))^(−α), t_on < t₁ free",
            FitModel::PowerOnset => "S∞ − A·((t − t_on)/(t₁ − t_on))^(−α), t_on = measured onset",
            FitModel::Onset => "b + A·((t − t_c)/(t_N − t_c))^β for t > t_c, b before",
            FitModel::Exp => "S∞ − A·exp(−(t − t₁)/τ)",
            FitModel::Logistic => "b + A/(1 + exp(−(t − t_m)/w))",
            FitModel::LogLogistic => "b + A/(1 + exp(−(ln(1+t) − ln(1+t_m))/s))",
        }
    }
    /// Family of the form.
    pub fn family(self) -> Family {
        match self {
            FitModel::Power | FitModel::PowerOnset | FitModel::Onset | FitModel::LogLogistic => Family::PowerLike,
            FitModel::Exp | FitModel::Logistic => Family::ExpLike,
        }
    }
    /// Names of the reported parameters. Amplitudes are measured where the
    /// data are: `A` of power, power_onset and exp is S∞ minus the curve at
    /// the first fitted step t₁; `A` of onset is the rise from b to the last step.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            FitModel::Power => &["S_inf", "A", "t_on", "alpha"],
            FitModel::PowerOnset => &["S_inf", "A", "alpha"],
            FitModel::Onset => &["b", "A", "t_c", "beta"],
            FitModel::Exp => &["S_inf", "A", "tau"],
            FitModel::Logistic => &["b", "A", "t_m", "w"],
            FitModel::LogLogistic => &["b", "A", "t_m", "s"],
        }
    }
    /// Number of fitted parameters (the noise variance not counted).
    pub fn n_params(self) -> usize {
        self.param_names().len()
    }
    /// Parse a name as written by [`FitModel::name`].
    pub fn parse(s: &str) -> Option<Self> {
        FitModel::ALL.into_iter().find(|m| m.name() == s)
    }
    /// Index of the exponent parameter whose profile-likelihood interval is
    /// computed (power forms).
    pub fn exponent_index(self) -> Option<usize> {
        match self {
            FitModel::Power => Some(3),
            FitModel::PowerOnset => Some(2),
            _ => None,
        }
    }

    /// Model value at `t` for internal parameters `th`.
    pub(crate) fn eval(self, th: &[f64], t: f64, c: &FitContext) -> f64 {
        let x = t / c.t_scale;
        let x1 = c.t_first / c.t_scale;
        match self {
            FitModel::Power => {
                let d = th[2].exp();
                th[0] - th[1] * (1.0 + (x - x1) / d).powf(-th[3].exp())
            }
            FitModel::PowerOnset => {
                let xa = c.t_anchor / c.t_scale;
                let u = (x - xa) / (x1 - xa);
                if u > 0.0 {
                    th[0] - th[1] * u.powf(-th[2].exp())
                } else {
                    f64::NAN
                }
            }
            FitModel::Onset => {
                let d = x - th[2];
                if d <= 0.0 {
                    th[0]
                } else {
                    th[0] + th[1] * (d / (1.0 - th[2])).powf(th[3].exp())
                }
            }
            FitModel::Exp => th[0] - th[1] * (-(x - x1) / th[2].exp()).exp(),
            FitModel::Logistic => th[0] + th[1] / (1.0 + (-(x - th[2]) / th[3].exp()).exp()),
            FitModel::LogLogistic => th[0] + th[1] / (1.0 + (-((1.0 + t).ln() - th[2]) / th[3].exp()).exp()),
        }
    }

    /// Internal → reported parameters.
    pub(crate) fn natural(self, th: &[f64], c: &FitContext) -> Vec<f64> {
        let tsc = c.t_scale;
        match self {
            FitModel::Power => vec![th[0], th[1], c.t_first - th[2].exp() * tsc, th[3].exp()],
            FitModel::PowerOnset => vec![th[0], th[1], th[2].exp()],
            FitModel::Onset => vec![th[0], th[1], th[2] * tsc, th[3].exp()],
            FitModel::Exp => vec![th[0], th[1], th[2].exp() * tsc],
            FitModel::Logistic => vec![th[0], th[1], th[2] * tsc, th[3].exp() * tsc],
            FitModel::LogLogistic => vec![th[0], th[1], th[2].exp() - 1.0, th[3].exp()],
        }
    }

    /// Box of the internal parameters (lower, upper). Levels and amplitudes
    /// are bounded by 10⁶ data ranges; shapes by what the checkpoints can
    /// resolve. A fit that ends on a shape bound is degenerate.
    pub(crate) fn bounds(self, c: &FitContext, yscale: f64) -> (Vec<f64>, Vec<f64>) {
        let big = 1e6 * yscale.max(1e-12);
        let x1 = c.t_first / c.t_scale;
        let span = (1.0 - x1).max(1e-9);
        let ln = f64::ln;
        match self {
            FitModel::Power => (vec![-big, -big, ln(1e-5 * span), ln(0.01)], vec![big, big, ln(1e3 * span), ln(30.0)]),
            FitModel::PowerOnset => (vec![-big, -big, ln(0.01)], vec![big, big, ln(30.0)]),
            FitModel::Onset => (vec![-big, -big, x1 - span, ln(0.02)], vec![big, big, 1.0 - 1e-3 * span, ln(20.0)]),
            FitModel::Exp => (vec![-big, -big, ln(1e-5 * span)], vec![big, big, ln(1e3 * span)]),
            FitModel::Logistic => {
                (vec![-big, -big, x1 - span, ln(1e-5 * span)], vec![big, big, 1.0 + span, ln(1e2 * span)])
            }
            FitModel::LogLogistic => {
                let l1 = (1.0 + c.t_first).ln();
                let ln_ = (1.0 + c.t_scale).ln();
                (
                    vec![-big, -big, l1 - 3.0 * (ln_ - l1).max(1.0), ln(0.01)],
                    vec![big, big, ln_ + 3.0 * (ln_ - l1).max(1.0), ln(20.0)],
                )
            }
        }
    }

    /// Starting points (internal parameters) from the data's shape.
    pub(crate) fn starts(self, t: &[f64], y: &[f64], c: &FitContext) -> Vec<Vec<f64>> {
        let n = y.len();
        let tsc = c.t_scale;
        let y0 = y[0];
        let k = (n / 10).clamp(1, 3);
        let yf = y[n - k..].iter().sum::<f64>() / k as f64;
        let amp = yf - y0;
        let x1 = c.t_first / tsc;
        let span = (1.0 - x1).max(1e-9);
        // Step where the data pass half-way, in scaled time.
        let mid = y0 + 0.5 * amp;
        let i = y.iter().position(|&v| if amp >= 0.0 { v >= mid } else { v <= mid }).unwrap_or(n / 2);
        let xh = (t[i] / tsc).max(x1 + 1e-3 * span);
        let mut v = Vec::new();
        match self {
            FitModel::Power => {
                for &sinf in &[yf, yf + 0.1 * amp] {
                    for &alpha in &[0.3f64, 1.0, 3.0] {
                        for &d in &[1e-3 * span, 0.03 * span, (xh - x1).max(1e-4 * span), 0.3 * span] {
                            v.push(vec![sinf, sinf - y0, d.ln(), alpha.ln()]);
                        }
                    }
                }
            }
            FitModel::PowerOnset => {
                for &sinf in &[yf, yf + 0.1 * amp, yf + 0.3 * amp] {
                    for &alpha in &[0.2f64, 0.7, 2.0, 6.0] {
                        v.push(vec![sinf, sinf - y0, alpha.ln()]);
                    }
                }
            }
            FitModel::Onset => {
                for &fc in &[0.0f64, 0.3, 0.7] {
                    for &beta in &[0.3f64, 0.7, 1.5] {
                        let xc = x1 - 0.01 * span + fc * (xh - x1);
                        v.push(vec![y0, amp, xc, beta.ln()]);
                    }
                }
            }
            FitModel::Exp => {
                for &tau in &[xh - x1, 0.3 * (xh - x1), 3.0 * (xh - x1), 0.05 * span, 0.5 * span] {
                    v.push(vec![yf, yf - y0, tau.max(1e-4 * span).ln()]);
                }
            }
            FitModel::Logistic => {
                for &w in &[0.1 * (xh - x1), 0.3 * (xh - x1), xh - x1, 0.05 * span] {
                    v.push(vec![y0, amp, xh, w.max(1e-4 * span).ln()]);
                }
                v.push(vec![yf - 2.0 * amp, 2.0 * amp, x1, (0.3 * span).ln()]);
            }
            FitModel::LogLogistic => {
                let lh = (1.0 + xh * tsc).ln();
                for &sw in &[0.2f64, 0.5, 1.0, 2.0] {
                    v.push(vec![y0, amp, lh, sw.ln()]);
                }
                v.push(vec![yf - 2.0 * amp, 2.0 * amp, (1.0 + c.t_first).ln(), 0.5f64.ln()]);
            }
        }
        v
    }
}
