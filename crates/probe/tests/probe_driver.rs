//! The probe driver on a tiny trained run (CPU) and on an oracle attention
//! source with known answers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::Path;

use headlab_analysis::contacts::with_frame_overlap_events;
use headlab_analysis::heads::run_verdict;
use headlab_analysis::metrics::overlap_contacts;
use headlab_probe::run::{probe_run, probe_run_with, AttentionSource, ProbeControl, ProbeOptions, Result};
use headlab_sim::{Dataset, EventKind};
use headlab_store::analysis::read_analysis;
use headlab_store::series::SeriesKey;
use headlab_testkit::{tiny_train_config, toy_dataset};
use headlab_train::{train, RunOptions};

/// Toy dataset with contact events derived from overlaps at frames (a pair
/// starts at the first frame where it overlaps, ends at the first where not).
fn dataset() -> Dataset {
    let ds = with_frame_overlap_events(toy_dataset(6, 25, 12, 3));
    assert!(ds.events.iter().any(|e| e.kind == EventKind::ContactStart), "toy data should have contacts");
    ds
}

/// Layer 0: head 0 attends only to overlapping partners (itself when none),
/// head 1 is uniform.
struct Oracle;

impl AttentionSource for Oracle {
    fn n_layers(&self) -> usize {
        1
    }
    fn n_heads(&self) -> usize {
        2
    }
    fn patterns(&self, ds: &Dataset, frames: &[(usize, usize)]) -> Result<Vec<Vec<f32>>> {
        let (n, d) = (ds.n_particles, ds.dim());
        let mut out = Vec::new();
        for &(t, f) in frames {
            let i0 = ds.idx(t, f, 0);
            let cs = overlap_contacts(&ds.positions[i0..i0 + n * d], &ds.radii[t * n..(t + 1) * n], d, 1.0);
            for i in 0..n {
                let deg = cs.degree(i);
                for j in 0..n {
                    out.push(if deg == 0 {
                        (i == j) as u8 as f32
                    } else if cs.contains(i, j) {
                        1.0 / deg as f32
                    } else {
                        0.0
                    });
                }
            }
            out.extend(std::iter::repeat_n(1.0 / n as f32, n * n));
        }
        Ok(vec![out])
    }
}

fn fake_checkpoints(dir: &Path, steps: &[u64]) {
    std::fs::create_dir_all(dir.join("ckpt")).unwrap();
    for s in steps {
        std::fs::write(dir.join("ckpt").join(format!("step_{s:08}.h5")), b"").unwrap();
    }
}

#[test]
fn oracle_head_scores_one_and_probing_is_incremental() {
    let ds = dataset();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    fake_checkpoints(&run, &[0, 10]);
    let opts = ProbeOptions { eval_frames: 60, ..Default::default() };
    let ctl = ProbeControl { progress: false, batch: 7, ..Default::default() };
    let load = |_: &Path| Ok(Box::new(Oracle) as Box<dyn AttentionSource>);
    let s1 = probe_run_with(&run, &ds, Path::new("toy.h5"), &opts, &ctl, &load).unwrap();
    assert_eq!(s1.probed, vec![0, 10]);
    let a = read_analysis(&s1.analysis_path, true).unwrap();
    let sc = a.head_series(SeriesKey::ScoreExclNormOverlap, 0, 0).unwrap();
    assert!(sc.iter().all(|&v| (v - 1.0).abs() < 1e-6), "{sc:?}");
    let un = a.head_series(SeriesKey::ScoreNormOverlap, 0, 1).unwrap();
    assert!(un.iter().all(|&v| v.abs() < 1e-6), "{un:?}");
    let au = a.head_series(SeriesKey::AurocOverlap, 0, 0).unwrap();
    assert!(au.iter().all(|&v| (v - 1.0).abs() < 1e-12), "{au:?}");
    let v = run_verdict(&a, None).unwrap();
    assert_eq!(v.top, vec![0], "the oracle alone is the top head: {v:?}");
    let b = &v.heads[0];
    assert!(b.score > 0.999, "{b:?}");
    // The oracle sees the input frame only; pairs that first touch later in
    // the interval are missed, so its interval AUROC is high but below 1.
    assert!(b.auroc > 0.7 && b.auroc < 1.0, "{b:?}");
    assert_eq!(b.meets_bar, b.matched >= headlab_analysis::heads::bar::MATCHED_AUROC_MIN);
    // The uniform head knows nothing at matched distance (all ties: 0.5).
    assert!((v.heads[1].matched - 0.5).abs() < 1e-9 || v.heads[1].matched.is_nan(), "{:?}", v.heads[1]);
    // The baselines were computed on the same frames and stored.
    assert!(
        a.baselines.contains_key("distance")
            && a.baselines.contains_key("ballistic")
            && a.baselines.contains_key("_binning"),
        "{:?}",
        a.baselines.keys()
    );
    assert!(a.head_series(SeriesKey::IncrGain, 0, 0).unwrap().iter().all(|x| x.is_finite()));
    // Cached patterns: [L, H, P, F, N, N], rows of the uniform head sum to 1.
    let n = ds.n_particles;
    let p = a.pattern(1).unwrap();
    assert_eq!(p.len(), 2 * a.pattern_traj.len() * a.pattern_frames.len() * n * n);
    assert_eq!((a.pattern_traj.len(), a.pattern_frames.len()), (2, 25));

    // Probing again changes nothing, not even the file.
    let before = std::fs::read(&s1.analysis_path).unwrap();
    let s2 = probe_run_with(&run, &ds, Path::new("toy.h5"), &opts, &ctl, &load).unwrap();
    assert!(s2.probed.is_empty() && s2.skipped == 2);
    assert_eq!(std::fs::read(&s1.analysis_path).unwrap(), before);

    // A new checkpoint is added to the same evaluation set.
    fake_checkpoints(&run, &[5]);
    let s3 = probe_run_with(&run, &ds, Path::new("toy.h5"), &opts, &ctl, &load).unwrap();
    assert_eq!(s3.probed, vec![5]);
    let a3 = read_analysis(&s3.analysis_path, false).unwrap();
    assert_eq!(a3.steps, vec![0, 5, 10]);
    assert_eq!((a3.eval_traj.clone(), a3.eval_frame.clone()), (a.eval_traj.clone(), a.eval_frame.clone()));

    // Other options on the same file: a clear error naming --fresh.
    let other = ProbeOptions { contact_factor: 1.2, ..opts.clone() };
    let e = probe_run_with(&run, &ds, Path::new("toy.h5"), &other, &ctl, &load).unwrap_err().to_string();
    assert!(e.contains("--fresh") && e.contains("analysis.h5"), "{e}");
    // Bad options are rejected before anything runs.
    let bad = ProbeOptions { g_edges: vec![1.0, 0.5], ..opts };
    assert!(probe_run_with(&run, &ds, Path::new("toy.h5"), &bad, &ctl, &load)
        .unwrap_err()
        .to_string()
        .contains("g_edges"));
}

