//! Training metrics: `RUN/metrics.h5`.
//!
//! ```text
//! /            attrs: kind="metrics", format_version, config (run TOML), baseline_val_loss (f64)
//! /train/step  [n] u64     /train/loss [n] f32   /train/lr [n] f32   /train/grad_norm [n] f32
//! /val/step    [m] u64     /val/loss   [m] f32   (validation loss in normalized target units)
//! ```
//! `baseline_val_loss` is the loss of predicting "no change" on the same
//! validation samples, so `val/loss / baseline_val_loss` is the improvement.

use std::path::Path;

use crate::h5util::{atomic_write, get_attr, get_str_attr, open_kind, read_array, set_attr, set_str_attr, write_array, Ctx};
use crate::{FileKind, StoreError};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    pub config_toml: String,
    pub baseline_val_loss: f64,
    pub step: Vec<u64>,
    pub loss: Vec<f32>,
    pub lr: Vec<f32>,
    pub grad_norm: Vec<f32>,
    pub val_step: Vec<u64>,
    pub val_loss: Vec<f32>,
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
    }
}

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
        Ok(())
    })
}

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
        };
        write_metrics(&p, &m).unwrap();
        assert_eq!(read_metrics(&p).unwrap(), m);
        m.truncate_after(1);
        assert_eq!((m.step.len(), m.val_step.len()), (1, 1));
        assert_eq!(m.loss, vec![1.0]);
    }
}
