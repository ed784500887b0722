//! Causal tests of heads, the tch-free half: the ablation kinds and targets,
//! the per-frame error sums and their cluster-bootstrap intervals, the
//! geometry-only replacement patterns, the counterfactual "partner moved out
//! of reach" frames of activation patching, the choice of checkpoints, and
//! the `RUN/ablation.h5` format. The driver that runs the model with hooks is
//! `headlab_probe::ablate`; the figures are in [`plot`].
//!
//! ```text
//! /                     attrs: kind="analysis", ablation=1, format_version, config (options, TOML),
//!                              n_layers, n_heads, n_eval_frames, n_clusters, cluster_unit,
//!                              targets, target_heads, kinds (newline-separated)
//! /steps                [S] u64   checkpoints ablated, increasing
//! /onestep/<metric>     [S, T, K, 3] f64  (estimate, CI low, CI high) per step, target, kind
//! /intact/<metric>      [S, 3] f64        the unablated model's errors
//! /rollout              attrs: step, n_rollouts; <metric> [T, K, 3], intact_<h> [3]
//! /patching             attrs: step, n_pairs, sites (newline-separated), median_gap, median_true_dv
//!                       denoise [P, 3], noise [P, 3]
//! ```
//! Metrics of `/onestep`: see [`ONESTEP_METRICS`]; of `/rollout`: [`ROLLOUT_METRICS`].

pub mod plot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use headlab_store::h5util::{
    atomic_write, get_attr, get_str_attr, open_kind, read_array, set_attr, set_str_attr, write_array, Ctx,
};
use headlab_store::FileKind;
use rand::{Rng, SeedableRng};

use crate::metrics::ContactSet;
use crate::{AnalysisError, Result};

// ---------------------------------------------------------------------------
// Kinds and targets
// ---------------------------------------------------------------------------

/// How a head is ablated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The head's output `hook_z` set to 0.
    Zero,
    /// `hook_z` replaced by its mean over training frames and particles.
    Mean,
    /// `hook_z` taken from the intact model on another evaluation frame.
    Resample,
    /// The pattern replaced by the identity: the query attends only to itself.
    OffSelf,
    /// The head keeps a_ii; its off-self attention follows the head's own
    /// average attention against distance (fitted on training frames).
    GeoDistance,
    /// Like `GeoDistance`, on distance and the distance after one frame of
    /// free flight (distance and approach rate).
    GeoApproach,
    /// The head keeps a_ii; a query's off-self attention goes evenly to its
    /// true contact partners of the interval (queries without partner keep
    /// the head's own attention).
    Oracle,
}

/// Every kind, in storage order.
pub const ALL_KINDS: [Kind; 7] =
    [Kind::Zero, Kind::Mean, Kind::Resample, Kind::OffSelf, Kind::GeoDistance, Kind::GeoApproach, Kind::Oracle];

impl Kind {
    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Zero => "zero",
            Kind::Mean => "mean",
            Kind::Resample => "resample",
            Kind::OffSelf => "off-self",
            Kind::GeoDistance => "geo-distance",
            Kind::GeoApproach => "geo-approach",
            Kind::Oracle => "oracle",
        }
    }
    /// Parse a kind name.
    pub fn parse(s: &str) -> Option<Kind> {
        ALL_KINDS.into_iter().find(|k| k.name() == s)
    }
    /// Whether the kind replaces the pattern (rather than the head's output z).
    pub fn is_pattern(self) -> bool {
        matches!(self, Kind::OffSelf | Kind::GeoDistance | Kind::GeoApproach | Kind::Oracle)
    }
    /// Which question the kind answers (for help texts and the report).
    pub fn question(self) -> &'static str {
        match self {
            Kind::Zero => "is the head's output needed at all? (also removes the query's copy of its own state)",
            Kind::Mean => "is the frame-specific part of the head's output needed? (keeps its average contribution)",
            Kind::Resample => "does the head's output have to come from this frame? (an in-distribution output of another frame)",
            Kind::OffSelf => "is what the head reads from other particles needed? (keeps the self-copy, drops all off-self attention)",
            Kind::GeoDistance => "can a pattern built from distance alone do the head's off-self job?",
            Kind::GeoApproach => "can a pattern built from distance and approach rate do the head's off-self job?",
            Kind::Oracle => "does sending a contact query's off-self attention exactly to its true partners do the job as well (the best possible selection; free queries keep the head's own attention)?",
        }
    }
}

/// Parse a comma-separated list of kinds; errors name the bad one and list the valid ones.
pub fn parse_kinds(s: &str) -> Result<Vec<Kind>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let k = Kind::parse(part).ok_or_else(|| AnalysisError::Config {
            key: "kinds".into(),
            value: part.into(),
            hint: format!("unknown ablation kind; the kinds are {}", ALL_KINDS.map(|k| k.name()).join(", ")),
        })?;
        if !out.contains(&k) {
            out.push(k);
        }
    }
    if out.is_empty() {
        return Err(AnalysisError::Config {
            key: "kinds".into(),
            value: s.into(),
            hint: "name at least one kind".into(),
        });
    }
    out.sort();
    Ok(out)
}

/// Parse a head name `L1.H2`, `l1h2` or `1.2` into (layer, head), checked against the model size.
pub fn parse_head(s: &str, n_layers: usize, n_heads: usize) -> Result<(usize, usize)> {
    let bad = |hint: String| AnalysisError::Config { key: "head".into(), value: s.into(), hint };
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_prefix('l').unwrap_or(&t);
    let (a, b) =
        t.split_once(['.', 'h']).ok_or_else(|| bad("write a head as L<layer>.H<head>, e.g. L1.H1 (or 1.1)".into()))?;
    let b = b.strip_prefix('h').unwrap_or(b);
    let (l, h): (usize, usize) = match (a.parse(), b.parse()) {
        (Ok(l), Ok(h)) => (l, h),
        _ => return Err(bad("write a head as L<layer>.H<head>, e.g. L1.H1 (or 1.1)".into())),
    };
    if l >= n_layers || h >= n_heads {
        return Err(bad(format!(
            "the model has {n_layers} layers × {n_heads} heads (L0.H0 … L{}.H{})",
            n_layers.saturating_sub(1),
            n_heads.saturating_sub(1)
        )));
    }
    Ok((l, h))
}

/// What is ablated at once: one head, one layer's heads, or a group of heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `L1.H2`, `L1` (all heads of layer 1) or `collision` (the group).
    pub name: String,
    /// (layer, head) pairs ablated together.
    pub heads: Vec<(usize, usize)>,
}

/// Every head, every layer, and (if not empty) the group `collision`.
pub fn default_targets(n_layers: usize, n_heads: usize, group: &[(usize, usize)]) -> Vec<Target> {
    let mut t: Vec<Target> = (0..n_layers)
        .flat_map(|l| (0..n_heads).map(move |h| Target { name: head_name(l, h), heads: vec![(l, h)] }))
        .collect();
    t.extend((0..n_layers).map(|l| Target { name: format!("L{l}"), heads: (0..n_heads).map(|h| (l, h)).collect() }));
    if !group.is_empty() {
        t.push(Target { name: "collision".into(), heads: group.to_vec() });
    }
    t
}

/// `L{l}.H{h}`.
pub fn head_name(l: usize, h: usize) -> String {
    format!("L{l}.H{h}")
}

// ---------------------------------------------------------------------------
// Errors per frame and bootstrap intervals
// ---------------------------------------------------------------------------

