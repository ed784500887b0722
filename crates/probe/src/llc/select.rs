//! Step-size selection per estimate: a ladder of SGLD step sizes ε (few
//! draws each, from the largest down), the plateau rule of
//! `headlab_analysis::llc_diag::select_step`, then the full estimate at the
//! chosen ε with its diagnostics (flagged "no step-size plateau" when the
//! ladder has none). γ is raised (the next value of `gammas`) only when the
//! ladder at the current γ has no plateau.

use headlab_analysis::llc_diag::{select_step, Flag, LadderPoint, SelectOptions, StepChoice};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{estimate, estimate_quiet, LlcConfig, LlcError, LlcEstimate, LlcProblem, Movable, Progress, Result};

/// The ladder's settings. Every field has a default; a TOML table with any
/// subset of them is accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LadderConfig {
    /// Step sizes tried (any order; run from the largest down).
    pub epsilons: Vec<f64>,
    /// Localization strengths tried in turn, the next only when the ladder
    /// at the previous one has no plateau (empty: the estimate's γ, then 10×).
    pub gammas: Vec<f64>,
    /// Chains per rung.
    pub chains: usize,
    /// Draws per chain per rung.
    pub draws: usize,
    /// Neighbouring rungs agree within this many combined standard errors.
    pub z: f64,
    /// Stop descending once a plateau of this many rungs is found.
    pub stop_after: usize,
}

impl Default for LadderConfig {
    fn default() -> Self {
        LadderConfig {
            // Half decades over four decades: wide enough for the demo model
            // under the frame-NLL convention (plateaus near 1e-7 to 1e-6) and
            // for small problems; rungs above the divergence cost little
            // (their chains stop when they diverge).
            epsilons: vec![1e-8, 3e-8, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4],
            gammas: Vec::new(),
            chains: 4,
            draws: 100,
            z: 2.0,
            stop_after: 3,
        }
    }
}

impl LadderConfig {
    /// Check every field; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(LlcError::Config { key: format!("ladder.{key}"), value, expected: expected.into() })
        };
        if self.epsilons.is_empty() || self.epsilons.iter().any(|e| !(e.is_finite() && *e > 0.0)) {
            return bad("epsilons", format!("{:?}", self.epsilons), "at least one positive step size");
        }
        if self.gammas.iter().any(|g| !(g.is_finite() && *g >= 0.0)) {
            return bad("gammas", format!("{:?}", self.gammas), "localization strengths ≥ 0");
        }
        if self.chains < 2 {
            return bad("chains", self.chains.to_string(), "at least 2 chains (agreement needs a standard error)");
        }
        if self.draws < 8 {
            return bad("draws", self.draws.to_string(), "at least 8 draws per chain");
        }
        if !(self.z.is_finite() && self.z > 0.0) {
            return bad("z", self.z.to_string(), "a positive number of standard errors, e.g. 2");
        }
        if self.stop_after < 2 {
            return bad("stop_after", self.stop_after.to_string(), "at least 2 rungs");
        }
        Ok(())
    }

    /// The γ values to try for an estimate whose own γ is `gamma`.
    pub fn gammas_for(&self, gamma: f64) -> Vec<f64> {
        if self.gammas.is_empty() {
            vec![gamma, 10.0 * gamma]
        } else {
            self.gammas.clone()
        }
    }

    /// Most rungs one selection can run (for storage).
    pub fn max_rungs(&self, gamma: f64) -> usize {
        let mut e = self.epsilons.clone();
        e.sort_by(|a, b| a.total_cmp(b));
        e.dedup();
        e.len() * self.gammas_for(gamma).len()
    }

    /// Most SGLD steps one selection can take (ladder and full estimate),
    /// for progress bars.
    pub fn max_steps(&self, base: &LlcConfig) -> u64 {
        (self.max_rungs(base.gamma) * self.chains * self.draws + base.chains * base.draws) as u64
    }
}

/// An estimate made at a step size chosen on a ladder.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The full estimate at the chosen (ε, γ); its diagnosis carries
    /// [`Flag::NoPlateau`] when the choice was not on a plateau.
    pub estimate: LlcEstimate,
    /// Every rung run, in the order run (γ by γ, ε from the largest down).
    pub ladder: Vec<LadderPoint>,
    /// The choice at the γ used.
    pub choice: StepChoice,
}

