//! The att-SVM of one layer and the *restricted* cosine of a head's
//! bilinear form with it.
//!
//! Constraint rows are rank-one matrices `A_k = q_k d_kᵀ` (query input
//! `q_k`, key difference `d_k = a_partner − a_j`). The minimum-norm solution of
//! `⟨W, A_k⟩ ≥ 1` lies in `span{A_k} ⊆ U ⊗ V` with `U = span{q_k}`,
//! `V = span{d_k}`: only `P_U W P_V` is seen by the constraints. So the QP is
//! solved in orthonormal coordinates of `U ⊗ V` (`r_U · r_V` unknowns instead
//! of `d_q · d_k`), and a head's matrix `M` is compared with the solution
//! after the same projection:
//!
//! ```text
//! restricted cosine = cos(P_U M P_V, W_svm) = ⟨Ûᵀ M V̂, C⟩ / (‖Ûᵀ M V̂‖ ‖C‖),   W_svm = Û C V̂ᵀ
//! ```
//!
//! Components of `M` outside `U ⊗ V` never change the attention logit
//! differences on the sampled constraints; with `d_q · d_k` far above the
//! number of constraints they would otherwise dominate the cosine.

use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSettingsBuilder, DefaultSolver, IPSolver, NonnegativeConeT, SolverStatus};

use crate::svm::SvmError;