/// One evaluation frame's error sums under one condition (intact or ablated).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FrameSums {
    /// Sum over particles in contact with another particle during the
    /// predicted interval of their one-step squared error (mean over output components, normalized units).
    pub contact_se: f64,
    /// Number of such particles.
    pub contact_n: f64,
    /// The same for the other ("free") particles (wall contacts count as free).
    pub free_se: f64,
    /// Number of free particles.
    pub free_n: f64,
    /// Sum over contact pairs of |(Δv_i − Δv_j)_pred − (Δv_i − Δv_j)_true|² (physical units).
    pub dv_se: f64,
    /// Number of contact pairs.
    pub dv_n: f64,
}

/// Error sums of one frame. `sq_err` [N]: per-particle mean squared error
/// over output components; `dv_pred`, `dv_true` [N·D]: velocity changes
/// (physical); `contacts`: particle pairs in contact during the interval.
pub fn frame_sums(sq_err: &[f32], dv_pred: &[f32], dv_true: &[f32], contacts: &ContactSet, dim: usize) -> FrameSums {
    let n = sq_err.len();
    let mut s = FrameSums::default();
    for (i, &e) in sq_err.iter().enumerate() {
        if contacts.degree(i) > 0 {
            s.contact_se += e as f64;
            s.contact_n += 1.0;
        } else {
            s.free_se += e as f64;
            s.free_n += 1.0;
        }
    }
    for (i, j) in contacts.pairs() {
        if i >= n || j >= n {
            continue;
        }
        let e: f64 = (0..dim)
            .map(|a| {
                let p = dv_pred[i * dim + a] as f64 - dv_pred[j * dim + a] as f64;
                let t = dv_true[i * dim + a] as f64 - dv_true[j * dim + a] as f64;
                (p - t) * (p - t)
            })
            .sum();
        s.dv_se += e;
        s.dv_n += 1.0;
    }
    s
}

/// An estimate with a 95 % percentile-bootstrap interval (NaN bounds: the
/// interval is unreliable, e.g. too many resamples were undefined).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Est {
    /// Point estimate on all data.
    pub value: f64,
    /// 2.5 % quantile of the bootstrap distribution.
    pub lo: f64,
    /// 97.5 % quantile.
    pub hi: f64,
}

impl Est {
    /// An undefined estimate.
    pub const NAN: Est = Est { value: f64::NAN, lo: f64::NAN, hi: f64::NAN };
    /// As stored: [value, lo, hi].
    pub fn to_array(self) -> [f64; 3] {
        [self.value, self.lo, self.hi]
    }
    /// From [value, lo, hi].
    pub fn from_slice(v: &[f64]) -> Est {
        Est {
            value: v.first().copied().unwrap_or(f64::NAN),
            lo: v.get(1).copied().unwrap_or(f64::NAN),
            hi: v.get(2).copied().unwrap_or(f64::NAN),
        }
    }
    /// Whether the interval excludes `x` (false when the interval is undefined).
    pub fn excludes(self, x: f64) -> bool {
        self.lo.is_finite() && self.hi.is_finite() && (self.lo > x || self.hi < x)
    }
}

/// A cluster bootstrap: resamples of whole clusters (evaluation trajectories:
/// frames of one trajectory are not independent), held as per-frame weights
/// so that every statistic of one call uses the same resamples (paired).
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// [resamples][frames] multiplicity of each frame.
    pub weights: Vec<Vec<f64>>,
    /// Number of distinct clusters.
    pub n_clusters: usize,
}

impl Bootstrap {
    /// `cluster[f]`: the cluster of frame f (any labels); `b` resamples drawn with `seed`.
    pub fn new(cluster: &[usize], b: usize, seed: u64) -> Bootstrap {
        let mut labels: Vec<usize> = cluster.to_vec();
        labels.sort_unstable();
        labels.dedup();
        let members: Vec<Vec<usize>> =
            labels.iter().map(|&c| (0..cluster.len()).filter(|&f| cluster[f] == c).collect()).collect();
        let k = members.len();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xB007);
        let weights = (0..b)
            .map(|_| {
                let mut w = vec![0.0; cluster.len()];
                if k > 0 {
                    for _ in 0..k {
                        for &f in &members[rng.gen_range(0..k)] {
                            w[f] += 1.0;
                        }
                    }
                }
                w
            })
            .collect();
        Bootstrap { weights, n_clusters: k }
    }

    /// The statistic on all frames (weights 1) and its 95 % percentile interval.
    /// Bounds are NaN when fewer than 2 clusters exist or over 5 % of the
    /// resamples give a non-finite value.
    pub fn estimate(&self, stat: impl Fn(&[f64]) -> f64) -> Est {
        let n = self.weights.first().map(|w| w.len()).unwrap_or(0);
        let value = stat(&vec![1.0; n]);
        if self.n_clusters < 2 || self.weights.is_empty() || !value.is_finite() {
            return Est { value, lo: f64::NAN, hi: f64::NAN };
        }
        let mut v: Vec<f64> = self.weights.iter().map(|w| stat(w)).collect();
        let total = v.len();
        v.retain(|x| x.is_finite());
        if (v.len() as f64) < 0.95 * total as f64 {
            return Est { value, lo: f64::NAN, hi: f64::NAN };
        }
        v.sort_by(f64::total_cmp);
        Est { value, lo: quantile(&v, 0.025), hi: quantile(&v, 0.975) }
    }
}

/// Linear-interpolated quantile of sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let x = q * (sorted.len() - 1) as f64;
    let (i, f) = (x.floor() as usize, x - x.floor());
    if i + 1 < sorted.len() {
        sorted[i] * (1.0 - f) + sorted[i + 1] * f
    } else {
        sorted[i]
    }
}

/// Σ w·num / Σ w·den.
pub fn weighted_ratio(w: &[f64], num: &[f64], den: &[f64]) -> f64 {
    let a: f64 = w.iter().zip(num).map(|(w, x)| w * x).sum();
    let b: f64 = w.iter().zip(den).map(|(w, x)| w * x).sum();
    a / b
}

/// The one-step metrics of an ablation against the intact model, in storage order.
pub const ONESTEP_METRICS: [&str; 8] =
    ["contact_ratio", "free_ratio", "selectivity", "dv_ratio", "contact_mse", "free_mse", "dv_mse", "share_of_offself"];

/// The one-step effects of one ablation, each with a cluster-bootstrap CI:
/// `contact_ratio` = ablated / intact MSE of contact particles, `free_ratio`
/// the same for free particles, `selectivity` = contact_ratio / free_ratio,
/// `dv_ratio` = ablated / intact error of the contact pairs' velocity-change
/// difference, the ablated MSEs themselves, and (for pattern replacements,
/// when `offself` is given) `share_of_offself` = (E_offself − E) / (E_offself − E_intact)
/// on contact particles: the share of the off-self ablation's damage that
/// the replacement pattern repairs (1: all, 0: none).
pub fn onestep_effects(
    boot: &Bootstrap,
    intact: &[FrameSums],
    abl: &[FrameSums],
    offself: Option<&[FrameSums]>,
) -> BTreeMap<&'static str, Est> {
    let col = |s: &[FrameSums], f: fn(&FrameSums) -> f64| -> Vec<f64> { s.iter().map(f).collect() };
    let (ic, icn, ifr, ifn, idv, idn) = (
        col(intact, |s| s.contact_se),
        col(intact, |s| s.contact_n),
        col(intact, |s| s.free_se),
        col(intact, |s| s.free_n),
        col(intact, |s| s.dv_se),
        col(intact, |s| s.dv_n),
    );
    let (ac, af, adv) = (col(abl, |s| s.contact_se), col(abl, |s| s.free_se), col(abl, |s| s.dv_se));
    let mut m = BTreeMap::new();
    m.insert("contact_ratio", boot.estimate(|w| weighted_ratio(w, &ac, &ic)));
    m.insert("free_ratio", boot.estimate(|w| weighted_ratio(w, &af, &ifr)));
    m.insert("selectivity", boot.estimate(|w| weighted_ratio(w, &ac, &ic) / weighted_ratio(w, &af, &ifr)));
    m.insert("dv_ratio", boot.estimate(|w| weighted_ratio(w, &adv, &idv)));
    m.insert("contact_mse", boot.estimate(|w| weighted_ratio(w, &ac, &icn)));
    m.insert("free_mse", boot.estimate(|w| weighted_ratio(w, &af, &ifn)));
    m.insert("dv_mse", boot.estimate(|w| weighted_ratio(w, &adv, &idn)));
    let share = match offself {
        Some(o) => {
            let oc = col(o, |s| s.contact_se);
            boot.estimate(|w| {
                let (eo, e, ei) = (dot(w, &oc), dot(w, &ac), dot(w, &ic));
                // Undefined when the off-self ablation does no damage to repair.
                if eo - ei <= 0.0 {
                    f64::NAN
                } else {
                    (eo - e) / (eo - ei)
                }
            })
        }
        None => Est::NAN,
    };
    m.insert("share_of_offself", share);
    m
}

