//! headlab-sweep: many seeds and configurations of the headlab pipeline, run
//! locally in parallel processes or as Slurm job arrays, then pooled by
//! `headlab report`.
//!
//! A sweep file (see [`spec::SweepFile`]) expands into named runs
//! ([`spec::RunSpec`]); [`Sweep::prepare`] writes each run's folder
//! (`config.toml`, `run.json`, `task.sh`); a backend runs the task scripts —
//! [`local::run`] as child processes, [`slurm::submit`] + [`slurm::follow`]
//! as one sbatch array per chunk — and every task records its own
//! `status.json` ([`status`]). Resubmitting skips finished runs, resumes
//! interrupted ones (`--resume` when a checkpoint exists) and, on request,
//! retries failed ones.

pub mod local;
pub mod slurm;
pub mod spec;
pub mod status;
pub mod task;

use spec::{RunSpec, SweepFile};
use status::{RunStatus, State};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
/// Why a sweep could not be prepared, submitted or followed.
pub enum SweepError {
    /// Shown as "{}: {source}".
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Shown as "{}: not a valid sweep file: {message}".
    #[error("{}: not a valid sweep file: {message}", path.display())]
    Parse {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
    /// Shown as "{}: {message}".
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
    /// Shown as "run {run} in {}: {message}".
    #[error("run {run} in {}: {message}", dir.display())]
    RunConflict {
        /// The run concerned.
        run: String,
        /// The folder concerned.
        dir: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
    /// Shown as "'{command}' failed: {message}".
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// What is wrong, and what to do.
        message: String,
    },
    /// Shown as "Slurm: {0}".
    #[error("Slurm: {0}")]
    Slurm(String),
}

/// Results of this crate.
pub type Result<T, E = SweepError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
    move |source| SweepError::Io { path: path.to_path_buf(), source }
}

/// A sweep bound to its folder and to the headlab binary its tasks run.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The parsed sweep file.
    pub file: SweepFile,
    /// Absolute sweep folder.
    pub dir: PathBuf,
    /// The binary the tasks call (`headlab train ...`).
    pub headlab: PathBuf,
    /// Every run, expanded from seeds and grid.
    pub runs: Vec<RunSpec>,
}

/// Where a run stands, as seen by the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    /// The run's folder name.
    pub name: String,
    /// The run's folder.
    pub dir: PathBuf,
    /// `None`: never started.
    pub status: Option<RunStatus>,
}

