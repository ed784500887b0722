//! The ablation driver behind `headlab ablate`: runs a run's checkpoints on
//! the probe's evaluation frames with hooks that ablate heads (zero, mean,
//! resample, off-self, geometry-only and oracle patterns), measures one-step
//! errors of contact vs free particles at a subset of checkpoints, and at the
//! final checkpoint rollouts with heads ablated and activation patching on
//! counterfactual pairs. Results go to `RUN/ablation.h5`, rewritten
//! atomically after every checkpoint (a second call resumes).
//!
//! The arithmetic (bootstrap, geometry patterns, counterfactual frames, the
//! file format) is in `headlab_analysis::ablation`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use headlab_analysis::ablation::{
    ablation_path, choose_pairs, choose_steps, default_targets, emergence_window, frame_sums, intact_errors,
    move_out_of_reach, onestep_effects, parse_head, parse_kinds, read_ablation, recovery, replacement_weights,
    write_ablation, Ablation, AblationStep, Bootstrap, Est, FrameSums, GeoProfile, Kind, PatchingResults,
    RolloutResults, Target, ONESTEP_METRICS, ROLLOUT_HORIZONS, ROLLOUT_METRICS,
};
use headlab_analysis::evalset::frame_geoms;
use headlab_analysis::heads::{analysis_path, collision_heads};
use headlab_analysis::metrics::ContactSet;
use headlab_model::{Hooks, Model, State};
use headlab_sim::Dataset;
use headlab_store::analysis::read_analysis;
use headlab_store::checkpoint::list_checkpoints;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind as TKind, Tensor};

use crate::run::{ProbeError, Result};

/// What is measured (stored in ablation.h5; a resumed call must use the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AblateOptions {
    /// Ablation kinds, by name (see `headlab ablate --help`).
    pub kinds: Vec<String>,
    /// The group ablated at once, as head names (empty: the heads that
    /// meet the probe's collision-head bar at the last probed step).
    pub group: Vec<String>,
    /// Training frames for the mean ablation and the geometry profiles.
    pub train_frames: usize,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// Rollouts (validation trajectories from frame 0) at the final checkpoint; 0: none.
    pub rollouts: usize,
    /// Counterfactual pairs for activation patching at the final checkpoint; 0: none.
    pub patch_pairs: usize,
    /// Seed of every random choice (training frames, resample partners, pairs, bootstrap).
    pub seed: u64,
}

impl Default for AblateOptions {
    fn default() -> Self {
        let kinds = headlab_analysis::ablation::ALL_KINDS.iter().map(|k| k.name().to_string()).collect();
        Self { kinds, group: vec![], train_frames: 256, bootstrap: 1000, rollouts: 16, patch_pairs: 64, seed: 0 }
    }
}

impl AblateOptions {
    /// Check the options; errors name the key.
    pub fn validate(&self) -> Result<Vec<Kind>> {
        let kinds = parse_kinds(&self.kinds.join(","))?;
        if self.train_frames == 0
            && kinds.iter().any(|k| matches!(k, Kind::Mean | Kind::GeoDistance | Kind::GeoApproach))
        {
            return Err(ProbeError::Config {
                key: "train_frames".into(),
                value: "0".into(),
                hint: "mean and geometry ablations need training frames".into(),
            });
        }
        if self.bootstrap < 100 {
            return Err(ProbeError::Config {
                key: "bootstrap".into(),
                value: self.bootstrap.to_string(),
                hint: "use at least 100 resamples for a 95 % interval".into(),
            });
        }
        Ok(kinds)
    }
    /// As TOML (stored and compared on resume).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| ProbeError::Config {
            key: "(all)".into(),
            value: format!("{self:?}"),
            hint: format!("cannot be written as TOML ({e})"),
        })
    }
}

/// How a call behaves (not stored).
#[derive(Debug, Clone)]
pub struct AblateControl {
    /// auto, cpu, cuda, cuda:N.
    pub device: headlab_model::DeviceSpec,
    /// Checkpoints to ablate (must exist); `None`: `n_steps` chosen by [`choose_steps`].
    pub steps: Option<Vec<u64>>,
    /// How many checkpoints when `steps` is `None` (the last always included).
    pub n_steps: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Discard an existing ablation.h5.
    pub fresh: bool,
    /// libtorch intra-op threads on CPU (0: headlab's default).
    pub threads: usize,
}

impl Default for AblateControl {
    fn default() -> Self {
        Self {
            device: headlab_model::DeviceSpec::Auto,
            steps: None,
            n_steps: 12,
            progress: true,
            fresh: false,
            threads: 0,
        }
    }
}

/// What a call did.
#[derive(Debug, Clone)]
pub struct AblateSummary {
    /// The file written.
    pub path: PathBuf,
    /// Checkpoints ablated by this call.
    pub done: Vec<u64>,
    /// Checkpoints already in the file.
    pub skipped: usize,
    /// Wall time of this call (seconds).
    pub seconds: f64,
}

fn run_err(path: &Path, msg: impl Into<String>) -> ProbeError {
    ProbeError::Run { path: path.to_path_buf(), msg: msg.into() }
}

// ---------------------------------------------------------------------------
// Model-side helpers
// ---------------------------------------------------------------------------

/// Inputs of a batch of frames: normalized features, normalized targets,
/// true Δv (physical) as host vectors, and the states.
struct Batch {
    x: Tensor,
    y: Tensor,
    dv_true: Vec<f32>,
    state: State,
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(&t.to_kind(TKind::Float).to_device(Device::Cpu).contiguous().view([-1]))?)
}

fn batch(m: &Model, ds: &Dataset, frames: &[(usize, usize)]) -> Result<Batch> {
    let a = State::from_dataset(ds, frames, m.device());
    let nxt: Vec<(usize, usize)> = frames.iter().map(|&(t, f)| (t, f + 1)).collect();
    let b = State::from_dataset(ds, &nxt, m.device());
    let dvel = &b.vel - &a.vel;
    let y = m.norm.targets(&(&b.pos - &a.pos), &dvel);
    Ok(Batch { x: m.norm.features(&a), y, dv_true: host(&dvel)?, state: a })
}

