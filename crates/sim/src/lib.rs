//! headlab-sim: discrete-element particle simulator (disks/spheres in a box,
//! gravity, damped linear-spring contacts) producing collision trajectories.
//!
//! - [`scene`]: TOML scene files, validated in one place;
//! - [`physics`]: the integrator (velocity-Verlet, cell lists, contact events);
//! - [`simulate()`]: many trajectories in parallel into a [`Dataset`];
//! - [`energy`]: total energy of recorded frames and its drift.
//!
//! Writing and reading datasets as HDF5 lives in `headlab_store::dataset`.
pub mod dataset;
pub mod energy;
pub mod limits;
pub mod physics;
pub mod scene;
pub mod simulate;

pub use dataset::{Dataset, DatasetMeta, Event, EventKind};
pub use scene::{Scene, SceneError};
pub use simulate::{simulate, SimError, SimOptions};
