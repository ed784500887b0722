//! Toy problems with exact finite-sample LLC targets, for validating the
//! sampler (see `tests/llc_validation.rs`) and for a quick self-check.
//!
//! Loss convention (both problems): Gaussian noise of unit variance, so the
//! per-sample negative log-likelihood is, up to a constant,
//! `ℓ_i(w) = ½ (y_i − f(x_i; w))²`, and `L_n = mean_i ℓ_i` (half the mean
//! squared error). The targets below are derived with this `L_n`.
//!
//! - [`LinearRegression`]: `f = w·x`, d parameters, centred at the
//!   least-squares minimizer w*. `L_n(w) − L_n(w*) = ½ uᵀHu` with u = w − w*
//!   and H = XᵀX/n, so the localized tempered posterior is Gaussian with
//!   precision nβH + γI and
//!   `λ = nβ·E[½ uᵀHu] = ½ Σ_i nβ h_i / (nβ h_i + γ)` exactly.
//! - [`ProductModel`]: `f = w1·w2·x` with true product 0, centred at the
//!   origin (a degenerate critical point). With p = w1·w2,
//!   `L_n(w) − L_n(0) = ½ p² Sxx − p Sxy` (Sxx = mean x², Sxy = mean xy).
//!   Given w1, the posterior of w2 is Gaussian (the exponent is quadratic
//!   in w2), so the expectation reduces to a one-dimensional integral over
//!   w1, done by Simpson's rule on a fine grid.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::{Device, Kind, Tensor};

use super::{LlcError, LlcProblem, Result, SharedTensor};

fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect()
}

fn batch_index(batches: &[usize]) -> Tensor {
    Tensor::from_slice(&batches.iter().map(|&b| b as i64).collect::<Vec<_>>())
}

/// y = w·x + N(0, 1) with d features of unequal variance (log-spaced from
/// `var_min` to `var_max`), so the Hessian's eigenvalues are spread.
pub struct LinearRegression {
    /// Samples.
    pub n: usize,
    /// Features.
    pub d: usize,
    /// Samples per minibatch (divides n).
    pub batch_size: usize,
    /// Stack chains along a leading dimension (fast) or evaluate one chain
    /// per call (the path real models take).
    pub stacked: bool,
    x: SharedTensor, // [n_batches, batch, d]
    y: SharedTensor, // [n_batches, batch]
    w_star: Vec<f64>,
    hessian: Vec<f64>,
    eigenvalues: Vec<f64>,
}