/// What the hooks of one ablation need besides the kind.
struct AblCtx {
    /// Per layer, the mean of hook_z over training frames and particles: [H, dh].
    mean_z: Vec<Tensor>,
    /// Per layer, hook_z of the intact model on another frame of the batch: [B, N, H, dh].
    resample_z: Vec<Tensor>,
    /// Off-self weights [B, N, N] per (kind, layer, head) (oracle: head -1 shared).
    weights: HashMap<(Kind, usize, usize), Tensor>,
}

/// Hooks that apply `kind` to every head of `target`.
fn ablation_hooks<'a>(target: &Target, kind: Kind, ctx: &'a AblCtx) -> Hooks<'a> {
    let mut hooks = Hooks::new();
    let mut layers: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(l, h) in &target.heads {
        layers.entry(l).or_default().push(h);
    }
    for (l, hs) in layers {
        if kind.is_pattern() {
            hooks.add(format!("blocks.{l}.attn.hook_pattern"), move |p, _| {
                let p = p.copy(); // [B, H, N, N]
                let n = p.size()[2];
                for &h in &hs {
                    let ph = p.select(1, h as i64);
                    let new = if kind == Kind::OffSelf {
                        Tensor::eye(n, (TKind::Float, p.device())).expand_as(&ph)
                    } else {
                        let key = if kind == Kind::Oracle { (kind, 0, usize::MAX) } else { (kind, l, h) };
                        let w = ctx.weights.get(&key).ok_or_else(|| {
                            headlab_model::ModelError::Input(format!(
                                "no replacement pattern for {} L{l}.H{h}",
                                kind.name()
                            ))
                        })?;
                        let diag = ph.diagonal(0, -2, -1); // [B, N]
                        let repl = diag.diag_embed(0, -2, -1) + (diag.ones_like() - &diag).unsqueeze(-1) * w;
                        // Rows without weights (oracle: a query without partner) keep the head's own.
                        let has =
                            w.sum_dim_intlist([-1i64].as_slice(), true, TKind::Float).gt(0.0).to_kind(TKind::Float);
                        &repl * &has + &ph * (has.ones_like() - &has)
                    };
                    p.select(1, h as i64).f_copy_(&new)?;
                }
                Ok(p)
            });
        } else {
            hooks.add(format!("blocks.{l}.attn.hook_z"), move |z, _| {
                let z = z.copy(); // [B, N, H, dh]
                for &h in &hs {
                    let mut zh = z.narrow(2, h as i64, 1);
                    match kind {
                        Kind::Zero => {
                            let _ = zh.f_fill_(0.0)?;
                        }
                        Kind::Mean => zh.f_copy_(&ctx.mean_z[l].get(h as i64))?,
                        _ => zh.f_copy_(&ctx.resample_z[l].narrow(2, h as i64, 1))?,
                    }
                }
                Ok(z)
            });
        }
    }
    hooks
}

/// Per-frame error sums of a prediction (normalized) on a batch.
fn sums_of(m: &Model, pred: &Tensor, b: &Batch, contacts: &[&ContactSet], dim: usize) -> Result<Vec<FrameSums>> {
    let d = dim as i64;
    let se = host(&(pred - &b.y).square().mean_dim([-1i64].as_slice(), false, TKind::Float))?; // [B*N]
    let dv = host(&m.norm.denormalize(pred).narrow(-1, d, d))?; // [B*N*D]
    let n = se.len() / contacts.len().max(1);
    Ok(contacts
        .iter()
        .enumerate()
        .map(|(f, c)| {
            frame_sums(
                &se[f * n..(f + 1) * n],
                &dv[f * n * dim..(f + 1) * n * dim],
                &b.dv_true[f * n * dim..(f + 1) * n * dim],
                c,
                dim,
            )
        })
        .collect())
}

/// A derangement of 0..b (seeded): each frame gets another frame's activations.
fn derangement(b: usize, seed: u64) -> Vec<i64> {
    if b < 2 {
        return (0..b as i64).collect();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5E5A);
    let mut p: Vec<usize> = (0..b).collect();
    p.shuffle(&mut rng);
    // Rotate the shuffled order by one: a single cycle, no fixed point.
    let mut out = vec![0i64; b];
    for k in 0..b {
        out[p[k]] = p[(k + 1) % b] as i64;
    }
    out
}

/// Recorded hook_z of every layer (and, optionally, patterns and residuals).
fn intact_cache(m: &Model, x: &Tensor) -> Result<(Tensor, headlab_model::ActivationCache)> {
    Ok(m.run_with_cache(x, |n| {
        n.ends_with("attn.hook_z") || n.ends_with("attn.hook_pattern") || n.ends_with("hook_resid_post")
    })?)
}

fn z_of(cache: &headlab_model::ActivationCache, l: usize) -> Result<Tensor> {
    Ok(cache.require(&format!("blocks.{l}.attn.hook_z"))?.shallow_clone())
}

/// Geometry weights for every pattern kind on a batch of states (host arrays).
#[allow(clippy::too_many_arguments)]
fn weights_for(
    kinds: &[Kind],
    n_layers: usize,
    n_heads: usize,
    profiles: &[GeoProfile],
    pos: &[f32],
    vel: &[f32],
    radii: &[f32],
    contacts: Option<&[&ContactSet]>,
    n: usize,
    dim: usize,
    dt: f32,
    device: Device,
) -> HashMap<(Kind, usize, usize), Tensor> {
    let b = radii.len() / n;
    let mut out = HashMap::new();
    let frame = |f: usize| {
        (&pos[f * n * dim..(f + 1) * n * dim], &vel[f * n * dim..(f + 1) * n * dim], &radii[f * n..(f + 1) * n])
    };
    for &k in kinds {
        match k {
            Kind::GeoDistance | Kind::GeoApproach => {
                for l in 0..n_layers {
                    for h in 0..n_heads {
                        let prof = &profiles[l * n_heads + h];
                        let mut w = Vec::with_capacity(b * n * n);
                        for f in 0..b {
                            let (p, v, r) = frame(f);
                            w.extend(replacement_weights(k, Some(prof), None, p, v, r, dim, dt));
                        }
                        out.insert((k, l, h), Tensor::from_slice(&w).view([b as i64, n as i64, n as i64]).to(device));
                    }
                }
            }
            Kind::Oracle => {
                if let Some(cs) = contacts {
                    let mut w = Vec::with_capacity(b * n * n);
                    for (f, c) in cs.iter().enumerate() {
                        let (p, v, r) = frame(f);
                        w.extend(replacement_weights(k, None, Some(c), p, v, r, dim, dt));
                    }
                    out.insert(
                        (k, 0, usize::MAX),
                        Tensor::from_slice(&w).view([b as i64, n as i64, n as i64]).to(device),
                    );
                }
            }
            _ => {}
        }
    }
    out
}

