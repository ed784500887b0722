//! headlab-testkit: fixtures for the tests and benchmarks of the other
//! crates, used only as a dev-dependency (never part of a library's API).
//!
//! [`toy_dataset`] is a tiny self-contained particle dataset for tests that
//! must not depend on the simulator: disks in a 2D box under gravity with
//! undamped linear-spring contacts (pairs and walls), semi-implicit Euler,
//! O(N²) contacts. Not a substitute for `headlab simulate`. With the `train`
//! feature, [`tiny_train_config`] is a training config small enough to run
//! on it in a test.

use headlab_sim::{Dataset, DatasetMeta};
use rand::{Rng, SeedableRng};

/// `n_traj` trajectories of `n_frames` frames of `n` disks, from `seed`.
pub fn toy_dataset(n_traj: usize, n_frames: usize, n: usize, seed: u64) -> Dataset {
    let (d, l, r, g, k, dt, stride) = (2usize, 1.0f64, 0.06f64, 1.0f64, 2000.0f64, 1e-3f64, 10u64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut positions = Vec::with_capacity(n_traj * n_frames * n * d);
    let mut velocities = Vec::with_capacity(positions.capacity());
    for _ in 0..n_traj {
        // Place on a jittered grid so nothing overlaps.
        let side = (n as f64).sqrt().ceil() as usize;
        let cell = l / side as f64;
        let mut x: Vec<f64> = Vec::with_capacity(n * d);
        for p in 0..n {
            let (i, j) = (p % side, p / side);
            x.push((i as f64 + 0.5) * cell + rng.gen_range(-0.1..0.1) * cell);
            x.push((j as f64 + 0.5) * cell + rng.gen_range(-0.1..0.1) * cell);
        }
        let mut v: Vec<f64> = (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        for f in 0..n_frames {
            if f > 0 {
                for _ in 0..stride {
                    let mut a = vec![0.0; n * d];
                    for p in 0..n {
                        a[p * d + 1] -= g;
                        for ax in 0..d {
                            let lo = r - x[p * d + ax];
                            if lo > 0.0 {
                                a[p * d + ax] += k * lo;
                            }
                            let hi = x[p * d + ax] + r - l;
                            if hi > 0.0 {
                                a[p * d + ax] -= k * hi;
                            }
                        }
                        for q in p + 1..n {
                            let dx = x[p * d] - x[q * d];
                            let dy = x[p * d + 1] - x[q * d + 1];
                            let dist = (dx * dx + dy * dy).sqrt();
                            let ov = 2.0 * r - dist;
                            if ov > 0.0 && dist > 1e-12 {
                                let (fx, fy) = (k * ov * dx / dist, k * ov * dy / dist);
                                a[p * d] += fx;
                                a[p * d + 1] += fy;
                                a[q * d] -= fx;
                                a[q * d + 1] -= fy;
                            }
                        }
                    }
                    for i in 0..n * d {
                        v[i] += dt * a[i];
                        x[i] += dt * v[i];
                    }
                }
            }
            positions.extend(x.iter().map(|&z| z as f32));
            velocities.extend(v.iter().map(|&z| z as f32));
        }
    }
    Dataset {
        n_traj,
        n_frames,
        n_particles: n,
        meta: DatasetMeta {
            dt,
            stride,
            dimension: d,
            box_size: vec![l; d],
            gravity: g,
            spring_k: k,
            damping: 0.0,
            restitution: f64::NAN,
            contact_time: std::f64::consts::PI * (0.5f64 / k).sqrt(),
            seed,
            scene_toml: "# headlab_testkit::toy_dataset\n".into(),
        },
        positions,
        velocities,
        radii: vec![r as f32; n_traj * n],
        masses: vec![1.0; n_traj * n],
        events: vec![],
    }
}

/// A training config small enough for tests on `toy_dataset`: 30 steps of
/// batch 8 on the CPU, one thread, a 2-head d_model 16 model, `checkpoints`
/// checkpoints with the dense band at steps 5–20.
#[cfg(feature = "train")]
pub fn tiny_train_config(checkpoints: usize) -> headlab_train::TrainConfig {
    let mut cfg = headlab_train::TrainConfig {
        steps: 30,
        batch_size: 8,
        eval_interval: 50,
        device: headlab_model::DeviceSpec::Cpu,
        threads: 1,
        val_fraction: 0.34,
        ..Default::default()
    };
    cfg.model.d_model = 16;
    cfg.model.n_heads = 2;
    cfg.checkpoints.count = checkpoints;
    cfg.checkpoints.dense_start = 5;
    cfg.checkpoints.dense_end = 20;
    cfg
}

/// A lock for the tests of one test binary that run libtorch and compare
/// results bit for bit: take it first and they run one at a time. libtorch's
/// thread count is process-wide: `train` sets it from the config, a sharded
/// training step and the LLC sampler set one thread per shard or chain and
/// restore the caller's. Run side by side, one test's pass could run with
/// another's thread count (seen: `tch::get_num_threads()` read 2 right after
/// a shard's pass set 1) and round its sums differently, which failed the
/// training tests' bit-for-bit comparisons depending on the harness's
/// pairing. One `headlab` process trains or samples one model at a time;
/// this is the test harness's concurrency.
pub fn libtorch_serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `$HEADLAB_PYTHON` (set by tools/setup.sh: the venv with torch, h5py and
/// numpy) for a test that runs a Python script. Unset: prints that `test` is
/// skipped and returns None, except under `CI=true`, where a skip would hide
/// the check, so it panics.
pub fn python_or_skip(test: &str) -> Option<String> {
    match std::env::var("HEADLAB_PYTHON") {
        Ok(python) => Some(python),
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but HEADLAB_PYTHON is not set: {test} cannot be skipped in CI (source tools/setup.sh)"
            );
            eprintln!("SKIPPED {test}: HEADLAB_PYTHON is not set (source tools/setup.sh to run it)");
            None
        }
    }
}
