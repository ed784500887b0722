//! Pure per-head attention metrics on one frame at a time, accumulated over an
//! evaluation set: collision scores (raw / normalized, self-inclusive /
//! self-excluded), the gating signature, AUROC of a_ij as a contact
//! predictor, the attention–distance correlation g_h(r) and attention entropy.
//!
//! Everything here works on plain slices: an attention pattern for one frame
//! is `[H, N, N]` row-major (query rows sum to 1), positions `[N, D]`,
//! radii `[N]`. No libtorch needed.

use std::collections::BTreeMap;

use headlab_store::analysis::StepRecord;
pub use headlab_store::series::SeriesKey;
use serde::{Deserialize, Serialize};

/// A symmetric set of contacting pairs among N particles (no self pairs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSet {
    n: usize,
    mask: Vec<bool>,
}

impl ContactSet {
    /// No pair in contact among `n` particles.
    pub fn empty(n: usize) -> Self {
        Self { n, mask: vec![false; n * n] }
    }
    /// Number of particles.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Add the unordered pair {i, j} (ignored when i == j or out of range).
    pub fn insert(&mut self, i: usize, j: usize) {
        if i != j && i < self.n && j < self.n {
            self.mask[i * self.n + j] = true;
            self.mask[j * self.n + i] = true;
        }
    }
    /// Remove the unordered pair {i, j}.
    pub fn remove(&mut self, i: usize, j: usize) {
        if i < self.n && j < self.n {
            self.mask[i * self.n + j] = false;
            self.mask[j * self.n + i] = false;
        }
    }
    /// Whether particles `i` and `j` are in contact.
    pub fn contains(&self, i: usize, j: usize) -> bool {
        self.mask[i * self.n + j]
    }
    /// Row `i` of the mask: `row(i)[j]` says whether j is a partner of i.
    pub fn row(&self, i: usize) -> &[bool] {
        &self.mask[i * self.n..(i + 1) * self.n]
    }
    /// Number of contact partners of particle `i`.
    pub fn degree(&self, i: usize) -> usize {
        self.row(i).iter().filter(|&&b| b).count()
    }
    /// Number of unordered pairs.
    pub fn n_pairs(&self) -> usize {
        self.mask.iter().filter(|&&b| b).count() / 2
    }
    /// Union (in place) with another set of the same size.
    pub fn union_with(&mut self, other: &ContactSet) {
        for (a, b) in self.mask.iter_mut().zip(&other.mask) {
            *a |= *b;
        }
    }
    /// Pairs i<j, sorted.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for i in 0..self.n {
            for j in i + 1..self.n {
                if self.contains(i, j) {
                    v.push((i, j));
                }
            }
        }
        v
    }
}

/// Pair distances in units of contact distance: `|x_i − x_j| / (r_i + r_j)`,
/// `[N, N]` row-major (diagonal 0).
pub fn contact_ratios(positions: &[f32], radii: &[f32], dim: usize) -> Vec<f32> {
    let n = radii.len();
    let mut out = vec![0f32; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let mut d2 = 0f64;
            for a in 0..dim {
                let d = positions[i * dim + a] as f64 - positions[j * dim + a] as f64;
                d2 += d * d;
            }
            let r = (d2.sqrt() / (radii[i] as f64 + radii[j] as f64)) as f32;
            out[i * n + j] = r;
            out[j * n + i] = r;
        }
    }
    out
}

/// Pairs overlapping at the input frame: `|x_i − x_j| < factor·(r_i + r_j)`.
pub fn overlap_contacts(positions: &[f32], radii: &[f32], dim: usize, factor: f32) -> ContactSet {
    let n = radii.len();
    let ratios = contact_ratios(positions, radii, dim);
    let mut s = ContactSet::empty(n);
    for i in 0..n {
        for j in i + 1..n {
            if ratios[i * n + j] < factor {
                s.insert(i, j);
            }
        }
    }
    s
}

/// Which partner definition a score uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactDef {
    /// Overlapping (within factor × (r_i + r_j)) at the input frame.
    Overlap,
    /// In contact at any sub-step from the input frame to the predicted frame
    /// (from the simulator's event table).
    Interval,
}

