//! LLC results of a run: `RUN/llc.h5` (kind "analysis").
//!
//! Kept apart from `analysis.h5`, which the probe driver rewrites as a whole:
//! LLC runs are slower and can cover other checkpoints than the probes.
//!
//! ```text
//! /                  attrs: kind="analysis", format_version, config (LLC settings, TOML),
//!                           n_layers, n_heads, chains, trace_len, trace_block, per_head (0/1)
//! /steps             [S] u64   checkpoint steps, increasing
//! /n_samples         [S] u64   training frames n
//! /n_beta            [S] f64   nβ
//! /model/<col>       [S] f64   whole-model llc, se, std, llc_all_steps, llc_unpaired
//! /model/n_failed    [S] u32   chains excluded
//! /model/delta_trace [S, C, T] f32  per chain, block means of nβ·(L_B(w_t) − L_B(w*))
//! /model/loss_trace  [S, C, T] f32  per chain, block means of L_B(w_t)
//! /heads/<col>       [S, L, H] f64  the same per head (when per_head)
//! /heads/n_failed    [S, L, H] u32
//! /heads/delta_trace [S, L, H, C, T] f32
//! /model/<diag>      [S] f64   (optional) epsilon, gamma (the step used), rhat, drift, drift_z
//! /model/flags       [S] u32   (optional) reliability flags, bits of headlab_analysis::llc_diag::Flag (0: none)
//! /model/ladder_<c>  [S, E] f64 (optional) the step-size ladder: epsilon, gamma, llc, se, n_failed
//!                    (E = ladder_len attr; unused rungs NaN)
//! /heads/<diag>, /heads/flags [S, L, H]; /heads/ladder_<c> [S, L, H, E]  the same per head
//! /warnings          attrs: step_XXXXXXXX = warnings of that checkpoint, one per line
//! /calibration       (optional) epsilon [E], gamma [G], llc/se [G, E] f64, n_failed [G, E] u32;
//!                    attrs: step, note, recommended_epsilon, recommended_gamma (NaN if none)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::h5util::{
    atomic_write, get_attr, get_str_attr, open_kind, read_array, set_attr, set_str_attr, write_array, Ctx,
};
use crate::{FileKind, StoreError};

/// Scalar columns stored for the whole model and per head.
pub const LLC_COLUMNS: [&str; 5] = ["llc", "se", "std", "llc_all_steps", "llc_unpaired"];

/// Diagnostic columns stored for the whole model and per head (absent in
/// files written before they existed: read as NaN).
pub const LLC_DIAG_COLUMNS: [&str; 5] = ["epsilon", "gamma", "rhat", "drift", "drift_z"];

/// Columns of a step-size ladder (one value per rung).
pub const LLC_LADDER_COLUMNS: [&str; 5] = ["epsilon", "gamma", "llc", "se", "n_failed"];

/// Per-step values of one kind of estimate (whole model: one per step; heads: L×H per step).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlcTable {
    /// column name (see [`LLC_COLUMNS`]) → values, step-major.
    pub columns: BTreeMap<String, Vec<f64>>,
    /// diagnostic column (see [`LLC_DIAG_COLUMNS`]) → values, step-major.
    pub diag: BTreeMap<String, Vec<f64>>,
    /// Reliability flags per entry, step-major (0: reliable).
    pub flags: Vec<u32>,
    /// ladder column (see [`LLC_LADDER_COLUMNS`]) → values, step-major,
    /// then entry, then rung ([`LlcSeries::ladder_len`] per entry).
    pub ladder: BTreeMap<String, Vec<f64>>,
    /// Failed chains per entry, step-major.
    pub n_failed: Vec<u32>,
    /// Step-major, then (layer, head), then chain, then trace point.
    pub delta_trace: Vec<f32>,
    /// Only for the whole model.
    pub loss_trace: Vec<f32>,
}

