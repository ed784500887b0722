//! Which heads of a probed run are its collision heads, whether they meet
//! the collision-head bar, and what they encode, in the terms of the
//! non-learned baselines ([`crate::baselines`]).
//!
//! The bar ([`bar`]) is defined so that distance alone cannot pass it: a
//! head must put its off-self attention on contact partners (the
//! self-excluded score) *and* know something about contact that distance
//! does not (the distance-matched AUROC). Heads whose scores lie within one
//! standard error of the highest are a tie ([`tied_top`]): they are named
//! together, never ranked.

use std::path::{Path, PathBuf};

use headlab_store::analysis::Analysis;
use headlab_store::series::SeriesKey;

use crate::baselines::{floor_ceiling, Baseline};
use crate::metrics::{merge_sparse_bins, G_MIN_PAIRS};

/// Path of a run's analysis file.
pub fn analysis_path(run_dir: &Path) -> PathBuf {
    run_dir.join("analysis.h5")
}

/// The collision-head bar, in one place: every verdict, headline and test
/// uses these constants and [`meets_bar`] / [`bar_text`].
///
/// - [`bar::SCORE_MIN`]: half of the off-self attention (above chance) on
///   the partners the query overlaps. Geometry passes this easily (softmax
///   of minus distance scores ≈ 0.9 on the demo), so it is necessary, not
///   sufficient.
/// - [`bar::MATCHED_AUROC_MIN`]: at matched distance, a random contact pair
///   outranks a random non-contact pair 3 times in 4. Distance alone sits at
///   0.5 by construction (≈ 0.5 measured); the ballistic ceiling on the demo
///   is ≈ 0.97. 0.75 is halfway from knowing nothing beyond distance to
///   knowing contact perfectly, the conventional "acceptable discrimination"
///   level, and ~0.2 above the distance floor, many standard errors (≈ 0.01
///   on 128 evaluation frames) away from it.
pub mod bar {
    /// Minimum self-excluded normalized collision score (overlap partners).
    pub const SCORE_MIN: f64 = 0.5;
    /// Minimum distance-matched AUROC of a'_ij for contact in the interval.
    pub const MATCHED_AUROC_MIN: f64 = 0.75;
}

/// Whether a head with this self-excluded score and distance-matched AUROC
/// meets the collision-head bar ([`bar`]). NaN never passes.
pub fn meets_bar(score: f64, matched_auroc: f64) -> bool {
    score >= bar::SCORE_MIN && matched_auroc >= bar::MATCHED_AUROC_MIN
}

/// The bar in words, for headlines and tables.
pub fn bar_text() -> String {
    format!("self-excluded score ≥ {} and distance-matched AUROC ≥ {}", bar::SCORE_MIN, bar::MATCHED_AUROC_MIN)
}

/// Thresholds that put a head's distance-controlled measures into words
/// ([`Encoding`]).
pub mod encodes {
    /// Approach selectivity (0.5 = none) from which a head "prefers
    /// approaching pairs".
    pub const APPROACH_MIN: f64 = 0.6;
    /// Matched AUROC from which a head knows "something beyond distance".
    pub const BEYOND_DISTANCE_MIN: f64 = 0.6;
    /// Position between floor and ceiling from which a head is "at the
    /// ballistic level".
    pub const BALLISTIC_MIN: f64 = 0.9;
    /// Position above which a head knows more than straight-line motion.
    pub const BEYOND_BALLISTIC: f64 = 1.0;
}

/// What a head's attention encodes about contact, in baseline terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Not measurable (no contacts, no baselines, NaN).
    Unknown,
    /// No preference for contact partners beyond what chance gives.
    Nothing,
    /// Attends to near pairs; at matched distance it knows little more.
    Proximity,
    /// Near pairs, and at matched distance the approaching ones.
    ProximityAndApproach,
    /// As good as straight-line extrapolation of positions and velocities.
    Ballistic,
    /// Better than straight-line extrapolation.
    BeyondBallistic,
}

