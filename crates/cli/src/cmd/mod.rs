//! One module per subcommand.
pub mod inspect;
pub mod sweep;
pub mod train;
pub mod view;
pub mod eval;
pub mod lens;
pub mod simulate;
pub mod probe;
pub mod ablate;
pub mod fit;
pub mod report;
pub mod llc;
pub mod demo;
