//! The emergence-step predictors ([`crate::fit::predict`]) on whole runs:
//! read a run's probe series (analysis.h5), training loss (metrics.h5) and
//! checkpoints up to a step, build what the predictors may see, and the
//! run's actual emergence step from its full collision-head series.

use std::path::{Path, PathBuf};

use headlab_store::analysis::{read_analysis, Analysis};
use headlab_store::checkpoint::{list_checkpoints, read_checkpoint};
use headlab_store::metrics::{read_metrics, Metrics};

use crate::fit::predict::{landmarks, Case, EarlyData, Landmarks};
use crate::fit::Series;
use crate::fitrun::{collision_heads, collision_series, DEFAULT_SERIES};
use crate::heads::{analysis_path, score_se, tied_top};
use crate::series::SeriesKey;
use crate::{AnalysisError, Result};

/// One run as the predictors read it.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The run folder.
    pub run: PathBuf,
    /// Its name (the folder's).
    pub name: String,
    /// Its setting.
    pub setting: String,
    /// Its probe series.
    pub analysis: Analysis,
    /// Its training metrics.
    pub metrics: Metrics,
    /// The planned last step (`steps` of its config).
    pub t_end: f64,
}

/// The setting of a run: the study folder of `STUDY/runs/NAME`, else the
/// run's parent folder.
pub fn setting_of(run: &Path) -> String {
    let parent = run.parent();
    let up = match parent {
        Some(p) if p.file_name().is_some_and(|n| n == "runs") => p.parent(),
        other => other,
    };
    up.and_then(|p| p.file_name()).map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "runs".into())
}

/// Read what the predictors need from a probed run.
pub fn load_run(run: &Path) -> Result<RunData> {
    let ap = analysis_path(run);
    if !ap.exists() {
        return Err(AnalysisError::Run { path: ap, msg: "not found; probe the run first (headlab probe RUN)".into() });
    }
    let analysis = read_analysis(&ap, false)?;
    if analysis.steps.is_empty() {
        return Err(AnalysisError::Run { path: ap, msg: "holds no probed checkpoints".into() });
    }
    let mp = run.join("metrics.h5");
    if !mp.exists() {
        return Err(AnalysisError::Run {
            path: mp,
            msg: "not found; the predictors need the run's training loss".into(),
        });
    }
    let metrics = read_metrics(&mp)?;
    let steps = toml::from_str::<toml::Table>(&metrics.config_toml)
        .ok()
        .and_then(|t| t.get("steps").and_then(|v| v.as_integer()))
        .filter(|&s| s > 0)
        .ok_or_else(|| AnalysisError::Run {
            path: mp.clone(),
            msg: "the run's training config (attribute `config`) has no positive `steps`".into(),
        })?;
    let name = run.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| run.display().to_string());
    Ok(RunData { run: run.to_path_buf(), name, setting: setting_of(run), analysis, metrics, t_end: steps as f64 })
}

impl RunData {
    /// True when the run was probed up to its planned last step.
    pub fn finished(&self) -> bool {
        self.analysis.steps.last().is_some_and(|&s| s as f64 >= self.t_end)
    }

    /// The full collision-head series (the study's: the heads tied on top at
    /// the last checkpoint, averaged), against step.
    pub fn collision_series(&self) -> Option<Series> {
        let a = &self.analysis;
        let series = DEFAULT_SERIES.name();
        let heads = collision_heads(a, series);
        let t: Vec<f64> = a.steps.iter().map(|&s| s as f64).collect();
        collision_series(a, series, &heads, &t)
    }

