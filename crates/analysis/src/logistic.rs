//! Incremental information of a head's attention over geometry: a logistic
//! regression of "in contact during the interval" on the baseline features
//! alone against the same features plus log a'_ij, fitted on one half of the
//! evaluation frames and scored on the other (two folds: even and odd frame
//! indices), with a bootstrap interval over held-out frames.
//!
//! The gain is the held-out log-likelihood difference per positive pair, in
//! nats: how much better the contacts are predicted once the head's
//! attention is known. It is ≈ 0 (and its interval holds 0) when the
//! attention adds nothing beyond the features.

use rand::{Rng, SeedableRng};

use crate::baselines::PairTable;
use crate::metrics::auroc;

/// Ridge penalty on the standardized coefficients (not the intercept), in
/// log-likelihood units: keeps the fit finite when a feature separates the
/// classes (pairs touching at the input frame are always in contact).
pub const RIDGE: f64 = 1.0;
/// Bootstrap resamples of held-out frames for the gain's interval.
pub const BOOTSTRAP: usize = 400;
/// Smallest attention weight taken before the logarithm.
pub const LOG_FLOOR: f64 = 1e-8;

/// A fitted logistic regression on standardized columns.
#[derive(Debug, Clone)]
pub struct Logit {
    mean: Vec<f64>,
    sd: Vec<f64>,
    /// Intercept first, then one weight per column.
    pub w: Vec<f64>,
}

fn softplus(z: f64) -> f64 {
    if z > 30.0 {
        z
    } else if z < -30.0 {
        z.exp()
    } else {
        z.exp().ln_1p()
    }
}

/// Log-likelihood of label `y` under linear predictor `z`.
pub fn loglik(z: f64, y: bool) -> f64 {
    if y {
        -softplus(-z)
    } else {
        -softplus(z)
    }
}

impl Logit {
    /// Fit by Newton's method (with step halving) on rows `x[k]` (all of the
    /// same length) and labels `y`. Columns are standardized on these rows.
    pub fn fit(x: &[Vec<f64>], y: &[bool]) -> Logit {
        let p = x.first().map_or(0, |r| r.len());
        let flat: Vec<f64> = x.iter().flat_map(|r| r.iter().copied()).collect();
        Logit::fit_flat(&flat, p, y)
    }

