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
/// `step` is the sub-step index from the start of the trajectory (see
/// [`Dataset::interval_contacts`] for which frame intervals a contact
/// belongs to).  For particle pairs `i < j`.  For walls `j` is
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
    /// A 2D dataset of `n_traj` trajectories × `n_frames` frames of
    /// `n_particles` disks (radius 0.1, mass 1) resting at the origin, in a
    /// unit box sampled every 10 sub-steps of 1 ms, with the given event
    /// table: a fixture for tests and synthetic checks of event-based code.
    pub fn at_rest_2d(n_traj: usize, n_frames: usize, n_particles: usize, events: Vec<Event>) -> Dataset {
        let values = n_traj * n_frames * n_particles * 2;
        Dataset {
            n_traj,
            n_frames,
            n_particles,
            meta: DatasetMeta {
                dt: 0.001,
                stride: 10,
                dimension: 2,
                box_size: vec![1.0, 1.0],
                gravity: 0.0,
                spring_k: 1.0,
                damping: 0.0,
                restitution: f64::NAN,
                contact_time: 0.01,
                seed: 0,
                scene_toml: String::new(),
            },
            positions: vec![0.0; values],
            velocities: vec![0.0; values],
            radii: vec![0.1; n_traj * n_particles],
            masses: vec![1.0; n_traj * n_particles],
            events,
        }
    }

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

    /// A content fingerprint (`fx64:` and 16 hex digits) of the sizes, the
    /// arrays and the events: runs record it, so that resuming, probing or
    /// evaluating against a dataset that was since changed or replaced is
    /// noticed. Not cryptographic; about a millisecond per MB.
    pub fn fingerprint(&self) -> String {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h: u64 = 0x0068_6561_646c_6162; // "headlab"
        let mut mix = |w: u64| h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        for v in [self.n_traj, self.n_frames, self.n_particles, self.dim()] {
            mix(v as u64);
        }
        for a in [&self.positions, &self.velocities, &self.radii, &self.masses] {
            mix(a.len() as u64);
            for pair in a.chunks(2) {
                let lo = pair[0].to_bits() as u64;
                let hi = pair.get(1).map_or(0, |x| x.to_bits() as u64);
                mix(lo | (hi << 32));
            }
        }
        mix(self.events.len() as u64);
        for e in &self.events {
            mix(((e.traj as u64) << 32) ^ e.step);
            mix(((e.i as u32 as u64) << 32) | (e.j as u32 as u64));
            mix(e.kind as u64);
        }
        format!("fx64:{h:016x}")
    }
}

/// Contacts by frame interval, reconstructed from the events: the one
/// definition of "in contact during the predicted interval" in headlab
/// (probe, lenses, viewer and report all call [`Dataset::interval_contacts`]).
///
/// Frame `f` is the state at sub-step `f·stride`; the model predicts frame
/// `f+1`, at sub-step `(f+1)·stride`. A pair counts as in contact during
/// interval `f` when it is in contact at any sub-step `s` with
/// `f·stride ≤ s ≤ (f+1)·stride` (a closed interval: pairs already touching
/// at the input frame count, since their contact force acts on the step the
/// model predicts). A `ContactStart` event at sub-step `s` means the pair is
/// in contact at `s`; a `ContactEnd` at `s` means it no longer is at `s`. So a
/// contact whose end event falls exactly on `f·stride` belongs to interval
/// `f−1` only, and one that ends at `f·stride + 1` still belongs to interval
/// `f`. No contact exists at step 0 (placement has no overlaps); contacts
/// still open at the last sub-step have no end event.
impl Dataset {
    /// For trajectory `traj` and each of `frames` (any order; interval `f`
    /// runs from frame `f` to frame `f+1`): the sorted list of pairs in
    /// contact during the interval — particle pairs `(i, j)` with `i < j`,
    /// and, when `walls`, particle–wall contacts as `(i, −(1+wall))`.
    pub fn interval_contacts(&self, traj: usize, frames: &[usize], walls: bool) -> Vec<Vec<(i32, i32)>> {
        let stride = self.meta.stride;
        let lo = self.events.partition_point(|e| (e.traj as usize) < traj);
        let hi = self.events.partition_point(|e| (e.traj as usize) <= traj);
        // This trajectory's events, by sub-step; at equal sub-steps ends are
        // applied before starts, so a pair that ends and restarts on the same
        // sub-step is in contact afterwards.
        let mut evs: Vec<(u64, bool, i32, i32)> = self.events[lo..hi]
            .iter()
            .filter(|e| walls || e.j >= 0)
            .map(|e| (e.step, matches!(e.kind, EventKind::ContactStart | EventKind::WallStart), e.i, e.j))
            .collect();
        evs.sort_unstable();
        let mut order: Vec<usize> = (0..frames.len()).collect();
        order.sort_by_key(|&k| frames[k]);
        let mut out = vec![Vec::new(); frames.len()];
        let mut active: std::collections::BTreeSet<(i32, i32)> = Default::default();
        let mut k = 0; // events with step <= the current interval's first sub-step are applied
        for q in order {
            let s0 = frames[q] as u64 * stride;
            let s1 = s0 + stride;
            while k < evs.len() && evs[k].0 <= s0 {
                let (_, start, i, j) = evs[k];
                if start {
                    active.insert((i, j));
                } else {
                    active.remove(&(i, j));
                }
                k += 1;
            }
            let mut set = active.clone();
            let mut c = k;
            while c < evs.len() && evs[c].0 <= s1 {
                let (_, start, i, j) = evs[c];
                if start {
                    set.insert((i, j));
                }
                c += 1;
            }
            out[q] = set.into_iter().collect();
        }
        out
    }