impl LinearRegression {
    /// Draw the data; the error says which size is invalid.
    pub fn new(n: usize, d: usize, batch_size: usize, var_min: f64, var_max: f64, seed: u64) -> Result<Self> {
        if batch_size == 0 || !n.is_multiple_of(batch_size) || d == 0 || n <= d {
            return Err(LlcError::Problem(format!(
                "linear regression: need n > d > 0 and batch_size dividing n (n = {n}, d = {d}, batch_size = \
                 {batch_size})"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let scales: Vec<f64> = (0..d)
            .map(|j| {
                let f = if d > 1 { j as f64 / (d - 1) as f64 } else { 0.5 };
                (var_min * (var_max / var_min).powf(f)).sqrt()
            })
            .collect();
        let z = normals(&mut rng, n * d);
        let x: Vec<f64> = z.iter().enumerate().map(|(i, v)| v * scales[i % d]).collect();
        let w_true = normals(&mut rng, d);
        let noise = normals(&mut rng, n);
        let y: Vec<f64> = (0..n).map(|i| (0..d).map(|j| x[i * d + j] * w_true[j]).sum::<f64>() + noise[i]).collect();
        let xt = Tensor::from_slice(&x).reshape([n as i64, d as i64]);
        let yt = Tensor::from_slice(&y);
        // Least squares via the normal equations, and the Hessian's spectrum.
        let xtx = xt.transpose(0, 1).mm(&xt);
        let xty = xt.transpose(0, 1).mv(&yt);
        let w_star = Tensor::linalg_solve(&xtx, &xty.unsqueeze(1), true).squeeze_dim(1);
        let h = xtx / n as f64;
        let eig = h.linalg_eigvalsh("L");
        let nb = (n / batch_size) as i64;
        // SAFETY: `xt` and `yt` are built here and dropped at the end of this
        // function; the wrappers live in private fields that `loss` only reads
        // out of place (`get`, `index_select`, `mv`, subtraction).
        let (x, y) = unsafe {
            (
                SharedTensor::new(xt.reshape([nb, batch_size as i64, d as i64])),
                SharedTensor::new(yt.reshape([nb, batch_size as i64])),
            )
        };
        Ok(LinearRegression {
            n,
            d,
            batch_size,
            stacked: true,
            x,
            y,
            w_star: Vec::<f64>::try_from(&w_star)?,
            hessian: Vec::<f64>::try_from(&h.reshape([-1]))?,
            eigenvalues: Vec::<f64>::try_from(&eig)?,
        })
    }

    /// The least-squares minimizer (f64, shape [d]).
    pub fn w_star(&self) -> Tensor {
        Tensor::from_slice(&self.w_star)
    }

    /// The empirical loss Hessian H = XᵀX/n ([d, d], f64).
    pub fn hessian(&self) -> Tensor {
        Tensor::from_slice(&self.hessian).reshape([self.d as i64, self.d as i64])
    }

    /// Eigenvalues of the empirical loss Hessian H = XᵀX/n.
    pub fn hessian_eigenvalues(&self) -> &[f64] {
        &self.eigenvalues
    }

    /// ½ Σ nβ h / (nβ h + γ): the exact mean of nβ(L_n(w) − L_n(w*)) under
    /// the localized tempered posterior.
    pub fn exact_llc(&self, n_beta: f64, gamma: f64) -> f64 {
        0.5 * self.eigenvalues.iter().map(|h| n_beta * h / (n_beta * h + gamma)).sum::<f64>()
    }

    /// Mean loss on one batch at w* (for tests of the pairing).
    pub fn batch_loss(&self, w: &Tensor, b: usize) -> f64 {
        let r = self.x.get(b as i64).mv(w) - self.y.get(b as i64);
        0.5 * r.square().mean(Kind::Double).double_value(&[])
    }
}

impl LlcProblem for LinearRegression {
    fn n_samples(&self) -> usize {
        self.n
    }
    fn n_batches(&self) -> usize {
        self.n / self.batch_size
    }
    fn stacked(&self) -> bool {
        self.stacked
    }
    fn loss(&self, params: &[Tensor], batches: &[usize]) -> Result<Tensor> {
        let w = &params[0];
        if self.stacked {
            let idx = batch_index(batches);
            let xb = self.x.index_select(0, &idx); // [k, b, d]
            let yb = self.y.index_select(0, &idx); // [k, b]
            let pred = xb.bmm(&w.unsqueeze(-1)).squeeze_dim(-1);
            Ok((pred - yb).square().mean_dim(1, false, Kind::Double) * 0.5)
        } else {
            let b = batches[0] as i64;
            let r = self.x.get(b).mv(w) - self.y.get(b);
            Ok(r.square().mean(Kind::Double) * 0.5)
        }
    }
}

/// y = w1·w2·x + noise with true product 0: a degenerate model. The
/// parameter is one tensor [2] = (w1, w2); the checkpoint is the origin.
pub struct ProductModel {
    /// Samples.
    pub n: usize,
    /// Samples per minibatch (divides n).
    pub batch_size: usize,
    /// Per batch: mean x², mean xy, mean y² ([n_batches] each). The batch
    /// loss mean_i ½(y_i − p x_i)² equals ½(Syy − 2p Sxy + p² Sxx) exactly.
    stats: [SharedTensor; 3],
    /// Over the whole data set.
    pub sxx: f64,
    /// Mean xy over the whole data set.
    pub sxy: f64,
}

impl ProductModel {
    /// x, y ~ N(0, 1) independent. With `exact_zero`, y is made exactly
    /// orthogonal to x, so the least-squares product is exactly 0 and the
    /// origin is the empirical minimizer of the product.
    pub fn new(n: usize, batch_size: usize, exact_zero: bool, seed: u64) -> Result<Self> {
        if batch_size == 0 || !n.is_multiple_of(batch_size) {
            return Err(LlcError::Problem(format!("product model: batch_size {batch_size} must divide n = {n}")));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = normals(&mut rng, n);
        let mut y = normals(&mut rng, n);
        if exact_zero {
            let c = x.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>() / x.iter().map(|a| a * a).sum::<f64>();
            for (yi, xi) in y.iter_mut().zip(&x) {
                *yi -= c * xi;
            }
        }
        let nb = n / batch_size;
        let mut s = [vec![0.0; nb], vec![0.0; nb], vec![0.0; nb]];
        for b in 0..nb {
            for i in b * batch_size..(b + 1) * batch_size {
                s[0][b] += x[i] * x[i];
                s[1][b] += x[i] * y[i];
                s[2][b] += y[i] * y[i];
            }
            for v in s.iter_mut() {
                v[b] /= batch_size as f64;
            }
        }
        let sxx = s[0].iter().sum::<f64>() / nb as f64;
        let sxy = s[1].iter().sum::<f64>() / nb as f64;
        let [a, b, c] = s;
        // SAFETY: fresh tensors copied from `a`, `b`, `c`, owned only by the
        // private field `stats`, which `loss` and `loss_and_grad` only read
        // out of place (`index_select`, products).
        let stats = unsafe {
            [
                SharedTensor::new(Tensor::from_slice(&a)),
                SharedTensor::new(Tensor::from_slice(&b)),
                SharedTensor::new(Tensor::from_slice(&c)),
            ]
        };
        Ok(ProductModel { n, batch_size, stats, sxx, sxy })
    }

    /// The origin (f64, shape [2]).
    pub fn w_star(&self) -> Tensor {
        Tensor::zeros([2], (Kind::Double, Device::Cpu))
    }

    /// E[nβ(L_n(w) − L_n(0))] under p(w) ∝ exp(−nβ(L_n(w) − L_n(0)) − γ|w|²/2).
    pub fn exact_llc(&self, n_beta: f64, gamma: f64) -> f64 {
        product_model_target(n_beta, gamma, self.sxx, self.sxy)
    }
}

/// The degenerate model's exact target for given data statistics.
///
/// Exponent: −nβ(½ w1² w2² Sxx − w1 w2 Sxy) − γ(w1² + w2²)/2. For fixed w1
/// it is −½a w2² + b w2 − γw1²/2 with a = nβ Sxx w1² + γ, b = nβ Sxy w1, so
/// w2 | w1 ~ N(b/a, 1/a) and the w1 marginal is
/// ∝ exp(−γw1²/2) a^(−½) exp(b²/(2a)). The conditional mean of
/// nβ(½ w1² w2² Sxx − w1 w2 Sxy) follows from E[w2] and E[w2²].
pub fn product_model_target(n_beta: f64, gamma: f64, sxx: f64, sxy: f64) -> f64 {
    let half_width = 14.0 / gamma.sqrt();
    let m = 4_000_000usize; // even number of intervals
    let h = 2.0 * half_width / m as f64;
    let log_w = |w1: f64| {
        let a = n_beta * sxx * w1 * w1 + gamma;
        let b = n_beta * sxy * w1;
        -0.5 * gamma * w1 * w1 - 0.5 * a.ln() + b * b / (2.0 * a)
    };
    let g = |w1: f64| {
        let a = n_beta * sxx * w1 * w1 + gamma;
        let b = n_beta * sxy * w1;
        let mu = b / a;
        let e2 = mu * mu + 1.0 / a;
        n_beta * (0.5 * w1 * w1 * sxx * e2 - w1 * sxy * mu)
    };
    let shift = log_w(0.0);
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..=m {
        let w1 = -half_width + i as f64 * h;
        let c = if i == 0 || i == m {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let p = (log_w(w1) - shift).exp() * c;
        num += p * g(w1);
        den += p;
    }
    num / den
}

impl LlcProblem for ProductModel {
    fn n_samples(&self) -> usize {
        self.n
    }
    fn n_batches(&self) -> usize {
        self.n / self.batch_size
    }
    fn stacked(&self) -> bool {
        true
    }
    fn loss(&self, params: &[Tensor], batches: &[usize]) -> Result<Tensor> {
        let w = &params[0]; // [k, 2]
        let idx = batch_index(batches);
        let [sxx, sxy, syy] = &self.stats;
        let (sxx, sxy, syy) = (sxx.index_select(0, &idx), sxy.index_select(0, &idx), syy.index_select(0, &idx));
        let p = w.select(1, 0) * w.select(1, 1);
        Ok((syy - p.shallow_clone() * sxy * 2.0 + p.square() * sxx) * 0.5)
    }

    /// Analytic gradient (fewer tensor operations than autograd, which is
    /// what bounds the speed of a two-parameter problem):
    /// ∂L/∂w1 = w2·(p Sxx − Sxy), ∂L/∂w2 = w1·(p Sxx − Sxy).
    fn loss_and_grad(
        &self,
        params: &[Tensor],
        batches: &[usize],
        _moving: &[bool],
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let w = &params[0];
        let idx = batch_index(batches);
        let [sxx, sxy, syy] = &self.stats;
        let (sxx, sxy, syy) = (sxx.index_select(0, &idx), sxy.index_select(0, &idx), syy.index_select(0, &idx));
        let (w1, w2) = (w.select(1, 0), w.select(1, 1));
        let p = &w1 * &w2;
        let r = &p * &sxx - &sxy;
        let loss = (syy - &p * &sxy * 2.0 + p.square() * sxx) * 0.5;
        let grad = Tensor::stack(&[&r * w2, r * w1], 1);
        Ok((loss, vec![Some(grad)]))
    }
}
