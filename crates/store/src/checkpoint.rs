//! Training checkpoints: `RUN/ckpt/step_<8 digits>.h5`.
//!
//! Layout (all arrays little-endian f32, row-major; names are the
//! TransformerLens-style parameter names, dots included, which HDF5 and h5py
//! accept as ordinary dataset names):
//!
//! ```text
//! /                       attrs: kind="checkpoint", format_version, step (u64),
//!                                config (the run's full TOML text, [model] included),
//!                                param_names (one name per line, in model order)
//!                                + any number of f64 scalar attrs (e.g. train_loss, val_loss)
//! /params/<name>          the weights, e.g. /params/blocks.0.attn.W_Q  [n_heads, d_model, d_head]
//! /norm/<name>            normalization statistics (input_mean, input_std, target_mean, target_std, ...)
//! /optimizer              attrs: kind (adam|adamw|sgd), step (u64 number of updates done)
//! /optimizer/<slot>/<name> per-parameter state (exp_avg, exp_avg_sq, momentum)
//! /rng                    attrs: seed (u8[32]), word_pos_hi, word_pos_lo, stream (u64):
//!                         the ChaCha8 batch-sampling generator, to resume bit-identically
//! ```
//!
//! In Python: `h5py.File(p)["params/blocks.0.attn.W_Q"][...]`.

use std::path::{Path, PathBuf};

use crate::h5util::{
    atomic_write, get_attr, get_str_attr, get_vec_attr, open_kind, read_array, set_attr, set_str_attr, set_vec_attr,
    write_array, Ctx,
};
use crate::{FileKind, StoreError};

/// A named f32 array with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedArray {
    /// Its name (e.g. `blocks.0.attn.W_Q`).
    pub name: String,
    /// Its shape, row-major.
    pub shape: Vec<usize>,
    /// The values.
    pub data: Vec<f32>,
}

impl NamedArray {
    /// An array called `name` of the given shape.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self { name: name.into(), shape, data }
    }
}

/// Optimizer state: per slot (e.g. "exp_avg"), one array per parameter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    /// The optimizer (`sgd`, `adam`, `adamw`).
    pub kind: String,
    /// Number of updates taken.
    pub step: u64,
    /// (slot name, one array per parameter).
    pub slots: Vec<(String, Vec<NamedArray>)>,
}

/// State of a ChaCha random generator (rand_chacha's get_seed/get_word_pos/get_stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngState {
    /// The generator's seed.
    pub seed: [u8; 32],
    /// Its position in the stream.
    pub word_pos: u128,
    /// Its stream.
    pub stream: u64,
}

/// Everything needed to rebuild a model and resume training.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoint {
    /// Training step of the checkpoint.
    pub step: u64,
    /// Full TOML text of the run's configuration (with a `[model]` table).
    pub config_toml: String,
    /// Parameters in model order.
    pub params: Vec<NamedArray>,
    /// The normalization statistics (`/norm`).
    pub norm: Vec<NamedArray>,
    /// Absent in weights-only checkpoints.
    pub optimizer: Option<OptimizerState>,
    /// The training batch generator, for an exact resume.
    pub rng: Option<RngState>,
    /// Scalar annotations (train_loss, val_loss, ...).
    pub scalars: Vec<(String, f64)>,
}