    /// Every interval of trajectory `traj` (`0..n_frames−1`), walls included:
    /// [`Dataset::interval_contacts`] on all frames with a successor.
    pub fn all_interval_contacts(&self, traj: usize) -> Vec<Vec<(i32, i32)>> {
        let frames: Vec<usize> = (0..self.n_frames.saturating_sub(1)).collect();
        self.interval_contacts(traj, &frames, true)
    }

    /// For trajectory `traj`: `[interval][particle]` = true when the particle
    /// touches another particle (walls excluded) during the interval.
    pub fn particle_in_contact(&self, traj: usize) -> Vec<Vec<bool>> {
        self.all_interval_contacts(traj)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(events: Vec<Event>) -> Dataset {
        Dataset::at_rest_2d(2, 10, 4, events)
    }

    fn ev(traj: u32, step: u64, i: i32, j: i32, kind: EventKind) -> Event {
        Event { traj, step, i, j, kind }
    }

    /// Interval f is the closed range of sub-steps [10 f, 10 (f+1)].
    #[test]
    fn interval_contacts_closed_interval_and_frame_boundaries() {
        use EventKind::*;
        let mut events = vec![
            ev(0, 5, 0, 1, ContactStart),  // frame 0 interval [0, 10]
            ev(0, 25, 0, 1, ContactEnd),   // still in contact at sub-step 20: frames 0, 1, 2
            ev(0, 31, 2, 3, ContactStart), // starts and ends inside frame 3's interval
            ev(0, 35, 2, 3, ContactEnd),
            ev(0, 40, 1, 2, ContactStart), // starts exactly on the 3|4 boundary: frames 3 and 4
            ev(0, 50, 1, 2, ContactEnd),   // ends exactly on the 4|5 boundary: not in frame 5
            ev(0, 60, 0, 3, ContactStart), // in contact at 60 only (ends at 61): frames 5 and 6
            ev(0, 61, 0, 3, ContactEnd),
            ev(0, 70, 0, -1, WallStart), // a wall: only with `walls`
            ev(0, 72, 0, -1, WallEnd),
            ev(1, 5, 2, 3, ContactStart), // other trajectory, never ends
        ];
        events.sort();
        let d = ds(events);
        let frames: Vec<usize> = (0..9).rev().collect(); // any order
        let cs = d.interval_contacts(0, &frames, false);
        let get = |f: usize| cs[frames.iter().position(|&x| x == f).unwrap()].clone();
        assert_eq!(get(0), vec![(0, 1)]);
        assert_eq!(get(1), vec![(0, 1)]);
        assert_eq!(get(2), vec![(0, 1)]);
        assert_eq!(get(3), vec![(1, 2), (2, 3)]);
        assert_eq!(get(4), vec![(1, 2)]);
        assert_eq!(get(5), vec![(0, 3)], "a contact at sub-step 60 only is in [50, 60] and [60, 70]");
        assert_eq!(get(6), vec![(0, 3)]);
        assert_eq!(get(7), vec![]);
        let w = d.interval_contacts(0, &[6, 7], true);
        assert_eq!(w[0], vec![(0, -1), (0, 3)]);
        assert_eq!(w[1], vec![(0, -1)]);
        assert_eq!(d.all_interval_contacts(0)[4], vec![(1, 2)]);
        let cs1 = d.interval_contacts(1, &[0, 3], false);
        assert_eq!(cs1[0], vec![(2, 3)]);
        assert_eq!(cs1[1], vec![(2, 3)], "no end event: still in contact");
        // Per particle: frame 5 has 0 and 3 in contact.
        assert_eq!(d.particle_in_contact(0)[5], vec![true, false, false, true]);
    }
}
