//! Seeds as the unit of replication: every seed is fitted on its own
//! ([`super::fit_report`]); the study summarizes per-seed quantities
//! (emergence step, tail exponent) by their mean and a Student-t interval
//! over seeds, and decides "power law supported / not supported /
//! undecided" from the per-seed family comparisons. Checkpoints of
//! different seeds are never pooled as if they were independent points.

use serde::{Deserialize, Serialize};

use super::stats::{mean_std, t_quantile};
use super::{FitModel, FitReport, SeriesFit, Verdict, FAMILY_MARGIN};

/// A per-seed quantity summarized over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedStat {
    /// Seeds that gave a usable value.
    pub n: usize,
    /// Mean over those seeds.
    pub mean: f64,
    /// Standard deviation between seeds.
    pub sd: f64,
    /// Student-t interval of the mean over seeds (NaN with fewer than 2 seeds).
    pub lo: f64,
    /// Upper bound of the interval.
    pub hi: f64,
}

impl SeedStat {
    /// Summary of positive values on a log scale: geometric mean, the
    /// between-seed s.d. of ln v (as a factor e^sd stored in `sd`), and the
    /// Student-t interval of the mean of ln v mapped back (always positive).
    pub fn of_log(v: &[f64], level: f64) -> SeedStat {
        let logs: Vec<f64> = v.iter().filter(|x| x.is_finite() && **x > 0.0).map(|x| x.ln()).collect();
        let s = SeedStat::of(&logs, level);
        SeedStat { n: s.n, mean: s.mean.exp(), sd: s.sd.exp(), lo: s.lo.exp(), hi: s.hi.exp() }
    }
    /// Summary of `v` (non-finite values skipped) at confidence `level`.
    pub fn of(v: &[f64], level: f64) -> SeedStat {
        let vals: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        let (mean, sd) = mean_std(&vals);
        let n = vals.len();
        let (lo, hi) = if n >= 2 && sd.is_finite() {
            let h = t_quantile(0.5 + level / 2.0, (n - 1) as f64) * sd / (n as f64).sqrt();
            (mean - h, mean + h)
        } else {
            (f64::NAN, f64::NAN)
        };
        SeedStat { n, mean, sd, lo, hi }
    }
}

/// The study's verdict on "emergence follows a power law".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyVerdict {
    /// Power-like in most seeds, exponential-like in none, and the summed evidence clears the margin.
    Supported,
    /// Exponential-like in most seeds, power-like in none, and the summed evidence clears the margin.
    NotSupported,
    /// Anything else (including a single seed).
    Undecided,
}

impl StudyVerdict {
    /// Words for the report.
    pub fn words(self) -> &'static str {
        match self {
            StudyVerdict::Supported => "power law supported",
            StudyVerdict::NotSupported => "power law not supported",
            StudyVerdict::Undecided => "undecided",
        }
    }
}

/// One part of the curve (tail or whole) judged over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedTest {
    /// Each seed's family verdict.
    pub verdicts: Vec<Verdict>,
    /// Each seed's adjusted-AICc difference, best exponential-like minus best power-like (> 0 favours power-like).
    pub deltas: Vec<f64>,
    /// Sum of the finite deltas: the AICc difference of the joint model with
    /// separate parameters per seed (seeds are independent).
    pub evidence: f64,
    /// The verdict.
    pub verdict: StudyVerdict,
    /// The verdict's grounds in words.
    pub reason: String,
}

