//! Running a scene: random initial conditions per trajectory (independent
//! ChaCha streams keyed by (seed, trajectory)), integration, frame recording,
//! and assembly of a [`Dataset`]. Trajectories run in parallel with rayon; the
//! result does not depend on the number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal};
use rayon::prelude::*;

use crate::dataset::{Dataset, DatasetMeta, Event};
use crate::physics::{Params, World};
use crate::scene::{particle_mass, Resolved, Scene, SceneError, SpeedDist};

/// Attempts to place one particle before giving up.
pub const PLACEMENT_ATTEMPTS: usize = 20_000;

/// How much to simulate. [`SimOptions::from_scene`] takes the scene's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Number of trajectories.
    pub n_traj: usize,
    /// Recorded frames per trajectory (frame 0 is the initial state).
    pub n_frames: usize,
    /// Seed; trajectory t uses ChaCha8 stream t of it.
    pub seed: u64,
    /// Worker threads; 0 = rayon's default (all cores).
    pub threads: usize,
}

impl SimOptions {
    /// The scene's `trajectories`, `frames` and `seed`, all cores.
    pub fn from_scene(scene: &Scene) -> Self {
        SimOptions { n_traj: scene.trajectories, n_frames: scene.frames, seed: scene.seed, threads: 0 }
    }
}

/// A simulation that cannot run or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scene is invalid.
    #[error(transparent)]
    Scene(#[from] SceneError),
    /// Random placement found no room for a particle.
    #[error("trajectory {traj}: could not place particle {particle} (radius {radius}) without overlap after {attempts} attempts; the box is too full for random placement: use fewer or smaller particles or a bigger box_size")]
    Placement {
        /// Trajectory index.
        traj: usize,
        /// The particle that did not fit.
        particle: usize,
        /// Its radius.
        radius: f64,
        /// Placement attempts made.
        attempts: usize,
    },
    /// A non-finite or runaway state.
    #[error("trajectory {traj} became unstable at sub-step {step}: {what}. The contacts are too soft for these speeds (raise spring_k or lower the speeds) or the sub-step is too long (raise substeps_per_contact)")]
    Unstable {
        /// Trajectory index.
        traj: usize,
        /// Sub-step at which it was detected.
        step: u64,
        /// What was detected.
        what: String,
    },
    /// A bad option.
    #[error("`{key}` = {value} is not allowed; allowed: {allowed}")]
    Option {
        /// The option.
        key: String,
        /// Its value.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The thread pool could not start.
    #[error("cannot start {threads} worker threads: {message}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// What rayon said.
        message: String,
    },
}

/// Initial state of one trajectory (f64), reproducible from (seed, traj).
#[derive(Debug, Clone)]
pub struct InitialState {
    /// Positions, one vector per particle.
    pub x: Vec<Vec<f64>>,
    /// Velocities.
    pub v: Vec<Vec<f64>>,
    /// Radii.
    pub r: Vec<f64>,
    /// Masses.
    pub m: Vec<f64>,
}

/// The RNG of trajectory `traj`: ChaCha8 seeded by `seed`, stream `traj`.
pub fn traj_rng(seed: u64, traj: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(traj as u64);
    rng
}

