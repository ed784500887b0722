//! The in-memory form of a simulated dataset: what `headlab simulate` writes
//! and what training, probing and the viewer read (via headlab-store).

/// Kind of a collision event (stored as u8 in HDF5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventKind {
    /// Two particles start touching.
    ContactStart = 0,
    /// Two particles stop touching.
    ContactEnd = 1,
    /// Particle touches a wall (start); `j` encodes the wall.
    WallStart = 2,
    /// Particle leaves a wall (end); `j` encodes the wall.
    WallEnd = 3,
}

impl EventKind {
    /// The kind stored as `v` in HDF5, or None for an unknown code.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::ContactStart,
            1 => Self::ContactEnd,
            2 => Self::WallStart,
            3 => Self::WallEnd,
            _ => return None,
        })
    }
    /// A readable name (`contact-start`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::ContactStart => "contact-start",
            Self::ContactEnd => "contact-end",
            Self::WallStart => "wall-start",
            Self::WallEnd => "wall-end",
        }
    }
}

/// One collision event, detected on a sub-step.
///
/// `step` is the sub-step index from the start of the trajectory; the frame
/// interval that contains it is `step / stride` (frame f covers sub-steps
/// (f*stride, (f+1)*stride]).  For particle pairs `i < j`.  For walls `j` is
/// `-(1 + wall)` with wall = 2*axis + (0 for the low wall, 1 for the high wall).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Event {
    /// Trajectory index.
    pub traj: u32,
    /// Sub-step index from the start of the trajectory.
    pub step: u64,
    /// First particle.
    pub i: i32,
    /// Second particle (i < j), or `-(1 + wall)` for a wall.
    pub j: i32,
    /// What happened.
    pub kind: EventKind,
}

/// Physical parameters of a dataset, stored as HDF5 attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetMeta {
    /// Integrator sub-step (time units).
    pub dt: f64,
    /// Sub-steps between recorded frames.
    pub stride: u64,
    /// Spatial dimension, 2 or 3.
    pub dimension: usize,
    /// Box extent per axis (length `dimension`); the box is [0, L_a] on each axis.
    pub box_size: Vec<f64>,
    /// Gravity magnitude, acting along -axis (dimension-1) (y in 2D, z in 3D).
    pub gravity: f64,
    /// Spring constant of the normal contact.
    pub spring_k: f64,
    /// Dashpot constant (per unit effective mass convention documented by sim).
    pub damping: f64,
    /// Coefficient of restitution if the scene gave one (NaN otherwise).
    pub restitution: f64,
    /// Contact duration of a typical pair (time units).
    pub contact_time: f64,
    /// Seed of the simulation.
    pub seed: u64,
    /// The scene file's TOML text (resolved, with defaults).
    pub scene_toml: String,
}

/// A whole dataset. Arrays are row-major, flattened:
/// positions/velocities [traj, frames, n, dim]; radii/masses [traj, n].
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Number of trajectories.
    pub n_traj: usize,
    /// Recorded frames per trajectory.
    pub n_frames: usize,
    /// Particles per trajectory.
    pub n_particles: usize,
    /// Physical parameters.
    pub meta: DatasetMeta,
    /// Positions [traj, frames, n, dim].
    pub positions: Vec<f32>,
    /// Velocities [traj, frames, n, dim].
    pub velocities: Vec<f32>,
    /// Radii [traj, n].
    pub radii: Vec<f32>,
    /// Masses [traj, n].
    pub masses: Vec<f32>,
    /// Sorted by (traj, step, i, j, kind).
    pub events: Vec<Event>,
}

impl Dataset {
    /// Spatial dimension (2 or 3).
    pub fn dim(&self) -> usize {
        self.meta.dimension
    }
    /// Index of the first coordinate of particle `p` at frame `f` of trajectory `t`.
    pub fn idx(&self, t: usize, f: usize, p: usize) -> usize {
        ((t * self.n_frames + f) * self.n_particles + p) * self.dim()
    }
    /// Time between recorded frames.
    pub fn frame_dt(&self) -> f64 {
        self.meta.dt * self.meta.stride as f64
    }
}

/// Contacts by frame interval, reconstructed from the events.
///
/// Interval `f` (0 ≤ f < n_frames−1) runs from frame f to frame f+1, i.e. over
/// sub-steps (f·stride, (f+1)·stride]. A pair is "in contact during interval f"
/// when it overlaps at one or more of those sub-steps: it started in the
/// interval, or it was already in contact and did not end at the interval's
/// first sub-step. No contact exists at step 0 (placement has no overlaps);
/// contacts still open at the last sub-step have no end event.
impl Dataset {
    /// For trajectory `traj`: per interval, the sorted list of (i, j) in
    /// contact during it — pairs with i < j, walls as (i, −(1+wall)).
    pub fn interval_contacts(&self, traj: usize) -> Vec<Vec<(i32, i32)>> {
        let n_int = self.n_frames.saturating_sub(1);
        let stride = self.meta.stride;
        let lo = self.events.partition_point(|e| (e.traj as usize) < traj);
        let hi = self.events.partition_point(|e| (e.traj as usize) <= traj);
        let evs = &self.events[lo..hi];
        let mut active: std::collections::BTreeSet<(i32, i32)> = Default::default();
        let mut out = Vec::with_capacity(n_int);
        let mut k = 0;
        let apply = |e: &Event, active: &mut std::collections::BTreeSet<(i32, i32)>| match e.kind {
            EventKind::ContactStart | EventKind::WallStart => {
                active.insert((e.i, e.j));
            }
            EventKind::ContactEnd | EventKind::WallEnd => {
                active.remove(&(e.i, e.j));
            }
        };
        for f in 0..n_int as u64 {
            let first = f * stride + 1;
            let last = (f + 1) * stride;
            while k < evs.len() && evs[k].step <= first {
                apply(&evs[k], &mut active);
                k += 1;
            }
            let mut set = active.clone();
            while k < evs.len() && evs[k].step <= last {
                apply(&evs[k], &mut active);
                if matches!(evs[k].kind, EventKind::ContactStart | EventKind::WallStart) {
                    set.insert((evs[k].i, evs[k].j));
                }
                k += 1;
            }
            out.push(set.into_iter().collect());
        }
        out
    }

    /// For trajectory `traj`: `[interval][particle]` = true when the particle
    /// touches another particle (walls excluded) during the interval.
    pub fn particle_in_contact(&self, traj: usize) -> Vec<Vec<bool>> {
        self.interval_contacts(traj)
            .into_iter()
            .map(|pairs| {
                let mut row = vec![false; self.n_particles];
                for (i, j) in pairs {
                    if j >= 0 {
                        row[i as usize] = true;
                        row[j as usize] = true;
                    }
                }
                row
            })
            .collect()
    }

    /// Fraction of (trajectory, interval, particle) in contact with another
    /// particle during the interval.
    pub fn contact_fraction(&self) -> f64 {
        let mut hit = 0usize;
        let mut total = 0usize;
        for t in 0..self.n_traj {
            for row in self.particle_in_contact(t) {
                hit += row.iter().filter(|&&b| b).count();
                total += row.len();
            }
        }
        if total == 0 {
            0.0
        } else {
            hit as f64 / total as f64
        }
    }
}
