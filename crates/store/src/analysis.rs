//! Probe results: `RUN/analysis.h5`.
//!
//! ```text
//! /                 attrs: kind="analysis", format_version, config (probe options, TOML),
//!                          dataset (path of the dataset probed), n_layers, n_heads, n_particles
//! /eval/traj        [E] u32   evaluation frames: trajectory index …
//! /eval/frame       [E] u32   … and frame index (input frame; the model predicts frame+1)
//! /steps            [S] u64   checkpoint steps probed, increasing
//! /series/<name>    [S, L, H] f64   one scalar per step × layer × head (see `series_names`)
//! /g/edges          [B+1] f32 g(r) bin edges, r = distance / (r_i + r_j)
//! /g/g              [S, L, H, B] f64  mean N·a_ij per bin (NaN: empty bin)
//! /g/g_excl         [S, L, H, B] f64  mean (N−1)·a_ij/(1−a_ii) per bin
//! /g/count          [S, L, H, B] u64  pairs per bin
//! /patterns/traj    [P] u32   trajectories whose attention is cached for the viewer
//! /patterns/frames  [F] u32   frames cached (of each of those trajectories)
//! /patterns/step_XXXXXXXX  [L, H, P, F, N, N] f32  attention (query rows) at that checkpoint
//! /fits             attrs: one TOML text per fitted series name (written by `headlab fit`)
//! /baselines/<name> attrs: f64 numbers of one non-learned baseline on the evaluation frames
//!                   (distance, time_to_contact, approach_rate, ballistic: auroc_all, auroc_new,
//!                   auroc_matched, …; _binning: the distance bins; _logistic: the baseline model)
//! ```
//!
//! The file is rewritten atomically as a whole whenever steps are added.

use std::collections::BTreeMap;
use std::path::Path;

use crate::h5util::{
    atomic_write, get_attr, get_str_attr, open_kind, read_array, set_attr, set_str_attr, write_array, Ctx,
};
use crate::{FileKind, StoreError};

#[derive(Debug, Clone, PartialEq, Default)]
/// The contents of `RUN/analysis.h5`: what the probe measured at every checkpoint.
pub struct Analysis {
    /// Probe options as TOML.
    pub config_toml: String,
    /// Dataset the evaluation frames come from.
    pub dataset: String,
    /// Layers of the probed model.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// Particles per frame.
    pub n_particles: usize,
    /// Trajectory of each evaluation frame.
    pub eval_traj: Vec<u32>,
    /// Frame index of each evaluation frame.
    pub eval_frame: Vec<u32>,
    /// Checkpoint steps, increasing.
    pub steps: Vec<u64>,
    /// Scalar series: name → [S, L, H].
    pub series: BTreeMap<String, Vec<f64>>,
    /// g(r) bin edges, in units of contact distance r/(r_i + r_j).
    pub g_edges: Vec<f32>,
    /// [S, L, H, B]
    pub g: Vec<f64>,
    /// [S, L, H, B]: the same with the self-excluded weights a_ij / (1 − a_ii).
    pub g_excl: Vec<f64>,
    /// [S, L, H, B]: pairs per bin (NaN g where 0).
    pub g_count: Vec<u64>,
    /// Trajectories whose attention patterns are cached.
    pub pattern_traj: Vec<u32>,
    /// Frames of each of them whose patterns are cached.
    pub pattern_frames: Vec<u32>,
    /// Per step (same order as `steps`): [L, H, P, F, N, N]; empty when not cached or not loaded.
    pub patterns: Vec<Vec<f32>>,
    /// Fit results: series name → TOML text.
    pub fits: BTreeMap<String, String>,
    /// Non-learned baselines on the evaluation frames: name → (quantity → value)
    /// (written by the probe; see `headlab_analysis::baselines`).
    pub baselines: BTreeMap<String, BTreeMap<String, f64>>,
}

