//! End-to-end test of `headlab ablate` on a tiny run: errors a user can
//! make, the file it writes, resuming, and the report's causal section.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop at the first failure
use std::path::Path;
use std::process::{Command, Output};

use headlab_analysis::ablation::{read_ablation, Kind};

fn headlab(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headlab")).args(args).current_dir(cwd).output().expect("running headlab")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let o = headlab(args, cwd);
    let t = text(&o);
    assert!(o.status.success(), "{args:?}: {t}");
    t
}

fn fails(args: &[&str], cwd: &Path, needles: &[&str]) {
    let o = headlab(args, cwd);
    let t = text(&o);
    assert!(!o.status.success(), "{args:?} should fail: {t}");
    assert!(!t.contains("panicked"), "{args:?}: {t}");
    for n in needles {
        assert!(t.contains(n), "{args:?}: `{n}` not in: {t}");
    }
}

#[test]
fn ablate_a_tiny_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scene = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenes/demo.toml");
    ok(
        &[
            "simulate",
            "--scene",
            scene,
            "--trajectories",
            "40",
            "--frames",
            "24",
            "--out",
            "data.h5",
            "--threads",
            "1",
            "--quiet",
        ],
        d,
    );
    ok(
        &[
            "train",
            "--data",
            "data.h5",
            "--out",
            "run",
            "--steps",
            "40",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--quiet",
        ],
        d,
    );
    fails(&["ablate", "run", "--device", "cpu"], d, &["analysis.h5", "headlab probe"]);
    ok(&["probe", "run", "--eval-frames", "24", "--cache-frames", "0", "--device", "cpu"], d);
    fails(&["ablate", "run", "--kinds", "zero,bogus"], d, &["bogus", "off-self", "geo-distance"]);
    fails(&["ablate", "run", "--group", "L5.H0"], d, &["L5.H0", "layers"]);
    fails(&["ablate", "run", "--steps", "7777"], d, &["7777", "no checkpoint"]);

    let steps: Vec<u64> =
        headlab_store::checkpoint::list_checkpoints(&d.join("run")).unwrap().iter().map(|c| c.0).collect();
    let last = *steps.last().unwrap();
    let pick = format!("{},{last}", steps[steps.len() / 2]);
    let args = [
        "ablate",
        "run",
        "--steps",
        &pick,
        "--group",
        "L1.H0,L1.H1",
        "--bootstrap",
        "100",
        "--rollouts",
        "2",
        "--patch-pairs",
        "6",
        "--train-frames",
        "32",
        "--device",
        "cpu",
    ];
    let t = ok(&args, d);
    assert!(t.contains("ablated 2 checkpoint(s)"), "{t}");
    let a = read_ablation(&d.join("run/ablation.h5")).unwrap();
    assert_eq!(a.steps, vec![steps[steps.len() / 2], last]);
    assert_eq!(a.kinds.len(), 7);
    let group = a.group().expect("the group is a target");
    assert_eq!(group.heads, vec![(1, 0), (1, 1)]);
    // Zeroing a whole layer changes the prediction; the interval (over the 4
    // validation trajectories) brackets the estimate.
    let (tl, kz) = (a.target_index("L0").unwrap(), a.kind_index(Kind::Zero).unwrap());
    let e = a.onestep_est("free_ratio", 1, tl, kz);
    assert!(e.value.is_finite() && e.value != 1.0, "{e:?}");
    assert!(e.lo <= e.value && e.value <= e.hi, "{e:?}");
    // Rollouts at the final checkpoint: 2 of them; frames 24 < 50, so only the 10-frame error.
    let r = a.rollout.as_ref().expect("rollouts");
    assert_eq!((r.step, r.n_rollouts), (last, 2));
    assert!(a.rollout_est("pos_ratio_10", tl, kz).value.is_finite());
    assert!(a.rollout_est("pos_ratio_50", tl, kz).value.is_nan());
    // Patching: the last layer's residual stream at the query fixes the
    // query's output completely, so it restores (and destroys) all of the difference.
    let p = a.patching.as_ref().expect("patching");
    if p.n_pairs > 0 {
        let i = p.sites.iter().position(|s| s == "L1.resid").unwrap();
        assert!(
            (p.denoise[i * 3] - 1.0).abs() < 1e-3 && (p.noise[i * 3] - 1.0).abs() < 1e-3,
            "{:?}",
            &p.denoise[i * 3..i * 3 + 3]
        );
    }

    // Again: nothing new. Other options: refused, with the way out.
    let t = ok(&args, d);
    assert!(t.contains("ablated 0 checkpoint(s) (2 already done)"), "{t}");
    fails(&["ablate", "run", "--steps", &pick, "--kinds", "zero", "--device", "cpu"], d, &["ablation.h5", "--fresh"]);

    // eval --ablate writes the same rollouts with a head ablated, for the viewer.
    let t = ok(&["eval", "run", "--rollouts", "2", "--horizon", "5", "--ablate", "L1.H0:zero", "--device", "cpu"], d);
    assert!(t.contains("with L1.H0 ablated (zero)"), "{t}");
    let f = d.join(format!("run/eval/ablated_step_{last:08}_L1.H0_zero.h5"));
    let ro = headlab_store::dataset::read_dataset(&f).unwrap();
    let intact = headlab_store::dataset::read_dataset(&d.join(format!("run/eval/rollout_step_{last:08}.h5"))).unwrap();
    assert_eq!((ro.n_traj, ro.n_frames), (intact.n_traj, intact.n_frames));
    assert_ne!(ro.positions, intact.positions, "zeroing L1.H0 left the rollout unchanged");
    fails(&["eval", "run", "--ablate", "L1.H0:oracle", "--device", "cpu"], d, &["oracle", "true contact partners"]);

    // The report shows the causal evidence.
    ok(&["report", "run"], d);
    let html = std::fs::read_to_string(d.join("run/report/index.html")).unwrap();
    assert!(
        html.contains("Causal evidence") && html.contains("ablation_effects.png") && html.contains("patching.png"),
        "no causal section"
    );
    assert!(d.join("run/report").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with("ablation_effects.png")));
}
