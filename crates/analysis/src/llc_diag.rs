//! Judging LLC estimates: step-size selection on a ladder of SGLD step
//! sizes, per-estimate diagnostics (failed chains, loss-trace drift, split
//! R̂, burn-in), and the reliability flags stored in `RUN/llc.h5` and shown
//! by the CLI and the report. Pure arithmetic on the sampler's outputs (no
//! libtorch), so that it is unit-tested on synthetic ladders and traces.
//!
//! # Step-size selection
//!
//! An SGLD estimate is only trustworthy where it does not depend on the step
//! size ε: too small a step and the chains have not moved far enough in the
//! draws given (the estimate still rises with ε); too large a step and the
//! discretization bias grows until chains diverge. [`select_step`] takes a
//! ladder of estimates at increasing ε (few draws each) and looks for a
//! *plateau*: consecutive step sizes, below the smallest one at which any
//! chain failed, whose estimates agree pairwise with their neighbours within
//! `z` combined standard errors, and whose two ends agree too (so that a
//! slow, steady rise is not mistaken for a plateau). The largest ε of the
//! longest plateau is chosen. Without a plateau the best available ε is
//! still returned, but the choice is marked unreliable, and every estimate
//! made with it carries [`Flag::NoPlateau`].
//!
//! # Diagnostics
//!
//! [`diagnose`] reads the per-chain traces of nβ·(L_B(w_t) − L_B(w*)) (block
//! means, burn-in included) and flags: failed chains, a negative estimate, a
//! loss that keeps falling under SGLD (the checkpoint is not a local minimum:
//! the last quarter of the post-burn-in draws lies significantly below the
//! first, or the loss over the last quarter lies significantly below the
//! checkpoint's), a loss still rising (burn-in too short), and chains that
//! disagree (split R̂ above [`RHAT_MAX`]). "Significantly" is a z-test over
//! chains (the chains are independent); with a single chain only the size of
//! the change is judged.

use crate::fit::stats::mean_std;

/// Largest split R̂ accepted (Gelman et al., 3rd ed.: 1.1).
pub const RHAT_MAX: f64 = 1.1;

/// One rung of a step-size ladder: an estimate with few draws.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderPoint {
    /// SGLD step size ε.
    pub epsilon: f64,
    /// Localization strength γ.
    pub gamma: f64,
    /// Estimate (mean over the good chains; NaN when all failed).
    pub llc: f64,
    /// Its standard error over chains (NaN with one good chain).
    pub se: f64,
    /// Chains that failed (diverged or non-finite).
    pub n_failed: usize,
    /// Chains run.
    pub chains: usize,
}

/// How [`select_step`] judges agreement.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectOptions {
    /// Neighbours agree when they differ by at most `z` combined standard errors.
    pub z: f64,
    /// Fewest step sizes that make a plateau.
    pub min_plateau: usize,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions { z: 2.0, min_plateau: 2 }
    }
}

/// The outcome of [`select_step`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepChoice {
    /// Index (into the ladder, sorted by ε) of the chosen step; `None` when
    /// no rung was usable (every rung had failed chains).
    pub chosen: Option<usize>,
    /// Index range (inclusive) of the plateau the choice lies on.
    pub plateau: Option<(usize, usize)>,
    /// Whether the choice lies on a plateau.
    pub reliable: bool,
    /// Why this choice (or why none), in words.
    pub reason: String,
}

/// Whether two rungs agree within `z` combined standard errors. A missing
/// standard error (one chain) never agrees: without an error bar agreement
/// cannot be judged.
fn agree(a: &LadderPoint, b: &LadderPoint, z: f64) -> bool {
    let se = (a.se * a.se + b.se * b.se).sqrt();
    se.is_finite() && (a.llc - b.llc).abs() <= z * se
}

fn usable(p: &LadderPoint) -> bool {
    p.n_failed == 0 && p.llc.is_finite()
}

