//! headlab-store: the HDF5 layout of every file headlab writes (datasets,
//! checkpoints, metrics, analysis), atomic writes, and readable errors.
//!
//! Every file is written to `NAME.tmp`, flushed, fsynced and renamed over
//! `NAME`, so a crash never leaves a half-written file where a good one was.
//! Every file carries a `format_version` and a `kind` attribute.
//!
//! [`html`] is the one HTML page builder and escaping function (report and
//! lens pages), with an atomic text write.

pub mod analysis;
pub mod checkpoint;
pub mod dataset;
pub mod fsutil;
pub mod h5util;
pub mod html;
pub mod inspect;
pub mod llc;
pub mod lock;
pub mod metrics;
pub mod series;

pub use fsutil::{with_atomic_path, write_atomic, write_atomic_if_changed};
pub use h5util::{atomic_write, open_kind, FileKind, StoreError, FORMAT_VERSION};
pub use lock::RunLock;

/// Results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
