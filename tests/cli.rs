//! End-to-end tests of the `headlab` binary, as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
use std::path::Path;
use std::process::{Command, Output};

fn headlab(args: &[&str], cwd: &Path) -> Output {
    let out =
        Command::new(env!("CARGO_BIN_EXE_headlab")).args(args).current_dir(cwd).output().expect("running headlab");
    out
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn demo_at_tiny_size_runs_every_step_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "demo",
        "--out",
        "d",
        "--trajectories",
        "12",
        "--frames",
        "24",
        "--steps",
        "60",
        "--eval-frames",
        "24",
        "--bootstrap",
        "10",
        "--threads",
        "1",
    ];
    let o = headlab(&args, dir.path());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for step in [
        "[1/7] simulate",
        "[2/7] train",
        "[3/7] probe",
        "[4/7] fit",
        "[5/7] lens physics",
        "[6/7] ablate",
        "[7/7] report",
    ] {
        assert!(t.contains(step), "missing {step}: {t}");
    }
    let run = dir.path().join("d/run");
    assert!(run.join("config.toml").exists());
    assert!(run.join("metrics.h5").exists());
    assert!(run.join("analysis.h5").exists());
    assert!(run.join("lens_physics.h5").exists());
    assert!(run.join("ablation.h5").exists());
    let index = run.join("report/index.html");
    assert!(index.exists(), "{t}");
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(html.contains("<img") || html.contains("<svg"), "report has no figures");
    // The honest last word names a head, either way.
    assert!(
        t.contains("Collision head(s) meeting the bar") || t.contains("No head meets the collision-head bar"),
        "{t}"
    );
    assert!(t.contains("distance-matched AUROC ≥"), "the verdict states the bar: {t}");
    assert!(t.contains("report: "), "{t}");

    // Every checkpoint is a readable headlab file.
    let ckpts: Vec<_> = std::fs::read_dir(run.join("ckpt")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(ckpts.len() >= 3, "only {} checkpoints", ckpts.len());
    let o = headlab(&["inspect", ckpts[0].to_str().unwrap()], dir.path());
    assert!(o.status.success() && text(&o).contains("checkpoint"), "{}", text(&o));

    // eval writes a rollout that records its ground truth (the viewer shows them side by side).
    let o = headlab(&["eval", "d/run", "--rollouts", "2", "--horizon", "5", "--device", "cpu"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let ro: Vec<_> = std::fs::read_dir(run.join("eval")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(ro.len(), 1, "{ro:?}");
    let (src, trajs) =
        headlab_store::dataset::read_rollout_source(&ro[0]).unwrap().expect("rollout records its source");
    assert!(src.is_absolute() && src.exists(), "{}", src.display());
    // (this tiny run has fewer validation trajectories than asked for)
    let info = headlab_store::dataset::read_dataset_meta(&ro[0]).unwrap();
    assert!(
        !trajs.is_empty() && trajs.len() <= 2 && trajs.len() == info.n_traj,
        "{trajs:?}, {} trajectories",
        info.n_traj
    );

    // A device that is not there is a clear error (exit 1), not a libtorch panic,
    // in every command that runs the model; `cuda` only where no GPU is present.
    let no_cuda = headlab_model::DeviceSpec::Cuda(None).resolve().is_err();
    for dev in ["cuda", "cuda:99"] {
        if dev == "cuda" && !no_cuda {
            continue;
        }
        let cmds: [&[&str]; 6] = [
            &["train", "--data", "d/data.h5", "--out", "d/run_dev", "--steps", "5", "--device", dev],
            &["probe", "d/run", "--fresh", "--device", dev],
            &["eval", "d/run", "--device", dev],
            &["llc", "d/run", "--device", dev],
            &["lens", "physics", "d/run", "--device", dev],
            &["demo", "--out", "d_dev", "--device", dev],
        ];
        for cmd in cmds {
            let o = headlab(cmd, dir.path());
            let t = text(&o);
            assert_eq!(o.status.code(), Some(1), "{cmd:?}: {t}");
            assert!(
                t.contains(&format!("--device {dev}: no CUDA device"))
                    && t.contains("tch::Cuda::device_count() = ")
                    && t.contains("cpu or auto"),
                "{cmd:?}: {t}"
            );
            assert!(!t.contains("panicked"), "{cmd:?}: {t}");
        }
        assert!(!dir.path().join("d_dev/data.h5").exists(), "the demo simulated before checking the device");
    }
    // A device name that is not one is a usage error (exit 2) naming the choices.
    let o = headlab(&["eval", "d/run", "--device", "gpu"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("auto, cpu, cuda or cuda:N"), "{}", text(&o));

    // Running the demo again resumes: the dataset is reused, nothing new to
    // probe. The stored steps are each checkpoint once, and the series are
    // the same values as before (a re-probe would duplicate or recompute).
    let read = || headlab_store::analysis::read_analysis(&run.join("analysis.h5"), false).unwrap();
    let before = read();
    let ckpt_steps: Vec<u64> =
        headlab_store::checkpoint::list_checkpoints(&run).unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(before.steps, ckpt_steps, "analysis.h5 steps are not the run's checkpoints");
    let o = headlab(&args[..], dir.path());
    let t2 = text(&o);
    assert!(o.status.success(), "{t2}");
    assert!(t2.contains(&format!("probed 0 checkpoint(s), {} already done", ckpt_steps.len())), "{t2}");
    let after = read();
    assert_eq!(after.steps, before.steps, "re-running the demo changed the probed steps");
    assert_eq!(after.series, before.series, "re-running the demo changed the probe's series");
}

#[test]
fn bad_scene_value_is_named_with_file_key_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenes/demo.toml")).unwrap();
    // Replace the particle count with a negative radius range.
    let bad: String = good
        .lines()
        .map(
            |l| if l.trim_start().starts_with("radius") { "radius = [-0.04, 0.07]".to_string() } else { l.to_string() },
        )
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&scene, bad).unwrap();
    let o = headlab(&["simulate", "--scene", scene.to_str().unwrap(), "--out", "x.h5"], dir.path());
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.contains("bad.toml") && t.contains("radius") && t.contains("-0.04"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    assert!(!dir.path().join("x.h5").exists());
}

#[test]
fn unknown_scene_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("typo.toml");
    let good = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenes/demo.toml")).unwrap();
    std::fs::write(&scene, format!("gravty = 2.0\n{good}")).unwrap();
    let o = headlab(&["simulate", "--scene", scene.to_str().unwrap(), "--out", "x.h5"], dir.path());
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.contains("typo.toml") && t.contains("gravty"), "{t}");
}

#[test]
fn inspect_rejects_foreign_and_truncated_files_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.h5"), b"this is not HDF5").unwrap();
    let o = headlab(&["inspect", "junk.h5"], dir.path());
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.contains("junk.h5") && t.starts_with("error:"), "{t}");
    assert!(!t.contains("panicked"), "{t}");

    let o = headlab(
        &[
            "simulate",
            "--out",
            "ok.h5",
            "--trajectories",
            "2",
            "--frames",
            "5",
            "--scene",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenes/demo.toml"),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = headlab(&["inspect", "ok.h5"], dir.path());
    let t = text(&o);
    assert!(o.status.success() && t.contains("dataset") && t.contains("positions") && t.contains("energy"), "{t}");
    let bytes = std::fs::read(dir.path().join("ok.h5")).unwrap();
    std::fs::write(dir.path().join("cut.h5"), &bytes[..bytes.len() / 2]).unwrap();
    let o = headlab(&["inspect", "cut.h5"], dir.path());
    let t = text(&o);
    assert!(!o.status.success() && t.contains("cut.h5") && !t.contains("panicked"), "{t}");
}

#[test]
fn view_passes_its_arguments_to_the_viewer_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_headlab"))
        .args(["view", "some/run", "--head", "1.1", "--help"])
        .env("HEADLAB_VIEWER", "/bin/echo")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "some/run --head 1.1 --help");
    // Without a viewer binary: a message saying how to build it.
    let out = Command::new(env!("CARGO_BIN_EXE_headlab"))
        .args(["view", "x"])
        .env("HEADLAB_VIEWER", dir.path().join("missing-viewer"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("missing-viewer") && t.contains("cargo build -p headlab-viewer") && t.contains("tools/headlab view"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let o = headlab(&["--help"], dir.path());
    let top = text(&o);
    assert!(o.status.success());
    for sub in [
        "demo", "simulate", "inspect", "train", "eval", "probe", "ablate", "fit", "report", "llc", "sweep", "study",
        "lens",
    ] {
        assert!(top.contains(sub), "top-level help lacks {sub}");
        let o = headlab(&[sub, "--help"], dir.path());
        assert!(o.status.success(), "{sub} --help failed: {}", text(&o));
        assert!(text(&o).contains("Usage:"), "{sub}");
    }
}

#[test]
fn lens_scaling_modes_are_refused_together() {
    let dir = tempfile::tempdir().unwrap();
    // (arguments, the two options the message must name)
    let cases: [(&[&str], &str, &str); 4] = [
        (&["lens", "scaling", "--run", "r", "--physics"], "--run", "--physics"),
        (&["lens", "scaling", "--physics", "--ns", "8,64"], "--ns", "--physics"),
        (&["lens", "scaling", "--run", "r", "--d", "8"], "--d", "--run"),
        (&["lens", "scaling", "--run", "r", "--out", "o"], "--out", "--run"),
    ];
    for (args, a, b) in cases {
        let o = headlab(args, dir.path());
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains("cannot be used with") && t.contains(a) && t.contains(b), "{args:?}: {t}");
    }
    // An option of one mode without that mode is refused too, naming the mode.
    let o = headlab(&["lens", "scaling", "--particles", "16"], dir.path());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("required") && t.contains("--physics"), "{t}");
    let o = headlab(&["lens", "scaling", "--max-checkpoints", "3"], dir.path());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("required") && t.contains("--run"), "{t}");
    // Nothing was written.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `headlab study` at tiny size: two seeds through the sweep machinery,
