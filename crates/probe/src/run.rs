//! The probe driver: for every checkpoint of a run not yet probed, run the
//! model on a fixed evaluation set with attention hooks, compute the
//! per-head metrics and append them to `RUN/analysis.h5` (atomically).
//!
//! The evaluation set is drawn once per run from the run's validation
//! trajectories (seeded) and stored in analysis.h5; later calls reuse it.
//! Attention patterns of every head on a few whole evaluation trajectories
//! are cached at every checkpoint for the viewer.

use std::path::{Path, PathBuf};
use std::time::Instant;

use headlab_analysis::baselines::{all_head_controls, baseline_table, controls_series, floor_ceiling, PairTable};
use headlab_analysis::evalset::{choose_eval_frames, frame_geoms, pair_table};
use headlab_analysis::heads::analysis_path;
use headlab_analysis::logistic::BaseModel;
use headlab_analysis::metrics::{default_g_edges, step_record, FrameGeom, ProbeAccum};
use headlab_analysis::series::SeriesKey;
use headlab_sim::Dataset;
use headlab_store::analysis::{read_analysis, write_analysis, Analysis};
use headlab_store::checkpoint::list_checkpoints;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
/// Why probing could not run.
pub enum ProbeError {
    /// Shown as "probe option '{key}' = {value} is invalid: {hint}".
    #[error("probe option `{key}` = {value} is invalid: {hint}")]
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
    /// Passed through from `headlab_analysis::AnalysisError`.
    #[error(transparent)]
    Analysis(#[from] headlab_analysis::AnalysisError),
    /// Passed through from `headlab_model::ModelError`.
    #[error(transparent)]
    Model(#[from] headlab_model::ModelError),
    /// Passed through from `headlab_train::TrainError`.
    #[error(transparent)]
    Train(#[from] headlab_train::TrainError),
    /// Shown as "libtorch: {0}".
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Results of the probe.
pub type Result<T, E = ProbeError> = std::result::Result<T, E>;

/// What is measured, and on what (saved as the `config` of analysis.h5; a
/// later probe of the same run must use the same options).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeOptions {
    /// Number of evaluation frames (drawn from the run's validation trajectories).
    pub eval_frames: usize,
    /// Seed of the evaluation-frame draw.
    pub seed: u64,
    /// Contact radius factor: partners at the input frame are pairs closer
    /// than `contact_factor · (r_i + r_j)`.
    pub contact_factor: f32,
    /// g(r) bin edges in units of r_i + r_j (increasing; the last may be huge).
    pub g_edges: Vec<f32>,
    /// Validation trajectories whose attention is cached for the viewer.
    pub cache_trajectories: usize,
    /// Frames of each cached trajectory (from frame 0); fewer where the
    /// cache would exceed [`PATTERN_CACHE_BYTES`] per checkpoint ([`cached_frames`]).
    pub cache_frames: usize,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            eval_frames: 128,
            seed: 0,
            contact_factor: 1.0,
            g_edges: default_g_edges(),
            cache_trajectories: 2,
            cache_frames: 32,
        }
    }
}

impl ProbeOptions {
    /// Check every option's range; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, hint: &str| {
            Err(ProbeError::Config { key: key.into(), value, hint: hint.into() })
        };
        if self.eval_frames == 0 {
            return bad("eval_frames", "0".into(), "need at least one evaluation frame");
        }
        // (TOML holds integers up to 2^63 - 1; far below that, no run has that many frames.)
        for (key, v) in [
            ("eval_frames", self.eval_frames as u64),
            ("cache_trajectories", self.cache_trajectories as u64),
            ("cache_frames", self.cache_frames as u64),
        ] {
            if v > 1 << 32 {
                return bad(key, v.to_string(), "at most 2^32");
            }
        }
        if self.seed > i64::MAX as u64 {
            return bad("seed", self.seed.to_string(), "at most 2^63 - 1 (the largest integer a TOML file holds)");
        }
        if !(self.contact_factor > 0.0 && self.contact_factor.is_finite()) {
            return bad("contact_factor", self.contact_factor.to_string(), "must be a positive number (1 = touching)");
        }
        if self.g_edges.len() < 2 || self.g_edges.windows(2).any(|w| !(w[1] > w[0])) || !(self.g_edges[0] >= 0.0) {
            return bad(
                "g_edges",
                format!("{:?}", self.g_edges),
                "need at least two strictly increasing, non-negative edges",
            );
        }
        Ok(())
    }
    /// The options as TOML, as stored in analysis.h5 and compared when the
    /// run is probed again (an error, never an empty stand-in that would
    /// match any other unwritable options).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| ProbeError::Config {
            key: "(all)".into(),
            value: format!("{self:?}"),
            hint: format!("the options cannot be written as TOML ({e}); report this as a bug"),
        })
    }
}

