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
//! - [`gradient_noise`]: the statistics of K gradient-noise vectors (minibatch
//!   gradient minus the full-batch gradient), shared by the in-context
//!   regression lens and `[grad_noise]` measurements during physics training.
//!
//! A Pareto(α) variable has P(|X| > x) ∝ x^(−α); a Gaussian has α = ∞, but
//! the Hill estimator on a finite Gaussian sample returns a finite value that
//! grows slowly with the sample size, so always compare against the same
//! estimator on a Gaussian reference sample of the same size and the same k
//! ([`gaussian_reference_hill`]).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::{Kind, Tensor};

/// Errors from the tail statistics: what was wrong with the input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NoiseError {
    #[error("tail statistics need at least {need} finite values, got {got}; collect more samples")]
    TooFew { need: usize, got: usize },
    #[error("Hill estimator: k = {k} must satisfy 2 <= k < n = {n} (number of nonzero values); choose a smaller k or pass k = 0 for the default sqrt(n)")]
    BadK { k: usize, n: usize },
    #[error("Hill estimator: the k+1 largest |values| are all equal ({value}); the tail index is undefined for this sample")]
    Degenerate { value: f64 },
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
    pub mean: f64,
    pub std: f64,
    pub lo: f64,
    pub hi: f64,
    pub reps: usize,
}

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
    let (mean, std) = mean_std(&est);
    est.sort_by(|a, b| a.total_cmp(b));
    Ok(HillBootstrap { mean, std, lo: quantile_sorted(&est, 0.025), hi: quantile_sorted(&est, 0.975), reps: est.len() })
}

/// Mean and (population) standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
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
    pub counts: Vec<u64>,
    /// counts / (n · bin width): comparable to a probability density.
    pub density: Vec<f64>,
    /// N(mean, std²) density at the bin centers.
    pub gaussian: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Histogram {
    /// Histogram of the finite values over [min, max] (or `range` if given).
    pub fn new(values: &[f64], bins: usize, range: Option<(f64, f64)>) -> Histogram {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let bins = bins.max(1);
        let (mean, std) = mean_std(&v);
        let (mut lo, mut hi) = range.unwrap_or_else(|| {
            v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)))
        });
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

    pub fn centers(&self) -> Vec<f64> {
        self.edges.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect()
    }
}

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
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub excess_kurtosis: f64,
    pub hill: HillEstimate,
    /// Hill estimate on a Gaussian sample of the same size with the same k.
    pub hill_gaussian: HillEstimate,
}

/// Mean, std, excess kurtosis and Hill index (k = 0: default √n) of `values`.
pub fn summarize(values: &[f64], k: usize, seed: u64) -> Result<NoiseStats, NoiseError> {
    let (mean, std) = mean_std(values);
    let excess_kurtosis = excess_kurtosis(values)?;
    let h = hill(values, k)?;
    let hg = gaussian_reference_hill(h.n, h.k, seed)?;
    Ok(NoiseStats { n: values.len(), mean, std, excess_kurtosis, hill: h, hill_gaussian: hg })
}

/// Statistics of K gradient-noise vectors ξ_b = g_b − g_full.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientNoise {
    /// ‖ξ_b‖ for each of the K minibatches.
    pub norms: Vec<f64>,
    /// Norms of K Gaussian vectors with the same per-coordinate variances
    /// (what ‖ξ‖ would look like if the noise were Gaussian).
    pub gaussian_norms: Vec<f64>,
    /// Every coordinate of every ξ_b, standardized per coordinate (mean 0,
    /// std 1 over the K samples); coordinates that never fluctuate are dropped.
    pub coords: Vec<f64>,
    pub norm_stats: NoiseStats,
    pub gaussian_norm_stats: NoiseStats,
    pub coord_stats: NoiseStats,
}

/// Statistics of the rows of `xi` [K, P] (K noise vectors of P parameters).
/// `hill_k = 0` picks √n order statistics (for the norms at most K − 1);
/// `gaussian_seed` drives the Gaussian reference norms, `stats_seed + 1..3`
/// the Gaussian Hill references of norms, reference norms and coordinates.
pub fn gradient_noise(xi: &Tensor, hill_k: usize, gaussian_seed: u64, stats_seed: u64) -> Result<GradientNoise, NoiseError> {
    let to_vec = |t: &Tensor| -> Vec<f64> { Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(tch::Device::Cpu).flatten(0, -1)).unwrap_or_default() };
    let xi = xi.to_kind(Kind::Double);
    let k_rows = xi.size().first().copied().unwrap_or(0) as usize;
    let norms = to_vec(&xi.norm_scalaropt_dim(2, [1i64].as_slice(), false));
    let std = xi.std_dim([0i64].as_slice(), true, false); // per coordinate
    let mean = xi.mean_dim([0i64].as_slice(), false, Kind::Double);
    let std_v = to_vec(&std);
    // Standardize the coordinates that actually fluctuate.
    let keep: Vec<i64> = std_v.iter().enumerate().filter(|(_, s)| **s > 1e-12).map(|(i, _)| i as i64).collect();
    let keep_t = Tensor::from_slice(&keep).to_device(xi.device());
    let zs = ((&xi - mean.unsqueeze(0)) / std.unsqueeze(0)).index_select(1, &keep_t);
    let coords = to_vec(&zs);
    let mut grng = ChaCha8Rng::seed_from_u64(gaussian_seed);
    let gaussian_norms: Vec<f64> = (0..k_rows)
        .map(|_| {
            std_v
                .iter()
                .map(|s| {
                    let g: f64 = grng.sample(StandardNormal);
                    s * s * (g * g)
                })
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let k_norm = hill_k.min(k_rows.saturating_sub(1));
    let norm_stats = summarize(&norms, k_norm, stats_seed + 1)?;
    let gaussian_norm_stats = summarize(&gaussian_norms, k_norm, stats_seed + 2)?;
    let coord_stats = summarize(&coords, hill_k, stats_seed + 3)?;
    Ok(GradientNoise { norms, gaussian_norms, coords, norm_stats, gaussian_norm_stats, coord_stats })
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