    /// [`Logit::fit`] on a row-major `[y.len(), p]` matrix: one contiguous
    /// design matrix, and one pass over it per Newton step that gives the
    /// objective, gradient and Hessian together (the same sums, in the same
    /// order, as separate passes would: the fit is bit-identical).
    pub fn fit_flat(x: &[f64], p: usize, y: &[bool]) -> Logit {
        let rows_n = if p == 0 { y.len() } else { x.len() / p };
        let n = rows_n.max(1) as f64;
        let mut mean = vec![0.0; p];
        let mut sd = vec![0.0; p];
        for r in x.chunks_exact(p.max(1)).take(if p == 0 { 0 } else { rows_n }) {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n;
            }
        }
        for r in x.chunks_exact(p.max(1)).take(if p == 0 { 0 } else { rows_n }) {
            for a in 0..p {
                sd[a] += (r[a] - mean[a]).powi(2) / n;
            }
        }
        for s in &mut sd {
            *s = if *s > 0.0 { s.sqrt() } else { 1.0 };
        }
        let mut lg = Logit { mean, sd, w: vec![0.0; p + 1] };
        let d = p + 1;
        let mut rows: Vec<f64> = Vec::with_capacity(rows_n * d);
        for k in 0..rows_n {
            rows.push(1.0);
            for a in 0..p {
                rows.push((x[k * p + a] - lg.mean[a]) / lg.sd[a]);
            }
        }
        let ridge = |w: &[f64]| 0.5 * RIDGE * w[1..].iter().map(|v| v * v).sum::<f64>();
        // Objective (penalized log-likelihood), gradient and lower-triangle
        // Hessian of the log-likelihood at w, in one pass.
        let pass = |w: &[f64], g: &mut [f64], h: &mut [f64]| -> f64 {
            g.iter_mut().for_each(|v| *v = 0.0);
            h.iter_mut().for_each(|v| *v = 0.0);
            let mut ll = -0.0;
            for (r, &yy) in rows.chunks_exact(d).zip(y) {
                let z = dot(r, w);
                ll += loglik(z, yy);
                let pr = 1.0 / (1.0 + (-z).exp());
                let resid = if yy { 1.0 } else { 0.0 } - pr;
                let wt = pr * (1.0 - pr);
                for a in 0..d {
                    g[a] += resid * r[a];
                    for b in 0..=a {
                        h[a * d + b] += wt * r[a] * r[b];
                    }
                }
            }
            ll - ridge(w)
        };
        let (mut g, mut h) = (vec![0.0; d], vec![0.0; d * d]);
        let (mut g_c, mut h_c) = (vec![0.0; d], vec![0.0; d * d]);
        let mut obj = pass(&lg.w, &mut g, &mut h);
        for _ in 0..100 {
            for a in 1..d {
                g[a] -= RIDGE * lg.w[a];
                h[a * d + a] += RIDGE;
            }
            h[0] += 1e-9;
            for a in 0..d {
                for b in a + 1..d {
                    h[a * d + b] = h[b * d + a];
                }
            }
            let Some(step) = solve_spd(&h, &g, d) else { break };
            let mut t = 1.0;
            let mut improved = false;
            for _ in 0..30 {
                let cand: Vec<f64> = lg.w.iter().zip(&step).map(|(w, s)| w + t * s).collect();
                let o = pass(&cand, &mut g_c, &mut h_c);
                if o >= obj - 1e-12 {
                    let gain = o - obj;
                    lg.w = cand;
                    obj = o;
                    std::mem::swap(&mut g, &mut g_c);
                    std::mem::swap(&mut h, &mut h_c);
                    improved = gain > 1e-10 * (1.0 + obj.abs());
                    break;
                }
                t *= 0.5;
            }
            if !improved {
                break;
            }
        }
        lg
    }

    /// Linear predictor of one row.
    pub fn predict(&self, r: &[f64]) -> f64 {
        // dot(design(r), w), summed in the same order, without allocating.
        let mut s = -0.0;
        s += 1.0 * self.w[0];
        for (a, x) in r.iter().enumerate() {
            s += ((x - self.mean[a]) / self.sd[a]) * self.w[a + 1];
        }
        s
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solve `h · x = g` for a symmetric positive definite `h` (`d × d`) by
/// Cholesky; `None` when it is not positive definite.
fn solve_spd(h: &[f64], g: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = h[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    let mut y = vec![0.0; d];
    for i in 0..d {
        let mut s = g[i];
        for k in 0..i {
            s -= l[i * d + k] * y[k];
        }
        y[i] = s / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let mut s = y[i];
        for k in i + 1..d {
            s -= l[k * d + i] * x[k];
        }
        x[i] = s / l[i * d + i];
    }
    Some(x)
}

/// The geometric features of every pair of a [`PairTable`]: distance, its
/// log, touching at the input frame, closing speed, log(1 + time to
/// contact), ballistic closest approach and its log.
pub fn baseline_features(t: &PairTable) -> Vec<Vec<f64>> {
    baseline_features_flat(t).chunks_exact(N_FEATURES).map(|r| r.to_vec()).collect()
}

/// Number of [`baseline_features`] per pair.
pub const N_FEATURES: usize = 7;

/// [`baseline_features`] as one row-major `[pairs, N_FEATURES]` matrix.
fn baseline_features_flat(t: &PairTable) -> Vec<f64> {
    let mut out = Vec::with_capacity(t.len() * N_FEATURES);
    for k in 0..t.len() {
        let r = t.r[k] as f64;
        let dmin = t.dmin[k] as f64;
        out.extend_from_slice(&[
            r,
            r.max(1e-3).ln(),
            if t.touching[k] { 1.0 } else { 0.0 },
            t.closing[k] as f64,
            (t.ttc[k] as f64).ln_1p(),
            dmin,
            dmin.max(1e-3).ln(),
        ]);
    }
    out
}

/// The baseline model, fitted once per evaluation set: per pair, its
/// held-out log-likelihood and linear predictor (two folds by frame parity).
#[derive(Debug, Clone)]
pub struct BaseModel {
    /// [`baseline_features`], row-major `[pairs, N_FEATURES]`.
    features: Vec<f64>,
    fold: Vec<usize>,
    /// Held-out log-likelihood of each pair under the baseline model.
    pub ll: Vec<f64>,
    /// Held-out linear predictor of each pair.
    pub z: Vec<f64>,
    /// Held-out AUROC of the baseline model.
    pub auroc: f64,
}

/// Fit on the rows of one fold (a row-major `[rows, p]` matrix `x`), score
/// the other; both folds. Returns per row the held-out log-likelihood and
/// linear predictor.
fn fit_folds(x: &[f64], p: usize, y: &[bool], fold: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let rows = y.len();
    let mut ll = vec![0.0; rows];
    let mut z = vec![0.0; rows];
    for f in 0..2 {
        let mut tx = Vec::with_capacity(x.len());
        let mut ty = Vec::with_capacity(rows);
        for k in (0..rows).filter(|&k| fold[k] != f) {
            tx.extend_from_slice(&x[k * p..(k + 1) * p]);
            ty.push(y[k]);
        }
        let m = Logit::fit_flat(&tx, p, &ty);
        for k in (0..rows).filter(|&k| fold[k] == f) {
            z[k] = m.predict(&x[k * p..(k + 1) * p]);
            ll[k] = loglik(z[k], y[k]);
        }
    }
    (ll, z)
}

impl BaseModel {
    /// Fit the baseline features of `t` on each half of the frames and score
    /// the other half.
    pub fn fit(t: &PairTable) -> BaseModel {
        let features = baseline_features_flat(t);
        let fold: Vec<usize> = t.frame.iter().map(|&f| f as usize % 2).collect();
        let (ll, z) = fit_folds(&features, N_FEATURES, &t.label, &fold);
        let zs: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let auroc = auroc(&zs, &t.label);
        BaseModel { features, fold, ll, z, auroc }
    }
}

/// What adding log a'_ij to the baseline features buys, on held-out frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Incremental {
    /// Held-out log-likelihood gain per positive pair (nats).
    pub gain: f64,
    /// 95 % percentile bootstrap interval of `gain`, resampling held-out
    /// frames (the frame is the unit: pairs of one frame are not independent).
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
    /// Held-out AUROC of the model with log a'_ij.
    pub auroc_full: f64,
}

/// Fit baseline features + log a'_ij (`attn`, in pair-table order) on each
/// half of the frames, score the other, and compare with `base`.
pub fn incremental(t: &PairTable, base: &BaseModel, attn: &[f32], seed: u64) -> Incremental {
    let p = N_FEATURES + 1;
    let mut x: Vec<f64> = Vec::with_capacity(attn.len() * p);
    for (f, &a) in base.features.chunks_exact(N_FEATURES).zip(attn) {
        x.extend_from_slice(f);
        x.push((a as f64).max(LOG_FLOOR).ln());
    }
    let (ll, z) = fit_folds(&x, p, &t.label, &base.fold);
    let zs: Vec<f32> = z.iter().map(|&v| v as f32).collect();
    let auroc_full = auroc(&zs, &t.label);
    // Per frame: summed log-likelihood difference and positives.
    let nf = t.n_frames;
    let mut dll = vec![0.0; nf];
    let mut pos = vec![0.0; nf];
    for k in 0..t.len() {
        let f = t.frame[k] as usize;
        dll[f] += ll[k] - base.ll[k];
        if t.label[k] {
            pos[f] += 1.0;
        }
    }
    let ratio = |idx: &mut dyn Iterator<Item = usize>| {
        let (mut a, mut b) = (0.0, 0.0);
        for f in idx {
            a += dll[f];
            b += pos[f];
        }
        if b > 0.0 {
            a / b
        } else {
            f64::NAN
        }
    };
    let gain = ratio(&mut (0..nf));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x1AC2);
    let mut boots: Vec<f64> = (0..BOOTSTRAP)
        .map(|_| {
            let draw: Vec<usize> = (0..nf).map(|_| rng.gen_range(0..nf.max(1))).collect();
            ratio(&mut draw.into_iter())
        })
        .filter(|v| v.is_finite())
        .collect();
    boots.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if boots.is_empty() {
            f64::NAN
        } else {
            boots[((p * (boots.len() - 1) as f64).round() as usize).min(boots.len() - 1)]
        }
    };
    Incremental { gain, lo: q(0.025), hi: q(0.975), auroc_full }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::StandardNormal;

    #[test]
    fn logistic_recovers_known_coefficients() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (b0, b1) = (-1.0, 2.0);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..20000 {
            let v: f64 = rng.sample(StandardNormal);
            let p = 1.0 / (1.0 + (-(b0 + b1 * v)).exp());
            x.push(vec![v]);
            y.push(rng.gen_bool(p));
        }
        let m = Logit::fit(&x, &y);
        // Standardized column: slope in raw units = w1 / sd.
        let sd = (x.iter().map(|r| r[0] * r[0]).sum::<f64>() / x.len() as f64).sqrt();
        let slope = m.w[1] / sd;
        assert!((slope - b1).abs() < 0.1, "slope {slope}");
        assert!((m.predict(&[0.0]) - b0).abs() < 0.1, "intercept {}", m.predict(&[0.0]));
        // Separable data stays finite thanks to the ridge.
        let xs: Vec<Vec<f64>> = (0..100).map(|k| vec![k as f64]).collect();
        let ys: Vec<bool> = (0..100).map(|k| k >= 50).collect();
        let m = Logit::fit(&xs, &ys);
        assert!(m.w.iter().all(|w| w.is_finite()) && m.predict(&[99.0]) > 3.0 && m.predict(&[0.0]) < -3.0);
    }

    /// A synthetic pair table where contact depends on distance only.
    fn table(seed: u64, frames: usize) -> PairTable {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = 8;
        let mut t = PairTable { n, n_frames: frames, ..Default::default() };
        for f in 0..frames {
            for _ in 0..n * (n - 1) {
                let r: f32 = rng.gen_range(0.8..3.0);
                let p = 1.0 / (1.0 + ((r as f64 - 1.2) * 6.0).exp());
                t.frame.push(f as u32);
                t.r.push(r);
                t.label.push(rng.gen_bool(p));
                t.touching.push(r < 1.0);
                t.closing.push(0.0);
                t.ttc.push(TTC_CAP);
                t.dmin.push(r);
                t.bin.push(None);
            }
        }
        t
    }
    const TTC_CAP: f32 = crate::baselines::TTC_CAP_FRAMES;

    #[test]
    fn attention_that_knows_the_answer_gains_and_noise_does_not() {
        let t = table(5, 80);
        let base = BaseModel::fit(&t);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        // Knows the label (plus noise): a large gain, interval above 0.
        let knows: Vec<f32> =
            t.label.iter().map(|&l| if l { 0.5 } else { 0.01 } * (1.0 + 0.3 * rng.gen::<f32>())).collect();
        let inc = incremental(&t, &base, &knows, 1);
        assert!(inc.lo > 0.1 && inc.gain > inc.lo && inc.hi > inc.gain, "{inc:?}");
        assert!(inc.auroc_full > base.auroc);
        // Pure noise: the interval's lower end stays at or below 0 in most
        // replicates (no information is claimed where there is none).
        let mut covers = 0;
        let reps = 20;
        for rep in 0..reps {
            let t = table(100 + rep, 40);
            let base = BaseModel::fit(&t);
            let noise: Vec<f32> = (0..t.len()).map(|_| rng.gen_range(0.01..0.2)).collect();
            let inc = incremental(&t, &base, &noise, rep);
            assert!(inc.gain < 0.05, "{inc:?}");
            if inc.lo <= 0.0 {
                covers += 1;
            }
        }
        assert!(covers >= 17, "lower end ≤ 0 in only {covers}/{reps}");
    }
}
