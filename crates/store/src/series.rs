//! The names of the per-head series in `analysis.h5` (`/series/<name>`), as
//! one typed key: every crate that reads or writes a series names it by a
//! [`SeriesKey`], never by a string literal. The string form is the HDF5
//! dataset name and never changes for an existing key (files depend on it).

use std::fmt;
use std::str::FromStr;

macro_rules! series_keys {
    ($( $(#[doc = $doc:literal])* $var:ident = $name:literal ),+ $(,)?) => {
        /// One per-head series of `analysis.h5`: a scalar per checkpoint ×
        /// layer × head. The doc of each variant says what it measures.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum SeriesKey {
            $( $(#[doc = $doc])* $var, )+
        }

        impl SeriesKey {
            /// Every key, in a fixed order.
            pub const ALL: &'static [SeriesKey] = &[$(SeriesKey::$var),+];

            /// The HDF5 name (`/series/<name>`).
            pub const fn name(self) -> &'static str {
                match self {
                    $( SeriesKey::$var => $name, )+
                }
            }
        }
    };
}

series_keys! {
    /// Attention mass on overlapping partners, self counted: S_i = Σ_{j∈C_i} a_ij (mean over queries with a partner).
    ScoreRawOverlap = "score_raw_overlap",
    /// Spread (population std over queries) of `score_raw_overlap`.
    ScoreRawStdOverlap = "score_raw_std_overlap",
    /// (S_i − |C_i|/N) / (1 − |C_i|/N), overlapping partners.
    ScoreNormOverlap = "score_norm_overlap",
    /// Spread over queries of `score_norm_overlap`.
    ScoreNormStdOverlap = "score_norm_std_overlap",
    /// Self-excluded raw score Σ_{j∈C_i} a_ij / (1 − a_ii), overlapping partners.
    ScoreExclRawOverlap = "score_excl_raw_overlap",
    /// Spread over queries of `score_excl_raw_overlap`.
    ScoreExclRawStdOverlap = "score_excl_raw_std_overlap",
    /// Self-excluded normalized score (S'_i − |C_i|/(N−1)) / (1 − |C_i|/(N−1)), overlapping partners: the headline score.
    ScoreExclNormOverlap = "score_excl_norm_overlap",
    /// Spread over queries of `score_excl_norm_overlap` (its standard error is this / √`n_queries_overlap`).
    ScoreExclNormStdOverlap = "score_excl_norm_std_overlap",
    /// Queries (frame, particle) with at least one overlapping partner.
    NQueriesOverlap = "n_queries_overlap",
    /// Mean off-self mass 1 − a_ii of queries with an overlapping partner.
    GateContactOverlap = "gate_contact_overlap",
    /// Mean off-self mass of queries without an overlapping partner.
    GateFreeOverlap = "gate_free_overlap",
    /// Queries with partners whose whole mass sat on themselves (self-excluded score undefined).
    DegenerateOverlap = "degenerate_overlap",
    /// As `score_raw_overlap`, partners in contact during the predicted interval.
    ScoreRawInterval = "score_raw_interval",
    /// Spread over queries of `score_raw_interval`.
    ScoreRawStdInterval = "score_raw_std_interval",
    /// As `score_norm_overlap`, interval partners.
    ScoreNormInterval = "score_norm_interval",
    /// Spread over queries of `score_norm_interval`.
    ScoreNormStdInterval = "score_norm_std_interval",
    /// As `score_excl_raw_overlap`, interval partners.
    ScoreExclRawInterval = "score_excl_raw_interval",
    /// Spread over queries of `score_excl_raw_interval`.
    ScoreExclRawStdInterval = "score_excl_raw_std_interval",
    /// As `score_excl_norm_overlap`, interval partners (the viewer's per-particle score).
    ScoreExclNormInterval = "score_excl_norm_interval",
    /// Spread over queries of `score_excl_norm_interval`.
    ScoreExclNormStdInterval = "score_excl_norm_std_interval",
    /// Queries with at least one interval partner.
    NQueriesInterval = "n_queries_interval",
    /// Mean off-self mass of queries with an interval partner.
    GateContactInterval = "gate_contact_interval",
    /// Mean off-self mass of queries without an interval partner.
    GateFreeInterval = "gate_free_interval",
    /// Queries with interval partners whose whole mass sat on themselves.
    DegenerateInterval = "degenerate_interval",
    /// AUROC of a_ij (i ≠ j) for contact during the predicted interval, all pairs.
    AurocInterval = "auroc_interval",
    /// The same with the self-excluded a'_ij = a_ij / (1 − a_ii).
    AurocExclInterval = "auroc_excl_interval",
    /// AUROC of a_ij for overlap at the input frame.
    AurocOverlap = "auroc_overlap",
    /// The same with a'_ij.
    AurocExclOverlap = "auroc_excl_overlap",
    /// Mean attention entropy per query (nats).
    Entropy = "entropy",
    /// Spread over queries of the entropy.
    EntropyStd = "entropy_std",
    /// Mean a_ii.
    SelfAttn = "self_attn",
    /// AUROC of a'_ij for contact during the interval among pairs not overlapping at the input frame ("new contacts").
    AurocNew = "auroc_new",
    /// Distance-matched AUROC of a'_ij for interval contact: within narrow bins of r/(r_i+r_j), averaged over bins weighted by positives (0.5: nothing beyond distance).
    AurocMatched = "auroc_matched",
    /// Standard error of `auroc_matched` (Hanley–McNeil per bin, unordered pair counts, combined over bins).
    AurocMatchedSe = "auroc_matched_se",
    /// Approach selectivity: distance-matched AUROC of a'_ij for "approaching" (closing) against receding pairs, pairs not overlapping (0.5: no preference).
    ApproachSelectivity = "approach_selectivity",
    /// Where the head's matched AUROC sits between the distance baseline (0) and the ballistic ceiling (1).
    GeometryPosition = "geometry_position",
    /// Held-out gain in log-likelihood of contact per positive pair (nats) from adding log a'_ij to the geometric baseline features in a logistic regression.
    IncrGain = "incr_gain",
    /// Lower end of the 95 % bootstrap interval of `incr_gain` (resampling held-out frames).
    IncrGainLo = "incr_gain_lo",
    /// Upper end of the 95 % interval of `incr_gain`.
    IncrGainHi = "incr_gain_hi",
    /// Held-out AUROC of the logistic regression on baseline features plus log a'_ij.
    IncrAurocFull = "incr_auroc_full",
}

impl SeriesKey {
    /// The scalar keys of one partner definition, in the order the metrics
    /// produce them (`def` = `"overlap"` or `"interval"`).
    pub fn def_fields(interval: bool) -> [SeriesKey; 12] {
        use SeriesKey::*;
        if interval {
            [
                ScoreRawInterval,
                ScoreRawStdInterval,
                ScoreNormInterval,
                ScoreNormStdInterval,
                ScoreExclRawInterval,
                ScoreExclRawStdInterval,
                ScoreExclNormInterval,
                ScoreExclNormStdInterval,
                NQueriesInterval,
                GateContactInterval,
                GateFreeInterval,
                DegenerateInterval,
            ]
        } else {
            [
                ScoreRawOverlap,
                ScoreRawStdOverlap,
                ScoreNormOverlap,
                ScoreNormStdOverlap,
                ScoreExclRawOverlap,
                ScoreExclRawStdOverlap,
                ScoreExclNormOverlap,
                ScoreExclNormStdOverlap,
                NQueriesOverlap,
                GateContactOverlap,
                GateFreeOverlap,
                DegenerateOverlap,
            ]
        }
    }

    /// For a score key, the keys of its spread over queries and its query
    /// count (for a standard error), if it has them.
    pub fn spread_and_count(self) -> Option<(SeriesKey, SeriesKey)> {
        use SeriesKey::*;
        Some(match self {
            ScoreRawOverlap => (ScoreRawStdOverlap, NQueriesOverlap),
            ScoreNormOverlap => (ScoreNormStdOverlap, NQueriesOverlap),
            ScoreExclRawOverlap => (ScoreExclRawStdOverlap, NQueriesOverlap),
            ScoreExclNormOverlap => (ScoreExclNormStdOverlap, NQueriesOverlap),
            ScoreRawInterval => (ScoreRawStdInterval, NQueriesInterval),
            ScoreNormInterval => (ScoreNormStdInterval, NQueriesInterval),
            ScoreExclRawInterval => (ScoreExclRawStdInterval, NQueriesInterval),
            ScoreExclNormInterval => (ScoreExclNormStdInterval, NQueriesInterval),
            _ => return None,
        })
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl AsRef<str> for SeriesKey {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

/// A series name that is not a [`SeriesKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown series `{0}`; known series: {known}", known = SeriesKey::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "))]
pub struct UnknownSeries(pub String);

impl FromStr for SeriesKey {
    type Err = UnknownSeries;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SeriesKey::ALL.iter().copied().find(|k| k.name() == s).ok_or_else(|| UnknownSeries(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for &k in SeriesKey::ALL {
            assert!(seen.insert(k.name()), "duplicate name {}", k.name());
            assert_eq!(k.name().parse::<SeriesKey>().unwrap(), k);
        }
        let e = "score_excl".parse::<SeriesKey>().unwrap_err().to_string();
        assert!(e.contains("score_excl") && e.contains("score_excl_norm_overlap"), "{e}");
        for interval in [false, true] {
            let f = SeriesKey::def_fields(interval);
            assert!(f.iter().all(|k| k.name().ends_with(if interval { "_interval" } else { "_overlap" })));
        }
    }
}