/// What one checkpoint contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// The checkpoint's training step.
    pub step: u64,
    /// name → [L, H]
    pub series: BTreeMap<String, Vec<f64>>,
    /// [L, H, B]
    pub g: Vec<f64>,
    /// [L, H, B], self-excluded.
    pub g_excl: Vec<f64>,
    /// [L, H, B] pairs per bin.
    pub g_count: Vec<u64>,
    /// [L, H, P, F, N, N] (may be empty)
    pub patterns: Vec<f32>,
}

impl Analysis {
    /// Number of g(r) bins.
    pub fn n_bins(&self) -> usize {
        self.g_edges.len().saturating_sub(1)
    }
    fn lh(&self) -> usize {
        self.n_layers * self.n_heads
    }
    /// Whether checkpoint `step` was probed.
    pub fn has_step(&self, step: u64) -> bool {
        self.steps.binary_search(&step).is_ok()
    }
    /// The series `name` (a [`crate::series::SeriesKey`], or any stored
    /// name) of one head over steps.
    pub fn head_series(&self, name: impl AsRef<str>, layer: usize, head: usize) -> Option<Vec<f64>> {
        let v = self.series.get(name.as_ref())?;
        let lh = self.lh();
        let k = layer * self.n_heads + head;
        Some((0..self.steps.len()).map(|s| v[s * lh + k]).collect())
    }
    /// The value of series `name` for one head at step index `s` (NaN when
    /// the series is not stored or `s` is out of range).
    pub fn value(&self, name: impl AsRef<str>, s: usize, layer: usize, head: usize) -> f64 {
        let lh = self.lh();
        self.series
            .get(name.as_ref())
            .and_then(|v| v.get(s * lh + layer * self.n_heads + head))
            .copied()
            .unwrap_or(f64::NAN)
    }
    /// g (or g_excl) of one head at step index `s`: [B].
    pub fn head_g(&self, excl: bool, s: usize, layer: usize, head: usize) -> &[f64] {
        let b = self.n_bins();
        let off = (s * self.lh() + layer * self.n_heads + head) * b;
        let src = if excl { &self.g_excl } else { &self.g };
        &src[off..off + b]
    }
    /// Pattern of one step, if cached and loaded: [L, H, P, F, N, N].
    pub fn pattern(&self, s: usize) -> Option<&[f32]> {
        self.patterns.get(s).filter(|p| !p.is_empty()).map(|p| p.as_slice())
    }

    /// Insert (or replace) one checkpoint's results, keeping steps sorted.
    /// Errors if the record's shapes do not match the file's.
    pub fn add_step(&mut self, rec: StepRecord) -> Result<(), String> {
        let lh = self.lh();
        let b = self.n_bins();
        if rec.g.len() != lh * b || rec.g_excl.len() != lh * b || rec.g_count.len() != lh * b {
            return Err(format!("g has {} values, expected {} (L·H·B)", rec.g.len(), lh * b));
        }
        for (name, v) in &rec.series {
            if v.len() != lh {
                return Err(format!("series `{name}` has {} values, expected {lh} (L·H)", v.len()));
            }
        }
        let np = lh * self.pattern_traj.len() * self.pattern_frames.len() * self.n_particles * self.n_particles;
        if !rec.patterns.is_empty() && rec.patterns.len() != np {
            return Err(format!("attention patterns have {} values, expected {np} (L·H·P·F·N·N)", rec.patterns.len()));
        }
        let s_old = self.steps.len();
        if s_old > 0 {
            let a: Vec<&String> = self.series.keys().collect();
            let bk: Vec<&String> = rec.series.keys().collect();
            if a != bk {
                return Err(format!("series names {bk:?} differ from the file's {a:?}"));
            }
        }
        let (pos, replace) = match self.steps.binary_search(&rec.step) {
            Ok(p) => (p, true),
            Err(p) => (p, false),
        };
        fn put<T: Clone>(v: &mut Vec<T>, pos: usize, width: usize, new: &[T], replace: bool) {
            if replace {
                v[pos * width..(pos + 1) * width].clone_from_slice(new);
            } else {
                let tail = v.split_off(pos * width);
                v.extend_from_slice(new);
                v.extend(tail);
            }
        }
        for (name, val) in &rec.series {
            let e = self.series.entry(name.clone()).or_default();
            put(e, pos, lh, val, replace);
        }
        put(&mut self.g, pos, lh * b, &rec.g, replace);
        put(&mut self.g_excl, pos, lh * b, &rec.g_excl, replace);
        put(&mut self.g_count, pos, lh * b, &rec.g_count, replace);
        if replace {
            self.patterns[pos] = rec.patterns;
        } else {
            self.steps.insert(pos, rec.step);
            self.patterns.insert(pos, rec.patterns);
        }
        Ok(())
    }
}

