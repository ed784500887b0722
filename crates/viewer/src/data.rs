//! What the viewer shows, loaded from HDF5 without bevy: the ground-truth
//! trajectories, an optional model rollout beside them, and the attention
//! patterns that `headlab probe` cached in `analysis.h5`.
//!
//! Everything here is plain data and arithmetic, so it is unit-tested without
//! a window or a GPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use headlab_sim::dataset::Dataset;
use headlab_store::analysis::{read_analysis, read_pattern};
use headlab_store::dataset::{read_dataset, read_rollout_source};
use headlab_store::series::SeriesKey;
use headlab_store::{open_kind, FileKind, StoreError};

/// The series the head grid shows: self-excluded, normalized collision score
/// against partners in contact during the predicted interval (the event
/// table), the same partners the viewer draws lines between and scores
/// particles against.
pub const HEAD_SCORE_SERIES: SeriesKey = SeriesKey::ScoreExclNormInterval;

#[derive(Debug, thiserror::Error)]
/// Why a file cannot be shown.
pub enum ViewError {
    /// Shown as "{path}: no such file or folder".
    #[error("{path}: no such file or folder")]
    NotFound {
        /// The file or folder concerned.
        path: PathBuf,
    },
    /// Passed through from `StoreError`.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Shown as "{path}: {msg}".
    #[error("{path}: {msg}")]
    Invalid {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong, and what to do.
        msg: String,
    },
}

/// Results of the data layer.
pub type Result<T, E = ViewError> = std::result::Result<T, E>;

/// A model rollout: trajectories the model predicted from frame 0 of some
/// ground-truth trajectories.
pub struct Rollout {
    /// The rollout file.
    pub path: PathBuf,
    /// The predicted trajectories.
    pub data: Dataset,
    /// For each rollout trajectory, the ground-truth trajectory it starts from
    /// (empty when the file does not say).
    pub source_traj: Vec<usize>,
}

impl Rollout {
    /// Index of the rollout trajectory that starts from ground-truth `traj`.
    pub fn for_truth(&self, traj: usize) -> Option<usize> {
        self.source_traj.iter().position(|&t| t == traj)
    }
}

/// The probe's attention cache (`analysis.h5`), loaded one checkpoint at a time.
pub struct AttentionCache {
    /// The `analysis.h5` file.
    pub path: PathBuf,
    /// The dataset the probe ran on, as recorded in the file.
    pub dataset: String,
    /// Layers of the probed model.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// Particles per frame.
    pub n_particles: usize,
    /// Checkpoint steps with cached patterns, increasing.
    pub steps: Vec<u64>,
    /// Per entry of `steps`: the head-grid score [L, H] (NaN when undefined).
    pub head_scores: Vec<Vec<f64>>,
    /// Cached trajectories and frames (the same frames for each trajectory).
    pub trajs: Vec<u32>,
    /// Cached frames of each of them.
    pub frames: Vec<u32>,
    loaded: HashMap<u64, std::sync::Arc<Vec<f32>>>,
}

impl AttentionCache {
    /// Read the index of the cache (patterns are loaded per checkpoint on demand).
    pub fn open(path: &Path) -> Result<Self> {
        let an = read_analysis(path, false)?;
        let with_patterns = {
            let (file, _) = open_kind(path, Some(FileKind::Analysis))?;
            let pg = file
                .group("patterns")
                .map_err(|_| ViewError::Invalid { path: path.into(), msg: "missing group `patterns`".into() })?;
            an.steps.iter().map(|&s| pg.link_exists(&format!("step_{s:08}"))).collect::<Vec<bool>>()
        };
        let lh = an.n_layers * an.n_heads;
        let score = an.series.get(HEAD_SCORE_SERIES.name());
        let mut steps = Vec::new();
        let mut head_scores = Vec::new();
        for (s, (&step, &has)) in an.steps.iter().zip(&with_patterns).enumerate() {
            if !has {
                continue;
            }
            steps.push(step);
            head_scores.push(match score {
                Some(v) => v[s * lh..(s + 1) * lh].to_vec(),
                None => vec![f64::NAN; lh],
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            dataset: an.dataset,
            n_layers: an.n_layers,
            n_heads: an.n_heads,
            n_particles: an.n_particles,
            steps,
            head_scores,
            trajs: an.pattern_traj,
            frames: an.pattern_frames,
            loaded: HashMap::new(),
        })
    }

    /// Whether any attention was cached at all.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() || self.trajs.is_empty() || self.frames.is_empty()
    }

