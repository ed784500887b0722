//! CUDA checks, run on a GPU machine by tools/gpu-check: the forward pass
//! (every hook) on CUDA against the CPU, training that resumes bit for bit
//! on CUDA, the probe on CUDA against the CPU, and an SGLD (LLC) estimate on
//! CUDA. Without a CUDA device every test prints why it is skipped and
//! passes, except with HEADLAB_REQUIRE_CUDA=1 (tools/gpu-check sets it),
//! where a missing GPU is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::Path;

use headlab_analysis::contacts::with_frame_overlap_events;
use headlab_model::{ActivationCache, DeviceSpec, ForwardOptions, Model, ModelConfig, Normalization, State};
use headlab_probe::llc::model::{load_checkpoint, CheckpointProblem};
use headlab_probe::llc::{estimate, LlcConfig, Movable};
use headlab_probe::run::{probe_run, ProbeControl, ProbeOptions};
use headlab_sim::Dataset;
use headlab_store::analysis::read_analysis;
use headlab_store::checkpoint::{list_checkpoints, read_checkpoint};
use headlab_testkit::{tiny_train_config, toy_dataset};
use headlab_train::{train, RunOptions};
use tch::{Device, Kind, Tensor};

/// The CUDA device, or None (with the reason printed) when there is none.
fn cuda(test: &str) -> Option<Device> {
    if headlab_model::cuda_available() {
        return Some(Device::Cuda(0));
    }
    let why = if headlab_model::load_cuda_backend() {
        "libtorch's CUDA backend is loaded but sees no device"
    } else {
        "no NVIDIA driver (libcuda.so.1 cannot be loaded) or no CUDA build of libtorch (libtorch_cuda.so)"
    };
    assert!(
        std::env::var("HEADLAB_REQUIRE_CUDA").as_deref() != Ok("1"),
        "HEADLAB_REQUIRE_CUDA=1 but there is no CUDA device: {why}"
    );
    eprintln!("SKIPPED {test}: {why}");
    None
}

fn dataset() -> Dataset {
    with_frame_overlap_events(toy_dataset(6, 25, 12, 3))
}

/// max |a − b| / max(1, max |a|), on the CPU.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_device(Device::Cpu), b.to_device(Device::Cpu));
    let scale = a.abs().max().double_value(&[]).max(1.0);
    (&a - &b).abs().max().double_value(&[]) / scale
}

fn state(b: i64, n: i64, device: Device) -> State {
    tch::manual_seed(11);
    let s = State {
        pos: Tensor::rand([b, n, 2], (Kind::Float, Device::Cpu)),
        vel: Tensor::randn([b, n, 2], (Kind::Float, Device::Cpu)),
        radii: Tensor::rand([b, n], (Kind::Float, Device::Cpu)) * 0.05 + 0.04,
        masses: Tensor::rand([b, n], (Kind::Float, Device::Cpu)) + 0.5,
    };
    State { pos: s.pos.to(device), vel: s.vel.to(device), radii: s.radii.to(device), masses: s.masses.to(device) }
}

#[test]
fn cuda_forward_and_every_hook_match_the_cpu() {
    let Some(gpu) = cuda("cuda_forward_and_every_hook_match_the_cpu") else { return };
    let cfg = ModelConfig { init_scale: 3.0, ..ModelConfig::default() };
    let f = cfg.d_in(2);
    let norm = Normalization {
        dimension: 2,
        box_size: vec![1.0, 1.0],
        wall_range: 0.2,
        wall_features: true,
        input_mean: vec![0.3; f],
        input_std: vec![0.6; f],
        target_mean: vec![0.0; 4],
        target_std: vec![0.3; 4],
    };
    let cpu = Model::new(cfg, norm, 3, Device::Cpu).unwrap();
    let g = cpu.deep_clone(gpu).unwrap();
    assert_eq!(g.device(), gpu);
    let (xc, xg) = (cpu.norm.features(&state(8, 16, Device::Cpu)), g.norm.features(&state(8, 16, gpu)));
    assert!(rel_diff(&xc, &xg) <= 1e-6, "features differ");
    let (yc, cc): (Tensor, ActivationCache) = cpu.run_with_cache(&xc, |_| true).unwrap();
    let (yg, cg) = g.run_with_cache(&xg, |_| true).unwrap();
    assert_eq!(yg.device(), gpu);
    // f32 on both; cuBLAS and the CPU sum in other orders.
    assert!(rel_diff(&yc, &yg) <= 1e-4, "output differs by {}", rel_diff(&yc, &yg));
    for (name, t) in &cc.entries {
        let d = rel_diff(t, cg.require(name).unwrap());
        assert!(d <= 1e-4, "{name} differs by {d}");
    }
    // The training loss and gradient (the path `headlab train` takes) too.
    let opts = ForwardOptions { train: true, fused: true };
    let (tc, tg) = (Tensor::zeros_like(&yc), Tensor::zeros_like(&yg));
    let (lc, lg) = (cpu.loss_with(&xc, &tc, opts).unwrap(), g.loss_with(&xg, &tg, opts).unwrap());
    assert!(rel_diff(&lc, &lg) <= 1e-4, "loss differs");
    let d = rel_diff(&cpu.flat_grad(&lc), &g.flat_grad(&lg));
    assert!(d <= 1e-3, "gradient differs by {d}");
}