/// How a probe call behaves (not saved).
#[derive(Debug, Clone)]
pub struct ProbeControl {
    /// auto, cpu, cuda, cuda:N.
    pub device: headlab_model::DeviceSpec,
    /// Frames per forward pass.
    pub batch: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Discard an existing analysis.h5 and start over.
    pub fresh: bool,
    /// Rewrite analysis.h5 after at most this many newly probed checkpoints.
    pub save_every: usize,
    /// libtorch intra-op threads on CPU (0: headlab's default).
    pub threads: usize,
}

impl Default for ProbeControl {
    fn default() -> Self {
        Self {
            device: headlab_model::DeviceSpec::Auto,
            batch: 64,
            progress: true,
            fresh: false,
            save_every: 10,
            threads: 0,
        }
    }
}

#[derive(Debug, Clone)]
/// What a probe call did.
pub struct ProbeSummary {
    /// The `analysis.h5` written.
    pub analysis_path: PathBuf,
    /// Steps probed by this call.
    pub probed: Vec<u64>,
    /// Checkpoints already in analysis.h5.
    pub skipped: usize,
    /// Evaluation frames per checkpoint.
    pub n_eval_frames: usize,
    /// Where the time went.
    pub timing: ProbeTiming,
}

/// Seconds of wall-clock time spent in each part of a probe call.
#[derive(Debug, Clone, Default)]
pub struct ProbeTiming {
    /// Evaluation set, geometry, pair table and baselines (once per call).
    pub setup: f64,
    /// Reading checkpoints and building models.
    pub load: f64,
    /// Forward passes for the evaluation frames' attention patterns.
    pub forward: f64,
    /// Accumulating the per-head metrics from the patterns.
    pub metrics: f64,
    /// The distance-controlled measures of every head (AUROCs, logistic gain).
    pub controls: f64,
    /// Attention patterns cached for the viewer (forward passes and copies).
    pub cache: f64,
    /// Writing analysis.h5.
    pub write: f64,
}

/// Something that yields the attention patterns of a checkpoint:
/// for a batch of (trajectory, frame), one `[B, H, N, N]` buffer per layer.
pub trait AttentionSource {
    /// Layers of the model.
    fn n_layers(&self) -> usize;
    /// Heads per layer.
    fn n_heads(&self) -> usize;
    /// The attention patterns of `frames` of `ds`, one `[B, H, N, N]` buffer per layer.
    fn patterns(&self, ds: &Dataset, frames: &[(usize, usize)]) -> Result<Vec<Vec<f32>>>;
}

/// The tch model as an attention source.
pub struct ModelSource(pub headlab_model::Model);

impl AttentionSource for ModelSource {
    fn n_layers(&self) -> usize {
        self.0.config.n_layers
    }
    fn n_heads(&self) -> usize {
        self.0.config.n_heads
    }
    fn patterns(&self, ds: &Dataset, frames: &[(usize, usize)]) -> Result<Vec<Vec<f32>>> {
        let m = &self.0;
        tch::no_grad(|| {
            let st = headlab_model::State::from_dataset(ds, frames, m.device());
            let x = m.norm.features(&st);
            let (_, cache) = m.run_with_cache(&x, |name| name.ends_with(".attn.hook_pattern"))?;
            (0..m.config.n_layers)
                .map(|l| {
                    let p = cache.pattern(l).ok_or_else(|| ProbeError::Run {
                        path: PathBuf::new(),
                        msg: format!("model recorded no pattern for layer {l}"),
                    })?;
                    let p = p.to_kind(tch::Kind::Float).to_device(tch::Device::Cpu).contiguous().view([-1]);
                    Ok(Vec::<f32>::try_from(&p)?)
                })
                .collect()
        })
    }
}

/// Probe one attention source on the evaluation frames: the accumulated
/// per-head metrics (`finish()` gives them) and pair attention.
pub fn probe_source(
    src: &dyn AttentionSource,
    ds: &Dataset,
    frames: &[(usize, usize)],
    geoms: &[FrameGeom],
    edges: &[f32],
    batch: usize,
) -> Result<ProbeAccum> {
    Ok(probe_source_timed(src, ds, frames, geoms, edges, batch)?.0)
}

