//! Training tests on a small synthetic dataset (CPU, a few seconds each).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use headlab_store::checkpoint::{list_checkpoints, read_checkpoint};
use headlab_store::metrics::read_metrics;
use headlab_testkit::{libtorch_serial, python_or_skip, toy_dataset};
use headlab_train::eval::{evaluate, EvalOptions};
use headlab_train::*;

fn small_cfg(steps: u64) -> TrainConfig {
    let mut c = TrainConfig {
        steps,
        batch_size: 16,
        eval_interval: 50,
        device: headlab_model::DeviceSpec::Cpu,
        threads: 1,
        val_fraction: 0.25,
        ..Default::default()
    };
    c.model.d_model = 32;
    c.model.n_heads = 2;
    c.checkpoints.count = 12;
    c.checkpoints.dense_start = 20;
    c.checkpoints.dense_end = 80;
    c
}

#[test]
fn resume_is_bit_identical() {
    let _serial = libtorch_serial();
    let ds = toy_dataset(6, 25, 6, 1);
    // Two threads: the batch is split over data-parallel shards (where the
    // machine has two cores).
    for (kind, noise, threads) in
        [(OptimizerKind::Adam, 0.3, 1), (OptimizerKind::Sgd, 0.0, 1), (OptimizerKind::Adam, 0.0, 2)]
    {
        let mut cfg = small_cfg(200);
        cfg.threads = threads;
        cfg.optimizer.kind = kind;
        cfg.optimizer.weight_decay = 1e-3;
        cfg.noise = noise;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
        let sa = train(&cfg, &ds, &a, &RunOptions::default()).unwrap();
        assert_eq!(sa.step, 200);
        let sb1 = train(&cfg, &ds, &b, &RunOptions { stop_at: Some(100), ..Default::default() }).unwrap();
        assert!(sb1.interrupted && sb1.step == 100);
        assert!(list_checkpoints(&b).unwrap().iter().any(|(s, _)| *s == 100));
        let sb2 = train(&cfg, &ds, &b, &RunOptions { resume: true, ..Default::default() }).unwrap();
        assert_eq!(sb2.step, 200);
        let ca = read_checkpoint(&list_checkpoints(&a).unwrap().last().unwrap().1).unwrap();
        let cb = read_checkpoint(&list_checkpoints(&b).unwrap().last().unwrap().1).unwrap();
        assert_eq!(ca.step, 200);
        assert_eq!(ca.params, cb.params, "{kind:?}: weights differ after resume");
        assert_eq!(ca.optimizer, cb.optimizer, "{kind:?}: optimizer state differs");
        assert_eq!(ca.rng, cb.rng);
        let (ma, mb) = (read_metrics(&a.join("metrics.h5")).unwrap(), read_metrics(&b.join("metrics.h5")).unwrap());
        assert_eq!(ma.loss, mb.loss);
        assert_eq!(ma.step, (1..=200).collect::<Vec<u64>>());
        // And training changed the weights.
        let c0 = read_checkpoint(&list_checkpoints(&a).unwrap()[0].1).unwrap();
        assert_eq!(c0.step, 0);
        assert_ne!(c0.params, ca.params);
    }
}