/// Mean hook_z per layer and geometry profiles per head, from training frames.
fn training_stats(
    m: &Model,
    ds: &Dataset,
    frames: &[(usize, usize)],
    edges: &[f32],
) -> Result<(Vec<Tensor>, Vec<GeoProfile>)> {
    let (nl, nh) = (m.config.n_layers, m.config.n_heads);
    let (n, dim) = (ds.n_particles, ds.dim());
    let dt = ds.frame_dt() as f32;
    let mut zsum: Vec<Option<Tensor>> = (0..nl).map(|_| None).collect();
    let mut count = 0i64;
    let mut profiles = vec![GeoProfile::new(edges); nl * nh];
    for chunk in frames.chunks(256) {
        let st = State::from_dataset(ds, chunk, m.device());
        let (_, cache) = m.run_with_cache(&m.norm.features(&st), |n| {
            n.ends_with("attn.hook_z") || n.ends_with("attn.hook_pattern")
        })?;
        let (pos, vel, rad) = (host(&st.pos)?, host(&st.vel)?, host(&st.radii)?);
        for l in 0..nl {
            let z = z_of(&cache, l)?; // [B, N, H, dh]
            let s = z.sum_dim_intlist([0i64, 1].as_slice(), false, TKind::Float); // [H, dh]
            zsum[l] = Some(match zsum[l].take() {
                Some(a) => a + s,
                None => s,
            });
            let pat = host(
                cache
                    .pattern(l)
                    .ok_or_else(|| run_err(Path::new("<model>"), format!("no pattern recorded for layer {l}")))?,
            )?; // [B, H, N, N]
            for f in 0..chunk.len() {
                for h in 0..nh {
                    let off = (f * nh + h) * n * n;
                    profiles[l * nh + h].add_frame(
                        &pat[off..off + n * n],
                        &pos[f * n * dim..(f + 1) * n * dim],
                        &vel[f * n * dim..(f + 1) * n * dim],
                        &rad[f * n..(f + 1) * n],
                        dim,
                        dt,
                    );
                }
            }
        }
        count += (chunk.len() * n) as i64;
    }
    let means = zsum
        .into_iter()
        .map(|s| {
            s.map(|s| s / count.max(1) as f64)
                .unwrap_or_else(|| Tensor::zeros([nh as i64, 1], (TKind::Float, m.device())))
        })
        .collect();
    Ok((means, profiles))
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

/// Ablate the heads of a probed run (see the module doc).
pub fn ablate_run(run_dir: &Path, ds: &Dataset, opts: &AblateOptions, ctl: &AblateControl) -> Result<AblateSummary> {
    let t0 = Instant::now();
    let kinds = opts.validate()?;
    let device = ctl.device.resolve()?;
    headlab_train::set_threads(ctl.threads);
    let ap = analysis_path(run_dir);
    if !ap.exists() {
        return Err(run_err(&ap, "not found: `headlab ablate` uses the probe's evaluation frames and collision heads; run `headlab probe RUN` first"));
    }
    let an = read_analysis(&ap, false)?;
    if an.n_particles != ds.n_particles {
        return Err(run_err(
            &ap,
            format!(
                "was probed on {} particles, the dataset has {}; is --data the run's dataset?",
                an.n_particles, ds.n_particles
            ),
        ));
    }
    let frames: Vec<(usize, usize)> =
        an.eval_traj.iter().zip(&an.eval_frame).map(|(&t, &f)| (t as usize, f as usize)).collect();
    for &(t, f) in &frames {
        if t >= ds.n_traj || f + 1 >= ds.n_frames {
            return Err(run_err(
                &ap,
                format!("evaluation frame (traj {t}, frame {f}) is not in the dataset; is --data the run's dataset?"),
            ));
        }
    }
    let ckpts = list_checkpoints(run_dir)?;
    let all_steps: Vec<u64> = ckpts.iter().map(|c| c.0).collect();
    if all_steps.is_empty() {
        return Err(run_err(run_dir, "no checkpoints in ckpt/; train the run first (headlab train)"));
    }
    let (nl, nh) = (an.n_layers, an.n_heads);
    // The group.
    let group: Vec<(usize, usize)> = if opts.group.is_empty() {
        collision_heads(&an)
    } else {
        opts.group.iter().map(|s| parse_head(s, nl, nh)).collect::<std::result::Result<_, _>>()?
    };
    if group.is_empty() {
        tracing::warn!("no head meets the collision-head bar at the last probed step: no `collision` group is ablated (name one with --group)");
    }
    let targets = default_targets(nl, nh, &group);
    // Which checkpoints.
    let steps: Vec<u64> = match &ctl.steps {
        Some(s) => {
            for st in s {
                if !all_steps.contains(st) {
                    return Err(run_err(run_dir, format!("no checkpoint at step {st}; the run has {:?}", all_steps)));
                }
            }
            let mut s = s.clone();
            s.sort_unstable();
            s.dedup();
            s
        }
        None => {
            let score: Vec<f64> = (0..an.steps.len())
                .map(|s| {
                    let v = an.series.get("score_excl_norm_overlap");
                    let heads: Vec<(usize, usize)> = if group.is_empty() {
                        (0..nl).flat_map(|l| (0..nh).map(move |h| (l, h))).collect()
                    } else {
                        group.clone()
                    };
                    heads
                        .iter()
                        .filter_map(|&(l, h)| v.map(|v| v[s * nl * nh + l * nh + h]))
                        .filter(|x| x.is_finite())
                        .fold(f64::NAN, f64::max)
                })
                .collect();
            let window = emergence_window(&an.steps, &score);
            tracing::info!("emergence window of the collision score (10 % to 90 % of its rise): {window:?}");
            choose_steps(&all_steps, window, ctl.n_steps.max(1))
        }
    };
    let final_step = *all_steps.last().unwrap_or(&0);

    // Resume or start.
    let out = ablation_path(run_dir);
    let cfg_toml = opts.to_toml()?;
    let mut ab = if out.exists() && !ctl.fresh {
        let a = read_ablation(&out)?;
        if a.config_toml != cfg_toml || a.targets != targets || a.kinds != kinds {
            return Err(run_err(
                &out,
                format!("was written with other options or targets:\n{}\nnow:\n{}\npass --fresh to start over, or use the same options", a.config_toml, cfg_toml),
            ));
        }
        a
    } else {
        Ablation {
            config_toml: cfg_toml,
            n_layers: nl,
            n_heads: nh,
            n_eval_frames: frames.len(),
            targets: targets.clone(),
            kinds: kinds.clone(),
            ..Default::default()
        }
    };
    let todo: Vec<u64> = steps.iter().copied().filter(|s| !ab.has_step(*s)).collect();
    let want_final = steps.contains(&final_step);
    let need_rollout = want_final && opts.rollouts > 0 && ab.rollout.as_ref().is_none_or(|r| r.step != final_step);
    let need_patch = want_final && opts.patch_pairs > 0 && ab.patching.as_ref().is_none_or(|p| p.step != final_step);
    let skipped = steps.len() - todo.len();

    // Evaluation frames, clusters, contacts.
    let geoms = frame_geoms(ds, &frames, 1.0);
    let contacts: Vec<&ContactSet> = geoms.iter().map(|g| &g.interval).collect();
    let mut traj_ids: Vec<usize> = frames.iter().map(|f| f.0).collect();
    traj_ids.sort_unstable();
    traj_ids.dedup();
    let cluster: Vec<usize> = frames.iter().map(|f| f.0).collect();
    let boot = Bootstrap::new(&cluster, opts.bootstrap, opts.seed);
    ab.n_clusters = boot.n_clusters;
    ab.cluster_unit = "evaluation trajectories".into();
    if boot.n_clusters < 5 {
        tracing::warn!("the evaluation frames come from only {} trajectories: the bootstrap intervals (over trajectories) are unreliable", boot.n_clusters);
    }
    // Training frames: not from the evaluation trajectories.
    let val = crate::run::eval_trajectories(run_dir, ds)?;
    let train_trajs: Vec<usize> = (0..ds.n_traj).filter(|t| !val.contains(t)).collect();
    let train_trajs = if train_trajs.is_empty() { (0..ds.n_traj).collect() } else { train_trajs };
    let mut train_frames: Vec<(usize, usize)> =
        train_trajs.iter().flat_map(|&t| (0..ds.n_frames.saturating_sub(1)).map(move |f| (t, f))).collect();
    train_frames.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed ^ 0x7A1));
    train_frames.truncate(opts.train_frames.max(1));
    let edges = if an.g_edges.len() >= 2 { an.g_edges.clone() } else { headlab_analysis::metrics::default_g_edges() };
    let dt = ds.frame_dt() as f32;

    let units = todo.len() + need_rollout as usize + need_patch as usize;
    let bar = if ctl.progress && units > 0 {
        let b = indicatif::ProgressBar::new(units as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("ablate {bar:30} {pos}/{len}  {elapsed} (eta {eta})  {msg}")
                .map_err(|e| run_err(run_dir, e.to_string()))?,
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let path_of = |s: u64| {
        ckpts
            .iter()
            .find(|c| c.0 == s)
            .map(|c| c.1.clone())
            .ok_or_else(|| run_err(run_dir, format!("no checkpoint at step {s}")))
    };
    let mut done = Vec::new();
    for &step in &todo {
        bar.set_message(format!("step {step}: one-step errors, {} targets × {} kinds", targets.len(), kinds.len()));
        let m = Model::load(&path_of(step)?, device)?;
        let rec = tch::no_grad(|| {
            onestep_step(
                &m,
                ds,
                &frames,
                &contacts,
                &train_frames,
                &edges,
                &targets,
                &kinds,
                &boot,
                opts.seed ^ step,
                dt,
            )
        })?;
        ab.add_step(AblationStep { step, ..rec }).map_err(|msg| run_err(&out, msg))?;
        write_ablation(&out, &ab)?;
        done.push(step);
        bar.inc(1);
    }
    if need_rollout || need_patch {
        let m = Model::load(&path_of(final_step)?, device)?;
        let (mean_z, profiles) = tch::no_grad(|| training_stats(&m, ds, &train_frames, &edges))?;
        if need_rollout {
            bar.set_message(format!("step {final_step}: rollouts with heads ablated"));
            let trajs: Vec<usize> = traj_ids.iter().copied().take(opts.rollouts).collect();
            let r = tch::no_grad(|| rollouts(&m, ds, &trajs, &targets, &kinds, &mean_z, &profiles, opts))?;
            ab.rollout = Some(RolloutResults { step: final_step, ..r });
            write_ablation(&out, &ab)?;
            bar.inc(1);
        }
        if need_patch {
            bar.set_message(format!("step {final_step}: activation patching"));
            let p = tch::no_grad(|| patching(&m, ds, &frames, &contacts, opts))?;
            ab.patching = Some(PatchingResults { step: final_step, ..p });
            write_ablation(&out, &ab)?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    tracing::info!("ablated {} checkpoint(s) in {seconds:.1}s into {}", done.len(), out.display());
    Ok(AblateSummary { path: out, done, skipped, seconds })
}

/// One checkpoint's one-step effects of every (target, kind).
#[allow(clippy::too_many_arguments)]
fn onestep_step(
    m: &Model,
    ds: &Dataset,
    frames: &[(usize, usize)],
    contacts: &[&ContactSet],
    train_frames: &[(usize, usize)],
    edges: &[f32],
    targets: &[Target],
    kinds: &[Kind],
    boot: &Bootstrap,
    seed: u64,
    dt: f32,
) -> Result<AblationStep> {
    let (nl, nh) = (m.config.n_layers, m.config.n_heads);
    let (n, dim) = (ds.n_particles, ds.dim());
    let b = batch(m, ds, frames)?;
    let (mean_z, profiles) = training_stats(m, ds, train_frames, edges)?;
    let (pred0, cache) = intact_cache(m, &b.x)?;
    let intact = sums_of(m, &pred0, &b, contacts, dim)?;
    let perm = Tensor::from_slice(&derangement(frames.len(), seed)).to(m.device());
    let resample_z = (0..nl).map(|l| Ok(z_of(&cache, l)?.index_select(0, &perm))).collect::<Result<Vec<_>>>()?;
    let (pos, vel, rad) = (host(&b.state.pos)?, host(&b.state.vel)?, host(&b.state.radii)?);
    let weights = weights_for(kinds, nl, nh, &profiles, &pos, &vel, &rad, Some(contacts), n, dim, dt, m.device());
    let ctx = AblCtx { mean_z, resample_z, weights };
    let mut sums: HashMap<(usize, Kind), Vec<FrameSums>> = HashMap::new();
    for (t, tg) in targets.iter().enumerate() {
        for &k in kinds {
            let mut hooks = ablation_hooks(tg, k, &ctx);
            let pred = m.run_with_hooks(&b.x, &mut hooks)?;
            sums.insert((t, k), sums_of(m, &pred, &b, contacts, dim)?);
        }
    }
    let mut onestep: BTreeMap<String, Vec<f64>> = ONESTEP_METRICS.iter().map(|m| (m.to_string(), Vec::new())).collect();
    for t in 0..targets.len() {
        for &k in kinds {
            let off = if k.is_pattern() && k != Kind::OffSelf {
                sums.get(&(t, Kind::OffSelf)).map(|v| v.as_slice())
            } else {
                None
            };
            let eff = onestep_effects(boot, &intact, &sums[&(t, k)], off);
            for mname in ONESTEP_METRICS {
                let e = eff.get(mname).copied().unwrap_or(Est::NAN);
                if let Some(v) = onestep.get_mut(mname) {
                    v.extend(e.to_array());
                }
            }
        }
    }
    let intact_e =
        intact_errors(boot, &intact).into_iter().map(|(k, e)| (k.to_string(), e.to_array().to_vec())).collect();
    Ok(AblationStep { step: 0, onestep, intact: intact_e })
}

/// Rollouts from frame 0 of `trajs`, intact and with each kind applied to
/// the collision heads, each layer and the group (every head when there is
/// no group); oracle is not run (a predicted state has no true contact
/// partners). Others are NaN.
#[allow(clippy::too_many_arguments)]
fn rollouts(
    m: &Model,
    ds: &Dataset,
    trajs: &[usize],
    targets: &[Target],
    kinds: &[Kind],
    mean_z: &[Tensor],
    profiles: &[GeoProfile],
    opts: &AblateOptions,
) -> Result<RolloutResults> {
    let group = targets.iter().find(|t| t.name == "collision");
    let dt = ds.frame_dt() as f32;
    let horizon = ROLLOUT_HORIZONS.iter().copied().max().unwrap_or(0).min(ds.n_frames.saturating_sub(1));
    let r = trajs.len();
    let truth: Vec<Tensor> = ROLLOUT_HORIZONS
        .iter()
        .map(|&h| {
            State::from_dataset(ds, &trajs.iter().map(|&t| (t, h.min(ds.n_frames - 1))).collect::<Vec<_>>(), m.device())
                .pos
        })
        .collect();
    // Per-rollout squared position error at each horizon ([H][R]; NaN past the data).
    let run = |target: Option<(&Target, Kind)>| -> Result<Vec<Vec<f64>>> {
        let mut st = State::from_dataset(ds, &trajs.iter().map(|&t| (t, 0)).collect::<Vec<_>>(), m.device());
        let mut errs = vec![vec![f64::NAN; r]; ROLLOUT_HORIZONS.len()];
        for s in 1..=horizon {
            st = ablated_step(m, &st, target, mean_z, profiles, opts.seed ^ s as u64, dt)?;
            for (hi, &h) in ROLLOUT_HORIZONS.iter().enumerate() {
                if h == s {
                    let e = (&st.pos - &truth[hi]).square().mean_dim([1i64, 2].as_slice(), false, TKind::Double);
                    errs[hi] = Vec::<f64>::try_from(&e.to_device(Device::Cpu))?;
                }
            }
        }
        Ok(errs)
    };
    let intact = run(None)?;
    let rboot = Bootstrap::new(&(0..r).collect::<Vec<_>>(), opts.bootstrap, opts.seed ^ 0x9011);
    let mut metrics: BTreeMap<String, Vec<f64>> = ROLLOUT_METRICS.iter().map(|m| (m.to_string(), Vec::new())).collect();
    for tg in targets {
        // The collision heads, the layers and the group (all heads when there is no group).
        let wanted = match group {
            Some(g) => tg.heads.len() > 1 || tg.heads.first().is_some_and(|h| g.heads.contains(h)),
            None => true,
        };
        for &k in kinds {
            let errs = if k == Kind::Oracle || !wanted { None } else { Some(run(Some((tg, k)))?) };
            for (hi, mname) in ROLLOUT_METRICS.iter().enumerate() {
                let e = match &errs {
                    Some(e) if intact[hi].iter().all(|v| v.is_finite()) => {
                        rboot.estimate(|w| headlab_analysis::ablation::weighted_ratio(w, &e[hi], &intact[hi]))
                    }
                    _ => Est::NAN,
                };
                if let Some(v) = metrics.get_mut(*mname) {
                    v.extend(e.to_array());
                }
            }
        }
    }
    let intact_est: Vec<f64> = (0..ROLLOUT_HORIZONS.len())
        .flat_map(|hi| {
            rboot.estimate(|w| headlab_analysis::ablation::weighted_ratio(w, &intact[hi], &vec![1.0; r])).to_array()
        })
        .collect();
    Ok(RolloutResults { step: 0, n_rollouts: r, metrics, intact: intact_est })
}

/// One rollout step of a batch of states with `target` ablated by `kind`
/// (`None`: intact). Resample takes hook_z from another state of the batch
/// (the intact model on it); geometry patterns are built from the current state.
fn ablated_step(
    m: &Model,
    st: &State,
    target: Option<(&Target, Kind)>,
    mean_z: &[Tensor],
    profiles: &[GeoProfile],
    seed: u64,
    dt: f32,
) -> Result<State> {
    let (nl, nh) = (m.config.n_layers, m.config.n_heads);
    let dim = m.norm.dimension;
    let sz = st.pos.size();
    let (r, n) = (sz[0] as usize, sz[1] as usize);
    let x = m.norm.features(st);
    let y = match target {
        None => m.forward(&x)?,
        Some((_, Kind::Oracle)) => {
            return Err(run_err(
                Path::new("<rollout>"),
                "the oracle pattern needs the true contact partners, which a predicted state does not have",
            ))
        }
        Some((tg, k)) => {
            let resample_z = if k == Kind::Resample {
                let (_, cache) = m.run_with_cache(&x, |n| n.ends_with("attn.hook_z"))?;
                let perm = Tensor::from_slice(&derangement(r, seed)).to(m.device());
                (0..nl).map(|l| Ok(z_of(&cache, l)?.index_select(0, &perm))).collect::<Result<Vec<_>>>()?
            } else {
                vec![]
            };
            let weights = if matches!(k, Kind::GeoDistance | Kind::GeoApproach) {
                weights_for(
                    &[k],
                    nl,
                    nh,
                    profiles,
                    &host(&st.pos)?,
                    &host(&st.vel)?,
                    &host(&st.radii)?,
                    None,
                    n,
                    dim,
                    dt,
                    m.device(),
                )
            } else {
                HashMap::new()
            };
            let ctx = AblCtx { mean_z: mean_z.iter().map(|t| t.shallow_clone()).collect(), resample_z, weights };
            let mut hooks = ablation_hooks(tg, k, &ctx);
            m.run_with_hooks(&x, &mut hooks)?
        }
    };
    let y = m.norm.denormalize(&y);
    let d = dim as i64;
    Ok(State {
        pos: &st.pos + y.narrow(-1, 0, d),
        vel: &st.vel + y.narrow(-1, d, d),
        radii: st.radii.shallow_clone(),
        masses: st.masses.shallow_clone(),
    })
}

/// A rollout of checkpoint `step` from frame 0 of `trajs` over `horizon`
/// frames with `kind` applied to `target` (for `headlab eval --ablate`):
/// positions and velocities [traj, frame, n, d] (frame 0 = the data) and the
/// mean squared position error against the data at each frame. Mean and
/// geometry kinds use 256 training frames (not from the validation set).
#[allow(clippy::too_many_arguments)]
pub fn ablated_rollout(
    run_dir: &Path,
    step: u64,
    ds: &Dataset,
    trajs: &[usize],
    horizon: usize,
    target: &Target,
    kind: Kind,
    device: headlab_model::DeviceSpec,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f64>)> {
    let m = Model::load(&headlab_store::checkpoint::checkpoint_path(run_dir, step), device.resolve()?)?;
    let (n, dim) = (ds.n_particles, ds.dim());
    for &(l, h) in &target.heads {
        if l >= m.config.n_layers || h >= m.config.n_heads {
            return Err(ProbeError::Config {
                key: "ablate".into(),
                value: target.name.clone(),
                hint: format!("the model has {} layers × {} heads", m.config.n_layers, m.config.n_heads),
            });
        }
    }
    let val = crate::run::eval_trajectories(run_dir, ds)?;
    let mut train_frames: Vec<(usize, usize)> = (0..ds.n_traj)
        .filter(|t| !val.contains(t))
        .flat_map(|t| (0..ds.n_frames.saturating_sub(1)).map(move |f| (t, f)))
        .collect();
    if train_frames.is_empty() {
        train_frames = (0..ds.n_traj).flat_map(|t| (0..ds.n_frames.saturating_sub(1)).map(move |f| (t, f))).collect();
    }
    train_frames.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0x7A1));
    train_frames.truncate(256);
    let horizon = horizon.min(ds.n_frames.saturating_sub(1));
    let dt = ds.frame_dt() as f32;
    tch::no_grad(|| {
        let (mean_z, profiles) = training_stats(&m, ds, &train_frames, &headlab_analysis::metrics::default_g_edges())?;
        let b = trajs.len();
        let frames = horizon + 1;
        let mut positions = vec![0f32; b * frames * n * dim];
        let mut velocities = vec![0f32; b * frames * n * dim];
        let mut mse = Vec::with_capacity(frames);
        let mut st = State::from_dataset(ds, &trajs.iter().map(|&t| (t, 0)).collect::<Vec<_>>(), m.device());
        for f in 0..frames {
            if f > 0 {
                st = ablated_step(&m, &st, Some((target, kind)), &mean_z, &profiles, f as u64, dt)?;
            }
            let truth = State::from_dataset(ds, &trajs.iter().map(|&t| (t, f)).collect::<Vec<_>>(), m.device());
            mse.push((&st.pos - &truth.pos).square().mean(TKind::Double).double_value(&[]));
            let (p, v) = (host(&st.pos)?, host(&st.vel)?);
            for t in 0..b {
                let dst = (t * frames + f) * n * dim;
                positions[dst..dst + n * dim].copy_from_slice(&p[t * n * dim..(t + 1) * n * dim]);
                velocities[dst..dst + n * dim].copy_from_slice(&v[t * n * dim..(t + 1) * n * dim]);
            }
        }
        Ok((positions, velocities, mse))
    })
}

/// Activation patching on counterfactual pairs (see `move_out_of_reach`):
/// for every head (hook_z at the query) and every layer's residual stream
/// (hook_resid_post at the query), the share of the clean − corrupted
/// difference in the query's predicted Δv that patching restores
/// (denoising) or destroys (noising): Σ (p − k)·(c − k) / Σ |c − k|² over
/// pairs, with a bootstrap CI over pairs.
fn patching(
    m: &Model,
    ds: &Dataset,
    frames: &[(usize, usize)],
    contacts: &[&ContactSet],
    opts: &AblateOptions,
) -> Result<PatchingResults> {
    let (nl, nh) = (m.config.n_layers, m.config.n_heads);
    let (n, dim) = (ds.n_particles, ds.dim());
    let dt = ds.frame_dt() as f32;
    let owned: Vec<ContactSet> = contacts.iter().map(|c| (*c).clone()).collect();
    let cand = choose_pairs(&owned, opts.patch_pairs, opts.seed);
    // Build the corrupted positions; drop pairs without a free spot.
    let mut pairs = Vec::new();
    let mut corrupt_pos = Vec::new();
    for &(f, i, j) in &cand {
        let (t, fr) = frames[f];
        let k = ds.idx(t, fr, 0);
        let pos = &ds.positions[k..k + n * dim];
        let vel = &ds.velocities[k..k + n * dim];
        let radii = &ds.radii[t * n..(t + 1) * n];
        if let Some(p) = move_out_of_reach(pos, vel, radii, dim, &ds.meta.box_size, j, dt, 48) {
            pairs.push((f, i, j));
            corrupt_pos.extend(p);
        }
    }
    let sites: Vec<String> = (0..nl)
        .flat_map(|l| (0..nh).map(move |h| format!("L{l}.H{h}")))
        .chain((0..nl).map(|l| format!("L{l}.resid")))
        .collect();
    if pairs.is_empty() {
        tracing::warn!("no counterfactual pairs (no contacts in the evaluation frames, or no free spot to move a partner to): patching not measured");
        return Ok(PatchingResults {
            step: 0,
            n_pairs: 0,
            sites: sites.clone(),
            denoise: vec![f64::NAN; sites.len() * 3],
            noise: vec![f64::NAN; sites.len() * 3],
            median_gap: f64::NAN,
            median_true_dv: f64::NAN,
        });
    }
    let p = pairs.len() as i64;
    let fr: Vec<(usize, usize)> = pairs.iter().map(|&(f, _, _)| frames[f]).collect();
    let clean_st = State::from_dataset(ds, &fr, m.device());
    let corrupt_st = State {
        pos: Tensor::from_slice(&corrupt_pos).view([p, n as i64, dim as i64]).to(m.device()),
        vel: clean_st.vel.shallow_clone(),
        radii: clean_st.radii.shallow_clone(),
        masses: clean_st.masses.shallow_clone(),
    };
    let (xc, xk) = (m.norm.features(&clean_st), m.norm.features(&corrupt_st));
    let (yc, cc) = intact_cache(m, &xc)?;
    let (yk, ck) = intact_cache(m, &xk)?;
    let q: Vec<i64> = pairs.iter().map(|&(_, i, _)| i as i64).collect();
    let mut mask = vec![0f32; pairs.len() * n];
    for (b, &i) in q.iter().enumerate() {
        mask[b * n + i as usize] = 1.0;
    }
    let mask = Tensor::from_slice(&mask).view([p, n as i64]).to(m.device());
    let d = dim as i64;
    // The query's predicted Δv (physical) per pair: [P][D].
    let dv_q = |y: &Tensor| -> Result<Vec<Vec<f32>>> {
        let v = host(&m.norm.denormalize(y).narrow(-1, d, d))?;
        Ok(pairs
            .iter()
            .enumerate()
            .map(|(b, &(_, i, _))| v[(b * n + i) * dim..(b * n + i + 1) * dim].to_vec())
            .collect())
    };
    let (vc, vk) = (dv_q(&yc)?, dv_q(&yk)?);
    let gaps: Vec<f64> = vc
        .iter()
        .zip(&vk)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt())
        .collect();
    let true_dv: Vec<f64> = pairs
        .iter()
        .map(|&(f, i, _)| {
            let (t, fr) = frames[f];
            let (a, b) = (ds.idx(t, fr, i), ds.idx(t, fr + 1, i));
            (0..dim).map(|x| ((ds.velocities[b + x] - ds.velocities[a + x]) as f64).powi(2)).sum::<f64>().sqrt()
        })
        .collect();
    // Patch `site` from `src` cache into a run on `x`.
    let patched = |x: &Tensor, src: &headlab_model::ActivationCache, site: &str| -> Result<Vec<Vec<f32>>> {
        let mut hooks = Hooks::new();
        if let Some((l, rest)) = site.strip_prefix('L').and_then(|s| s.split_once('.')) {
            let l: usize = l.parse().map_err(|_| run_err(Path::new(site), "bad site"))?;
            if rest == "resid" {
                let s = src.require(&format!("blocks.{l}.hook_resid_post"))?.shallow_clone();
                let mk = mask.unsqueeze(-1);
                hooks.add(format!("blocks.{l}.hook_resid_post"), move |t, _| Ok(t * (mk.ones_like() - &mk) + &s * &mk));
            } else {
                let h: i64 = rest.trim_start_matches('H').parse().map_err(|_| run_err(Path::new(site), "bad site"))?;
                let s = src.require(&format!("blocks.{l}.attn.hook_z"))?.shallow_clone();
                let hm = Tensor::zeros([nh as i64], (TKind::Float, m.device()));
                let _ = hm.get(h).fill_(1.0);
                let mk = mask.view([p, n as i64, 1, 1]) * hm.view([1, 1, nh as i64, 1]);
                hooks.add(format!("blocks.{l}.attn.hook_z"), move |t, _| Ok(t * (mk.ones_like() - &mk) + &s * &mk));
            }
        }
        dv_q(&m.run_with_hooks(x, &mut hooks)?)
    };
    // Shares of the summed squared difference (pairs weighted by |c − k|²: a
    // mean of per-pair fractions is dominated by pairs whose difference is tiny).
    let pboot = Bootstrap::new(&(0..pairs.len()).collect::<Vec<_>>(), opts.bootstrap, opts.seed ^ 0x9A7C);
    let den: Vec<f64> = gaps.iter().map(|g| g * g).collect();
    let mut denoise = Vec::new();
    let mut noise = Vec::new();
    for site in &sites {
        let pd = patched(&xk, &cc, site)?;
        let pn = patched(&xc, &ck, site)?;
        // recovery · |c − k|² = (p − k)·(c − k)
        let nd: Vec<f64> =
            (0..pairs.len()).map(|b| recovery(&vc[b], &vk[b], &pd[b]).map(|r| r * den[b]).unwrap_or(0.0)).collect();
        let nn: Vec<f64> = (0..pairs.len())
            .map(|b| recovery(&vc[b], &vk[b], &pn[b]).map(|r| (1.0 - r) * den[b]).unwrap_or(0.0))
            .collect();
        denoise.extend(pboot.estimate(|w| headlab_analysis::ablation::weighted_ratio(w, &nd, &den)).to_array());
        noise.extend(pboot.estimate(|w| headlab_analysis::ablation::weighted_ratio(w, &nn, &den)).to_array());
    }
    let median = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        if s.is_empty() {
            f64::NAN
        } else {
            s[s.len() / 2]
        }
    };
    Ok(PatchingResults {
        step: 0,
        n_pairs: pairs.len(),
        sites,
        denoise,
        noise,
        median_gap: median(&gaps),
        median_true_dv: median(&true_dv),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use headlab_model::{ModelConfig, Normalization};

    fn model() -> Model {
        let cfg = ModelConfig::default();
        let d = 2;
        let f = cfg.d_in(d);
        let norm = Normalization {
            dimension: d,
            box_size: vec![2.0; d],
            wall_range: 0.3,
            wall_features: cfg.wall_features,
            input_mean: vec![0.5; f],
            input_std: vec![0.7; f],
            target_mean: vec![0.0; 2 * d],
            target_std: vec![1.0; 2 * d],
        };
        Model::new(cfg, norm, 3, Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn pattern_ablations_do_what_they_say() {
        let m = model();
        let (b, n) = (3i64, 5i64);
        tch::manual_seed(1);
        let x = Tensor::randn([b, n, m.config.d_in(2) as i64], (TKind::Float, Device::Cpu));
        let (_, cache) = m.run_with_cache(&x, |s| s.ends_with("hook_pattern")).unwrap();
        let orig = cache.pattern(1).unwrap().shallow_clone(); // [B, H, N, N]
        let target = Target { name: "L1.H2".into(), heads: vec![(1, 2)] };
        // Off-self: the head attends only to itself; the other heads are untouched.
        let ctx = AblCtx { mean_z: vec![], resample_z: vec![], weights: HashMap::new() };
        let mut hooks = ablation_hooks(&target, Kind::OffSelf, &ctx);
        hooks.record(|s| s == "blocks.1.attn.hook_pattern");
        let _ = m.run_with_hooks(&x, &mut hooks).unwrap();
        let got = hooks.take_cache().pattern(1).unwrap().shallow_clone();
        assert_eq!(
            max_diff(&got.select(1, 2), &Tensor::eye(n, (TKind::Float, Device::Cpu)).expand([b, n, n], false)),
            0.0
        );
        for h in [0, 1, 3] {
            assert_eq!(max_diff(&got.select(1, h), &orig.select(1, h)), 0.0);
        }
        // A replacement: a_ii kept, off-self mass (1 − a_ii) spread by W;
        // a row of W that is all zero (an oracle query without partner) keeps the head's row.
        let mut w = vec![0f32; (b * n * n) as usize];
        for f in 0..b as usize {
            for i in 1..n as usize {
                let j = (i + 1) % n as usize;
                w[(f * n as usize + i) * n as usize + j] = 1.0;
            }
        }
        let wt = Tensor::from_slice(&w).view([b, n, n]);
        let mut weights = HashMap::new();
        weights.insert((Kind::Oracle, 0, usize::MAX), wt.shallow_clone());
        let ctx = AblCtx { mean_z: vec![], resample_z: vec![], weights };
        let mut hooks = ablation_hooks(&target, Kind::Oracle, &ctx);
        hooks.record(|s| s == "blocks.1.attn.hook_pattern");
        let _ = m.run_with_hooks(&x, &mut hooks).unwrap();
        let got = hooks.take_cache().pattern(1).unwrap().select(1, 2);
        let o = orig.select(1, 2);
        let (gv, ov) =
            (Vec::<f32>::try_from(got.reshape([-1])).unwrap(), Vec::<f32>::try_from(o.reshape([-1])).unwrap());
        let nn = n as usize;
        for f in 0..b as usize {
            for i in 0..nn {
                let row = |v: &[f32]| v[(f * nn + i) * nn..(f * nn + i + 1) * nn].to_vec();
                let (g, or) = (row(&gv), row(&ov));
                if i == 0 {
                    assert_eq!(g, or, "a query without weights keeps its row");
                    continue;
                }
                let j = (i + 1) % nn;
                assert!((g[i] - or[i]).abs() < 1e-6, "a_ii kept");
                assert!((g[j] - (1.0 - or[i])).abs() < 1e-6, "off-self mass moved to the partner");
                assert!((g.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn z_ablations_replace_only_the_head() {
        let m = model();
        let (b, n) = (4i64, 5i64);
        tch::manual_seed(2);
        let x = Tensor::randn([b, n, m.config.d_in(2) as i64], (TKind::Float, Device::Cpu));
        let (_, cache) = m.run_with_cache(&x, |s| s.ends_with("hook_z")).unwrap();
        let z0 = z_of(&cache, 0).unwrap(); // [B, N, H, dh]
        let target = Target { name: "L0.H1".into(), heads: vec![(0, 1)] };
        let perm = Tensor::from_slice(&derangement(b as usize, 5));
        let mean = Tensor::randn([m.config.n_heads as i64, z0.size()[3]], (TKind::Float, Device::Cpu));
        let ctx = AblCtx {
            mean_z: vec![mean.shallow_clone(), mean.shallow_clone()],
            resample_z: vec![z0.index_select(0, &perm), z0.index_select(0, &perm)],
            weights: HashMap::new(),
        };
        for (k, want) in [
            (Kind::Zero, z0.select(2, 1).zeros_like()),
            (Kind::Mean, mean.get(1).expand([b, n, z0.size()[3]], false)),
            (Kind::Resample, z0.index_select(0, &perm).select(2, 1)),
        ] {
            let mut hooks = ablation_hooks(&target, k, &ctx);
            hooks.record(|s| s == "blocks.0.attn.hook_z");
            let _ = m.run_with_hooks(&x, &mut hooks).unwrap();
            let got = hooks.take_cache().require("blocks.0.attn.hook_z").unwrap().shallow_clone();
            assert_eq!(max_diff(&got.select(2, 1), &want), 0.0, "{k:?}");
            for h in [0, 2, 3] {
                assert_eq!(max_diff(&got.select(2, h), &z0.select(2, h)), 0.0, "{k:?} touched head {h}");
            }
        }
        // The derangement has no fixed point.
        let p = derangement(7, 3);
        assert!(p.iter().enumerate().all(|(i, &j)| i as i64 != j));
    }
}
