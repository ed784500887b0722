//! Gradient noise of a model under training (libtorch): the statistics of K
//! gradient-noise vectors (minibatch gradient minus the full-batch
//! gradient), shared by the in-context regression lens and `[grad_noise]`
//! measurements during physics training. The tail statistics themselves
//! (Hill index, kurtosis, histograms) are tch-free, in
//! [`headlab_analysis::noise`], and re-exported here.

use headlab_sim::seed::{derive_seed, Stream};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::{Kind, Tensor};

pub use headlab_analysis::noise::*;

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
    /// Statistics of `norms`.
    pub norm_stats: NoiseStats,
    /// Statistics of `gaussian_norms`.
    pub gaussian_norm_stats: NoiseStats,
    /// Statistics of `coords`.
    pub coord_stats: NoiseStats,
}

/// Statistics of the rows of `xi` [K, P] (K noise vectors of P parameters).
/// `hill_k = 0` picks √n order statistics (for the norms at most K − 1);
/// `gaussian_seed` drives the Gaussian reference norms, `stats_seed` (through
/// [`Stream::TailStatistic`] 1, 2, 3)
/// the Gaussian Hill references of norms, reference norms and coordinates.
pub fn gradient_noise(
    xi: &Tensor,
    hill_k: usize,
    gaussian_seed: u64,
    stats_seed: u64,
) -> Result<GradientNoise, NoiseError> {
    let to_vec = |t: &Tensor| -> Result<Vec<f64>, NoiseError> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(tch::Device::Cpu).flatten(0, -1))
            .map_err(|e| NoiseError::Model(format!("reading the gradient noise back from libtorch: {e}")))
    };
    let xi = xi.to_kind(Kind::Double);
    let k_rows = xi.size().first().copied().unwrap_or(0) as usize;
    let norms = to_vec(&xi.norm_scalaropt_dim(2, [1i64].as_slice(), false))?;
    let std = xi.std_dim([0i64].as_slice(), true, false); // per coordinate
    let mean = xi.mean_dim([0i64].as_slice(), false, Kind::Double);
    let std_v = to_vec(&std)?;
    // Standardize the coordinates that actually fluctuate.
    let keep: Vec<i64> = std_v.iter().enumerate().filter(|(_, s)| **s > 1e-12).map(|(i, _)| i as i64).collect();
    let keep_t = Tensor::from_slice(&keep).to_device(xi.device());
    let zs = ((&xi - mean.unsqueeze(0)) / std.unsqueeze(0)).index_select(1, &keep_t);
    let coords = to_vec(&zs)?;
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
    let norm_stats = summarize(&norms, k_norm, derive_seed(stats_seed, Stream::TailStatistic { which: 1 }))?;
    let gaussian_norm_stats =
        summarize(&gaussian_norms, k_norm, derive_seed(stats_seed, Stream::TailStatistic { which: 2 }))?;
    let coord_stats = summarize(&coords, hill_k, derive_seed(stats_seed, Stream::TailStatistic { which: 3 }))?;
    Ok(GradientNoise { norms, gaussian_norms, coords, norm_stats, gaussian_norm_stats, coord_stats })
}
