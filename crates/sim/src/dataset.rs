//! The in-memory form of a simulated dataset: what `headlab simulate` writes
//! and what training, probing and the viewer read (via headlab-store).

/// Kind of a collision event (stored as u8 in HDF5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventKind {
    ContactStart = 0,
    ContactEnd = 1,
    /// Particle touches a wall (start); `j` encodes the wall.
    WallStart = 2,
    WallEnd = 3,
}

impl EventKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::ContactStart,
            1 => Self::ContactEnd,
            2 => Self::WallStart,
            3 => Self::WallEnd,
            _ => return None,
        })
    }
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
    pub traj: u32,
    pub step: u64,
    pub i: i32,
    pub j: i32,
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
    pub seed: u64,
    /// The scene file's TOML text (resolved, with defaults).
    pub scene_toml: String,
}

/// A whole dataset. Arrays are row-major, flattened:
/// positions/velocities [traj, frames, n, dim]; radii/masses [traj, n].
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub n_traj: usize,
    pub n_frames: usize,
    pub n_particles: usize,
    pub meta: DatasetMeta,
    pub positions: Vec<f32>,
    pub velocities: Vec<f32>,
    pub radii: Vec<f32>,
    pub masses: Vec<f32>,
    /// Sorted by (traj, step, i, j, kind).
    pub events: Vec<Event>,
}

impl Dataset {
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