/// The intact model's errors: contact, free and contact-pair Δv MSE.
pub fn intact_errors(boot: &Bootstrap, intact: &[FrameSums]) -> BTreeMap<&'static str, Est> {
    let col = |f: fn(&FrameSums) -> f64| -> Vec<f64> { intact.iter().map(f).collect() };
    let (c, cn, fr, fnn, dv, dn) = (
        col(|s| s.contact_se),
        col(|s| s.contact_n),
        col(|s| s.free_se),
        col(|s| s.free_n),
        col(|s| s.dv_se),
        col(|s| s.dv_n),
    );
    let mut m = BTreeMap::new();
    m.insert("contact_mse", boot.estimate(|w| weighted_ratio(w, &c, &cn)));
    m.insert("free_mse", boot.estimate(|w| weighted_ratio(w, &fr, &fnn)));
    m.insert("dv_mse", boot.estimate(|w| weighted_ratio(w, &dv, &dn)));
    m
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Rollout metrics: ablated / intact mean squared position error after 10 and 50 frames.
pub const ROLLOUT_METRICS: [&str; 2] = ["pos_ratio_10", "pos_ratio_50"];
/// The rollout horizons of [`ROLLOUT_METRICS`].
pub const ROLLOUT_HORIZONS: [usize; 2] = [10, 50];

/// Fraction of the clean − corrupted difference that a patched run restores:
/// the projection ((patched − corrupted)·(clean − corrupted)) / |clean − corrupted|².
/// `None` when clean and corrupted agree exactly.
pub fn recovery(clean: &[f32], corrupted: &[f32], patched: &[f32]) -> Option<f64> {
    let mut num = 0.0;
    let mut den = 0.0;
    for ((c, k), p) in clean.iter().zip(corrupted).zip(patched) {
        let d = *c as f64 - *k as f64;
        num += (*p as f64 - *k as f64) * d;
        den += d * d;
    }
    (den > 0.0).then(|| num / den)
}

// ---------------------------------------------------------------------------
// Geometry-only patterns
// ---------------------------------------------------------------------------

/// A head's average off-self attention against geometry, learned from its
/// patterns on training frames: per bin of r = |x_i − x_j| / (r_i + r_j)
/// (and, 2D, of the same ratio after one frame of free flight), the mean of
/// a_ij / (1 − a_ii).
#[derive(Debug, Clone, PartialEq)]
pub struct GeoProfile {
    /// Bin edges of r (increasing).
    pub edges: Vec<f32>,
    sum1: Vec<f64>,
    cnt1: Vec<f64>,
    sum2: Vec<f64>,
    cnt2: Vec<f64>,
}

/// The two geometric features of pair (i, j): distance ratio now and after `dt` of free flight.
fn pair_features(pos: &[f32], vel: &[f32], radii: &[f32], dim: usize, dt: f32, i: usize, j: usize) -> (f32, f32) {
    let mut d0 = 0.0f32;
    let mut d1 = 0.0f32;
    for a in 0..dim {
        let x = pos[j * dim + a] - pos[i * dim + a];
        let v = vel[j * dim + a] - vel[i * dim + a];
        d0 += x * x;
        d1 += (x + v * dt) * (x + v * dt);
    }
    let s = (radii[i] + radii[j]).max(1e-12);
    (d0.sqrt() / s, d1.sqrt() / s)
}

fn bin_of(edges: &[f32], r: f32) -> usize {
    let nb = edges.len().saturating_sub(1).max(1);
    edges[1..].partition_point(|&e| e <= r).min(nb - 1)
}

impl GeoProfile {
    /// An empty profile on these edges (at least two).
    pub fn new(edges: &[f32]) -> GeoProfile {
        let b = edges.len().saturating_sub(1).max(1);
        GeoProfile {
            edges: edges.to_vec(),
            sum1: vec![0.0; b],
            cnt1: vec![0.0; b],
            sum2: vec![0.0; b * b],
            cnt2: vec![0.0; b * b],
        }
    }
    fn nb(&self) -> usize {
        self.cnt1.len()
    }
    /// Add one frame: `pattern` [N, N] of the head (query rows); state arrays [N·D], radii [N].
    pub fn add_frame(&mut self, pattern: &[f32], pos: &[f32], vel: &[f32], radii: &[f32], dim: usize, dt: f32) {
        let n = radii.len();
        let nb = self.nb();
        for i in 0..n {
            let off = 1.0 - pattern[i * n + i] as f64;
            if off <= 1e-9 {
                continue;
            }
            for j in (0..n).filter(|&j| j != i) {
                let (r0, r1) = pair_features(pos, vel, radii, dim, dt, i, j);
                let (b0, b1) = (bin_of(&self.edges, r0), bin_of(&self.edges, r1));
                let a = pattern[i * n + j] as f64 / off;
                self.sum1[b0] += a;
                self.cnt1[b0] += 1.0;
                self.sum2[b0 * nb + b1] += a;
                self.cnt2[b0 * nb + b1] += 1.0;
            }
        }
    }
    /// Mean normalized off-self attention in the distance bin of `r` (NaN if empty).
    pub fn value1(&self, r: f32) -> f64 {
        let b = bin_of(&self.edges, r);
        if self.cnt1[b] > 0.0 {
            self.sum1[b] / self.cnt1[b]
        } else {
            f64::NAN
        }
    }
    /// Mean in the (distance, distance after dt) cell; falls back to [`GeoProfile::value1`] on cells seen fewer than 5 times.
    pub fn value2(&self, r0: f32, r1: f32) -> f64 {
        let (b0, b1) = (bin_of(&self.edges, r0), bin_of(&self.edges, r1));
        let k = b0 * self.nb() + b1;
        if self.cnt2[k] >= 5.0 {
            self.sum2[k] / self.cnt2[k]
        } else {
            self.value1(r0)
        }
    }
}

