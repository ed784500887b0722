//! Scan-and-snap lens: the toy task reproduces the paper's scan, the freeze
//! detector finds a known snap, and the outputs are written and readable.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use headlab_lens::scan_snap::{self, detect_freeze, relative_change, FreezeScale, ScanSnapConfig, Trace};

fn one_thread() {
    tch::set_num_threads(1);
}

#[test]
fn default_toy_task_scans_towards_distinctive_tokens() {
    one_thread();
    let cfg = ScanSnapConfig::default();
    let t = scan_snap::train_main(&cfg).unwrap();
    let (e0, e1) = (t.entropy[0], Trace::last(&t.entropy));
    let (d1, c1) = (Trace::last(&t.mass_distinct), Trace::last(&t.mass_common));
    eprintln!(
        "entropy {e0} -> {e1}, distinct {} -> {d1}, common {} -> {c1}, snap {:?}",
        t.mass_distinct[0], t.mass_common[0], t.snap_step
    );
    // Uniform attention over 9 tokens has entropy ln 9; scanning lowers it clearly.
    assert!((e0 - 9f32.ln()).abs() < 0.1, "initial attention should be near uniform, entropy {e0}");
    assert!(e1 < e0 - 0.2, "entropy did not fall: {e0} -> {e1}");
    // Entropy falls monotonically up to noise: the second half is below the first.
    let n = t.entropy.len();
    let first: f32 = t.entropy[..n / 2].iter().sum::<f32>() / (n / 2) as f32;
    let second: f32 = t.entropy[n / 2..].iter().sum::<f32>() / (n - n / 2) as f32;
    assert!(second < first);
    assert!(d1 > c1, "distinctive mass {d1} should exceed common mass {c1}");
    // At initialization both get mass in proportion to their counts (about equal).
    assert!(d1 > t.mass_distinct[0] + 0.2 && c1 < t.mass_common[0] - 0.2);
    assert!(Trace::last(&t.eval_acc) > 0.95);
    // The attention snaps within the run, and the detector agrees with the relative-change series.
    let snap = t.snap_step.expect("attention should freeze within the default run");
    assert!(snap > 0 && snap < cfg.train.steps);
    let last_r = Trace::last(&t.rel_change);
    assert!(last_r < cfg.freeze.threshold, "{last_r}");
}

/// A logit series that moves until step `t0` and is constant after it.
fn constructed(t0: u64, steps: &[u64], dim: usize) -> Vec<f32> {
    let mut v = Vec::new();
    for &s in steps {
        let t = s.min(t0) as f32;
        for i in 0..dim {
            // Different tokens move at different speeds, some up, some down.
            let speed = (i as f32 + 1.0) * if i % 2 == 0 { 1.0 } else { -0.5 };
            v.push(0.3 + speed * t / 100.0);
        }
    }
    v
}

#[test]
fn freeze_detector_finds_the_known_snap_step() {
    let steps: Vec<u64> = (0..=300).map(|k| k * 10).collect();
    let scales = [FreezeScale::Rms, FreezeScale::Displacement, FreezeScale::Norm];
    for (t0, window) in [(700u64, 100u64), (1230, 50), (2000, 200)] {
        let z = constructed(t0, &steps, 5);
        for scale in scales {
            let found = detect_freeze(&steps, &z, 5, window, 1e-3, scale);
            assert_eq!(found, Some(t0), "t0 {t0} window {window} {scale:?}");
        }
    }
    // Before the snap the change over a window is far above threshold.
    let z = constructed(700, &steps, 5);
    for scale in scales {
        let r = relative_change(&steps, &z, 5, 100, scale);
        assert!(r[0].is_nan() && r[9].is_nan() && r[10] > 0.1, "{scale:?}");
        assert_eq!(r[80], 0.0);
    }
    // The RMS scale is the per-token logit change: speeds 1, -1, 3, -2, 5 per 100 steps.
    let r = relative_change(&steps, &z, 5, 100, FreezeScale::Rms);
    let rms = ((1.0f32 + 1.0 + 9.0 + 4.0 + 25.0) / 5.0).sqrt();
    assert!((r[30] - rms).abs() < 1e-4, "{} vs {rms}", r[30]);
    // A pause that is followed by more movement is not a snap.
    let mut paused = Vec::new();
    for &s in &steps {
        let t = if s < 500 {
            s
        } else if s < 1000 {
            500
        } else {
            (s - 500).min(1500)
        } as f32;
        for i in 0..5 {
            paused.push(1.0 + (i as f32 + 1.0) * t / 100.0);
        }
    }
    assert_eq!(detect_freeze(&steps, &paused, 5, 100, 1e-3, FreezeScale::Rms), Some(2000));
    // A series that never settles has no snap step.
    let moving = constructed(10_000, &steps, 5);
    assert_eq!(detect_freeze(&steps, &moving, 5, 100, 1e-3, FreezeScale::Displacement), None);
    // Small noise after the snap stays under a threshold above the noise level.
    let mut noisy = constructed(1000, &steps, 5);
    for (k, x) in noisy.iter_mut().enumerate() {
        *x += 1e-4 * ((k * 7919 % 13) as f32 - 6.0);
    }
    let found = detect_freeze(&steps, &noisy, 5, 100, 1e-2, FreezeScale::Norm).unwrap();
    assert!((960..=1000).contains(&found), "{found}");
}