impl Encoding {
    /// Classify from the score, matched AUROC, approach selectivity and
    /// position between the floor and the ceiling ([`encodes`]).
    pub fn classify(score: f64, matched: f64, approach: f64, position: f64) -> Encoding {
        use encodes::*;
        if !score.is_finite() || !matched.is_finite() {
            return Encoding::Unknown;
        }
        if position.is_finite() && position > BEYOND_BALLISTIC {
            Encoding::BeyondBallistic
        } else if position.is_finite() && position >= BALLISTIC_MIN {
            Encoding::Ballistic
        } else if approach >= APPROACH_MIN || matched >= BEYOND_DISTANCE_MIN {
            Encoding::ProximityAndApproach
        } else if score > 0.0 {
            Encoding::Proximity
        } else {
            Encoding::Nothing
        }
    }
    /// In words.
    pub fn text(self) -> &'static str {
        match self {
            Encoding::Unknown => "cannot be said (a measure is missing)",
            Encoding::Nothing => "no preference for contact partners",
            Encoding::Proximity => "proximity only",
            Encoding::ProximityAndApproach => "proximity and approach",
            Encoding::Ballistic => "ballistic-level contact prediction",
            Encoding::BeyondBallistic => "more than ballistic extrapolation",
        }
    }
}

/// Where g(r) peaks, on bins holding enough pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GPeak {
    /// Lower edge (contact distances) of the part of the bin that holds pairs.
    pub lo: f32,
    /// Upper edge.
    pub hi: f32,
    /// Self-excluded g there.
    pub g: f64,
    /// Pairs in the (merged) bin.
    pub count: u64,
}

/// One head's standing at a step.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadSummary {
    /// Layer.
    pub layer: usize,
    /// Head.
    pub head: usize,
    /// Self-excluded normalized score (overlap partners).
    pub score: f64,
    /// Its standard error over queries (spread / √queries).
    pub score_se: f64,
    /// AUROC of a_ij for contact during the interval, all pairs.
    pub auroc: f64,
    /// AUROC for new contacts only.
    pub auroc_new: f64,
    /// Distance-matched AUROC.
    pub matched: f64,
    /// Its standard error.
    pub matched_se: f64,
    /// Approach selectivity at matched distance.
    pub approach: f64,
    /// Position between the distance floor (0) and the ballistic ceiling (1).
    pub position: f64,
    /// Held-out log-likelihood gain of log a'_ij over geometry (nats per contact) and its 95 % interval.
    pub incr: (f64, f64, f64),
    /// Self-excluded g(r) peak on bins of ≥ [`G_MIN_PAIRS`] pairs.
    pub g_peak: Option<GPeak>,
    /// Meets [`bar`].
    pub meets_bar: bool,
    /// What it encodes.
    pub encodes: Encoding,
}

impl HeadSummary {
    /// `L1.H2`.
    pub fn name(&self) -> String {
        format!("L{}.H{}", self.layer, self.head)
    }
}

/// A baseline's standing, from `/baselines`.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineSummary {
    /// Which.
    pub baseline: Baseline,
    /// AUROC for contact, all pairs.
    pub auroc: f64,
    /// AUROC for new contacts.
    pub auroc_new: f64,
    /// Distance-matched AUROC and its standard error.
    pub matched: f64,
    /// Standard error of `matched`.
    pub matched_se: f64,
    /// Self-excluded score of its softmax attention (fitted temperature).
    pub softmax_score: f64,
    /// Distance-matched AUROC of its softmax attention.
    pub softmax_matched: f64,
    /// Whether its softmax attention would meet the bar.
    pub softmax_meets_bar: bool,
}

/// The verdict on a run at one probed step.
#[derive(Debug, Clone, PartialEq)]
pub struct RunVerdict {
    /// Step.
    pub step: u64,
    /// Every head, in layer-major order.
    pub heads: Vec<HeadSummary>,
    /// Indices (into `heads`) of the heads tied with the highest score
    /// within one standard error: the collision heads, named together.
    pub top: Vec<usize>,
    /// The baselines, when the analysis holds them.
    pub baselines: Vec<BaselineSummary>,
    /// Distance baseline's matched AUROC (floor) and ballistic's (ceiling).
    pub floor_ceiling: (f64, f64),
}