    /// The landmarks (cutoff, actual emergence step) of the full run; an
    /// error when the run is not finished or nothing emerged.
    pub fn landmarks(&self) -> Result<Landmarks> {
        let ap = analysis_path(&self.run);
        if !self.finished() {
            return Err(AnalysisError::Run {
                path: ap,
                msg: format!(
                    "probed up to step {} of {}: the run is not finished, its emergence step is not known yet",
                    self.analysis.steps.last().copied().unwrap_or(0),
                    self.t_end
                ),
            });
        }
        let s = self.collision_series().ok_or_else(|| AnalysisError::Run {
            path: ap.clone(),
            msg: format!("no series {}", DEFAULT_SERIES.name()),
        })?;
        landmarks(&s).map_err(|msg| AnalysisError::Run { path: ap, msg })
    }

    /// What the predictors may see at steps ≤ `upto`: the score of the
    /// heads tied on top at the last checkpoint ≤ `upto` (averaged), the
    /// training loss, and the largest ‖W_Q·W_Kᵀ‖_F over heads from the
    /// checkpoints.
    pub fn early(&self, upto: f64) -> Result<EarlyData> {
        let a = &self.analysis;
        let ap = analysis_path(&self.run);
        let Some(last) = a.steps.iter().rposition(|&s| s as f64 <= upto) else {
            return Err(AnalysisError::Run { path: ap, msg: format!("no probed checkpoint at or before step {upto}") });
        };
        let key = DEFAULT_SERIES;
        let ids: Vec<(usize, usize)> = (0..a.n_layers).flat_map(|l| (0..a.n_heads).map(move |h| (l, h))).collect();
        let vals: Vec<(f64, f64)> =
            ids.iter().map(|&(l, h)| (a.value(key.name(), last, l, h), score_se(a, key, last, l, h))).collect();
        let heads: Vec<(usize, usize)> = tied_top(&vals).into_iter().map(|k| ids[k]).collect();
        let t: Vec<f64> = a.steps[..=last].iter().map(|&s| s as f64).collect();
        let ys: Vec<Vec<f64>> = heads.iter().filter_map(|&(l, h)| a.head_series(key.name(), l, h)).collect();
        if ys.is_empty() {
            return Err(AnalysisError::Run { path: ap, msg: format!("no finite {} at step {upto}", key.name()) });
        }
        let y: Vec<f64> = (0..t.len()).map(|s| ys.iter().map(|v| v[s]).sum::<f64>() / ys.len() as f64).collect();
        let score = Series::new(&t, &y);
        let m = &self.metrics;
        let (lt, ly): (Vec<f64>, Vec<f64>) =
            m.step.iter().zip(&m.loss).filter(|(&s, _)| s as f64 <= upto).map(|(&s, &l)| (s as f64, l as f64)).unzip();
        let qk = qk_series(&self.run, upto, a.n_layers)?;
        Ok(EarlyData {
            t_end: self.t_end,
            cutoff: t[t.len() - 1],
            score,
            loss: Series::new(&lt, &ly),
            loss_reference: m.baseline_val_loss,
            qk,
        })
    }

    /// The case for the evaluation: cut at the run's own cutoff (the last
    /// checkpoint before the score reaches 10 % of its final value), with
    /// its actual emergence step.
    pub fn evaluation_case(&self) -> Result<Case> {
        let lm = self.landmarks()?;
        Ok(Case {
            name: self.name.clone(),
            setting: self.setting.clone(),
            early: self.early(lm.cutoff)?,
            actual: Some(lm.actual),
        })
    }

    /// The case for `--predict-from STEP`: cut at `step`; the actual step
    /// when the run is finished (`None` otherwise).
    pub fn case_from(&self, step: f64) -> Result<(Case, Option<Landmarks>)> {
        let lm = self.landmarks().ok();
        let case = Case {
            name: self.name.clone(),
            setting: self.setting.clone(),
            early: self.early(step)?,
            actual: lm.map(|l| l.actual),
        };
        Ok((case, lm))
    }
}