/// probed, fitted one by one (both time axes) and summarized over seeds,
/// with a constant learning rate after warm-up.
#[test]
fn study_at_tiny_size_fits_seeds_and_gives_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let scene = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenes/demo.toml");
    let o =
        headlab(&["simulate", "--scene", scene, "--trajectories", "8", "--frames", "16", "--out", "d.h5"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let cfg = "batch_size = 8\neval_interval = 20\nval_samples = 16\nval_fraction = 0.25\ndevice = \"cpu\"\nthreads = 1\n[schedule]\nwarmup = 5\n[model]\nn_layers = 1\nn_heads = 2\nd_model = 16\n[checkpoints]\ncount = 12\ndense_start = 5\ndense_end = 30\n";
    std::fs::write(dir.path().join("tiny.toml"), cfg).unwrap();
    let args = [
        "study",
        "--data",
        "d.h5",
        "--seeds",
        "2",
        "--config",
        "tiny.toml",
        "--steps",
        "40",
        "--jobs",
        "2",
        "--eval-frames",
        "12",
        "--bootstrap",
        "5",
        "--out",
        "st",
        "--llc-checkpoints",
        "2",
        "--llc-draws",
        "24",
        "--llc-ladder-draws",
        "12",
    ];
    let o = headlab(&args, dir.path());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let st = dir.path().join("st");
    // Constant learning rate after warm-up in every seed's config.
    let runs: Vec<_> = std::fs::read_dir(st.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for r in &runs {
        let c = std::fs::read_to_string(r.join("config.toml")).unwrap();
        assert!(c.contains("kind = \"constant\""), "{c}");
        assert!(r.join("analysis.h5").exists());
    }
    let words = std::fs::read_to_string(st.join("study.txt")).unwrap();
    assert!(words.contains("Verdict over 2 seeds") && words.contains("cumulative learning rate"), "{words}");
    // The LLC around emergence: estimated per seed, or the reason why not.
    assert!(words.contains("Local learning coefficient around emergence"), "{words}");
    assert!(t.contains("against training step: ") && t.contains("report: "), "{t}");
    let html = std::fs::read_to_string(st.join("report/index.html")).unwrap();
    assert!(html.contains("Across seeds") && html.contains("over seeds"));
    // The prediction of the emergence step is in the report (evaluated, or why not).
    assert!(html.contains("Predicting the emergence step"), "no prediction section");
    // --predict-from on the finished study: no training, predictions printed and stored.
    let pf: Vec<&str> = args.iter().copied().chain(["--predict-from", "20"]).collect();
    let o = headlab(&pf, dir.path());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("extrapolate") && t.contains("loss_clock") && t.contains("predict_from_20.toml"), "{t}");
    let stored = std::fs::read_to_string(st.join("predict_from_20.toml")).unwrap();
    assert!(stored.contains("[[cases]]") && stored.contains("predictor = \"loss_clock\""), "{stored}");
    // Bad values are refused before anything runs, saying why.
    for (v, why) in [("0", "--predict-from 0"), ("40", "not before the end of training (40 steps)")] {
        let bad: Vec<&str> = args.iter().copied().chain(["--predict-from", v]).collect();
        let o = headlab(&bad, dir.path());
        assert!(!o.status.success() && text(&o).contains(why), "{}", text(&o));
    }
    // One seed is refused with the reason.
    let o = headlab(&["study", "--data", "d.h5", "--seeds", "1"], dir.path());
    assert!(!o.status.success() && text(&o).contains("at least 2 seeds"), "{}", text(&o));
}

// ---- issue 20: the front binary `headlab` loads no libtorch; `headlab-torch`
// runs the subcommands that need it, exec'd by the front with the same argv.

/// The shared libraries the dynamic loader opens to start `bin` with `args`
/// (glibc's LD_DEBUG=libs), or None where the loader does not report them.
fn loaded_libraries(bin: &str, args: &[&str], cwd: &Path) -> Option<Vec<String>> {
    let out = Command::new(bin)
        .args(args)
        .env("LD_DEBUG", "libs")
        .env_remove("LD_LIBRARY_PATH")
        .current_dir(cwd)
        .output()
        .expect("running a headlab binary");
    let libs: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.split("find library=").nth(1))
        .filter_map(|l| l.split(';').next())
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    (!libs.is_empty()).then_some(libs)
}