    /// Position of (traj, frame) in the cache, if cached.
    pub fn slot(&self, traj: usize, frame: usize) -> Option<(usize, usize)> {
        let p = self.trajs.iter().position(|&t| t as usize == traj)?;
        let f = self.frames.iter().position(|&x| x as usize == frame)?;
        Some((p, f))
    }

    /// Index into `steps` of the step closest to `step`.
    pub fn nearest_step(&self, step: u64) -> Option<usize> {
        (0..self.steps.len()).min_by_key(|&i| self.steps[i].abs_diff(step))
    }

    /// Patterns [L, H, P, F, N, N] of checkpoint `steps[s]`, read on first use.
    pub fn patterns(&mut self, s: usize) -> Result<std::sync::Arc<Vec<f32>>> {
        let step = self.steps[s];
        if let Some(p) = self.loaded.get(&step) {
            return Ok(p.clone());
        }
        let (data, shape) = read_pattern(&self.path, step)?.ok_or_else(|| ViewError::Invalid {
            path: self.path.clone(),
            msg: format!("patterns/step_{step:08} disappeared; was the file rewritten while the viewer ran?"),
        })?;
        let want =
            [self.n_layers, self.n_heads, self.trajs.len(), self.frames.len(), self.n_particles, self.n_particles];
        if shape != want {
            return Err(ViewError::Invalid {
                path: self.path.clone(),
                msg: format!("patterns/step_{step:08} has shape {shape:?}, expected {want:?}"),
            });
        }
        // Keep a few checkpoints in memory; the slider goes back and forth.
        if self.loaded.len() >= 8 {
            self.loaded.clear();
        }
        let arc = std::sync::Arc::new(data);
        self.loaded.insert(step, arc.clone());
        Ok(arc)
    }

    /// The attention pattern [N, N] (query rows) of one head at one cached frame.
    pub fn frame_pattern<'a>(&self, pats: &'a [f32], layer: usize, head: usize, slot: (usize, usize)) -> &'a [f32] {
        let n = self.n_particles;
        let (p, f) = slot;
        let k = ((layer * self.n_heads + head) * self.trajs.len() + p) * self.frames.len() + f;
        &pats[k * n * n..(k + 1) * n * n]
    }

    /// Head-grid score of (layer, head) at `steps[s]`.
    pub fn head_score(&self, s: usize, layer: usize, head: usize) -> f64 {
        self.head_scores[s][layer * self.n_heads + head]
    }
}

/// Everything the viewer opened.
pub struct Replay {
    /// What was opened (for the title and messages).
    pub opened: PathBuf,
    /// Ground-truth trajectories (or the rollout itself, when only it exists).
    pub truth_path: PathBuf,
    /// The ground-truth trajectories.
    pub truth: Dataset,
    /// The newest model rollout, if there is one.
    pub rollout: Option<Rollout>,
    /// The probe's attention cache, if the run has one.
    pub attention: Option<AttentionCache>,
    /// Notes for the user about what could not be found (shown in the panel).
    pub notes: Vec<String>,
}

/// Open a dataset, a rollout or a run folder. `dataset` overrides where the
/// ground truth is read from.
pub fn open(path: &Path, dataset: Option<&Path>) -> Result<Replay> {
    let r = open_any(path, dataset)?;
    let t = &r.truth;
    if t.n_traj == 0 || t.n_frames == 0 || t.n_particles == 0 {
        return Err(ViewError::Invalid {
            path: r.truth_path.clone(),
            msg: format!(
                "holds {} trajectories × {} frames × {} particles: nothing to show",
                t.n_traj, t.n_frames, t.n_particles
            ),
        });
    }
    Ok(r)
}

