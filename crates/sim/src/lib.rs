//! headlab-sim: discrete-element particle simulator (disks/spheres in a box,
//! gravity, damped linear-spring contacts) producing collision trajectories.
//!
//! - [`scene`]: TOML scene files, validated in one place;
//! - [`physics`]: the integrator (velocity-Verlet, cell lists, contact events);
//! - [`simulate()`]: many trajectories in parallel into a [`Dataset`];
//! - [`energy`]: total energy of recorded frames and its drift;
//! - [`seed`]: [`seed::derive_seed`], the seed of every random stream derived
//!   from a run's seed (used by every crate);
//! - [`stats`]: [`stats::mean_std`], the one mean and standard deviation.
//!
//! Writing and reading datasets as HDF5 lives in `headlab_store::dataset`.
pub mod dataset;
pub mod energy;
pub mod limits;
pub mod physics;
pub mod scene;
pub mod seed;
pub mod simulate;
pub mod stats;

pub use dataset::{Dataset, DatasetMeta, Event, EventKind};
pub use scene::{Scene, SceneError};
pub use simulate::{simulate, SimError, SimOptions};
