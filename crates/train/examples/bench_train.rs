//! Training-loop throughput of headlab (the same step as `headlab train`),
//! for tools/bench-train, which runs the PyTorch eager equivalent beside it.
//!   bench_train simulate SCENE.toml OUT.h5
//!   bench_train run DATA.h5 D_MODEL N_LAYERS N_HEADS BATCH THREADS STEPS DEVICE
//! prints one JSON line: {"impl":"headlab", ..., "steps_per_s": X, "steps_per_cpu_s": Y}
//! (wall-clock and process CPU time, all threads; like tools/bench_train.py).
// A benchmark/demo program: failing fast with a panic is its error handling.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::Path;

use headlab_train::*;
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some("simulate") {
        let scene = headlab_sim::scene::Scene::from_file(Path::new(&a[2]))?;
        let ds = headlab_sim::simulate(&scene, headlab_sim::SimOptions::from_scene(&scene), None)?;
        headlab_store::dataset::write_dataset(Path::new(&a[3]), &ds)?;
        return Ok(());
    }
    let ds = headlab_store::dataset::read_dataset(Path::new(&a[2]))?;
    let p = |i: usize| a[i].parse::<usize>().expect("number");
    let (d_model, n_layers, n_heads, batch, threads, steps) = (p(3), p(4), p(5), p(6), p(7), p(8) as u64);
    let mut cfg =
        TrainConfig { batch_size: batch, threads, steps: steps + 20, device: a[9].parse()?, ..Default::default() };
    cfg.model.d_model = d_model;
    cfg.model.n_layers = n_layers;
    cfg.model.n_heads = n_heads;
    set_threads(threads);
    let device = cfg.device.resolve()?;
    let (tr, va) = split_trajectories(ds.n_traj, cfg.val_fraction, cfg.seed)?;
    let data = TrainData::new(&ds, tr, va, None, true, device)?;
    let model = headlab_model::Model::new(cfg.model.clone(), data.norm.clone(), 0, device)?;
    let mut opt = Optimizer::new(cfg.optimizer.clone(), &model);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut replicas = if std::env::var_os("HEADLAB_NO_SHARDS").is_some() {
        Vec::new()
    } else {
        shard_replicas(&cfg, &model, threads)?
    };
    let mut last = 0.0;
    for s in 0..20 {
        last = train_step_with(&cfg, &model, &mut replicas, &mut opt, &data, &mut rng, cfg.lr_at(s))?.0;
    }
    let (t, c) = (std::time::Instant::now(), cpu_seconds());
    for s in 20..20 + steps {
        last = train_step_with(&cfg, &model, &mut replicas, &mut opt, &data, &mut rng, cfg.lr_at(s))?.0;
    }
    if let tch::Device::Cuda(_) = device {
        tch::Cuda::synchronize(0);
    }
    let (dt, dc) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    println!(
        "{{\"impl\": \"headlab\", \"d_model\": {d_model}, \"n_layers\": {n_layers}, \"batch\": {batch}, \"threads\": {threads}, \"params\": {}, \"steps\": {steps}, \"steps_per_s\": {:.2}, \"steps_per_cpu_s\": {:.2}, \"final_loss\": {last:.5}}}",
        model.num_params(),
        steps as f64 / dt,
        steps as f64 / dc.max(1e-9)
    );
    Ok(())
}

/// CPU time of this process (all threads), in seconds.
fn cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on 64-bit Linux) into `ts`.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc == 0 {
        ts.sec as f64 + ts.nsec as f64 * 1e-9
    } else {
        f64::NAN
    }
}