/// Off-self weights [N, N] of a pattern replacement for one frame: zero
/// diagonal, rows summing to 1. `GeoDistance`/`GeoApproach` use `profile`;
/// `Oracle` uses `contacts`: evenly over the query's partners, and an
/// all-zero row for a query without partner (the driver then keeps the
/// head's own row: the oracle only changes where there is a contact).
/// Other rows whose weights are all zero or undefined become uniform over
/// the others. Other kinds give uniform rows.
#[allow(clippy::too_many_arguments)]
pub fn replacement_weights(
    kind: Kind,
    profile: Option<&GeoProfile>,
    contacts: Option<&ContactSet>,
    pos: &[f32],
    vel: &[f32],
    radii: &[f32],
    dim: usize,
    dt: f32,
) -> Vec<f32> {
    let n = radii.len();
    let mut w = vec![0f32; n * n];
    for i in 0..n {
        let row = &mut w[i * n..(i + 1) * n];
        for j in (0..n).filter(|&j| j != i) {
            let v = match (kind, profile, contacts) {
                (Kind::GeoDistance, Some(p), _) => p.value1(pair_features(pos, vel, radii, dim, dt, i, j).0),
                (Kind::GeoApproach, Some(p), _) => {
                    let (r0, r1) = pair_features(pos, vel, radii, dim, dt, i, j);
                    p.value2(r0, r1)
                }
                (Kind::Oracle, _, Some(c)) => {
                    if c.contains(i, j) {
                        1.0
                    } else {
                        0.0
                    }
                }
                _ => 1.0,
            };
            row[j] = if v.is_finite() && v > 0.0 { v as f32 } else { 0.0 };
        }
        let s: f32 = row.iter().sum();
        if s > 0.0 && s.is_finite() {
            row.iter_mut().for_each(|x| *x /= s);
        } else if n > 1 && kind != Kind::Oracle {
            for (j, x) in row.iter_mut().enumerate() {
                *x = if j == i { 0.0 } else { 1.0 / (n - 1) as f32 };
            }
        }
    }
    w
}

// ---------------------------------------------------------------------------
// Counterfactual frames for activation patching
// ---------------------------------------------------------------------------

/// The corrupted copy of a frame: particle `j` moved to the free spot
/// nearest its old position such that, over one frame of free flight at the
/// current velocities (doubled, as a margin), it touches neither any other
/// particle nor a wall, and no other particle's situation changes except
/// losing `j`. Velocities are unchanged. Candidates lie on a grid of
/// `grid` points per axis over the box. `None` if no spot qualifies.
#[allow(clippy::too_many_arguments)]
pub fn move_out_of_reach(
    pos: &[f32],
    vel: &[f32],
    radii: &[f32],
    dim: usize,
    box_size: &[f64],
    j: usize,
    dt: f32,
    grid: usize,
) -> Option<Vec<f32>> {
    let n = radii.len();
    let speed = |k: usize| (0..dim).map(|a| vel[k * dim + a] * vel[k * dim + a]).sum::<f32>().sqrt();
    let vj = speed(j);
    let g = grid.max(2);
    let total = g.pow(dim as u32);
    let mut best: Option<(f32, Vec<f32>)> = None;
    for idx in 0..total {
        let mut p = vec![0f32; dim];
        let mut rem = idx;
        for (a, pa) in p.iter_mut().enumerate() {
            let c = rem % g;
            rem /= g;
            let l = box_size.get(a).copied().unwrap_or(1.0) as f32;
            *pa = l * (c as f32 + 0.5) / g as f32;
        }
        // Walls: clear by the radius plus twice the flight.
        let wall_ok = (0..dim).all(|a| {
            let l = box_size.get(a).copied().unwrap_or(1.0) as f32;
            let m = radii[j] + 2.0 * vel[j * dim + a].abs() * dt;
            p[a] - m > 0.0 && p[a] + m < l
        });
        if !wall_ok {
            continue;
        }
        let clear = (0..n).filter(|&k| k != j).all(|k| {
            let d2: f32 = (0..dim).map(|a| (p[a] - pos[k * dim + a]).powi(2)).sum();
            d2.sqrt() > radii[j] + radii[k] + 2.0 * (vj + speed(k)) * dt
        });
        if !clear {
            continue;
        }
        let moved: f32 = (0..dim).map(|a| (p[a] - pos[j * dim + a]).powi(2)).sum();
        if best.as_ref().is_none_or(|b| moved < b.0) {
            best = Some((moved, p));
        }
    }
    best.map(|(_, p)| {
        let mut out = pos.to_vec();
        out[j * dim..(j + 1) * dim].copy_from_slice(&p);
        out
    })
}

/// Choose up to `max_pairs` patching pairs (eval index, query i, moved partner j):
/// at most one per frame, a contact pair of the interval chosen with `seed`.
pub fn choose_pairs(contacts: &[ContactSet], max_pairs: usize, seed: u64) -> Vec<(usize, usize, usize)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xA7C4);
    let mut out = Vec::new();
    for (f, c) in contacts.iter().enumerate() {
        let p = c.pairs();
        if p.is_empty() {
            continue;
        }
        let (a, b) = p[rng.gen_range(0..p.len())];
        let (i, j) = if rng.gen_bool(0.5) { (a, b) } else { (b, a) };
        out.push((f, i, j));
    }
    // Spread the kept pairs evenly over the frames.
    if out.len() > max_pairs && max_pairs > 0 {
        let k = out.len();
        out = (0..max_pairs).map(|m| out[m * k / max_pairs]).collect();
    }
    out
}

// ---------------------------------------------------------------------------
// Which checkpoints
// ---------------------------------------------------------------------------

/// The emergence window of a score series: from the first step where it has
/// risen 10 % of the way from its start to its maximum to the first where it
/// has risen 90 %. `None` without a rise.
pub fn emergence_window(steps: &[u64], score: &[f64]) -> Option<(u64, u64)> {
    let pts: Vec<(u64, f64)> = steps.iter().copied().zip(score.iter().copied()).filter(|p| p.1.is_finite()).collect();
    let first = pts.first()?.1;
    let max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if max.partial_cmp(&first) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let at = |q: f64| pts.iter().find(|p| p.1 >= first + q * (max - first)).map(|p| p.0);
    Some((at(0.1)?, at(0.9)?))
}

/// Up to `n` checkpoints of `all` (sorted): always the last; half of the rest
/// log-spaced over the whole run, the other half log-spaced inside `window`
/// (widened by a factor 1.5 each side); the remainder filled log-spaced.
pub fn choose_steps(all: &[u64], window: Option<(u64, u64)>, n: usize) -> Vec<u64> {
    if all.len() <= n {
        return all.to_vec();
    }
    let mut pick: Vec<u64> = Vec::new();
    if n == 0 {
        return pick;
    }
    let last = *all.last().unwrap_or(&0);
    pick.push(last);
    let nearest_log = |cands: &[u64], t: f64| -> Option<u64> {
        cands
            .iter()
            .copied()
            .min_by(|a, b| ((*a as f64 + 1.0).ln() - t).abs().total_cmp(&((*b as f64 + 1.0).ln() - t).abs()))
    };
    let log_spread = |cands: &[u64], k: usize, pick: &mut Vec<u64>| {
        if cands.is_empty() || k == 0 {
            return;
        }
        let (a, b) = ((cands[0] as f64 + 1.0).ln(), (*cands.last().unwrap_or(&0) as f64 + 1.0).ln());
        for m in 0..k {
            let t = if k == 1 { (a + b) / 2.0 } else { a + (b - a) * m as f64 / (k - 1) as f64 };
            let left: Vec<u64> = cands.iter().copied().filter(|s| !pick.contains(s)).collect();
            if let Some(s) = nearest_log(&left, t) {
                pick.push(s);
            }
        }
    };
    let rest = n - 1;
    if let Some((w0, w1)) = window {
        let (lo, hi) = (w0 as f64 / 1.5, w1 as f64 * 1.5);
        let inside: Vec<u64> = all.iter().copied().filter(|&s| s as f64 >= lo && s as f64 <= hi).collect();
        log_spread(&inside, rest / 2, &mut pick);
    }
    let k = n.saturating_sub(pick.len());
    log_spread(all, k, &mut pick);
    // Fill up if the spreads collided.
    while pick.len() < n {
        let left: Vec<u64> = all.iter().copied().filter(|s| !pick.contains(s)).collect();
        if left.is_empty() {
            break;
        }
        // The left-over step farthest (in log step) from every pick.
        let far = left.iter().copied().max_by(|a, b| {
            let d = |s: u64| {
                pick.iter()
                    .map(|&p| ((s as f64 + 1.0).ln() - (p as f64 + 1.0).ln()).abs())
                    .fold(f64::INFINITY, f64::min)
            };
            d(*a).total_cmp(&d(*b))
        });
        match far {
            Some(s) => pick.push(s),
            None => break,
        }
    }
    pick.sort_unstable();
    pick.dedup();
    pick
}