/// Run the ladder at one γ, from the largest ε down, stopping once a
/// plateau of `stop_after` rungs is found. Returns the rungs sorted by ε.
fn ladder_at<P: LlcProblem + ?Sized>(
    problem: &P,
    w_star: &[Tensor],
    movable: &[Movable],
    base: &LlcConfig,
    lc: &LadderConfig,
    gamma: f64,
    progress: Progress<'_>,
) -> Result<(Vec<LadderPoint>, StepChoice)> {
    let mut eps = lc.epsilons.clone();
    eps.sort_by(|a, b| b.total_cmp(a));
    eps.dedup();
    let opts = SelectOptions { z: lc.z, min_plateau: 2 };
    let mut rungs: Vec<LadderPoint> = Vec::new();
    let mut choice = select_step(&rungs, &opts);
    for &e in &eps {
        let cfg = LlcConfig {
            epsilon: e,
            gamma,
            chains: lc.chains,
            draws: lc.draws,
            // Rungs use their own streams, apart from the full estimate's.
            seed: (base.seed ^ 0x1add_e500) & i64::MAX as u64,
            ..base.clone()
        };
        let p = match estimate_quiet(problem, w_star, movable, &cfg, progress) {
            Ok(est) => {
                LadderPoint { epsilon: e, gamma, llc: est.llc, se: est.se, n_failed: est.n_failed(), chains: lc.chains }
            }
            Err(LlcError::AllChainsFailed { chains, .. }) => {
                LadderPoint { epsilon: e, gamma, llc: f64::NAN, se: f64::NAN, n_failed: chains, chains }
            }
            Err(err) => return Err(err),
        };
        rungs.insert(0, p);
        choice = select_step(&rungs, &opts);
        if choice.plateau.is_some_and(|(s, end)| end - s + 1 >= lc.stop_after) {
            break;
        }
    }
    Ok((rungs, choice))
}

/// Choose ε (and γ if needed) on a ladder, then estimate with `base`'s
/// chains and draws at the choice (see the module doc). An error only when
/// the problem itself fails, or when no rung of any γ kept all its chains
/// and the full estimate at the smallest ε fails too.
pub fn select_and_estimate<P: LlcProblem + ?Sized>(
    problem: &P,
    w_star: &[Tensor],
    movable: &[Movable],
    base: &LlcConfig,
    lc: &LadderConfig,
    progress: Progress<'_>,
) -> Result<Selected> {
    base.validate()?;
    lc.validate()?;
    let mut all = Vec::new();
    let mut first: Option<(Vec<LadderPoint>, StepChoice)> = None;
    let mut used: Option<(Vec<LadderPoint>, StepChoice)> = None;
    for g in lc.gammas_for(base.gamma) {
        let (rungs, choice) = ladder_at(problem, w_star, movable, base, lc, g, progress)?;
        all.extend(rungs.iter().rev().cloned());
        if choice.reliable {
            used = Some((rungs, choice));
            break;
        }
        first.get_or_insert((rungs, choice));
    }
    // Without a plateau anywhere: the first γ's best available step.
    let (rungs, choice) = match used.or(first) {
        Some(x) => x,
        None => return Err(LlcError::Problem("the ladder has no γ to try".into())),
    };
    let (epsilon, gamma) = match choice.chosen {
        Some(i) => (rungs[i].epsilon, rungs[i].gamma),
        // Every rung failed: the smallest step at the first γ, flagged.
        None => (rungs.first().map_or(base.epsilon, |p| p.epsilon), rungs.first().map_or(base.gamma, |p| p.gamma)),
    };
    let cfg = LlcConfig { epsilon, gamma, ..base.clone() };
    let mut est = estimate(problem, w_star, movable, &cfg, progress)?;
    if !choice.reliable {
        est.diagnosis.flags.insert(0, Flag::NoPlateau);
        est.warnings.insert(0, format!("{} — {}", Flag::NoPlateau.reason(), choice.reason));
    }
    Ok(Selected { estimate: est, ladder: all, choice })
}
