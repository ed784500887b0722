//! headlab-probe: what the attention heads of a trained checkpoint do —
//! collision scores, AUROC, attention–distance correlation g_h(r), entropy —
//! measured on a fixed evaluation set at every checkpoint, and fits of the
//! resulting score series against training step (power law and the
//! alternatives it must beat).

pub mod contacts;
pub mod fit;
pub mod fitrun;
pub mod metrics;
pub mod run;
pub mod llc;
