//! Sweeps end to end with a stand-in headlab binary (tests/fake-headlab): a
//! deterministic toy "training" that checkpoints every step and resumes.
//! The local backend always runs; the Slurm tests need a running Slurm
//! (tools/slurm-up) and are skipped with a message otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use headlab_sweep::status::{self, RunStatus, State};
use headlab_sweep::{local, slurm, Sweep};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fake_headlab() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fake-headlab")
}

/// Writes a sweep file in `dir` and loads it; `extra` is appended.
fn sweep_in(dir: &Path, extra: &str) -> Sweep {
    std::fs::write(dir.join("data.h5"), "fake").unwrap();
    let text = format!(
        r#"
data = "data.h5"
out = "sweep"
seeds = [1, 2]
[base]
steps = 4
step_ms = 50
[grid]
lr = [1, 3]
[run]
headlab = "{}"
[slurm]
poll_seconds = 0.3
{extra}
"#,
        fake_headlab().display()
    );
    let path = dir.join("sweep.toml");
    std::fs::write(&path, text).unwrap();
    Sweep::load(&path, None, PathBuf::from("headlab")).unwrap()
}

fn results(sweep: &Sweep) -> Vec<(String, String)> {
    sweep
        .runs
        .iter()
        .map(|r| (r.name.clone(), std::fs::read_to_string(sweep.run_dir(r).join("result.txt")).unwrap_or_default()))
        .collect()
}

fn quiet(jobs: usize) -> local::LocalOptions {
    local::LocalOptions { jobs, retry_failed: false, progress: false }
}

fn starts(run_dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(run_dir.join("train-starts.txt"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// The same toy training computed here: the expected result of a run.
fn expected(seed: u64, lr: u64, steps: u64) -> String {
    let mut x = seed;
    for step in 1..=steps {
        x = (x * 31 + lr * 7 + step) % 1000003;
    }
    format!("{x}\n")
}

#[test]
fn local_sweep_runs_everything_then_skips_finished_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_in(tmp.path(), "");
    assert_eq!(sweep.runs.len(), 4);
    let summary = local::run(&sweep, &quiet(2)).unwrap();
    assert!(summary.all_done(), "{}", summary.render());
    for r in &sweep.runs {
        let dir = sweep.run_dir(r);
        let lr = r.params["lr"].as_integer().unwrap() as u64;
        assert_eq!(std::fs::read_to_string(dir.join("result.txt")).unwrap(), expected(r.seed, lr, 4), "{}", r.name);
        // The full resolved config is in the run folder.
        let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("config.toml")).unwrap()).unwrap();
        assert_eq!(cfg["lr"].as_integer(), Some(lr as i64));
        assert_eq!(cfg["steps"].as_integer(), Some(4));
        assert_eq!(cfg["seed"].as_integer(), Some(r.seed as i64));
        assert_eq!(cfg["threads"].as_integer(), Some(1), "threads pinned to slurm.cpus");
        assert_eq!(cfg["data"].as_str(), Some(tmp.path().join("data.h5").to_str().unwrap()));
        let st = status::read(&dir).unwrap();
        assert_eq!(st.state, State::Done);
        assert_eq!(st.exit_code, Some(0));
        assert!(dir.join("analysis.txt").exists(), "probe ran");
    }
    // Names come from the parameters.
    assert_eq!(sweep.runs[0].name, "lr=1,seed=1");
    // Resubmitting runs nothing again.
    let again = local::run(&sweep, &quiet(2)).unwrap();
    assert_eq!(again.done.len(), 4);
    for r in &sweep.runs {
        assert_eq!(starts(&sweep.run_dir(r)), vec![0], "{} trained once", r.name);
    }
    sweep.report().unwrap();
    let html = std::fs::read_to_string(sweep.dir.join("report/index.html")).unwrap();
    for r in &sweep.runs {
        assert!(html.contains(&r.name), "report lists {}", r.name);
    }
}