impl ContactDef {
    /// Both definitions.
    pub const ALL: [ContactDef; 2] = [ContactDef::Overlap, ContactDef::Interval];
    /// Short name used in series keys (`overlap`, `interval`).
    pub fn name(self) -> &'static str {
        match self {
            ContactDef::Overlap => "overlap",
            ContactDef::Interval => "interval",
        }
    }
}

/// Everything the metrics need to know about one evaluation frame.
#[derive(Debug, Clone)]
pub struct FrameGeom {
    /// Number of particles.
    pub n: usize,
    /// `|x_i − x_j| / (r_i + r_j)`, `[N, N]`.
    pub ratios: Vec<f32>,
    /// Pairs overlapping at the input frame (distance ≤ factor · (r_i + r_j)).
    pub overlap: ContactSet,
    /// Pairs in contact during the predicted interval (closed interval, from the event table).
    pub interval: ContactSet,
}

impl FrameGeom {
    /// The geometry of one frame: positions [N, dim], radii [N], contact factor and the interval contacts.
    pub fn new(positions: &[f32], radii: &[f32], dim: usize, factor: f32, interval: ContactSet) -> Self {
        let n = radii.len();
        assert_eq!(interval.n(), n, "interval contact set size must match the particle count");
        let ratios = contact_ratios(positions, radii, dim);
        let mut overlap = ContactSet::empty(n);
        for i in 0..n {
            for j in i + 1..n {
                if ratios[i * n + j] < factor {
                    overlap.insert(i, j);
                }
            }
        }
        Self { n, ratios, overlap, interval }
    }
    /// The contact set of definition `def`.
    pub fn contacts(&self, def: ContactDef) -> &ContactSet {
        match def {
            ContactDef::Overlap => &self.overlap,
            ContactDef::Interval => &self.interval,
        }
    }
}

/// Default g(r) bin edges in units of contact distance: fine around 1.
pub fn default_g_edges() -> Vec<f32> {
    vec![
        0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0,
        7.0, 10.0, 1e9,
    ]
}

#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: u64,
    sum: f64,
    sumsq: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sumsq += x * x;
    }
    fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.sum / self.n as f64
        }
    }
    /// Population standard deviation (spread over queries, not a standard error).
    fn std(&self) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let m = self.mean();
        (self.sumsq / self.n as f64 - m * m).max(0.0).sqrt()
    }
}

#[derive(Debug, Clone, Default)]
struct ScoreAcc {
    raw_incl: Moments,
    norm_incl: Moments,
    raw_excl: Moments,
    norm_excl: Moments,
    /// Off-self mass for queries with / without partners.
    gate_contact: Moments,
    gate_free: Moments,
    /// Queries with partners whose off-self mass vanished (self-excluded score undefined).
    degenerate: u64,
}

/// Accumulates the metrics of one head over many frames.
#[derive(Debug, Clone)]
pub struct HeadAccum {
    edges: Vec<f32>,
    defs: [ScoreAcc; 2],
    /// a_ij and a'_ij for i ≠ j, with labels (interval, overlap) — for AUROC.
    pair_a: Vec<f32>,
    pair_a_excl: Vec<f32>,
    pair_interval: Vec<bool>,
    pair_overlap: Vec<bool>,
    g_sum: Vec<f64>,
    g_excl_sum: Vec<f64>,
    g_count: Vec<u64>,
    entropy: Moments,
    self_attn: Moments,
    frames: u64,
}

/// Where AUROC inputs come from: keep the score of every ordered pair i ≠ j.
const OFF_EPS: f64 = 1e-12;

impl HeadAccum {
    /// `edges`: increasing g(r) bin edges (at least two).
    pub fn new(edges: &[f32]) -> Self {
        let nb = edges.len().saturating_sub(1);
        Self {
            edges: edges.to_vec(),
            defs: Default::default(),
            pair_a: Vec::new(),
            pair_a_excl: Vec::new(),
            pair_interval: Vec::new(),
            pair_overlap: Vec::new(),
            g_sum: vec![0.0; nb],
            g_excl_sum: vec![0.0; nb],
            g_count: vec![0; nb],
            entropy: Moments::default(),
            self_attn: Moments::default(),
            frames: 0,
        }
    }

    fn bin(&self, r: f32) -> Option<usize> {
        let (Some(&lo), Some(&hi)) = (self.edges.first(), self.edges.last()) else { return None };
        if !(r >= lo) || r >= hi {
            return None;
        }
        // edges[k] <= r < edges[k+1]
        let k = self.edges.partition_point(|&e| e <= r);
        Some(k - 1)
    }

