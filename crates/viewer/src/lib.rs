//! headlab-viewer's data layer, without bevy: opening datasets, rollouts and
//! probed runs (`data`), and the colormaps (`color`). The binary
//! (`src/main.rs`, `app.rs`, `ui.rs`) draws them; these are unit-tested here.

pub mod color;
pub mod data;
