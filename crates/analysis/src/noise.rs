//! Heavy-tail statistics for gradient noise (and any other sample).
//!
//! - [`hill`]: the Hill estimator of the tail index α of |X|, from the k
//!   largest order statistics, with its asymptotic standard error α̂/√k;
//!   [`hill_bootstrap`] adds a bootstrap spread.
//! - [`excess_kurtosis`]: the fourth standardized moment minus 3 (0 for a
//!   Gaussian, large for heavy tails, undefined when α ≤ 4).
//! - [`Histogram`]: a histogram with a Gaussian reference density of the same
//!   mean and standard deviation, for plotting on a log scale.
//! - [`NoiseStats`]: all of the above for one sample, as stored in lens files.
//!
//! The statistics of K gradient-noise vectors (minibatch gradient minus the
//! full-batch gradient), which need libtorch, are in `headlab_train::noise`.
//!
//! A Pareto(α) variable has P(|X| > x) ∝ x^(−α); a Gaussian has α = ∞, but
//! the Hill estimator on a finite Gaussian sample returns a finite value that
//! grows slowly with the sample size, so always compare against the same
//! estimator on a Gaussian reference sample of the same size and the same k
//! ([`gaussian_reference_hill`]).

use headlab_sim::stats::{mean_std, Spread};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Errors from the tail statistics: what was wrong with the input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NoiseError {
    /// Shown as "tail statistics need at least {need} finite values, got {got}; collect more samples".
    #[error("tail statistics need at least {need} finite values, got {got}; collect more samples")]
    TooFew {
        /// How many are needed.
        need: usize,
        /// How many there are.
        got: usize,
    },
    /// Shown as "Hill estimator: k = {k} must satisfy 2 <= k < n = {n} (number of nonzero values); choos...".
    #[error("Hill estimator: k = {k} must satisfy 2 <= k < n = {n} (number of nonzero values); choose a smaller k or pass k = 0 for the default sqrt(n)")]
    BadK {
        /// The `k` shown in the message.
        k: usize,
        /// The `n` shown in the message.
        n: usize,
    },
    /// Shown as "Hill estimator: the k+1 largest |values| are all equal ({value}); the tail index is und...".
    #[error(
        "Hill estimator: the k+1 largest |values| are all equal ({value}); the tail index is undefined for this sample"
    )]
    Degenerate {
        /// Its value.
        value: f64,
    },
    /// The forward pass that produced the gradients failed (libtorch side).
    #[error("gradient noise: {0}")]
    Model(String),
}

/// One Hill estimate of the tail index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HillEstimate {
    /// Tail index α̂ = k / Σ_{i=1..k} ln(X_(i) / X_(k+1)), X_(1) ≥ X_(2) ≥ … the |values|.
    pub alpha: f64,
    /// Asymptotic standard error α̂ / √k (Hall 1982).
    pub se: f64,
    /// Number of upper order statistics used.
    pub k: usize,
    /// The threshold X_(k+1).
    pub threshold: f64,
    /// Number of values the estimate was computed from.
    pub n: usize,
}

/// The default number of order statistics: ⌊√n⌋ (at least 2).
pub fn default_k(n: usize) -> usize {
    ((n as f64).sqrt().floor() as usize).max(2)
}

/// Hill estimator of the tail index of |values| (non-finite values and zeros
/// are dropped). `k = 0` picks [`default_k`].
pub fn hill(values: &[f64], k: usize) -> Result<HillEstimate, NoiseError> {
    let mut a: Vec<f64> = values.iter().map(|v| v.abs()).filter(|v| v.is_finite() && *v > 0.0).collect();
    if a.len() < 3 {
        return Err(NoiseError::TooFew { need: 3, got: a.len() });
    }
    let n = a.len();
    let k = if k == 0 { default_k(n) } else { k };
    if k < 2 || k >= n {
        return Err(NoiseError::BadK { k, n });
    }
    // Only the k+1 largest are needed.
    a.select_nth_unstable_by(n - k - 1, |x, y| x.total_cmp(y));
    let threshold = a[n - k - 1];
    let s: f64 = a[n - k..].iter().map(|x| (x / threshold).ln()).sum();
    if s <= 0.0 {
        return Err(NoiseError::Degenerate { value: threshold });
    }
    let alpha = k as f64 / s;
    Ok(HillEstimate { alpha, se: alpha / (k as f64).sqrt(), k, threshold, n })
}

/// Bootstrap spread of the Hill estimate: mean and standard deviation of α̂
/// over `reps` resamples (with replacement) of the values, and the 2.5 % and
/// 97.5 % quantiles. Uses the same k as [`hill`] on the full sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HillBootstrap {
    /// Mean of α̂ over the resamples.
    pub mean: f64,
    /// Population std of α̂ over the resamples.
    pub std: f64,
    /// 2.5 % quantile.
    pub lo: f64,
    /// 97.5 % quantile.
    pub hi: f64,
    /// Resamples with a defined estimate.
    pub reps: usize,
}

/// Bootstrap the Hill estimate of `values` (k as in [`hill`]); errors with fewer than 2 usable resamples.
pub fn hill_bootstrap(values: &[f64], k: usize, reps: usize, seed: u64) -> Result<HillBootstrap, NoiseError> {
    let full = hill(values, k)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut est = Vec::with_capacity(reps);
    let mut buf = vec![0.0; values.len()];
    for _ in 0..reps {
        for b in buf.iter_mut() {
            *b = values[rng.gen_range(0..values.len())];
        }
        if let Ok(h) = hill(&buf, full.k) {
            est.push(h.alpha);
        }
    }
    if est.len() < 2 {
        return Err(NoiseError::TooFew { need: 2, got: est.len() });
    }
    let (mean, std) = mean_std(&est, Spread::Population);
    est.sort_by(|a, b| a.total_cmp(b));
    Ok(HillBootstrap { mean, std, lo: quantile_sorted(&est, 0.025), hi: quantile_sorted(&est, 0.975), reps: est.len() })
}