    /// Add one frame: `att` is this head's `[N, N]` pattern (rows = queries).
    pub fn add_frame(&mut self, att: &[f32], geom: &FrameGeom) {
        let n = geom.n;
        assert_eq!(att.len(), n * n, "attention pattern must be [N, N]");
        self.frames += 1;
        let nf = n as f64;
        for i in 0..n {
            let row = &att[i * n..(i + 1) * n];
            let a_ii = row[i] as f64;
            let off: f64 = row.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &a)| a as f64).sum();
            let total = a_ii + off;
            // Entropy in nats (rows normalized defensively).
            let mut h = 0.0;
            for &a in row {
                let p = a as f64 / total;
                if p > 0.0 {
                    h -= p * p.ln();
                }
            }
            self.entropy.push(h);
            self.self_attn.push(a_ii / total);
            let off_frac = off / total;
            for (d, def) in ContactDef::ALL.iter().enumerate() {
                let cs = geom.contacts(*def).row(i);
                let deg = cs.iter().filter(|&&b| b).count();
                let acc = &mut self.defs[d];
                if deg == 0 {
                    acc.gate_free.push(off_frac);
                    continue;
                }
                acc.gate_contact.push(off_frac);
                let s: f64 = row.iter().zip(cs).filter(|(_, &c)| c).map(|(&a, _)| a as f64).sum::<f64>() / total;
                let su = deg as f64 / nf;
                acc.raw_incl.push(s);
                acc.norm_incl.push((s - su) / (1.0 - su));
                if off <= OFF_EPS * total {
                    acc.degenerate += 1;
                } else {
                    let se = s * total / off;
                    let sue = deg as f64 / (nf - 1.0);
                    acc.raw_excl.push(se);
                    if sue < 1.0 {
                        acc.norm_excl.push((se - sue) / (1.0 - sue));
                    }
                }
            }
            let off_ok = off > OFF_EPS * total;
            for j in 0..n {
                if j == i {
                    continue;
                }
                let a = row[j] as f64 / total;
                let ae = if off_ok { row[j] as f64 / off } else { 1.0 / (nf - 1.0) };
                self.pair_a.push(a as f32);
                self.pair_a_excl.push(ae as f32);
                self.pair_interval.push(geom.interval.contains(i, j));
                self.pair_overlap.push(geom.overlap.contains(i, j));
                if let Some(b) = self.bin(geom.ratios[i * n + j]) {
                    self.g_sum[b] += nf * a;
                    self.g_excl_sum[b] += (nf - 1.0) * ae;
                    self.g_count[b] += 1;
                }
            }
        }
    }

    /// The self-excluded attention a'_ij of every ordered pair i ≠ j added so
    /// far, frame by frame, query by query (the order of
    /// [`crate::baselines::PairTable`]).
    pub fn pair_attention_excl(&self) -> &[f32] {
        &self.pair_a_excl
    }

    /// Summarize everything accumulated so far.
    pub fn finish(&self) -> HeadMetrics {
        let sc = |acc: &ScoreAcc| DefScores {
            raw: acc.raw_incl.mean(),
            raw_std: acc.raw_incl.std(),
            norm: acc.norm_incl.mean(),
            norm_std: acc.norm_incl.std(),
            excl_raw: acc.raw_excl.mean(),
            excl_raw_std: acc.raw_excl.std(),
            excl_norm: acc.norm_excl.mean(),
            excl_norm_std: acc.norm_excl.std(),
            n_queries: acc.raw_incl.n as f64,
            gate_contact: acc.gate_contact.mean(),
            gate_free: acc.gate_free.mean(),
            degenerate: acc.degenerate as f64,
        };
        let g = |s: &[f64]| {
            s.iter().zip(&self.g_count).map(|(&v, &c)| if c == 0 { f64::NAN } else { v / c as f64 }).collect()
        };
        HeadMetrics {
            overlap: sc(&self.defs[0]),
            interval: sc(&self.defs[1]),
            auroc_interval: auroc(&self.pair_a, &self.pair_interval),
            auroc_excl_interval: auroc(&self.pair_a_excl, &self.pair_interval),
            auroc_overlap: auroc(&self.pair_a, &self.pair_overlap),
            auroc_excl_overlap: auroc(&self.pair_a_excl, &self.pair_overlap),
            entropy: self.entropy.mean(),
            entropy_std: self.entropy.std(),
            self_attn: self.self_attn.mean(),
            g: g(&self.g_sum),
            g_excl: g(&self.g_excl_sum),
            g_count: self.g_count.clone(),
        }
    }
}