/// ‖W_Q[h]·W_K[h]ᵀ‖_F of every head of `layer` in a checkpoint's params
/// (`blocks.{layer}.attn.W_Q`, `W_K`: [n_heads, d_model, d_head]); `None`
/// when they are missing or malformed.
pub fn qk_norms(ck: &headlab_store::checkpoint::Checkpoint, layer: usize) -> Option<Vec<f64>> {
    let q = ck.param(&format!("blocks.{layer}.attn.W_Q"))?;
    let k = ck.param(&format!("blocks.{layer}.attn.W_K"))?;
    if q.shape.len() != 3 || q.shape != k.shape {
        return None;
    }
    let (nh, dm, dh) = (q.shape[0], q.shape[1], q.shape[2]);
    if q.data.len() != nh * dm * dh || k.data.len() != nh * dm * dh {
        return None;
    }
    // ‖Q Kᵀ‖²_F = tr(QᵀQ · KᵀK): two d_head × d_head Gram matrices per head.
    let gram = |x: &[f32]| -> Vec<f64> {
        let mut g = vec![0.0f64; dh * dh];
        for r in 0..dm {
            let row = &x[r * dh..(r + 1) * dh];
            for a in 0..dh {
                for b in 0..dh {
                    g[a * dh + b] += row[a] as f64 * row[b] as f64;
                }
            }
        }
        g
    };
    Some(
        (0..nh)
            .map(|h| {
                let off = h * dm * dh;
                let (gq, gk) = (gram(&q.data[off..off + dm * dh]), gram(&k.data[off..off + dm * dh]));
                gq.iter().zip(&gk).map(|(a, b)| a * b).sum::<f64>().max(0.0).sqrt()
            })
            .collect(),
    )
}

/// The largest ‖W_Q·W_Kᵀ‖_F over every head of every layer, at each
/// checkpoint of `run` at or before `upto`.
pub fn qk_series(run: &Path, upto: f64, n_layers: usize) -> Result<Series> {
    let mut t = Vec::new();
    let mut y = Vec::new();
    for (step, path) in list_checkpoints(run)? {
        if step as f64 > upto {
            break;
        }
        let ck = read_checkpoint(&path)?;
        let mut best = f64::NAN;
        for l in 0..n_layers {
            let v = qk_norms(&ck, l).ok_or_else(|| AnalysisError::Run {
                path: path.clone(),
                msg: format!("no usable blocks.{l}.attn.W_Q / W_K [n_heads, d_model, d_head]"),
            })?;
            best = v.into_iter().fold(best, f64::max);
        }
        t.push(step as f64);
        y.push(best);
    }
    Ok(Series::new(&t, &y))
}

/// The series key the predictors read (for messages).
pub const SCORE_KEY: SeriesKey = DEFAULT_SERIES;

#[cfg(test)]
mod tests {
    use super::*;
    use headlab_store::checkpoint::{Checkpoint, NamedArray};

    #[test]
    fn qk_norm_matches_the_product() {
        // One head, d_model 3, d_head 2.
        let q = vec![1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0];
        let k = vec![2.0f32, 0.0, 1.0, 1.0, -1.0, 0.5];
        let ck = Checkpoint {
            params: vec![
                NamedArray::new("blocks.0.attn.W_Q", vec![1, 3, 2], q.clone()),
                NamedArray::new("blocks.0.attn.W_K", vec![1, 3, 2], k.clone()),
            ],
            ..Default::default()
        };
        let mut want = 0.0f64;
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..2).map(|a| q[i * 2 + a] as f64 * k[j * 2 + a] as f64).sum();
                want += v * v;
            }
        }
        let got = qk_norms(&ck, 0).unwrap();
        assert!((got[0] - want.sqrt()).abs() < 1e-9, "{got:?} vs {}", want.sqrt());
        assert!(qk_norms(&ck, 1).is_none());
    }

    #[test]
    fn setting_is_the_study_folder() {
        assert_eq!(setting_of(Path::new("/x/study-lr1e-3/runs/seed=0")), "study-lr1e-3");
        assert_eq!(setting_of(Path::new("/x/demo/seed1")), "demo");
    }
}
