//! Separable single-attention data with a designated optimal token.
//!
//! Example `i` has tokens `x_it ∈ R^d` (`t < T`), a label `Y_i = ±1` and a
//! query `z_i` (used by the W variant). With a fixed head `v`, the token
//! score is `γ_it = Y_i · vᵀx_it`. Each token is a Gaussian part orthogonal
//! to `v` plus a component along `v` chosen so that the scores are exactly
//! what the config asks: the designated token (index `opt_i`, drawn at
//! random) scores `opt_score`, the others `other_score` (± `score_spread`).
//! With equal non-optimal scores (spread 0) the paper's global convergence
//! result applies.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use headlab_analysis::svm::{dot, norm};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// The `[data]` table of the max-margin toy.
pub struct MmDataConfig {
    /// Examples.
    pub n: usize,
    /// Tokens per example.
    pub tokens: usize,
    /// Token dimension. The att-SVM has n·(tokens−1) constraints; with
    /// dim ≥ that number it is always feasible.
    pub dim: usize,
    /// Score of the designated optimal token.
    pub opt_score: f64,
    /// Score of the other tokens.
    pub other_score: f64,
    /// Non-optimal scores are drawn uniformly in other_score ± spread (0 = all equal).
    pub score_spread: f64,
    /// ‖v‖. Tokens have unit-size random parts orthogonal to v plus a part
    /// Y·γ·v/‖v‖² along it, so a larger head norm gives the same scores with
    /// tokens that share less of one direction (examples compete less).
    pub head_norm: f64,
    /// Seed of the data.
    pub seed: u64,
}

impl Default for MmDataConfig {
    fn default() -> Self {
        MmDataConfig {
            n: 8,
            tokens: 4,
            dim: 32,
            opt_score: 1.0,
            other_score: -1.0,
            score_spread: 0.0,
            head_norm: 3.0,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone)]
/// The toy data set.
pub struct MmData {
    /// Examples.
    pub n: usize,
    /// Tokens per example.
    pub t: usize,
    /// Token dimension.
    pub d: usize,
    /// `[n, T, d]` row-major.
    pub x: Vec<f64>,
    /// Labels ±1 `[n]`.
    pub y: Vec<f64>,
    /// Queries `[n, d]`.
    pub z: Vec<f64>,
    /// The fixed head (norm `head_norm`).
    pub v: Vec<f64>,
    /// Index of the designated optimal token of each example.
    pub opt: Vec<usize>,
}

fn gauss(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f64> {
    (0..n).map(|_| rng.sample::<f64, _>(StandardNormal) * std).collect()
}

impl MmData {
    /// Draw the data set.
    pub fn generate(c: &MmDataConfig) -> MmData {
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        let d = c.dim;
        let mut v = gauss(&mut rng, d, 1.0);
        let nv = norm(&v);
        v.iter_mut().for_each(|a| *a /= nv);
        let vn = c.head_norm;
        let std = 1.0 / (d as f64).sqrt();
        let mut x = Vec::with_capacity(c.n * c.tokens * d);
        let mut y = Vec::with_capacity(c.n);
        let mut opt = Vec::with_capacity(c.n);
        for _ in 0..c.n {
            let label = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
            let o = rng.gen_range(0..c.tokens);
            for t in 0..c.tokens {
                let mut u = gauss(&mut rng, d, std);
                let along = dot(&u, &v);
                let score = if t == o {
                    c.opt_score
                } else if c.score_spread > 0.0 {
                    c.other_score + rng.gen_range(-c.score_spread..c.score_spread)
                } else {
                    c.other_score
                };
                // Remove the random v-part, set the one that gives the score.
                for (ui, vi) in u.iter_mut().zip(&v) {
                    *ui += (label * score / vn - along) * vi;
                }
                x.extend(u);
            }
            y.push(label);
            opt.push(o);
        }
        let z = gauss(&mut rng, c.n * d, std);
        v.iter_mut().for_each(|a| *a *= vn);
        MmData { n: c.n, t: c.tokens, d, x, y, z, v, opt }
    }

    /// Token `t` of example `i`.
    pub fn token(&self, i: usize, t: usize) -> &[f64] {
        let o = (i * self.t + t) * self.d;
        &self.x[o..o + self.d]
    }
    /// Query of example `i`.
    pub fn query(&self, i: usize) -> &[f64] {
        &self.z[i * self.d..(i + 1) * self.d]
    }
    /// Score γ_it = Y_i vᵀx_it for a head `v`.
    pub fn score(&self, v: &[f64], i: usize, t: usize) -> f64 {
        self.y[i] * dot(v, self.token(i, t))
    }

    /// att-SVM constraint rows `k_opt − k_t` for the given selected tokens.
    pub fn p_rows(&self, opt: &[usize]) -> Vec<Vec<f64>> {
        let mut rows = Vec::new();
        for i in 0..self.n {
            let ko = self.token(i, opt[i]);
            for t in (0..self.t).filter(|&t| t != opt[i]) {
                rows.push(ko.iter().zip(self.token(i, t)).map(|(a, b)| a - b).collect());
            }
        }
        rows
    }

    /// W-SVM constraint rows `vec((x_opt − x_t) z_iᵀ)` (row-major d×d).
    pub fn w_rows(&self, opt: &[usize]) -> Vec<Vec<f64>> {
        let mut rows = Vec::new();
        for i in 0..self.n {
            let z = self.query(i);
            let ko = self.token(i, opt[i]);
            for t in (0..self.t).filter(|&t| t != opt[i]) {
                let diff: Vec<f64> = ko.iter().zip(self.token(i, t)).map(|(a, b)| a - b).collect();
                rows.push(diff.iter().flat_map(|a| z.iter().map(move |b| a * b)).collect());
            }
        }
        rows
    }

    /// Classifier SVM rows `Y_i x_{i,opt}` (the joint problem's v_mm).
    pub fn v_rows(&self, opt: &[usize]) -> Vec<Vec<f64>> {
        (0..self.n).map(|i| self.token(i, opt[i]).iter().map(|a| a * self.y[i]).collect()).collect()
    }
}