/// Linear-interpolated quantile of a sorted slice.
pub fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    if i + 1 < s.len() {
        s[i] * (1.0 - f) + s[i + 1] * f
    } else {
        s[i]
    }
}

/// Excess kurtosis m4/m2² − 3 (0 for a Gaussian; ≈ 3 for Laplace; grows
/// without bound for heavy tails). Needs at least 4 finite values.
pub fn excess_kurtosis(values: &[f64]) -> Result<f64, NoiseError> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 4 {
        return Err(NoiseError::TooFew { need: 4, got: v.len() });
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let (mut m2, mut m4) = (0.0, 0.0);
    for x in &v {
        let d2 = (x - m) * (x - m);
        m2 += d2;
        m4 += d2 * d2;
    }
    m2 /= n;
    m4 /= n;
    if m2 <= 0.0 {
        return Ok(0.0);
    }
    Ok(m4 / (m2 * m2) - 3.0)
}

/// A histogram with equal-width bins and a Gaussian reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Bin edges, `bins + 1` values.
    pub edges: Vec<f64>,
    /// Values per bin.
    pub counts: Vec<u64>,
    /// counts / (n · bin width): comparable to a probability density.
    pub density: Vec<f64>,
    /// N(mean, std²) density at the bin centers.
    pub gaussian: Vec<f64>,
    /// Mean of the finite values (NaN when there are none).
    pub mean: f64,
    /// Their population std.
    pub std: f64,
    /// Number of finite values.
    pub n: usize,
}

impl Histogram {
    /// Histogram of the finite values over [min, max] (or `range` if given).
    pub fn new(values: &[f64], bins: usize, range: Option<(f64, f64)>) -> Histogram {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let bins = bins.max(1);
        let (mean, std) = mean_std(&v, Spread::Population);
        let (mut lo, mut hi) = range
            .unwrap_or_else(|| v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x))));
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (0.0, 1.0);
        }
        if hi <= lo {
            hi = lo + 1.0;
        }
        let w = (hi - lo) / bins as f64;
        let mut counts = vec![0u64; bins];
        for x in &v {
            if *x < lo || *x > hi {
                continue;
            }
            let i = (((x - lo) / w) as usize).min(bins - 1);
            counts[i] += 1;
        }
        let n = v.len();
        let edges: Vec<f64> = (0..=bins).map(|i| lo + w * i as f64).collect();
        let density = counts.iter().map(|&c| c as f64 / (n.max(1) as f64 * w)).collect();
        let gaussian = (0..bins)
            .map(|i| {
                let c = lo + w * (i as f64 + 0.5);
                gaussian_pdf(c, mean, std)
            })
            .collect();
        Histogram { edges, counts, density, gaussian, mean, std, n }
    }

    /// Bin centers.
    pub fn centers(&self) -> Vec<f64> {
        self.edges.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect()
    }
}

/// N(mean, std²) density at x (0 when std ≤ 0).
pub fn gaussian_pdf(x: f64, mean: f64, std: f64) -> f64 {
    if std <= 0.0 {
        return 0.0;
    }
    let z = (x - mean) / std;
    (-0.5 * z * z).exp() / (std * (2.0 * std::f64::consts::PI).sqrt())
}

/// Hill estimate on a Gaussian sample of size `n` with the same `k`: the
/// value a light-tailed sample of this size would give (the estimator is
/// biased low for Gaussians at finite n).
pub fn gaussian_reference_hill(n: usize, k: usize, seed: u64) -> Result<HillEstimate, NoiseError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g: Vec<f64> = (0..n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
    hill(&g, k)
}

/// Summary of one sample, as stored in lens files.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseStats {
    /// Sample size.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Population std.
    pub std: f64,
    /// Excess kurtosis (0 for a Gaussian).
    pub excess_kurtosis: f64,
    /// Hill tail index of the sample.
    pub hill: HillEstimate,
    /// Hill estimate on a Gaussian sample of the same size with the same k.
    pub hill_gaussian: HillEstimate,
}

/// Mean, std, excess kurtosis and Hill index (k = 0: default √n) of `values`.
pub fn summarize(values: &[f64], k: usize, seed: u64) -> Result<NoiseStats, NoiseError> {
    let (mean, std) = mean_std(values, Spread::Population);
    let excess_kurtosis = excess_kurtosis(values)?;
    let h = hill(values, k)?;
    let hg = gaussian_reference_hill(h.n, h.k, seed)?;
    Ok(NoiseStats { n: values.len(), mean, std, excess_kurtosis, hill: h, hill_gaussian: hg })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hill_rejects_bad_input() {
        assert!(matches!(hill(&[1.0, 2.0], 0), Err(NoiseError::TooFew { .. })));
        assert!(matches!(hill(&[1.0, 2.0, 3.0, 4.0], 4), Err(NoiseError::BadK { .. })));
        assert!(matches!(hill(&[2.0; 10], 3), Err(NoiseError::Degenerate { .. })));
    }

    #[test]
    fn kurtosis_of_two_point_distribution_is_minus_two() {
        let v: Vec<f64> = (0..1000).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert!((excess_kurtosis(&v).unwrap() + 2.0).abs() < 1e-12);
    }

    #[test]
    fn histogram_density_integrates_to_one() {
        let v: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin()).collect();
        let h = Histogram::new(&v, 20, None);
        let w = h.edges[1] - h.edges[0];
        let total: f64 = h.density.iter().map(|d| d * w).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(h.counts.iter().sum::<u64>(), 1000);
    }
}
