//! Probe throughput: checkpoints probed per second and where the time goes,
//! at several particle counts. For each N it simulates a small scene like
//! scenes/demo.toml (the box grown with N to keep the packing fraction),
//! trains the demo model (2 layers × 4 heads, d_model 64) for a few steps
//! with C checkpoints, then probes the run and prints one JSON line per N
//! with the probe's timing breakdown (`headlab_probe::run::ProbeTiming`).
//!
//!   bench_probe OUT_DIR "16 64 256" CHECKPOINTS EVAL_FRAMES CACHE_FRAMES THREADS
// A benchmark/demo program: failing fast with a panic is its error handling.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::Path;
use std::time::Instant;

use headlab_probe::run::{probe_run, ProbeControl, ProbeOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 7 {
        eprintln!("usage: bench_probe OUT_DIR \"16 64 256\" CHECKPOINTS EVAL_FRAMES CACHE_FRAMES THREADS");
        std::process::exit(2);
    }
    let out = Path::new(&a[1]);
    let ns: Vec<usize> = a[2].split_whitespace().map(|t| t.parse()).collect::<Result<_, _>>()?;
    let (ckpts, eval_frames, cache_frames, threads): (usize, usize, usize, usize) =
        (a[3].parse()?, a[4].parse()?, a[5].parse()?, a[6].parse()?);
    for n in ns {
        let dir = out.join(format!("n{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let side = 0.75 * (n as f64 / 16.0).sqrt();
        let scene_toml = format!(
            "dimension = 2\nbox_size = {side}\nn_particles = {n}\nradius = [0.04, 0.07]\ndensity = 1.0\ngravity = 1.0\n\
             spring_k = 120.0\nrestitution = 0.8\nframe_interval_contact_times = 1.0\nsubsteps_per_contact = 20\n\
             trajectories = 12\nframes = 40\nseed = 0\n[speed]\ndistribution = \"normal\"\nmean = 1.5\nsd = 0.25\n"
        );
        let scene = headlab_sim::scene::Scene::from_toml_str(&scene_toml, "bench_probe")?;
        let ts = Instant::now();
        let ds = headlab_sim::simulate(&scene, headlab_sim::SimOptions::from_scene(&scene), None)?;
        let data_path = dir.join("data.h5");
        headlab_store::dataset::write_dataset(&data_path, &ds)?;
        let t_sim = ts.elapsed().as_secs_f64();
        let mut cfg = headlab_train::TrainConfig {
            steps: 20,
            batch_size: 8,
            device: headlab_model::DeviceSpec::Cpu,
            threads,
            val_fraction: 0.34,
            ..Default::default()
        };
        cfg.checkpoints.count = ckpts;
        cfg.checkpoints.dense_start = 2;
        cfg.checkpoints.dense_end = 18;
        let run = dir.join("run");
        let tt = Instant::now();
        headlab_train::train(&cfg, &ds, &run, &headlab_train::RunOptions::default())?;
        let t_train = tt.elapsed().as_secs_f64();
        let opts = ProbeOptions { eval_frames, cache_frames, ..Default::default() };
        let ctl =
            ProbeControl { device: headlab_model::DeviceSpec::Cpu, progress: false, threads, ..Default::default() };
        let tp = Instant::now();
        let s = probe_run(&run, &ds, &data_path, &opts, &ctl)?;
        let wall = tp.elapsed().as_secs_f64();
        let t = &s.timing;
        let per = |x: f64| x / s.probed.len().max(1) as f64;
        let size = std::fs::metadata(&s.analysis_path).map(|m| m.len()).unwrap_or(0);
        println!(
            "{{\"n\": {n}, \"checkpoints\": {}, \"eval_frames\": {}, \"cache_frames\": {cache_frames}, \"threads\": {threads}, \
             \"probe_s\": {wall:.3}, \"checkpoints_per_s\": {:.3}, \"setup_s\": {:.3}, \"per_checkpoint_s\": {{\"load\": {:.4}, \
             \"forward\": {:.4}, \"metrics\": {:.4}, \"controls\": {:.4}, \"cache\": {:.4}, \"write\": {:.4}}}, \
             \"analysis_bytes\": {size}, \"simulate_s\": {t_sim:.2}, \"train_s\": {t_train:.2}}}",
            s.probed.len(),
            s.n_eval_frames,
            s.probed.len() as f64 / (wall - t.setup).max(1e-9),
            t.setup,
            per(t.load),
            per(t.forward),
            per(t.metrics),
            per(t.controls),
            per(t.cache),
            per(t.write),
        );
    }
    Ok(())
}
