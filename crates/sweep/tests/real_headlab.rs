//! A tiny sweep (2 seeds) with the real `headlab` binary (simulate -> train
//! -> probe -> report) through Slurm and locally: the same seeds give the
//! same weights. (The 4-run, kill/resume and failure cases run with the
//! stand-in binary in tests/sweep.rs, where they take a few seconds.)
//! Skipped with a message when the binary (target/debug/headlab, or
//! $HEADLAB_BIN) or its subcommands are not there yet, or when the scene
//! (scenes/demo.toml, or $HEADLAB_SWEEP_SCENE) is missing; the Slurm half
//! is skipped when Slurm is not running (tools/slurm-up).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use headlab_store::checkpoint::{list_checkpoints, read_checkpoint};
use headlab_sweep::{local, slurm, Sweep};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn headlab_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("HEADLAB_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"));
        target.join("debug/headlab")
    });
    let has = |sub: &str| {
        Command::new(&bin)
            .args([sub, "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    (bin.exists() && ["simulate", "train", "probe", "report"].iter().all(|s| has(s))).then_some(bin)
}

fn skip(why: &str) {
    eprintln!("SKIPPED real-headlab sweep test: {why}");
}

fn sweep_file(dir: &Path, scene: &Path, bin: &Path) -> PathBuf {
    let text = format!(
        r#"
scene = "{scene}"
simulate_args = ["--trajectories", "6", "--frames", "12", "--seed", "1"]
out = "slurm"
seeds = [1, 2]
[base]
steps = 16
batch_size = 8
eval_interval = 12
val_samples = 16
val_fraction = 0.34
device = "cpu"
[base.model]
n_layers = 1
n_heads = 2
d_model = 16
[base.checkpoints]
count = 4
dense_start = 4
dense_end = 12
[run]
headlab = "{bin}"
probe_args = ["--eval-frames", "16", "--cache-frames", "4", "--device", "cpu"]
report_args = ["--bootstrap", "20"]
[slurm]
poll_seconds = 0.5
"#,
        scene = scene.display(),
        bin = bin.display()
    );
    let p = dir.join("tiny.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Final weights of every run, by run name.
fn final_weights(sweep: &Sweep) -> Vec<(String, u64, Vec<f32>)> {
    sweep
        .runs
        .iter()
        .map(|r| {
            let cks = list_checkpoints(&sweep.run_dir(r)).unwrap();
            let (step, path) = cks.last().unwrap().clone();
            let ck = read_checkpoint(&path).unwrap();
            let flat: Vec<f32> = ck.params.iter().flat_map(|p| p.data.iter().copied()).collect();
            (r.name.clone(), step, flat)
        })
        .collect()
}

#[test]
fn tiny_real_sweep_slurm_and_local_agree() {
    let Some(bin) = headlab_bin() else {
        return skip("no headlab binary with simulate/train/probe/report (build it: cargo build -p headlab)");
    };
    let scene =
        std::env::var_os("HEADLAB_SWEEP_SCENE").map(PathBuf::from).unwrap_or_else(|| repo().join("scenes/demo.toml"));
    if !scene.exists() {
        return skip(&format!("no scene file {}", scene.display()));
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), &scene, &bin);
    let quiet = |jobs| local::LocalOptions { jobs, retry_failed: false, progress: false };

    // Local, two at a time: the reference.
    let local_sweep = Sweep::load(&file, Some(tmp.path().join("local")), bin.clone()).unwrap();
    assert_eq!(local_sweep.runs.len(), 2);
    let summary = local::run(&local_sweep, &quiet(2)).unwrap();
    assert!(summary.all_done(), "{}", summary.render());
    for r in &local_sweep.runs {
        assert!(local_sweep.run_dir(r).join("analysis.h5").exists(), "{} was probed", r.name);
    }
    let reference = final_weights(&local_sweep);
    assert!(reference.iter().all(|(_, step, w)| *step == 16 && !w.is_empty()));
    // Different seeds give different weights.
    assert_ne!(reference[0].2, reference[1].2);

    let second = if slurm::available() {
        let s = Sweep::load(&file, None, bin.clone()).unwrap();
        slurm::submit(&s, &slurm::SlurmOptions::default()).unwrap();
        let summary = slurm::follow(&s, Duration::from_millis(500), Some(Duration::from_secs(300)), |_| {}).unwrap();
        assert!(summary.all_done(), "{}", summary.render());
        s
    } else {
        skip("Slurm is not running (tools/slurm-up); comparing two local sweeps instead");
        let s = Sweep::load(&file, Some(tmp.path().join("local1")), bin.clone()).unwrap();
        assert!(local::run(&s, &quiet(1)).unwrap().all_done());
        s
    };
    assert_eq!(final_weights(&second), reference, "same seeds, same weights");
    second.report().unwrap();
    let index = second.dir.join("report/index.html");
    assert!(index.exists(), "no pooled report at {}", index.display());
}