impl RunVerdict {
    /// The top heads.
    pub fn top_heads(&self) -> Vec<&HeadSummary> {
        self.top.iter().map(|&k| &self.heads[k]).collect()
    }
    /// Top heads that meet the bar.
    pub fn passing(&self) -> Vec<&HeadSummary> {
        self.heads.iter().filter(|h| h.meets_bar).collect()
    }
    /// Heads that fail the bar only on a matched AUROC within one standard
    /// error below its threshold (their score passes).
    pub fn close_to_bar(&self) -> Vec<&HeadSummary> {
        self.heads
            .iter()
            .filter(|h| {
                !h.meets_bar
                    && h.score >= bar::SCORE_MIN
                    && h.matched < bar::MATCHED_AUROC_MIN
                    && h.matched + h.matched_se >= bar::MATCHED_AUROC_MIN
            })
            .collect()
    }
    /// The baseline with the highest all-pairs AUROC among the non-ceiling
    /// ones (distance, time to contact, approach rate).
    pub fn best_baseline(&self) -> Option<&BaselineSummary> {
        self.baselines
            .iter()
            .filter(|b| b.baseline != Baseline::Ballistic && b.auroc.is_finite())
            .max_by(|x, y| x.auroc.total_cmp(&y.auroc))
    }
    /// A baseline by kind.
    pub fn baseline(&self, b: Baseline) -> Option<&BaselineSummary> {
        self.baselines.iter().find(|x| x.baseline == b)
    }
    /// One line: which heads, whether they meet the bar, what they encode,
    /// and their margin over the best baseline.
    pub fn line(&self) -> String {
        let top = self.top_heads();
        if top.is_empty() {
            return "No head could be scored (no contacts in the evaluation frames?).".into();
        }
        let names: Vec<String> = top.iter().map(|h| h.name()).collect();
        let who = if top.len() == 1 {
            format!("head {}", names[0])
        } else {
            format!("heads {} (tied within one standard error)", names.join(", "))
        };
        let pass: Vec<&HeadSummary> = self.passing();
        let mut s = if pass.is_empty() {
            format!("No head meets the collision-head bar ({}). Top {who}: ", bar_text())
        } else {
            let pn: Vec<String> = pass.iter().map(|h| h.name()).collect();
            format!("Collision head(s) meeting the bar ({}): {}. Top {who}: ", bar_text(), pn.join(", "))
        };
        let parts: Vec<String> = top
            .iter()
            .map(|h| {
                format!(
                    "{} score {:.3}±{:.3}, AUROC {:.3}, matched AUROC {:.3}±{:.3}, approach selectivity {:.2}",
                    h.name(),
                    h.score,
                    h.score_se,
                    h.auroc,
                    h.matched,
                    h.matched_se,
                    h.approach
                )
            })
            .collect();
        s.push_str(&parts.join("; "));
        s.push('.');
        let close = self.close_to_bar();
        if !close.is_empty() {
            s.push_str(&format!(
                " The matched AUROC of {} is within one standard error of the bar's {}: this evaluation set cannot settle the verdict for {}.",
                close.iter().map(|h| h.name()).collect::<Vec<_>>().join(", "),
                bar::MATCHED_AUROC_MIN,
                if close.len() == 1 { "it" } else { "them" }
            ));
        }
        if let Some(b) = self.best_baseline() {
            let best_h = top.iter().map(|h| h.auroc).fold(f64::NAN, f64::max);
            let best_m = top.iter().map(|h| h.matched).fold(f64::NAN, f64::max);
            s.push_str(&format!(
                " Margin over the best baseline ({}: AUROC {:.3}, matched {:.3}): AUROC {:+.3}, matched {:+.3}; ballistic ceiling: matched {:.3}.",
                b.baseline.label(),
                b.auroc,
                b.matched,
                best_h - b.auroc,
                best_m - b.matched,
                self.floor_ceiling.1
            ));
        }
        let enc: Vec<&str> = top.iter().map(|h| h.encodes.text()).collect();
        let mut uniq = enc.clone();
        uniq.dedup();
        s.push_str(&format!(" They encode {}.", uniq.join(" / ")));
        s
    }
}

