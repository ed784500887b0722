//! headlab-probe: what the attention heads of a trained checkpoint do, run
//! on the model (libtorch): the probe driver ([`run`]) feeds every
//! checkpoint's attention patterns on a fixed evaluation set to the metrics
//! of [`headlab_analysis::metrics`] and appends them to `RUN/analysis.h5`;
//! [`llc`] estimates the local learning coefficient by SGLD.
//!
//! The tch-free arithmetic (metrics, contacts, fits, the collision head) lives
//! in headlab-analysis; the report and the viewer use it without libtorch.

pub mod ablate;
pub mod llc;
pub mod run;
