//! Robustness of the `headlab` binary against hostile use (issue 15): one
//! writer per run folder, metrics consistent with checkpoints after a kill,
//! atomic and change-only config.toml, --fresh that keeps the old file on
//! failure, --out that does not destroy other files, a changed dataset
//! noticed, bad values refused by name, sizes bounded, signals handled,
//! broken pipes quiet. Tiny runs only (a few seconds each on one core).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop at the first failure
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_headlab");

/// A training config small enough for a test: 40 steps of a 16-wide model.
const TINY: &str = r#"
steps = 40
batch_size = 8
eval_interval = 10
device = "cpu"
threads = 1
val_fraction = 0.34
[model]
d_model = 16
n_heads = 2
[checkpoints]
count = 16
dense_start = 2
dense_end = 30
"#;

fn headlab(args: &[&str], cwd: &Path) -> Output {
    headlab_env(args, cwd, &[])
}

fn headlab_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(cwd).env("HEADLAB_TEST_THREADS", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running headlab")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn scene() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenes/demo.toml").to_string()
}

/// A folder with a tiny dataset `data.h5` and the tiny config `tiny.toml`.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let o = headlab(
        &[
            "simulate",
            "--scene",
            &scene(),
            "--trajectories",
            "6",
            "--frames",
            "16",
            "--out",
            "data.h5",
            "--quiet",
            "--seed",
            "1",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(dir.path().join("tiny.toml"), TINY).unwrap();
    dir
}

fn train(dir: &Path, out: &str, extra: &[&str]) -> Output {
    let mut a = vec!["train", "--data", "data.h5", "--out", out, "--config", "tiny.toml", "--quiet"];
    a.extend_from_slice(extra);
    headlab(&a, dir)
}

/// Metrics and checkpoints agree: train steps are exactly 1..=last, the
/// validation steps strictly increase, and the newest checkpoint is `last`.
fn assert_consistent(run: &Path, last: u64) {
    let m = headlab_store::metrics::read_metrics(&run.join("metrics.h5")).unwrap();
    let want: Vec<u64> = (1..=last).collect();
    assert_eq!(m.step, want, "train steps are not exactly 1..={last}");
    assert_eq!((m.loss.len(), m.lr.len(), m.grad_norm.len()), (m.step.len(), m.step.len(), m.step.len()));
    assert!(m.val_step.windows(2).all(|w| w[0] < w[1]), "validation steps repeat or go back: {:?}", m.val_step);
    assert_eq!(m.val_step.first(), Some(&0));
    let ck = headlab_store::checkpoint::list_checkpoints(run).unwrap();
    assert_eq!(ck.last().map(|c| c.0), Some(last));
    for (_, p) in &ck {
        headlab_store::checkpoint::read_checkpoint(p).unwrap();
    }
}