fn seed_test(fits: &[Option<&SeriesFit>]) -> SeedTest {
    let verdicts: Vec<Verdict> = fits.iter().map(|f| f.map(|f| f.verdict).unwrap_or(Verdict::NoFit)).collect();
    let deltas: Vec<f64> = fits.iter().map(|f| f.map(|f| f.family_delta).unwrap_or(f64::NAN)).collect();
    let evidence: f64 = deltas.iter().filter(|d| d.is_finite()).sum();
    let n = fits.len();
    let count = |v: Verdict| verdicts.iter().filter(|&&x| x == v).count();
    let (pl, el, un, nf) =
        (count(Verdict::PowerLike), count(Verdict::ExpLike), count(Verdict::Undecided), count(Verdict::NoFit));
    let tally = format!("{pl} of {n} seeds power-like, {el} exponential-like, {un} undecided, {nf} without a comparison; summed ΔAICc (exponential-like − power-like) {evidence:.1}");
    let (verdict, why) = if n < 2 {
        (StudyVerdict::Undecided, "one seed cannot show that the result reproduces".to_string())
    } else if 2 * pl > n && el == 0 && evidence >= FAMILY_MARGIN {
        (StudyVerdict::Supported, "power-like in a majority of seeds, exponential-like in none".to_string())
    } else if 2 * el > n && pl == 0 && evidence <= -FAMILY_MARGIN {
        (StudyVerdict::NotSupported, "exponential-like in a majority of seeds, power-like in none".to_string())
    } else {
        (StudyVerdict::Undecided, "the seeds do not agree by the margin".to_string())
    };
    SeedTest {
        verdicts,
        deltas,
        evidence,
        verdict,
        reason: format!("{why} ({tally}; a seed needs a margin of {FAMILY_MARGIN})"),
    }
}

/// Every seed's fits and their summary over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSummary {
    /// Number of seeds.
    pub n_seeds: usize,
    /// Confidence level of the intervals over seeds.
    pub level: f64,
    /// Each seed's fits.
    pub per_seed: Vec<FitReport>,
    /// Emergence step over seeds (geometric mean, interval on ln t: always positive).
    pub emergence: SeedStat,
    /// Tail exponent measured from the onset (power_onset α), over the
    /// seeds where the fit is not degenerate and its profile interval is
    /// closed: geometric mean, s.d. factor and t-interval on ln α.
    pub alpha_onset: SeedStat,
    /// Mean Akaike weight of power_onset on the tails (0 where degenerate):
    /// how much the data back the form whose exponent is summarized.
    pub alpha_onset_weight: f64,
    /// Tail exponent with a free time origin (power α), as `alpha_onset`.
    pub alpha_free: SeedStat,
    /// Mean Akaike weight of power on the tails.
    pub alpha_free_weight: f64,
    /// The family test on the tails.
    pub tail: SeedTest,
    /// The family test on the whole curves.
    pub whole: SeedTest,
}

impl SeedSummary {
    /// The study's verdict: the tail test (the claim is about how the
    /// score approaches its final value after onset).
    pub fn verdict(&self) -> StudyVerdict {
        self.tail.verdict
    }
}

/// Summarize per-seed fits over seeds at confidence `level`.
pub fn fit_seeds(per_seed: Vec<FitReport>, level: f64) -> SeedSummary {
    let exponent = |m: FitModel| -> Vec<f64> {
        per_seed
            .iter()
            .map(|r| {
                r.tail
                    .as_ref()
                    .and_then(|t| t.get(m))
                    .and_then(|f| f.exponent())
                    .filter(|e| e.has_interval())
                    .map(|e| e.value)
                    .unwrap_or(f64::NAN)
            })
            .collect()
    };
    let weight = |m: FitModel| -> f64 {
        let w: Vec<f64> = per_seed
            .iter()
            .map(|r| r.tail.as_ref().map(|t| t.get(m).map(|f| f.weight).unwrap_or(0.0)).unwrap_or(f64::NAN))
            .filter(|w| w.is_finite())
            .collect();
        if w.is_empty() {
            f64::NAN
        } else {
            w.iter().sum::<f64>() / w.len() as f64
        }
    };
    let em: Vec<f64> = per_seed.iter().map(|r| r.emergence.map(|e| e.value).unwrap_or(f64::NAN)).collect();
    let tails: Vec<Option<&SeriesFit>> = per_seed.iter().map(|r| r.tail.as_ref()).collect();
    let wholes: Vec<Option<&SeriesFit>> = per_seed.iter().map(|r| r.whole.as_ref()).collect();
    SeedSummary {
        n_seeds: per_seed.len(),
        level,
        emergence: SeedStat::of_log(&em, level),
        alpha_onset: SeedStat::of_log(&exponent(FitModel::PowerOnset), level),
        alpha_onset_weight: weight(FitModel::PowerOnset),
        alpha_free: SeedStat::of_log(&exponent(FitModel::Power), level),
        alpha_free_weight: weight(FitModel::Power),
        tail: seed_test(&tails),
        whole: seed_test(&wholes),
        per_seed,
    }
}
