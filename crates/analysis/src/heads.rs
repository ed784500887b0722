//! Which head of a probed run is its collision head, and whether it meets
//! the collision-head bar.

use std::path::{Path, PathBuf};

use headlab_store::analysis::Analysis;

/// Path of a run's analysis file.
pub fn analysis_path(run_dir: &Path) -> PathBuf {
    run_dir.join("analysis.h5")
}


/// The head that best detects collisions at the last probed step.
#[derive(Debug, Clone, PartialEq)]
pub struct BestHead {
    pub layer: usize,
    pub head: usize,
    pub step: u64,
    /// Self-excluded normalized score (overlap partners).
    pub score: f64,
    /// AUROC of a_ij for contact within the interval.
    pub auroc: f64,
    /// Lower and upper edge of the g(r) bin where the head's g peaks.
    pub g_peak: (f32, f32),
    /// score ≥ 0.5, AUROC ≥ 0.95, g peaks at or inside contact.
    pub meets_bar: bool,
}

/// Pick the head with the highest final self-excluded normalized score
/// (series `score_excl_norm_overlap`) and check the collision-head bar.
pub fn best_head(a: &Analysis) -> Option<BestHead> {
    let s = a.steps.len().checked_sub(1)?;
    let score = a.series.get("score_excl_norm_overlap")?;
    let auroc = a.series.get("auroc_interval")?;
    let lh = a.n_layers * a.n_heads;
    let k = (0..lh).filter(|&k| score[s * lh + k].is_finite()).max_by(|&x, &y| score[s * lh + x].total_cmp(&score[s * lh + y]))?;
    let (layer, head) = (k / a.n_heads, k % a.n_heads);
    let g = a.head_g(false, s, layer, head);
    let kb = (0..g.len()).filter(|&b| g[b].is_finite()).max_by(|&x, &y| g[x].total_cmp(&g[y]))?;
    let g_peak = (a.g_edges[kb], a.g_edges[kb + 1]);
    let (sc, au) = (score[s * lh + k], auroc[s * lh + k]);
    Some(BestHead { layer, head, step: a.steps[s], score: sc, auroc: au, g_peak, meets_bar: sc >= 0.5 && au >= 0.95 && g_peak.0 < 1.0 })
}

/// Every head that meets the collision-head bar (self-excluded score ≥ 0.5,
/// AUROC ≥ 0.95, g(r) peak at or inside contact) at the last probed step,
/// as (layer, head), in order.
pub fn collision_heads(a: &Analysis) -> Vec<(usize, usize)> {
    let Some(s) = a.steps.len().checked_sub(1) else { return vec![] };
    let (Some(score), Some(auroc)) = (a.series.get("score_excl_norm_overlap"), a.series.get("auroc_interval")) else { return vec![] };
    let lh = a.n_layers * a.n_heads;
    let mut out = Vec::new();
    for k in 0..lh {
        let (layer, head) = (k / a.n_heads, k % a.n_heads);
        let g = a.head_g(false, s, layer, head);
        let peak = (0..g.len()).filter(|&b| g[b].is_finite()).max_by(|&x, &y| g[x].total_cmp(&g[y]));
        let (sc, au) = (score[s * lh + k], auroc[s * lh + k]);
        if sc >= 0.5 && au >= 0.95 && peak.is_some_and(|b| a.g_edges[b] < 1.0) {
            out.push((layer, head));
        }
    }
    out
}