#[test]
fn one_writer_per_run_folder() {
    let dir = setup();
    let run = dir.path().join("run");
    // Held by this process: train, probe and report are refused, naming our PID.
    let lock = headlab_store::RunLock::acquire(&run, "test holder").unwrap();
    let pid = std::process::id().to_string();
    let o = train(dir.path(), "run", &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("PID {pid} (test holder)")) && t.contains("another headlab process"), "{t}");
    assert!(!run.join("config.toml").exists(), "the refused writer wrote into the folder");
    drop(lock);
    assert!(train(dir.path(), "run", &[]).status.success());
    let lock = headlab_store::RunLock::acquire(&run, "test holder").unwrap();
    for args in
        [&["probe", "run"][..], &["report", "run"][..], &["eval", "run", "--device", "cpu"][..], &["fit", "run"][..]]
    {
        let o = headlab(args, dir.path());
        assert!(o.status.code() == Some(1) && text(&o).contains(&format!("PID {pid}")), "{args:?}: {}", text(&o));
    }
    drop(lock);
    // A lock left by a killed process is taken over, with a note.
    std::fs::write(run.join(".lock"), "999999999\nheadlab probe\n").unwrap();
    let o = headlab(&["probe", "run", "--eval-frames", "8"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("PID 999999999 (headlab probe) left this run's lock"), "{}", text(&o));

    // Two real trainings started together on one folder: exactly one
    // trains it; the run is whole.
    let spawn = || {
        Command::new(BIN)
            .args(["train", "--data", "data.h5", "--out", "race", "--config", "tiny.toml", "--quiet"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "{}\n---\n{}", text(&a), text(&b));
    let loser = if a.status.success() { &b } else { &a };
    let lt = text(loser);
    assert!(lt.contains("another headlab process") || lt.contains("already holds"), "{lt}");
    assert!(!lt.contains("No such file") && !lt.contains("errno"), "{lt}");
    assert_consistent(&dir.path().join("race"), 40);
}

#[test]
fn a_kill_between_metrics_and_checkpoint_leaves_no_gap_or_duplicate() {
    let dir = setup();
    // Kill -9 right after the metrics of a checkpoint step are written and
    // before its checkpoint (the first after step 0: a resume from step 0
    // used to duplicate its validation entry; the last), and just after one.
    let steps = headlab_train::TrainConfig::from_toml(TINY, "tiny").unwrap().checkpoint_steps();
    assert!(steps.len() > 4 && steps[1] == 1, "{steps:?}");
    for (point, step) in [
        ("between-metrics-and-checkpoint", steps[1]),
        ("after-checkpoint", steps[steps.len() / 2]),
        ("between-metrics-and-checkpoint", steps[steps.len() - 1]),
    ] {
        let out = format!("run_{point}_{step}");
        let crash = format!("{point}:{step}");
        let mut a = vec!["train", "--data", "data.h5", "--out", out.as_str(), "--config", "tiny.toml", "--quiet"];
        let o = headlab_env(&a, dir.path(), &[("HEADLAB_CRASH_AT", crash.as_str())]);
        assert!(!o.status.success(), "{crash}: the crash hook did not fire: {}", text(&o));
        a.push("--resume");
        let o = headlab(&a, dir.path());
        assert!(o.status.success(), "{crash}: {}", text(&o));
        assert_consistent(&dir.path().join(&out), 40);
    }
}

#[test]
fn config_toml_is_rewritten_only_when_it_changes() {
    let dir = setup();
    assert!(train(dir.path(), "run", &["--steps", "20"]).status.success());
    let p = dir.path().join("run/config.toml");
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = (ino(&p), std::fs::read_to_string(&p).unwrap());
    assert!(before.1.contains("data_fingerprint = \"fx64:"), "{}", before.1);
    // The stored dataset path is absolute: a command run elsewhere finds it.
    let cfg = headlab_train::TrainConfig::load(&p).unwrap();
    assert!(Path::new(&cfg.data).is_absolute(), "{}", cfg.data);
    let o = headlab(&["train", "--out", "run", "--resume", "--quiet"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        (ino(&p), std::fs::read_to_string(&p).unwrap()),
        before,
        "a resume with the same settings rewrote config.toml"
    );
    let o = headlab(&["train", "--out", "run", "--resume", "--quiet", "--steps", "30"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(ino(&p), before.0);
    assert!(std::fs::read_to_string(&p).unwrap().contains("steps = 30"));
    let elsewhere = tempfile::tempdir().unwrap();
    let o = headlab(
        &["probe", dir.path().join("run").to_str().unwrap(), "--eval-frames", "8", "--device", "cpu"],
        elsewhere.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    // --resume of a folder without checkpoints is an error, not a new run.
    let o = headlab(&["train", "--data", "data.h5", "--out", "empty", "--config", "tiny.toml", "--resume"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("holds no checkpoint"), "{}", text(&o));
}

#[test]
fn fresh_keeps_the_old_file_when_it_fails() {
    let dir = setup();
    assert!(train(dir.path(), "run", &[]).status.success());
    let o = headlab(&["probe", "run", "--eval-frames", "8", "--device", "cpu"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let ap = dir.path().join("run/analysis.h5");
    let before = headlab_store::analysis::read_analysis(&ap, false).unwrap();
    let ck = headlab_store::checkpoint::list_checkpoints(&dir.path().join("run")).unwrap();
    assert!(ck.len() > 11, "want more checkpoints than one save interval: {}", ck.len());
    // The physics lens and the LLC have results too (on the first and last checkpoints for the LLC).
    let o = headlab(&["lens", "physics", "run", "--freeze-frames", "4", "--svm-queries", "4", "--quiet"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let (first, last) = (ck[0].0.to_string(), ck.last().unwrap().0.to_string());
    let steps = format!("{first},{last}");
    let llc = [
        "llc",
        "run",
        "--steps",
        steps.as_str(),
        "--draws",
        "20",
        "--chains",
        "2",
        "--batch-size",
        "8",
        "--device",
        "cpu",
    ];
    let o = headlab(&llc, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let lens_before = std::fs::read(dir.path().join("run/lens_physics.h5")).unwrap();
    let llc_before = std::fs::read(dir.path().join("run/llc.h5")).unwrap();
    // The newest checkpoint goes bad; redoing from scratch must fail and keep the old results.
    std::fs::write(&ck.last().unwrap().1, b"garbage").unwrap();
    let o = headlab(
        &["lens", "physics", "run", "--freeze-frames", "4", "--svm-queries", "4", "--quiet", "--fresh"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        std::fs::read(dir.path().join("run/lens_physics.h5")).unwrap(),
        lens_before,
        "lens physics --fresh lost results"
    );
    let o = headlab(&[&llc[..], &["--fresh"]].concat(), dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(std::fs::read(dir.path().join("run/llc.h5")).unwrap(), llc_before, "llc --fresh lost results");
    let o = headlab(&["probe", "run", "--eval-frames", "8", "--device", "cpu", "--fresh"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let after = headlab_store::analysis::read_analysis(&ap, false).unwrap();
    assert_eq!(after.steps, before.steps, "--fresh lost probed steps");
    // Bit patterns, so that NaN (e.g. a matched AUROC with too few pairs per bin) equals NaN.
    let bits = |a: &headlab_store::analysis::Analysis| {
        a.series
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&after), bits(&before), "--fresh changed the stored series");
    assert!(!dir.path().join("run/.analysis.h5.fresh").exists());
}

#[test]
fn outputs_never_destroy_other_files() {
    let dir = setup();
    assert!(train(dir.path(), "run", &["--steps", "5"]).status.success());
    let ck = headlab_store::checkpoint::list_checkpoints(&dir.path().join("run")).unwrap();
    let ck0 = ck[0].1.to_str().unwrap().to_string();
    let bytes = std::fs::read(&ck0).unwrap();
    let sc = scene();
    let sim = |out: &str, force: bool| {
        let mut a =
            vec!["simulate", "--scene", sc.as_str(), "--trajectories", "2", "--frames", "4", "--out", out, "--quiet"];
        if force {
            a.push("--force");
        }
        headlab(&a, dir.path())
    };
    for force in [false, true] {
        let o = sim(&ck0, force);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("ckpt/"), "{}", text(&o));
    }
    assert_eq!(std::fs::read(&ck0).unwrap(), bytes, "a checkpoint was overwritten");
    let o = sim("run/metrics.h5", false);
    assert!(
        o.status.code() == Some(1) && text(&o).contains("metrics file") && text(&o).contains("--force"),
        "{}",
        text(&o)
    );
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let o = sim("notes.txt", false);
    assert!(o.status.code() == Some(1) && text(&o).contains("not a headlab"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(), "mine");
    // eval --out onto the run's dataset is refused; onto a rollout it is fine.
    let data = std::fs::read(dir.path().join("data.h5")).unwrap();
    let o = headlab(
        &["eval", "run", "--device", "cpu", "--horizon", "3", "--rollouts", "1", "--out", "data.h5"],
        dir.path(),
    );
    assert!(o.status.code() == Some(1) && text(&o).contains("simulated dataset, not a rollout"), "{}", text(&o));
    assert_eq!(std::fs::read(dir.path().join("data.h5")).unwrap(), data);
    for _ in 0..2 {
        let o = headlab(
            &["eval", "run", "--device", "cpu", "--horizon", "3", "--rollouts", "1", "--out", "ro.h5"],
            dir.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    // Seeds and sizes TOML cannot hold are refused by name, before any work.
    for (args, want) in [
        (&["llc", "run", "--seed", "9223372036854775808", "--device", "cpu"][..], "`seed` = 9223372036854775808"),
        (&["probe", "run", "--eval-frames", "9223372036854775808"][..], "`eval_frames`"),
    ] {
        let o = headlab(args, dir.path());
        assert!(
            o.status.code() == Some(1) && text(&o).contains(want) && !text(&o).contains("panicked"),
            "{args:?}: {}",
            text(&o)
        );
    }
    // A same-kind overwrite (re-simulating) is allowed, and a run then
    // notices that its dataset changed.
    let o = sim("data.h5", false);
    assert!(o.status.success(), "{}", text(&o));
    let o = headlab(&["probe", "run", "--device", "cpu"], dir.path());
    assert!(
        o.status.code() == Some(1) && text(&o).contains("not the dataset") && text(&o).contains("--allow-other-data"),
        "{}",
        text(&o)
    );
    let o = headlab(&["train", "--out", "run", "--resume", "--steps", "8", "--quiet"], dir.path());
    assert!(o.status.code() == Some(1) && text(&o).contains("not the dataset"), "{}", text(&o));
}

#[test]
fn bad_values_are_refused_by_name() {
    let dir = setup();
    let d = dir.path();
    let mut ds = headlab_store::dataset::read_dataset(&d.join("data.h5")).unwrap();
    let good = ds.clone();
    ds.positions[2 * ds.n_frames * ds.n_particles * 2 + 7] = f32::NAN; // traj 2, frame 0, particle 3, y
    headlab_store::dataset::write_dataset(&d.join("nan.h5"), &ds).unwrap();
    let mut ds = good.clone();
    ds.masses[5] = 0.0;
    headlab_store::dataset::write_dataset(&d.join("mass0.h5"), &ds).unwrap();
    let mut ds = good;
    ds.radii[1] = -0.05;
    headlab_store::dataset::write_dataset(&d.join("negr.h5"), &ds).unwrap();
    for (file, key, value) in [
        ("nan.h5", "positions[2, 0, 3, 1]", "NaN"),
        ("mass0.h5", "masses[0, 5]", "is 0"),
        ("negr.h5", "radii[0, 1]", "-0.05"),
    ] {
        let o = headlab(&["train", "--data", file, "--out", "r", "--config", "tiny.toml"], d);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains(file) && t.contains(key) && t.contains(value), "{file}: {t}");
    }
    // Sizes beyond the machine, seeds beyond TOML, absurd thread counts.
    let sc = scene();
    let cases: [(&[&str], &str); 6] = [
        (&["train", "--data", "data.h5", "--out", "r", "--batch-size", "10000000000"], "batch_size"),
        (&["train", "--data", "data.h5", "--out", "r", "--seed", "9223372036854775808"], "seed"),
        (&["train", "--data", "data.h5", "--out", "r", "--steps", "18446744073709551615"], "steps"),
        (&["train", "--data", "data.h5", "--out", "r", "--threads", "100000"], "threads"),
        (&["simulate", "--scene", &sc, "--frames", "10000000000", "--out", "big.h5"], "of memory"),
        (&["simulate", "--scene", &sc, "--threads", "100000", "--out", "big.h5"], "threads"),
    ];
    for (args, want) in cases {
        let t0 = Instant::now();
        let o = headlab(args, d);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(want) && !t.contains("panicked"), "{args:?}: {t}");
        assert!(t0.elapsed() < Duration::from_secs(30), "{args:?} took {:?}", t0.elapsed());
    }
    assert!(!d.join("big.h5").exists() && !d.join("r/ckpt").exists());
    // A scene whose masses underflow f32 is refused at load, naming density.
    let text_scene = std::fs::read_to_string(scene()).unwrap();
    let light: String = text_scene
        .lines()
        .map(|l| if l.trim_start().starts_with("density") { "density = 1e-60".to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(light.contains("density = 1e-60"), "the demo scene has no density line");
    std::fs::write(d.join("light.toml"), light).unwrap();
    let o = headlab(&["simulate", "--scene", "light.toml", "--out", "l.h5", "--quiet"], d);
    assert!(o.status.code() == Some(1) && text(&o).contains("density") && text(&o).contains("f32"), "{}", text(&o));
}

#[test]
fn a_non_finite_stop_names_a_finite_checkpoint_and_the_value() {
    let dir = setup();
    let o = train(dir.path(), "run", &["--lr", "1e100"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("became non-finite"), "{t}");
    let last = t
        .split("The last good checkpoint (all weights finite) is ")
        .nth(1)
        .and_then(|s| s.split(". ").next())
        .unwrap_or_else(|| panic!("{t}"));
    let ck = headlab_store::checkpoint::read_checkpoint(&dir.path().join(last)).unwrap_or_else(|e| panic!("{e}: {t}"));
    assert!(
        t.contains("weight ") && t.contains(" became non-finite") && (t.contains("inf ") || t.contains("NaN ")),
        "the message does not say which value: {t}"
    );
    assert!(ck.params.iter().all(|a| a.data.iter().all(|v| v.is_finite())), "{last} holds non-finite weights");
    // Every checkpoint written is finite (none "good" with inf weights).
    for (_, p) in headlab_store::checkpoint::list_checkpoints(&dir.path().join("run")).unwrap() {
        let ck = headlab_store::checkpoint::read_checkpoint(&p).unwrap();
        assert!(
            ck.params.iter().all(|a| a.data.iter().all(|v| v.is_finite())),
            "{} holds non-finite weights",
            p.display()
        );
    }
}

/// Start a long training and wait for its first checkpoints.
fn long_training(dir: &Path, out: &str) -> std::process::Child {
    long_training_with(dir, out, &[], &[])
}

fn long_training_with(dir: &Path, out: &str, extra: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let child = Command::new(BIN)
        .args(["train", "--data", "data.h5", "--out", out, "--config", "tiny.toml", "--steps", "1000000", "--quiet"])
        .args(extra)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while headlab_store::checkpoint::list_checkpoints(&dir.join(out)).unwrap().len() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(120), "training wrote no checkpoints");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a child we started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

#[test]
fn sigterm_and_sighup_checkpoint_and_stop_a_later_second_signal_exits_130() {
    let dir = setup();
    for (sig, name) in [(libc::SIGTERM, "term"), (libc::SIGHUP, "hup")] {
        let child = long_training(dir.path(), name);
        std::thread::sleep(Duration::from_millis(300));
        signal(child.id(), sig);
        let o = child.wait_with_output().unwrap();
        let t = text(&o);
        assert!(o.status.success(), "{name}: {t}");
        assert!(t.contains("stopped at step"), "{name}: {t}");
        let step: u64 =
            t.split("stopped at step ").nth(1).and_then(|s| s.split(':').next()).and_then(|s| s.parse().ok()).unwrap();
        assert_consistent(&dir.path().join(name), step);
    }
    // One request passed on as several signals (Slurm signals training and
    // the task script, which passes SIGTERM on): a clean stop, not an abort.
    let child = long_training_with(dir.path(), "scancel", &[], &[("HEADLAB_TEST_STOP_DELAY_MS", "300")]);
    signal(child.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(20));
    signal(child.id(), libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success() && text(&o).contains("stopped at step"), "{}", text(&o));
    let step: u64 = text(&o)
        .split("stopped at step ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert_consistent(&dir.path().join("scancel"), step);
    // A second signal a while later, while the first one is being handled
    // (here: training held 5 s before its final checkpoint): exit 130 at
    // once; every checkpoint file left is whole.
    let mut child = long_training_with(dir.path(), "twice", &[], &[("HEADLAB_TEST_STOP_DELAY_MS", "5000")]);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    signal(child.id(), libc::SIGINT);
    let mut seen = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("no 'interrupted' message after SIGINT");
        let done = line.contains("interrupted:");
        seen.push(line);
        if done {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    signal(child.id(), libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    for (_, p) in headlab_store::checkpoint::list_checkpoints(&dir.path().join("twice")).unwrap() {
        headlab_store::checkpoint::read_checkpoint(&p).unwrap();
    }
    let o = headlab(&["train", "--out", "twice", "--resume", "--steps", "100", "--quiet"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_closed_pipe_is_a_quiet_exit() {
    let dir = setup();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("'{BIN}' inspect data.h5 | true; '{BIN}' --help | true"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}