#[test]
fn local_failure_is_reported_with_exit_code_and_retried_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_in(tmp.path(), "");
    // Make lr=3 fail: a list entry would change the names, so edit the base
    // through a grid over `fail` instead.
    let mut file = sweep.file.clone();
    file.grid.insert("fail".into(), vec![toml::Value::Boolean(false), toml::Value::Boolean(true)]);
    file.grid.remove("lr");
    file.seeds = Some(vec![5]);
    let sweep = Sweep::new(file, Some(tmp.path().join("s2")), "s2", PathBuf::from("headlab"), tmp.path()).unwrap();
    let summary = local::run(&sweep, &quiet(2)).unwrap();
    assert_eq!(summary.done, vec!["fail=false,seed=5".to_string()]);
    assert_eq!(summary.failed.len(), 1);
    let f = summary.failed[0].status.clone().unwrap();
    assert_eq!(f.exit_code, Some(7));
    assert_eq!(f.step.as_deref(), Some("train"));
    let log = f.log.unwrap();
    assert!(std::fs::read_to_string(&log).unwrap().contains("fake failure at step 2"), "{}", log.display());
    let text = summary.render();
    assert!(text.contains("exit code 7") && text.contains(&log.display().to_string()), "{text}");
    // Without --retry-failed it stays failed and is not rerun.
    local::run(&sweep, &quiet(2)).unwrap();
    assert_eq!(status::read(&summary.failed[0].dir).unwrap().attempt, 1);
    let retried = local::run(&sweep, &local::LocalOptions { retry_failed: true, ..quiet(2) }).unwrap();
    assert_eq!(retried.failed.len(), 1);
    assert_eq!(status::read(&summary.failed[0].dir).unwrap().attempt, 2);
    // The run that succeeded was not touched.
    assert_eq!(starts(&sweep.dir.join("runs/fail=false,seed=5")), vec![0]);
}

#[test]
fn local_interrupted_run_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_in(tmp.path(), "");
    let mut file = sweep.file.clone();
    file.base.insert("steps".into(), toml::Value::Integer(8));
    file.base.insert("step_ms".into(), toml::Value::Integer(150));
    file.seeds = Some(vec![9]);
    file.grid.insert("lr".into(), vec![toml::Value::Integer(2)]);
    let sweep = Sweep::new(file, None, "x", PathBuf::from("headlab"), tmp.path()).unwrap();
    sweep.prepare().unwrap();
    let dir = sweep.run_dir(&sweep.runs[0]);
    let mut child = std::process::Command::new("bash").arg(dir.join("task.sh")).spawn().unwrap();
    // Wait for the second checkpoint, then stop it like Ctrl-C/scancel would.
    let ck = dir.join("ckpt/step_00000002.h5");
    for _ in 0..200 {
        if ck.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(ck.exists());
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let code = child.wait().unwrap();
    assert_eq!(code.code(), Some(143));
    let st = status::read(&dir).unwrap();
    assert_eq!(st.state, State::Interrupted);
    assert_eq!(st.step.as_deref(), Some("train"));
    assert!(!dir.join("result.txt").exists());
    let summary = local::run(&sweep, &quiet(1)).unwrap();
    assert!(summary.all_done(), "{}", summary.render());
    let s = starts(&dir);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0], 0);
    assert!(s[1] >= 2, "resumed from step {} (checkpoint 2 existed)", s[1]);
    assert_eq!(std::fs::read_to_string(dir.join("result.txt")).unwrap(), expected(9, 2, 8));
    assert_eq!(status::read(&dir).unwrap().attempt, 2);
}

#[test]
fn a_run_whose_process_died_silently_counts_as_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_in(tmp.path(), "");
    sweep.prepare().unwrap();
    let dir = sweep.run_dir(&sweep.runs[1]);
    // "running" on this host with a PID that no longer exists (SIGKILL, OOM).
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let mut st = RunStatus::new(State::Running);
    st.host = Some(status::hostname());
    st.pid = Some(pid);
    status::write(&dir, &st).unwrap();
    // And one that is really running: this test process.
    let live_dir = sweep.run_dir(&sweep.runs[2]);
    let mut live = st.clone();
    live.pid = Some(std::process::id());
    status::write(&live_dir, &live).unwrap();
    let states = slurm::reconcile(&sweep);
    assert_eq!(states[1].state(), Some(State::Interrupted));
    assert_eq!(status::read(&dir).unwrap().state, State::Interrupted);
    assert_eq!(states[2].state(), Some(State::Running));
    assert_eq!(headlab_sweep::to_launch(&states, false), vec![0, 1, 3]);
}

