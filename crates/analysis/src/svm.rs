//! Minimum-norm margin problems solved with the Clarabel interior-point QP
//! solver: `min ½‖x‖²  s.t.  a_kᵀ x ≥ 1 for every row a_k`.
//!
//! The att-SVM (`a_k = k_opt − k_t`), its W variant (`a_k = vec((x_opt − x_t) z_iᵀ)`)
//! and the classifier SVM of the joint (v, p) problem all have this form.

use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSettingsBuilder, DefaultSolver, IPSolver, NonnegativeConeT, SolverStatus};

#[derive(Debug, thiserror::Error)]
/// Why a margin problem cannot be solved.
pub enum SvmError {
    /// Shown as "max-margin SVM: no constraints given".
    #[error("max-margin SVM: no constraints given")]
    Empty,
    /// Shown as "max-margin SVM: constraint row {row} has {found} entries, expected {expected}".
    #[error("max-margin SVM: constraint row {row} has {found} entries, expected {expected}")]
    Shape {
        /// The `row` shown in the message.
        row: usize,
        /// What was found.
        found: usize,
        /// What was expected.
        expected: usize,
    },
    /// Shown as "max-margin SVM is infeasible: no direction separates the designated tokens from the oth...".
    #[error("max-margin SVM is infeasible: no direction separates the designated tokens from the others ({rows} constraints in {dim} dimensions); use more dimensions, fewer examples or tokens, or check the labels")]
    Infeasible {
        /// The `rows` shown in the message.
        rows: usize,
        /// The `dim` shown in the message.
        dim: usize,
    },
    /// Shown as "max-margin SVM: the QP solver stopped with status {status}".
    #[error("max-margin SVM: the QP solver stopped with status {status}")]
    Solver {
        /// The `status` shown in the message.
        status: String,
    },
}

/// Solution of a minimum-norm margin problem.
#[derive(Debug, Clone)]
pub struct SvmSolution {
    /// The minimum-norm solution.
    pub x: Vec<f64>,
    /// Smallest `a_kᵀ x` (1 at the optimum, up to solver tolerance).
    pub min_margin: f64,
    /// Rows with `a_kᵀ x < 1 + 1e-6`: the support vectors.
    pub support: Vec<usize>,
    /// The solver's status.
    pub status: String,
}

impl SvmSolution {
    /// ‖x‖.
    pub fn norm(&self) -> f64 {
        norm(&self.x)
    }
}

/// Dot product.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm.
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Cosine similarity (0 if either vector is zero).
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let d = norm(a) * norm(b);
    if d == 0.0 {
        0.0
    } else {
        dot(a, b) / d
    }
}

/// Solve `min ½‖x‖² s.t. rows[k]ᵀ x ≥ 1` for `x ∈ R^dim`.
pub fn min_norm_margin(rows: &[Vec<f64>], dim: usize) -> Result<SvmSolution, SvmError> {
    if rows.is_empty() {
        return Err(SvmError::Empty);
    }
    for (k, r) in rows.iter().enumerate() {
        if r.len() != dim {
            return Err(SvmError::Shape { row: k, found: r.len(), expected: dim });
        }
    }
    let m = rows.len();
    let p = CscMatrix::identity(dim);
    let q = vec![0.0; dim];
    // Clarabel form: A x + s = b, s ≥ 0. With A = −rows, b = −1: rows·x ≥ 1.
    let mut colptr = Vec::with_capacity(dim + 1);
    let mut rowval = Vec::new();
    let mut nzval = Vec::new();
    colptr.push(0);
    for j in 0..dim {
        for (k, r) in rows.iter().enumerate() {
            if r[j] != 0.0 {
                rowval.push(k);
                nzval.push(-r[j]);
            }
        }
        colptr.push(rowval.len());
    }
    let a = CscMatrix::new(m, dim, colptr, rowval, nzval);
    let b = vec![-1.0; m];
    let cones = [NonnegativeConeT(m)];
    let settings = DefaultSettingsBuilder::default()
        .verbose(false)
        .max_iter(500)
        .build()
        .map_err(|e| SvmError::Solver { status: format!("settings: {e}") })?;
    let mut solver = DefaultSolver::new(&p, &q, &a, &b, &cones, settings)
        .map_err(|e| SvmError::Solver { status: format!("setup: {e:?}") })?;
    solver.solve();
    let status = solver.solution.status;
    match status {
        SolverStatus::Solved | SolverStatus::AlmostSolved => {}
        SolverStatus::PrimalInfeasible | SolverStatus::AlmostPrimalInfeasible => {
            return Err(SvmError::Infeasible { rows: m, dim })
        }
        s => return Err(SvmError::Solver { status: format!("{s:?}") }),
    }
    let x = solver.solution.x.clone();
    let margins: Vec<f64> = rows.iter().map(|r| dot(r, &x)).collect();
    let min_margin = margins.iter().copied().fold(f64::INFINITY, f64::min);
    let support = margins.iter().enumerate().filter(|(_, &g)| g < 1.0 + 1e-6).map(|(k, _)| k).collect();
    Ok(SvmSolution { x, min_margin, support, status: format!("{status:?}") })
}
