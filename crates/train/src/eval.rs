//! Evaluation of a trained run: one-step MSE on the validation trajectories
//! against the "no change" baseline, and rollouts (the model iterated as a
//! simulator from real initial states) with position error over the horizon
//! and total-energy drift. Rollouts come back as a [`Dataset`] in the
//! simulator's format, so they can be written, inspected and viewed like any
//! simulation.

use std::path::{Path, PathBuf};

use headlab_model::{DeviceSpec, Model, State};
use headlab_sim::Dataset;
use headlab_store::checkpoint::{list_checkpoints, read_checkpoint};
use tch::{Kind, Tensor};

use crate::{split_trajectories, Result, TrainConfig, TrainData, TrainError};

#[derive(Debug, Clone)]
/// What `headlab eval` evaluates.
pub struct EvalOptions {
    /// Checkpoint step to evaluate; None = the newest.
    pub step: Option<u64>,
    /// Number of validation trajectories rolled out.
    pub rollout_trajs: usize,
    /// Rollout length in frames; 0 = the whole trajectory.
    pub horizon: usize,
    /// auto, cpu, cuda or cuda:N.
    pub device: DeviceSpec,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { step: None, rollout_trajs: 4, horizon: 0, device: DeviceSpec::Auto }
    }
}

#[derive(Debug, Clone)]
/// One-step errors and rollouts of one checkpoint.
pub struct EvalReport {
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Its training step.
    pub step: u64,
    /// Validation trajectories used.
    pub val_trajs: Vec<usize>,
    /// One-step MSE in normalized target units (the training loss's units).
    pub one_step_mse: f64,
    /// Same for predicting no change.
    pub baseline_mse: f64,
    /// Per output component (Δx, Δy, [Δz], Δvx, ...): model and baseline MSE.
    pub component_mse: Vec<f64>,
    /// The no-change baseline's MSE per component.
    pub component_baseline_mse: Vec<f64>,
    /// Trajectories rolled out (dataset indices).
    pub rollout_trajs: Vec<usize>,
    /// Mean squared position error (physical units) at each rollout frame, index 0 = initial state.
    pub rollout_position_mse: Vec<f64>,
    /// Mean over rollouts of (E_t − E_0)/|E_0| for the model's rollout and for the ground truth.
    pub rollout_energy_drift: Vec<f64>,
    /// The same for the ground truth.
    pub true_energy_drift: Vec<f64>,
    /// The rollouts in the simulator's format (no events).
    pub rollout: Dataset,
}

impl EvalReport {
    /// How many times below the no-change baseline the one-step MSE is.
    pub fn improvement(&self) -> f64 {
        self.baseline_mse / self.one_step_mse
    }
}

