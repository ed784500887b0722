//! The freeze ("snap") detector: attention logits stop moving.
//!
//! Given a series of logit vectors `z_k` recorded at increasing steps `s_k`,
//! the change over a window `w` (in training steps) ends at record `k` and
//! starts at `j`, the last record with `s_j ≤ s_k − w` (undefined, NaN,
//! while `s_k − w` precedes the first record). It is measured on one of three
//! scales ([`FreezeScale`]):
//!
//! ```text
//! rms           r_k = ‖z_k − z_j‖ / sqrt(dim)        (default)
//! displacement  r_k = ‖z_k − z_j‖ / ‖z_k − z_0‖
//! norm          r_k = ‖z_k − z_j‖ / ‖z_k‖
//! ```
//!
//! `rms` is the relative change of the attention weights themselves: a logit
//! moving by δ multiplies its token's unnormalized weight by e^δ ≈ 1 + δ, so
//! the RMS logit change is the typical relative change of the weights,
//! whatever the logits' overall size. `displacement` asks which share of the
//! whole movement since the first record happened in the last window (blind
//! to scale, but a run whose attention barely moves never looks frozen);
//! `norm` is the textbook relative change of the logit vector (sensitive to
//! the size and the random initial value of the logits).
//!
//! The snap step is the start `s_j` of the first window after which `r` stays
//! below the threshold for the rest of the series: attention has frozen
//! there. A momentary lull that is followed by more movement does not count.

use serde::{Deserialize, Serialize};

/// How the change of the logits over a window is scaled (see module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FreezeScale {
    /// RMS change of the centred logits (the relative change of the attention weights).
    #[default]
    Rms,
    /// The window's movement as a share of the total movement over training.
    Displacement,
    /// ‖Δz‖ / ‖z‖.
    Norm,
}

/// Freeze detector: attention has snapped once the relative change of the
/// (centred) attention logits over `window` steps stays below `threshold`
/// for the rest of training (the module docs explain the scales).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FreezeConfig {
    /// Steps over which the logit change is measured.
    pub window: u64,
    /// Change below which the attention counts as frozen.
    pub threshold: f32,
    /// `rms` (default): RMS logit change = relative change of the attention
    /// weights; `displacement`: share of the total movement; `norm`: ‖Δz‖/‖z‖.
    pub scale: FreezeScale,
}

impl Default for FreezeConfig {
    fn default() -> Self {
        FreezeConfig { window: 100, threshold: 0.03, scale: FreezeScale::Rms }
    }
}

/// Relative change of each record against the record one window earlier.
/// `values` is row-major `[steps.len(), dim]`. Entries without a full window
/// before them are NaN; no change at all gives 0.
pub fn relative_change(steps: &[u64], values: &[f32], dim: usize, window: u64, scale: FreezeScale) -> Vec<f32> {
    let n = steps.len();
    assert_eq!(values.len(), n * dim, "relative_change: values must be [steps, dim]");
    let mut out = vec![f32::NAN; n];
    for k in 0..n {
        let Some(j) = window_start(steps, k, window) else { continue };
        let zk = &values[k * dim..(k + 1) * dim];
        let zj = &values[j * dim..(j + 1) * dim];
        let diff: f64 = zk.iter().zip(zj).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
        let z0 = &values[..dim];
        let norm: f64 = match scale {
            FreezeScale::Rms => (dim as f64).sqrt(),
            FreezeScale::Displacement => zk.iter().zip(z0).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt(),
            FreezeScale::Norm => zk.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt(),
        };
        out[k] = if diff == 0.0 {
            0.0
        } else if norm == 0.0 {
            f32::INFINITY
        } else {
            (diff / norm) as f32
        };
    }
    out
}

/// Index of the record that opens the window ending at record `k`.
pub fn window_start(steps: &[u64], k: usize, window: u64) -> Option<usize> {
    let target = steps[k].checked_sub(window)?;
    if window == 0 || steps[0] > target {
        return None;
    }
    // Records are sorted; the last one at or before `target`.
    Some(steps[..=k].partition_point(|&s| s <= target) - 1)
}

/// Snap step: the start of the first window from which the relative change
/// stays below `threshold` until the end of the series. `None` if it never
/// settles (or the last record's change is undefined or above threshold).
pub fn detect_freeze(
    steps: &[u64],
    values: &[f32],
    dim: usize,
    window: u64,
    threshold: f32,
    scale: FreezeScale,
) -> Option<u64> {
    let r = relative_change(steps, values, dim, window, scale);
    snap_from_changes(steps, &r, window, threshold)
}

/// Snap step from an already computed change series (see [`detect_freeze`]).
pub fn snap_from_changes(steps: &[u64], r: &[f32], window: u64, threshold: f32) -> Option<u64> {
    let mut first_quiet: Option<usize> = None;
    for (k, &rk) in r.iter().enumerate() {
        if rk.is_nan() {
            continue;
        }
        if rk < threshold {
            first_quiet.get_or_insert(k);
        } else {
            first_quiet = None;
        }
    }
    let k = first_quiet?;
    window_start(steps, k, window).map(|j| steps[j])
}

/// Step at which a series falls fastest: the record whose drop over the
/// preceding `window` steps is largest (None if the series never falls).
pub fn steepest_drop(steps: &[u64], series: &[f32], window: u64) -> Option<u64> {
    let mut best: Option<(f32, u64)> = None;
    for k in 0..steps.len() {
        let Some(j) = window_start(steps, k, window) else { continue };
        let drop = series[j] - series[k];
        if drop > 0.0 && best.is_none_or(|(b, _)| drop > b) {
            // Report the middle of the window where the drop happened.
            best = Some((drop, (steps[j] + steps[k]) / 2));
        }
    }
    best.map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_start_picks_last_record_before_target() {
        let steps = [0, 10, 20, 30, 45];
        assert_eq!(window_start(&steps, 0, 10), None);
        assert_eq!(window_start(&steps, 1, 10), Some(0));
        assert_eq!(window_start(&steps, 4, 20), Some(2));
        assert_eq!(window_start(&steps, 4, 16), Some(2));
        assert_eq!(window_start(&steps, 4, 14), Some(3));
    }

    #[test]
    fn steepest_drop_finds_the_cliff() {
        let steps: Vec<u64> = (0..100).map(|k| k * 10).collect();
        let s: Vec<f32> = steps.iter().map(|&t| if t < 500 { 2.0 } else { 1.0 }).collect();
        let d = steepest_drop(&steps, &s, 10).unwrap();
        assert!((490..=500).contains(&d), "{d}");
        assert_eq!(steepest_drop(&steps, &vec![1.0; 100], 10), None);
    }
}
