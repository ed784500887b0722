//! `headlab lens physics` on a tiny trained and probed run (CPU).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::Path;

use headlab_analysis::contacts::with_frame_overlap_events;
use headlab_analysis::lens_physics::{plot, read_lens_physics, SERIES};
use headlab_lens::physics::{run_physics, PhysicsControl, PhysicsLensConfig};
use headlab_probe::run::{probe_run, ProbeControl, ProbeOptions};
use headlab_sim::Dataset;
use headlab_store::analysis::read_analysis;
use headlab_testkit::{tiny_train_config, toy_dataset};
use headlab_train::{train, RunOptions};

/// Toy dataset with contact events derived from overlaps at frames.
fn dataset() -> Dataset {
    with_frame_overlap_events(toy_dataset(6, 25, 12, 3))
}

#[test]
fn physics_lens_series_have_the_right_shapes_and_are_incremental() {
    tch::set_num_threads(1);
    let ds = dataset();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = tiny_train_config(5);
    train(&cfg, &ds, &run, &RunOptions::default()).unwrap();
    let popts = ProbeOptions { eval_frames: 40, cache_trajectories: 0, ..Default::default() };
    probe_run(
        &run,
        &ds,
        Path::new("toy.h5"),
        &popts,
        &ProbeControl { device: headlab_model::DeviceSpec::Cpu, progress: false, ..Default::default() },
    )
    .unwrap();
    let an = read_analysis(&run.join("analysis.h5"), false).unwrap();

    // Hold the last checkpoint back to test the incremental path.
    let ckpts = headlab_store::checkpoint::list_checkpoints(&run).unwrap();
    assert!(ckpts.len() >= 3, "{ckpts:?}");
    let (last_step, last_path) = ckpts.last().unwrap().clone();
    let held = dir.path().join("held.h5");
    std::fs::rename(&last_path, &held).unwrap();

    let mut lc = PhysicsLensConfig { freeze_frames: 4, svm_queries: 6, ..Default::default() };
    lc.freeze.window = 10; // the run is 30 steps long
    let ctl = PhysicsControl { progress: false, ..Default::default() };
    let s1 = run_physics(&run, &ds, &lc, &ctl).unwrap();
    assert_eq!(s1.processed.len(), ckpts.len() - 1);
    assert!(s1.n_constraints > 0);
    std::fs::rename(&held, &last_path).unwrap();
    let s2 = run_physics(&run, &ds, &lc, &ctl).unwrap();
    assert_eq!((s2.processed.clone(), s2.skipped), (vec![last_step], ckpts.len() - 1));
    // Nothing new: the file is left exactly as it is.
    let before = std::fs::read(&s2.path).unwrap();
    let s3 = run_physics(&run, &ds, &lc, &ctl).unwrap();
    assert!(s3.processed.is_empty());
    assert_eq!(std::fs::read(&s2.path).unwrap(), before);

    let lp = read_lens_physics(&s2.path).unwrap();
    let (s, l, h, n) = (ckpts.len(), cfg.model.n_layers, 2, ds.n_particles);
    assert_eq!(lp.steps, ckpts.iter().map(|c| c.0).collect::<Vec<_>>());
    assert_eq!((lp.n_layers, lp.n_heads, lp.n_particles, lp.freeze_frames), (l, h, n, 4));
    for name in SERIES {
        assert_eq!(lp.series[name].len(), s * l * h, "{name}");
    }
    for name in [
        "svm_cosine",
        "svm_cosine_full",
        "svm_margin_ratio",
        "svm_satisfied",
        "svm_norm",
        "svm_constraints",
        "logit_rms",
    ] {
        assert!(lp.series[name].iter().all(|v| v.is_finite()), "{name}: {:?}", lp.series[name]);
    }
    assert!(lp.series["svm_cosine"].iter().all(|v| v.abs() <= 1.0 + 1e-9));
    assert!(lp.series["svm_satisfied"].iter().all(|v| (0.0..=1.0).contains(v)));
    // A head meeting every constraint has a positive margin ratio, and one with a positive ratio meets all.
    for (r, sat) in lp.series["svm_margin_ratio"].iter().zip(&lp.series["svm_satisfied"]) {
        assert_eq!(*r > 0.0, *sat == 1.0, "ratio {r}, satisfied {sat}");
    }
    // The margin ratio cannot exceed 1: nothing beats the max-margin direction.
    assert!(lp.series["svm_margin_ratio"].iter().all(|&v| v <= 1.0 + 1e-4), "{:?}", lp.series["svm_margin_ratio"]);
    assert!(lp.series["svm_constraints"].iter().all(|&v| v == s1.n_constraints as f64));
    assert_eq!(lp.logits.len(), s);
    assert!(lp.logits.iter().all(|x| x.len() == l * h * 4 * n * n && x.iter().all(|v| v.is_finite())));
    // Logit rows are centred.
    for row in lp.logits[s - 1].chunks(n) {
        assert!(row.iter().map(|&v| v as f64).sum::<f64>().abs() < 1e-3);
    }
    // The change series is NaN only within the first window; snap steps are checkpoint steps.
    let ch = lp.head_series("freeze_change", 0, 0).unwrap();
    assert!(ch.last().unwrap().is_finite());
    assert_eq!(lp.snap.len(), l * h);
    for k in 0..l * h {
        assert!(lp.snap[k] == -1 || lp.steps.contains(&(lp.snap[k] as u64)), "{:?}", lp.snap);
    }
    // The SVM sample is stored and each query has its partner.
    assert_eq!(lp.svm_query.len(), lp.svm_partner.len());
    assert!(lp.svm_query.len() <= 6 && !lp.svm_query.is_empty());
    assert!(lp.svm_query.iter().zip(&lp.svm_partner).all(|(q, p)| q != p));

    // Other options on the same file: an error naming --fresh; --fresh recomputes identically.
    let other = PhysicsLensConfig { svm_queries: 5, ..lc.clone() };
    let e = run_physics(&run, &ds, &other, &ctl).unwrap_err().to_string();
    assert!(e.contains("--fresh") && e.contains("lens_physics.h5"), "{e}");
    let s4 = run_physics(&run, &ds, &lc, &PhysicsControl { fresh: true, ..ctl.clone() }).unwrap();
    assert_eq!(s4.processed.len(), s);
    let lp2 = read_lens_physics(&s4.path).unwrap();
    assert_eq!(lp2.series["svm_cosine"], lp.series["svm_cosine"]);
    assert_eq!(lp2.logits, lp.logits);

    // Bad options are rejected before anything runs.
    let bad = PhysicsLensConfig { svm_queries: 0, ..lc.clone() };
    assert!(run_physics(&run, &ds, &bad, &ctl).unwrap_err().to_string().contains("svm_queries"));

    // Figures: one PNG per head.
    let figs = plot::head_figures(dir.path(), "t_", &an, plot::SCORE_SERIES.name(), &lp, &lp.freeze_config()).unwrap();
    assert_eq!(figs.len(), l * h);
    assert!(figs.iter().all(|f| std::fs::metadata(dir.path().join(f)).unwrap().len() > 10_000));
}