#[test]
fn dry_run_prints_runs_and_sbatch_script_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_in(
        tmp.path(),
        "cpus = 2\nmem = \"3G\"\ntime = \"00:10:00\"\ngres = \"gpu:1\"\npartition = \"gpu\"\naccount = \"lab\"\nthrottle = 2\nextra = [\"--constraint=a100\", \"#SBATCH --exclusive\"]",
    );
    let text = slurm::dry_run(&sweep, &slurm::SlurmOptions::default(), 3).unwrap();
    assert!(!sweep.dir.exists(), "dry run wrote {}", sweep.dir.display());
    for r in &sweep.runs {
        assert!(text.contains(&r.name));
    }
    for want in [
        "#SBATCH --array=0-2%2",
        "#SBATCH --array=0-0%2",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=3G",
        "#SBATCH --time=00:10:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --constraint=a100",
        "#SBATCH --exclusive",
        "#SBATCH --signal=B:TERM@90",
        "after the previous chunk",
        "task.sh",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    for (t, secs, lead) in
        [("30", 1800, 90), ("5:00", 300, 75), ("1-12", 129_600, 90), ("00:01:00", 60, 15), ("0:20", 20, 10)]
    {
        assert_eq!(slurm::slurm_time_seconds(t), Some(secs), "{t}");
        assert_eq!(slurm::signal_lead_seconds(t), Some(lead), "{t}");
    }
    assert_eq!(slurm::slurm_time_seconds("UNLIMITED"), None);
    // 4 runs with arrays of at most 3: two chunks.
    assert_eq!(text.matches("#!/bin/bash").count(), 2);
    // Every #SBATCH line comes before the first command.
    for script in text.split("#!/bin/bash").skip(1) {
        let first_cmd = script.lines().position(|l| l.starts_with("set -u")).unwrap();
        let last_opt =
            script.lines().enumerate().filter(|(_, l)| l.starts_with("#SBATCH")).map(|(i, _)| i).last().unwrap();
        assert!(last_opt < first_cmd);
    }
}

// ---------------------------------------------------------------- Slurm

/// Whether Slurm answers (asked once per test binary: an absent controller
/// takes sinfo several seconds to give up on). With HEADLAB_REQUIRE_SLURM=1
/// (CI, after tools/slurm-up) a missing Slurm fails the test instead.
fn slurm_or_skip(test: &str) -> bool {
    static UP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *UP.get_or_init(slurm::available) {
        return true;
    }
    if std::env::var("HEADLAB_REQUIRE_SLURM").is_ok_and(|v| v == "1") {
        panic!("{test}: HEADLAB_REQUIRE_SLURM=1 but Slurm is not running (tools/slurm-up starts it)");
    }
    eprintln!("SKIPPED {test}: Slurm is not running here (start a local one with tools/slurm-up)");
    false
}

fn follow(sweep: &Sweep) -> headlab_sweep::Summary {
    slurm::follow(sweep, Duration::from_millis(300), Some(Duration::from_secs(120)), |_| {}).unwrap()
}

#[test]
fn slurm_sweep_completes_reports_and_matches_local() {
    if !slurm_or_skip("slurm_sweep_completes_reports_and_matches_local") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Arrays of at most 3 tasks: the 4 runs go in two chunks.
    let sweep = sweep_in(tmp.path(), "max_array_size = 3");
    let subs = slurm::submit(&sweep, &slurm::SlurmOptions::default()).unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0].runs.len() + subs[1].runs.len(), 4);
    let summary = follow(&sweep);
    assert!(summary.all_done(), "{}", summary.render());
    for r in &sweep.runs {
        let st = status::read(&sweep.run_dir(r)).unwrap();
        assert!(st.slurm_job.as_deref().unwrap().contains('_'), "ran as an array task: {st:?}");
    }
    sweep.report().unwrap();
    let html = std::fs::read_to_string(sweep.dir.join("report/index.html")).unwrap();
    assert_eq!(html.matches("<tr>").count(), 4);
    // Resubmitting submits nothing.
    assert!(slurm::submit(&sweep, &slurm::SlurmOptions::default()).unwrap().is_empty());
    // The same sweep through the local backend: identical per-run results.
    let local_sweep =
        Sweep::new(sweep.file.clone(), Some(tmp.path().join("local")), "l", PathBuf::from("headlab"), tmp.path())
            .unwrap();
    assert!(local::run(&local_sweep, &quiet(2)).unwrap().all_done());
    let (a, b) = (results(&sweep), results(&local_sweep));
    assert!(a.iter().all(|(_, r)| !r.is_empty()));
    assert_eq!(a, b);
}