/// Choose a step size from a ladder of estimates at one γ (see the module
/// doc). `ladder` must be sorted by increasing ε; the returned indices refer
/// to it.
pub fn select_step(ladder: &[LadderPoint], opts: &SelectOptions) -> StepChoice {
    // Only step sizes below the first one with a failed chain qualify.
    let limit = ladder.iter().position(|p| p.n_failed > 0).unwrap_or(ladder.len());
    let mut best: Option<(usize, usize)> = None;
    let mut start = 0;
    while start < limit {
        if !usable(&ladder[start]) {
            start += 1;
            continue;
        }
        let mut end = start;
        while end + 1 < limit
            && usable(&ladder[end + 1])
            && agree(&ladder[end], &ladder[end + 1], opts.z)
            && agree(&ladder[start], &ladder[end + 1], opts.z)
        {
            end += 1;
        }
        let len = end - start + 1;
        // Longest wins; a tie goes to the larger step sizes (later runs).
        if len >= opts.min_plateau && best.is_none_or(|(s, e)| len > e - s) {
            best = Some((start, end));
        }
        start = if end > start { end } else { start + 1 };
    }
    let eps = |i: usize| ladder[i].epsilon;
    let failed_note =
        if limit < ladder.len() { format!("; chains failed from ε = {:e} on", eps(limit)) } else { String::new() };
    match best {
        Some((s, e)) => StepChoice {
            chosen: Some(e),
            plateau: Some((s, e)),
            reliable: true,
            reason: format!(
                "estimates agree within {} s.e. for ε from {:e} to {:e} ({} step sizes, {:.3} to {:.3}){failed_note}; \
                 the largest, ε = {:e}, is used",
                opts.z,
                eps(s),
                eps(e),
                e - s + 1,
                ladder[s].llc,
                ladder[e].llc,
                eps(e)
            ),
        },
        None => {
            // The best available: the largest usable step below the first failure.
            let fallback = (0..limit).rev().find(|&i| usable(&ladder[i]));
            let values: Vec<String> = ladder
                .iter()
                .map(|p| format!("{:e}: {:.3} ± {:.3} ({} failed)", p.epsilon, p.llc, p.se, p.n_failed))
                .collect();
            StepChoice {
                chosen: fallback,
                plateau: None,
                reliable: false,
                reason: format!(
                    "no step-size plateau: no {} neighbouring step sizes agree within {} s.e. ({}){failed_note}",
                    opts.min_plateau,
                    opts.z,
                    values.join(", ")
                ),
            }
        }
    }
}

/// Why an estimate is not to be trusted as it stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Flag {
    /// No step-size plateau on the ladder: the value depends on ε.
    NoPlateau,
    /// Some chains failed at the chosen ε (excluded from the estimate).
    Diverged {
        /// Chains that failed.
        failed: usize,
        /// Chains run.
        chains: usize,
    },
    /// The estimate is negative: SGLD found lower loss than at w*.
    Negative {
        /// The estimate.
        llc: f64,
        /// Its standard error.
        se: f64,
    },
    /// The loss keeps falling under SGLD: the checkpoint is not a local minimum.
    NotAMinimum {
        /// What showed it, in words.
        evidence: String,
    },
    /// nβ·ΔL still rises after burn-in: the chains have not settled.
    NotSettled {
        /// Rise between the first and last quarter of the post-burn-in draws.
        rise: f64,
        /// Its z-score over chains (NaN with one chain).
        z: f64,
    },
    /// The chains disagree with each other (split R̂ too large).
    ChainsDisagree {
        /// Split R̂.
        rhat: f64,
    },
}

impl Flag {
    /// Short code, as stored (`flags` bit set) and shown in tables.
    pub fn code(&self) -> &'static str {
        match self {
            Flag::NoPlateau => "no-plateau",
            Flag::Diverged { .. } => "diverged",
            Flag::Negative { .. } => "negative",
            Flag::NotAMinimum { .. } => "not-minimum",
            Flag::NotSettled { .. } => "not-settled",
            Flag::ChainsDisagree { .. } => "rhat",
        }
    }
    /// The bit of this flag in the stored `flags` column.
    pub fn bit(&self) -> u32 {
        match self {
            Flag::NoPlateau => 1,
            Flag::Diverged { .. } => 2,
            Flag::Negative { .. } => 4,
            Flag::NotAMinimum { .. } => 8,
            Flag::NotSettled { .. } => 16,
            Flag::ChainsDisagree { .. } => 32,
        }
    }
    /// The reason in words.
    pub fn reason(&self) -> String {
        match self {
            Flag::NoPlateau => "unreliable: no step-size plateau (the estimate depends on the SGLD step size)".into(),
            Flag::Diverged { failed, chains } => {
                format!("{failed} of {chains} chains diverged at the chosen step size (excluded)")
            }
            Flag::Negative { llc, se } => format!(
                "negative estimate {llc:.3} ± {se:.3}: SGLD found lower loss than at the checkpoint, so it is not at \
                 a local minimum and the LLC there is not meaningful"
            ),
            Flag::NotAMinimum { evidence } => {
                format!("the checkpoint is not at a local minimum of the loss: {evidence}")
            }
            Flag::NotSettled { rise, z } => {
                format!("nβ·ΔL still rises after burn-in (by {rise:.3}, z = {z:.1}): burn-in too short")
            }
            Flag::ChainsDisagree { rhat } => format!("chains disagree: split R̂ = {rhat:.3} > {RHAT_MAX}"),
        }
    }
}