/// An ε × γ calibration sweep on one checkpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlcCalibration {
    /// The checkpoint's step.
    pub step: u64,
    /// Step sizes swept (E).
    pub epsilon: Vec<f64>,
    /// Localization strengths swept (G).
    pub gamma: Vec<f64>,
    /// [G, E]
    pub llc: Vec<f64>,
    /// [G, E] standard errors.
    pub se: Vec<f64>,
    /// [G, E] failed chains.
    pub n_failed: Vec<u32>,
    /// The recommended (ε, γ), if any point qualified.
    pub recommended: Option<(f64, f64)>,
    /// Why that point (or why none).
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
/// The contents of `RUN/llc.h5`: LLC estimates over checkpoints.
pub struct LlcSeries {
    /// The LLC options as TOML.
    pub config_toml: String,
    /// Layers of the model.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// SGLD chains per estimate.
    pub chains: usize,
    /// Points per stored trace.
    pub trace_len: usize,
    /// Draws averaged into one trace point.
    pub trace_block: usize,
    /// Whether per-head estimates were made.
    pub per_head: bool,
    /// Rungs stored per step-size ladder (0: no ladders).
    pub ladder_len: usize,
    /// Checkpoint steps, increasing.
    pub steps: Vec<u64>,
    /// Training samples n per step (the LLC's n).
    pub n_samples: Vec<u64>,
    /// nβ per step.
    pub n_beta: Vec<f64>,
    /// Whole-model estimates.
    pub model: LlcTable,
    /// Empty tables unless `per_head`.
    pub heads: LlcTable,
    /// Per step, newline-separated warnings.
    pub warnings: Vec<String>,
    /// The ε × γ sweep, if one was run.
    pub calibration: Option<LlcCalibration>,
}

/// One checkpoint's results, to merge into a series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlcStep {
    /// The checkpoint's step.
    pub step: u64,
    /// Training samples n.
    pub n_samples: u64,
    /// nβ.
    pub n_beta: f64,
    /// column → value
    pub model: BTreeMap<String, f64>,
    /// Failed whole-model chains.
    pub model_failed: u32,
    /// [C, T]
    pub model_delta_trace: Vec<f32>,
    /// [C, T] loss traces of the whole-model chains.
    pub model_loss_trace: Vec<f32>,
    /// column → [L*H] (empty unless per head)
    pub heads: BTreeMap<String, Vec<f64>>,
    /// [L*H] failed chains per head.
    pub heads_failed: Vec<u32>,
    /// [L, H, C, T]
    pub heads_delta_trace: Vec<f32>,
    /// diagnostic column → value (whole model; missing ones are NaN).
    pub model_diag: BTreeMap<String, f64>,
    /// Whole-model flags.
    pub model_flags: u32,
    /// ladder column → [E] (whole model; padded with NaN to the series' ladder_len).
    pub model_ladder: BTreeMap<String, Vec<f64>>,
    /// diagnostic column → [L*H].
    pub heads_diag: BTreeMap<String, Vec<f64>>,
    /// [L*H] flags per head.
    pub heads_flags: Vec<u32>,
    /// ladder column → [L*H*E].
    pub heads_ladder: BTreeMap<String, Vec<f64>>,
    /// Newline-separated warnings.
    pub warnings: String,
}

/// `RUN/llc.h5`.
pub fn llc_path(run_dir: &Path) -> PathBuf {
    run_dir.join("llc.h5")
}

impl LlcSeries {
    fn per_step(&self) -> (usize, usize) {
        (self.n_layers * self.n_heads, self.chains * self.trace_len)
    }

