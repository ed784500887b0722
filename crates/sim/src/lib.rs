//! headlab-sim: discrete-element particle simulator (disks/spheres in a box,
//! gravity, damped linear-spring contacts) producing collision trajectories.
pub mod dataset;
pub use dataset::{Dataset, DatasetMeta, Event, EventKind};