/// Scores for one partner definition (means over queries with ≥ 1 partner).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DefScores {
    /// Attention mass on partners, self counted: S_i = Σ_{j∈C_i} a_ij.
    pub raw: f64,
    /// Standard deviation over queries of `raw`.
    pub raw_std: f64,
    /// (S_i − |C_i|/N) / (1 − |C_i|/N).
    pub norm: f64,
    /// Standard deviation over queries of `norm`.
    pub norm_std: f64,
    /// Self excluded: Σ_{j∈C_i} a_ij / (1 − a_ii).
    pub excl_raw: f64,
    /// Standard deviation over queries of `excl_raw`.
    pub excl_raw_std: f64,
    /// (S'_i − |C_i|/(N−1)) / (1 − |C_i|/(N−1)).
    pub excl_norm: f64,
    /// Standard deviation over queries of `excl_norm`.
    pub excl_norm_std: f64,
    /// Number of (frame, query) pairs with at least one partner.
    pub n_queries: f64,
    /// Gating signature: mean off-self mass 1 − a_ii for queries with partners…
    pub gate_contact: f64,
    /// …and for queries without.
    pub gate_free: f64,
    /// Queries with partners whose whole mass sat on themselves (self-excluded score undefined, skipped).
    pub degenerate: f64,
}

/// The summary of one head over the evaluation set.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadMetrics {
    /// Scores with partners overlapping at the input frame.
    pub overlap: DefScores,
    /// Scores with partners in contact during the predicted interval.
    pub interval: DefScores,
    /// AUROC of a_ij (i ≠ j) predicting "contact at some sub-step of the interval".
    pub auroc_interval: f64,
    /// Same with the self-excluded a'_ij = a_ij / (1 − a_ii).
    pub auroc_excl_interval: f64,
    /// AUROC of a_ij predicting overlap at the input frame.
    pub auroc_overlap: f64,
    /// Same with the self-excluded a'_ij.
    pub auroc_excl_overlap: f64,
    /// Mean attention entropy per query (nats) and its spread over queries.
    pub entropy: f64,
    /// Standard deviation over queries of the entropy.
    pub entropy_std: f64,
    /// Mean a_ii.
    pub self_attn: f64,
    /// g_h(r): mean of N·a_ij per distance bin (NaN for empty bins).
    pub g: Vec<f64>,
    /// Self-excluded g: mean of (N−1)·a'_ij per bin.
    pub g_excl: Vec<f64>,
    /// Pairs per bin.
    pub g_count: Vec<u64>,
}

impl HeadMetrics {
    /// Keys of the scalar series, in the order of [`HeadMetrics::scalars`].
    pub fn scalar_names() -> Vec<SeriesKey> {
        let mut v = Vec::new();
        for def in ContactDef::ALL {
            v.extend(SeriesKey::def_fields(def == ContactDef::Interval));
        }
        v.extend([
            SeriesKey::AurocInterval,
            SeriesKey::AurocExclInterval,
            SeriesKey::AurocOverlap,
            SeriesKey::AurocExclOverlap,
            SeriesKey::Entropy,
            SeriesKey::EntropyStd,
            SeriesKey::SelfAttn,
        ]);
        v
    }
    /// The scalar values, in the order of [`HeadMetrics::scalar_names`].
    pub fn scalars(&self) -> Vec<f64> {
        let mut v = Vec::new();
        for s in [&self.overlap, &self.interval] {
            v.extend([
                s.raw,
                s.raw_std,
                s.norm,
                s.norm_std,
                s.excl_raw,
                s.excl_raw_std,
                s.excl_norm,
                s.excl_norm_std,
                s.n_queries,
                s.gate_contact,
                s.gate_free,
                s.degenerate,
            ]);
        }
        v.extend([
            self.auroc_interval,
            self.auroc_excl_interval,
            self.auroc_overlap,
            self.auroc_excl_overlap,
            self.entropy,
            self.entropy_std,
            self.self_attn,
        ]);
        v
    }
}