fn open_any(path: &Path, dataset: Option<&Path>) -> Result<Replay> {
    if !path.exists() {
        return Err(ViewError::NotFound { path: path.to_path_buf() });
    }
    let notes = Vec::new();
    if path.is_dir() {
        return open_run(path, dataset, notes);
    }
    let (_, kind) = open_kind(path, None)?;
    match kind {
        FileKind::Dataset => {
            let data = read_dataset(path)?;
            let source = read_rollout_source(path)?;
            match source {
                Some((src, trajs)) => {
                    // A rollout: show the ground truth beside it when we can find it.
                    let src = dataset.map(Path::to_path_buf).unwrap_or_else(|| resolve_recorded(&src, path));
                    let rollout = Rollout {
                        path: path.to_path_buf(),
                        data,
                        source_traj: trajs.iter().map(|&t| t as usize).collect(),
                    };
                    if src.exists() {
                        let truth = read_dataset(&src)?;
                        check_same_particles(&truth, &src, &rollout.data, path)?;
                        Ok(Replay {
                            opened: path.into(),
                            truth_path: src,
                            truth,
                            rollout: Some(rollout),
                            attention: None,
                            notes,
                        })
                    } else {
                        let mut notes = notes;
                        notes.push(format!(
                            "ground truth {} not found; showing the rollout alone (pass --dataset)",
                            src.display()
                        ));
                        let Rollout { path: rp, data, .. } = rollout;
                        Ok(Replay {
                            opened: path.into(),
                            truth_path: rp,
                            truth: data,
                            rollout: None,
                            attention: None,
                            notes,
                        })
                    }
                }
                None => Ok(Replay {
                    opened: path.into(),
                    truth_path: path.into(),
                    truth: data,
                    rollout: None,
                    attention: None,
                    notes,
                }),
            }
        }
        FileKind::Analysis => {
            let run = path.parent().unwrap_or(Path::new("."));
            open_run_with(run, path, dataset, notes)
        }
        other => Err(ViewError::Invalid {
            path: path.into(),
            msg: format!(
                "is a headlab {} file; the viewer opens a dataset (headlab simulate), a rollout (headlab eval), \
                 a run folder or its analysis.h5",
                other.as_str()
            ),
        }),
    }
}

fn open_run(run: &Path, dataset: Option<&Path>, mut notes: Vec<String>) -> Result<Replay> {
    let an = run.join("analysis.h5");
    if an.exists() {
        return open_run_with(run, &an, dataset, notes);
    }
    notes.push(format!(
        "{} has no analysis.h5: run `headlab probe {}` to color by attention",
        run.display(),
        run.display()
    ));
    let data = match dataset {
        Some(d) => d.to_path_buf(),
        None => run_config_dataset(run)?,
    };
    let truth = read_dataset(&data)?;
    let rollout = find_rollout(run, &truth, &data, &mut notes);
    Ok(Replay { opened: run.into(), truth_path: data, truth, rollout, attention: None, notes })
}

fn open_run_with(run: &Path, an_path: &Path, dataset: Option<&Path>, mut notes: Vec<String>) -> Result<Replay> {
    let cache = AttentionCache::open(an_path)?;
    let data = match dataset {
        Some(d) => d.to_path_buf(),
        None => {
            let p = resolve_recorded(Path::new(&cache.dataset), run);
            if !p.exists() {
                return Err(ViewError::Invalid {
                    path: an_path.into(),
                    msg: format!(
                        "the dataset it was probed on, `{}`, is not there; pass --dataset FILE.h5",
                        cache.dataset
                    ),
                });
            }
            p
        }
    };
    let truth = read_dataset(&data)?;
    if truth.n_particles != cache.n_particles {
        return Err(ViewError::Invalid {
            path: an_path.into(),
            msg: format!(
                "n_particles is {} but {} has {} particles; pass the dataset it was probed on with --dataset",
                cache.n_particles,
                data.display(),
                truth.n_particles
            ),
        });
    }
    if let Some(&t) = cache.trajs.iter().find(|&&t| t as usize >= truth.n_traj) {
        return Err(ViewError::Invalid {
            path: an_path.into(),
            msg: format!("patterns/traj holds trajectory {t} but {} has {} trajectories", data.display(), truth.n_traj),
        });
    }
    if cache.is_empty() {
        notes.push("analysis.h5 holds no cached attention patterns (probe with --cache-frames > 0)".into());
    }
    let rollout = find_rollout(run, &truth, &data, &mut notes);
    Ok(Replay { opened: run.into(), truth_path: data, truth, rollout, attention: Some(cache), notes })
}

/// The newest `eval/rollout_step_*.h5` of a run, if any and if it fits.
fn find_rollout(run: &Path, truth: &Dataset, truth_path: &Path, notes: &mut Vec<String>) -> Option<Rollout> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(run.join("eval"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("rollout_step_") && n.ends_with(".h5"))
        })
        .collect();
    files.sort();
    let path = files.pop()?;
    let load = || -> Result<Rollout> {
        let data = read_dataset(&path)?;
        check_same_particles(truth, truth_path, &data, &path)?;
        let source_traj =
            read_rollout_source(&path)?.map(|(_, t)| t.iter().map(|&x| x as usize).collect()).unwrap_or_default();
        Ok(Rollout { path: path.clone(), data, source_traj })
    };
    match load() {
        Ok(r) => Some(r),
        Err(e) => {
            notes.push(format!("rollout not shown: {e}"));
            None
        }
    }
}