/// [`probe_source`], and the seconds spent in forward passes and in the metrics.
fn probe_source_timed(
    src: &dyn AttentionSource,
    ds: &Dataset,
    frames: &[(usize, usize)],
    geoms: &[FrameGeom],
    edges: &[f32],
    batch: usize,
) -> Result<(ProbeAccum, f64, f64)> {
    let (l, h, n) = (src.n_layers(), src.n_heads(), ds.n_particles);
    let mut acc = ProbeAccum::new(l, h, edges);
    let per = h * n * n;
    let (mut t_fwd, mut t_met) = (0.0, 0.0);
    for (chunk, gchunk) in frames.chunks(batch.max(1)).zip(geoms.chunks(batch.max(1))) {
        let t = Instant::now();
        let pats = src.patterns(ds, chunk)?;
        let tm = Instant::now();
        t_fwd += (tm - t).as_secs_f64();
        for (layer, p) in pats.iter().enumerate() {
            for (b, g) in gchunk.iter().enumerate() {
                acc.add_layer_frame(layer, &p[b * per..(b + 1) * per], g);
            }
        }
        t_met += tm.elapsed().as_secs_f64();
    }
    Ok((acc, t_fwd, t_met))
}

/// The geometric side of the verdict, computed once per evaluation set: the
/// pair table, the logistic baseline model and the baselines' table.
pub struct Geometry {
    /// Pairs of the evaluation frames.
    pub table: PairTable,
    /// Logistic regression on geometric features alone (held-out).
    pub base: BaseModel,
    /// Distance baseline's matched AUROC (floor) and ballistic's (ceiling).
    pub floor_ceiling: (f64, f64),
}

/// The most bytes of attention cached for the viewer per checkpoint
/// (analysis.h5 holds every checkpoint's cache and is rewritten as probing
/// goes; uncapped, 256 particles would put 134 MB per checkpoint in it).
pub const PATTERN_CACHE_BYTES: usize = 8 << 20;

/// Frames per cached trajectory: `wanted`, or fewer (at least one) when
/// `layers × heads × trajectories × frames × n²` f32 weights would exceed
/// [`PATTERN_CACHE_BYTES`].
pub fn cached_frames(wanted: usize, layers: usize, heads: usize, trajectories: usize, n: usize) -> usize {
    let per_frame = (layers * heads * trajectories.max(1) * n * n * 4).max(1);
    if wanted == 0 {
        return 0;
    }
    wanted.min((PATTERN_CACHE_BYTES / per_frame).max(1))
}

/// Attention of every head on whole trajectories: [L, H, P, F, N, N].
fn cached_patterns(
    src: &dyn AttentionSource,
    ds: &Dataset,
    trajs: &[u32],
    frames: &[u32],
    batch: usize,
) -> Result<Vec<f32>> {
    let (l, h, n) = (src.n_layers(), src.n_heads(), ds.n_particles);
    let (p, f) = (trajs.len(), frames.len());
    let nn = n * n;
    let mut out = vec![0f32; l * h * p * f * nn];
    let all: Vec<(usize, usize)> =
        trajs.iter().flat_map(|&t| frames.iter().map(move |&fr| (t as usize, fr as usize))).collect();
    for (ci, chunk) in all.chunks(batch.max(1)).enumerate() {
        let pats = src.patterns(ds, chunk)?;
        for (layer, pat) in pats.iter().enumerate() {
            for b in 0..chunk.len() {
                let k = ci * batch.max(1) + b; // = traj_idx * F + frame_idx
                for head in 0..h {
                    let dst = ((layer * h + head) * p * f + k) * nn;
                    let src_off = (b * h + head) * nn;
                    out[dst..dst + nn].copy_from_slice(&pat[src_off..src_off + nn]);
                }
            }
        }
    }
    Ok(out)
}

/// Probe every checkpoint of `run_dir` not yet in its analysis.h5.
/// `ds` is the run's dataset and `dataset_path` its path (recorded).
pub fn probe_run(
    run_dir: &Path,
    ds: &Dataset,
    dataset_path: &Path,
    opts: &ProbeOptions,
    ctl: &ProbeControl,
) -> Result<ProbeSummary> {
    let device = ctl.device.resolve()?;
    headlab_train::set_threads(ctl.threads);
    probe_run_with(run_dir, ds, dataset_path, opts, ctl, &|p: &Path| {
        let m = headlab_model::Model::load(p, device)?;
        if m.config.attention.kind != headlab_model::AttentionKind::Softmax {
            tracing::warn!("{}: attention is not softmax; rows do not sum to 1 and the scores are computed on row-normalized weights", p.display());
        }
        Ok(Box::new(ModelSource(m)) as Box<dyn AttentionSource>)
    })
}