/// Random non-overlapping placement and random velocities for one trajectory.
pub fn initial_state(scene: &Scene, res: &Resolved, seed: u64, traj: usize) -> Result<InitialState, SimError> {
    let d = res.dimension;
    let n = scene.n_particles;
    let mut rng = traj_rng(seed, traj);
    let mut r: Vec<f64> =
        (0..n).map(|_| if res.r_max > res.r_min { rng.gen_range(res.r_min..res.r_max) } else { res.r_min }).collect();
    // Place the largest first: far more likely to succeed in a full box. The
    // particle indices keep the drawn order.
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by(|&a, &b| r[b].total_cmp(&r[a]).then(a.cmp(&b)));
    let mut x = vec![vec![0.0; d]; n];
    let mut placed: Vec<usize> = Vec::with_capacity(n);
    // A coarse grid of already placed particles keeps placement O(N).
    let cell = 2.0 * res.r_max;
    let dims: Vec<usize> = res.box_size.iter().map(|l| ((l / cell).floor() as usize).clamp(1, 1 << 10)).collect();
    let cell_sizes: Vec<f64> = res.box_size.iter().zip(&dims).map(|(l, n)| l / *n as f64).collect();
    let n_cells: usize = dims.iter().product();
    let use_grid = n_cells <= 4 * n + 1024;
    let mut grid: Vec<Vec<usize>> = if use_grid { vec![Vec::new(); n_cells] } else { Vec::new() };
    let cell_of = |p: &[f64]| -> Vec<usize> {
        (0..d).map(|a| ((p[a] / cell_sizes[a]).floor().max(0.0) as usize).min(dims[a] - 1)).collect()
    };
    let flat = |c: &[usize]| c.iter().zip(&dims).rev().fold(0usize, |acc, (ci, ni)| acc * ni + ci);
    for &p in &by_size {
        let rp = r[p];
        let mut ok = false;
        for _ in 0..PLACEMENT_ATTEMPTS {
            let cand: Vec<f64> = (0..d).map(|a| rng.gen_range(rp..(res.box_size[a] - rp))).collect();
            let overlaps = |q: usize| {
                let d2: f64 = (0..d).map(|a| (cand[a] - x[q][a]).powi(2)).sum();
                let rs = rp + r[q];
                d2 <= rs * rs
            };
            let clash = if use_grid {
                let c = cell_of(&cand);
                let mut clash = false;
                'outer: for code in 0..3usize.pow(d as u32) {
                    let mut nc = vec![0usize; d];
                    let mut cc = code;
                    for a in 0..d {
                        let v = c[a] as isize + (cc % 3) as isize - 1;
                        cc /= 3;
                        if v < 0 || v >= dims[a] as isize {
                            continue 'outer;
                        }
                        nc[a] = v as usize;
                    }
                    if grid[flat(&nc)].iter().any(|&q| overlaps(q)) {
                        clash = true;
                        break;
                    }
                }
                clash
            } else {
                placed.iter().any(|&q| overlaps(q))
            };
            if !clash {
                x[p] = cand;
                ok = true;
                break;
            }
        }
        if !ok {
            return Err(SimError::Placement { traj, particle: p, radius: rp, attempts: PLACEMENT_ATTEMPTS });
        }
        placed.push(p);
        if use_grid {
            let c = cell_of(&x[p]);
            grid[flat(&c)].push(p);
        }
    }
    let mut v = vec![vec![0.0; d]; n];
    for vp in v.iter_mut() {
        let dir: Vec<f64> = loop {
            let g: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
            let norm = g.iter().map(|x: &f64| x * x).sum::<f64>().sqrt();
            if norm > 1e-9 {
                break g.iter().map(|x| x / norm).collect();
            }
        };
        let speed = match scene.speed {
            SpeedDist::Normal { mean, sd } => {
                if sd > 0.0 {
                    Normal::new(mean, sd)
                        .map_err(|e| SimError::Option {
                            key: "speed.sd".into(),
                            value: sd.to_string(),
                            allowed: e.to_string(),
                        })?
                        .sample(&mut rng)
                        .abs()
                } else {
                    mean
                }
            }
            SpeedDist::Uniform { min, max } => {
                if max > min {
                    rng.gen_range(min..=max)
                } else {
                    min
                }
            }
        };
        for a in 0..d {
            vp[a] = dir[a] * speed;
        }
    }
    let m = r.iter().map(|&ri| particle_mass(d, scene.density, ri)).collect();
    r.shrink_to_fit();
    Ok(InitialState { x, v, r, m })
}

/// Build the integrator for an initial state.
pub fn make_world<const D: usize>(scene: &Scene, res: &Resolved, init: &InitialState) -> World<D> {
    let mut box_size = [0.0; D];
    box_size.copy_from_slice(&res.box_size);
    let params =
        Params { box_size, gravity: scene.gravity, spring_k: scene.spring_k, damping: res.damping, dt: res.dt };
    let to_arr = |v: &Vec<f64>| {
        let mut a = [0.0; D];
        a.copy_from_slice(v);
        a
    };
    World::new(
        params,
        init.x.iter().map(to_arr).collect(),
        init.v.iter().map(to_arr).collect(),
        init.r.clone(),
        init.m.clone(),
    )
}

struct TrajOut {
    pos: Vec<f32>,
    vel: Vec<f32>,
    r: Vec<f32>,
    m: Vec<f32>,
    events: Vec<Event>,
}

fn run_traj<const D: usize>(
    scene: &Scene,
    res: &Resolved,
    opts: &SimOptions,
    traj: usize,
) -> Result<TrajOut, SimError> {
    let init = initial_state(scene, res, opts.seed, traj)?;
    let mut w: World<D> = make_world(scene, res, &init);
    let n = w.n();
    let mut pos = Vec::with_capacity(opts.n_frames * n * D);
    let mut vel = Vec::with_capacity(opts.n_frames * n * D);
    let mut events = Vec::new();
    let slack: f64 = init.r.iter().cloned().fold(0.0, f64::max);
    for f in 0..opts.n_frames {
        if f > 0 {
            for _ in 0..res.stride {
                w.step(traj as u32, &mut events);
            }
        }
        for p in 0..n {
            for a in 0..D {
                let xa = w.x[p][a];
                if !(xa.is_finite() && xa > -slack && xa < res.box_size[a] + slack && w.v[p][a].is_finite()) {
                    return Err(SimError::Unstable {
                        traj,
                        step: w.step,
                        what: format!("particle {p} is at coordinate {xa} on axis {a}, outside the box"),
                    });
                }
                pos.push(xa as f32);
                vel.push(w.v[p][a] as f32);
            }
        }
    }
    Ok(TrajOut {
        pos,
        vel,
        r: init.r.iter().map(|&x| x as f32).collect(),
        m: init.m.iter().map(|&x| x as f32).collect(),
        events,
    })
}

