//! Non-learned baselines for the collision verdict, and the measures that
//! control for distance.
//!
//! Everything is computed on the probe's evaluation frames, over ordered
//! pairs i ≠ j in the order the metrics see them (frame by frame, query i,
//! key j), so that a head's a'_ij lines up with the pair table:
//!
//! - [`PairTable`]: per pair the distance r = |x_ij|/(r_i+r_j), the label
//!   "in contact during the predicted interval", whether the pair already
//!   touches at the input frame, and ballistic features from positions and
//!   velocities ([`ballistic`]): closing speed, time to contact, and the
//!   closest approach within the interval.
//! - [`Baseline`]: four geometric predictors of contact (minus distance,
//!   minus time to contact, closing speed, minus ballistic closest approach).
//!   Gravity does not enter: both particles of a pair fall with the same
//!   acceleration, so it cancels in their relative motion (walls aside,
//!   which the particle–particle label ignores); the ballistic predictors
//!   "with" and "without gravity" are the same function.
//! - [`stratified_auroc`]: an AUROC within narrow bins of r, averaged over
//!   bins; [`PairTable::matched_auroc`] (label: contact) and
//!   [`PairTable::approach_selectivity`] (label: approaching) use it. 0.5
//!   means "nothing beyond distance".
//! - [`softmax_attention`]: "attention" built from a baseline by a softmax
//!   over keys with a fitted inverse temperature, so that every collision
//!   score has a reference that knows only geometry.

use std::collections::BTreeMap;

use crate::logistic::{incremental, BaseModel, Incremental};
use crate::metrics::{auroc, FrameGeom, HeadAccum, ProbeAccum};
use crate::series::SeriesKey;

/// Width of the distance bins of the matched measures, in contact distances
/// (r_i + r_j). Narrow enough that the distance predictor is close to 0.5
/// inside a bin (checked on the demo: see the README), wide enough to hold
/// pairs on 128 evaluation frames.
pub const MATCH_BIN_WIDTH: f32 = 0.025;
/// A bin enters a matched AUROC only with at least this many unordered
/// pairs of each class (positives and negatives).
pub const MATCH_MIN_PER_CLASS: usize = 3;
/// Time to contact is capped at this many frames (never-meeting pairs get
/// the cap), so that it can be standardized and softmaxed.
pub const TTC_CAP_FRAMES: f32 = 100.0;

/// Ballistic features of one pair from relative position `x = x_j − x_i`
/// and relative velocity `v = v_j − v_i` (any dimension), contact distance
/// `sigma`, over a horizon `horizon` (time units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ballistic {
    /// Closing speed −(x·v)/|x| (positive: approaching), time units.
    pub closing: f64,
    /// Time until |x + v t| = sigma on straight lines (0 when already
    /// within sigma, +∞ when the lines never come that close).
    pub ttc: f64,
    /// Smallest |x + v t| over t ∈ [0, horizon].
    pub dmin: f64,
}

/// Straight-line (ballistic) motion of a pair; see [`Ballistic`]. Equal
/// accelerations (gravity) cancel in `x` and `v`, so they do not appear.
pub fn ballistic(x: &[f64], v: &[f64], sigma: f64, horizon: f64) -> Ballistic {
    let xv: f64 = x.iter().zip(v).map(|(a, b)| a * b).sum();
    let xx: f64 = x.iter().map(|a| a * a).sum();
    let vv: f64 = v.iter().map(|a| a * a).sum();
    let d = xx.sqrt();
    let closing = if d > 0.0 { -xv / d } else { 0.0 };
    let c = xx - sigma * sigma;
    let ttc = if c <= 0.0 {
        0.0
    } else if vv <= 0.0 || xv >= 0.0 {
        f64::INFINITY
    } else {
        let disc = xv * xv - vv * c;
        if disc < 0.0 {
            f64::INFINITY
        } else {
            (-xv - disc.sqrt()) / vv
        }
    };
    let t_star = if vv > 0.0 { (-xv / vv).clamp(0.0, horizon.max(0.0)) } else { 0.0 };
    let dmin = x.iter().zip(v).map(|(a, b)| (a + b * t_star).powi(2)).sum::<f64>().sqrt();
    Ballistic { closing, ttc, dmin }
}