/// Indices of the values tied with the highest within one standard error of
/// the difference: |v_max − v_k| ≤ √(se_max² + se_k²). NaN values are left
/// out; a NaN standard error counts as 0 (the value then ties only with
/// itself or within the other's error).
pub fn tied_top(values: &[(f64, f64)]) -> Vec<usize> {
    let Some(kmax) =
        (0..values.len()).filter(|&k| values[k].0.is_finite()).max_by(|&x, &y| values[x].0.total_cmp(&values[y].0))
    else {
        return Vec::new();
    };
    let se = |k: usize| if values[k].1.is_finite() { values[k].1 } else { 0.0 };
    let (vm, sm) = (values[kmax].0, se(kmax));
    let mut out: Vec<usize> = (0..values.len())
        .filter(|&k| values[k].0.is_finite() && vm - values[k].0 <= (sm * sm + se(k) * se(k)).sqrt())
        .collect();
    out.sort_by(|&x, &y| values[y].0.total_cmp(&values[x].0));
    out
}

/// Standard error of a score series at step index `s`: its stored spread
/// over queries / √(queries). NaN when either is missing.
pub fn score_se(a: &Analysis, key: SeriesKey, s: usize, layer: usize, head: usize) -> f64 {
    match key.spread_and_count() {
        Some((sd, n)) => {
            let (sd, n) = (a.value(sd, s, layer, head), a.value(n, s, layer, head));
            if n > 0.0 {
                sd / n.sqrt()
            } else {
                f64::NAN
            }
        }
        None => f64::NAN,
    }
}

/// The self-excluded g(r) of one head at step index `s` on merged bins
/// ([`merge_sparse_bins`], [`G_MIN_PAIRS`]) and its peak.
pub fn g_peak(a: &Analysis, s: usize, layer: usize, head: usize) -> Option<GPeak> {
    let b = a.n_bins();
    let off = (s * a.n_layers * a.n_heads + layer * a.n_heads + head) * b;
    let count = a.g_count.get(off..off + b)?;
    let m = merge_sparse_bins(&a.g_edges, a.head_g(true, s, layer, head), count, G_MIN_PAIRS);
    let k = m.peak(G_MIN_PAIRS)?;
    Some(GPeak { lo: m.lo[k], hi: m.edges[k + 1], g: m.g[k], count: m.count[k] })
}

/// The verdict at step index `s` (the last when `None`).
pub fn run_verdict(a: &Analysis, s: Option<usize>) -> Option<RunVerdict> {
    let s = match s {
        Some(s) if s < a.steps.len() => s,
        Some(_) => return None,
        None => a.steps.len().checked_sub(1)?,
    };
    let key = SeriesKey::ScoreExclNormOverlap;
    a.series.get(key.name())?;
    let mut heads = Vec::new();
    for layer in 0..a.n_layers {
        for head in 0..a.n_heads {
            let v = |k: SeriesKey| a.value(k, s, layer, head);
            let (score, matched, approach, position) =
                (v(key), v(SeriesKey::AurocMatched), v(SeriesKey::ApproachSelectivity), v(SeriesKey::GeometryPosition));
            heads.push(HeadSummary {
                layer,
                head,
                score,
                score_se: score_se(a, key, s, layer, head),
                auroc: v(SeriesKey::AurocInterval),
                auroc_new: v(SeriesKey::AurocNew),
                matched,
                matched_se: v(SeriesKey::AurocMatchedSe),
                approach,
                position,
                incr: (v(SeriesKey::IncrGain), v(SeriesKey::IncrGainLo), v(SeriesKey::IncrGainHi)),
                g_peak: g_peak(a, s, layer, head),
                meets_bar: meets_bar(score, matched),
                encodes: Encoding::classify(score, matched, approach, position),
            });
        }
    }
    let top = tied_top(&heads.iter().map(|h| (h.score, h.score_se)).collect::<Vec<_>>());
    let get = |b: Baseline, k: &str| a.baselines.get(b.name()).and_then(|r| r.get(k)).copied().unwrap_or(f64::NAN);
    let baselines = Baseline::ALL
        .iter()
        .filter(|b| a.baselines.contains_key(b.name()))
        .map(|&b| BaselineSummary {
            baseline: b,
            auroc: get(b, "auroc_all"),
            auroc_new: get(b, "auroc_new"),
            matched: get(b, "auroc_matched"),
            matched_se: get(b, "auroc_matched_se"),
            softmax_score: get(b, "softmax_score_excl_norm_overlap"),
            softmax_matched: get(b, "softmax_auroc_matched"),
            softmax_meets_bar: meets_bar(get(b, "softmax_score_excl_norm_overlap"), get(b, "softmax_auroc_matched")),
        })
        .collect();
    Some(RunVerdict { step: a.steps[s], heads, top, baselines, floor_ceiling: floor_ceiling(&a.baselines) })
}