#[test]
fn training_beats_the_no_change_baseline_and_eval_agrees() {
    let _serial = libtorch_serial();
    let ds = toy_dataset(8, 40, 6, 2);
    let mut cfg = small_cfg(400);
    cfg.batch_size = 32;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let s = train(&cfg, &ds, &run, &RunOptions::default()).unwrap();
    // The toy's velocity changes come from rare wall and pair contacts, so
    // 400 steps learn the position change (ballistic, easy) but not all of
    // the velocity change: half of the components is the best one can expect.
    assert!(s.val_loss < 0.8 * s.baseline_val_loss, "val {} vs baseline {}", s.val_loss, s.baseline_val_loss);
    assert!(run.join("config.toml").exists());
    let saved = TrainConfig::load(&run.join("config.toml")).unwrap();
    assert_eq!(saved, cfg);
    let m = read_metrics(&run.join("metrics.h5")).unwrap();
    assert_eq!((m.step.len(), m.lr.len(), m.grad_norm.len()), (400, 400, 400));
    assert!(m.loss[..20].iter().sum::<f32>() > 3.0 * m.loss[380..].iter().sum::<f32>());
    assert!(m.lr[0] < m.lr[60] && m.lr[399] < m.lr[60], "warm-up then cosine: {:?}", (m.lr[0], m.lr[60], m.lr[399]));
    let steps: Vec<u64> = list_checkpoints(&run).unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, cfg.checkpoint_steps());

    let rep = evaluate(
        &run,
        &ds,
        &EvalOptions { device: headlab_model::DeviceSpec::Cpu, rollout_trajs: 2, horizon: 10, ..Default::default() },
    )
    .unwrap();
    assert_eq!(rep.step, 400);
    assert!(
        (rep.one_step_mse - s.val_loss).abs() < 0.3 * s.val_loss,
        "eval {} vs training's val loss {}",
        rep.one_step_mse,
        s.val_loss
    );
    for c in 0..2 {
        assert!(
            rep.component_mse[c] < 0.1 * rep.component_baseline_mse[c],
            "dpos[{c}]: {} vs {}",
            rep.component_mse[c],
            rep.component_baseline_mse[c]
        );
    }
    assert_eq!(rep.rollout.n_traj, 2);
    assert_eq!(rep.rollout.n_frames, 11);
    assert_eq!(rep.rollout.positions.len(), 2 * 11 * 6 * 2);
    assert_eq!(rep.rollout_position_mse[0], 0.0);
    assert!(rep.rollout_position_mse[10] > 0.0 && rep.rollout_position_mse[10].is_finite());
    assert_eq!(rep.rollout_energy_drift.len(), 11);
    // A missing step is a clear error listing what exists.
    let e = evaluate(
        &run,
        &ds,
        &EvalOptions { step: Some(7), device: headlab_model::DeviceSpec::Cpu, ..Default::default() },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("step 7") && e.contains("400"), "{e}");
}

#[test]
fn divergence_stops_with_a_clear_message_and_keeps_good_checkpoints() {
    let _serial = libtorch_serial();
    let ds = toy_dataset(4, 20, 5, 3);
    let mut cfg = small_cfg(200);
    cfg.optimizer.kind = OptimizerKind::Sgd;
    cfg.optimizer.lr = 1e8;
    cfg.optimizer.clip = 0.0;
    cfg.schedule.warmup = 0;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let e = train(&cfg, &ds, &run, &RunOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TrainError::NonFinite { .. }), "{msg}");
    assert!(msg.contains("non-finite") && msg.contains("last good checkpoint") && msg.contains("step_"), "{msg}");
    for (_, p) in list_checkpoints(&run).unwrap() {
        let ck = read_checkpoint(&p).unwrap();
        assert!(
            ck.params.iter().all(|a| a.data.iter().all(|x| x.is_finite())),
            "{} holds non-finite weights",
            p.display()
        );
    }
}

#[test]
fn stop_flag_writes_a_checkpoint_and_refuses_to_overwrite_without_resume() {
    let _serial = libtorch_serial();
    let ds = toy_dataset(4, 20, 5, 4);
    let cfg = small_cfg(50);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let stop = Arc::new(AtomicBool::new(true));
    let s = train(&cfg, &ds, &run, &RunOptions { stop: Some(stop), ..Default::default() }).unwrap();
    assert!(s.interrupted);
    assert_eq!(s.step, 0);
    assert!(run.join("ckpt/step_00000000.h5").exists());
    let e = train(&cfg, &ds, &run, &RunOptions::default()).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    let s = train(&cfg, &ds, &run, &RunOptions { resume: true, ..Default::default() }).unwrap();
    assert_eq!(s.step, 50);
}

