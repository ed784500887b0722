//! Training metrics: `RUN/metrics.h5`.
//!
//! ```text
//! /            attrs: kind="metrics", format_version, config (run TOML), baseline_val_loss (f64)
//! /train/step  [n] u64     /train/loss [n] f32   /train/lr [n] f32   /train/grad_norm [n] f32
//! /val/step    [m] u64     /val/loss   [m] f32   (validation loss in normalized target units)
//! ```
//! With `[grad_noise] every > 0` in the run config, gradient-noise
//! measurements (minibatch gradient minus a reference gradient over
//! `reference_rows` training samples, K minibatches each) are added:
//! ```text
//! /noise/step [m] u64   /noise/batches [m] u64  /noise/batch_size [m] u64  /noise/reference_rows [m] u64
//! /noise/full_grad_norm, norm_mean, norm_std,                                         [m] f64
//!        norm_hill_alpha, norm_hill_se, norm_hill_k, norm_gaussian_hill_alpha,
//!        norm_kurtosis, coord_hill_alpha, coord_hill_se, coord_hill_k,
//!        coord_gaussian_hill_alpha, coord_kurtosis, coord_abs_max
//! /noise/norms [m, K] f64 (‖ξ_b‖ per minibatch; NaN-padded if K changed)
//! ```
//! (norm_* = over the K noise norms, coord_* = over every standardized
//! coordinate; *_gaussian_hill_alpha = the same estimator on a Gaussian sample
//! of equal size: compare against it, not against ∞.)
//!
//! `baseline_val_loss` is the loss of predicting "no change" on the same
//! validation samples, so `val/loss / baseline_val_loss` is the improvement.

use std::path::Path;

use crate::h5util::{
    atomic_write, get_attr, get_str_attr, open_kind, read_array, set_attr, set_str_attr, write_array, Ctx,
};
use crate::{FileKind, StoreError};

#[derive(Debug, Clone, PartialEq, Default)]
/// The contents of `RUN/metrics.h5`: the training curves.
pub struct Metrics {
    /// The run's config as TOML.
    pub config_toml: String,
    /// Validation loss of predicting no change.
    pub baseline_val_loss: f64,
    /// Logged steps.
    pub step: Vec<u64>,
    /// Training loss at each logged step.
    pub loss: Vec<f32>,
    /// Learning rate at each logged step.
    pub lr: Vec<f32>,
    /// Gradient norm (before clipping) at each logged step.
    pub grad_norm: Vec<f32>,
    /// Steps with a validation loss.
    pub val_step: Vec<u64>,
    /// Validation loss at those steps.
    pub val_loss: Vec<f32>,
    /// Gradient-noise measurements (empty unless `[grad_noise] every > 0`).
    pub noise: Vec<NoiseRecord>,
}

/// One gradient-noise measurement at `step` (see the module docs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NoiseRecord {
    /// Training step.
    pub step: u64,
    /// Minibatch gradients K.
    pub batches: u64,
    /// Samples per minibatch.
    pub batch_size: u64,
    /// Rows of the reference (full-batch) gradient.
    pub reference_rows: u64,
    /// Norm of the reference gradient.
    pub full_grad_norm: f64,
    /// Mean noise norm ‖ξ‖.
    pub norm_mean: f64,
    /// Population std of the noise norms.
    pub norm_std: f64,
    /// Hill tail index of the noise norms.
    pub norm_hill_alpha: f64,
    /// Its standard error.
    pub norm_hill_se: f64,
    /// Order statistics it used.
    pub norm_hill_k: f64,
    /// The same on Gaussian reference norms.
    pub norm_gaussian_hill_alpha: f64,
    /// Excess kurtosis of the noise norms.
    pub norm_kurtosis: f64,
    /// Hill tail index of the standardized coordinates.
    pub coord_hill_alpha: f64,
    /// Its standard error.
    pub coord_hill_se: f64,
    /// Order statistics it used.
    pub coord_hill_k: f64,
    /// The same on a Gaussian sample.
    pub coord_gaussian_hill_alpha: f64,
    /// Excess kurtosis of the coordinates.
    pub coord_kurtosis: f64,
    /// Largest |coordinate|.
    pub coord_abs_max: f64,
    /// The K noise norms.
    pub norms: Vec<f64>,
}

