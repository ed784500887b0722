//! The data pipeline: train/validation split by trajectory, normalized
//! features and targets kept on the device, batches drawn with a seeded
//! ChaCha8 generator (whose state goes into every checkpoint).

use headlab_model::{Normalization, State};
use headlab_sim::Dataset;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Device, Kind, Tensor};

use crate::{Result, TrainError};
use headlab_sim::seed::{derive_seed, Stream};

/// Split trajectory indices into (train, val), deterministically from `seed`.
/// With `val_fraction > 0` at least one trajectory is held out and at least
/// one is kept for training.
pub fn split_trajectories(n_traj: usize, val_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut idx: Vec<usize> = (0..n_traj).collect();
    if val_fraction <= 0.0 {
        return Ok((idx, vec![]));
    }
    if n_traj < 2 {
        return Err(TrainError::Data(format!(
            "the dataset has {n_traj} trajectory; a train/validation split by trajectory needs at least 2 (simulate more trajectories, or set val_fraction = 0)"
        )));
    }
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(seed, Stream::TrainValSplit)));
    let n_val = ((n_traj as f64 * val_fraction).round() as usize).clamp(1, n_traj - 1);
    let mut val = idx[..n_val].to_vec();
    let mut train = idx[n_val..].to_vec();
    val.sort();
    train.sort();
    Ok((train, val))
}

/// Samples (trajectory, frame) with a next frame, features and targets on the device.
pub struct TrainData {
    /// The statistics (of the training trajectories, or the checkpoint's).
    pub norm: Normalization,
    /// Training trajectories (dataset indices).
    pub train_trajs: Vec<usize>,
    /// Validation trajectories.
    pub val_trajs: Vec<usize>,
    n_frames: usize,
    dim: i64,
    /// Normalized features of every frame [traj*frames, N, F].
    x_all: Tensor,
    /// Normalized targets of every frame but the last of each trajectory [traj*frames, N, 2D]
    /// (the last frame's row is unused).
    y_all: Tensor,
    /// Raw states, for noisy batches.
    pos: Tensor,
    vel: Tensor,
    radii: Tensor,
    masses: Tensor,
    /// Flat row indices (traj*frames + frame) of the training samples.
    pub train_rows: Vec<i64>,
    /// Flat row indices of the validation samples.
    pub val_rows: Vec<i64>,
    device: Device,
}

impl TrainData {
    /// `norm` = None computes statistics from the training trajectories.
    pub fn new(
        ds: &Dataset,
        train_trajs: Vec<usize>,
        val_trajs: Vec<usize>,
        norm: Option<Normalization>,
        wall_features: bool,
        device: Device,
    ) -> Result<TrainData> {
        if ds.n_frames < 2 {
            return Err(TrainError::Data(format!(
                "the dataset has {} frame(s) per trajectory; training needs at least 2",
                ds.n_frames
            )));
        }
        let norm = match norm {
            Some(n) => n,
            None => Normalization::from_dataset(ds, &train_trajs, wall_features)?,
        };
        if norm.dimension != ds.dim() || norm.box_size.len() != ds.dim() {
            return Err(TrainError::Data(format!(
                "the dataset is {}-D but the checkpoint's normalization is {}-D",
                ds.dim(),
                norm.dimension
            )));
        }
        let (t, f, n, d) = (ds.n_traj as i64, ds.n_frames as i64, ds.n_particles as i64, ds.dim() as i64);
        let pos = Tensor::from_slice(&ds.positions).view([t * f, n, d]).to(device);
        let vel = Tensor::from_slice(&ds.velocities).view([t * f, n, d]).to(device);
        let radii =
            Tensor::from_slice(&ds.radii).view([t, 1, n]).expand([t, f, n], false).reshape([t * f, n]).to(device);
        let masses =
            Tensor::from_slice(&ds.masses).view([t, 1, n]).expand([t, f, n], false).reshape([t * f, n]).to(device);
        let x_all = norm.features(&State {
            pos: pos.shallow_clone(),
            vel: vel.shallow_clone(),
            radii: radii.shallow_clone(),
            masses: masses.shallow_clone(),
        });
        // Next-frame rows; the last frame of each trajectory points at itself (never sampled).
        let next: Vec<i64> = (0..t * f).map(|r| if (r + 1) % f == 0 { r } else { r + 1 }).collect();
        let next = Tensor::from_slice(&next).to(device);
        let y_all = norm.targets(&(pos.index_select(0, &next) - &pos), &(vel.index_select(0, &next) - &vel));
        let rows = |trajs: &[usize]| -> Vec<i64> {
            trajs.iter().flat_map(|&tr| (0..f - 1).map(move |fr| tr as i64 * f + fr)).collect()
        };
        Ok(TrainData {
            train_rows: rows(&train_trajs),
            val_rows: rows(&val_trajs),
            norm,
            train_trajs,
            val_trajs,
            n_frames: ds.n_frames,
            dim: d,
            x_all,
            y_all,
            pos,
            vel,
            radii,
            masses,
            device,
        })
    }