/// Exact rank-based AUROC (Mann–Whitney U / (n_pos · n_neg)); tied scores get
/// mid-ranks, so a constant predictor scores exactly 0.5. NaN when there are
/// no positives or no negatives.
pub fn auroc(scores: &[f32], labels: &[bool]) -> f64 {
    assert_eq!(scores.len(), labels.len());
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return f64::NAN;
    }
    // (score, label) pairs sorted in place: contiguous, unlike an index sort
    // that looks every comparison up in `scores`.
    let mut sl: Vec<(f32, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    sl.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_pos = 0f64;
    let mut k = 0;
    while k < sl.len() {
        let mut e = k + 1;
        while e < sl.len() && sl[e].0 == sl[k].0 {
            e += 1;
        }
        // ranks k+1 ..= e share the mid-rank
        let mid = (k + 1 + e) as f64 / 2.0;
        let pos = sl[k..e].iter().filter(|t| t.1).count();
        rank_sum_pos += mid * pos as f64;
        k = e;
    }
    let np = n_pos as f64;
    (rank_sum_pos - np * (np + 1.0) / 2.0) / (np * n_neg as f64)
}

/// Accumulators for every layer × head.
#[derive(Debug, Clone)]
pub struct ProbeAccum {
    /// Layers of the model.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    heads: Vec<HeadAccum>,
}

impl ProbeAccum {
    /// Empty accumulators for `n_layers` × `n_heads` heads and g(r) bin edges `edges`.
    pub fn new(n_layers: usize, n_heads: usize, edges: &[f32]) -> Self {
        Self { n_layers, n_heads, heads: (0..n_layers * n_heads).map(|_| HeadAccum::new(edges)).collect() }
    }
    /// Add one frame of one layer: `att` is `[H, N, N]`.
    pub fn add_layer_frame(&mut self, layer: usize, att: &[f32], geom: &FrameGeom) {
        let nn = geom.n * geom.n;
        assert_eq!(att.len(), self.n_heads * nn, "attention must be [H, N, N]");
        for h in 0..self.n_heads {
            self.heads[layer * self.n_heads + h].add_frame(&att[h * nn..(h + 1) * nn], geom);
        }
    }
    /// Per head metrics, index `layer * n_heads + head`.
    pub fn finish(&self) -> Vec<HeadMetrics> {
        use rayon::prelude::*;
        self.heads.par_iter().map(|h| h.finish()).collect()
    }
    /// The self-excluded attention a'_ij of head `k` (= `layer * n_heads +
    /// head`) on every ordered pair i ≠ j seen so far, frame by frame, query
    /// by query (the order of [`crate::baselines::PairTable`]).
    pub fn pair_attention_excl(&self, k: usize) -> &[f32] {
        self.heads.get(k).map_or(&[], |h| h.pair_attention_excl())
    }
}

/// The least number of pairs a g(r) bin must hold for its value to be
/// shown as data or to count for the peak; sparser neighbouring bins are
/// merged ([`merge_sparse_bins`]). With N·a'_ij spread over queries of
/// order 1, 200 pairs put the bin mean's standard error near 0.1 of the
/// spread.
pub const G_MIN_PAIRS: u64 = 200;

/// g(r) on bins that each hold at least a minimum of pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedG {
    /// Bin edges (a subset of the original ones).
    pub edges: Vec<f32>,
    /// Per merged bin, the lower edge of its first original bin that holds
    /// pairs (where its data start: a bin merged from empty bins below
    /// contact and a few pairs just below 1 starts near 1, not at 0).
    pub lo: Vec<f32>,
    /// Pair-weighted mean of g over the merged bins (NaN: no pairs).
    pub g: Vec<f64>,
    /// Pairs per merged bin.
    pub count: Vec<u64>,
}

impl MergedG {
    /// The bin (index) where g peaks, among bins with at least `min` pairs.
    pub fn peak(&self, min: u64) -> Option<usize> {
        (0..self.g.len())
            .filter(|&b| self.count[b] >= min && self.g[b].is_finite())
            .max_by(|&x, &y| self.g[x].total_cmp(&self.g[y]))
    }
}