/// (name, getter, setter) of one f64 column of /noise.
type NoiseColumn = (&'static str, fn(&NoiseRecord) -> f64, fn(&mut NoiseRecord, f64));

/// The f64 columns of /noise, by name.
fn noise_columns() -> [NoiseColumn; 14] {
    macro_rules! col {
        ($f:ident) => {
            (stringify!($f), |r: &NoiseRecord| r.$f, |r: &mut NoiseRecord, v: f64| r.$f = v)
        };
    }
    [
        col!(full_grad_norm),
        col!(norm_mean),
        col!(norm_std),
        col!(norm_hill_alpha),
        col!(norm_hill_se),
        col!(norm_hill_k),
        col!(norm_gaussian_hill_alpha),
        col!(norm_kurtosis),
        col!(coord_hill_alpha),
        col!(coord_hill_se),
        col!(coord_hill_k),
        col!(coord_gaussian_hill_alpha),
        col!(coord_kurtosis),
        col!(coord_abs_max),
    ]
}

impl Metrics {
    /// Drop every record after `step` (used when resuming from a checkpoint).
    /// Train records are for the update that produced step `s` (1-based);
    /// validation records are evaluated at step `s`.
    pub fn truncate_after(&mut self, step: u64) {
        let n = self.step.iter().take_while(|&&s| s <= step).count();
        self.step.truncate(n);
        self.loss.truncate(n);
        self.lr.truncate(n);
        self.grad_norm.truncate(n);
        let m = self.val_step.iter().take_while(|&&s| s <= step).count();
        self.val_step.truncate(m);
        self.val_loss.truncate(m);
        self.noise.retain(|r| r.step <= step);
    }
}

/// Write `metrics.h5` atomically.
pub fn write_metrics(path: &Path, m: &Metrics) -> Result<(), StoreError> {
    atomic_write(path, FileKind::Metrics, |file| {
        let ctx = Ctx(path);
        set_str_attr(file, path, "config", &m.config_toml)?;
        set_attr(file, path, "baseline_val_loss", m.baseline_val_loss)?;
        let t = ctx.h5("train", file.create_group("train"))?;
        let n = m.step.len();
        write_array(&t, path, "step", &m.step, &[n])?;
        write_array(&t, path, "loss", &m.loss, &[n])?;
        write_array(&t, path, "lr", &m.lr, &[n])?;
        write_array(&t, path, "grad_norm", &m.grad_norm, &[n])?;
        let v = ctx.h5("val", file.create_group("val"))?;
        write_array(&v, path, "step", &m.val_step, &[m.val_step.len()])?;
        write_array(&v, path, "loss", &m.val_loss, &[m.val_loss.len()])?;
        if !m.noise.is_empty() {
            let g = ctx.h5("noise", file.create_group("noise"))?;
            let n = m.noise.len();
            let u = |f: fn(&NoiseRecord) -> u64| m.noise.iter().map(f).collect::<Vec<u64>>();
            write_array(&g, path, "step", &u(|r| r.step), &[n])?;
            write_array(&g, path, "batches", &u(|r| r.batches), &[n])?;
            write_array(&g, path, "batch_size", &u(|r| r.batch_size), &[n])?;
            write_array(&g, path, "reference_rows", &u(|r| r.reference_rows), &[n])?;
            for (name, get, _) in noise_columns() {
                write_array(&g, path, name, &m.noise.iter().map(get).collect::<Vec<f64>>(), &[n])?;
            }
            let k = m.noise.iter().map(|r| r.norms.len()).max().unwrap_or(0);
            let mut norms = vec![f64::NAN; n * k];
            for (i, r) in m.noise.iter().enumerate() {
                norms[i * k..i * k + r.norms.len()].copy_from_slice(&r.norms);
            }
            write_array(&g, path, "norms", &norms, &[n, k])?;
        }
        Ok(())
    })
}

fn read_noise(file: &hdf5::File, path: &Path) -> Result<Vec<NoiseRecord>, StoreError> {
    let Ok(g) = file.group("noise") else { return Ok(vec![]) };
    let step: Vec<u64> = read_array(&g, path, "step", Some(1))?.0;
    let n = step.len();
    let mut recs: Vec<NoiseRecord> = step.iter().map(|&s| NoiseRecord { step: s, ..Default::default() }).collect();
    for (name, setter) in [
        ("batches", (|r: &mut NoiseRecord, v| r.batches = v) as fn(&mut NoiseRecord, u64)),
        ("batch_size", |r, v| r.batch_size = v),
        ("reference_rows", |r, v| r.reference_rows = v),
    ] {
        let v: Vec<u64> = read_array(&g, path, name, Some(1))?.0;
        recs.iter_mut().zip(v).for_each(|(r, x)| setter(r, x));
    }
    for (name, _, set) in noise_columns() {
        let v: Vec<f64> = read_array(&g, path, name, Some(1))?.0;
        recs.iter_mut().zip(v).for_each(|(r, x)| set(r, x));
    }
    let (norms, shape): (Vec<f64>, Vec<usize>) = read_array(&g, path, "norms", Some(2))?;
    let k = shape.get(1).copied().unwrap_or(0);
    if norms.len() == n * k {
        for (i, r) in recs.iter_mut().enumerate() {
            r.norms = norms[i * k..(i + 1) * k].iter().copied().filter(|x| !x.is_nan()).collect();
        }
    }
    Ok(recs)
}

/// Read `metrics.h5`.
pub fn read_metrics(path: &Path) -> Result<Metrics, StoreError> {
    let (file, _) = open_kind(path, Some(FileKind::Metrics))?;
    let ctx = Ctx(path);
    let t = file.group("train").map_err(|_| ctx.missing("train", FileKind::Metrics))?;
    let v = file.group("val").map_err(|_| ctx.missing("val", FileKind::Metrics))?;
    Ok(Metrics {
        config_toml: get_str_attr(&file, path, "config")?,
        baseline_val_loss: get_attr(&file, path, "baseline_val_loss")?,
        step: read_array(&t, path, "step", Some(1))?.0,
        loss: read_array(&t, path, "loss", Some(1))?.0,
        lr: read_array(&t, path, "lr", Some(1))?.0,
        grad_norm: read_array(&t, path, "grad_norm", Some(1))?.0,
        val_step: read_array(&v, path, "step", Some(1))?.0,
        val_loss: read_array(&v, path, "loss", Some(1))?.0,
        noise: read_noise(&file, path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.h5");
        let mut m = Metrics {
            config_toml: "x = 1".into(),
            baseline_val_loss: 2.5,
            step: vec![1, 2, 3],
            loss: vec![1.0, 0.5, 0.25],
            lr: vec![1e-3; 3],
            grad_norm: vec![3.0, 2.0, 1.0],
            val_step: vec![0, 2],
            val_loss: vec![2.0, 0.6],
            noise: vec![],
        };
        write_metrics(&p, &m).unwrap();
        assert_eq!(read_metrics(&p).unwrap(), m);
        m.noise = vec![
            NoiseRecord { step: 0, batches: 3, norm_hill_alpha: 2.5, norms: vec![1.0, 2.0, 3.0], ..Default::default() },
            NoiseRecord {
                step: 2,
                batches: 4,
                batch_size: 8,
                coord_kurtosis: 0.5,
                norms: vec![1.0, 2.0, 3.0, 4.0],
                ..Default::default()
            },
        ];
        write_metrics(&p, &m).unwrap();
        assert_eq!(read_metrics(&p).unwrap(), m);
        m.truncate_after(1);
        assert_eq!(m.noise.len(), 1);
        assert_eq!((m.step.len(), m.val_step.len()), (1, 1));
        assert_eq!(m.loss, vec![1.0]);
    }
}