/// A non-learned predictor of "in contact during the predicted interval".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Baseline {
    /// Minus the distance r = |x_ij| / (r_i + r_j): nearer pairs first (the floor).
    Distance,
    /// Minus the ballistic time to contact (frames, capped at [`TTC_CAP_FRAMES`]).
    TimeToContact,
    /// The closing speed (contact distances per frame): approaching pairs first.
    ApproachRate,
    /// Minus the ballistic closest approach within the interval (contact
    /// distances): the pairs straight-line motion brings into contact first
    /// (the ceiling: it knows positions, velocities and the interval length).
    Ballistic,
}

impl Baseline {
    /// Every baseline.
    pub const ALL: [Baseline; 4] =
        [Baseline::Distance, Baseline::TimeToContact, Baseline::ApproachRate, Baseline::Ballistic];
    /// The name used in analysis.h5 (`/baselines/<name>`) and the report.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Distance => "distance",
            Baseline::TimeToContact => "time_to_contact",
            Baseline::ApproachRate => "approach_rate",
            Baseline::Ballistic => "ballistic",
        }
    }
    /// A short label for figures.
    pub fn label(self) -> &'static str {
        match self {
            Baseline::Distance => "distance",
            Baseline::TimeToContact => "time to contact",
            Baseline::ApproachRate => "approach rate",
            Baseline::Ballistic => "ballistic (ceiling)",
        }
    }
}

/// Everything the baselines and the distance-controlled measures need,
/// per ordered pair (i ≠ j) of every evaluation frame, frame-major.
#[derive(Debug, Clone, Default)]
pub struct PairTable {
    /// Particles per frame.
    pub n: usize,
    /// Number of evaluation frames.
    pub n_frames: usize,
    /// Index (into the evaluation frames) of each pair's frame.
    pub frame: Vec<u32>,
    /// Distance in contact distances.
    pub r: Vec<f32>,
    /// In contact during the predicted interval.
    pub label: Vec<bool>,
    /// Touching at the input frame (r < 1); "new contacts" are the others.
    pub touching: Vec<bool>,
    /// Closing speed in contact distances per frame (positive: approaching).
    pub closing: Vec<f32>,
    /// Ballistic time to contact in frames (0: touching; capped at [`TTC_CAP_FRAMES`]).
    pub ttc: Vec<f32>,
    /// Ballistic closest approach within one frame, contact distances.
    pub dmin: Vec<f32>,
    /// Matched-distance bin of each pair (`None`: touching, or beyond the
    /// farthest new contact), bins of width [`MATCH_BIN_WIDTH`] from r = 1.
    pub bin: Vec<Option<u32>>,
    /// Number of bins.
    pub n_bins: usize,
}

/// One evaluation frame's kinematics.
#[derive(Debug, Clone, Copy)]
pub struct FrameKin<'a> {
    /// `[N, D]` positions.
    pub positions: &'a [f32],
    /// `[N, D]` velocities.
    pub velocities: &'a [f32],
    /// `[N]` radii.
    pub radii: &'a [f32],
    /// Spatial dimension.
    pub dim: usize,
    /// Time from the input frame to the predicted frame.
    pub frame_dt: f64,
}