#[test]
fn probes_a_trained_model_twice_identically() {
    let ds = dataset();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = tiny_train_config(4);
    train(&cfg, &ds, &run, &RunOptions::default()).unwrap();
    let opts = ProbeOptions { eval_frames: 40, cache_frames: 8, ..Default::default() };
    let ctl = ProbeControl { device: headlab_model::DeviceSpec::Cpu, progress: false, ..Default::default() };
    let s = probe_run(&run, &ds, Path::new("toy.h5"), &opts, &ctl).unwrap();
    let n_ck = headlab_store::checkpoint::list_checkpoints(&run).unwrap().len();
    assert_eq!(s.probed.len(), n_ck);
    let a = read_analysis(&s.analysis_path, true).unwrap();
    assert_eq!((a.n_layers, a.n_heads), (cfg.model.n_layers, 2));
    // The evaluation frames come from the validation trajectories.
    let (_, val) = headlab_train::split_trajectories(ds.n_traj, cfg.val_fraction, cfg.seed).unwrap();
    assert!(a.eval_traj.iter().all(|t| val.contains(&(*t as usize))));
    // Softmax rows of the cached patterns sum to 1; entropies are within [0, ln N].
    let n = ds.n_particles;
    for row in a.pattern(0).unwrap().chunks(n) {
        let s: f32 = row.iter().sum();
        assert!((s - 1.0).abs() < 1e-4, "{s}");
    }
    let ent = a.head_series(SeriesKey::Entropy, 0, 0).unwrap();
    assert!(ent.iter().all(|&e| e > 0.0 && e <= (n as f64).ln() + 1e-9), "{ent:?}");
    let au = a.head_series(SeriesKey::AurocInterval, 1, 1).unwrap();
    assert!(au.iter().all(|&v| (0.0..=1.0).contains(&v)), "{au:?}");
    // A fresh probe into another file gives exactly the same numbers.
    let before = std::fs::read(&s.analysis_path).unwrap();
    let s2 = probe_run(&run, &ds, Path::new("toy.h5"), &opts, &ctl).unwrap();
    assert!(s2.probed.is_empty());
    assert_eq!(std::fs::read(&s.analysis_path).unwrap(), before);
    let s3 = probe_run(&run, &ds, Path::new("toy.h5"), &opts, &ProbeControl { fresh: true, ..ctl }).unwrap();
    assert_eq!(s3.probed.len(), n_ck);
    let b = read_analysis(&s3.analysis_path, true).unwrap();
    for (name, v) in &a.series {
        let w = &b.series[name];
        assert!(
            v.iter().zip(w).all(|(x, y)| x == y || (x.is_nan() && y.is_nan())),
            "{name} differs after a fresh probe"
        );
    }
    assert_eq!(a.patterns, b.patterns);
}