/// The DT_NEEDED entries of `bin` (readelf -d), or None without readelf.
fn needed_entries(bin: &str) -> Option<Vec<String>> {
    let out = Command::new("readelf").args(["-d", bin]).output().ok().filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1).and_then(|s| s.split(']').next()).map(String::from))
            .collect(),
    )
}

fn is_torch_lib(name: &str) -> bool {
    name.starts_with("libtorch") || name.starts_with("libc10")
}

#[test]
fn front_binary_starts_without_libtorch_and_the_torch_binary_links_it() {
    let dir = tempfile::tempdir().unwrap();
    let front = env!("CARGO_BIN_EXE_headlab");
    let torch = env!("CARGO_BIN_EXE_headlab-torch");
    match (needed_entries(front), needed_entries(torch)) {
        (Some(f), Some(t)) => {
            assert!(!f.iter().any(|l| is_torch_lib(l)), "headlab (the front) links libtorch: NEEDED {f:?}");
            // The check can fail: the torch binary does link it.
            assert!(t.iter().any(|l| l == "libtorch_cpu.so"), "headlab-torch does not link libtorch_cpu: NEEDED {t:?}");
        }
        _ => eprintln!("readelf not found: skipping the DT_NEEDED check (the loader check below still runs)"),
    }
    // What the loader actually opens, for commands that must not need libtorch.
    for args in [&["--help"][..], &["inspect", "missing.h5"], &["train", "--help"], &["fit", "notarun"]] {
        let Some(libs) = loaded_libraries(front, args, dir.path()) else {
            eprintln!("the dynamic loader does not report libraries (LD_DEBUG): skipping the run-time check");
            return;
        };
        assert!(!libs.iter().any(|l| is_torch_lib(l)), "headlab {args:?} loads {libs:?}");
    }
    let libs = loaded_libraries(torch, &["--version"], dir.path()).unwrap_or_default();
    assert!(libs.iter().any(|l| l == "libtorch_cpu.so"), "headlab-torch loads {libs:?}");
}

