//! Dataset files: round trip, determinism across thread counts, clear errors
//! for corrupt or foreign files, and reading back with h5py.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::Path;

use headlab_sim::{simulate, Scene, SimOptions};
use headlab_store::dataset::{read_dataset, read_dataset_meta, read_rollout_source, write_dataset, write_rollout};

const SCENE: &str = headlab_sim::scene::TEST_DENSE2D;

fn small(threads: usize) -> headlab_sim::Dataset {
    let sc = Scene::from_toml_str(SCENE, "test.toml").unwrap();
    simulate(&sc, SimOptions { n_traj: 4, n_frames: 30, seed: 7, threads }, None).unwrap()
}

#[test]
fn roundtrip_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.h5");
    let ds = small(2);
    assert!(!ds.events.is_empty());
    write_dataset(&p, &ds).unwrap();
    let back = read_dataset(&p).unwrap();
    // NaN restitution would break ==; this scene has e = 0.8.
    assert_eq!(back, ds);
    let info = read_dataset_meta(&p).unwrap();
    assert_eq!((info.n_traj, info.n_frames, info.n_particles, info.n_events), (4, 30, 16, ds.events.len()));
    assert_eq!(info.meta, ds.meta);
    // The stored scene reproduces the dataset.
    let sc = Scene::from_toml_str(&info.meta.scene_toml, "stored").unwrap();
    assert_eq!((sc.trajectories, sc.frames, sc.seed), (4, 30, 7));
}

#[test]
fn rollout_records_its_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let ds = small(1);
    let plain = dir.path().join("d.h5");
    write_dataset(&plain, &ds).unwrap();
    assert_eq!(read_rollout_source(&plain).unwrap(), None);
    let ro = dir.path().join("rollout.h5");
    write_rollout(&ro, &ds, &plain, &[3, 1, 0, 2]).unwrap();
    assert_eq!(read_dataset(&ro).unwrap(), ds);
    assert_eq!(read_rollout_source(&ro).unwrap(), Some((plain.clone(), vec![3, 1, 0, 2])));
    // One source per trajectory, or a clear error naming the key.
    let e = write_rollout(&dir.path().join("bad.h5"), &ds, &plain, &[0]).unwrap_err().to_string();
    assert!(e.contains("source_traj") && e.contains("4"), "{e}");
    assert!(!dir.path().join("bad.h5").exists());
}

#[test]
fn byte_identical_files_with_1_and_2_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.h5"), dir.path().join("b.h5"));
    write_dataset(&a, &small(1)).unwrap();
    write_dataset(&b, &small(2)).unwrap();
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(ba.len() > 10_000);
    assert!(ba == bb, "dataset files differ between 1 and 2 threads");
}

fn err_of(p: &Path) -> String {
    read_dataset(p).expect_err("must be rejected").to_string()
}

#[test]
fn truncated_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trunc.h5");
    write_dataset(&p, &small(1)).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(&p);
    assert!(e.contains("trunc.h5"), "{e}");
    let e = read_dataset_meta(&p).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("trunc.h5"), "{e}");
    // Garbage bytes.
    std::fs::write(&p, b"definitely not HDF5").unwrap();
    let e = err_of(&p);
    assert!(e.contains("trunc.h5") && e.contains("cannot open"), "{e}");
}

#[test]
fn foreign_hdf5_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("foreign.h5");
    {
        let f = hdf5::File::create(&p).unwrap();
        f.new_dataset::<f32>().shape([3]).create("positions").unwrap();
    }
    let e = err_of(&p);
    assert!(e.contains("foreign.h5") && e.contains("kind"), "{e}");
}

#[test]
fn missing_or_malformed_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("partial.h5");
    // A dataset-kind file with positions but nothing else.
    headlab_store::atomic_write(&p, headlab_store::FileKind::Dataset, |f| {
        headlab_store::h5util::write_array(f, &p, "positions", &[0f32; 8], &[1, 2, 2, 2])
    })
    .unwrap();
    let e = err_of(&p);
    assert!(e.contains("partial.h5") && e.contains("dt"), "{e}");
    // Wrong kind of headlab file.
    let q = dir.path().join("metrics.h5");
    headlab_store::atomic_write(&q, headlab_store::FileKind::Metrics, |_| Ok(())).unwrap();
    let e = err_of(&q);
    assert!(e.contains("metrics.h5") && e.contains("expected `dataset`"), "{e}");
    // A bad event kind inside an otherwise fine file.
    let r = dir.path().join("badevent.h5");
    let mut ds = small(1);
    write_dataset(&r, &ds).unwrap();
    {
        let f = hdf5::File::open_rw(&r).unwrap();
        let ev = f.dataset("events").unwrap();
        let mut rows: Vec<headlab_store::dataset::EventRow> = ev.read_raw().unwrap();
        rows[0].kind = 9;
        ev.write_raw(&rows).unwrap();
    }
    let e = err_of(&r);
    assert!(e.contains("badevent.h5") && e.contains("events[0].kind") && e.contains('9'), "{e}");
    // Shapes that disagree.
    let s = dir.path().join("shape.h5");
    write_dataset(&s, &ds).unwrap();
    {
        let f = hdf5::File::open_rw(&s).unwrap();
        f.unlink("radii").unwrap();
        f.new_dataset::<f32>().shape([1, ds.n_particles]).create("radii").unwrap();
    }
    let e = err_of(&s);
    assert!(e.contains("shape.h5") && e.contains("radii") && e.contains("[1, 16]"), "{e}");
    ds.n_traj = 0;
}

#[test]
fn h5py_reads_the_dataset() {
    let Some(py) = headlab_testkit::python_or_skip("h5py_reads_the_dataset") else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("py.h5");
    let ds = small(1);
    write_dataset(&p, &ds).unwrap();
    let script = r#"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["kind"] == "dataset", f.attrs["kind"]
pos, vel = f["positions"], f["velocities"]
assert pos.shape == (4, 30, 16, 2) and pos.dtype == np.float32, (pos.shape, pos.dtype)
assert vel.shape == pos.shape
assert f["radii"].shape == (4, 16) and f["masses"].shape == (4, 16)
ev = f["events"][...]
assert set(ev.dtype.names) == {"traj", "step", "i", "j", "kind"}, ev.dtype
assert ev.dtype["step"] == np.uint64 and ev.dtype["kind"] == np.uint8
assert f["events"].attrs["kind_names"].split(",") == ["contact-start", "contact-end", "wall-start", "wall-end"]
for key in ["dt", "stride", "frame_dt", "dimension", "gravity", "spring_k", "damping", "restitution", "contact_time", "seed"]:
    assert key in f.attrs, key
assert abs(f.attrs["frame_dt"] - f.attrs["dt"] * f.attrs["stride"]) < 1e-12
assert list(f.attrs["box"]) == [0.75, 0.75]
assert "spring_k = 300.0" in f.attrs["scene"]
print(len(ev), float(pos[1, 2, 3, 1]), int(ev["step"][0]), int(ev["kind"].max()))
"#;
    let out = std::process::Command::new(&py).arg("-c").arg(script).arg(&p).output().expect("run HEADLAB_PYTHON");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h5py check failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    let parts: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(parts[0].parse::<usize>().unwrap(), ds.events.len());
    assert_eq!(parts[1].parse::<f32>().unwrap(), ds.positions[ds.idx(1, 2, 3) + 1]);
    assert_eq!(parts[2].parse::<u64>().unwrap(), ds.events[0].step);
    assert_eq!(parts[3].parse::<u8>().unwrap(), ds.events.iter().map(|e| e.kind as u8).max().unwrap());
}
