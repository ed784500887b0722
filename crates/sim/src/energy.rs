//! Total energy of recorded frames (kinetic + gravitational + spring
//! potential of overlaps with particles and walls) and its relative drift,
//! e.g. for `headlab inspect`. Frames are stored as f32, so energies computed
//! here carry f32 round-off (relative ~1e-7 of the kinetic energy).

use crate::dataset::Dataset;
use crate::physics::{Params, World};
use crate::scene::Damping;

/// Energy of one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameEnergy {
    /// Kinetic energy, Σ m v²/2.
    pub kinetic: f64,
    /// Gravitational (m·g·height above the floor) plus spring potential.
    pub potential: f64,
    /// Kinetic plus potential.
    pub total: f64,
}

/// Energy change over a whole dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyDrift {
    /// Mean over trajectories of (E_last − E_first)/|E_first|. Negative for
    /// damped scenes (dissipation); near zero for elastic ones.
    pub mean_relative_change: f64,
    /// Largest |E_f − E_0|/|E_0| over all frames and trajectories.
    pub max_relative_deviation: f64,
    /// Largest frame-to-frame increase (E_{f+1} − E_f)/|E_0| (≤ 0 up to
    /// round-off when damping only dissipates).
    pub max_relative_increase: f64,
}

fn frame_world<const D: usize>(ds: &Dataset, traj: usize, frame: usize) -> World<D> {
    let n = ds.n_particles;
    let mut box_size = [0.0; D];
    box_size.copy_from_slice(&ds.meta.box_size);
    let params = Params {
        box_size,
        gravity: ds.meta.gravity,
        spring_k: ds.meta.spring_k,
        // Damping does not enter the energy.
        damping: Damping::Coefficient(0.0),
        dt: ds.meta.dt,
    };
    let arr = |src: &[f32], p: usize| {
        let i = ds.idx(traj, frame, p);
        let mut a = [0.0; D];
        for (k, v) in a.iter_mut().enumerate() {
            *v = src[i + k] as f64;
        }
        a
    };
    let x = (0..n).map(|p| arr(&ds.positions, p)).collect();
    let v = (0..n).map(|p| arr(&ds.velocities, p)).collect();
    let r = ds.radii[traj * n..(traj + 1) * n].iter().map(|&x| x as f64).collect();
    let m = ds.masses[traj * n..(traj + 1) * n].iter().map(|&x| x as f64).collect();
    World::new(params, x, v, r, m)
}

/// Energy of frame `frame` of trajectory `traj`.
pub fn frame_energy(ds: &Dataset, traj: usize, frame: usize) -> FrameEnergy {
    let (kinetic, potential) = if ds.meta.dimension == 2 {
        let mut w = frame_world::<2>(ds, traj, frame);
        (w.kinetic_energy(), w.potential_energy())
    } else {
        let mut w = frame_world::<3>(ds, traj, frame);
        (w.kinetic_energy(), w.potential_energy())
    };
    FrameEnergy { kinetic, potential, total: kinetic + potential }
}

/// Total energy of every frame of trajectory `traj`.
pub fn energy_series(ds: &Dataset, traj: usize) -> Vec<f64> {
    (0..ds.n_frames).map(|f| frame_energy(ds, traj, f).total).collect()
}

/// Relative energy change over the dataset (all trajectories).
pub fn energy_drift(ds: &Dataset) -> EnergyDrift {
    let mut mean = 0.0;
    let mut max_dev: f64 = 0.0;
    let mut max_inc = f64::NEG_INFINITY;
    for t in 0..ds.n_traj {
        let e = energy_series(ds, t);
        let e0 = e[0].abs().max(f64::MIN_POSITIVE);
        mean += (e[e.len() - 1] - e[0]) / e0;
        for w in e.windows(2) {
            max_inc = max_inc.max((w[1] - w[0]) / e0);
        }
        for x in &e {
            max_dev = max_dev.max((x - e[0]).abs() / e0);
        }
    }
    EnergyDrift {
        mean_relative_change: mean / ds.n_traj.max(1) as f64,
        max_relative_deviation: max_dev,
        max_relative_increase: if max_inc.is_finite() { max_inc } else { 0.0 },
    }
}
