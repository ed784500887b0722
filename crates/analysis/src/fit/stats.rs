//! Small statistics the fits need: quantiles, normal / chi-square / Student-t
//! quantiles, lag-1 autocorrelation and the effective sample size of
//! autocorrelated residuals, and the moving-block bootstrap.

use rand::Rng;

/// Empirical quantile `q` of the finite values of `v` (linear interpolation;
/// sorts `v` in place). NaN when no value is finite.
pub fn quantile(v: &mut Vec<f64>, q: f64) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (pos - lo as f64) * (v[hi] - v[lo])
}

/// Mean and sample standard deviation of the finite values (NaN when there
/// are none; the deviation is NaN with fewer than two).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        f64::NAN
    };
    (m, s)
}

/// Quantile function of the standard normal (Acklam's rational
/// approximation, relative error < 1.2e-9).
pub fn norm_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return if p <= 0.0 { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let pl = 0.02425;
    if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// The `level` quantile of chi-square with one degree of freedom: the
/// threshold of a profile-likelihood interval at confidence `level`.
pub fn chi2_1_quantile(level: f64) -> f64 {
    let z = norm_quantile(0.5 + level / 2.0);
    z * z
}

/// ln Γ(x) for x > 0 (Lanczos).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 6] = [
        76.18009172947146,
        -86.50532032941677,
        24.01409824083091,
        -1.231739572450155,
        0.1208650973866179e-2,
        -0.5395239384953e-5,
    ];
    let mut y = x;
    let tmp = x + 5.5;
    let tmp = tmp - (x + 0.5) * tmp.ln();
    let mut ser = 1.000000000190015;
    for g in G {
        y += 1.0;
        ser += g / y;
    }
    -tmp + (2.5066282746310005 * ser / x).ln()
}

/// Continued fraction of the incomplete beta function (Numerical Recipes).
fn betacf(a: f64, b: f64, x: f64) -> f64 {
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < 1e-300 {
        d = 1e-300;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < 1e-300 {
            d = 1e-300;
        }
        c = 1.0 + aa / c;
        if c.abs() < 1e-300 {
            c = 1e-300;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < 1e-300 {
            d = 1e-300;
        }
        c = 1.0 + aa / c;
        if c.abs() < 1e-300 {
            c = 1e-300;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-14 {
            break;
        }
    }
    h
}

/// Regularized incomplete beta I_x(a, b).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let bt = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        bt * betacf(a, b, x) / a
    } else {
        1.0 - bt * betacf(b, a, 1.0 - x) / b
    }
}

/// Cumulative distribution of Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * inc_beta(df / 2.0, 0.5, x);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// Quantile `p` of Student's t with `df` degrees of freedom (bisection on
/// the CDF). NaN for df < 1.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(df >= 1.0 && p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let (mut lo, mut hi) = (-1e4, 1e4);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Lag-1 autocorrelation of `r` about its mean (0 when undefined).
pub fn lag1_autocorr(r: &[f64]) -> f64 {
    let n = r.len();
    if n < 3 {
        return 0.0;
    }
    let m = r.iter().sum::<f64>() / n as f64;
    let den: f64 = r.iter().map(|x| (x - m) * (x - m)).sum();
    if !(den > 0.0) {
        return 0.0;
    }
    let num: f64 = r.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum();
    num / den
}

/// The residuals' lag-1 autocorrelation corrected for its small-sample bias
/// (E[ρ̂] ≈ ρ − (1 + 3ρ)/n for an AR(1)), clamped to [0, 0.95]: negative
/// autocorrelation is not used to claim more information than n points.
pub fn rho_corrected(r: &[f64]) -> f64 {
    let n = r.len().max(1) as f64;
    let rho = lag1_autocorr(r);
    (rho + (1.0 + 3.0 * rho) / n).clamp(0.0, 0.95)
}

/// Effective number of independent points among `n` with AR(1)
/// autocorrelation `rho`: n·(1 − ρ)/(1 + ρ), at most n.
pub fn effective_n(n: usize, rho: f64) -> f64 {
    let rho = rho.clamp(0.0, 0.99);
    (n as f64 * (1.0 - rho) / (1.0 + rho)).min(n as f64)
}

/// Block length of the moving-block bootstrap for `n` residuals with lag-1
/// autocorrelation `rho`: at least n^(1/3), and at least the AR(1)
/// correlation length (1 + ρ)/(1 − ρ); at most n/2.
pub fn block_length(n: usize, rho: f64) -> usize {
    let rho = rho.clamp(0.0, 0.95);
    let l = (n as f64).cbrt().ceil().max(((1.0 + rho) / (1.0 - rho)).ceil());
    (l as usize).clamp(1, (n / 2).max(1))
}

/// One moving-block bootstrap resample of `r` (length n, blocks of `len`
/// consecutive values starting anywhere, concatenated and cut to n), centred
/// on zero.
pub fn block_resample(r: &[f64], len: usize, rng: &mut impl Rng) -> Vec<f64> {
    let n = r.len();
    let len = len.clamp(1, n.max(1));
    let mut out = Vec::with_capacity(n + len);
    while out.len() < n {
        let s = rng.gen_range(0..=(n - len));
        out.extend_from_slice(&r[s..s + len]);
    }
    out.truncate(n);
    let m = out.iter().sum::<f64>() / n.max(1) as f64;
    out.iter_mut().for_each(|x| *x -= m);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_known_distributions() {
        assert!((norm_quantile(0.975) - 1.959963985).abs() < 1e-8);
        assert!((norm_quantile(0.05) + 1.644853627).abs() < 1e-8);
        assert!((chi2_1_quantile(0.95) - 3.841458821).abs() < 1e-7);
        assert!((chi2_1_quantile(0.90) - 2.705543454).abs() < 1e-7);
        assert!((t_quantile(0.975, 4.0) - 2.776445105).abs() < 1e-6);
        assert!((t_quantile(0.95, 2.0) - 2.919985580).abs() < 1e-6);
        assert!((t_quantile(0.975, 1000.0) - 1.962339).abs() < 1e-5);
    }

    #[test]
    fn autocorrelation_and_effective_n() {
        // AR(1) with ρ = 0.6 over 4000 points: the corrected estimate is close.
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let nd = Normal::new(0.0, 1.0).unwrap();
        let mut x = 0.0;
        let r: Vec<f64> = (0..4000)
            .map(|_| {
                x = 0.6 * x + nd.sample(&mut rng);
                x
            })
            .collect();
        let rho = rho_corrected(&r);
        assert!((rho - 0.6).abs() < 0.05, "{rho}");
        assert!((effective_n(100, 0.5) - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(effective_n(10, 0.0), 10.0);
        assert!(block_length(80, 0.5) >= 5);
        let b = block_resample(&r[..50], 5, &mut rng);
        assert_eq!(b.len(), 50);
        assert!(b.iter().sum::<f64>().abs() < 1e-9);
    }
}
