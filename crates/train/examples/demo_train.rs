//! Train on a simulated scene and print one-step and rollout figures.
//! Used to choose the default training config:
//!   cargo run -p headlab-train --example demo_train -- SCENE.toml [CONFIG.toml] [RUN_DIR]
// A benchmark/demo program: failing fast with a panic is its error handling.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let scene = headlab_sim::scene::Scene::from_file(std::path::Path::new(&args[1]))?;
    let ds = headlab_sim::simulate(&scene, headlab_sim::SimOptions::from_scene(&scene), None)?;
    eprintln!("dataset: {} traj x {} frames x {} particles", ds.n_traj, ds.n_frames, ds.n_particles);
    let mut cfg = match args.get(2).filter(|s| !s.is_empty()) {
        Some(p) => headlab_train::TrainConfig::load(std::path::Path::new(p))?,
        None => headlab_train::TrainConfig::default(),
    };
    if let Ok(s) = std::env::var("STEPS") {
        cfg.steps = s.parse()?;
    }
    let run = PathBuf::from(args.get(3).cloned().unwrap_or_else(|| "/tmp/demo_run".into()));
    let _ = std::fs::remove_dir_all(&run);
    let t = std::time::Instant::now();
    let s = headlab_train::train(&cfg, &ds, &run, &headlab_train::RunOptions { progress: true, ..Default::default() })?;
    eprintln!(
        "trained {} steps in {:.1}s ({:.1} steps/s, {} threads)",
        s.step,
        t.elapsed().as_secs_f64(),
        s.steps_per_sec,
        s.threads
    );
    let rep = headlab_train::eval::evaluate(
        &run,
        &ds,
        &headlab_train::eval::EvalOptions { device: headlab_model::DeviceSpec::Cpu, horizon: 20, ..Default::default() },
    )?;
    println!(
        "one-step val MSE {:.5}  no-change {:.5}  ratio {:.1}x",
        rep.one_step_mse,
        rep.baseline_mse,
        rep.improvement()
    );
    println!("per component model    {:?}", rep.component_mse.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>());
    println!(
        "per component baseline {:?}",
        rep.component_baseline_mse.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>()
    );
    println!(
        "rollout pos MSE at 1/5/10/20 frames: {:.2e} {:.2e} {:.2e} {:.2e}",
        rep.rollout_position_mse[1],
        rep.rollout_position_mse[5],
        rep.rollout_position_mse[10],
        rep.rollout_position_mse[20]
    );
    println!("energy drift at 20: model {:.3} truth {:.3}", rep.rollout_energy_drift[20], rep.true_energy_drift[20]);
    Ok(())
}