    /// Insert or replace a step (steps stay sorted).
    pub fn add_step(&mut self, s: LlcStep) -> Result<(), String> {
        let (lh, ct) = self.per_step();
        if s.model_delta_trace.len() != ct || s.model_loss_trace.len() != ct {
            return Err(format!("step {}: traces have {} values, expected {ct}", s.step, s.model_delta_trace.len()));
        }
        if self.per_head && (s.heads_delta_trace.len() != lh * ct || s.heads_failed.len() != lh) {
            return Err(format!("step {}: per-head results missing or of the wrong size", s.step));
        }
        if let Some(i) = self.steps.iter().position(|&x| x == s.step) {
            self.remove(i);
        }
        let i = self.steps.partition_point(|&x| x < s.step);
        self.steps.insert(i, s.step);
        self.n_samples.insert(i, s.n_samples);
        self.n_beta.insert(i, s.n_beta);
        self.warnings.insert(i, s.warnings);
        for c in LLC_COLUMNS {
            self.model.columns.entry(c.into()).or_default().insert(i, *s.model.get(c).unwrap_or(&f64::NAN));
        }
        self.model.n_failed.insert(i, s.model_failed);
        splice(&mut self.model.delta_trace, i * ct, &s.model_delta_trace);
        splice(&mut self.model.loss_trace, i * ct, &s.model_loss_trace);
        for c in LLC_DIAG_COLUMNS {
            self.model.diag.entry(c.into()).or_default().insert(i, *s.model_diag.get(c).unwrap_or(&f64::NAN));
        }
        self.model.flags.insert(i, s.model_flags);
        let e = self.ladder_len;
        for c in LLC_LADDER_COLUMNS {
            let v = padded(s.model_ladder.get(c), 1, e)?;
            splice(self.model.ladder.entry(c.into()).or_default(), i * e, &v);
        }
        if self.per_head {
            for c in LLC_COLUMNS {
                let v = s.heads.get(c).cloned().unwrap_or_else(|| vec![f64::NAN; lh]);
                splice(self.heads.columns.entry(c.into()).or_default(), i * lh, &v);
            }
            splice(&mut self.heads.n_failed, i * lh, &s.heads_failed);
            splice(&mut self.heads.delta_trace, i * lh * ct, &s.heads_delta_trace);
            for c in LLC_DIAG_COLUMNS {
                let v = s.heads_diag.get(c).cloned().unwrap_or_else(|| vec![f64::NAN; lh]);
                splice(self.heads.diag.entry(c.into()).or_default(), i * lh, &v);
            }
            let f = if s.heads_flags.len() == lh { s.heads_flags.clone() } else { vec![0; lh] };
            splice(&mut self.heads.flags, i * lh, &f);
            for c in LLC_LADDER_COLUMNS {
                let v = padded(s.heads_ladder.get(c), lh, e)?;
                splice(self.heads.ladder.entry(c.into()).or_default(), i * lh * e, &v);
            }
        }
        Ok(())
    }

    fn remove(&mut self, i: usize) {
        let (lh, ct) = self.per_step();
        self.steps.remove(i);
        self.n_samples.remove(i);
        self.n_beta.remove(i);
        self.warnings.remove(i);
        for v in self.model.columns.values_mut() {
            v.remove(i);
        }
        self.model.n_failed.remove(i);
        self.model.delta_trace.drain(i * ct..(i + 1) * ct);
        self.model.loss_trace.drain(i * ct..(i + 1) * ct);
        for v in self.model.diag.values_mut() {
            v.remove(i);
        }
        self.model.flags.remove(i);
        let e = self.ladder_len;
        for v in self.model.ladder.values_mut() {
            v.drain(i * e..(i + 1) * e);
        }
        if self.per_head {
            for v in self.heads.columns.values_mut().chain(self.heads.diag.values_mut()) {
                v.drain(i * lh..(i + 1) * lh);
            }
            self.heads.n_failed.drain(i * lh..(i + 1) * lh);
            self.heads.flags.drain(i * lh..(i + 1) * lh);
            self.heads.delta_trace.drain(i * lh * ct..(i + 1) * lh * ct);
            for v in self.heads.ladder.values_mut() {
                v.drain(i * lh * e..(i + 1) * lh * e);
            }
        }
    }

    /// Whole-model diagnostic column over steps.
    pub fn model_diag(&self, name: &str) -> Option<&[f64]> {
        self.model.diag.get(name).map(|v| v.as_slice())
    }

    /// One head's flags over steps (zeros when none were stored).
    pub fn head_flags(&self, layer: usize, head: usize) -> Vec<u32> {
        let lh = self.n_layers * self.n_heads;
        (0..self.steps.len())
            .map(|s| self.heads.flags.get(s * lh + layer * self.n_heads + head).copied().unwrap_or(0))
            .collect()
    }