// ---------------------------------------------------------------------------
// RUN/ablation.h5
// ---------------------------------------------------------------------------

/// `RUN/ablation.h5`.
pub fn ablation_path(run: &Path) -> PathBuf {
    run.join("ablation.h5")
}

/// Rollouts with heads ablated, at one checkpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolloutResults {
    /// The checkpoint.
    pub step: u64,
    /// Number of rollouts (validation trajectories, from frame 0).
    pub n_rollouts: usize,
    /// metric → [T, K, 3].
    pub metrics: BTreeMap<String, Vec<f64>>,
    /// The intact model's mean squared position error at each horizon: [H, 3].
    pub intact: Vec<f64>,
}

/// Activation patching at one checkpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatchingResults {
    /// The checkpoint.
    pub step: u64,
    /// Counterfactual pairs used.
    pub n_pairs: usize,
    /// Patched sites: `L1.H2` (the head's hook_z at the query) or `L1.resid` (the residual stream after block 1, at the query).
    pub sites: Vec<String>,
    /// Clean activation into the corrupted run: share of the difference restored, [P, 3].
    pub denoise: Vec<f64>,
    /// Corrupted activation into the clean run: share of the difference destroyed, [P, 3].
    pub noise: Vec<f64>,
    /// Median |Δv_clean − Δv_corrupted| of the query (model, physical units).
    pub median_gap: f64,
    /// Median |Δv| of the query over the interval in the clean frame (ground truth), for scale.
    pub median_true_dv: f64,
}

/// Everything `headlab ablate` measured on a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ablation {
    /// Options as TOML.
    pub config_toml: String,
    /// Model size.
    pub n_layers: usize,
    /// Model size.
    pub n_heads: usize,
    /// Evaluation frames used.
    pub n_eval_frames: usize,
    /// Number of bootstrap clusters.
    pub n_clusters: usize,
    /// What the bootstrap clusters are ("evaluation trajectories").
    pub cluster_unit: String,
    /// What was ablated.
    pub targets: Vec<Target>,
    /// How.
    pub kinds: Vec<Kind>,
    /// Checkpoints, increasing.
    pub steps: Vec<u64>,
    /// metric → [S, T, K, 3].
    pub onestep: BTreeMap<String, Vec<f64>>,
    /// metric → [S, 3].
    pub intact: BTreeMap<String, Vec<f64>>,
    /// At the final checkpoint.
    pub rollout: Option<RolloutResults>,
    /// At the final checkpoint.
    pub patching: Option<PatchingResults>,
}

/// One checkpoint's one-step results.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AblationStep {
    /// The checkpoint.
    pub step: u64,
    /// metric → [T, K, 3].
    pub onestep: BTreeMap<String, Vec<f64>>,
    /// metric → [3].
    pub intact: BTreeMap<String, Vec<f64>>,
}

fn splice<T: Clone>(v: &mut Vec<T>, at: usize, items: &[T]) {
    let tail = v.split_off(at.min(v.len()));
    v.extend_from_slice(items);
    v.extend(tail);
}

impl Ablation {
    fn tk3(&self) -> usize {
        self.targets.len() * self.kinds.len() * 3
    }
    /// Whether `step` has one-step results.
    pub fn has_step(&self, step: u64) -> bool {
        self.steps.contains(&step)
    }
    /// Insert or replace a checkpoint (steps stay sorted).
    pub fn add_step(&mut self, s: AblationStep) -> Result<(), String> {
        let n = self.tk3();
        for m in ONESTEP_METRICS {
            match s.onestep.get(m) {
                Some(v) if v.len() == n => {}
                Some(v) => {
                    return Err(format!(
                        "step {}: `{m}` has {} values, expected {n} (targets × kinds × 3)",
                        s.step,
                        v.len()
                    ))
                }
                None => return Err(format!("step {}: metric `{m}` missing", s.step)),
            }
        }
        if let Some(i) = self.steps.iter().position(|&x| x == s.step) {
            self.steps.remove(i);
            for v in self.onestep.values_mut() {
                v.drain(i * n..(i + 1) * n);
            }
            for v in self.intact.values_mut() {
                v.drain(i * 3..(i + 1) * 3);
            }
        }
        let i = self.steps.partition_point(|&x| x < s.step);
        self.steps.insert(i, s.step);
        for m in ONESTEP_METRICS {
            let v = s.onestep.get(m).cloned().unwrap_or_default();
            splice(self.onestep.entry(m.into()).or_default(), i * n, &v);
        }
        for m in ["contact_mse", "free_mse", "dv_mse"] {
            let v = s.intact.get(m).cloned().unwrap_or_else(|| vec![f64::NAN; 3]);
            splice(self.intact.entry(m.into()).or_default(), i * 3, &v);
        }
        Ok(())
    }
    /// Index of a target by name.
    pub fn target_index(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.name == name)
    }
    /// Index of a kind.
    pub fn kind_index(&self, k: Kind) -> Option<usize> {
        self.kinds.iter().position(|&x| x == k)
    }
    /// One-step `metric` at step index `s`, target `t`, kind index `k`.
    pub fn onestep_est(&self, metric: &str, s: usize, t: usize, k: usize) -> Est {
        let n = self.tk3();
        let off = s * n + (t * self.kinds.len() + k) * 3;
        self.onestep.get(metric).and_then(|v| v.get(off..off + 3)).map(Est::from_slice).unwrap_or(Est::NAN)
    }
    /// Rollout `metric` at target `t`, kind index `k`.
    pub fn rollout_est(&self, metric: &str, t: usize, k: usize) -> Est {
        let off = (t * self.kinds.len() + k) * 3;
        self.rollout
            .as_ref()
            .and_then(|r| r.metrics.get(metric))
            .and_then(|v| v.get(off..off + 3))
            .map(Est::from_slice)
            .unwrap_or(Est::NAN)
    }
    /// The group target `collision`, if any.
    pub fn group(&self) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == "collision")
    }
}

fn lines<T: AsRef<str>>(v: &[T]) -> String {
    v.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join("\n")
}

