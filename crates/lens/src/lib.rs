//! headlab-lens: four lenses on how attention learns, each a small toy task
//! that reproduces one paper's finding, plus the same measurement on physics
//! runs:
//! in-context linear regression with linear attention (Ahn et al. 2023),
//! attention score scaling (Bernhard 2023), scan-and-snap (Tian et al. 2023)
//! and max-margin token selection (Tarzanagh et al. 2023);
//! [`physics`] measures the last two on a physics run's heads.

pub mod config;
pub mod icl;
pub mod max_margin;
pub mod noise;
pub mod physics;
mod plot;
pub mod scaling;
pub mod scan_snap;