/// A run without LayerNorm has no `ln1.w`/`ln1.b`: the lens reads the model's
/// own `blocks.{l}.ln1.hook_normalized` (here the residual stream itself).
#[test]
fn physics_lens_runs_on_a_model_without_layer_norm() {
    tch::set_num_threads(1);
    let ds = dataset();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut cfg = tiny_train_config(3);
    cfg.model.layer_norm = false;
    train(&cfg, &ds, &run, &RunOptions::default()).unwrap();
    let ckpts = headlab_store::checkpoint::list_checkpoints(&run).unwrap();
    let m = headlab_model::Model::load(&ckpts[0].1, tch::Device::Cpu).unwrap();
    assert!(m.param("blocks.0.ln1.w").is_none(), "the run really has no LayerNorm");
    let popts = ProbeOptions { eval_frames: 40, cache_trajectories: 0, ..Default::default() };
    probe_run(
        &run,
        &ds,
        Path::new("toy.h5"),
        &popts,
        &ProbeControl { device: headlab_model::DeviceSpec::Cpu, progress: false, ..Default::default() },
    )
    .unwrap();
    let mut lc = PhysicsLensConfig { freeze_frames: 4, svm_queries: 6, ..Default::default() };
    lc.freeze.window = 10;
    let s = run_physics(&run, &ds, &lc, &PhysicsControl { progress: false, ..Default::default() }).unwrap();
    assert_eq!(s.processed.len(), ckpts.len());
    let lp = read_lens_physics(&s.path).unwrap();
    for name in ["svm_cosine", "svm_cosine_full", "svm_margin_ratio", "svm_norm", "logit_rms"] {
        assert_eq!(lp.series[name].len(), ckpts.len() * cfg.model.n_layers * 2, "{name}");
        assert!(lp.series[name].iter().all(|v| v.is_finite()), "{name}: {:?}", lp.series[name]);
    }
}