/// Write the results atomically (the whole file).
pub fn write_ablation(path: &Path, a: &Ablation) -> Result<()> {
    let ctx = Ctx(path);
    let (s, t, k) = (a.steps.len(), a.targets.len(), a.kinds.len());
    atomic_write(path, FileKind::Analysis, |file| {
        set_attr(file, path, "ablation", 1u8)?;
        set_str_attr(file, path, "config", &a.config_toml)?;
        set_attr(file, path, "n_layers", a.n_layers as u64)?;
        set_attr(file, path, "n_heads", a.n_heads as u64)?;
        set_attr(file, path, "n_eval_frames", a.n_eval_frames as u64)?;
        set_attr(file, path, "n_clusters", a.n_clusters as u64)?;
        set_str_attr(file, path, "cluster_unit", &a.cluster_unit)?;
        set_str_attr(file, path, "targets", &lines(&a.targets.iter().map(|t| t.name.clone()).collect::<Vec<_>>()))?;
        let th: Vec<String> = a
            .targets
            .iter()
            .map(|t| t.heads.iter().map(|&(l, h)| format!("{l}.{h}")).collect::<Vec<_>>().join(" "))
            .collect();
        set_str_attr(file, path, "target_heads", &lines(&th))?;
        set_str_attr(file, path, "kinds", &lines(&a.kinds.iter().map(|k| k.name()).collect::<Vec<_>>()))?;
        write_array(file, path, "steps", &a.steps, &[s])?;
        let og = ctx.h5("onestep", file.create_group("onestep"))?;
        for (m, v) in &a.onestep {
            write_array(&og, path, m, v, &[s, t, k, 3])?;
        }
        let ig = ctx.h5("intact", file.create_group("intact"))?;
        for (m, v) in &a.intact {
            write_array(&ig, path, m, v, &[s, 3])?;
        }
        if let Some(r) = &a.rollout {
            let rg = ctx.h5("rollout", file.create_group("rollout"))?;
            set_attr(&rg, path, "step", r.step)?;
            set_attr(&rg, path, "n_rollouts", r.n_rollouts as u64)?;
            for (m, v) in &r.metrics {
                write_array(&rg, path, m, v, &[t, k, 3])?;
            }
            write_array(&rg, path, "intact", &r.intact, &[ROLLOUT_HORIZONS.len(), 3])?;
        }
        if let Some(p) = &a.patching {
            let pg = ctx.h5("patching", file.create_group("patching"))?;
            set_attr(&pg, path, "step", p.step)?;
            set_attr(&pg, path, "n_pairs", p.n_pairs as u64)?;
            set_str_attr(&pg, path, "sites", &lines(&p.sites))?;
            set_attr(&pg, path, "median_gap", p.median_gap)?;
            set_attr(&pg, path, "median_true_dv", p.median_true_dv)?;
            write_array(&pg, path, "denoise", &p.denoise, &[p.sites.len(), 3])?;
            write_array(&pg, path, "noise", &p.noise, &[p.sites.len(), 3])?;
        }
        Ok(())
    })?;
    Ok(())
}

fn split_lines(s: &str) -> Vec<String> {
    if s.is_empty() {
        vec![]
    } else {
        s.split('\n').map(String::from).collect()
    }
}