#[test]
fn resume_refuses_an_unreadable_metrics_file_instead_of_replacing_it() {
    let _serial = libtorch_serial();
    let ds = toy_dataset(4, 20, 5, 4);
    let cfg = small_cfg(20);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let stop = Arc::new(AtomicBool::new(true));
    train(&cfg, &ds, &run, &RunOptions { stop: Some(stop), ..Default::default() }).unwrap();
    let metrics = run.join("metrics.h5");
    std::fs::write(&metrics, b"not an HDF5 file").unwrap();
    let e = train(&cfg, &ds, &run, &RunOptions { resume: true, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("metrics.h5") && e.contains("cannot read") && e.contains("Restore the file"), "{e}");
    // The file was left as it was, and no training happened.
    assert_eq!(std::fs::read(&metrics).unwrap(), b"not an HDF5 file");
    assert_eq!(list_checkpoints(&run).unwrap().len(), 1);
    // Moved away, the run resumes (without the history before the checkpoint).
    std::fs::rename(&metrics, run.join("metrics.h5.bad")).unwrap();
    let s = train(&cfg, &ds, &run, &RunOptions { resume: true, ..Default::default() }).unwrap();
    assert_eq!(s.step, 20);
    assert!(read_metrics(&metrics).is_ok());
}

#[test]
fn config_defaults_validation_and_checkpoint_schedule() {
    let d = TrainConfig::default();
    assert_eq!(TrainConfig::from_toml(&d.to_toml().unwrap(), "x").unwrap(), d);
    let e = TrainConfig::from_toml("stpes = 3", "my.toml").unwrap_err().to_string();
    assert!(e.contains("my.toml") && e.contains("stpes"), "{e}");
    let e = TrainConfig::from_toml("[optimizer]\nlr = -1.0", "my.toml").unwrap_err().to_string();
    assert!(e.contains("optimizer.lr"), "{e}");
    let e = TrainConfig::from_toml("[optimizer]\nkind = \"lion\"", "my.toml").unwrap_err().to_string();
    assert!(e.contains("adamw"), "{e}");
    let steps = d.checkpoint_steps();
    assert_eq!((steps[0], *steps.last().unwrap()), (0, d.steps));
    assert!(steps.len() >= 60 && steps.len() <= 82, "{} checkpoints", steps.len());
    let dense = steps.iter().filter(|&&s| (100..=1500).contains(&s)).count();
    assert!(dense >= 40, "only {dense} checkpoints in the emergence band");
    assert!(steps.contains(&1) && steps.contains(&2));
    // No near-duplicates (such as 136 and 138): every gap is at least 2 % and one step.
    for w in steps.windows(2) {
        assert!(
            (w[1] - w[0]) as f64 >= (0.02 * w[1] as f64).max(1.0),
            "near-duplicate checkpoints {} and {}",
            w[0],
            w[1]
        );
    }
    // LR: warm-up from lr/warmup to lr, cosine to min_lr_ratio.
    let w = d.schedule.warmup;
    assert!((d.lr_at(0) - d.optimizer.lr / w as f64).abs() < 1e-12);
    assert!((d.lr_at(w - 1) - d.optimizer.lr).abs() < 1e-12);
    assert!((d.lr_at(d.steps) - d.optimizer.lr * 0.1).abs() < 1e-9);
    let c = TrainConfig { schedule: ScheduleConfig { kind: ScheduleKind::Constant, ..Default::default() }, ..d };
    assert_eq!(c.lr_at(1000), c.optimizer.lr);
}

#[test]
fn split_is_by_trajectory_and_deterministic() {
    let (tr, va) = split_trajectories(20, 0.2, 5).unwrap();
    assert_eq!((tr.len(), va.len()), (16, 4));
    assert!(tr.iter().all(|t| !va.contains(t)));
    assert_eq!(split_trajectories(20, 0.2, 5).unwrap(), (tr, va));
    let e = split_trajectories(1, 0.1, 0).unwrap_err().to_string();
    assert!(e.contains("at least 2"), "{e}");
}

#[test]
fn gradient_noise_measurement_is_finite_and_leaves_training_unchanged() {
    let _serial = libtorch_serial();
    let ds = toy_dataset(6, 25, 6, 3);
    let mut cfg = small_cfg(60);
    cfg.noise = 0.3; // input noise draws from the batch generator: the measurement must not
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("plain"), dir.path().join("measured"));
    train(&cfg, &ds, &a, &RunOptions::default()).unwrap();
    let mut with = cfg.clone();
    with.grad_noise = GradNoiseConfig { every: 25, batches: 8, reference_rows: 50, hill_k: 0 };
    // Interrupt and resume: measurements continue where they left off.
    train(&with, &ds, &b, &RunOptions { stop_at: Some(30), ..Default::default() }).unwrap();
    train(&with, &ds, &b, &RunOptions { resume: true, ..Default::default() }).unwrap();
    let last = |r: &std::path::Path| read_checkpoint(&list_checkpoints(r).unwrap().last().unwrap().1).unwrap();
    let (ca, cb) = (last(&a), last(&b));
    assert_eq!(ca.step, 60);
    assert_eq!(ca.params, cb.params, "measuring gradient noise changed the weights");
    assert_eq!(ca.optimizer, cb.optimizer);
    assert_eq!(ca.rng, cb.rng);
    let (ma, mb) = (read_metrics(&a.join("metrics.h5")).unwrap(), read_metrics(&b.join("metrics.h5")).unwrap());
    assert_eq!(ma.loss, mb.loss);
    // (The interrupted run also validated at step 30, where it stopped.)
    let val = |m: &headlab_store::metrics::Metrics| -> Vec<(u64, f32)> {
        m.val_step.iter().copied().zip(m.val_loss.iter().copied()).filter(|(s, _)| *s != 30).collect()
    };
    assert_eq!(val(&ma), val(&mb));
    assert!(ma.noise.is_empty());
    let steps: Vec<u64> = mb.noise.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![0, 25, 50]);
    for r in &mb.noise {
        assert_eq!((r.batches, r.batch_size, r.reference_rows, r.norms.len()), (8, 16, 50, 8));
        for (name, v) in [
            ("full_grad_norm", r.full_grad_norm),
            ("norm_hill_alpha", r.norm_hill_alpha),
            ("norm_hill_se", r.norm_hill_se),
            ("norm_kurtosis", r.norm_kurtosis),
            ("coord_hill_alpha", r.coord_hill_alpha),
            ("coord_hill_se", r.coord_hill_se),
            ("coord_kurtosis", r.coord_kurtosis),
            ("norm_gaussian_hill_alpha", r.norm_gaussian_hill_alpha),
            ("coord_gaussian_hill_alpha", r.coord_gaussian_hill_alpha),
        ] {
            assert!(v.is_finite(), "step {}: {name} = {v}", r.step);
        }
        assert!(r.full_grad_norm > 0.0 && r.norm_hill_alpha > 0.0 && r.coord_hill_alpha > 0.0 && r.norm_hill_se > 0.0);
        assert!(r.norms.iter().all(|n| n.is_finite() && *n > 0.0));
        // Standardized coordinates over K = 8 samples are bounded by (K-1)/sqrt(K).
        assert!(r.coord_abs_max <= 7.0 / 8f64.sqrt() + 1e-9, "{}", r.coord_abs_max);
    }
}