impl PairTable {
    /// Build the table from each frame's kinematics and its geometry (whose
    /// interval contact set gives the labels).
    pub fn new(kin: &[FrameKin<'_>], geoms: &[FrameGeom]) -> Self {
        let mut t = PairTable { n: geoms.first().map_or(0, |g| g.n), n_frames: geoms.len(), ..Default::default() };
        for (f, (k, g)) in kin.iter().zip(geoms).enumerate() {
            let (n, d) = (g.n, k.dim);
            let mut x = vec![0f64; d];
            let mut v = vec![0f64; d];
            for i in 0..n {
                for j in 0..n {
                    if i == j {
                        continue;
                    }
                    for a in 0..d {
                        x[a] = k.positions[j * d + a] as f64 - k.positions[i * d + a] as f64;
                        v[a] = k.velocities[j * d + a] as f64 - k.velocities[i * d + a] as f64;
                    }
                    let sigma = k.radii[i] as f64 + k.radii[j] as f64;
                    let b = ballistic(&x, &v, sigma, k.frame_dt);
                    let r = g.ratios[i * n + j];
                    t.frame.push(f as u32);
                    t.r.push(r);
                    t.label.push(g.interval.contains(i, j));
                    t.touching.push(r < 1.0);
                    t.closing.push((b.closing * k.frame_dt / sigma) as f32);
                    t.ttc.push(((b.ttc / k.frame_dt) as f32).min(TTC_CAP_FRAMES));
                    t.dmin.push((b.dmin / sigma) as f32);
                }
            }
        }
        t.assign_bins();
        t
    }

    /// Number of ordered pairs.
    pub fn len(&self) -> usize {
        self.r.len()
    }
    /// Whether the table holds no pairs.
    pub fn is_empty(&self) -> bool {
        self.r.is_empty()
    }

    fn assign_bins(&mut self) {
        let r_hi =
            (0..self.len()).filter(|&k| self.label[k] && !self.touching[k]).map(|k| self.r[k]).fold(f32::NAN, f32::max);
        self.bin = vec![None; self.len()];
        if !r_hi.is_finite() {
            self.n_bins = 0;
            return;
        }
        self.n_bins = (((r_hi - 1.0) / MATCH_BIN_WIDTH).floor() as usize) + 1;
        for k in 0..self.len() {
            let r = self.r[k];
            if !self.touching[k] && r >= 1.0 {
                let b = ((r - 1.0) / MATCH_BIN_WIDTH).floor() as usize;
                if b < self.n_bins {
                    self.bin[k] = Some(b as u32);
                }
            }
        }
    }

    /// The score of a baseline for every pair.
    pub fn baseline_scores(&self, b: Baseline) -> Vec<f32> {
        match b {
            Baseline::Distance => self.r.iter().map(|&r| -r).collect(),
            Baseline::TimeToContact => self.ttc.iter().map(|&t| -t).collect(),
            Baseline::ApproachRate => self.closing.clone(),
            Baseline::Ballistic => self.dmin.iter().map(|&d| -d).collect(),
        }
    }

    /// AUROC of `score` for contact during the interval, all pairs.
    pub fn auroc_all(&self, score: &[f32]) -> f64 {
        auroc(score, &self.label)
    }

    /// AUROC of `score` for contact among pairs not touching at the input
    /// frame ("new contacts").
    pub fn auroc_new(&self, score: &[f32]) -> f64 {
        let (s, l): (Vec<f32>, Vec<bool>) =
            (0..self.len()).filter(|&k| !self.touching[k]).map(|k| (score[k], self.label[k])).unzip();
        auroc(&s, &l)
    }

    /// Distance-matched AUROC of `score` for contact during the interval:
    /// within bins of r (width [`MATCH_BIN_WIDTH`], pairs not touching),
    /// averaged over bins weighted by their positives.
    pub fn matched_auroc(&self, score: &[f32]) -> Stratified {
        stratified_auroc(&self.bin, self.n_bins, score, &self.label, Weighting::Positives)
    }

    /// Approach selectivity of `score`: within the same distance bins, the
    /// AUROC of `score` for "approaching" (closing speed > 0) against
    /// receding pairs, averaged over bins weighted by their pairs.
    pub fn approach_selectivity(&self, score: &[f32]) -> Stratified {
        let approaching: Vec<bool> = self.closing.iter().map(|&c| c > 0.0).collect();
        stratified_auroc(&self.bin, self.n_bins, score, &approaching, Weighting::Pairs)
    }

    /// Ordered pairs and unordered positives that the matched AUROC uses.
    pub fn matched_support(&self) -> (usize, usize) {
        let m = self.matched_auroc(&self.r);
        (m.pairs, m.positives)
    }
}

/// How bins are weighted in a [`stratified_auroc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weighting {
    /// By the bin's positives.
    Positives,
    /// By the bin's pairs.
    Pairs,
}

/// An AUROC within strata, averaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stratified {
    /// The weighted mean of the per-bin AUROCs (NaN: no usable bin).
    pub value: f64,
    /// Its standard error: Hanley–McNeil per bin with unordered pair counts
    /// (each unordered pair appears twice, as (i, j) and (j, i)), combined as
    /// sqrt(Σ w_b² SE_b²) with normalized weights.
    pub se: f64,
    /// Bins with at least [`MATCH_MIN_PER_CLASS`] unordered pairs of each class.
    pub bins_used: usize,
    /// Ordered pairs in the used bins.
    pub pairs: usize,
    /// Unordered positives in the used bins.
    pub positives: usize,
}