    /// The whole model's step-size ladder at step index `s`: per rung
    /// (ε, γ, llc, se, failed chains), unused rungs left out.
    pub fn model_ladder(&self, s: usize) -> Vec<[f64; 5]> {
        ladder_rows(&self.model.ladder, s, self.ladder_len)
    }

    /// One head's ladder at step index `s` (as [`LlcSeries::model_ladder`]).
    pub fn head_ladder(&self, s: usize, layer: usize, head: usize) -> Vec<[f64; 5]> {
        let lh = self.n_layers * self.n_heads;
        ladder_rows(&self.heads.ladder, s * lh + layer * self.n_heads + head, self.ladder_len)
    }

    /// Whole-model column over steps.
    pub fn model_column(&self, name: &str) -> Option<&[f64]> {
        self.model.columns.get(name).map(|v| v.as_slice())
    }

    /// One head's column over steps.
    pub fn head_column(&self, name: &str, layer: usize, head: usize) -> Option<Vec<f64>> {
        let lh = self.n_layers * self.n_heads;
        let v = self.heads.columns.get(name)?;
        Some((0..self.steps.len()).map(|s| v[s * lh + layer * self.n_heads + head]).collect())
    }
}

fn ladder_rows(t: &BTreeMap<String, Vec<f64>>, entry: usize, e: usize) -> Vec<[f64; 5]> {
    (0..e)
        .map(|r| {
            let mut row = [f64::NAN; 5];
            for (k, c) in LLC_LADDER_COLUMNS.iter().enumerate() {
                row[k] = t.get(*c).and_then(|v| v.get(entry * e + r)).copied().unwrap_or(f64::NAN);
            }
            row
        })
        .filter(|row| row[0].is_finite())
        .collect()
}

/// `entries` ladders of at most `e` rungs each, padded with NaN to `e`.
fn padded(v: Option<&Vec<f64>>, entries: usize, e: usize) -> Result<Vec<f64>, String> {
    let Some(v) = v else { return Ok(vec![f64::NAN; entries * e]) };
    if entries == 0 || !v.len().is_multiple_of(entries) || v.len() / entries > e {
        return Err(format!("a ladder of {} values for {entries} estimates exceeds ladder_len {e}", v.len()));
    }
    let per = v.len() / entries;
    Ok((0..entries).flat_map(|k| (0..e).map(move |r| if r < per { v[k * per + r] } else { f64::NAN })).collect())
}

fn splice<T: Clone>(v: &mut Vec<T>, at: usize, items: &[T]) {
    let tail = v.split_off(at);
    v.extend_from_slice(items);
    v.extend(tail);
}

