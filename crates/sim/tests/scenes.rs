//! Every scene in scenes/ parses, validates, round-trips and simulates.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
use headlab_sim::{simulate, Scene, SimOptions};

#[test]
fn all_scene_files_are_valid_and_run() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let sc = Scene::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Scene::from_toml_str(&sc.to_toml().unwrap(), "resolved").unwrap(), sc);
        let ds = simulate(&sc, SimOptions { n_traj: 2, n_frames: 3, seed: 0, threads: 1 }, None).unwrap();
        assert_eq!(ds.positions.len(), 2 * 3 * sc.n_particles * sc.dimension);
        names.push(p.file_name().unwrap().to_string_lossy().to_string());
    }
    names.sort();
    for want in ["billiards.toml", "box3d.toml", "demo.toml", "dense2d.toml", "pile.toml"] {
        assert!(names.iter().any(|n| n == want), "scenes/{want} is missing");
    }
}