/// Read `RUN/ablation.h5`; a file of another layout or with inconsistent shapes is an error naming the key.
pub fn read_ablation(path: &Path) -> Result<Ablation> {
    let (file, _) = open_kind(path, Some(FileKind::Analysis))?;
    let ctx = Ctx(path);
    if get_attr::<u8>(&file, path, "ablation").is_err() {
        return Err(AnalysisError::Run { path: path.into(), msg: "is an analysis file but not an ablation file (no `ablation` attribute); it is written by `headlab ablate`".into() });
    }
    let names = split_lines(&get_str_attr(&file, path, "targets")?);
    let heads = split_lines(&get_str_attr(&file, path, "target_heads")?);
    if names.len() != heads.len() {
        return Err(ctx
            .invalid("target_heads", format!("{} lines", heads.len()), format!("{} (one per target)", names.len()))
            .into());
    }
    let mut targets = Vec::new();
    for (n, h) in names.into_iter().zip(heads) {
        let mut hs = Vec::new();
        for p in h.split_whitespace() {
            let lh = p.split_once('.').and_then(|(l, h)| Some((l.parse().ok()?, h.parse().ok()?)));
            hs.push(lh.ok_or_else(|| ctx.invalid("target_heads", p, "layer.head"))?);
        }
        targets.push(Target { name: n, heads: hs });
    }
    let kinds = split_lines(&get_str_attr(&file, path, "kinds")?)
        .iter()
        .map(|k| {
            Kind::parse(k).ok_or_else(|| {
                AnalysisError::from(ctx.invalid(
                    "kinds",
                    k,
                    format!("one of {}", ALL_KINDS.map(|k| k.name()).join(", ")),
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let steps: Vec<u64> = read_array(&file, path, "steps", Some(1))?.0;
    let (s, t, k) = (steps.len(), targets.len(), kinds.len());
    let grp = |name: &str| file.group(name).map_err(|_| ctx.missing(name, FileKind::Analysis));
    let mut onestep = BTreeMap::new();
    let og = grp("onestep")?;
    for m in ctx.h5("onestep", og.member_names())? {
        let (v, shape) = read_array::<f64>(&og, path, &m, Some(4))?;
        if shape != [s, t, k, 3] {
            return Err(ctx
                .invalid(&format!("onestep/{m}"), format!("shape {shape:?}"), format!("[{s}, {t}, {k}, 3]"))
                .into());
        }
        onestep.insert(m, v);
    }
    let mut intact = BTreeMap::new();
    let ig = grp("intact")?;
    for m in ctx.h5("intact", ig.member_names())? {
        let (v, shape) = read_array::<f64>(&ig, path, &m, Some(2))?;
        if shape != [s, 3] {
            return Err(ctx.invalid(&format!("intact/{m}"), format!("shape {shape:?}"), format!("[{s}, 3]")).into());
        }
        intact.insert(m, v);
    }
    let rollout = match file.group("rollout") {
        Ok(rg) => {
            let mut metrics = BTreeMap::new();
            for m in ROLLOUT_METRICS {
                let (v, shape) = read_array::<f64>(&rg, path, m, Some(3))?;
                if shape != [t, k, 3] {
                    return Err(ctx
                        .invalid(&format!("rollout/{m}"), format!("shape {shape:?}"), format!("[{t}, {k}, 3]"))
                        .into());
                }
                metrics.insert(m.to_string(), v);
            }
            Some(RolloutResults {
                step: get_attr(&rg, path, "step")?,
                n_rollouts: get_attr::<u64>(&rg, path, "n_rollouts")? as usize,
                metrics,
                intact: read_array(&rg, path, "intact", Some(2))?.0,
            })
        }
        Err(_) => None,
    };
    let patching = match file.group("patching") {
        Ok(pg) => {
            let sites = split_lines(&get_str_attr(&pg, path, "sites")?);
            let (denoise, sh) = read_array::<f64>(&pg, path, "denoise", Some(2))?;
            if sh != [sites.len(), 3] {
                return Err(ctx
                    .invalid("patching/denoise", format!("shape {sh:?}"), format!("[{}, 3]", sites.len()))
                    .into());
            }
            let (noise, sh) = read_array::<f64>(&pg, path, "noise", Some(2))?;
            if sh != [sites.len(), 3] {
                return Err(ctx
                    .invalid("patching/noise", format!("shape {sh:?}"), format!("[{}, 3]", sites.len()))
                    .into());
            }
            Some(PatchingResults {
                step: get_attr(&pg, path, "step")?,
                n_pairs: get_attr::<u64>(&pg, path, "n_pairs")? as usize,
                sites,
                denoise,
                noise,
                median_gap: get_attr(&pg, path, "median_gap")?,
                median_true_dv: get_attr(&pg, path, "median_true_dv")?,
            })
        }
        Err(_) => None,
    };
    Ok(Ablation {
        config_toml: get_str_attr(&file, path, "config")?,
        n_layers: get_attr::<u64>(&file, path, "n_layers")? as usize,
        n_heads: get_attr::<u64>(&file, path, "n_heads")? as usize,
        n_eval_frames: get_attr::<u64>(&file, path, "n_eval_frames")? as usize,
        n_clusters: get_attr::<u64>(&file, path, "n_clusters")? as usize,
        cluster_unit: get_str_attr(&file, path, "cluster_unit")?,
        targets,
        kinds,
        steps,
        onestep,
        intact,
        rollout,
        patching,
    })
}

// ---------------------------------------------------------------------------
// Plain sentences
// ---------------------------------------------------------------------------

/// `X [lo, hi]`, or `X (no reliable interval)` when the interval is undefined.
pub fn fmt_est(e: Est) -> String {
    if !e.value.is_finite() {
        "–".into()
    } else if e.lo.is_finite() && e.hi.is_finite() {
        format!("{:.2} [{:.2}, {:.2}]", e.value, e.lo, e.hi)
    } else {
        format!("{:.2} (no reliable interval)", e.value)
    }
}

/// `X× [lo, hi]`, or `X×` when the interval is undefined.
pub fn fmt_ratio(e: Est) -> String {
    if !e.value.is_finite() {
        "–".into()
    } else if e.lo.is_finite() && e.hi.is_finite() {
        format!("{:.2}× [{:.2}, {:.2}]", e.value, e.lo, e.hi)
    } else {
        format!("{:.2}× (no reliable interval)", e.value)
    }
}

/// One sentence on ablating `target` with `kind` at step index `s`, saying
/// what the intervals support (an interval containing 1 is "no measurable change").
pub fn effect_sentence(a: &Ablation, s: usize, target: usize, kind: Kind) -> Option<String> {
    let k = a.kind_index(kind)?;
    let name = &a.targets.get(target)?.name;
    let c = a.onestep_est("contact_ratio", s, target, k);
    let f = a.onestep_est("free_ratio", s, target, k);
    let sel = a.onestep_est("selectivity", s, target, k);
    if !c.value.is_finite() || !f.value.is_finite() {
        return Some(format!(
            "Ablating {name} ({}): not measured (no contact or no free particles in the evaluation frames).",
            kind.name()
        ));
    }
    let group = a
        .targets
        .get(target)
        .filter(|t| t.name == "collision")
        .map(|t| t.heads.iter().map(|&(l, h)| head_name(l, h)).collect::<Vec<_>>().join(" + "));
    let what = match (kind, &group) {
        (Kind::OffSelf, Some(g)) => format!("the off-self attention of the collision heads {g} together"),
        (_, Some(g)) => format!("the collision heads {g} together ({})", kind.name()),
        (Kind::OffSelf, None) => format!("{name}'s off-self attention"),
        (_, None) => format!("{name} ({})", kind.name()),
    };
    if !c.excludes(1.0) && !f.excludes(1.0) {
        return Some(format!(
            "Ablating {what} does nothing measurable: the one-step error changes by {} for particles in contact and {} for free particles (95 % intervals include 1×).",
            fmt_ratio(c),
            fmt_ratio(f)
        ));
    }
    let mark = |e: Est| if e.excludes(1.0) { "" } else { " (no measurable change)" };
    let verdict = if sel.excludes(1.0) && sel.value > 1.0 {
        format!("it hurts contact particles selectively (contact/free ratio {})", fmt_ratio(sel))
    } else if sel.excludes(1.0) {
        format!("it hurts free particles more (contact/free ratio {})", fmt_ratio(sel))
    } else {
        format!("contact and free particles are affected alike within error (contact/free ratio {})", fmt_ratio(sel))
    };
    Some(format!(
        "Ablating {what} multiplies the one-step error of particles in contact by {}{} and of free particles by {}{}: {verdict}.",
        fmt_ratio(c),
        mark(c),
        fmt_ratio(f),
        mark(f)
    ))
}

/// One sentence on how much of the off-self damage a replacement pattern
/// repairs (`share_of_offself`), and what that says about the head's own attention.
pub fn share_sentence(kind: Kind, share: Est) -> String {
    if !share.value.is_finite() {
        return format!(
            "The {} pattern's share of the off-self damage is undefined (off-self ablation does no damage to repair).",
            kind.name()
        );
    }
    let verdict = if !(share.lo.is_finite() && share.hi.is_finite()) {
        "no reliable interval".to_string()
    } else if share.hi < 0.0 {
        "it does worse than no off-self attention at all".into()
    } else if share.lo <= 0.0 {
        "not distinguishable from no off-self attention".into()
    } else if share.hi < 1.0 {
        "the head's own attention does better than this pattern".into()
    } else if share.lo > 1.0 {
        "this pattern does better than the head's own attention".into()
    } else {
        "as good as the head's own attention within error".into()
    };
    format!("Replacing its off-self attention by the {} pattern repairs {} of the off-self damage to contact particles: {verdict}.", kind.name(), fmt_est(share))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(n: usize, pairs: &[(usize, usize)]) -> ContactSet {
        let mut c = ContactSet::empty(n);
        for &(i, j) in pairs {
            c.insert(i, j);
        }
        c
    }

    #[test]
    fn frame_sums_split_contact_and_free_and_pair_dv() {
        // 4 particles in 2D, pair (0, 2) in contact.
        let c = cs(4, &[(0, 2)]);
        let err = [1.0f32, 2.0, 3.0, 4.0];
        let pred = [1.0f32, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0];
        let truth = [0.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let s = frame_sums(&err, &pred, &truth, &c, 2);
        assert_eq!((s.contact_se, s.contact_n, s.free_se, s.free_n), (4.0, 2.0, 6.0, 2.0));
        // (Δv0 − Δv2)_pred = (2, 0), truth 0 → 4.
        assert_eq!((s.dv_se, s.dv_n), (4.0, 1.0));
    }

    #[test]
    fn effects_of_a_known_ablation() {
        // Ablation doubles contact error, leaves free error: ratio 2, 1, selectivity 2.
        let intact: Vec<FrameSums> = (0..20)
            .map(|f| FrameSums {
                contact_se: 1.0 + f as f64 * 0.1,
                contact_n: 2.0,
                free_se: 3.0,
                free_n: 10.0,
                dv_se: 1.0,
                dv_n: 1.0,
            })
            .collect();
        let abl: Vec<FrameSums> =
            intact.iter().map(|s| FrameSums { contact_se: 2.0 * s.contact_se, dv_se: 5.0, ..*s }).collect();
        let off: Vec<FrameSums> = intact.iter().map(|s| FrameSums { contact_se: 3.0 * s.contact_se, ..*s }).collect();
        let boot = Bootstrap::new(&(0..20).map(|f| f / 2).collect::<Vec<_>>(), 200, 1);
        assert_eq!(boot.n_clusters, 10);
        let m = onestep_effects(&boot, &intact, &abl, Some(&off));
        let close = |e: Est, v: f64| (e.value - v).abs() < 1e-12;
        assert!(
            close(m["contact_ratio"], 2.0)
                && close(m["free_ratio"], 1.0)
                && close(m["selectivity"], 2.0)
                && close(m["dv_ratio"], 5.0)
        );
        // Off-self triples the error, the replacement doubles it: it repairs half.
        assert!(close(m["share_of_offself"], 0.5));
        // Exact ratios: every resample gives the same value, so the CI is a point.
        assert!((m["contact_ratio"].lo - 2.0).abs() < 1e-12 && (m["contact_ratio"].hi - 2.0).abs() < 1e-12);
        assert!(m["contact_ratio"].excludes(1.0) && !m["free_ratio"].excludes(1.0));
    }

    #[test]
    fn cluster_bootstrap_intervals_cover_the_true_ratio() {
        // Synthetic clustered data: per cluster a shared factor; per frame
        // intact ~ Exp-ish and ablated = true_ratio × intact × noise with mean 1.
        // The 95 % interval of Σa/Σb should cover the true ratio ~95 % of the time.
        let true_ratio = 1.7;
        let reps = 150;
        let mut covered = 0;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for r in 0..reps {
            let (nc, per) = (30, 4);
            let mut num = Vec::new();
            let mut den = Vec::new();
            let mut cl = Vec::new();
            for c in 0..nc {
                let shared: f64 = rng.gen_range(0.5..1.5);
                for _ in 0..per {
                    let b = shared * rng.gen_range(0.2..1.8);
                    let noise: f64 = rng.gen_range(0.4..1.6); // mean 1, independent of b
                    den.push(b);
                    num.push(true_ratio * b * noise);
                    cl.push(c);
                }
            }
            let boot = Bootstrap::new(&cl, 400, r as u64);
            let e = boot.estimate(|w| weighted_ratio(w, &num, &den));
            if e.lo <= true_ratio && true_ratio <= e.hi {
                covered += 1;
            }
        }
        let cov = covered as f64 / reps as f64;
        assert!((0.88..=0.995).contains(&cov), "coverage {cov}");
    }

    #[test]
    fn bootstrap_flags_a_single_cluster() {
        let boot = Bootstrap::new(&[0, 0, 0], 50, 0);
        let e = boot.estimate(|w| w.iter().sum());
        assert_eq!(e.value, 3.0);
        assert!(e.lo.is_nan() && e.hi.is_nan());
    }

    #[test]
    fn recovery_is_the_projection() {
        assert_eq!(recovery(&[1.0, 0.0], &[0.0, 0.0], &[0.5, 7.0]), Some(0.5));
        assert_eq!(recovery(&[1.0, 1.0], &[1.0, 1.0], &[0.0, 0.0]), None);
        assert_eq!(recovery(&[2.0, 2.0], &[0.0, 0.0], &[2.0, 2.0]), Some(1.0));
    }

    #[test]
    fn geometry_weights_follow_the_profile_and_oracle_the_partners() {
        // Profile: attention 1 on pairs with r < 1, 0 beyond.
        let edges = [0.0f32, 1.0, 1e9];
        let mut p = GeoProfile::new(&edges);
        // 3 particles on a line, radius 0.1: 0–1 touching (r = 0.5), 2 far.
        let pos = [0.0f32, 0.0, 0.1, 0.0, 5.0, 0.0];
        let vel = [0.0f32; 6];
        let radii = [0.1f32; 3];
        let pat = [0.5f32, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 1.0];
        p.add_frame(&pat, &pos, &vel, &radii, 2, 0.01);
        assert_eq!(p.value1(0.5), 1.0);
        assert_eq!(p.value1(20.0), 0.0);
        let w = replacement_weights(Kind::GeoDistance, Some(&p), None, &pos, &vel, &radii, 2, 0.01);
        assert_eq!(&w[0..3], &[0.0, 1.0, 0.0]);
        // Particle 2 sees nobody near: all-zero row becomes uniform over the others.
        assert_eq!(&w[6..9], &[0.5, 0.5, 0.0]);
        let c = cs(3, &[(1, 2)]);
        let w = replacement_weights(Kind::Oracle, None, Some(&c), &pos, &vel, &radii, 2, 0.01);
        assert_eq!(&w[0..3], &[0.0, 0.0, 0.0]); // no partner: the driver keeps the head's row
        assert_eq!(&w[3..6], &[0.0, 0.0, 1.0]);
        assert_eq!(&w[6..9], &[0.0, 1.0, 0.0]);
    }

    #[test]
    fn moving_a_partner_out_of_reach_clears_every_contact() {
        // Two touching disks in a 1×1 box, a third one elsewhere.
        let pos = [0.5f32, 0.5, 0.58, 0.5, 0.2, 0.8];
        let vel = [1.0f32, 0.0, -1.0, 0.0, 0.0, 0.0];
        let radii = [0.05f32; 3];
        let dt = 0.01;
        let moved = move_out_of_reach(&pos, &vel, &radii, 2, &[1.0, 1.0], 1, dt, 40).unwrap();
        assert_eq!(&moved[0..2], &pos[0..2]);
        assert_eq!(&moved[4..6], &pos[4..6]);
        for k in [0usize, 2] {
            let d = ((moved[2] - pos[2 * k]).powi(2) + (moved[3] - pos[2 * k + 1]).powi(2)).sqrt();
            assert!(d > 0.1 + 2.0 * 1.0 * dt * 2.0 - 1e-6, "distance {d} to {k}");
        }
        // A box too small for any free spot.
        assert!(move_out_of_reach(&pos, &vel, &radii, 2, &[0.12, 0.12], 1, dt, 10).is_none());
    }

    #[test]
    fn checkpoint_choice_is_dense_in_the_window_and_keeps_the_last() {
        let all: Vec<u64> = (0..=60)
            .map(|k| (10f64.powf(k as f64 / 15.0)).round() as u64)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let pick = choose_steps(&all, Some((200, 500)), 12);
        assert_eq!(pick.len(), 12);
        assert_eq!(pick.last(), all.last());
        let inside = pick.iter().filter(|&&s| (133..=750).contains(&s)).count();
        assert!(inside >= 5, "{pick:?}");
        assert!(pick.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(choose_steps(&all[..5], None, 12), all[..5].to_vec());
        let w = emergence_window(&[1, 10, 100, 1000], &[0.0, 0.05, 0.5, 1.0]).unwrap();
        assert_eq!(w, (100, 1000));
        assert!(emergence_window(&[1, 2], &[1.0, 0.5]).is_none());
    }

    #[test]
    fn names_parse_with_clear_errors() {
        assert_eq!(parse_head("L1.H2", 2, 4).unwrap(), (1, 2));
        assert_eq!(parse_head("1.3", 2, 4).unwrap(), (1, 3));
        let e = parse_head("L2.H0", 2, 4).unwrap_err().to_string();
        assert!(e.contains("L2.H0") && e.contains("2 layers × 4 heads"), "{e}");
        assert!(parse_head("head1", 2, 4).unwrap_err().to_string().contains("L<layer>.H<head>"));
        assert_eq!(parse_kinds("zero,off-self").unwrap(), vec![Kind::Zero, Kind::OffSelf]);
        let e = parse_kinds("zero,bogus").unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("geo-distance"), "{e}");
        let t = default_targets(2, 2, &[(1, 0), (1, 1)]);
        assert_eq!(
            t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["L0.H0", "L0.H1", "L1.H0", "L1.H1", "L0", "L1", "collision"]
        );
    }

    #[test]
    fn file_round_trip_and_step_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let p = ablation_path(dir.path());
        let targets = default_targets(1, 2, &[]);
        let mut a = Ablation {
            config_toml: "x = 1".into(),
            n_layers: 1,
            n_heads: 2,
            n_eval_frames: 8,
            n_clusters: 4,
            cluster_unit: "evaluation trajectory".into(),
            targets,
            kinds: vec![Kind::Zero, Kind::OffSelf],
            ..Default::default()
        };
        let n = a.targets.len() * 2 * 3;
        let st = |s: u64, v: f64| AblationStep {
            step: s,
            onestep: ONESTEP_METRICS.iter().map(|m| (*m, vec![v; n])).map(|(m, v)| (m.to_string(), v)).collect(),
            intact: ["contact_mse", "free_mse", "dv_mse"].iter().map(|m| (m.to_string(), vec![v; 3])).collect(),
        };
        a.add_step(st(20, 2.0)).unwrap();
        a.add_step(st(10, 1.0)).unwrap();
        a.add_step(st(20, 3.0)).unwrap();
        assert!(a.add_step(AblationStep { step: 5, ..Default::default() }).is_err());
        a.patching = Some(PatchingResults {
            step: 20,
            n_pairs: 3,
            sites: vec!["L0.H0".into(), "L0.resid".into()],
            denoise: vec![0.5; 6],
            noise: vec![0.4; 6],
            median_gap: 0.1,
            median_true_dv: 1.0,
        });
        write_ablation(&p, &a).unwrap();
        let b = read_ablation(&p).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.steps, vec![10, 20]);
        assert_eq!(b.onestep_est("selectivity", 1, 2, 1).value, 3.0);
        // An analysis.h5 that is not an ablation file is named as such.
        let q = dir.path().join("analysis.h5");
        headlab_store::analysis::write_analysis(&q, &Default::default()).unwrap();
        assert!(read_ablation(&q).unwrap_err().to_string().contains("not an ablation file"));
    }
}