/// Write the series atomically (the whole file).
pub fn write_llc(path: &Path, a: &LlcSeries) -> Result<(), StoreError> {
    let ctx = Ctx(path);
    let (s, l, h, c, t) = (a.steps.len(), a.n_layers, a.n_heads, a.chains, a.trace_len);
    atomic_write(path, FileKind::Analysis, |file| {
        set_str_attr(file, path, "config", &a.config_toml)?;
        set_attr(file, path, "n_layers", l as u64)?;
        set_attr(file, path, "n_heads", h as u64)?;
        set_attr(file, path, "chains", c as u64)?;
        set_attr(file, path, "trace_len", t as u64)?;
        set_attr(file, path, "trace_block", a.trace_block as u64)?;
        set_attr(file, path, "per_head", a.per_head as u8)?;
        set_attr(file, path, "ladder_len", a.ladder_len as u64)?;
        write_array(file, path, "steps", &a.steps, &[s])?;
        write_array(file, path, "n_samples", &a.n_samples, &[s])?;
        write_array(file, path, "n_beta", &a.n_beta, &[s])?;
        let mg = ctx.h5("model", file.create_group("model"))?;
        for name in LLC_COLUMNS {
            let v = a.model.columns.get(name).cloned().unwrap_or_default();
            write_array(&mg, path, name, &v, &[s])?;
        }
        write_array(&mg, path, "n_failed", &a.model.n_failed, &[s])?;
        write_array(&mg, path, "delta_trace", &a.model.delta_trace, &[s, c, t])?;
        write_array(&mg, path, "loss_trace", &a.model.loss_trace, &[s, c, t])?;
        write_diag(&mg, path, &a.model, &[s], a.ladder_len)?;
        if a.per_head {
            let hg = ctx.h5("heads", file.create_group("heads"))?;
            for name in LLC_COLUMNS {
                let v = a.heads.columns.get(name).cloned().unwrap_or_default();
                write_array(&hg, path, name, &v, &[s, l, h])?;
            }
            write_array(&hg, path, "n_failed", &a.heads.n_failed, &[s, l, h])?;
            write_array(&hg, path, "delta_trace", &a.heads.delta_trace, &[s, l, h, c, t])?;
            write_diag(&hg, path, &a.heads, &[s, l, h], a.ladder_len)?;
        }
        let wg = ctx.h5("warnings", file.create_group("warnings"))?;
        for (st, w) in a.steps.iter().zip(&a.warnings) {
            set_str_attr(&wg, path, &format!("step_{st:08}"), w)?;
        }
        if let Some(cal) = &a.calibration {
            let cg = ctx.h5("calibration", file.create_group("calibration"))?;
            let (g, e) = (cal.gamma.len(), cal.epsilon.len());
            write_array(&cg, path, "epsilon", &cal.epsilon, &[e])?;
            write_array(&cg, path, "gamma", &cal.gamma, &[g])?;
            write_array(&cg, path, "llc", &cal.llc, &[g, e])?;
            write_array(&cg, path, "se", &cal.se, &[g, e])?;
            write_array(&cg, path, "n_failed", &cal.n_failed, &[g, e])?;
            set_attr(&cg, path, "step", cal.step)?;
            set_str_attr(&cg, path, "note", &cal.note)?;
            let (re, rg) = cal.recommended.unwrap_or((f64::NAN, f64::NAN));
            set_attr(&cg, path, "recommended_epsilon", re)?;
            set_attr(&cg, path, "recommended_gamma", rg)?;
        }
        Ok(())
    })
}

/// The diagnostic columns, flags and ladders of a table of shape `dims`.
fn write_diag(g: &hdf5::Group, path: &Path, t: &LlcTable, dims: &[usize], e: usize) -> Result<(), StoreError> {
    let n: usize = dims.iter().product();
    for name in LLC_DIAG_COLUMNS {
        let v = t.diag.get(name).cloned().unwrap_or_else(|| vec![f64::NAN; n]);
        write_array(g, path, name, &v, dims)?;
    }
    let f = if t.flags.len() == n { t.flags.clone() } else { vec![0; n] };
    write_array(g, path, "flags", &f, dims)?;
    if e > 0 {
        let mut ld = dims.to_vec();
        ld.push(e);
        for name in LLC_LADDER_COLUMNS {
            let v = t.ladder.get(name).cloned().unwrap_or_else(|| vec![f64::NAN; n * e]);
            write_array(g, path, &format!("ladder_{name}"), &v, &ld)?;
        }
    }
    Ok(())
}

/// Read what [`write_diag`] wrote; files from before it existed give NaN
/// columns, no flags and no ladders.
fn read_diag(g: &hdf5::Group, path: &Path, t: &mut LlcTable, n: usize, e: usize) -> Result<(), StoreError> {
    for name in LLC_DIAG_COLUMNS {
        let v = if g.link_exists(name) { read_array::<f64>(g, path, name, None)?.0 } else { vec![f64::NAN; n] };
        if v.len() != n {
            return Err(Ctx(path).invalid(name, format!("{} values", v.len()), format!("{n}")));
        }
        t.diag.insert(name.into(), v);
    }
    t.flags = if g.link_exists("flags") { read_array::<u32>(g, path, "flags", None)?.0 } else { vec![0; n] };
    if t.flags.len() != n {
        return Err(Ctx(path).invalid("flags", format!("{} values", t.flags.len()), format!("{n}")));
    }
    if e > 0 {
        for name in LLC_LADDER_COLUMNS {
            let key = format!("ladder_{name}");
            let v = read_array::<f64>(g, path, &key, None)?.0;
            if v.len() != n * e {
                return Err(Ctx(path).invalid(&key, format!("{} values", v.len()), format!("{}", n * e)));
            }
            t.ladder.insert(name.into(), v);
        }
    }
    Ok(())
}