/// Hanley–McNeil (1982) standard error of an AUROC `a` with `np` positives
/// and `nn` negatives.
pub fn hanley_mcneil_se(a: f64, np: f64, nn: f64) -> f64 {
    if np < 1.0 || nn < 1.0 || !a.is_finite() {
        return f64::NAN;
    }
    let q1 = a / (2.0 - a);
    let q2 = 2.0 * a * a / (1.0 + a);
    let v = (a * (1.0 - a) + (np - 1.0) * (q1 - a * a) + (nn - 1.0) * (q2 - a * a)) / (np * nn);
    v.max(0.0).sqrt()
}

/// AUROC of `score` for `label` within each stratum `bin[k]` (pairs with
/// `None` left out), averaged with the given weights over strata that hold
/// at least [`MATCH_MIN_PER_CLASS`] unordered pairs of each class. Counts
/// are halved because every unordered pair appears twice (ordered pairs).
pub fn stratified_auroc(
    bin: &[Option<u32>],
    n_bins: usize,
    score: &[f32],
    label: &[bool],
    weighting: Weighting,
) -> Stratified {
    let mut per: Vec<(Vec<f32>, Vec<bool>)> = vec![(Vec::new(), Vec::new()); n_bins];
    for k in 0..bin.len().min(score.len()).min(label.len()) {
        if let Some(b) = bin[k] {
            if let Some(p) = per.get_mut(b as usize) {
                p.0.push(score[k]);
                p.1.push(label[k]);
            }
        }
    }
    let mut parts = Vec::new();
    let (mut pairs, mut positives) = (0, 0);
    for (s, l) in &per {
        let np = l.iter().filter(|&&x| x).count();
        let nn = l.len() - np;
        if np / 2 < MATCH_MIN_PER_CLASS || nn / 2 < MATCH_MIN_PER_CLASS {
            continue;
        }
        let a = auroc(s, l);
        let (npu, nnu) = (np as f64 / 2.0, nn as f64 / 2.0);
        let w = match weighting {
            Weighting::Positives => npu,
            Weighting::Pairs => npu + nnu,
        };
        parts.push((a, hanley_mcneil_se(a, npu, nnu), w));
        pairs += l.len();
        positives += np / 2;
    }
    let wsum: f64 = parts.iter().map(|p| p.2).sum();
    if parts.is_empty() || wsum <= 0.0 {
        return Stratified { value: f64::NAN, se: f64::NAN, bins_used: 0, pairs: 0, positives: 0 };
    }
    let value = parts.iter().map(|p| p.0 * p.2).sum::<f64>() / wsum;
    let se = parts.iter().map(|p| (p.2 / wsum).powi(2) * p.1 * p.1).sum::<f64>().sqrt();
    Stratified { value, se, bins_used: parts.len(), pairs, positives }
}

