//! The test scene shared by the viewer's tests: five disks in a row, left
//! to right, in a 2D box, and an attention cache with one layer of two heads
//! that differ only in where query 0 looks (head 0 at particle 1, head 1 at
//! particle 4). Particle k moves at speed 0.5·k.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use headlab_sim::dataset::{Dataset, DatasetMeta};
use headlab_store::analysis::{write_analysis, Analysis};
use headlab_store::series::SeriesKey;

pub const N: usize = 5;
pub const FRAMES: usize = 4;

/// Writes DIR/dataset.h5 and DIR/run/analysis.h5; returns (dataset, run folder).
pub fn write_scene(dir: &Path) -> (PathBuf, PathBuf) {
    let d = 2;
    let mut positions = Vec::new();
    let mut velocities = Vec::new();
    for f in 0..FRAMES {
        for k in 0..N {
            positions.extend([1.0 + 2.0 * k as f32 + 0.01 * f as f32, 5.0]);
            velocities.extend([0.5 * k as f32, 0.0]);
        }
    }
    let ds = Dataset {
        n_traj: 1,
        n_frames: FRAMES,
        n_particles: N,
        meta: DatasetMeta {
            dt: 0.001,
            stride: 10,
            dimension: d,
            box_size: vec![10.0, 10.0],
            gravity: 0.0,
            spring_k: 1e4,
            damping: 0.0,
            restitution: f64::NAN,
            contact_time: 0.01,
            seed: 0,
            scene_toml: "# test scene\n".into(),
        },
        positions,
        velocities,
        radii: vec![0.5; N],
        masses: vec![1.0; N],
        events: vec![],
    };
    let data = dir.join("dataset.h5");
    headlab_store::dataset::write_dataset(&data, &ds).unwrap();

    // Patterns [L=1, H=2, P=1, F=2, N, N]: uniform rows, except query 0.
    let frames = 2;
    let mut pat = vec![1.0 / N as f32; 2 * frames * N * N];
    for (head, target) in [(0usize, 1usize), (1, 4)] {
        for f in 0..frames {
            let base = (head * frames + f) * N * N;
            for j in 0..N {
                pat[base + j] = 0.0;
            }
            pat[base] = 0.1;
            pat[base + target] = 0.9;
        }
    }
    let mut series = BTreeMap::new();
    series.insert(SeriesKey::ScoreExclNormInterval.name().to_string(), vec![0.8, -0.1]);
    let an = Analysis {
        config_toml: String::new(),
        dataset: data.display().to_string(),
        n_layers: 1,
        n_heads: 2,
        n_particles: N,
        eval_traj: vec![0],
        eval_frame: vec![0],
        steps: vec![100],
        series,
        baselines: BTreeMap::new(),
        g_edges: vec![0.0, 1.0],
        g: vec![1.0; 2],
        g_excl: vec![1.0; 2],
        g_count: vec![1; 2],
        pattern_traj: vec![0],
        pattern_frames: vec![0, 1],
        patterns: vec![pat],
        fits: BTreeMap::new(),
    };
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    write_analysis(&run.join("analysis.h5"), &an).unwrap();
    (data, run)
}