impl Checkpoint {
    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&NamedArray> {
        self.params.iter().find(|a| a.name == name)
    }
    /// The normalization array called `name`.
    pub fn norm_array(&self, name: &str) -> Option<&NamedArray> {
        self.norm.iter().find(|a| a.name == name)
    }
    /// The scalar annotation called `name`.
    pub fn scalar(&self, name: &str) -> Option<f64> {
        self.scalars.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// File name of the checkpoint at `step` inside a run directory.
pub fn checkpoint_path(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join("ckpt").join(format!("step_{step:08}.h5"))
}

/// All checkpoints of a run, sorted by step. Ignores `*.tmp` leftovers.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let dir = run_dir.join("ckpt");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let rd = std::fs::read_dir(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(num) = name.strip_prefix("step_").and_then(|s| s.strip_suffix(".h5")) {
            if let Ok(step) = num.parse::<u64>() {
                out.push((step, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn write_group(file: &hdf5::File, path: &Path, group: &str, arrays: &[NamedArray]) -> Result<(), StoreError> {
    let ctx = Ctx(path);
    let g = ctx.h5(group, file.create_group(group))?;
    for a in arrays {
        write_array(&g, path, &a.name, &a.data, &a.shape)?;
    }
    Ok(())
}

fn read_group(
    file: &hdf5::File,
    path: &Path,
    group: &str,
    order: Option<&[String]>,
) -> Result<Vec<NamedArray>, StoreError> {
    let ctx = Ctx(path);
    let g = file.group(group).map_err(|_| ctx.missing(group, FileKind::Checkpoint))?;
    let names: Vec<String> = match order {
        Some(o) => o.to_vec(),
        None => {
            let mut n = ctx.h5(group, g.member_names())?;
            n.sort();
            n
        }
    };
    names
        .iter()
        .map(|n| {
            let (data, shape) = read_array::<f32>(&g, path, n, None).map_err(|e| match e {
                StoreError::Missing { .. } => ctx.missing(&format!("{group}/{n}"), FileKind::Checkpoint),
                e => e,
            })?;
            Ok(NamedArray { name: n.clone(), shape, data })
        })
        .collect()
}

/// Write a checkpoint atomically.
pub fn write_checkpoint(path: &Path, ck: &Checkpoint) -> Result<(), StoreError> {
    atomic_write(path, FileKind::Checkpoint, |file| {
        let ctx = Ctx(path);
        set_attr(file, path, "step", ck.step)?;
        set_str_attr(file, path, "config", &ck.config_toml)?;
        let names: Vec<&str> = ck.params.iter().map(|a| a.name.as_str()).collect();
        set_str_attr(file, path, "param_names", &names.join("\n"))?;
        for (k, v) in &ck.scalars {
            set_attr(file, path, k, *v)?;
        }
        write_group(file, path, "params", &ck.params)?;
        write_group(file, path, "norm", &ck.norm)?;
        if let Some(opt) = &ck.optimizer {
            let g = ctx.h5("optimizer", file.create_group("optimizer"))?;
            set_str_attr(&g, path, "kind", &opt.kind)?;
            set_attr(&g, path, "step", opt.step)?;
            let slot_names: Vec<&str> = opt.slots.iter().map(|(s, _)| s.as_str()).collect();
            set_str_attr(&g, path, "slots", &slot_names.join("\n"))?;
            for (slot, arrays) in &opt.slots {
                let sg = ctx.h5(slot, g.create_group(slot))?;
                for a in arrays {
                    write_array(&sg, path, &a.name, &a.data, &a.shape)?;
                }
            }
        }
        if let Some(rng) = &ck.rng {
            let g = ctx.h5("rng", file.create_group("rng"))?;
            set_vec_attr(&g, path, "seed", &rng.seed)?;
            set_attr(&g, path, "word_pos_hi", (rng.word_pos >> 64) as u64)?;
            set_attr(&g, path, "word_pos_lo", rng.word_pos as u64)?;
            set_attr(&g, path, "stream", rng.stream)?;
        }
        Ok(())
    })
}

/// Read a whole checkpoint (weights, normalization, optimizer and RNG state).
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, StoreError> {
    let (file, _) = open_kind(path, Some(FileKind::Checkpoint))?;
    let ctx = Ctx(path);
    let step: u64 = get_attr(&file, path, "step")?;
    let config_toml = get_str_attr(&file, path, "config")?;
    let names: Vec<String> = get_str_attr(&file, path, "param_names")?.lines().map(str::to_string).collect();
    let params = read_group(&file, path, "params", Some(&names))?;
    let norm = read_group(&file, path, "norm", None)?;
    let mut scalars = Vec::new();
    for a in ctx.h5("/", file.attr_names())? {
        if matches!(a.as_str(), "step" | "config" | "param_names" | "kind" | "format_version") {
            continue;
        }
        if let Ok(v) = get_attr::<f64>(&file, path, &a) {
            scalars.push((a, v));
        }
    }
    scalars.sort_by(|a, b| a.0.cmp(&b.0));
    let optimizer = match file.group("optimizer") {
        Err(_) => None,
        Ok(g) => {
            let kind = get_str_attr(&g, path, "kind")?;
            let ostep: u64 = get_attr(&g, path, "step")?;
            let slot_names = get_str_attr(&g, path, "slots")?;
            let mut slots = Vec::new();
            for s in slot_names.lines().filter(|s| !s.is_empty()) {
                let sg = g.group(s).map_err(|_| ctx.missing(&format!("optimizer/{s}"), FileKind::Checkpoint))?;
                let mut arrays = Vec::new();
                for n in &names {
                    let (data, shape) = read_array::<f32>(&sg, path, n, None)?;
                    arrays.push(NamedArray { name: n.clone(), shape, data });
                }
                slots.push((s.to_string(), arrays));
            }
            Some(OptimizerState { kind, step: ostep, slots })
        }
    };
    let rng = match file.group("rng") {
        Err(_) => None,
        Ok(g) => {
            let seed_v: Vec<u8> = get_vec_attr(&g, path, "seed")?;
            let seed: [u8; 32] = seed_v
                .as_slice()
                .try_into()
                .map_err(|_| ctx.invalid("rng/seed", format!("{} bytes", seed_v.len()), "32 bytes"))?;
            let hi: u64 = get_attr(&g, path, "word_pos_hi")?;
            let lo: u64 = get_attr(&g, path, "word_pos_lo")?;
            let stream: u64 = get_attr(&g, path, "stream")?;
            Some(RngState { seed, word_pos: ((hi as u128) << 64) | lo as u128, stream })
        }
    };
    Ok(Checkpoint { step, config_toml, params, norm, optimizer, rng, scalars })
}

/// Read only the step and the config text of a checkpoint (cheap).
pub fn read_checkpoint_header(path: &Path) -> Result<(u64, String), StoreError> {
    let (file, _) = open_kind(path, Some(FileKind::Checkpoint))?;
    Ok((get_attr(&file, path, "step")?, get_str_attr(&file, path, "config")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let p = vec![
            NamedArray::new("embed.W_in", vec![3, 2], vec![1., 2., 3., 4., 5., 6.]),
            NamedArray::new("blocks.0.attn.W_Q", vec![1, 2, 1], vec![0.5, -0.5]),
        ];
        Checkpoint {
            step: 42,
            config_toml: "[model]\nn_layers = 1\n".into(),
            norm: vec![NamedArray::new("input_mean", vec![2], vec![0.1, 0.2])],
            optimizer: Some(OptimizerState {
                kind: "adam".into(),
                step: 42,
                slots: vec![(
                    "exp_avg".into(),
                    p.iter()
                        .map(|a| {
                            NamedArray::new(a.name.clone(), a.shape.clone(), a.data.iter().map(|x| x * 2.0).collect())
                        })
                        .collect(),
                )],
            }),
            rng: Some(RngState { seed: [7; 32], word_pos: (3u128 << 64) + 99, stream: 5 }),
            scalars: vec![("val_loss".into(), 0.25)],
            params: p,
        }
    }

    #[test]
    fn roundtrip_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let ck = sample();
        let p = checkpoint_path(dir.path(), 42);
        write_checkpoint(&p, &ck).unwrap();
        write_checkpoint(&checkpoint_path(dir.path(), 7), &Checkpoint { optimizer: None, rng: None, ..ck.clone() })
            .unwrap();
        std::fs::write(dir.path().join("ckpt/step_00000100.h5.tmp"), b"partial").unwrap();
        let back = read_checkpoint(&p).unwrap();
        assert_eq!(back, ck);
        let list = list_checkpoints(dir.path()).unwrap();
        assert_eq!(list.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![7, 42]);
        let light = read_checkpoint(&list[0].1).unwrap();
        assert!(light.optimizer.is_none() && light.rng.is_none());
        assert_eq!(read_checkpoint_header(&p).unwrap().0, 42);
    }

    #[test]
    fn missing_param_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let mut ck = sample();
        ck.optimizer = None;
        write_checkpoint(&p, &ck).unwrap();
        // Rewrite with a param list that names a parameter that is not stored.
        atomic_write(&p, FileKind::Checkpoint, |f| {
            set_attr(f, &p, "step", 1u64)?;
            set_str_attr(f, &p, "config", "")?;
            set_str_attr(f, &p, "param_names", "embed.W_in\nunembed.W_out")?;
            write_group(f, &p, "params", &ck.params[..1])?;
            write_group(f, &p, "norm", &[])
        })
        .unwrap();
        let e = read_checkpoint(&p).unwrap_err().to_string();
        assert!(e.contains("params/unembed.W_out") && e.contains("c.h5"), "{e}");
    }
}