#[test]
fn cuda_training_resumes_bit_for_bit() {
    let Some(_) = cuda("cuda_training_resumes_bit_for_bit") else { return };
    let ds = dataset();
    let mut cfg = tiny_train_config(6);
    cfg.steps = 60;
    cfg.device = DeviceSpec::Cuda(Some(0));
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    let sa = train(&cfg, &ds, &a, &RunOptions::default()).unwrap();
    assert_eq!(sa.device, Device::Cuda(0));
    train(&cfg, &ds, &b, &RunOptions { stop_at: Some(25), ..Default::default() }).unwrap();
    train(&cfg, &ds, &b, &RunOptions { resume: true, ..Default::default() }).unwrap();
    let ca = read_checkpoint(&list_checkpoints(&a).unwrap().last().unwrap().1).unwrap();
    let cb = read_checkpoint(&list_checkpoints(&b).unwrap().last().unwrap().1).unwrap();
    assert_eq!(ca.step, 60);
    assert_eq!(ca.params, cb.params, "weights differ after resume on CUDA");
    assert_eq!(ca.optimizer, cb.optimizer, "optimizer state differs after resume on CUDA");
    let c0 = read_checkpoint(&list_checkpoints(&a).unwrap()[0].1).unwrap();
    assert_ne!(c0.params, ca.params, "training changed nothing");
}

#[test]
fn cuda_probe_matches_the_cpu() {
    let Some(_) = cuda("cuda_probe_matches_the_cpu") else { return };
    let ds = dataset();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train(&tiny_train_config(3), &ds, &run, &RunOptions::default()).unwrap();
    let copy = dir.path().join("run_cuda");
    std::fs::create_dir_all(copy.join("ckpt")).unwrap();
    std::fs::copy(run.join("config.toml"), copy.join("config.toml")).unwrap();
    for (_, p) in list_checkpoints(&run).unwrap() {
        std::fs::copy(&p, copy.join("ckpt").join(p.file_name().unwrap())).unwrap();
    }
    let opts = ProbeOptions { eval_frames: 40, cache_frames: 4, ..Default::default() };
    let on = |device| ProbeControl { device, progress: false, ..Default::default() };
    let sc = probe_run(&run, &ds, Path::new("toy.h5"), &opts, &on(DeviceSpec::Cpu)).unwrap();
    let sg = probe_run(&copy, &ds, Path::new("toy.h5"), &opts, &on(DeviceSpec::Cuda(Some(0)))).unwrap();
    let (ac, ag) = (read_analysis(&sc.analysis_path, true).unwrap(), read_analysis(&sg.analysis_path, true).unwrap());
    assert_eq!(ac.steps, ag.steps);
    let mut compared = 0;
    for (key, vc) in &ac.series {
        let vg = &ag.series[key];
        for (x, y) in vc.iter().zip(vg) {
            // Scores are means of attention weights (f32 forward on both);
            // a rank measure can move by a tie's worth.
            assert!(x.is_nan() == y.is_nan() && (x.is_nan() || (x - y).abs() <= 2e-3), "{key}: cpu {x}, cuda {y}");
            compared += 1;
        }
    }
    assert!(compared > 100, "only {compared} values compared");
    for (pc, pg) in ac.patterns.iter().zip(&ag.patterns) {
        let d = pc.iter().zip(pg).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d <= 1e-4, "cached attention differs by {d}");
    }
}

#[test]
fn cuda_llc_estimate_runs() {
    let Some(gpu) = cuda("cuda_llc_estimate_runs") else { return };
    let ds = dataset();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train(&tiny_train_config(2), &ds, &run, &RunOptions::default()).unwrap();
    let ck = list_checkpoints(&run).unwrap().last().unwrap().1.clone();
    let (_, model, data) = load_checkpoint(&ck, &ds, gpu).unwrap();
    assert_eq!(model.device(), gpu);
    let cfg = LlcConfig { chains: 2, draws: 40, batch_size: 16, ..LlcConfig::default() };
    let problem = CheckpointProblem::new(&model, &data, 16, 0).unwrap();
    let w_star = [model.flat_params().detach().copy()];
    let est = estimate(&problem, &w_star, &[Movable::All], &cfg, None).unwrap();
    assert!(est.llc.is_finite(), "LLC on CUDA is {}", est.llc);
}