/// [`probe_run`] with any way of turning a checkpoint file into an attention source.
pub fn probe_run_with(
    run_dir: &Path,
    ds: &Dataset,
    dataset_path: &Path,
    opts: &ProbeOptions,
    ctl: &ProbeControl,
    load: &dyn Fn(&Path) -> Result<Box<dyn AttentionSource>>,
) -> Result<ProbeSummary> {
    let out = analysis_path(run_dir);
    if !ctl.fresh {
        return probe_into(run_dir, ds, dataset_path, opts, ctl, load, &out);
    }
    // --fresh builds the new file beside the old one and swaps them only
    // when every checkpoint is probed: a failure keeps the old results.
    let beside = fresh_path(&out);
    let r = probe_into(run_dir, ds, dataset_path, opts, ctl, load, &beside).and_then(|mut s| {
        std::fs::rename(&beside, &out).map_err(|e| ProbeError::Run {
            path: out.clone(),
            msg: format!("cannot replace it with {}: {e}", beside.display()),
        })?;
        s.analysis_path = out.clone();
        Ok(s)
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&beside);
    }
    r
}

/// Where `--fresh` builds a file before it replaces `path`: `DIR/.NAME.fresh`.
pub fn fresh_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".{name}.fresh"))
}

/// [`probe_run_with`] writing to `out` (the run's analysis.h5, or the file
/// that --fresh builds beside it).
fn probe_into(
    run_dir: &Path,
    ds: &Dataset,
    dataset_path: &Path,
    opts: &ProbeOptions,
    ctl: &ProbeControl,
    load: &dyn Fn(&Path) -> Result<Box<dyn AttentionSource>>,
    out: &Path,
) -> Result<ProbeSummary> {
    let t_start = Instant::now();
    opts.validate()?;
    let out = out.to_path_buf();
    let ckpts = list_checkpoints(run_dir)?;
    if ckpts.is_empty() {
        return Err(ProbeError::Run {
            path: run_dir.to_path_buf(),
            msg: "no checkpoints in ckpt/; train the run first (headlab train)".into(),
        });
    }
    let cfg_toml = opts.to_toml()?;
    let mut an: Option<Analysis> = None;
    if out.exists() && !ctl.fresh {
        let a = read_analysis(&out, true)?;
        if a.config_toml != cfg_toml {
            return Err(ProbeError::Run {
                path: out.clone(),
                msg: format!(
                    "was probed with other options:\n{}\nnow:\n{}\npass --fresh to probe again from scratch, or use the same options",
                    a.config_toml, cfg_toml
                ),
            });
        }
        if a.n_particles != ds.n_particles {
            return Err(ProbeError::Run {
                path: out.clone(),
                msg: format!(
                    "was probed on {} particles, the dataset has {}; pass --fresh",
                    a.n_particles, ds.n_particles
                ),
            });
        }
        if !a.steps.is_empty() && !a.series.contains_key(SeriesKey::AurocMatched.name()) {
            return Err(ProbeError::Run {
                path: out.clone(),
                msg: "was probed by an older headlab without the distance-controlled measures (auroc_matched, …); pass --fresh to probe every checkpoint again".into(),
            });
        }
        an = Some(a);
    }
    let todo: Vec<(u64, PathBuf)> =
        ckpts.iter().filter(|(s, _)| an.as_ref().is_none_or(|a| !a.has_step(*s))).cloned().collect();
    let skipped = ckpts.len() - todo.len();
    if todo.is_empty() {
        let n_eval = an.as_ref().map(|a| a.eval_frame.len()).unwrap_or(0);
        tracing::info!("{}: all {} checkpoints already probed", out.display(), ckpts.len());
        return Ok(ProbeSummary {
            analysis_path: out,
            probed: vec![],
            skipped,
            n_eval_frames: n_eval,
            timing: ProbeTiming::default(),
        });
    }

    // Evaluation set: stored, or drawn now from the validation trajectories.
    let frames: Vec<(usize, usize)> = match &an {
        Some(a) => a.eval_traj.iter().zip(&a.eval_frame).map(|(&t, &f)| (t as usize, f as usize)).collect(),
        None => {
            let val = eval_trajectories(run_dir, ds)?;
            choose_eval_frames(ds, &val, opts.eval_frames, opts.seed)
        }
    };
    for &(t, f) in &frames {
        if t >= ds.n_traj || f + 1 >= ds.n_frames {
            return Err(ProbeError::Run { path: out.clone(), msg: format!("evaluation frame (traj {t}, frame {f}) is not in the dataset; was it probed on another dataset? pass --fresh") });
        }
    }
    let geoms = frame_geoms(ds, &frames, opts.contact_factor);
    let n_contacts: usize = geoms.iter().map(|g| g.overlap.n_pairs()).sum();
    let n_interval: usize = geoms.iter().map(|g| g.interval.n_pairs()).sum();
    tracing::info!(
        "{} evaluation frames: {} overlapping pairs, {} pairs in contact within the interval",
        frames.len(),
        n_contacts,
        n_interval
    );
    if n_interval == 0 {
        tracing::warn!("no contacts in the evaluation frames: collision scores will be undefined (NaN); use a denser scene or more frames");
    }

    // Baselines and the pair table: geometry only, the same for every checkpoint.
    let tg = Instant::now();
    let mut timing = ProbeTiming::default();
    let table = pair_table(ds, &frames, &geoms);
    let base = BaseModel::fit(&table);
    let baselines = baseline_table(&table, &geoms, &opts.g_edges, &base);
    let fc = floor_ceiling(&baselines);
    tracing::info!(
        "baselines on {} ordered pairs ({:.2}s): distance-matched AUROC of distance {:.3} (floor), of ballistics {:.3} (ceiling)",
        table.len(),
        tg.elapsed().as_secs_f64(),
        fc.0,
        fc.1
    );
    let geometry = Geometry { table, base, floor_ceiling: fc };
    timing.setup = t_start.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let first = load(&todo[0].1)?;
    timing.load += t0.elapsed().as_secs_f64();
    let (nl, nh) = (first.n_layers(), first.n_heads());
    let mut an = match an {
        Some(a) => {
            if (a.n_layers, a.n_heads) != (nl, nh) {
                return Err(ProbeError::Run {
                    path: out.clone(),
                    msg: format!(
                        "holds {}×{} heads but the checkpoints have {nl}×{nh}; pass --fresh",
                        a.n_layers, a.n_heads
                    ),
                });
            }
            a
        }
        None => {
            let val = eval_trajectories(run_dir, ds)?;
            let pt: Vec<u32> = val.iter().take(opts.cache_trajectories).map(|&t| t as u32).collect();
            let n_cache = cached_frames(opts.cache_frames.min(ds.n_frames), nl, nh, pt.len(), ds.n_particles);
            if n_cache < opts.cache_frames.min(ds.n_frames) {
                tracing::warn!(
                    "caching the attention of {n_cache} frame(s) per trajectory for the viewer, not {}: with {} particles \
                     each frame holds {nl}×{nh} patterns of {}² weights, and the cache is kept under {} MiB per checkpoint",
                    opts.cache_frames,
                    ds.n_particles,
                    ds.n_particles,
                    PATTERN_CACHE_BYTES >> 20
                );
            }
            let pf: Vec<u32> = (0..n_cache as u32).collect();
            Analysis {
                config_toml: cfg_toml.clone(),
                dataset: dataset_path.display().to_string(),
                n_layers: nl,
                n_heads: nh,
                n_particles: ds.n_particles,
                eval_traj: frames.iter().map(|f| f.0 as u32).collect(),
                eval_frame: frames.iter().map(|f| f.1 as u32).collect(),
                g_edges: opts.g_edges.clone(),
                pattern_traj: if pf.is_empty() { vec![] } else { pt },
                pattern_frames: pf,
                ..Default::default()
            }
        }
    };
    let bar = if ctl.progress {
        let b = indicatif::ProgressBar::new(todo.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "probe {bar:30} {pos}/{len} checkpoints  {elapsed} (eta {eta})  {msg}",
            )
            .map_err(|e| ProbeError::Run { path: run_dir.to_path_buf(), msg: format!("progress bar: {e}") })?,
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    an.baselines = baselines;
    let mut probed = Vec::new();
    let mut since_save = 0;
    let mut src = Some(first);
    for (step, path) in &todo {
        let tl = Instant::now();
        let s = match src.take() {
            Some(s) => s,
            None => load(path)?,
        };
        let tm = Instant::now();
        timing.load += (tm - tl).as_secs_f64();
        let (acc, t_fwd, t_met) = probe_source_timed(s.as_ref(), ds, &frames, &geoms, &opts.g_edges, ctl.batch)?;
        let metrics = acc.finish();
        let tc = Instant::now();
        let (floor, ceiling) = geometry.floor_ceiling;
        let controls = all_head_controls(&acc, &geometry.table, &geometry.base, floor, ceiling, opts.seed);
        let tp = Instant::now();
        let pats = if an.pattern_traj.is_empty() {
            vec![]
        } else {
            cached_patterns(s.as_ref(), ds, &an.pattern_traj, &an.pattern_frames, ctl.batch)?
        };
        timing.forward += t_fwd;
        timing.metrics += t_met + (tc - tm).as_secs_f64() - t_fwd - t_met;
        timing.controls += (tp - tc).as_secs_f64();
        timing.cache += tp.elapsed().as_secs_f64();
        tracing::debug!(
            "step {step}: load {:.3}s, forward {t_fwd:.3}s, metrics {:.3}s, controls {:.3}s, cached patterns {:.3}s",
            (tm - tl).as_secs_f64(),
            (tc - tm).as_secs_f64() - t_fwd,
            (tp - tc).as_secs_f64(),
            tp.elapsed().as_secs_f64()
        );
        let best = metrics.iter().map(|m| m.overlap.excl_norm).filter(|v| v.is_finite()).fold(f64::NAN, f64::max);
        let mut rec = step_record(*step, &metrics, pats);
        for (k, v) in controls_series(&controls) {
            rec.series.insert(k.name().to_string(), v);
        }
        an.add_step(rec).map_err(|msg| ProbeError::Run { path: out.clone(), msg })?;
        probed.push(*step);
        bar.set_message(format!("step {step}: highest self-excluded score {best:.2}"));
        bar.inc(1);
        since_save += 1;
        if since_save >= ctl.save_every.max(1) {
            let tw = Instant::now();
            write_analysis(&out, &an)?;
            timing.write += tw.elapsed().as_secs_f64();
            since_save = 0;
        }
    }
    if since_save > 0 {
        let tw = Instant::now();
        write_analysis(&out, &an)?;
        timing.write += tw.elapsed().as_secs_f64();
    }
    bar.finish_and_clear();
    tracing::info!("probed {} checkpoints in {:.1}s into {}", probed.len(), t0.elapsed().as_secs_f64(), out.display());
    Ok(ProbeSummary { analysis_path: out, probed, skipped, n_eval_frames: frames.len(), timing })
}

/// The run's validation trajectories (from its config.toml), or all
/// trajectories when it has none.
pub fn eval_trajectories(run_dir: &Path, ds: &Dataset) -> Result<Vec<usize>> {
    let cfg_path = run_dir.join("config.toml");
    let val = if cfg_path.exists() {
        let cfg = headlab_train::TrainConfig::load(&cfg_path)?;
        if cfg.val_fraction > 0.0 && ds.n_traj >= 2 {
            headlab_train::split_trajectories(ds.n_traj, cfg.val_fraction, cfg.seed)?.1
        } else {
            vec![]
        }
    } else {
        vec![]
    };
    Ok(if val.is_empty() { (0..ds.n_traj).collect() } else { val })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_viewer_cache_is_capped_per_checkpoint() {
        // The demo (2 layers × 4 heads, 2 trajectories, 16 particles) keeps its 32 frames, and so does N = 64.
        assert_eq!(cached_frames(32, 2, 4, 2, 16), 32);
        assert_eq!(cached_frames(32, 2, 4, 2, 64), 32);
        // 256 particles: 4 MiB a frame, so 2 frames fit in 8 MiB; never below one frame, nothing asked, nothing cached.
        assert_eq!(cached_frames(32, 2, 4, 2, 256), 2);
        assert_eq!(cached_frames(32, 8, 8, 4, 1024), 1);
        assert_eq!(cached_frames(0, 2, 4, 2, 256), 0);
        let bytes = |f: usize, n: usize| 2 * 4 * 2 * f * n * n * 4;
        assert!(bytes(cached_frames(32, 2, 4, 2, 200), 200) <= PATTERN_CACHE_BYTES);
    }
}