/// Merge neighbouring g(r) bins from the left until each holds at least
/// `min` pairs (a remainder too small at the right end joins the last full
/// bin); g of a merged bin is the pair-weighted mean of its parts. The
/// counts depend only on geometry, so every head and checkpoint of a run
/// gets the same merged edges.
pub fn merge_sparse_bins(edges: &[f32], g: &[f64], count: &[u64], min: u64) -> MergedG {
    let nb = g.len().min(count.len()).min(edges.len().saturating_sub(1));
    let mut out = MergedG { edges: vec![], lo: vec![], g: vec![], count: vec![] };
    if nb == 0 {
        return out;
    }
    out.edges.push(edges[0]);
    let (mut sum, mut cnt) = (0f64, 0u64);
    let mut lo: Option<f32> = None;
    for b in 0..nb {
        if count[b] > 0 && g[b].is_finite() {
            sum += g[b] * count[b] as f64;
            cnt += count[b];
            lo.get_or_insert(edges[b]);
        }
        if cnt >= min.max(1) {
            out.edges.push(edges[b + 1]);
            out.lo.push(lo.take().unwrap_or(edges[b]));
            out.g.push(sum / cnt as f64);
            out.count.push(cnt);
            sum = 0.0;
            cnt = 0;
        }
    }
    let last_edge = edges[nb];
    if out.g.is_empty() {
        out.edges.push(last_edge);
        out.lo.push(lo.unwrap_or(edges[0]));
        out.g.push(if cnt > 0 { sum / cnt as f64 } else { f64::NAN });
        out.count.push(cnt);
    } else if *out.edges.last().unwrap_or(&last_edge) < last_edge {
        let k = out.g.len() - 1;
        let c0 = out.count[k];
        if cnt > 0 {
            out.g[k] = (out.g[k] * c0 as f64 + sum) / (c0 + cnt) as f64;
        }
        out.count[k] = c0 + cnt;
        if let Some(e) = out.edges.last_mut() {
            *e = last_edge;
        }
    }
    out
}