impl RunState {
    /// The run's state, `None` if never started.
    pub fn state(&self) -> Option<State> {
        self.status.as_ref().map(|s| s.state)
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

impl Sweep {
    /// Binds a validated sweep file to a folder (`out` overrides the file's
    /// `out`, which defaults to `checkpoints/sweeps/<default_name>`) and a
    /// default headlab binary (the file's `run.headlab` wins).
    pub fn new(
        file: SweepFile,
        out: Option<PathBuf>,
        default_name: &str,
        default_headlab: PathBuf,
        origin: &Path,
    ) -> Result<Sweep> {
        file.validate().map_err(|m| SweepError::Invalid { path: origin.to_path_buf(), message: m })?;
        let runs = file.expand().map_err(|m| SweepError::Invalid { path: origin.to_path_buf(), message: m })?;
        let dir =
            out.or_else(|| file.out.clone()).unwrap_or_else(|| PathBuf::from("checkpoints/sweeps").join(default_name));
        let headlab = file.run.headlab.clone().unwrap_or(default_headlab);
        let headlab = if headlab.components().count() > 1 { absolute(&headlab) } else { headlab };
        let mut sweep = Sweep { dir: absolute(&dir), headlab, runs, file };
        // The run's config.toml is its full resolved config: the seed and the
        // dataset go in too, and, unless the sweep sets it, the CPU thread
        // count (= slurm.cpus), so that a run gives the same numbers locally
        // and on the cluster.
        let data = sweep.data_path().to_string_lossy().to_string();
        let pin_threads = !sweep.file.base.contains_key("threads")
            && !sweep.file.grid.contains_key("threads")
            && sweep.file.list.iter().all(|e| !e.contains_key("threads"));
        for r in &mut sweep.runs {
            r.config.insert("seed".into(), toml::Value::Integer(r.seed as i64));
            r.config.insert("data".into(), toml::Value::String(data.clone()));
            if pin_threads {
                r.config.insert("threads".into(), toml::Value::Integer(sweep.file.slurm.cpus as i64));
            }
        }
        Ok(sweep)
    }

    /// Checks every run's config with `check` (given the TOML text, e.g.
    /// headlab-train's parser) before anything is written or submitted.
    pub fn check_configs(&self, origin: &Path, check: impl Fn(&str) -> std::result::Result<(), String>) -> Result<()> {
        for r in &self.runs {
            let text = toml::to_string_pretty(&r.config)
                .map_err(|e| SweepError::Invalid { path: origin.to_path_buf(), message: e.to_string() })?;
            check(&text).map_err(|m| SweepError::Invalid {
                path: origin.to_path_buf(),
                message: format!("run {}: its training config is not valid: {m}", r.name),
            })?;
        }
        Ok(())
    }

    /// Loads a sweep file; see [`Sweep::new`].
    pub fn load(path: &Path, out: Option<PathBuf>, default_headlab: PathBuf) -> Result<Sweep> {
        let file = SweepFile::load(path)?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "sweep".into());
        Sweep::new(file, out, &stem, default_headlab, path)
    }

    /// The folder of `run`: `SWEEP/runs/NAME`.
    pub fn run_dir(&self, run: &RunSpec) -> PathBuf {
        self.dir.join("runs").join(&run.name)
    }

    /// The dataset every run trains on: `data`, or `SWEEP/data.h5` simulated from `scene`.
    pub fn data_path(&self) -> PathBuf {
        match &self.file.data {
            Some(d) => absolute(d),
            None => self.dir.join("data.h5"),
        }
    }

    /// Where every run stands now, from the status files alone.
    pub fn states(&self) -> Vec<RunState> {
        self.runs
            .iter()
            .map(|r| {
                let dir = self.run_dir(r);
                RunState { name: r.name.clone(), status: status::read(&dir), dir }
            })
            .collect()
    }

    /// Writes the sweep folder: `sweep.toml` (the resolved sweep), and for
    /// every run `config.toml` (full resolved training config; not touched
    /// once the run has started), `run.json` (name, parameters, seed) and
    /// `task.sh`. Refuses a folder whose run of the same name was started
    /// with a different config. Simulates `scene` into `SWEEP/data.h5` if
    /// needed. Idempotent.
    pub fn prepare(&self) -> Result<()> {
        std::fs::create_dir_all(self.dir.join("runs")).map_err(io_err(&self.dir))?;
        let sweep_toml = self.dir.join("sweep.toml");
        let text = toml::to_string_pretty(&self.file)
            .map_err(|e| SweepError::Invalid { path: sweep_toml.clone(), message: e.to_string() })?;
        write_if_changed(
            &sweep_toml,
            &format!("# The sweep as resolved by `headlab sweep` (absolute paths).\n{text}"),
        )?;
        let data = self.data_path();
        for r in &self.runs {
            let dir = self.run_dir(r);
            std::fs::create_dir_all(dir.join("logs")).map_err(io_err(&dir))?;
            let meta = serde_json::json!({
                "name": r.name,
                "index": r.index,
                "seed": r.seed,
                "params": r.params,
                "config": r.config,
            });
            let meta_path = dir.join("run.json");
            let started = status::read(&dir).is_some();
            if started {
                if let Ok(old) = std::fs::read_to_string(&meta_path) {
                    let old: serde_json::Value = serde_json::from_str(&old).unwrap_or_default();
                    if old.get("config") != meta.get("config") || old.get("seed") != meta.get("seed") {
                        return Err(SweepError::RunConflict {
                            run: r.name.clone(),
                            dir: self.dir.clone(),
                            message: "this run was started with a different config or seed; use another sweep folder (--out) or delete the run's folder".into(),
                        });
                    }
                }
            }
            write_if_changed(&meta_path, &(serde_json::to_string_pretty(&meta).unwrap_or_default() + "\n"))?;
            let cfg = dir.join("config.toml");
            if !started || !cfg.exists() {
                let text = toml::to_string_pretty(&r.config)
                    .map_err(|e| SweepError::Invalid { path: cfg.clone(), message: e.to_string() })?;
                write_if_changed(&cfg, &text)?;
            }
            let script = task::task_script(&self.file, r, &dir, &self.headlab, &data);
            write_if_changed(&dir.join("task.sh"), &script)?;
        }
        if self.file.scene.is_some() && !data.exists() {
            self.simulate()?;
        }
        Ok(())
    }

    /// `headlab simulate --scene SCENE --out SWEEP/data.h5 [simulate_args]`.
    fn simulate(&self) -> Result<()> {
        let scene = absolute(self.file.scene.as_ref().ok_or_else(|| SweepError::Invalid {
            path: self.dir.clone(),
            message: "the sweep file gives neither `data` nor `scene`".into(),
        })?);
        let mut cmd = std::process::Command::new(&self.headlab);
        cmd.arg("simulate")
            .arg("--scene")
            .arg(&scene)
            .arg("--out")
            .arg(self.data_path())
            .args(&self.file.simulate_args);
        tracing::info!("simulating the sweep's dataset: {cmd:?}");
        run_checked(cmd, &self.dir.join("simulate.log"))
    }

    /// Pools the runs into one report: `headlab report RUN... --out
    /// SWEEP/report [report_args]`, its output in `SWEEP/report.log`.
    /// Returns the path of `index.html`.
    pub fn report(&self) -> Result<PathBuf> {
        let out = self.dir.join("report");
        let mut cmd = std::process::Command::new(&self.headlab);
        cmd.arg("report");
        for r in &self.runs {
            cmd.arg(self.run_dir(r));
        }
        cmd.arg("--out").arg(&out).args(&self.file.run.report_args);
        run_checked(cmd, &self.dir.join("report.log"))?;
        Ok(out.join("index.html"))
    }
}

fn run_checked(mut cmd: std::process::Command, log: &Path) -> Result<()> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = std::fs::File::create(log).map_err(io_err(log))?;
    let err = out.try_clone().map_err(io_err(log))?;
    let st = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| SweepError::Command { command: shown.clone(), message: format!("cannot start it: {e}") })?;
    if !st.success() {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(SweepError::Command {
            command: shown,
            message: format!("exit code {:?}; log {}:\n{}", st.code(), log.display(), tail.join("\n")),
        });
    }
    Ok(())
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// What a sweep ended with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Runs done.
    pub done: Vec<String>,
    /// Failed runs with their step, exit code and log.
    pub failed: Vec<RunState>,
    /// Runs interrupted (resumable).
    pub interrupted: Vec<String>,
    /// Not started, queued or still running.
    pub unfinished: Vec<String>,
}

