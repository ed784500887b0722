//! Opening what a user points the viewer at: datasets, rollouts (with and
//! without their ground truth), run folders with and without analysis.h5,
//! and files it cannot show. No window needed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{write_scene, FRAMES, N};
use headlab_viewer::data::{open, particle_scores};

#[test]
fn dataset_run_and_analysis_open() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = write_scene(dir.path());

    let r = open(&data, None).unwrap();
    assert_eq!((r.truth.n_particles, r.truth.n_frames), (N, FRAMES));
    assert!(r.attention.is_none() && r.rollout.is_none());

    for p in [run.clone(), run.join("analysis.h5")] {
        let r = open(&p, None).unwrap();
        let c = r.attention.as_ref().expect("attention cache");
        assert_eq!((c.n_layers, c.n_heads, c.steps.as_slice()), (1, 2, &[100u64][..]));
        assert_eq!(c.slot(0, 1), Some((0, 1)));
        assert_eq!(c.slot(0, 2), None, "frame 2 is not cached");
        assert!((c.head_score(0, 0, 0) - 0.8).abs() < 1e-12);
    }

    // The cached row of query 0 under head 1 puts 0.9 on particle 4.
    let mut r = open(&run, None).unwrap();
    let c = r.attention.as_mut().unwrap();
    let pats = c.patterns(0).unwrap();
    let pat = c.frame_pattern(&pats, 0, 1, (0, 0));
    assert_eq!(pat[4], 0.9);
    // With particle 4 as its only partner, query 0 scores (1 − 1/4)/(1 − 1/4) = 1.
    let s = particle_scores(pat, N, &[(0, 4)]);
    assert!((s[0] - 1.0).abs() < 1e-6, "{s:?}");
}

#[test]
fn rollout_opens_beside_its_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = write_scene(dir.path());
    let ds = headlab_store::dataset::read_dataset(&data).unwrap();
    let ro = dir.path().join("rollout.h5");
    headlab_store::dataset::write_rollout(&ro, &ds, &data, &[0]).unwrap();

    let r = open(&ro, None).unwrap();
    assert_eq!(r.truth_path, data);
    let rollout = r.rollout.as_ref().expect("rollout beside the truth");
    assert_eq!(rollout.for_truth(0), Some(0));
    assert_eq!(rollout.for_truth(1), None);

    // Ground truth gone: the rollout alone, with a note that says so.
    std::fs::rename(&data, dir.path().join("moved.h5")).unwrap();
    let r = open(&ro, None).unwrap();
    assert!(r.rollout.is_none());
    assert!(r.notes.iter().any(|n| n.contains("--dataset")), "{:?}", r.notes);
    // … and --dataset brings it back.
    let r = open(&ro, Some(&dir.path().join("moved.h5"))).unwrap();
    assert!(r.rollout.is_some());
}

#[test]
fn run_without_analysis_uses_its_config_and_says_how_to_probe() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = write_scene(dir.path());
    let run = dir.path().join("bare");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join("config.toml"), format!("data = \"{}\"\n", data.display())).unwrap();
    let r = open(&run, None).unwrap();
    assert!(r.attention.is_none());
    assert!(r.notes.iter().any(|n| n.contains("headlab probe")), "{:?}", r.notes);

    // A folder that is not a run.
    let e = open(&dir.path().join("nothing"), None).err().unwrap().to_string();
    assert!(e.contains("nothing") && e.contains("no such file"), "{e}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = open(&empty, None).err().unwrap().to_string();
    assert!(e.contains("empty") && e.contains("not a headlab run"), "{e}");
}

#[test]
fn files_the_viewer_cannot_show_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = write_scene(dir.path());
    // A metrics file (any headlab kind other than dataset/analysis).
    let m = dir.path().join("metrics.h5");
    let f = hdf5::File::create(&m).unwrap();
    let kind: hdf5::types::VarLenUnicode = "metrics".parse().unwrap();
    f.new_attr::<hdf5::types::VarLenUnicode>().shape(()).create("kind").unwrap().write_scalar(&kind).unwrap();
    f.new_attr::<u32>().shape(()).create("format_version").unwrap().write_scalar(&1u32).unwrap();
    drop(f);
    let e = open(&m, None).err().unwrap().to_string();
    assert!(e.contains("metrics.h5") && e.contains("metrics file") && e.contains("run folder"), "{e}");

    // An analysis whose particle count does not match the dataset given.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let ds = headlab_store::dataset::read_dataset(&data).unwrap();
    let mut fewer = ds.clone();
    fewer.n_particles = 3;
    fewer.positions = (0..FRAMES).flat_map(|f| ds.positions[f * N * 2..f * N * 2 + 6].to_vec()).collect();
    fewer.velocities = fewer.positions.clone();
    fewer.radii.truncate(3);
    fewer.masses.truncate(3);
    let small = other.join("small.h5");
    headlab_store::dataset::write_dataset(&small, &fewer).unwrap();
    let e = open(&run, Some(&small)).err().unwrap().to_string();
    assert!(e.contains("n_particles is 5") && e.contains("small.h5") && e.contains("3 particles"), "{e}");
}

#[test]
fn an_empty_dataset_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = write_scene(dir.path());
    let mut ds = headlab_store::dataset::read_dataset(&data).unwrap();
    ds.n_traj = 0;
    ds.positions.clear();
    ds.velocities.clear();
    ds.radii.clear();
    ds.masses.clear();
    let empty = dir.path().join("empty.h5");
    headlab_store::dataset::write_dataset(&empty, &ds).unwrap();
    let e = open(&empty, None).err().unwrap().to_string();
    assert!(e.contains("empty.h5") && e.contains("0 trajectories") && e.contains("nothing to show"), "{e}");
}