/// Read `RUN/llc.h5`.
pub fn read_llc(path: &Path) -> Result<LlcSeries, StoreError> {
    let (file, _) = open_kind(path, Some(FileKind::Analysis))?;
    let ctx = Ctx(path);
    let grp = |name: &str| file.group(name).map_err(|_| ctx.missing(name, FileKind::Analysis));
    let per_head = get_attr::<u8>(&file, path, "per_head")? != 0;
    let mut a = LlcSeries {
        config_toml: get_str_attr(&file, path, "config")?,
        n_layers: get_attr::<u64>(&file, path, "n_layers")? as usize,
        n_heads: get_attr::<u64>(&file, path, "n_heads")? as usize,
        chains: get_attr::<u64>(&file, path, "chains")? as usize,
        trace_len: get_attr::<u64>(&file, path, "trace_len")? as usize,
        trace_block: get_attr::<u64>(&file, path, "trace_block")? as usize,
        per_head,
        ladder_len: if file.attr("ladder_len").is_ok() {
            get_attr::<u64>(&file, path, "ladder_len")? as usize
        } else {
            0
        },
        steps: read_array(&file, path, "steps", Some(1))?.0,
        n_samples: read_array(&file, path, "n_samples", Some(1))?.0,
        n_beta: read_array(&file, path, "n_beta", Some(1))?.0,
        ..Default::default()
    };
    let s = a.steps.len();
    let read_table = |g: &hdf5::Group, dims: usize, traces: bool| -> Result<LlcTable, StoreError> {
        let mut t = LlcTable::default();
        for c in LLC_COLUMNS {
            let (v, shape) = read_array::<f64>(g, path, c, Some(dims))?;
            if shape.first() != Some(&s) {
                return Err(ctx.invalid(c, format!("shape {shape:?}"), format!("{s} steps first")));
            }
            t.columns.insert(c.into(), v);
        }
        t.n_failed = read_array(g, path, "n_failed", Some(dims))?.0;
        t.delta_trace = read_array(g, path, "delta_trace", None)?.0;
        if traces {
            t.loss_trace = read_array(g, path, "loss_trace", None)?.0;
        }
        Ok(t)
    };
    a.model = read_table(&grp("model")?, 1, true)?;
    read_diag(&grp("model")?, path, &mut a.model, s, a.ladder_len)?;
    if per_head {
        a.heads = read_table(&grp("heads")?, 3, false)?;
        read_diag(&grp("heads")?, path, &mut a.heads, s * a.n_layers * a.n_heads, a.ladder_len)?;
    }
    let wg = grp("warnings")?;
    a.warnings = a
        .steps
        .iter()
        .map(|st| get_str_attr(&wg, path, &format!("step_{st:08}")).or_else(|_| Ok(String::new())))
        .collect::<Result<_, StoreError>>()?;
    if let Ok(cg) = file.group("calibration") {
        let (re, rg): (f64, f64) =
            (get_attr(&cg, path, "recommended_epsilon")?, get_attr(&cg, path, "recommended_gamma")?);
        a.calibration = Some(LlcCalibration {
            step: get_attr(&cg, path, "step")?,
            epsilon: read_array(&cg, path, "epsilon", Some(1))?.0,
            gamma: read_array(&cg, path, "gamma", Some(1))?.0,
            llc: read_array(&cg, path, "llc", Some(2))?.0,
            se: read_array(&cg, path, "se", Some(2))?.0,
            n_failed: read_array(&cg, path, "n_failed", Some(2))?.0,
            recommended: (re.is_finite() && rg.is_finite()).then_some((re, rg)),
            note: get_str_attr(&cg, path, "note")?,
        });
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(st: u64, v: f64, lh: usize, ct: usize) -> LlcStep {
        LlcStep {
            step: st,
            n_samples: 100,
            n_beta: 21.7,
            model: LLC_COLUMNS.iter().map(|c| (c.to_string(), v)).collect(),
            model_failed: 1,
            model_delta_trace: vec![v as f32; ct],
            model_loss_trace: vec![0.5; ct],
            heads: LLC_COLUMNS.iter().map(|c| (c.to_string(), vec![v / 10.0; lh])).collect(),
            heads_failed: vec![0; lh],
            heads_delta_trace: vec![1.0; lh * ct],
            model_diag: LLC_DIAG_COLUMNS.iter().map(|c| (c.to_string(), v + 0.5)).collect(),
            model_flags: 5,
            model_ladder: LLC_LADDER_COLUMNS.iter().map(|c| (c.to_string(), vec![v; 2])).collect(),
            heads_diag: LLC_DIAG_COLUMNS.iter().map(|c| (c.to_string(), vec![v; lh])).collect(),
            heads_flags: vec![st as u32; lh],
            heads_ladder: LLC_LADDER_COLUMNS.iter().map(|c| (c.to_string(), vec![v; 3 * lh])).collect(),
            warnings: format!("w{st}"),
        }
    }

    #[test]
    fn roundtrip_merge_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = llc_path(dir.path());
        let mut a = LlcSeries {
            config_toml: "epsilon = 1e-4".into(),
            n_layers: 2,
            n_heads: 3,
            chains: 2,
            trace_len: 4,
            trace_block: 1,
            per_head: true,
            ladder_len: 3,
            ..Default::default()
        };
        a.add_step(step(20, 2.0, 6, 8)).unwrap();
        a.add_step(step(10, 1.0, 6, 8)).unwrap();
        a.add_step(step(20, 3.0, 6, 8)).unwrap(); // replaces
        assert!(a.add_step(LlcStep { model_delta_trace: vec![0.0; 3], ..step(5, 1.0, 6, 8) }).is_err());
        a.calibration = Some(LlcCalibration {
            step: 20,
            epsilon: vec![1e-5, 1e-4],
            gamma: vec![100.0],
            llc: vec![1.0, 1.1],
            se: vec![0.1, 0.1],
            n_failed: vec![0, 0],
            recommended: Some((1e-4, 100.0)),
            note: "ok".into(),
        });
        write_llc(&p, &a).unwrap();
        let b = read_llc(&p).unwrap();
        // NaN-padded ladders: compare bit patterns through Debug (NaN != NaN under ==).
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(b.steps, vec![10, 20]);
        assert_eq!(b.model_column("llc").unwrap(), &[1.0, 3.0]);
        assert_eq!(b.head_column("llc", 1, 2).unwrap(), vec![0.1, 0.3]);
        assert_eq!(b.warnings, vec!["w10".to_string(), "w20".to_string()]);
        assert_eq!(b.model_diag("rhat").unwrap(), &[1.5, 3.5]);
        assert_eq!(b.model.flags, vec![5, 5]);
        assert_eq!(b.head_flags(1, 2), vec![10, 20]);
        // Whole-model ladders of 2 rungs are padded to 3 (and the padding left out).
        assert_eq!(b.model_ladder(1), vec![[3.0; 5]; 2]);
        assert_eq!(b.head_ladder(0, 0, 1).len(), 3);
        // A series without diagnostics or ladders reads back with NaN columns, no flags, no ladders.
        let mut old = a.clone();
        old.ladder_len = 0;
        old.model.diag.clear();
        old.model.flags.clear();
        old.model.ladder.clear();
        old.heads.diag.clear();
        old.heads.flags.clear();
        old.heads.ladder.clear();
        write_llc(&p, &old).unwrap();
        let c = read_llc(&p).unwrap();
        assert_eq!(c.model.flags, vec![0, 0]);
        assert!(c.model_ladder(0).is_empty());
    }
}