/// Attention built from a pair score: for each query i of each frame,
/// a_ij = softmax over keys j ≠ i of β·s_ij, and a_ii = 0 (a baseline has no
/// self to park on, so its self-inclusive and self-excluded scores agree).
/// Row normalization costs such attention some of its score's ranking power
/// across queries: a query without any partner still gives all its mass to
/// its best-scoring key, and at a steep β every other key ties at ≈ 0; so
/// its matched AUROC lies below the raw score's (on the demo, ballistics
/// 0.97 as a score, ≈ 0.7 as attention).
/// `score` is in [`PairTable`] order; returns `[frames][N·N]` patterns.
pub fn softmax_attention(n: usize, score: &[f32], beta: f64) -> Vec<Vec<f32>> {
    let per = n * n.saturating_sub(1);
    if per == 0 {
        return Vec::new();
    }
    score
        .chunks(per)
        .map(|fs| {
            let mut att = vec![0f32; n * n];
            for i in 0..n {
                let row = &fs[i * (n - 1)..(i + 1) * (n - 1)];
                let m = row.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(beta * s as f64));
                let e: Vec<f64> = row.iter().map(|&s| (beta * s as f64 - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (jj, &w) in e.iter().enumerate() {
                    let j = if jj < i { jj } else { jj + 1 };
                    att[i * n + j] = (w / z) as f32;
                }
            }
            att
        })
        .collect()
}

/// The inverse temperatures tried when fitting a baseline's softmax, in
/// units of 1 / (the score's standard deviation over pairs).
pub fn beta_grid() -> Vec<f64> {
    (0..=36).map(|k| 10f64.powf(-1.0 + k as f64 / 12.0)).collect()
}

/// Mean self-excluded normalized collision score (partners overlapping at
/// the input frame, as the headline score) of softmax attention from
/// `score` at inverse temperature `beta`.
pub fn softmax_excl_score(n: usize, score: &[f32], beta: f64, geoms: &[FrameGeom]) -> f64 {
    let atts = softmax_attention(n, score, beta);
    let (mut sum, mut cnt) = (0f64, 0usize);
    for (att, g) in atts.iter().zip(geoms) {
        for i in 0..n {
            let deg = g.overlap.degree(i);
            if deg == 0 || deg + 1 >= n {
                continue;
            }
            let on: f64 = (0..n).filter(|&j| g.overlap.contains(i, j)).map(|j| att[i * n + j] as f64).sum();
            let chance = deg as f64 / (n - 1) as f64;
            sum += (on - chance) / (1.0 - chance);
            cnt += 1;
        }
    }
    if cnt == 0 {
        f64::NAN
    } else {
        sum / cnt as f64
    }
}

/// Fit the softmax inverse temperature of a baseline: the β on
/// [`beta_grid`] (scaled by 1/std of the score) that maximizes the
/// headline score [`softmax_excl_score`] — the most favourable reading of
/// the baseline as attention. Returns (β, that score).
pub fn fit_softmax_beta(n: usize, score: &[f32], geoms: &[FrameGeom]) -> (f64, f64) {
    let m = score.iter().map(|&s| s as f64).sum::<f64>() / score.len().max(1) as f64;
    let sd = (score.iter().map(|&s| (s as f64 - m).powi(2)).sum::<f64>() / score.len().max(1) as f64).sqrt();
    let scale = if sd > 0.0 && sd.is_finite() { 1.0 / sd } else { 1.0 };
    let mut best = (scale, f64::NEG_INFINITY);
    for b in beta_grid() {
        let s = softmax_excl_score(n, score, b * scale, geoms);
        if s > best.1 {
            best = (b * scale, s);
        }
    }
    best
}

/// The distance-controlled measures of one head at one checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadControls {
    /// AUROC of a'_ij for contact among pairs not touching at the input frame.
    pub auroc_new: f64,
    /// Distance-matched AUROC of a'_ij for contact.
    pub matched: Stratified,
    /// Approach selectivity of a'_ij at matched distance.
    pub approach: Stratified,
    /// (matched − distance baseline's matched) / (ballistic's matched −
    /// distance's): 0 at the distance floor, 1 at the ballistic ceiling.
    pub position: f64,
    /// Held-out information of log a'_ij beyond the baseline features.
    pub incr: Incremental,
}

/// Where a matched AUROC sits between a floor and a ceiling (NaN when the
/// ceiling does not lie above the floor).
pub fn position(matched: f64, floor: f64, ceiling: f64) -> f64 {
    if ceiling - floor > 1e-9 {
        (matched - floor) / (ceiling - floor)
    } else {
        f64::NAN
    }
}

/// Compute a head's [`HeadControls`] from its self-excluded attention on the
/// pairs of `t` (pair-table order). `floor` and `ceiling` are the matched
/// AUROCs of the distance and ballistic baselines.
pub fn head_controls(
    t: &PairTable,
    base: &BaseModel,
    floor: f64,
    ceiling: f64,
    attn: &[f32],
    seed: u64,
) -> HeadControls {
    let matched = t.matched_auroc(attn);
    HeadControls {
        auroc_new: t.auroc_new(attn),
        matched,
        approach: t.approach_selectivity(attn),
        position: position(matched.value, floor, ceiling),
        incr: incremental(t, base, attn, seed),
    }
}

/// [`head_controls`] for every head of a probe accumulator (in parallel),
/// index `layer * n_heads + head`.
pub fn all_head_controls(
    acc: &ProbeAccum,
    t: &PairTable,
    base: &BaseModel,
    floor: f64,
    ceiling: f64,
    seed: u64,
) -> Vec<HeadControls> {
    use rayon::prelude::*;
    (0..acc.n_layers * acc.n_heads)
        .into_par_iter()
        .map(|k| head_controls(t, base, floor, ceiling, acc.pair_attention_excl(k), seed))
        .collect()
}