/// `min ½‖x‖² s.t. rows[k]ᵀ x ≥ 1` through its dual,
/// `min ½ αᵀ G α − 1ᵀα, α ≥ 0` with `G = rows·rowsᵀ`, `x = Σ α_k rows[k]`
/// (Clarabel). The dual has one unknown per constraint: far smaller than the
/// primal when, as here, the unknowns (r_U·r_V) outnumber the constraints.
pub fn min_norm_margin_dual(rows: &[Vec<f64>]) -> Result<Vec<f64>, SvmError> {
    let m = rows.len();
    if m == 0 {
        return Err(SvmError::Empty);
    }
    let dim = rows[0].len();
    if let Some((k, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != dim) {
        return Err(SvmError::Shape { row: k, found: r.len(), expected: dim });
    }
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // Upper triangle of G, column by column (CSC).
    let (mut colptr, mut rowval, mut nzval) = (vec![0usize], Vec::new(), Vec::new());
    for j in 0..m {
        for i in 0..=j {
            rowval.push(i);
            nzval.push(dot(&rows[i], &rows[j]));
        }
        colptr.push(rowval.len());
    }
    let p = CscMatrix::new(m, m, colptr, rowval, nzval);
    let q = vec![-1.0; m];
    // α ≥ 0  ⇔  −α + s = 0, s ≥ 0.
    let a = CscMatrix::new(m, m, (0..=m).collect(), (0..m).collect(), vec![-1.0; m]);
    let b = vec![0.0; m];
    let cones = [NonnegativeConeT(m)];
    let settings = DefaultSettingsBuilder::default()
        .verbose(false)
        .max_iter(500)
        .build()
        .map_err(|e| SvmError::Solver { status: format!("settings: {e}") })?;
    let mut solver = DefaultSolver::new(&p, &q, &a, &b, &cones, settings)
        .map_err(|e| SvmError::Solver { status: format!("setup: {e:?}") })?;
    solver.solve();
    match solver.solution.status {
        SolverStatus::Solved | SolverStatus::AlmostSolved => {}
        SolverStatus::DualInfeasible | SolverStatus::AlmostDualInfeasible => {
            return Err(SvmError::Infeasible { rows: m, dim })
        }
        s => return Err(SvmError::Solver { status: format!("{s:?}") }),
    }
    let alpha = &solver.solution.x;
    let mut x = vec![0.0; dim];
    for (r, &al) in rows.iter().zip(alpha) {
        let al = al.max(0.0);
        x.iter_mut().zip(r).for_each(|(xi, ri)| *xi += al * ri);
    }
    Ok(x)
}

/// Orthonormal basis (modified Gram–Schmidt, twice) of the span of `vs`
/// (each of length `dim`); directions with a residual below `rel_tol` times
/// the largest input norm are dropped.
pub fn orthonormal_basis(vs: &[Vec<f64>], dim: usize, rel_tol: f64) -> Vec<Vec<f64>> {
    let scale = vs.iter().map(|v| v.iter().map(|x| x * x).sum::<f64>().sqrt()).fold(0.0, f64::max);
    let mut basis: Vec<Vec<f64>> = Vec::new();
    if scale == 0.0 {
        return basis;
    }
    for v in vs {
        let mut r = v.clone();
        for _ in 0..2 {
            for b in &basis {
                let c: f64 = r.iter().zip(b).map(|(x, y)| x * y).sum();
                r.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
            }
        }
        let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n > rel_tol * scale {
            r.iter_mut().for_each(|x| *x /= n);
            basis.push(r);
        }
        if basis.len() == dim {
            break;
        }
    }
    basis
}

/// Coordinates of `v` in an orthonormal basis.
fn coords(basis: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    basis.iter().map(|b| b.iter().zip(v).map(|(x, y)| x * y).sum()).collect()
}

/// `Ûᵀ M V̂` (row-major `r_U × r_V`) for `M` row-major `dq × dk`.
pub fn reduce(m: &[f64], dq: usize, dk: usize, ub: &[Vec<f64>], vb: &[Vec<f64>]) -> Vec<f64> {
    assert_eq!(m.len(), dq * dk, "reduce: M must be dq × dk");
    // M V̂: dq × r_V
    let mv: Vec<Vec<f64>> =
        vb.iter().map(|v| (0..dq).map(|i| (0..dk).map(|j| m[i * dk + j] * v[j]).sum()).collect()).collect();
    let mut out = Vec::with_capacity(ub.len() * vb.len());
    for u in ub {
        for col in &mv {
            out.push(u.iter().zip(col).map(|(x, y)| x * y).sum());
        }
    }
    out
}

/// Cosine of two vectors (0 if either is zero).
pub fn cos(a: &[f64], b: &[f64]) -> f64 {
    crate::svm::cosine(a, b)
}

/// The restricted cosine of `M` and `W` (both row-major `dq × dk`): the
/// cosine of their projections `P_U · P_V` onto `span(ub) ⊗ span(vb)`.
pub fn restricted_cosine(m: &[f64], w: &[f64], dq: usize, dk: usize, ub: &[Vec<f64>], vb: &[Vec<f64>]) -> f64 {
    cos(&reduce(m, dq, dk, ub, vb), &reduce(w, dq, dk, ub, vb))
}

/// One layer's att-SVM on a set of rank-one constraints `q_k d_kᵀ`.
#[derive(Debug, Clone)]
pub struct LayerSvm {
    /// Query dimension (d + 1 with the bias).
    pub dq: usize,
    /// Key dimension.
    pub dk: usize,
    /// Orthonormal bases of the query span U and the key-difference span V.
    pub ub: Vec<Vec<f64>>,
    /// (the basis of V)
    pub vb: Vec<Vec<f64>>,
    /// Constraint rows in reduced coordinates (`r_U · r_V` each).
    pub rows: Vec<Vec<f64>>,
    /// Solution in reduced coordinates, `C` row-major `r_U × r_V`.
    pub c: Vec<f64>,
    /// `‖W_svm‖_F = ‖C‖` (the max-margin is `1/‖W_svm‖`).
    pub norm: f64,
}

impl LayerSvm {
    /// Solve `min ‖W‖_F s.t. q_kᵀ W d_k ≥ 1` for the pairs `(q_k, d_k)`.
    pub fn solve(pairs: &[(Vec<f64>, Vec<f64>)], dq: usize, dk: usize) -> Result<LayerSvm, SvmError> {
        if pairs.is_empty() {
            return Err(SvmError::Empty);
        }
        let qs: Vec<Vec<f64>> = pairs.iter().map(|p| p.0.clone()).collect();
        let ds: Vec<Vec<f64>> = pairs.iter().map(|p| p.1.clone()).collect();
        let ub = orthonormal_basis(&qs, dq, 1e-9);
        let vb = orthonormal_basis(&ds, dk, 1e-9);
        let rows: Vec<Vec<f64>> = pairs
            .iter()
            .map(|(q, d)| {
                let (cq, cd) = (coords(&ub, q), coords(&vb, d));
                cq.iter().flat_map(|x| cd.iter().map(move |y| x * y)).collect()
            })
            .collect();
        let c = min_norm_margin_dual(&rows)?;
        let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt();
        Ok(LayerSvm { dq, dk, ub, vb, rows, c, norm })
    }

    /// `W_svm` in full coordinates, row-major `dq × dk`.
    pub fn full(&self) -> Vec<f64> {
        let rv = self.vb.len();
        let mut w = vec![0.0; self.dq * self.dk];
        for (a, u) in self.ub.iter().enumerate() {
            for (b, v) in self.vb.iter().enumerate() {
                let c = self.c[a * rv + b];
                for i in 0..self.dq {
                    for j in 0..self.dk {
                        w[i * self.dk + j] += c * u[i] * v[j];
                    }
                }
            }
        }
        w
    }

    /// Measures of a head's bilinear form `M` (row-major `dq × dk`) against
    /// the solution: restricted cosine, full-space cosine, and the margin
    /// ratio `min_k ⟨M, A_k⟩ / ‖P M P‖ · ‖W_svm‖` (1 when M is the max-margin
    /// direction, ≤ 0 when some partner is not preferred).
    pub fn compare(&self, m: &[f64]) -> HeadVsSvm {
        let red = reduce(m, self.dq, self.dk, &self.ub, &self.vb);
        let rn = red.iter().map(|x| x * x).sum::<f64>().sqrt();
        let margins: Vec<f64> = self.rows.iter().map(|r| r.iter().zip(&red).map(|(x, y)| x * y).sum::<f64>()).collect();
        let min_m = margins.iter().copied().fold(f64::INFINITY, f64::min);
        HeadVsSvm {
            satisfied: margins.iter().filter(|&&g| g > 0.0).count() as f64 / margins.len().max(1) as f64,
            cosine: cos(&red, &self.c),
            cosine_full: cos(m, &self.full()),
            margin_ratio: if rn > 0.0 { min_m / rn * self.norm } else { f64::NAN },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
/// How a head's W_Q·W_Kᵀ compares with the layer's att-SVM.
pub struct HeadVsSvm {
    /// Cosine with the SVM direction, restricted to the span the constraints live in.
    pub cosine: f64,
    /// Share of the constraints the head meets with a positive margin
    /// (partner's logit above the other particle's).
    pub satisfied: f64,
    /// Cosine in the full space.
    pub cosine_full: f64,
    /// Smallest margin of the head's form, rescaled to the SVM's norm (1 = max-margin direction; < 0 = some partner not preferred).
    pub margin_ratio: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(d: usize, i: usize) -> Vec<f64> {
        let mut v = vec![0.0; d];
        v[i] = 1.0;
        v
    }

    /// The dual solver agrees with the primal one (`min_norm_margin`) on a
    /// random separable problem, and its solution meets every constraint.
    #[test]
    fn dual_matches_primal() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let rows: Vec<Vec<f64>> = (0..30).map(|_| (0..50).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect();
        let x = min_norm_margin_dual(&rows).unwrap();
        let p = crate::svm::min_norm_margin(&rows, 50).unwrap();
        let err = x.iter().zip(&p.x).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-5 * p.norm(), "{err}");
        assert!(rows.iter().all(|r| r.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>() > 1.0 - 1e-6));
        // Contradicting constraints: infeasible, reported as such.
        let bad = vec![vec![1.0, 0.0], vec![-1.0, 0.0]];
        assert!(matches!(min_norm_margin_dual(&bad), Err(SvmError::Infeasible { .. })));
    }

    #[test]
    fn basis_is_orthonormal_and_drops_dependent_vectors() {
        let vs = vec![vec![1.0, 1.0, 0.0], vec![2.0, 2.0, 0.0], vec![1.0, 0.0, 1.0]];
        let b = orthonormal_basis(&vs, 3, 1e-9);
        assert_eq!(b.len(), 2);
        for i in 0..2 {
            for j in 0..2 {
                let d: f64 = b[i].iter().zip(&b[j]).map(|(x, y)| x * y).sum();
                assert!((d - (i == j) as u8 as f64).abs() < 1e-12);
            }
        }
    }

    /// Queries span e0, key differences span {e1, e2}. M = e0 e1ᵀ + 5 e3 e3ᵀ:
    /// its restriction is e0 e1ᵀ, so the restricted cosine with W = e0 e1ᵀ is
    /// exactly 1 while the full cosine is 1/√26; with W = e0 e2ᵀ it is 0; with
    /// W = e0 (e1 + e2)ᵀ it is 1/√2.
    #[test]
    fn restricted_cosine_hand_made() {
        let d = 4;
        let outer =
            |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().flat_map(|x| b.iter().map(move |y| x * y)).collect() };
        let add = |a: Vec<f64>, b: Vec<f64>| -> Vec<f64> { a.iter().zip(&b).map(|(x, y)| x + y).collect() };
        let ub = orthonormal_basis(&[vec![2.0, 0.0, 0.0, 0.0]], d, 1e-9);
        let vb = orthonormal_basis(&[vec![0.0, 1.0, 1.0, 0.0], vec![0.0, 1.0, -1.0, 0.0]], d, 1e-9);
        assert_eq!((ub.len(), vb.len()), (1, 2));
        let m = add(outer(&e(d, 0), &e(d, 1)), outer(&e(d, 3), &e(d, 3)).iter().map(|x| 5.0 * x).collect());
        let w1 = outer(&e(d, 0), &e(d, 1));
        assert!((restricted_cosine(&m, &w1, d, d, &ub, &vb) - 1.0).abs() < 1e-12);
        assert!((cos(&m, &w1) - 1.0 / 26f64.sqrt()).abs() < 1e-12);
        let w2 = outer(&e(d, 0), &e(d, 2));
        assert!(restricted_cosine(&m, &w2, d, d, &ub, &vb).abs() < 1e-12);
        let w3 = add(w1.clone(), w2.clone());
        assert!((restricted_cosine(&m, &w3, d, d, &ub, &vb) - 0.5f64.sqrt()).abs() < 1e-12);
    }

    /// A case solvable by hand: one query q = (1, 0) (dq = 2) and key
    /// differences d1 = (1, 0, 0), d2 = (0, 2, 0) (dk = 3); the constraints
    /// qᵀ W d ≥ 1 read W₀₀ ≥ 1, 2 W₀₁ ≥ 1, so W = e0 (e0 + ½ e1)ᵀ, ‖W‖ = √1.25.
    #[test]
    fn layer_svm_matches_hand_solution_and_compares_heads() {
        let q = vec![1.0, 0.0];
        let pairs = vec![(q.clone(), vec![1.0, 0.0, 0.0]), (q.clone(), vec![0.0, 2.0, 0.0])];
        let s = LayerSvm::solve(&pairs, 2, 3).unwrap();
        let w = s.full();
        let want = [1.0, 0.5, 0.0, 0.0, 0.0, 0.0];
        assert!(w.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6), "{w:?}");
        assert!((s.norm - 1.25f64.sqrt()).abs() < 1e-6);
        // A head proportional to W_svm plus invisible parts: cosine 1, margin ratio 1.
        let mut m: Vec<f64> = want.iter().map(|x| 3.0 * x).collect();
        m[5] = 7.0; // row 1 (outside U), column 2 (outside V)
        let c = s.compare(&m);
        assert!((c.cosine - 1.0).abs() < 1e-6 && (c.margin_ratio - 1.0).abs() < 1e-5, "{c:?}");
        assert!(c.cosine_full < 0.5, "{c:?}");
        // A head that prefers only the first difference: positive but smaller ratio.
        let c2 = s.compare(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!((c2.cosine - 1.0 / 1.25f64.sqrt()).abs() < 1e-6, "{c2:?}");
        assert!(c2.margin_ratio.abs() < 1e-9, "second constraint has margin 0: {c2:?}");
        assert_eq!((c.satisfied, c2.satisfied), (1.0, 0.5));
    }
}