fn step_name(step: u64) -> String {
    format!("step_{step:08}")
}

/// Write the whole analysis atomically.
pub fn write_analysis(path: &Path, a: &Analysis) -> Result<(), StoreError> {
    let ctx = Ctx(path);
    let (s, l, h, b) = (a.steps.len(), a.n_layers, a.n_heads, a.n_bins());
    if a.patterns.len() != s {
        return Err(ctx.invalid("patterns", format!("{} steps", a.patterns.len()), format!("{s} steps")));
    }
    atomic_write(path, FileKind::Analysis, |file| {
        set_str_attr(file, path, "config", &a.config_toml)?;
        set_str_attr(file, path, "dataset", &a.dataset)?;
        set_attr(file, path, "n_layers", l as u64)?;
        set_attr(file, path, "n_heads", h as u64)?;
        set_attr(file, path, "n_particles", a.n_particles as u64)?;
        let ev = ctx.h5("eval", file.create_group("eval"))?;
        write_array(&ev, path, "traj", &a.eval_traj, &[a.eval_traj.len()])?;
        write_array(&ev, path, "frame", &a.eval_frame, &[a.eval_frame.len()])?;
        write_array(file, path, "steps", &a.steps, &[s])?;
        let sg = ctx.h5("series", file.create_group("series"))?;
        for (name, v) in &a.series {
            write_array(&sg, path, name, v, &[s, l, h])?;
        }
        let gg = ctx.h5("g", file.create_group("g"))?;
        write_array(&gg, path, "edges", &a.g_edges, &[a.g_edges.len()])?;
        write_array(&gg, path, "g", &a.g, &[s, l, h, b])?;
        write_array(&gg, path, "g_excl", &a.g_excl, &[s, l, h, b])?;
        write_array(&gg, path, "count", &a.g_count, &[s, l, h, b])?;
        let pg = ctx.h5("patterns", file.create_group("patterns"))?;
        write_array(&pg, path, "traj", &a.pattern_traj, &[a.pattern_traj.len()])?;
        write_array(&pg, path, "frames", &a.pattern_frames, &[a.pattern_frames.len()])?;
        let n = a.n_particles;
        let shape = [l, h, a.pattern_traj.len(), a.pattern_frames.len(), n, n];
        for (step, p) in a.steps.iter().zip(&a.patterns) {
            if !p.is_empty() {
                write_array(&pg, path, &step_name(*step), p, &shape)?;
            }
        }
        let fg = ctx.h5("fits", file.create_group("fits"))?;
        for (name, text) in &a.fits {
            set_str_attr(&fg, path, name, text)?;
        }
        let bg = ctx.h5("baselines", file.create_group("baselines"))?;
        for (name, row) in &a.baselines {
            let g = ctx.h5(&format!("baselines/{name}"), bg.create_group(name))?;
            for (k, v) in row {
                set_attr(&g, path, k, *v)?;
            }
        }
        Ok(())
    })
}