#[test]
fn slurm_failing_task_is_reported_with_exit_code() {
    if !slurm_or_skip("slurm_failing_task_is_reported_with_exit_code") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_in(tmp.path(), "");
    let mut file = sweep.file.clone();
    file.grid.remove("lr");
    file.grid.insert("fail".into(), vec![toml::Value::Boolean(true)]);
    file.seeds = Some(vec![4]);
    let sweep = Sweep::new(file, None, "f", PathBuf::from("headlab"), tmp.path()).unwrap();
    slurm::submit(&sweep, &slurm::SlurmOptions::default()).unwrap();
    let summary = follow(&sweep);
    assert_eq!(summary.failed.len(), 1, "{}", summary.render());
    let st = summary.failed[0].status.clone().unwrap();
    assert_eq!(st.exit_code, Some(7));
    assert!(std::fs::read_to_string(st.log.unwrap()).unwrap().contains("fake failure"));
    // Slurm agrees on the exit code, once the task has ended there too (the
    // status file is written a moment before the task's shell exits).
    let job = st.slurm_job.unwrap();
    for _ in 0..100 {
        let info = slurm::job_info(job.split('_').next().unwrap());
        match info.get(&job) {
            Some(kv) if matches!(kv["JobState"].as_str(), "RUNNING" | "COMPLETING" | "PENDING") => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(kv) => {
                assert_eq!(kv["ExitCode"], "7:0");
                assert_eq!(kv["JobState"], "FAILED");
                break;
            }
            None => break,
        }
    }
    assert!(summary.render().contains("exit code 7"));
    // Not resubmitted without --retry-failed; resubmitted with it.
    assert!(slurm::submit(&sweep, &slurm::SlurmOptions::default()).unwrap().is_empty());
    let again = slurm::submit(&sweep, &slurm::SlurmOptions { retry_failed: true, ..Default::default() }).unwrap();
    assert_eq!(again.len(), 1);
    let summary = follow(&sweep);
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].status.as_ref().unwrap().attempt, 2);
}

#[test]
fn slurm_killed_task_is_resubmitted_and_resumes_from_its_checkpoint() {
    if !slurm_or_skip("slurm_killed_task_is_resubmitted_and_resumes_from_its_checkpoint") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_in(tmp.path(), "");
    let mut file = sweep.file.clone();
    file.base.insert("steps".into(), toml::Value::Integer(10));
    file.base.insert("step_ms".into(), toml::Value::Integer(200));
    file.grid.insert("lr".into(), vec![toml::Value::Integer(5)]);
    file.seeds = Some(vec![11]);
    let sweep = Sweep::new(file, None, "k", PathBuf::from("headlab"), tmp.path()).unwrap();
    slurm::submit(&sweep, &slurm::SlurmOptions::default()).unwrap();
    let dir = sweep.run_dir(&sweep.runs[0]);
    let ck = dir.join("ckpt/step_00000002.h5");
    for _ in 0..600 {
        if ck.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ck.exists(), "the task never reached its second checkpoint");
    let job = status::read(&dir).unwrap().slurm_job.unwrap();
    let ok = std::process::Command::new("scancel").arg(&job).status().unwrap();
    assert!(ok.success());
    let summary = follow(&sweep);
    assert_eq!(summary.interrupted, vec![sweep.runs[0].name.clone()], "{}", summary.render());
    assert!(!dir.join("result.txt").exists());
    // Resubmit: only this run, resumed.
    let subs = slurm::submit(&sweep, &slurm::SlurmOptions::default()).unwrap();
    assert_eq!(subs.len(), 1);
    let summary = follow(&sweep);
    assert!(summary.all_done(), "{}", summary.render());
    let s = starts(&dir);
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(s[1] >= 2, "resumed from step {}", s[1]);
    assert_eq!(std::fs::read_to_string(dir.join("result.txt")).unwrap(), expected(11, 5, 10));
}
