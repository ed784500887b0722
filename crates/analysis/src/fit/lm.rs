//! Box-constrained Levenberg–Marquardt least squares on a model given as a
//! closure `f(θ, t)`, with a central-difference Jacobian. Parameters are
//! projected onto their box after every step, so a fit that runs away ends
//! on a bound (which the caller reports as degenerate) instead of at 1e50.

/// A least-squares problem: data and the box of the parameters.
pub(crate) struct Problem<'a> {
    pub f: &'a dyn Fn(&[f64], f64) -> f64,
    pub t: &'a [f64],
    pub y: &'a [f64],
    pub lo: &'a [f64],
    pub hi: &'a [f64],
}

impl Problem<'_> {
    pub fn rss(&self, th: &[f64]) -> f64 {
        let mut r = 0.0;
        for (&t, &y) in self.t.iter().zip(self.y) {
            let d = y - (self.f)(th, t);
            r += d * d;
        }
        if r.is_finite() {
            r
        } else {
            f64::INFINITY
        }
    }

    fn project(&self, th: &mut [f64]) {
        for (k, v) in th.iter_mut().enumerate() {
            *v = v.clamp(self.lo[k], self.hi[k]);
        }
    }
}

/// Solve the small dense system `a x = b` (row-major n×n) by Gaussian
/// elimination with partial pivoting. `None` if singular.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))?;
        if !(a[p * n + c].abs() > 1e-300) {
            return None;
        }
        if p != c {
            for k in 0..n {
                a.swap(c * n + k, p * n + k);
            }
            b.swap(c, p);
        }
        for r in c + 1..n {
            let f = a[r * n + c] / a[c * n + c];
            for k in c..n {
                a[r * n + k] -= f * a[c * n + k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let mut v = b[r];
        for k in r + 1..n {
            v -= a[r * n + k] * x[k];
        }
        x[r] = v / a[r * n + r];
    }
    if x.iter().all(|v| v.is_finite()) {
        Some(x)
    } else {
        None
    }
}

/// Minimize the residual sum of squares from `start`. Returns the
/// parameters and their RSS (infinite when the model cannot be evaluated).
pub(crate) fn levenberg_marquardt(pb: &Problem, start: &[f64], max_iter: usize) -> (Vec<f64>, f64) {
    let p = start.len();
    let n = pb.t.len();
    let mut th = start.to_vec();
    pb.project(&mut th);
    let mut cost = pb.rss(&th);
    if !cost.is_finite() || p == 0 {
        return (th, cost);
    }
    let mut lambda = 1e-3;
    let mut jac = vec![0.0; n * p];
    let mut res = vec![0.0; n];
    for _ in 0..max_iter {
        for (k, (&t, &y)) in pb.t.iter().zip(pb.y).enumerate() {
            res[k] = y - (pb.f)(&th, t);
        }
        for q in 0..p {
            let h = 1e-6 * th[q].abs().max(1e-3);
            let mut tp = th.clone();
            let mut tm = th.clone();
            tp[q] += h;
            tm[q] -= h;
            for (k, &t) in pb.t.iter().enumerate() {
                jac[k * p + q] = ((pb.f)(&tp, t) - (pb.f)(&tm, t)) / (2.0 * h);
            }
        }
        let mut jtj = vec![0.0; p * p];
        let mut jtr = vec![0.0; p];
        for k in 0..n {
            let row = &jac[k * p..(k + 1) * p];
            if row.iter().any(|v| !v.is_finite()) || !res[k].is_finite() {
                continue;
            }
            for a in 0..p {
                jtr[a] += row[a] * res[k];
                for b in 0..p {
                    jtj[a * p + b] += row[a] * row[b];
                }
            }
        }
        let mut improved = false;
        for _ in 0..30 {
            let mut m = jtj.clone();
            for a in 0..p {
                m[a * p + a] += lambda * jtj[a * p + a].max(1e-12);
            }
            if let Some(delta) = solve(m, jtr.clone(), p) {
                let mut cand: Vec<f64> = th.iter().zip(&delta).map(|(a, d)| a + d).collect();
                pb.project(&mut cand);
                let c = pb.rss(&cand);
                if c < cost {
                    let rel = (cost - c) / cost.max(1e-300);
                    let small_step = cand.iter().zip(&th).all(|(a, b)| (a - b).abs() <= 1e-10 * (b.abs() + 1e-6));
                    th = cand;
                    cost = c;
                    lambda = (lambda / 3.0).max(1e-12);
                    improved = true;
                    if rel < 1e-12 || small_step {
                        return (th, cost);
                    }
                    break;
                }
            }
            lambda *= 4.0;
            if lambda > 1e12 {
                break;
            }
        }
        if !improved {
            break;
        }
    }
    (th, cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_line_and_respects_bounds() {
        let t: Vec<f64> = (0..20).map(|k| k as f64).collect();
        let y: Vec<f64> = t.iter().map(|x| 1.0 + 2.0 * x).collect();
        let f = |th: &[f64], t: f64| th[0] + th[1] * t;
        let pb = Problem { f: &f, t: &t, y: &y, lo: &[-10.0, -10.0], hi: &[10.0, 10.0] };
        let (th, c) = levenberg_marquardt(&pb, &[0.0, 0.0], 100);
        assert!((th[0] - 1.0).abs() < 1e-6 && (th[1] - 2.0).abs() < 1e-6 && c < 1e-9, "{th:?} {c}");
        // With the slope capped at 1.5 the fit ends on the bound.
        let pb = Problem { f: &f, t: &t, y: &y, lo: &[-10.0, -10.0], hi: &[10.0, 1.5] };
        let (th, _) = levenberg_marquardt(&pb, &[0.0, 0.0], 100);
        assert_eq!(th[1], 1.5);
    }
}