/// Read an analysis file; attention patterns only when `with_patterns`.
pub fn read_analysis(path: &Path, with_patterns: bool) -> Result<Analysis, StoreError> {
    let (file, _) = open_kind(path, Some(FileKind::Analysis))?;
    let ctx = Ctx(path);
    let grp = |name: &str| file.group(name).map_err(|_| ctx.missing(name, FileKind::Analysis));
    let n_layers = get_attr::<u64>(&file, path, "n_layers")? as usize;
    let n_heads = get_attr::<u64>(&file, path, "n_heads")? as usize;
    let n_particles = get_attr::<u64>(&file, path, "n_particles")? as usize;
    let ev = grp("eval")?;
    let (steps, _) = read_array::<u64>(&file, path, "steps", Some(1))?;
    let s = steps.len();
    let sg = grp("series")?;
    let mut series = BTreeMap::new();
    for name in ctx.h5("series", sg.member_names())? {
        let (v, shape) = read_array::<f64>(&sg, path, &name, Some(3))?;
        if shape != [s, n_layers, n_heads] {
            return Err(ctx.invalid(
                &format!("series/{name}"),
                format!("shape {shape:?}"),
                format!("[{s}, {n_layers}, {n_heads}]"),
            ));
        }
        series.insert(name, v);
    }
    let gg = grp("g")?;
    let (g_edges, _) = read_array::<f32>(&gg, path, "edges", Some(1))?;
    let (g, gshape) = read_array::<f64>(&gg, path, "g", Some(4))?;
    let b = g_edges.len().saturating_sub(1);
    if gshape != [s, n_layers, n_heads, b] {
        return Err(ctx.invalid("g/g", format!("shape {gshape:?}"), format!("[{s}, {n_layers}, {n_heads}, {b}]")));
    }
    let pg = grp("patterns")?;
    let pattern_traj = read_array::<u32>(&pg, path, "traj", Some(1))?.0;
    let pattern_frames = read_array::<u32>(&pg, path, "frames", Some(1))?.0;
    let patterns = steps
        .iter()
        .map(|&st| {
            if with_patterns && pg.link_exists(&step_name(st)) {
                read_array::<f32>(&pg, path, &step_name(st), Some(6)).map(|x| x.0)
            } else {
                Ok(Vec::new())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut fits = BTreeMap::new();
    if let Ok(fg) = file.group("fits") {
        for name in ctx.h5("fits", fg.attr_names())? {
            fits.insert(name.clone(), get_str_attr(&fg, path, &name)?);
        }
    }
    let mut baselines = BTreeMap::new();
    if let Ok(bg) = file.group("baselines") {
        for name in ctx.h5("baselines", bg.member_names())? {
            let g = ctx.h5(&format!("baselines/{name}"), bg.group(&name))?;
            let mut row = BTreeMap::new();
            for k in ctx.h5(&format!("baselines/{name}"), g.attr_names())? {
                row.insert(k.clone(), get_attr::<f64>(&g, path, &k)?);
            }
            baselines.insert(name, row);
        }
    }
    Ok(Analysis {
        config_toml: get_str_attr(&file, path, "config")?,
        dataset: get_str_attr(&file, path, "dataset")?,
        n_layers,
        n_heads,
        n_particles,
        eval_traj: read_array(&ev, path, "traj", Some(1))?.0,
        eval_frame: read_array(&ev, path, "frame", Some(1))?.0,
        steps,
        series,
        g_edges,
        g,
        g_excl: read_array(&gg, path, "g_excl", Some(4))?.0,
        g_count: read_array(&gg, path, "count", Some(4))?.0,
        pattern_traj,
        pattern_frames,
        patterns,
        fits,
        baselines,
    })
}

/// Read one step's cached attention patterns without loading the rest:
/// returns the data [L, H, P, F, N, N] and its shape, or `None` if absent.
#[allow(clippy::type_complexity)]
pub fn read_pattern(path: &Path, step: u64) -> Result<Option<(Vec<f32>, Vec<usize>)>, StoreError> {
    let (file, _) = open_kind(path, Some(FileKind::Analysis))?;
    let pg = file.group("patterns").map_err(|_| Ctx(path).missing("patterns", FileKind::Analysis))?;
    if !pg.link_exists(&step_name(step)) {
        return Ok(None);
    }
    read_array::<f32>(&pg, path, &step_name(step), Some(6)).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: u64, v: f64, with_pat: bool) -> StepRecord {
        let mut series = BTreeMap::new();
        series.insert("a".to_string(), vec![v, v + 1.0]);
        series.insert("b".to_string(), vec![-v, f64::NAN]);
        StepRecord {
            step,
            series,
            g: vec![v; 2 * 3],
            g_excl: vec![2.0 * v; 2 * 3],
            g_count: vec![step; 2 * 3],
            patterns: if with_pat { (0..2 * 3 * 3).map(|x| x as f32 + v as f32).collect() } else { vec![] },
        }
    }

    #[test]
    fn add_steps_roundtrip_and_incremental() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("analysis.h5");
        let mut a = Analysis {
            config_toml: "x = 1".into(),
            dataset: "d.h5".into(),
            n_layers: 1,
            n_heads: 2,
            n_particles: 3,
            eval_traj: vec![0, 0, 1],
            eval_frame: vec![3, 5, 7],
            g_edges: vec![0.0, 1.0, 2.0, 3.0],
            pattern_traj: vec![0],
            pattern_frames: vec![1],
            ..Default::default()
        };
        a.add_step(rec(100, 1.0, true)).unwrap();
        a.add_step(rec(10, 0.5, false)).unwrap();
        assert_eq!(a.steps, vec![10, 100]);
        write_analysis(&p, &a).unwrap();
        let mut b = read_analysis(&p, true).unwrap();
        // NaN != NaN, so compare through the bit patterns of series.
        assert_eq!(b.steps, a.steps);
        assert_eq!(b.head_series("a", 0, 1).unwrap(), vec![1.5, 2.0]);
        assert!(b.head_series("b", 0, 1).unwrap().iter().all(|x| x.is_nan()));
        assert_eq!(b.head_g(true, 1, 0, 0), &[2.0, 2.0, 2.0]);
        assert_eq!(b.patterns[0].len(), 0);
        assert_eq!(b.patterns[1], a.patterns[1]);
        assert!(read_analysis(&p, false).unwrap().patterns.iter().all(|p| p.is_empty()));
        let (pat, shape) = read_pattern(&p, 100).unwrap().unwrap();
        assert_eq!(shape, vec![1, 2, 1, 1, 3, 3]);
        assert_eq!(pat, a.patterns[1]);
        assert!(read_pattern(&p, 10).unwrap().is_none());
        // Incremental: add a middle step, replace one, add fits.
        b.add_step(rec(50, 0.7, true)).unwrap();
        b.add_step(rec(100, 9.0, true)).unwrap();
        b.fits.insert("score".into(), "best = \"power\"".into());
        b.baselines.entry("distance".into()).or_default().insert("auroc_all".into(), 0.99);
        b.baselines.entry("_binning".into()).or_default().insert("bins".into(), 12.0);
        write_analysis(&p, &b).unwrap();
        let c = read_analysis(&p, true).unwrap();
        assert_eq!(c.steps, vec![10, 50, 100]);
        assert_eq!(c.head_series("a", 0, 0).unwrap(), vec![0.5, 0.7, 9.0]);
        assert_eq!(c.g_count[6..12], [50; 6]);
        assert_eq!(c.fits["score"], "best = \"power\"");
        assert_eq!(c.baselines["distance"]["auroc_all"], 0.99);
        assert_eq!(c.baselines["_binning"]["bins"], 12.0);
        // Shape mismatches are errors, not panics.
        let mut bad = rec(5, 0.0, false);
        bad.g.pop();
        assert!(b.add_step(bad).is_err());
        let mut bad = rec(5, 0.0, false);
        bad.series.remove("b");
        assert!(b.add_step(bad).unwrap_err().contains("series names"));
        let mut bad = rec(5, 0.0, true);
        bad.patterns.pop();
        assert!(b.add_step(bad).unwrap_err().contains("patterns"));
        assert_eq!(b.steps.len(), 3, "failed adds change nothing");
    }
}