/// Evaluate a run on `ds` (the dataset it was trained on; the validation
/// trajectories are recomputed from the run's seed and val_fraction).
pub fn evaluate(run_dir: &Path, ds: &Dataset, opts: &EvalOptions) -> Result<EvalReport> {
    let device = opts.device.resolve()?;
    let list = list_checkpoints(run_dir)?;
    let path = match opts.step {
        None => list.last().map(|(_, p)| p.clone()),
        Some(s) => list.iter().find(|(st, _)| *st == s).map(|(_, p)| p.clone()),
    }
    .ok_or_else(|| {
        let have: Vec<String> = list.iter().map(|(s, _)| s.to_string()).collect();
        TrainError::Data(format!(
            "{}: no checkpoint{}; available steps: [{}]",
            run_dir.display(),
            opts.step.map(|s| format!(" at step {s}")).unwrap_or_default(),
            have.join(", ")
        ))
    })?;
    let pstr = path.display().to_string();
    let ck = read_checkpoint(&path)?;
    let cfg = TrainConfig::from_toml(&ck.config_toml, &format!("{pstr} (config attribute)"))?;
    let model = Model::from_checkpoint(&ck, device, &pstr)?;
    if ds.dim() != model.norm.dimension {
        return Err(TrainError::Data(format!(
            "the dataset is {}-D, the model in {pstr} was trained on {}-D data",
            ds.dim(),
            model.norm.dimension
        )));
    }
    let (train_trajs, mut val_trajs) = split_trajectories(ds.n_traj, cfg.val_fraction, cfg.seed)?;
    if val_trajs.is_empty() {
        tracing::warn!(
            "the run has no validation trajectories (val_fraction = 0); evaluating on the training trajectories"
        );
        val_trajs = train_trajs.clone();
    }
    let data =
        TrainData::new(ds, train_trajs, val_trajs.clone(), Some(model.norm.clone()), cfg.model.wall_features, device)?;

    // One-step errors, overall and per component.
    let d2 = 2 * ds.dim() as i64;
    let (mut se, mut se0, mut count) =
        (Tensor::zeros([d2], (Kind::Double, device)), Tensor::zeros([d2], (Kind::Double, device)), 0i64);
    tch::no_grad(|| -> Result<()> {
        let zero = model.norm.targets(
            &Tensor::zeros([1, 1, d2 / 2], (Kind::Float, device)),
            &Tensor::zeros([1, 1, d2 / 2], (Kind::Float, device)),
        );
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        for chunk in data.val_rows.chunks(256) {
            let (x, y) = data.batch(chunk, 0.0, &mut rng);
            let pred = model.forward(&x)?;
            se += (&pred - &y).square().to_kind(Kind::Double).view([-1, d2]).sum_dim_intlist(0, false, Kind::Double);
            se0 += (&zero - &y).square().to_kind(Kind::Double).view([-1, d2]).sum_dim_intlist(0, false, Kind::Double);
            count += y.numel() as i64 / d2;
        }
        Ok(())
    })?;
    let per = |t: &Tensor| -> Result<Vec<f64>> { Ok(Vec::<f64>::try_from(t / count.max(1) as f64)?) };
    let component_mse = per(&se)?;
    let component_baseline_mse = per(&se0)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;

    // Rollouts from frame 0 of the first validation trajectories.
    let rollout_trajs: Vec<usize> = val_trajs.iter().copied().take(opts.rollout_trajs.max(1)).collect();
    let horizon = if opts.horizon == 0 { ds.n_frames - 1 } else { opts.horizon.min(ds.n_frames - 1) };
    let mut state = State::from_dataset(ds, &rollout_trajs.iter().map(|&t| (t, 0)).collect::<Vec<_>>(), device);
    let (b, n, d) = (rollout_trajs.len(), ds.n_particles, ds.dim());
    let mut pos_frames: Vec<Vec<f32>> = Vec::with_capacity(horizon + 1);
    let mut vel_frames: Vec<Vec<f32>> = Vec::with_capacity(horizon + 1);
    let host = |t: &Tensor| -> Result<Vec<f32>> {
        Ok(Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).contiguous().view([-1]))?)
    };
    let mut rollout_position_mse = Vec::with_capacity(horizon + 1);
    for f in 0..=horizon {
        if f > 0 {
            state = model.step_state(&state)?;
        }
        let truth = State::from_dataset(ds, &rollout_trajs.iter().map(|&t| (t, f)).collect::<Vec<_>>(), device);
        rollout_position_mse.push((&state.pos - &truth.pos).square().mean(Kind::Double).double_value(&[]));
        pos_frames.push(host(&state.pos)?);
        vel_frames.push(host(&state.vel)?);
    }
    // Assemble [traj, frame, n, d].
    let frames = horizon + 1;
    let mut positions = vec![0f32; b * frames * n * d];
    let mut velocities = vec![0f32; b * frames * n * d];
    for f in 0..frames {
        for t in 0..b {
            let src = t * n * d..(t + 1) * n * d;
            let dst = (t * frames + f) * n * d;
            positions[dst..dst + n * d].copy_from_slice(&pos_frames[f][src.clone()]);
            velocities[dst..dst + n * d].copy_from_slice(&vel_frames[f][src]);
        }
    }
    let mut meta = ds.meta.clone();
    meta.scene_toml =
        format!("# rollout of {pstr} from frame 0 of trajectories {rollout_trajs:?}\n{}", meta.scene_toml);
    let rollout = Dataset {
        n_traj: b,
        n_frames: frames,
        n_particles: n,
        meta,
        positions,
        velocities,
        radii: rollout_trajs.iter().flat_map(|&t| ds.radii[t * n..(t + 1) * n].iter().copied()).collect(),
        masses: rollout_trajs.iter().flat_map(|&t| ds.masses[t * n..(t + 1) * n].iter().copied()).collect(),
        events: vec![],
    };
    let drift = |series: Vec<Vec<f64>>| -> Vec<f64> {
        (0..frames)
            .map(|f| {
                series.iter().map(|s| (s[f] - s[0]) / s[0].abs().max(1e-30)).sum::<f64>() / series.len().max(1) as f64
            })
            .collect()
    };
    let model_e: Vec<Vec<f64>> = (0..b).map(|t| headlab_sim::energy::energy_series(&rollout, t)).collect();
    let true_e: Vec<Vec<f64>> =
        rollout_trajs.iter().map(|&t| headlab_sim::energy::energy_series(ds, t)[..frames].to_vec()).collect();
    Ok(EvalReport {
        checkpoint: path,
        step: ck.step,
        val_trajs,
        one_step_mse: mean(&component_mse),
        baseline_mse: mean(&component_baseline_mse),
        component_mse,
        component_baseline_mse,
        rollout_trajs,
        rollout_position_mse,
        rollout_energy_drift: drift(model_e),
        true_energy_drift: drift(true_e),
        rollout,
    })
}