/// Simulate `opts.n_traj` trajectories of `scene`. `progress`, if given, is
/// called with the number of finished trajectories after each one.
pub fn simulate(
    scene: &Scene,
    opts: SimOptions,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<Dataset, SimError> {
    let res = scene.resolve("scene")?;
    let opt_err = |key: &str, value: usize, allowed: &str| SimError::Option {
        key: key.into(),
        value: value.to_string(),
        allowed: allowed.into(),
    };
    if opts.n_traj < 1 {
        return Err(opt_err("trajectories", opts.n_traj, ">= 1"));
    }
    if opts.n_frames < 2 {
        return Err(opt_err("frames", opts.n_frames, ">= 2 (at least one interval)"));
    }
    if opts.n_traj > u32::MAX as usize {
        return Err(opt_err("trajectories", opts.n_traj, "< 2^32"));
    }
    if opts.threads > crate::limits::MAX_THREADS {
        return Err(opt_err("threads", opts.threads, &format!("<= {} (0 = all cores)", crate::limits::MAX_THREADS)));
    }
    if opts.seed > i64::MAX as u64 {
        return Err(SimError::Option {
            key: "seed".into(),
            value: opts.seed.to_string(),
            allowed: "<= 2^63 - 1 (the largest integer a TOML file holds)".into(),
        });
    }
    // Positions and velocities (f32) are held twice while the dataset is
    // assembled: refuse sizes that cannot fit before hours of simulation.
    let bytes = crate::limits::product(&[opts.n_traj, opts.n_frames, scene.n_particles, res.dimension, 2, 4, 2]);
    crate::limits::check_fits(
        &format!("{} trajectories × {} frames × {} particles", opts.n_traj, opts.n_frames, scene.n_particles),
        bytes,
    )
    .map_err(|msg| SimError::Option {
        key: "trajectories × frames".into(),
        value: format!("{} × {}", opts.n_traj, opts.n_frames),
        allowed: format!("sizes that fit in memory: {msg}"),
    })?;
    let done = AtomicUsize::new(0);
    let one = |t: usize| -> Result<TrajOut, SimError> {
        let out = if res.dimension == 2 {
            run_traj::<2>(scene, &res, &opts, t)
        } else {
            run_traj::<3>(scene, &res, &opts, t)
        }?;
        let k = done.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(p) = progress {
            p(k);
        }
        Ok(out)
    };
    let run_all = || -> Result<Vec<TrajOut>, SimError> { (0..opts.n_traj).into_par_iter().map(one).collect() };
    let outs = if opts.threads > 0 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads)
            .build()
            .map_err(|e| SimError::Threads { threads: opts.threads, message: e.to_string() })?;
        pool.install(run_all)?
    } else {
        run_all()?
    };
    let n = scene.n_particles;
    let mut ds = Dataset {
        n_traj: opts.n_traj,
        n_frames: opts.n_frames,
        n_particles: n,
        meta: DatasetMeta {
            dt: res.dt,
            stride: res.stride,
            dimension: res.dimension,
            box_size: res.box_size.clone(),
            gravity: scene.gravity,
            spring_k: scene.spring_k,
            damping: res.typical_c,
            restitution: res.restitution,
            contact_time: res.contact_time,
            seed: opts.seed,
            scene_toml: {
                let mut s = scene.clone();
                s.trajectories = opts.n_traj;
                s.frames = opts.n_frames;
                s.seed = opts.seed;
                s.to_toml()?
            },
        },
        positions: Vec::with_capacity(opts.n_traj * opts.n_frames * n * res.dimension),
        velocities: Vec::with_capacity(opts.n_traj * opts.n_frames * n * res.dimension),
        radii: Vec::with_capacity(opts.n_traj * n),
        masses: Vec::with_capacity(opts.n_traj * n),
        events: Vec::new(),
    };
    for o in outs {
        ds.positions.extend_from_slice(&o.pos);
        ds.velocities.extend_from_slice(&o.vel);
        ds.radii.extend_from_slice(&o.r);
        ds.masses.extend_from_slice(&o.m);
        ds.events.extend_from_slice(&o.events);
    }
    ds.events.sort_unstable();
    tracing::info!(
        trajectories = ds.n_traj,
        frames = ds.n_frames,
        particles = n,
        events = ds.events.len(),
        dt = res.dt,
        stride = res.stride,
        "simulated"
    );
    Ok(ds)
}