    /// The device the tensors live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Frames per trajectory.
    pub fn n_frames(&self) -> usize {
        self.n_frames
    }

    /// Draw `batch` training rows uniformly (with replacement).
    pub fn sample_rows(&self, rng: &mut ChaCha8Rng, batch: usize) -> Vec<i64> {
        (0..batch).map(|_| self.train_rows[rng.gen_range(0..self.train_rows.len())]).collect()
    }

    /// Features and targets of the given rows. With `noise > 0`, Gaussian
    /// noise (in units of the one-frame change's std) is added to input
    /// positions and velocities, drawn from `rng`, and the targets are the
    /// change from the noisy state to the true next state.
    pub fn batch(&self, rows: &[i64], noise: f64, rng: &mut ChaCha8Rng) -> (Tensor, Tensor) {
        let idx = Tensor::from_slice(rows).to(self.device);
        if noise <= 0.0 {
            return (self.x_all.index_select(0, &idx), self.y_all.index_select(0, &idx));
        }
        let d = self.dim as usize;
        let pos = self.pos.index_select(0, &idx);
        let vel = self.vel.index_select(0, &idx);
        let n = pos.numel();
        let sd = &self.norm.target_std;
        let mut draw = |off: usize| -> Tensor {
            let v: Vec<f32> = (0..n)
                .map(|i| {
                    let z: f64 = StandardNormal.sample(rng);
                    (z * noise * sd[off + i % d] as f64) as f32
                })
                .collect();
            Tensor::from_slice(&v).view(pos.size().as_slice()).to(self.device)
        };
        let (np, nv) = (draw(0), draw(d));
        let noisy = State {
            pos: &pos + &np,
            vel: &vel + &nv,
            radii: self.radii.index_select(0, &idx),
            masses: self.masses.index_select(0, &idx),
        };
        let next: Vec<i64> = rows.iter().map(|&r| r + 1).collect();
        let nidx = Tensor::from_slice(&next).to(self.device);
        let y = self
            .norm
            .targets(&(self.pos.index_select(0, &nidx) - &noisy.pos), &(self.vel.index_select(0, &nidx) - &noisy.vel));
        (self.norm.features(&noisy), y)
    }

    /// Up to `max` validation rows, evenly spread over the validation set.
    pub fn val_subset(&self, max: usize) -> Vec<i64> {
        let n = self.val_rows.len();
        if n <= max {
            return self.val_rows.clone();
        }
        (0..max).map(|i| self.val_rows[i * n / max]).collect()
    }

    /// Mean squared error (normalized units) of the model and of the
    /// "no change" prediction on `rows`, evaluated in chunks without grad.
    pub fn mse(&self, model: &headlab_model::Model, rows: &[i64]) -> Result<(f64, f64)> {
        if rows.is_empty() {
            return Ok((f64::NAN, f64::NAN));
        }
        tch::no_grad(|| {
            let zero = self.norm.targets(
                &Tensor::zeros([1, 1, self.dim], (Kind::Float, self.device)),
                &Tensor::zeros([1, 1, self.dim], (Kind::Float, self.device)),
            );
            let (mut se, mut se0, mut count) = (0.0, 0.0, 0.0);
            for chunk in rows.chunks(256) {
                let idx = Tensor::from_slice(chunk).to(self.device);
                let (x, y) = (self.x_all.index_select(0, &idx), self.y_all.index_select(0, &idx));
                let pred = model.forward(&x)?;
                se += (&pred - &y).square().sum(Kind::Double).double_value(&[]);
                se0 += (&zero - &y).square().sum(Kind::Double).double_value(&[]);
                count += y.numel() as f64;
            }
            Ok((se / count, se0 / count))
        })
    }
}