/// Build the record of one checkpoint.
pub fn step_record(step: u64, metrics: &[HeadMetrics], patterns: Vec<f32>) -> StepRecord {
    let names = HeadMetrics::scalar_names();
    let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(metrics.len()); names.len()];
    for m in metrics {
        for (col, v) in columns.iter_mut().zip(m.scalars()) {
            col.push(v);
        }
    }
    let series: BTreeMap<String, Vec<f64>> = names.iter().map(|k| k.name().to_string()).zip(columns).collect();
    StepRecord {
        step,
        series,
        g: metrics.iter().flat_map(|m| m.g.iter().copied()).collect(),
        g_excl: metrics.iter().flat_map(|m| m.g_excl.iter().copied()).collect(),
        g_count: metrics.iter().flat_map(|m| m.g_count.iter().copied()).collect(),
        patterns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A row of 8 particles on a line, spaced so that neighbours (0,1), (2,3),
    /// (4,5) overlap; the rest are far apart.
    fn geom() -> (Vec<f32>, Vec<f32>, FrameGeom) {
        let pos: Vec<f32> = vec![0.0, 0.9, 5.0, 5.95, 10.0, 10.5, 20.0, 30.0];
        let radii = vec![0.5f32; 8];
        let mut interval = ContactSet::empty(8);
        interval.insert(0, 1);
        interval.insert(2, 3);
        interval.insert(4, 5);
        interval.insert(6, 7); // collides later in the interval
        let g = FrameGeom::new(&pos, &radii, 1, 1.0, interval);
        (pos, radii, g)
    }

    #[test]
    fn overlap_detects_pairs() {
        let (_, _, g) = geom();
        assert_eq!(g.overlap.pairs(), vec![(0, 1), (2, 3), (4, 5)]);
        assert_eq!(g.interval.n_pairs(), 4);
    }

    #[test]
    fn attention_only_on_contacts_scores_one() {
        let (_, _, g) = geom();
        let n = 8;
        for def in ContactDef::ALL {
            let cs = g.contacts(def);
            let mut att = vec![0f32; n * n];
            for i in 0..n {
                let deg = cs.degree(i);
                for j in 0..n {
                    att[i * n + j] = if deg == 0 {
                        if i == j {
                            1.0
                        } else {
                            0.0
                        }
                    } else if cs.contains(i, j) {
                        1.0 / deg as f32
                    } else {
                        0.0
                    };
                }
            }
            let mut acc = HeadAccum::new(&default_g_edges());
            acc.add_frame(&att, &g);
            let m = acc.finish();
            let s = if def == ContactDef::Overlap { m.overlap } else { m.interval };
            assert!((s.raw - 1.0).abs() < 1e-6, "{def:?} {s:?}");
            assert!((s.norm - 1.0).abs() < 1e-6, "{def:?} {s:?}");
            assert!((s.excl_norm - 1.0).abs() < 1e-6, "{def:?} {s:?}");
            assert!(s.norm_std < 1e-6);
            let au = if def == ContactDef::Overlap { m.auroc_overlap } else { m.auroc_interval };
            assert!((au - 1.0).abs() < 1e-12, "{def:?} auroc {au}");
        }
    }

    #[test]
    fn uniform_attention_scores_zero_and_flat_g() {
        let (_, _, g) = geom();
        let n = 8;
        let att = vec![1.0 / n as f32; n * n];
        let mut acc = HeadAccum::new(&default_g_edges());
        acc.add_frame(&att, &g);
        let m = acc.finish();
        for s in [m.overlap, m.interval] {
            assert!(s.norm.abs() < 1e-6, "{s:?}");
            assert!(s.excl_norm.abs() < 1e-6, "{s:?}");
            assert!((s.gate_contact - 7.0 / 8.0).abs() < 1e-6);
        }
        let mut nonempty = 0;
        for (k, (&gv, &ge)) in m.g.iter().zip(&m.g_excl).enumerate() {
            if m.g_count[k] > 0 {
                nonempty += 1;
                assert!((gv - 1.0).abs() < 1e-5, "bin {k}: {gv}");
                assert!((ge - 1.0).abs() < 1e-5, "bin {k}: {ge}");
            } else {
                assert!(gv.is_nan());
            }
        }
        assert!(nonempty >= 4);
        assert!((m.entropy - (n as f64).ln()).abs() < 1e-5);
        assert!((m.auroc_interval - 0.5).abs() < 1e-12, "ties give 0.5");
    }

    #[test]
    fn self_parking_head_is_seen_only_self_excluded() {
        // 90 % on self; the remaining 10 % all on partners when in contact,
        // spread uniformly over the others otherwise.
        let (_, _, g) = geom();
        let n = 8;
        let cs = &g.overlap;
        let mut att = vec![0f32; n * n];
        for i in 0..n {
            att[i * n + i] = 0.9;
            let deg = cs.degree(i);
            for j in 0..n {
                if j == i {
                    continue;
                }
                att[i * n + j] = if deg > 0 {
                    if cs.contains(i, j) {
                        0.1 / deg as f32
                    } else {
                        0.0
                    }
                } else {
                    0.1 / (n - 1) as f32
                };
            }
        }
        let mut acc = HeadAccum::new(&default_g_edges());
        acc.add_frame(&att, &g);
        let m = acc.finish();
        assert!((m.overlap.excl_norm - 1.0).abs() < 1e-5, "{:?}", m.overlap);
        assert!(m.overlap.norm < 0.1, "self-inclusive score hides it: {:?}", m.overlap);
        assert!((m.overlap.gate_contact - 0.1).abs() < 1e-6);
        assert!((m.overlap.gate_free - 0.1).abs() < 1e-6);
        assert!((m.self_attn - 0.9).abs() < 1e-6);
        // g peaks inside contact distance.
        let e = default_g_edges();
        let kmax = (0..m.g.len()).filter(|&k| m.g_count[k] > 0).max_by(|&a, &b| m.g[a].total_cmp(&m.g[b])).unwrap();
        assert!(e[kmax + 1] <= 1.0, "peak bin [{}, {})", e[kmax], e[kmax + 1]);
    }

    #[test]
    fn auroc_perfect_reversed_random_and_ties() {
        let scores = [0.1f32, 0.2, 0.3, 0.8, 0.9];
        let labels = [false, false, false, true, true];
        assert_eq!(auroc(&scores, &labels), 1.0);
        let rev: Vec<bool> = labels.iter().map(|&l| !l).collect();
        assert_eq!(auroc(&scores, &rev), 0.0);
        // One tie between a positive and a negative counts one half.
        let s2 = [0.1f32, 0.5, 0.5, 0.9];
        let l2 = [false, false, true, true];
        assert!((auroc(&s2, &l2) - (3.5 / 4.0)).abs() < 1e-12);
        assert!(auroc(&s2, &[false; 4]).is_nan());
        // Random scores: close to 0.5.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let s: Vec<f32> = (0..20000).map(|_| rng.gen()).collect();
        let l: Vec<bool> = (0..20000).map(|_| rng.gen_bool(0.3)).collect();
        let a = auroc(&s, &l);
        assert!((a - 0.5).abs() < 0.02, "{a}");
        // Brute force agreement on a small random case with ties.
        let s: Vec<f32> = (0..200).map(|_| (rng.gen_range(0..10) as f32) / 10.0).collect();
        let l: Vec<bool> = (0..200).map(|_| rng.gen_bool(0.4)).collect();
        let mut u = 0.0;
        let (mut np, mut nn) = (0.0, 0.0);
        for a in 0..200 {
            if !l[a] {
                continue;
            }
            np += 1.0;
            for b in 0..200 {
                if l[b] {
                    continue;
                }
                u += if s[a] > s[b] {
                    1.0
                } else if s[a] == s[b] {
                    0.5
                } else {
                    0.0
                };
            }
        }
        for &x in &l {
            if !x {
                nn += 1.0;
            }
        }
        assert!((auroc(&s, &l) - u / (np * nn)).abs() < 1e-12);
    }

    #[test]
    fn sparse_g_bins_merge_and_the_peak_needs_support() {
        let edges = [0.0f32, 0.5, 0.9, 1.0, 1.1, 2.0, 5.0];
        // A spike of 9 in a bin of 3 pairs must not be the peak.
        let g = [f64::NAN, 9.0, 2.0, 1.5, 1.0, 0.8];
        let count = [0u64, 3, 100, 150, 400, 30];
        let m = merge_sparse_bins(&edges, &g, &count, 100);
        assert_eq!(m.edges, vec![0.0, 1.0, 1.1, 5.0]);
        assert_eq!(m.lo, vec![0.5, 1.0, 1.1], "the first bin's data start at 0.5, not 0");
        assert_eq!(m.count, vec![103, 150, 430]);
        assert!((m.g[0] - (9.0 * 3.0 + 2.0 * 100.0) / 103.0).abs() < 1e-12);
        assert!((m.g[2] - (1.0 * 400.0 + 0.8 * 30.0) / 430.0).abs() < 1e-12);
        assert_eq!(m.peak(100), Some(0));
        assert_eq!(m.peak(200), Some(2));
        // Counts and values are conserved.
        assert_eq!(m.count.iter().sum::<u64>(), count.iter().sum::<u64>());
        let total: f64 = g.iter().zip(&count).filter(|(v, _)| v.is_finite()).map(|(v, &c)| v * c as f64).sum();
        let merged: f64 = m.g.iter().zip(&m.count).map(|(v, &c)| v * c as f64).sum();
        assert!((total - merged).abs() < 1e-9);
        // Too few pairs overall: one bin.
        let m = merge_sparse_bins(&edges, &g, &count, 10_000);
        assert_eq!((m.edges.len(), m.count[0]), (2, 683));
    }

    #[test]
    fn probe_accum_splits_heads() {
        let (_, _, g) = geom();
        let n = 8;
        let uniform = vec![1.0 / n as f32; n * n];
        let mut ident = vec![0f32; n * n];
        for i in 0..n {
            ident[i * n + i] = 1.0;
        }
        let att: Vec<f32> = uniform.iter().chain(ident.iter()).copied().collect();
        let mut p = ProbeAccum::new(1, 2, &default_g_edges());
        p.add_layer_frame(0, &att, &g);
        let m = p.finish();
        assert!(m[0].overlap.norm.abs() < 1e-6);
        assert!((m[1].self_attn - 1.0).abs() < 1e-9);
        // Fully self-attending head: the self-excluded score is undefined for every contact query.
        assert_eq!(m[1].overlap.degenerate, m[1].overlap.n_queries);
        assert!(m[1].overlap.excl_norm.is_nan());
        assert_eq!(HeadMetrics::scalar_names().len(), m[0].scalars().len());
    }
}