/// With two threads the batch is split over the model and a replica
/// sharing its weights (data parallelism): one SGD step (lr 1, no momentum,
/// no clipping, so the update is minus the gradient) moves the weights as
/// one pass over the whole batch does, up to rounding; repeated sharded
/// steps are bit-for-bit deterministic.
#[test]
fn sharded_steps_match_one_pass_and_are_deterministic() {
    let _serial = libtorch_serial();
    use rand::SeedableRng;
    let ds = toy_dataset(6, 25, 6, 3);
    let mut cfg = small_cfg(10);
    cfg.optimizer =
        OptimizerConfig { kind: OptimizerKind::Sgd, lr: 1.0, momentum: 0.0, clip: 0.0, ..Default::default() };
    let dev = tch::Device::Cpu;
    let (tr, va) = split_trajectories(ds.n_traj, cfg.val_fraction, cfg.seed).unwrap();
    let data = TrainData::new(&ds, tr, va, None, true, dev).unwrap();
    let run = |sharded: bool, steps: usize| -> (tch::Tensor, tch::Tensor, Vec<f64>) {
        let model = headlab_model::Model::new(cfg.model.clone(), data.norm.clone(), 4, dev).unwrap();
        let before = model.flat_params().copy();
        let mut reps = if sharded { shard_replicas(&cfg, &model, 2).unwrap() } else { vec![] };
        assert_eq!(reps.len(), usize::from(sharded));
        let mut opt = Optimizer::new(cfg.optimizer.clone(), &model);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let losses = (0..steps)
            .map(|_| train_step_with(&cfg, &model, &mut reps, &mut opt, &data, &mut rng, 1.0).unwrap().0)
            .collect();
        (before, model.flat_params().copy(), losses)
    };
    let (p0, p_one, l_one) = run(false, 1);
    let (_, p_sh, l_sh) = run(true, 1);
    let g = &p0 - &p_one; // the gradient of the whole batch
    let scale = g.abs().max().double_value(&[]);
    assert!(scale > 1e-3, "the step moved nothing");
    let d = (&p_sh - &p_one).abs().max().double_value(&[]);
    assert!(d <= 1e-5 * scale, "sharded gradient differs by {d} (largest |g| {scale})");
    assert!((l_sh[0] - l_one[0]).abs() <= 1e-6 * l_one[0].abs(), "loss {} vs {}", l_sh[0], l_one[0]);
    // Deterministic: the same sharded run twice is bit-identical.
    let (_, a, la) = run(true, 5);
    let (_, b, lb) = run(true, 5);
    assert_eq!((&a - &b).abs().max().double_value(&[]), 0.0);
    assert_eq!(la, lb);
}

