//! Model inputs and outputs in physical units: a batch of particle states
//! ([`State`]) and the dataset statistics ([`Normalization`]) that turn it into
//! normalized features and turn the model's output back into state changes.

use tch::{Device, Kind, Tensor};

use headlab_sim::stats::{mean_std, Spread};
use headlab_store::checkpoint::NamedArray;

use crate::{ModelError, Result};

/// Dataset statistics that turn raw particle states into model inputs and
/// model outputs into physical state changes. Saved under `/norm` in every
/// checkpoint (`input_mean`, `input_std`, `target_mean`, `target_std`,
/// `box_size`, `wall_range`).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Spatial dimension, 2 or 3.
    pub dimension: usize,
    /// Box extent per axis (the wall features need it).
    pub box_size: Vec<f64>,
    /// Wall gaps are divided by this and clipped to [-1, 1].
    pub wall_range: f64,
    /// Whether the inputs include the clipped gaps to the walls.
    pub wall_features: bool,
    /// Mean of each input feature over the training rows.
    pub input_mean: Vec<f32>,
    /// Population std of each input feature (1 for constant features).
    pub input_std: Vec<f32>,
    /// Mean of each target (Δposition, Δvelocity) component.
    pub target_mean: Vec<f32>,
    /// Population std of each target component (1 if constant).
    pub target_std: Vec<f32>,
}

/// A batch of particle states on a device: pos/vel [B,N,D], radii/masses [B,N].
pub struct State {
    /// Positions [B, N, D].
    pub pos: Tensor,
    /// Velocities [B, N, D].
    pub vel: Tensor,
    /// Radii [B, N].
    pub radii: Tensor,
    /// Masses [B, N].
    pub masses: Tensor,
}

impl State {
    /// Gather frames `(traj, frame)` of a dataset into one batch.
    pub fn from_dataset(ds: &headlab_sim::Dataset, frames: &[(usize, usize)], device: Device) -> State {
        let (n, d) = (ds.n_particles, ds.dim());
        let mut pos = Vec::with_capacity(frames.len() * n * d);
        let mut vel = Vec::with_capacity(frames.len() * n * d);
        let mut rad = Vec::with_capacity(frames.len() * n);
        let mut mass = Vec::with_capacity(frames.len() * n);
        for &(t, f) in frames {
            let i = ds.idx(t, f, 0);
            pos.extend_from_slice(&ds.positions[i..i + n * d]);
            vel.extend_from_slice(&ds.velocities[i..i + n * d]);
            rad.extend_from_slice(&ds.radii[t * n..(t + 1) * n]);
            mass.extend_from_slice(&ds.masses[t * n..(t + 1) * n]);
        }
        let b = frames.len() as i64;
        let (n, d) = (n as i64, d as i64);
        State {
            pos: Tensor::from_slice(&pos).view([b, n, d]).to(device),
            vel: Tensor::from_slice(&vel).view([b, n, d]).to(device),
            radii: Tensor::from_slice(&rad).view([b, n]).to(device),
            masses: Tensor::from_slice(&mass).view([b, n]).to(device),
        }
    }
}

impl Normalization {
    /// Raw (unnormalized) features [B,N,F]: pos, vel, radius, mass, then per
    /// axis clamp((x - r)/wall_range) and clamp((L - x - r)/wall_range).
    pub fn raw_features(&self, s: &State) -> Tensor {
        let r = s.radii.unsqueeze(-1);
        let mut parts = vec![s.pos.shallow_clone(), s.vel.shallow_clone(), r.shallow_clone(), s.masses.unsqueeze(-1)];
        if self.wall_features {
            let lo = ((&s.pos - &r) / self.wall_range).clamp(-1.0, 1.0);
            let bx =
                Tensor::from_slice(&self.box_size.iter().map(|&x| x as f32).collect::<Vec<_>>()).to(s.pos.device());
            let hi = ((bx - &s.pos - &r) / self.wall_range).clamp(-1.0, 1.0);
            parts.push(lo);
            parts.push(hi);
        }
        Tensor::cat(&parts, -1)
    }

    fn vec_t(v: &[f32], device: Device) -> Tensor {
        Tensor::from_slice(v).to(device)
    }

    /// Normalized model inputs [B,N,F].
    pub fn features(&self, s: &State) -> Tensor {
        let dev = s.pos.device();
        (self.raw_features(s) - Self::vec_t(&self.input_mean, dev)) / Self::vec_t(&self.input_std, dev)
    }

    /// Normalized targets from the state change (Δpos, Δvel) [B,N,2D].
    pub fn targets(&self, dpos: &Tensor, dvel: &Tensor) -> Tensor {
        let dev = dpos.device();
        (Tensor::cat(&[dpos, dvel], -1) - Self::vec_t(&self.target_mean, dev)) / Self::vec_t(&self.target_std, dev)
    }

    /// Physical (Δpos, Δvel) [B,N,2D] from normalized model output.
    pub fn denormalize(&self, y: &Tensor) -> Tensor {
        let dev = y.device();
        y * Self::vec_t(&self.target_std, dev) + Self::vec_t(&self.target_mean, dev)
    }