/// The codes of the bits set in a stored `flags` value, comma-separated
/// ("" when none).
pub fn flag_codes(bits: u32) -> String {
    const CODES: [(u32, &str); 6] =
        [(1, "no-plateau"), (2, "diverged"), (4, "negative"), (8, "not-minimum"), (16, "not-settled"), (32, "rhat")];
    CODES.iter().filter(|(b, _)| bits & b != 0).map(|(_, c)| *c).collect::<Vec<_>>().join(",")
}

/// What [`diagnose`] reads.
#[derive(Debug, Clone)]
pub struct DiagInput<'a> {
    /// The estimate (mean over good chains).
    pub llc: f64,
    /// Its standard error over chains.
    pub se: f64,
    /// Per chain, block means of nβ·ΔL over all draws (burn-in included);
    /// a failed chain's trace holds NaN from its failure on.
    pub delta_trace: &'a [Vec<f64>],
    /// Trace points that belong to the burn-in.
    pub burn_in_points: usize,
    /// Chains that failed.
    pub n_failed: usize,
    /// Whether the step size came from a plateau (`false` adds
    /// [`Flag::NoPlateau`]); `None` when no ladder was run.
    pub plateau: Option<bool>,
}

/// The diagnostics of one estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    /// Split R̂ over the good chains' post-burn-in traces (NaN if undefined).
    pub rhat: f64,
    /// Mean over good chains of (last quarter − first quarter) of the
    /// post-burn-in nβ·ΔL.
    pub drift: f64,
    /// z-score of `drift` over chains (NaN with fewer than two chains).
    pub drift_z: f64,
    /// Mean nβ·ΔL over the last quarter of the post-burn-in draws.
    pub tail_mean: f64,
    /// z-score of `tail_mean` over chains.
    pub tail_z: f64,
    /// Every flag raised.
    pub flags: Vec<Flag>,
}

impl Diagnosis {
    /// No flag raised.
    pub fn reliable(&self) -> bool {
        self.flags.is_empty()
    }
    /// The stored bit set.
    pub fn bits(&self) -> u32 {
        self.flags.iter().fold(0, |b, f| b | f.bit())
    }
    /// The flags' codes, comma-separated ("" when reliable).
    pub fn codes(&self) -> String {
        flag_codes(self.bits())
    }
    /// Every reason, one per line.
    pub fn reasons(&self) -> Vec<String> {
        self.flags.iter().map(Flag::reason).collect()
    }
}

/// Split R̂ (Gelman et al., BDA3 §11.4) of equally long traces: each is cut
/// in halves, R̂ = sqrt(var⁺ / W). NaN with fewer than 4 points per trace or
/// no within-chain variance.
pub fn split_rhat(traces: &[&[f64]]) -> f64 {
    let n = traces.iter().map(|t| t.len()).min().unwrap_or(0) / 2;
    if n < 2 || traces.is_empty() {
        return f64::NAN;
    }
    let halves: Vec<&[f64]> = traces.iter().flat_map(|t| [&t[..n], &t[n..2 * n]]).collect();
    let means: Vec<f64> = halves.iter().map(|h| h.iter().sum::<f64>() / n as f64).collect();
    let w = halves
        .iter()
        .zip(&means)
        .map(|(h, m)| h.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64)
        .sum::<f64>()
        / halves.len() as f64;
    let grand = means.iter().sum::<f64>() / means.len() as f64;
    let b = n as f64 * means.iter().map(|m| (m - grand).powi(2)).sum::<f64>() / (means.len() - 1) as f64;
    let var_plus = (n - 1) as f64 / n as f64 * w + b / n as f64;
    if w > 0.0 {
        (var_plus / w).sqrt()
    } else {
        f64::NAN
    }
}

