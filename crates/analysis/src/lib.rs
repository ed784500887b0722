//! headlab-analysis: the arithmetic of headlab, without libtorch.
//!
//! Everything here computes on plain arrays and HDF5 files: per-head
//! attention metrics ([`metrics`]: collision scores, AUROC, g(r), entropy),
//! contact partners from the event table ([`contacts`]), the probe's
//! evaluation set ([`evalset`]), emergence fits ([`fit`], [`fitrun`]), the
//! collision head and its bar ([`heads`]), the att-SVM ([`svm`], [`att_svm`]),
//! the freeze ("snap") detector ([`freeze`]), heavy-tail statistics
//! ([`noise`]), the `lens_physics.h5` format with its figures
//! ([`lens_physics`]), the LLC's step-size selection and diagnostics
//! ([`llc_diag`]) and the figures' shared legend and chart frame ([`plot`]).
//!
//! It must never depend on `tch`, directly or through model, train, probe or
//! lens: the report and the viewer are built on it and never link libtorch
//! (`tools/check-layers`, run by `tools/test`, checks the dependency graph).

pub mod ablation;
pub mod att_svm;
pub mod baselines;
pub mod contacts;
pub mod evalset;
pub mod fit;
pub mod fitrun;
pub mod freeze;
pub mod heads;
pub mod lens_physics;
pub mod llc_diag;
pub mod logistic;
pub mod metrics;
pub mod noise;
pub mod plot;
pub mod predictrun;
pub mod svm;

/// The typed names of the per-head series of analysis.h5 (defined in
/// headlab-store so that the viewer reaches them without this crate).
pub use headlab_store::series;

use std::path::PathBuf;

/// Errors of the analysis functions: a bad option, or a file that does not
/// hold what it should (named by path).
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Shown as "option '{key}' = {value} is invalid: {hint}".
    #[error("option `{key}` = {value} is invalid: {hint}")]
    Config {
        /// The offending key or option.
        key: String,
        /// Its value.
        value: String,
        /// What is allowed, or what to do.
        hint: String,
    },
    /// Shown as "{path}: {msg}".
    #[error("{path}: {msg}")]
    Run {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// Passed through from `headlab_store::StoreError`.
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
}

/// Results of this crate.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;