#[test]
fn config_errors_name_the_key_and_value() {
    let p = std::path::Path::new("lens.toml");
    let e = ScanSnapConfig::from_toml("[task]\ndistinct_prob = 1.5\n", p).unwrap_err().to_string();
    assert!(e.contains("task.distinct_prob") && e.contains("1.5"), "{e}");
    let e = ScanSnapConfig::from_toml("[train]\nlr = 1.0\n", p).unwrap_err().to_string();
    assert!(e.contains("lens.toml") && e.contains("lr"), "{e}");
    let e = ScanSnapConfig::from_toml("[freeze]\nwindow = 5\n", p).unwrap_err().to_string();
    assert!(e.contains("freeze.window"), "{e}");
    let cfg = ScanSnapConfig::from_toml("[task]\nn_classes = 3\n", p).unwrap();
    assert_eq!(cfg.task.n_classes, 3);
    // The TOML written into the HDF5 file parses back to the same config.
    assert_eq!(ScanSnapConfig::from_toml(&cfg.to_toml().unwrap(), p).unwrap(), cfg);
}

#[test]
fn sweeps_write_hdf5_plots_and_page() {
    one_thread();
    let mut cfg = ScanSnapConfig::default();
    cfg.train.steps = 200;
    cfg.train.eval_every = 20;
    cfg.freeze.window = 40;
    cfg.task.eval_size = 64;
    cfg.sweep.lr_ratios = vec![0.5, 4.0];
    cfg.sweep.dataset_sizes = vec![8, 0];
    cfg.sweep.seeds = 2;
    let calls = std::cell::Cell::new(0);
    let progress = |_: &str, _: usize, _: usize| calls.set(calls.get() + 1);
    let res = scan_snap::run_toy(&cfg, Some(&progress)).unwrap();
    assert!(calls.get() >= 7);
    assert_eq!(res.lr_sweep.len(), 2);
    assert_eq!(res.data_sweep.len(), 4);
    // Eight training sequences are too few for common tokens to look balanced.
    let small: Vec<_> = res.data_sweep.iter().filter(|d| d.size == 8).collect();
    assert!(small.iter().all(|d| d.mean_common_purity > 1.0 / cfg.task.n_classes as f32));
    let dir = tempfile::tempdir().unwrap();
    let h5 = dir.path().join("scan_snap.h5");
    scan_snap::write_h5(&h5, &res).unwrap();
    let plots = scan_snap::write_plots(dir.path(), &res).unwrap();
    assert_eq!(plots.len(), 4);
    for p in &plots {
        assert!(std::fs::metadata(p).unwrap().len() > 1000, "{p:?}");
    }
    let page = scan_snap::write_page(dir.path(), &res, &plots, "scan_snap.h5").unwrap();
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("scan_snap_attention.png") && html.contains("<table>"));
    let (f, _) = headlab_store::open_kind(&h5, Some(headlab_store::FileKind::Lens)).unwrap();
    let (ent, shape) = headlab_store::h5util::read_array::<f32>(&f, &h5, "main/entropy", Some(1)).unwrap();
    assert_eq!(shape, vec![res.main.steps.len()]);
    assert_eq!(ent, res.main.entropy);
    let (_, shape) = headlab_store::h5util::read_array::<f32>(&f, &h5, "main/logits", Some(3)).unwrap();
    assert_eq!(shape, vec![res.main.steps.len(), 1, 23]);
    let (_, shape) = headlab_store::h5util::read_array::<f32>(&f, &h5, "lr_sweep/entropy", Some(2)).unwrap();
    assert_eq!(shape[0], 2);
    let text = headlab_store::h5util::get_str_attr(&f, &h5, "config").unwrap();
    assert_eq!(ScanSnapConfig::from_toml(&text, &h5).unwrap(), cfg);
}