/// The fused CPU update (gradient norm, clipping and Adam/AdamW/SGD in one
/// pass over the flat buffers) is the same arithmetic as the tensor path
/// that any other buffer takes (here forced by a non-contiguous gradient):
/// the same norm and, over several steps with clipping active and weight
/// decay, the same weights up to f32 rounding.
#[test]
fn fused_update_matches_the_tensor_path() {
    let _serial = libtorch_serial();
    let cfg = small_cfg(10);
    let ds = toy_dataset(4, 10, 5, 2);
    let (tr, va) = split_trajectories(ds.n_traj, cfg.val_fraction, cfg.seed).unwrap();
    let data = TrainData::new(&ds, tr, va, None, true, tch::Device::Cpu).unwrap();
    for (kind, wd) in [(OptimizerKind::Adam, 0.01), (OptimizerKind::Adamw, 0.1), (OptimizerKind::Sgd, 0.01)] {
        let oc = OptimizerConfig { kind, weight_decay: wd, clip: 0.5, momentum: 0.9, ..Default::default() };
        let run = |strided: bool| -> (Vec<f64>, tch::Tensor) {
            let model = headlab_model::Model::new(cfg.model.clone(), data.norm.clone(), 4, tch::Device::Cpu).unwrap();
            let mut opt = Optimizer::new(oc.clone(), &model);
            let n = model.num_params() as i64;
            let norms = (0..4)
                .map(|s| {
                    // A fixed pseudo-gradient large enough that clipping acts.
                    let g = (tch::Tensor::arange(n, tch::kind::FLOAT_CPU) * (0.37 + s as f64)).sin() * 3.0;
                    let g = if strided { tch::Tensor::stack(&[&g, &g], 1).select(1, 0) } else { g };
                    assert_eq!(g.is_contiguous(), !strided);
                    opt.clip_and_update(&model, &g, 1e-2, oc.clip, true)
                })
                .collect();
            (norms, model.flat_params().copy())
        };
        let (n_fused, p_fused) = run(false);
        let (n_tensor, p_tensor) = run(true);
        for (a, b) in n_fused.iter().zip(&n_tensor) {
            assert!((a - b).abs() <= 1e-5 * b, "{kind:?}: norm {a} vs {b}");
            assert!(*b > oc.clip, "{kind:?}: clipping did not act ({b})");
        }
        let d = (&p_fused - &p_tensor).abs().max().double_value(&[]);
        assert!(d <= 1e-6, "{kind:?}: weights differ by {d}");
    }
}

/// tools/bench_train.py's lean-manual reference (a hand-written backward
/// pass through libtorch's kernels, the README's "no autograd" figure) gives
/// the gradients autograd gives: the script checks every parameter's within
/// 1e-4 (relative to its largest entry) before timing and exits non-zero
/// otherwise. Runs it for two timed steps on a toy dataset. Needs
/// $HEADLAB_PYTHON (tools/setup.sh); skipped without it, except under CI=true.
#[test]
fn bench_reference_hand_written_backward_matches_autograd() {
    let Some(python) = python_or_skip("the bench reference check") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("toy.h5");
    headlab_store::dataset::write_dataset(&data, &toy_dataset(4, 12, 6, 3)).unwrap();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench_train.py");
    // d_model 16, 2 layers, 2 heads, batch 8, 1 thread, 2 steps.
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&data)
        .args(["16", "2", "2", "8", "1", "2", "cpu", "lean-manual"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run HEADLAB_PYTHON={python}: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench_train.py lean-manual failed:\n{stderr}");
    assert!(stdout.contains(r#""impl": "pytorch-eager-lean-manual""#), "{stdout}");
    let loss: f64 = stdout
        .split(r#""final_loss": "#)
        .nth(1)
        .and_then(|t| t.trim_end().trim_end_matches('}').parse().ok())
        .unwrap_or_else(|| panic!("no final_loss in {stdout}"));
    assert!(loss.is_finite(), "{stdout}");
}