#[test]
fn torch_subcommands_run_in_headlab_torch_with_the_same_arguments_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    // Through the front and run directly: the same words and exit code.
    for args in [&["probe", "notarun"][..], &["llc", "notarun", "--device", "cpu"], &["lens", "physics", "notarun"]] {
        let via_front = headlab(args, dir.path());
        let direct =
            Command::new(env!("CARGO_BIN_EXE_headlab-torch")).args(args).current_dir(dir.path()).output().unwrap();
        assert_eq!(via_front.status.code(), Some(1), "{args:?}: {}", text(&via_front));
        assert_eq!(via_front.status.code(), direct.status.code(), "{args:?}");
        assert_eq!(text(&via_front), text(&direct), "{args:?}");
        assert!(text(&via_front).contains("notarun") && !text(&via_front).contains("panicked"), "{}", text(&via_front));
    }
    // The arguments reach headlab-torch verbatim and its exit code comes back.
    let fake = dir.path().join("fake-torch");
    std::fs::write(&fake, "#!/bin/sh\necho \"args: $*\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_headlab"))
        .args(["-v", "train", "--data", "a b.h5", "--out", "r"])
        .env("HEADLAB_TORCH", &fake)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "args: -v train --data a b.h5 --out r");
    // Argument errors and --help never need it: answered by the front.
    let o = Command::new(env!("CARGO_BIN_EXE_headlab"))
        .args(["train", "--no-such-flag"])
        .env("HEADLAB_TORCH", &fake)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--no-such-flag") && !text(&o).contains("args:"), "{}", text(&o));
    // Without headlab-torch: a message saying how to build it.
    let o = Command::new(env!("CARGO_BIN_EXE_headlab"))
        .args(["probe", "notarun"])
        .env("HEADLAB_TORCH", dir.path().join("missing-torch"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("missing-torch") && t.contains("cargo build -p headlab") && !t.contains("panicked"), "{t}");
}