fn check_same_particles(truth: &Dataset, truth_path: &Path, other: &Dataset, other_path: &Path) -> Result<()> {
    if truth.n_particles != other.n_particles || truth.dim() != other.dim() {
        return Err(ViewError::Invalid {
            path: other_path.into(),
            msg: format!(
                "has {} particles in {}D but the ground truth {} has {} in {}D",
                other.n_particles,
                other.dim(),
                truth_path.display(),
                truth.n_particles,
                truth.dim()
            ),
        });
    }
    Ok(())
}

/// A path recorded in a file: as written if it exists (absolute, or relative
/// to the working directory), else relative to `base` (a run folder).
fn resolve_recorded(recorded: &Path, base: &Path) -> PathBuf {
    if recorded.exists() {
        return recorded.to_path_buf();
    }
    let base = if base.is_file() { base.parent().unwrap_or(Path::new(".")) } else { base };
    for cand in [base.join(recorded), base.join(recorded.file_name().unwrap_or_default())] {
        if cand.exists() {
            return cand;
        }
    }
    if let Some(parent) = base.parent() {
        let c = parent.join(recorded.file_name().unwrap_or_default());
        if c.exists() {
            return c;
        }
    }
    recorded.to_path_buf()
}

/// The dataset a run was trained on (`data` in RUN/config.toml).
fn run_config_dataset(run: &Path) -> Result<PathBuf> {
    let cfg = run.join("config.toml");
    let text = std::fs::read_to_string(&cfg).map_err(|_| ViewError::Invalid {
        path: run.into(),
        msg: "is a folder but not a headlab run (no analysis.h5, no config.toml); open a dataset file instead".into(),
    })?;
    let table: toml::Table =
        text.parse().map_err(|e| ViewError::Invalid { path: cfg.clone(), msg: format!("not valid TOML: {e}") })?;
    match table.get("data").and_then(|v| v.as_str()) {
        Some(d) if !d.is_empty() => {
            let p = resolve_recorded(Path::new(d), run);
            if p.exists() {
                Ok(p)
            } else {
                Err(ViewError::Invalid {
                    path: cfg,
                    msg: format!("`data` is \"{d}\", which is not there; pass --dataset FILE.h5"),
                })
            }
        }
        _ => Err(ViewError::Invalid { path: cfg, msg: "no `data` key; pass --dataset FILE.h5".into() }),
    }
}

/// Positions of trajectory `traj` at a fractional frame (linear in between).
pub fn positions_at(ds: &Dataset, traj: usize, frame: f32) -> Vec<[f32; 3]> {
    let last = ds.n_frames.saturating_sub(1);
    let f0 = (frame.floor().max(0.0) as usize).min(last);
    let f1 = (f0 + 1).min(last);
    let w = (frame - f0 as f32).clamp(0.0, 1.0);
    let d = ds.dim();
    (0..ds.n_particles)
        .map(|p| {
            let a = ds.idx(traj, f0, p);
            let b = ds.idx(traj, f1, p);
            let mut x = [0f32; 3];
            for k in 0..d {
                x[k] = ds.positions[a + k] * (1.0 - w) + ds.positions[b + k] * w;
            }
            x
        })
        .collect()
}

/// Speeds |v| of trajectory `traj` at frame `frame`.
pub fn speeds(ds: &Dataset, traj: usize, frame: usize) -> Vec<f32> {
    let d = ds.dim();
    (0..ds.n_particles)
        .map(|p| {
            let a = ds.idx(traj, frame, p);
            ds.velocities[a..a + d].iter().map(|v| v * v).sum::<f32>().sqrt()
        })
        .collect()
}

/// Largest speed over a whole trajectory (the speed color scale).
pub fn max_speed(ds: &Dataset, traj: usize) -> f32 {
    (0..ds.n_frames).flat_map(|f| speeds(ds, traj, f)).fold(0.0, f32::max)
}

/// Per-particle collision score of one head at one frame, the probe's
/// per-query definition: of the attention that query i gives to others,
/// the share on its partners `se`, normalized against chance
/// (`deg/(N−1)`): (se − chance)/(1 − chance). NaN for a particle without
/// partners (or all its attention on itself).
pub fn particle_scores(pattern: &[f32], n: usize, partners: &[(usize, usize)]) -> Vec<f32> {
    let mut deg = vec![0usize; n];
    let mut mask = vec![false; n * n];
    for &(i, j) in partners {
        mask[i * n + j] = true;
        mask[j * n + i] = true;
        deg[i] += 1;
        deg[j] += 1;
    }
    (0..n)
        .map(|i| {
            let row = &pattern[i * n..(i + 1) * n];
            let off: f32 = row.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, a)| a).sum();
            if deg[i] == 0 || off <= 1e-6 * row.iter().sum::<f32>() || n < 2 {
                return f32::NAN;
            }
            let on: f32 = row.iter().enumerate().filter(|&(j, _)| mask[i * n + j]).map(|(_, a)| a).sum();
            let se = on / off;
            let chance = deg[i] as f32 / (n - 1) as f32;
            if chance >= 1.0 {
                return f32::NAN;
            }
            (se - chance) / (1.0 - chance)
        })
        .collect()
}