/// Mean over chains and its z-score (mean / standard error over chains; NaN
/// with fewer than two values).
fn z_over_chains(v: &[f64]) -> (f64, f64) {
    let (m, s) = mean_std(v);
    let z = if v.len() > 1 && s > 0.0 {
        m / (s / (v.len() as f64).sqrt())
    } else if v.len() > 1 {
        m.signum() * f64::INFINITY
    } else {
        f64::NAN
    };
    (m, z)
}

/// Diagnose one estimate (see the module doc). A change counts when it is
/// significant (|z| > 3 over chains; always, with one chain) and larger than
/// a tenth of |estimate| (at least 1e-3).
pub fn diagnose(inp: &DiagInput<'_>) -> Diagnosis {
    let mut flags = Vec::new();
    if inp.plateau == Some(false) {
        flags.push(Flag::NoPlateau);
    }
    let chains = inp.delta_trace.len();
    if inp.n_failed > 0 {
        flags.push(Flag::Diverged { failed: inp.n_failed, chains });
    }
    let post: Vec<&[f64]> = inp
        .delta_trace
        .iter()
        .filter(|t| t.iter().all(|x| x.is_finite()))
        .map(|t| &t[inp.burn_in_points.min(t.len())..])
        .collect();
    let rhat = split_rhat(&post);
    let q = post.iter().map(|t| t.len()).min().unwrap_or(0) / 4;
    let (mut drift, mut drift_z, mut tail_mean, mut tail_z) = (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    if q >= 1 {
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        let d: Vec<f64> = post.iter().map(|t| mean(&t[t.len() - q..]) - mean(&t[..q])).collect();
        let tails: Vec<f64> = post.iter().map(|t| mean(&t[t.len() - q..])).collect();
        (drift, drift_z) = z_over_chains(&d);
        (tail_mean, tail_z) = z_over_chains(&tails);
    }
    let scale = (0.1 * inp.llc.abs()).max(1e-3);
    let significant = |z: f64| z.is_nan() || z.abs() > 3.0;
    if inp.llc < 0.0 {
        flags.push(Flag::Negative { llc: inp.llc, se: inp.se });
    }
    let mut evidence = Vec::new();
    if drift < -scale && significant(drift_z) {
        evidence.push(format!(
            "nβ·ΔL falls by {:.3} from the first to the last quarter of the post-burn-in draws (z = {drift_z:.1})",
            -drift
        ));
    }
    if tail_mean < 0.0 && significant(tail_z) && -tail_mean > 1e-3 {
        evidence.push(format!(
            "over the last quarter of the draws the loss lies below the checkpoint's (nβ·ΔL = {tail_mean:.3}, z = \
             {tail_z:.1})"
        ));
    }
    if !evidence.is_empty() {
        flags.push(Flag::NotAMinimum { evidence: evidence.join("; ") });
    }
    if drift > scale && significant(drift_z) {
        flags.push(Flag::NotSettled { rise: drift, z: drift_z });
    }
    if rhat > RHAT_MAX {
        flags.push(Flag::ChainsDisagree { rhat });
    }
    Diagnosis { rhat, drift, drift_z, tail_mean, tail_z, flags }
}

/// How an LLC series changes across the emergence of collision heads, over
/// seeds: per seed the difference (after − before) between the mean
/// reliable estimate on checkpoints before and after the emergence step.
#[derive(Debug, Clone, PartialEq)]
pub struct EmergenceChange {
    /// Seeds with a reliable estimate on both sides.
    pub n_seeds: usize,
    /// Per seed (in order; NaN where a side has no reliable estimate).
    pub per_seed: Vec<f64>,
    /// Mean of the per-seed differences.
    pub mean: f64,
    /// Student-t interval of the mean over seeds at `level` (NaN with fewer than 2 seeds).
    pub interval: (f64, f64),
    /// The confidence level.
    pub level: f64,
}

/// One seed's LLC series for [`emergence_change`]: steps, estimates,
/// reliable (no flag) per estimate, and the seed's emergence step.
pub type SeedSeries<'a> = (&'a [f64], &'a [f64], &'a [bool], f64);