    /// Statistics over the given trajectories of a dataset (all frame pairs).
    /// Constant features (e.g. equal masses) get std 1 so they normalize to 0.
    pub fn from_dataset(ds: &headlab_sim::Dataset, trajs: &[usize], wall_features: bool) -> Result<Normalization> {
        let d = ds.dim();
        let max_r = ds.radii.iter().cloned().fold(0.0f32, f32::max) as f64;
        let mut norm = Normalization {
            dimension: d,
            box_size: ds.meta.box_size.clone(),
            wall_range: if max_r > 0.0 { 3.0 * max_r } else { 1.0 },
            wall_features,
            input_mean: vec![],
            input_std: vec![],
            target_mean: vec![],
            target_std: vec![],
        };
        let frames: Vec<(usize, usize)> = trajs.iter().flat_map(|&t| (0..ds.n_frames).map(move |f| (t, f))).collect();
        let s = State::from_dataset(ds, &frames, Device::Cpu);
        let feats = norm.raw_features(&s).to_kind(Kind::Double);
        let fdim = feats.size()[2];
        let feats = feats.view([-1, fdim]);
        let (m, sd) = column_mean_std(&feats)?;
        norm.input_mean = m;
        norm.input_std = sd;
        let pairs: Vec<(usize, usize)> =
            trajs.iter().flat_map(|&t| (0..ds.n_frames.saturating_sub(1)).map(move |f| (t, f))).collect();
        let nxt: Vec<(usize, usize)> = pairs.iter().map(|&(t, f)| (t, f + 1)).collect();
        let (a, b) = (State::from_dataset(ds, &pairs, Device::Cpu), State::from_dataset(ds, &nxt, Device::Cpu));
        let tg = Tensor::cat(&[&b.pos - &a.pos, &b.vel - &a.vel], -1).to_kind(Kind::Double).view([-1, 2 * d as i64]);
        let (m, sd) = column_mean_std(&tg)?;
        norm.target_mean = m;
        norm.target_std = sd;
        Ok(norm)
    }

    /// The statistics as named arrays for `/norm` of a checkpoint.
    pub fn to_arrays(&self) -> Vec<NamedArray> {
        let f = |n: &str, v: &[f32]| NamedArray::new(n, vec![v.len()], v.to_vec());
        vec![
            f("input_mean", &self.input_mean),
            f("input_std", &self.input_std),
            f("target_mean", &self.target_mean),
            f("target_std", &self.target_std),
            f("box_size", &self.box_size.iter().map(|&x| x as f32).collect::<Vec<_>>()),
            f("wall_range", &[self.wall_range as f32]),
        ]
    }

    /// Read the statistics back from `/norm` arrays of the checkpoint at `path`.
    pub fn from_arrays(arrays: &[NamedArray], wall_features: bool, path: &str) -> Result<Normalization> {
        let get = |n: &str| -> Result<Vec<f32>> {
            arrays.iter().find(|a| a.name == n).map(|a| a.data.clone()).ok_or_else(|| ModelError::Checkpoint {
                path: path.into(),
                msg: format!("missing normalization array /norm/{n}; the checkpoint was not written by headlab train"),
            })
        };
        let box_size: Vec<f64> = get("box_size")?.iter().map(|&x| x as f64).collect();
        let wall_range = match get("wall_range")?.as_slice() {
            &[w] if w.is_finite() && w > 0.0 => w as f64,
            other => {
                return Err(ModelError::Checkpoint {
                    path: path.into(),
                    msg: format!(
                        "/norm/wall_range holds {other:?}, expected one positive number (the wall-feature range); \
                         the checkpoint is damaged or was not written by headlab train: restore it or train again"
                    ),
                })
            }
        };
        Ok(Normalization {
            dimension: box_size.len(),
            box_size,
            wall_range,
            wall_features,
            input_mean: get("input_mean")?,
            input_std: get("input_std")?,
            target_mean: get("target_mean")?,
            target_std: get("target_std")?,
        })
    }
}

/// Per-column mean and population standard deviation (divisor n: these are
/// statistics of the training rows themselves) of a [rows, F] tensor, by
/// [`headlab_sim::stats::mean_std`]; a column whose std is below 1e-6 of its
/// mean's size (a constant feature) gets std 1.
fn column_mean_std(x: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    let cols = x.size().get(1).copied().unwrap_or(0).max(0) as usize;
    let all: Vec<f64> = Vec::try_from(x.to_kind(Kind::Double).contiguous().view([-1]))?;
    let rows = all.len().checked_div(cols).unwrap_or(0);
    let (mut m, mut sd) = (Vec::with_capacity(cols), Vec::with_capacity(cols));
    let mut col = Vec::with_capacity(rows);
    for c in 0..cols {
        col.clear();
        col.extend((0..rows).map(|r| all[r * cols + c]));
        let (mu, s) = mean_std(&col, Spread::Population);
        m.push(mu as f32);
        sd.push(if s > 1e-6 * mu.abs().max(1e-12) { s as f32 } else { 1.0 });
    }
    Ok((m, sd))
}
