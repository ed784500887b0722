//! The tail statistics recover known answers on synthetic samples.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use headlab_lens::noise::{excess_kurtosis, hill, hill_bootstrap, summarize};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, StandardNormal};

/// Pareto(α) with x_min = 1 by inversion: X = U^(−1/α).
fn pareto(alpha: f64, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| (1.0 - rng.gen::<f64>()).powf(-1.0 / alpha)).collect()
}

#[test]
fn hill_recovers_pareto_index_within_its_standard_error() {
    for (i, &alpha) in [0.8, 1.5, 3.0].iter().enumerate() {
        let x = pareto(alpha, 20_000, 11 + i as u64);
        // Random signs must not matter: the estimator works on |x|.
        let signed: Vec<f64> = x.iter().enumerate().map(|(j, v)| if j % 3 == 0 { -v } else { *v }).collect();
        let h = hill(&signed, 2000).unwrap();
        assert_eq!(h.k, 2000);
        assert!((h.se - h.alpha / (2000f64).sqrt()).abs() < 1e-12);
        assert!((h.alpha - alpha).abs() < 3.0 * h.se, "alpha {alpha}: estimate {} ± {}", h.alpha, h.se);
        // Default k = sqrt(n) is noisier but still consistent.
        let hd = hill(&x, 0).unwrap();
        assert_eq!(hd.k, 141);
        assert!((hd.alpha - alpha).abs() < 3.0 * hd.se, "alpha {alpha}: default-k estimate {} ± {}", hd.alpha, hd.se);
    }
}

#[test]
fn bootstrap_spread_matches_asymptotic_error() {
    let x = pareto(2.0, 5_000, 3);
    let h = hill(&x, 500).unwrap();
    let b = hill_bootstrap(&x, 500, 200, 9).unwrap();
    assert_eq!(b.reps, 200);
    assert!(b.lo < h.alpha && h.alpha < b.hi, "{b:?} vs {h:?}");
    let ratio = b.std / h.se;
    assert!(ratio > 0.6 && ratio < 1.6, "bootstrap std {} vs asymptotic {}", b.std, h.se);
}

#[test]
fn gaussian_reads_light_tailed_and_kurtosis_separates_laplace() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let g: Vec<f64> = (0..100_000).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
    let s = summarize(&g, 0, 1).unwrap();
    assert!(s.excess_kurtosis.abs() < 0.1, "gaussian kurtosis {}", s.excess_kurtosis);
    // A Gaussian sample gives a much larger Hill index than a Pareto(1.5) one,
    // and its own reference (another Gaussian sample) agrees with it.
    let p = hill(&pareto(1.5, 100_000, 2), 0).unwrap();
    assert!(s.hill.alpha > 2.0 * p.alpha, "gaussian {} vs pareto {}", s.hill.alpha, p.alpha);
    assert!((s.hill.alpha - s.hill_gaussian.alpha).abs() < 4.0 * s.hill.se, "{s:?}");
    // Laplace has excess kurtosis 3.
    let e = Exp::new(1.0).unwrap();
    let lap: Vec<f64> =
        (0..200_000).map(|i| if i % 2 == 0 { e.sample(&mut rng) } else { -e.sample(&mut rng) }).collect();
    let k = excess_kurtosis(&lap).unwrap();
    assert!((k - 3.0).abs() < 0.3, "laplace kurtosis {k}");
}