/// Summarize, over seeds, the change of the LLC across emergence. Each
/// seed gives (steps, llc, reliable) and its emergence step; estimates
/// before the step and at or after it are averaged separately (only
/// reliable ones).
pub fn emergence_change(seeds: &[SeedSeries<'_>], level: f64) -> EmergenceChange {
    let per_seed: Vec<f64> = seeds
        .iter()
        .map(|(t, v, ok, t_e)| {
            let side = |after: bool| {
                let vals: Vec<f64> = (0..t.len())
                    .filter(|&i| ok[i] && v[i].is_finite() && ((t[i] >= *t_e) == after))
                    .map(|i| v[i])
                    .collect();
                if vals.is_empty() {
                    f64::NAN
                } else {
                    vals.iter().sum::<f64>() / vals.len() as f64
                }
            };
            side(true) - side(false)
        })
        .collect();
    let good: Vec<f64> = per_seed.iter().copied().filter(|x| x.is_finite()).collect();
    let (mean, sd) = mean_std(&good);
    let interval = if good.len() >= 2 {
        let tq = crate::fit::stats::t_quantile(0.5 + level / 2.0, (good.len() - 1) as f64);
        let h = tq * sd / (good.len() as f64).sqrt();
        (mean - h, mean + h)
    } else {
        (f64::NAN, f64::NAN)
    };
    EmergenceChange { n_seeds: good.len(), per_seed, mean, interval, level }
}

/// The emergence step of a score series: the first step at which the score
/// has covered half of its rise from the first checkpoint to the mean of
/// the last three (non-parametric, so it exists whatever the fit). `None`
/// when the score does not rise or has fewer than 4 finite values.
pub fn half_rise_step(steps: &[u64], score: &[f64]) -> Option<u64> {
    let pts: Vec<(u64, f64)> = steps.iter().zip(score).filter(|p| p.1.is_finite()).map(|(&s, &v)| (s, v)).collect();
    if pts.len() < 4 {
        return None;
    }
    let start = pts[0].1;
    let end = pts[pts.len() - 3..].iter().map(|p| p.1).sum::<f64>() / 3.0;
    if end <= start {
        return None;
    }
    let half = start + 0.5 * (end - start);
    pts.iter().find(|p| p.1 >= half).map(|p| p.0)
}

/// Up to `k` checkpoints around an emergence step `t_e`: the ones nearest
/// to t_e × 4^(j/(k−1)·2 − 1) for j = 0..k (from t_e/4 to 4·t_e, log-spaced),
/// without repeats, increasing.
pub fn emergence_checkpoints(steps: &[u64], t_e: u64, k: usize) -> Vec<u64> {
    if steps.is_empty() || k == 0 {
        return Vec::new();
    }
    let te = (t_e.max(1)) as f64;
    let mut out: Vec<u64> = (0..k)
        .map(|j| {
            let f = if k == 1 { 0.0 } else { 2.0 * j as f64 / (k - 1) as f64 - 1.0 };
            let target = (te * 4f64.powf(f)).ln();
            *steps
                .iter()
                .min_by(|a, b| {
                    let da = ((**a).max(1) as f64).ln() - target;
                    let db = ((**b).max(1) as f64).ln() - target;
                    da.abs().total_cmp(&db.abs())
                })
                .unwrap_or(&steps[0])
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn ladder(vals: &[(f64, f64, f64, usize)]) -> Vec<LadderPoint> {
        vals.iter()
            .map(|&(epsilon, llc, se, n_failed)| LadderPoint { epsilon, gamma: 1000.0, llc, se, n_failed, chains: 4 })
            .collect()
    }

    #[test]
    fn plateau_below_divergence_is_chosen() {
        // Rising at small ε (not mixed), flat in the middle, a chain fails at the top.
        let l = ladder(&[
            (1e-7, 20.0, 1.0, 0),
            (3e-7, 45.0, 2.0, 0),
            (1e-6, 60.0, 3.0, 0),
            (3e-6, 62.0, 3.0, 0),
            (1e-5, 64.0, 3.0, 0),
            (3e-5, 90.0, 5.0, 1),
        ]);
        let c = select_step(&l, &SelectOptions::default());
        assert_eq!(c.plateau, Some((2, 4)), "{}", c.reason);
        assert_eq!(c.chosen, Some(4));
        assert!(c.reliable);
    }

    #[test]
    fn step_dependent_estimate_has_no_plateau() {
        // The late checkpoint: 340, 560, 870 at 1e-5, 2e-5, 3e-5, divergence at 1e-4.
        let l = ladder(&[
            (1e-5, 340.0, 20.0, 0),
            (2e-5, 560.0, 25.0, 0),
            (3e-5, 870.0, 40.0, 0),
            (1e-4, f64::NAN, f64::NAN, 4),
        ]);
        let c = select_step(&l, &SelectOptions::default());
        assert!(!c.reliable);
        assert_eq!(c.plateau, None);
        assert_eq!(c.chosen, Some(2), "best available is the largest stable step");
        assert!(c.reason.contains("no step-size plateau"), "{}", c.reason);
        // Flagged when diagnosed.
        let traces = vec![vec![870.0; 8]; 4];
        let d = diagnose(&DiagInput {
            llc: 870.0,
            se: 40.0,
            delta_trace: &traces,
            burn_in_points: 2,
            n_failed: 0,
            plateau: Some(c.reliable),
        });
        assert!(!d.reliable());
        assert_eq!(d.codes(), "no-plateau");
    }

    #[test]
    fn slow_steady_rise_is_not_a_plateau() {
        // Each neighbour within 2 s.e., but the ends far apart.
        let l = ladder(&[(1e-6, 100.0, 4.0, 0), (2e-6, 110.0, 4.0, 0), (4e-6, 120.0, 4.0, 0), (8e-6, 130.0, 4.0, 0)]);
        let c = select_step(&l, &SelectOptions::default());
        // Runs of two agreeing neighbours exist; none spans the whole ladder.
        let (s, e) = c.plateau.unwrap();
        assert_eq!(e - s, 1, "{}", c.reason);
        assert_eq!(c.chosen, Some(3));
    }

    #[test]
    fn everything_failed_gives_no_choice() {
        let l = ladder(&[(1e-5, f64::NAN, f64::NAN, 4), (1e-4, f64::NAN, f64::NAN, 4)]);
        let c = select_step(&l, &SelectOptions::default());
        assert_eq!(c.chosen, None);
        assert!(!c.reliable);
    }

    #[test]
    fn one_chain_cannot_make_a_plateau() {
        let l: Vec<LadderPoint> = ladder(&[(1e-6, 5.0, f64::NAN, 0), (2e-6, 5.0, f64::NAN, 0)])
            .into_iter()
            .map(|p| LadderPoint { chains: 1, ..p })
            .collect();
        assert!(!select_step(&l, &SelectOptions::default()).reliable);
    }

    /// AR(1) traces around `level + slope·t`.
    fn traces(chains: usize, len: usize, level: f64, slope: f64, noise: f64, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..chains)
            .map(|_| {
                let mut e = 0.0;
                (0..len)
                    .map(|t| {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        e = 0.5 * e + noise * z;
                        level + slope * t as f64 + e
                    })
                    .collect()
            })
            .collect()
    }

    fn diag(tr: &[Vec<f64>], n_failed: usize) -> Diagnosis {
        let burn = tr[0].len() / 4;
        let vals: Vec<f64> = tr.iter().map(|t| t[burn..].iter().sum::<f64>() / (t.len() - burn) as f64).collect();
        let (m, s) = mean_std(&vals);
        diagnose(&DiagInput {
            llc: m,
            se: s / (vals.len() as f64).sqrt(),
            delta_trace: tr,
            burn_in_points: burn,
            n_failed,
            plateau: Some(true),
        })
    }

    #[test]
    fn stationary_chains_at_a_minimum_pass() {
        let mut false_flags = 0;
        for seed in 0..20 {
            let d = diag(&traces(4, 400, 50.0, 0.0, 5.0, seed), 0);
            if !d.reliable() {
                false_flags += 1;
            }
            assert!(d.rhat < 1.1, "{d:?}");
        }
        assert!(false_flags <= 1, "{false_flags} of 20 stationary cases flagged");
    }

    #[test]
    fn checkpoint_away_from_a_minimum_is_flagged() {
        // The loss keeps falling under SGLD: nβ·ΔL slides from 0 to -60.
        let d = diag(&traces(4, 400, 0.0, -0.15, 5.0, 1), 0);
        assert!(d.flags.iter().any(|f| matches!(f, Flag::NotAMinimum { .. })), "{d:?}");
        assert!(d.flags.iter().any(|f| matches!(f, Flag::Negative { .. })), "{d:?}");
        assert!(d.drift < 0.0 && d.drift_z < -3.0);
        // Falling, yet still positive on average: not a minimum all the same.
        let d = diag(&traces(4, 400, 80.0, -0.1, 3.0, 2), 0);
        assert!(d.flags.iter().any(|f| matches!(f, Flag::NotAMinimum { .. })), "{d:?}");
        assert!(!d.flags.iter().any(|f| matches!(f, Flag::Negative { .. })));
    }

    #[test]
    fn rising_chains_are_not_settled_and_disagreeing_chains_raise_rhat() {
        let d = diag(&traces(4, 400, 10.0, 0.2, 3.0, 3), 0);
        assert!(d.flags.iter().any(|f| matches!(f, Flag::NotSettled { .. })), "{d:?}");
        // Two chains stuck at different levels.
        let mut tr = traces(2, 400, 50.0, 0.0, 2.0, 4);
        tr.extend(traces(2, 400, 80.0, 0.0, 2.0, 5));
        let d = diag(&tr, 0);
        assert!(d.rhat > RHAT_MAX, "{d:?}");
        assert!(d.codes().contains("rhat"));
    }

    #[test]
    fn failed_chains_are_flagged_and_ignored_in_the_traces() {
        let mut tr = traces(4, 400, 50.0, 0.0, 5.0, 6);
        for x in &mut tr[3][200..] {
            *x = f64::NAN;
        }
        let d = diag(&tr[..3], 1);
        assert_eq!(d.codes(), "diverged");
        let d = diagnose(&DiagInput {
            llc: 50.0,
            se: 1.0,
            delta_trace: &tr,
            burn_in_points: 100,
            n_failed: 1,
            plateau: None,
        });
        assert!(d.rhat.is_finite() && d.rhat < 1.1);
    }

    #[test]
    fn split_rhat_known_values() {
        // Identical halves with equal spread: R̂ = sqrt((n-1)/n).
        let a = [0.0, 1.0, 0.0, 1.0];
        let r = split_rhat(&[&a, &a]);
        assert!((r - (0.5f64).sqrt()).abs() < 1e-12, "{r}");
        assert!(split_rhat(&[&[1.0, 2.0]]).is_nan());
    }

    #[test]
    fn emergence_window() {
        let steps: Vec<u64> = (0..40).map(|k| (10.0 * 1.2f64.powi(k)) as u64).collect();
        // A sigmoid in log step, rising from 0.1 to 0.9 around step 300.
        let score: Vec<f64> = steps.iter().map(|&t| 0.1 + 0.8 / (1.0 + (300.0 / t as f64).powi(4))).collect();
        let te = half_rise_step(&steps, &score).unwrap();
        assert!((250..=400).contains(&te), "{te}");
        let ck = emergence_checkpoints(&steps, te, 5);
        assert_eq!(ck.len(), 5);
        assert!(ck[0] * 3 < te && ck[4] > 3 * te, "{ck:?} around {te}");
        assert!(ck.contains(&te));
        assert!(half_rise_step(&steps, &vec![0.5; steps.len()]).is_none());
        // Fewer checkpoints than asked: no repeats.
        assert_eq!(emergence_checkpoints(&[100, 200], 150, 5), vec![100, 200]);
    }

    #[test]
    fn emergence_change_over_seeds() {
        let t = [100.0, 200.0, 400.0, 800.0];
        let ok = [true; 4];
        let s1 = [10.0, 12.0, 30.0, 32.0];
        let s2 = [11.0, 13.0, 29.0, 35.0];
        let s3 = [9.0, 11.0, 31.0, 33.0];
        let c = emergence_change(&[(&t, &s1, &ok, 300.0), (&t, &s2, &ok, 300.0), (&t, &s3, &ok, 300.0)], 0.95);
        assert_eq!(c.n_seeds, 3);
        assert!((c.per_seed[0] - 20.0).abs() < 1e-12);
        assert!(c.interval.0 > 0.0 && c.interval.0 < c.mean && c.mean < c.interval.1);
        // Unreliable estimates do not count; a seed without one side drops out.
        let bad = [false, false, true, true];
        let c = emergence_change(&[(&t, &s1, &bad, 300.0), (&t, &s2, &ok, 300.0)], 0.95);
        assert_eq!(c.n_seeds, 1);
        assert!(c.per_seed[0].is_nan() && c.interval.0.is_nan());
    }
}