/// Particle pairs in contact during each interval of trajectory `traj` (the
/// interval after frame f at index f), from the event table; walls left out.
/// The definition is the probe's: [`Dataset::interval_contacts`].
pub fn contacts_by_interval(ds: &Dataset, traj: usize) -> Vec<Vec<(usize, usize)>> {
    let frames: Vec<usize> = (0..ds.n_frames.saturating_sub(1)).collect();
    ds.interval_contacts(traj, &frames, false)
        .into_iter()
        .map(|v| v.into_iter().filter(|&(_, j)| j >= 0).map(|(i, j)| (i as usize, j as usize)).collect())
        .collect()
}

/// The first intersection of a ray with a set of spheres: index of the sphere.
pub fn pick_sphere(origin: [f32; 3], dir: [f32; 3], centers: &[[f32; 3]], radii: &[f32]) -> Option<usize> {
    let dot = |a: [f32; 3], b: [f32; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let dd = dot(dir, dir);
    if dd <= 0.0 {
        return None;
    }
    let mut best: Option<(usize, f32)> = None;
    for (k, (c, &r)) in centers.iter().zip(radii).enumerate() {
        let oc = [origin[0] - c[0], origin[1] - c[1], origin[2] - c[2]];
        let b = dot(oc, dir);
        let cc = dot(oc, oc) - r * r;
        let disc = b * b - dd * cc;
        if disc < 0.0 {
            continue;
        }
        let t = (-b - disc.sqrt()) / dd;
        let t = if t < 0.0 { (-b + disc.sqrt()) / dd } else { t };
        if t >= 0.0 && best.is_none_or(|(_, bt)| t < bt) {
            best = Some((k, t));
        }
    }
    best.map(|b| b.0)
}

/// Parse a head name `L.H` (or `L1.H2`).
pub fn parse_head(s: &str) -> Option<(usize, usize)> {
    let (l, h) = s.split_once('.')?;
    let l = l.trim_start_matches(['L', 'l']).parse().ok()?;
    let h = h.trim_start_matches(['H', 'h']).parse().ok()?;
    Some((l, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn particle_score_matches_probe_definition() {
        // 3 particles; query 0 gives 0.5 to itself, 0.4 to its partner 1, 0.1 to 2.
        let pat = [0.5, 0.4, 0.1, 0.2, 0.6, 0.2, 0.0, 0.5, 0.5];
        let s = particle_scores(&pat, 3, &[(0, 1)]);
        // se = 0.4 / 0.5 = 0.8; chance = 1/2; (0.8 − 0.5)/(0.5) = 0.6
        assert!((s[0] - 0.6).abs() < 1e-6, "{s:?}");
        // particle 1: se = 0.2/0.4 = 0.5 = chance → 0
        assert!(s[1].abs() < 1e-6, "{s:?}");
        // particle 2 has no partner
        assert!(s[2].is_nan());
    }

    #[test]
    fn pick_returns_nearest_hit() {
        let centers = [[0.0, 0.0, -5.0], [0.0, 0.0, -10.0], [3.0, 0.0, -5.0]];
        let radii = [1.0, 1.0, 1.0];
        assert_eq!(pick_sphere([0.0; 3], [0.0, 0.0, -1.0], &centers, &radii), Some(0));
        assert_eq!(pick_sphere([3.0, 0.0, 0.0], [0.0, 0.0, -1.0], &centers, &radii), Some(2));
        assert_eq!(pick_sphere([1.5, 0.0, 0.0], [0.0, 0.0, -1.0], &centers, &radii), None);
        // behind the camera: nothing
        assert_eq!(pick_sphere([0.0, 0.0, -20.0], [0.0, 0.0, -1.0], &centers, &radii), None);
    }

    #[test]
    fn head_names_parse() {
        assert_eq!(parse_head("1.2"), Some((1, 2)));
        assert_eq!(parse_head("L0.H3"), Some((0, 3)));
        assert_eq!(parse_head("12"), None);
        assert_eq!(parse_head("a.b"), None);
    }
}