// A stale headlab-torch beside a newer headlab would run old code: the front
// passes its build identity, and headlab-torch refuses a different one.
#[test]
fn headlab_torch_refuses_a_front_of_another_build() {
    let dir = tempfile::tempdir().unwrap();
    let front = env!("CARGO_BIN_EXE_headlab");
    let torch = env!("CARGO_BIN_EXE_headlab-torch");
    let version = |bin: &str| {
        let o = Command::new(bin).arg("--version").output().unwrap();
        assert!(o.status.success(), "{bin} --version: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    // Both print the build identity, `<version>+<hash>`, the same in both.
    let v = version(front);
    assert_eq!(v, version(torch));
    let id = v.strip_prefix("headlab ").unwrap_or_default().to_string();
    assert!(id.starts_with(env!("CARGO_PKG_VERSION")) && id.contains('+'), "--version: {v}");
    // The front hands it (and its own path) to the binary it execs.
    let fake = dir.path().join("fake-torch");
    std::fs::write(&fake, "#!/bin/sh\necho \"$HEADLAB_FRONT_BUILD|$HEADLAB_FRONT_EXE\"\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = Command::new(front).args(["probe", "r"]).env("HEADLAB_TORCH", &fake).output().unwrap();
    let front_path = std::fs::canonicalize(front).unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("{id}|{}", front_path.display()), "{}", text(&o));
    // Another build: refused before any work, naming both binaries and the remedy.
    let old = "/opt/old/bin/headlab";
    let o = Command::new(torch)
        .args(["probe", "notarun"])
        .env("HEADLAB_FRONT_BUILD", "0.0.1+00000000deadbeef")
        .env("HEADLAB_FRONT_EXE", old)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let torch_path = std::fs::canonicalize(torch).unwrap().display().to_string();
    for needle in
        [torch_path.as_str(), old, "0.0.1+00000000deadbeef", id.as_str(), "different builds", "cargo build -p headlab"]
    {
        assert!(t.contains(needle), "{needle:?} not in: {t}");
    }
    assert!(!t.contains("notarun") && !t.contains("panicked"), "{t}");
    // The same build, and no variable at all (run directly): as before.
    let run = |build: Option<&str>| {
        let mut c = Command::new(torch);
        c.args(["probe", "notarun"]).current_dir(dir.path());
        if let Some(b) = build {
            c.env("HEADLAB_FRONT_BUILD", b);
        }
        c.output().unwrap()
    };
    let (same, direct) = (run(Some(&id)), run(None));
    assert_eq!(same.status.code(), Some(1));
    assert_eq!(text(&same), text(&direct));
    assert!(text(&direct).contains("notarun") && !text(&direct).contains("different builds"), "{}", text(&direct));
}