/// The series of [`HeadControls`] (one value per head), as stored in
/// analysis.h5.
pub fn controls_series(c: &[HeadControls]) -> Vec<(SeriesKey, Vec<f64>)> {
    let col = |f: &dyn Fn(&HeadControls) -> f64| c.iter().map(f).collect::<Vec<f64>>();
    vec![
        (SeriesKey::AurocNew, col(&|h| h.auroc_new)),
        (SeriesKey::AurocMatched, col(&|h| h.matched.value)),
        (SeriesKey::AurocMatchedSe, col(&|h| h.matched.se)),
        (SeriesKey::ApproachSelectivity, col(&|h| h.approach.value)),
        (SeriesKey::GeometryPosition, col(&|h| h.position)),
        (SeriesKey::IncrGain, col(&|h| h.incr.gain)),
        (SeriesKey::IncrGainLo, col(&|h| h.incr.lo)),
        (SeriesKey::IncrGainHi, col(&|h| h.incr.hi)),
        (SeriesKey::IncrAurocFull, col(&|h| h.incr.auroc_full)),
    ]
}

/// Name of the `/baselines` entry that describes the distance bins.
pub const BINNING: &str = "_binning";
/// Name of the `/baselines` entry of the logistic baseline model.
pub const LOGISTIC: &str = "_logistic";

/// Everything about the baselines on one evaluation set, as stored under
/// `/baselines` in analysis.h5: per baseline name (and [`BINNING`],
/// [`LOGISTIC`]) a set of named numbers.
pub type BaselineTable = BTreeMap<String, BTreeMap<String, f64>>;

/// Evaluate every [`Baseline`] on the pair table: as a predictor (AUROC for
/// all pairs, new contacts, at matched distance; approach selectivity) and as
/// softmax attention with a fitted temperature, scored by the probe's own
/// metrics ([`HeadAccum`]) and distance controls.
pub fn baseline_table(t: &PairTable, geoms: &[FrameGeom], edges: &[f32], base: &BaseModel) -> BaselineTable {
    let mut out = BaselineTable::new();
    for b in Baseline::ALL {
        let sc = t.baseline_scores(b);
        let m = t.matched_auroc(&sc);
        let ap = t.approach_selectivity(&sc);
        let (beta, _) = fit_softmax_beta(t.n, &sc, geoms);
        let atts = softmax_attention(t.n, &sc, beta);
        let mut acc = HeadAccum::new(edges);
        for (a, g) in atts.iter().zip(geoms) {
            acc.add_frame(a, g);
        }
        let hm = acc.finish();
        let sm = t.matched_auroc(acc.pair_attention_excl());
        let mut row = BTreeMap::new();
        for (k, v) in [
            ("auroc_all", t.auroc_all(&sc)),
            ("auroc_new", t.auroc_new(&sc)),
            ("auroc_matched", m.value),
            ("auroc_matched_se", m.se),
            ("approach_selectivity", ap.value),
            ("softmax_beta", beta),
            ("softmax_score_excl_norm_overlap", hm.overlap.excl_norm),
            ("softmax_score_excl_norm_overlap_std", hm.overlap.excl_norm_std),
            ("softmax_n_queries_overlap", hm.overlap.n_queries),
            ("softmax_score_excl_norm_interval", hm.interval.excl_norm),
            ("softmax_auroc_interval", hm.auroc_excl_interval),
            ("softmax_auroc_matched", sm.value),
            ("softmax_auroc_matched_se", sm.se),
        ] {
            row.insert(k.to_string(), v);
        }
        out.insert(b.name().to_string(), row);
    }
    let sup = t.matched_auroc(&t.baseline_scores(Baseline::Distance));
    let r_max = 1.0 + t.n_bins as f64 * MATCH_BIN_WIDTH as f64;
    let mut bin = BTreeMap::new();
    for (k, v) in [
        ("bin_width", MATCH_BIN_WIDTH as f64),
        ("r_min", 1.0),
        ("r_max", r_max),
        ("bins", t.n_bins as f64),
        ("bins_used", sup.bins_used as f64),
        ("ordered_pairs_used", sup.pairs as f64),
        ("unordered_pairs_per_bin", sup.pairs as f64 / 2.0 / sup.bins_used.max(1) as f64),
        ("positives_used", sup.positives as f64),
        ("min_per_class", MATCH_MIN_PER_CLASS as f64),
        ("eval_frames", t.n_frames as f64),
        ("ordered_pairs", t.len() as f64),
        ("positives", t.label.iter().filter(|&&l| l).count() as f64 / 2.0),
        ("new_positives", (0..t.len()).filter(|&k| t.label[k] && !t.touching[k]).count() as f64 / 2.0),
    ] {
        bin.insert(k.to_string(), v);
    }
    out.insert(BINNING.to_string(), bin);
    let mut lg = BTreeMap::new();
    lg.insert("auroc_base".to_string(), base.auroc);
    lg.insert("ridge".to_string(), crate::logistic::RIDGE);
    lg.insert("bootstrap".to_string(), crate::logistic::BOOTSTRAP as f64);
    out.insert(LOGISTIC.to_string(), lg);
    out
}

