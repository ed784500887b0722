//! Heavy-tail statistics for gradient noise: re-exported from
//! [`headlab_train::noise`], where ordinary physics training also uses them
//! (`[grad_noise]` in a run config).

pub use headlab_train::noise::*;
