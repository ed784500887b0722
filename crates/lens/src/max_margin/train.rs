//! The single-attention model `f(X) = vᵀ Xᵀ softmax(X p)` (or `softmax(X W z)`),
//! its loss gradient, gradient descent and the regularization path.

use serde::{Deserialize, Serialize};

use super::data::MmData;
use headlab_analysis::svm::{cosine, dot, norm};

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// `p ∈ R^d`, attention logits `X p`, v fixed.
    P,
    /// `W ∈ R^{d×d}`, attention logits `X W z`, v fixed.
    W,
    /// `p` and `v` together.
    Joint,
}

impl Variant {
    /// The variant's name in configs and tables.
    pub fn name(self) -> &'static str {
        match self {
            Variant::P => "p",
            Variant::W => "W",
            Variant::Joint => "joint",
        }
    }
}

/// Decreasing loss of the margin `u = Y f(X)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// log(1 + e^{−u})
    Logistic,
    /// e^{−u}
    Exponential,
}

impl Loss {
    fn value_and_slope(self, u: f64) -> (f64, f64) {
        match self {
            Loss::Logistic => {
                // Stable log(1+e^{-u}) and its derivative −1/(1+e^{u}).
                let l = if u > 0.0 { (-u).exp().ln_1p() } else { -u + u.exp().ln_1p() };
                (l, -1.0 / (1.0 + u.exp()))
            }
            Loss::Exponential => {
                let e = (-u).exp();
                (e, -e)
            }
        }
    }
}

/// Trainable state: `theta` is p (d) or W (d×d, row-major); `v` the head.
#[derive(Debug, Clone)]
pub struct Params {
    /// p or W.
    pub theta: Vec<f64>,
    /// The head v.
    pub v: Vec<f64>,
}

/// Loss, gradients and attention summaries at one point.
pub struct Eval {
    /// The loss.
    pub loss: f64,
    /// Its gradient with respect to θ.
    pub g_theta: Vec<f64>,
    /// Its gradient with respect to v.
    pub g_v: Vec<f64>,
    /// Mean softmax mass on the designated token.
    pub opt_mass: f64,
    /// Token with the largest attention in each example.
    pub selected: Vec<usize>,
}

/// Attention logits of example `i`.
pub fn attn_logits(data: &MmData, variant: Variant, theta: &[f64], i: usize) -> Vec<f64> {
    match variant {
        Variant::P | Variant::Joint => (0..data.t).map(|t| dot(data.token(i, t), theta)).collect(),
        Variant::W => {
            let d = data.d;
            let z = data.query(i);
            let wz: Vec<f64> = (0..d).map(|r| dot(&theta[r * d..(r + 1) * d], z)).collect();
            (0..data.t).map(|t| dot(data.token(i, t), &wz)).collect()
        }
    }
}