/// The matched AUROCs of the distance (floor) and ballistic (ceiling)
/// baselines in a [`BaselineTable`].
pub fn floor_ceiling(t: &BaselineTable) -> (f64, f64) {
    let get = |b: Baseline| t.get(b.name()).and_then(|r| r.get("auroc_matched")).copied().unwrap_or(f64::NAN);
    (get(Baseline::Distance), get(Baseline::Ballistic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ContactSet;
    use rand::{Rng, SeedableRng};

    #[test]
    fn ballistic_known_answers() {
        // Head-on: 3 apart, closing at 1, contact at distance 1 -> t = 2.
        let b = ballistic(&[3.0, 0.0], &[-1.0, 0.0], 1.0, 10.0);
        assert!((b.ttc - 2.0).abs() < 1e-12 && (b.closing - 1.0).abs() < 1e-12 && b.dmin.abs() < 1e-12, "{b:?}");
        // Horizon too short: closest approach within it.
        let b = ballistic(&[3.0, 0.0], &[-1.0, 0.0], 1.0, 0.5);
        assert!((b.dmin - 2.5).abs() < 1e-12);
        // A miss: impact parameter 2 > sigma 1, closest approach 2.
        let b = ballistic(&[3.0, 2.0], &[-1.0, 0.0], 1.0, 10.0);
        assert!(b.ttc.is_infinite() && (b.dmin - 2.0).abs() < 1e-12);
        // Receding: never; already touching: 0.
        assert!(ballistic(&[3.0, 0.0], &[1.0, 0.0], 1.0, 1.0).ttc.is_infinite());
        assert_eq!(ballistic(&[0.5, 0.0], &[1.0, 0.0], 1.0, 1.0).ttc, 0.0);
        // Equal accelerations cancel: the same relative state, whatever both
        // particles' common velocity or acceleration, gives the same answer.
        let g = 9.81f64;
        let (x1, v1) = ([0.0, 5.0], [2.0, 0.3]);
        let (x2, v2) = ([3.0, 5.5], [0.5, -0.2]);
        let rel = |t: f64| {
            // positions under gravity at time t, relative
            let p1 = [x1[0] + v1[0] * t, x1[1] + v1[1] * t - 0.5 * g * t * t];
            let p2 = [x2[0] + v2[0] * t, x2[1] + v2[1] * t - 0.5 * g * t * t];
            ((p2[0] - p1[0]).powi(2) + (p2[1] - p1[1]).powi(2)).sqrt()
        };
        let b = ballistic(&[x2[0] - x1[0], x2[1] - x1[1]], &[v2[0] - v1[0], v2[1] - v1[1]], 1.0, 10.0);
        assert!((rel(b.ttc) - 1.0).abs() < 1e-9, "gravity cancels: {}", rel(b.ttc));
    }

    #[test]
    fn stratified_auroc_knows_nothing_beyond_the_strata() {
        // Labels depend only on the stratum: any score that is the stratum
        // itself (ties within) gives 0.5; a perfect score gives 1.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (mut bin, mut lab, mut perfect, mut noise) = (vec![], vec![], vec![], vec![]);
        for k in 0..4000 {
            let b = (k / 2) % 10; // pairs come twice
            let p = 0.1 + 0.08 * b as f64;
            let l = if k % 2 == 0 { rng.gen_bool(p) } else { *lab.last().unwrap() };
            bin.push(Some(b as u32));
            lab.push(l);
            perfect.push(if l { 1.0 } else { 0.0 });
            noise.push(-(b as f32));
        }
        let s = stratified_auroc(&bin, 10, &noise, &lab, Weighting::Positives);
        assert!((s.value - 0.5).abs() < 1e-12 && s.bins_used == 10, "{s:?}");
        let s = stratified_auroc(&bin, 10, &perfect, &lab, Weighting::Positives);
        assert!((s.value - 1.0).abs() < 1e-12, "{s:?}");
        // While the plain AUROC of the stratum is well above 0.5.
        assert!(auroc(&noise, &lab) < 0.4 || auroc(&noise, &lab) > 0.6);
        assert!(stratified_auroc(&bin, 10, &noise, &vec![false; lab.len()], Weighting::Pairs).value.is_nan());
    }

    /// Hanley–McNeil standard errors cover: over repeated draws of a
    /// binormal score with a known AUROC, ±1.96 SE holds the truth about 95 %
    /// of the time.
    #[test]
    fn hanley_mcneil_se_covers_the_truth() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let normal = rand_distr::StandardNormal;
        let shift = 1.0f64; // AUROC = Φ(1/√2)
        let truth = 0.760_249_938_906_523_5;
        let mut hit = 0;
        let reps = 400;
        for _ in 0..reps {
            let mut s = Vec::new();
            let mut l = Vec::new();
            for k in 0..160 {
                let pos = k < 40;
                let z: f64 = rng.sample(normal);
                s.push((z + if pos { shift } else { 0.0 }) as f32);
                l.push(pos);
            }
            let a = auroc(&s, &l);
            let se = hanley_mcneil_se(a, 40.0, 120.0);
            if (a - truth).abs() <= 1.96 * se {
                hit += 1;
            }
        }
        let cov = hit as f64 / reps as f64;
        assert!((0.91..=0.985).contains(&cov), "coverage {cov}");
    }

    fn line_frame(pos: &[f32], vel: &[f32], interval: &[(usize, usize)]) -> (Vec<f32>, Vec<f32>, Vec<f32>, FrameGeom) {
        let n = pos.len();
        let radii = vec![0.5f32; n];
        let mut cs = ContactSet::empty(n);
        for &(i, j) in interval {
            cs.insert(i, j);
        }
        let g = FrameGeom::new(pos, &radii, 1, 1.0, cs);
        (pos.to_vec(), vel.to_vec(), radii, g)
    }

    #[test]
    fn pair_table_features_and_baselines() {
        // 1D: particles 0 and 1 approach and will touch; 2 and 3 recede at
        // the same distance; 4 touches 0? no: far away.
        let (p, v, r, g) = line_frame(&[0.0, 1.5, 10.0, 11.5, 30.0], &[1.0, -1.0, -1.0, 1.0, 0.0], &[(0, 1)]);
        let kin = [FrameKin { positions: &p, velocities: &v, radii: &r, dim: 1, frame_dt: 1.0 }];
        let t = PairTable::new(&kin, std::slice::from_ref(&g));
        assert_eq!(t.len(), 20);
        // Pair (0,1) is the first: j = 1.
        assert!((t.r[0] - 1.5).abs() < 1e-6 && t.label[0] && !t.touching[0]);
        assert!((t.closing[0] - 2.0).abs() < 1e-6, "{}", t.closing[0]);
        assert!((t.ttc[0] - 0.25).abs() < 1e-6 && t.dmin[0] < 1e-6);
        let ball = t.baseline_scores(Baseline::Ballistic);
        assert_eq!(t.auroc_all(&ball), 1.0);
        assert_eq!(t.auroc_all(&t.baseline_scores(Baseline::TimeToContact)), 1.0);
        // Distance cannot tell (0,1) from (2,3).
        let d = t.baseline_scores(Baseline::Distance);
        assert!(t.auroc_all(&d) < 1.0);
    }

    #[test]
    fn softmax_of_a_perfect_score_puts_attention_on_partners() {
        let (p, v, r, g) = line_frame(&[0.0, 0.9, 5.0, 5.9, 20.0], &[0.0; 5], &[(0, 1), (2, 3)]);
        let kin = [FrameKin { positions: &p, velocities: &v, radii: &r, dim: 1, frame_dt: 1.0 }];
        let t = PairTable::new(&kin, std::slice::from_ref(&g));
        let d = t.baseline_scores(Baseline::Distance);
        let att = softmax_attention(5, &d, 50.0);
        assert!(att[0][1] > 0.99 && att[0][0] == 0.0);
        let rows: Vec<f32> = (0..5).map(|i| att[0][i * 5..(i + 1) * 5].iter().sum()).collect();
        assert!(rows.iter().all(|&s| (s - 1.0).abs() < 1e-5), "{rows:?}");
        let (beta, s) = fit_softmax_beta(5, &d, std::slice::from_ref(&g));
        assert!(s > 0.99 && beta > 1.0, "beta {beta}, score {s}");
        // Uniform (β = 0) scores 0.
        assert!(softmax_excl_score(5, &d, 0.0, std::slice::from_ref(&g)).abs() < 1e-6);
    }
}