impl Summary {
    /// Sort runs by state.
    pub fn from_states(states: &[RunState]) -> Summary {
        let mut s = Summary::default();
        for r in states {
            match r.state() {
                Some(State::Done) => s.done.push(r.name.clone()),
                Some(State::Failed) => s.failed.push(r.clone()),
                Some(State::Interrupted) => s.interrupted.push(r.name.clone()),
                _ => s.unfinished.push(r.name.clone()),
            }
        }
        s
    }

    /// Whether every run is done.
    pub fn all_done(&self) -> bool {
        self.failed.is_empty() && self.interrupted.is_empty() && self.unfinished.is_empty()
    }

    /// A few readable lines: counts, then every failed run with exit code and log.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} done, {} failed, {} interrupted, {} not finished\n",
            self.done.len(),
            self.failed.len(),
            self.interrupted.len(),
            self.unfinished.len()
        );
        for f in &self.failed {
            let st = f.status.as_ref();
            out.push_str(&format!(
                "  FAILED {}: step {} exit code {} — log {}\n",
                f.name,
                st.and_then(|s| s.step.clone()).unwrap_or_else(|| "?".into()),
                st.and_then(|s| s.exit_code).map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                st.and_then(|s| s.log.clone()).map(|p| p.display().to_string()).unwrap_or_else(|| "?".into()),
            ));
        }
        for i in &self.interrupted {
            out.push_str(&format!("  interrupted {i} (resubmit the sweep to resume it)\n"));
        }
        out
    }
}

/// Which runs a (re)submission starts: never started and interrupted ones;
/// failed ones only with `retry_failed`; never done, queued or running ones.
pub fn to_launch(states: &[RunState], retry_failed: bool) -> Vec<usize> {
    states
        .iter()
        .enumerate()
        .filter(|(_, r)| match r.state() {
            None | Some(State::Interrupted) => true,
            Some(State::Failed) => retry_failed,
            Some(State::Done) | Some(State::Queued) | Some(State::Running) => false,
        })
        .map(|(i, _)| i)
        .collect()
}

/// One line per run: name, state (with exit code and log for failures) and
/// what a submission now would do with it.
pub fn describe_runs(sweep: &Sweep, states: &[RunState], retry_failed: bool) -> String {
    let launch: std::collections::BTreeSet<usize> = to_launch(states, retry_failed).into_iter().collect();
    let mut out =
        format!("sweep {}: {} runs, data {}\n", sweep.dir.display(), states.len(), sweep.data_path().display());
    for (i, r) in states.iter().enumerate() {
        let state = match &r.status {
            None => "new".to_string(),
            Some(s) if s.state == State::Failed => format!(
                "failed (step {}, exit code {}, log {})",
                s.step.as_deref().unwrap_or("?"),
                s.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                s.log.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "?".into())
            ),
            Some(s) => s.state.as_str().to_string(),
        };
        let action = if launch.contains(&i) {
            if r.state() == Some(State::Interrupted) {
                "resume"
            } else {
                "run"
            }
        } else {
            "skip"
        };
        out.push_str(&format!("  [{action:>6}] {:<40} {state}\n", r.name));
    }
    out
}