fn softmax(a: &[f64]) -> Vec<f64> {
    let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = a.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// Loss, gradients and attention mass of `p` on the data.
pub fn evaluate(data: &MmData, variant: Variant, loss: Loss, p: &Params) -> Eval {
    let (n, d) = (data.n, data.d);
    let mut g_theta = vec![0.0; p.theta.len()];
    let mut g_v = vec![0.0; d];
    let (mut total, mut mass) = (0.0, 0.0);
    let mut selected = Vec::with_capacity(n);
    for i in 0..n {
        let s = softmax(&attn_logits(data, variant, &p.theta, i));
        let h: Vec<f64> = (0..data.t).map(|t| dot(&p.v, data.token(i, t))).collect();
        let hbar: f64 = s.iter().zip(&h).map(|(a, b)| a * b).sum();
        let u = data.y[i] * hbar;
        let (l, dl) = loss.value_and_slope(u);
        total += l;
        mass += s[data.opt[i]];
        selected.push((0..data.t).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(0));
        let c = dl * data.y[i] / n as f64;
        // d f / d a_t = s_t (h_t − h̄); collect Σ_t (dL/da_t) x_t.
        let mut gx = vec![0.0; d];
        for t in 0..data.t {
            // h_t − h̄ as Σ_τ s_τ (h_t − h_τ): once attention saturates, the
            // plain difference would be rounding noise and steer normalized GD.
            let centred: f64 = s.iter().zip(&h).map(|(sk, hk)| sk * (h[t] - hk)).sum();
            let w = c * s[t] * centred;
            for (g, x) in gx.iter_mut().zip(data.token(i, t)) {
                *g += w * x;
            }
            if variant == Variant::Joint {
                for (g, x) in g_v.iter_mut().zip(data.token(i, t)) {
                    *g += c * s[t] * x;
                }
            }
        }
        match variant {
            Variant::P | Variant::Joint => g_theta.iter_mut().zip(&gx).for_each(|(g, a)| *g += a),
            Variant::W => {
                let z = data.query(i);
                for r in 0..d {
                    for (col, zc) in z.iter().enumerate() {
                        g_theta[r * d + col] += gx[r] * zc;
                    }
                }
            }
        }
    }
    Eval { loss: total / n as f64, g_theta, g_v, opt_mass: mass / n as f64, selected }
}

fn step(x: &mut [f64], g: &[f64], lr: f64, normalized: bool) {
    let scale = if normalized {
        let ng = norm(g);
        if ng == 0.0 {
            return;
        }
        lr / ng
    } else {
        lr
    };
    x.iter_mut().zip(g).for_each(|(a, b)| *a -= scale * b);
}

/// Measurements over training of one variant.
#[derive(Debug, Clone, Default)]
pub struct MmTrace {
    /// Recorded steps.
    pub steps: Vec<u64>,
    /// Loss at those steps.
    pub loss: Vec<f64>,
    /// cos(θ, θ_mm).
    pub cos: Vec<f64>,
    /// ‖θ‖.
    pub norm: Vec<f64>,
    /// Normalized margin over the max margin: min_k a_kᵀθ · ‖θ_mm‖ / ‖θ‖ (→ 1).
    pub margin_ratio: Vec<f64>,
    /// Mean softmax mass on the designated token.
    pub opt_mass: Vec<f64>,
    /// Joint only: cos(v, v_mm).
    pub cos_v: Vec<f64>,
    /// Share of examples whose most-attended token is the designated one, at the end.
    pub selected_opt_share: f64,
}

/// Normalized margin ratio of θ against constraint rows (see [`MmTrace::margin_ratio`]).
pub fn margin_ratio(rows: &[Vec<f64>], theta: &[f64], mm_norm: f64) -> f64 {
    let n = norm(theta);
    if n == 0.0 {
        return 0.0;
    }
    rows.iter().map(|r| dot(r, theta)).fold(f64::INFINITY, f64::min) * mm_norm / n
}

/// Gradient-descent settings.
pub struct GdSettings {
    /// Steps.
    pub steps: u64,
    /// Step size.
    pub lr: f64,
    /// Normalized gradient descent.
    pub normalized: bool,
    /// Record every this many steps.
    pub record_every: u64,
    /// The loss.
    pub loss: Loss,
}

/// Gradient descent from `init`; `mm` is θ_mm (and `v_mm` for the joint variant),
/// `rows` the SVM constraint rows of θ.
pub fn gradient_descent(
    data: &MmData,
    variant: Variant,
    init: Params,
    s: &GdSettings,
    rows: &[Vec<f64>],
    mm: &[f64],
    v_mm: Option<&[f64]>,
) -> (MmTrace, Params) {
    let mut p = init;
    let mut tr = MmTrace::default();
    let mm_norm = norm(mm);
    for k in 0..=s.steps {
        let ev = evaluate(data, variant, s.loss, &p);
        if k % s.record_every == 0 || k == s.steps {
            tr.steps.push(k);
            tr.loss.push(ev.loss);
            tr.cos.push(cosine(&p.theta, mm));
            tr.norm.push(norm(&p.theta));
            tr.margin_ratio.push(margin_ratio(rows, &p.theta, mm_norm));
            tr.opt_mass.push(ev.opt_mass);
            if let Some(vm) = v_mm {
                tr.cos_v.push(cosine(&p.v, vm));
            }
        }
        if k == s.steps {
            tr.selected_opt_share =
                ev.selected.iter().zip(&data.opt).filter(|(a, b)| a == b).count() as f64 / data.n as f64;
            break;
        }
        step(&mut p.theta, &ev.g_theta, s.lr, s.normalized);
        if variant == Variant::Joint {
            step(&mut p.v, &ev.g_v, s.lr, s.normalized);
        }
    }
    (tr, p)
}

/// One point of the regularization path.
#[derive(Debug, Clone)]
pub struct PathPoint {
    /// Norm-ball radius R.
    pub radius: f64,
    /// ‖p̄(R)‖.
    pub norm: f64,
    /// cos(p̄(R), p_mm).
    pub cos: f64,
    /// Loss at p̄(R).
    pub loss: f64,
    /// Mean softmax mass on the designated token.
    pub opt_mass: f64,
}

/// Regularization path of p: p̄(R) = argmin_{‖p‖ ≤ R} L(p) for each radius,
/// by projected normalized gradient descent warm-started along the path
/// (step `lr·R/√(k+1)` at inner step k).
pub fn regularization_path(
    data: &MmData,
    loss: Loss,
    radii: &[f64],
    steps_per_radius: u64,
    lr: f64,
    p_mm: &[f64],
) -> Vec<PathPoint> {
    let mut p = Params { theta: vec![0.0; data.d], v: data.v.clone() };
    let mut out = Vec::new();
    for &r in radii {
        for k in 0..steps_per_radius {
            let ev = evaluate(data, Variant::P, loss, &p);
            step(&mut p.theta, &ev.g_theta, lr * r / ((k + 1) as f64).sqrt(), true);
            let n = norm(&p.theta);
            if n > r {
                p.theta.iter_mut().for_each(|a| *a *= r / n);
            }
        }
        let ev = evaluate(data, Variant::P, loss, &p);
        out.push(PathPoint {
            radius: r,
            norm: norm(&p.theta),
            cos: cosine(&p.theta, p_mm),
            loss: ev.loss,
            opt_mass: ev.opt_mass,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::data::{MmData, MmDataConfig};
    use super::*;

    /// The analytic gradient matches finite differences for every variant.
    #[test]
    fn gradient_matches_finite_differences() {
        let data = MmData::generate(&MmDataConfig { n: 3, tokens: 3, dim: 4, score_spread: 0.3, ..Default::default() });
        for variant in [Variant::P, Variant::W, Variant::Joint] {
            for loss in [Loss::Logistic, Loss::Exponential] {
                let len = if variant == Variant::W { 16 } else { 4 };
                let theta: Vec<f64> = (0..len).map(|k| 0.3 * ((k as f64) * 1.7).sin()).collect();
                let v: Vec<f64> = data.v.iter().enumerate().map(|(k, a)| a + 0.1 * k as f64).collect();
                let p = Params { theta: theta.clone(), v: v.clone() };
                let ev = evaluate(&data, variant, loss, &p);
                let h = 1e-6;
                for j in 0..len {
                    let mut a = p.clone();
                    a.theta[j] += h;
                    let mut b = p.clone();
                    b.theta[j] -= h;
                    let fd =
                        (evaluate(&data, variant, loss, &a).loss - evaluate(&data, variant, loss, &b).loss) / (2.0 * h);
                    assert!(
                        (fd - ev.g_theta[j]).abs() < 1e-7,
                        "{variant:?} {loss:?} theta[{j}]: {fd} vs {}",
                        ev.g_theta[j]
                    );
                }
                if variant == Variant::Joint {
                    for j in 0..4 {
                        let mut a = p.clone();
                        a.v[j] += h;
                        let mut b = p.clone();
                        b.v[j] -= h;
                        let fd = (evaluate(&data, variant, loss, &a).loss - evaluate(&data, variant, loss, &b).loss)
                            / (2.0 * h);
                        assert!((fd - ev.g_v[j]).abs() < 1e-7, "v[{j}]: {fd} vs {}", ev.g_v[j]);
                    }
                }
            }
        }
    }
}