/// Every head that meets the collision-head bar (self-excluded score ≥ 0.5,
/// AUROC ≥ 0.95, g(r) peak at or inside contact) at the last probed step,
/// as (layer, head), in order.
pub fn collision_heads(a: &Analysis) -> Vec<(usize, usize)> {
    let Some(s) = a.steps.len().checked_sub(1) else { return vec![] };
    let (Some(score), Some(auroc)) = (a.series.get("score_excl_norm_overlap"), a.series.get("auroc_interval")) else {
        return vec![];
    };
    let lh = a.n_layers * a.n_heads;
    let mut out = Vec::new();
    for k in 0..lh {
        let (layer, head) = (k / a.n_heads, k % a.n_heads);
        let g = a.head_g(false, s, layer, head);
        let peak = (0..g.len()).filter(|&b| g[b].is_finite()).max_by(|&x, &y| g[x].total_cmp(&g[y]));
        let (sc, au) = (score[s * lh + k], auroc[s * lh + k]);
        if sc >= 0.5 && au >= 0.95 && peak.is_some_and(|b| a.g_edges[b] < 1.0) {
            out.push((layer, head));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_within_one_standard_error_are_named_together() {
        // 0.66 ± 0.017 and 0.65 ± 0.017 tie; 0.60 ± 0.01 does not.
        let v = [(0.60, 0.01), (0.65, 0.017), (f64::NAN, 0.1), (0.66, 0.017)];
        assert_eq!(tied_top(&v), vec![3, 1]);
        // With tiny errors, only the highest.
        let v = [(0.60, 0.001), (0.65, 0.001), (0.66, 0.001)];
        assert_eq!(tied_top(&v), vec![2]);
        assert!(tied_top(&[(f64::NAN, 0.0)]).is_empty());
    }

    #[test]
    fn the_bar_needs_both_parts() {
        assert!(meets_bar(bar::SCORE_MIN, bar::MATCHED_AUROC_MIN));
        assert!(!meets_bar(0.95, 0.5), "distance-like: high score, nothing beyond distance");
        assert!(!meets_bar(0.2, 0.95), "knows contact but does not attend to partners");
        assert!(!meets_bar(f64::NAN, 0.9));
        assert!(bar_text().contains("0.75"));
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::classify(0.7, 0.52, 0.5, 0.05), Encoding::Proximity);
        assert_eq!(Encoding::classify(0.7, 0.74, 0.69, 0.5), Encoding::ProximityAndApproach);
        assert_eq!(Encoding::classify(0.7, 0.96, 0.8, 0.97), Encoding::Ballistic);
        assert_eq!(Encoding::classify(0.7, 0.99, 0.8, 1.1), Encoding::BeyondBallistic);
        assert_eq!(Encoding::classify(-0.1, 0.5, 0.5, 0.0), Encoding::Nothing);
        assert_eq!(Encoding::classify(f64::NAN, 0.5, 0.5, 0.0), Encoding::Unknown);
    }
}
