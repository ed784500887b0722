//! Local backend: the runs' task scripts as parallel child processes on this
//! machine (`--jobs` at a time), with a progress bar.

use crate::slurm::reconcile;
use crate::{io_err, to_launch, Result, Summary, Sweep, SweepError};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone)]
/// How to run a sweep on this machine.
pub struct LocalOptions {
    /// Runs at the same time (at least 1).
    pub jobs: usize,
    /// Also rerun runs that failed before.
    pub retry_failed: bool,
    /// Show a progress bar on stderr (hidden anyway when it is not a terminal).
    pub progress: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions { jobs: 1, retry_failed: false, progress: true }
    }
}

/// Runs every run that needs running (see [`crate::to_launch`]) with at most
/// `jobs` at a time, then returns the summary of the whole sweep. Runs
/// already running elsewhere are left alone.
pub fn run(sweep: &Sweep, opts: &LocalOptions) -> Result<Summary> {
    sweep.prepare()?;
    let states = reconcile(sweep);
    let launch = to_launch(&states, opts.retry_failed);
    let jobs = opts.jobs.max(1);
    let bar =
        if opts.progress { indicatif::ProgressBar::new(launch.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} runs  {elapsed_precise}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix("sweep");
    let mut queue: std::collections::VecDeque<usize> = launch.into_iter().collect();
    let mut running: Vec<(usize, Child)> = Vec::new();
    let mut failed = 0usize;
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < jobs {
            let Some(i) = queue.pop_front() else { break };
            let dir = &states[i].dir;
            let out_path = dir.join("logs").join("task.out");
            let out =
                std::fs::OpenOptions::new().create(true).append(true).open(&out_path).map_err(io_err(&out_path))?;
            let err = out.try_clone().map_err(io_err(&out_path))?;
            let child = Command::new("bash")
                .arg(dir.join("task.sh"))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| SweepError::Command {
                    command: format!("bash {}/task.sh", dir.display()),
                    message: e.to_string(),
                })?;
            tracing::info!("started run {} (pid {})", states[i].name, child.id());
            running.push((i, child));
        }
        let names: Vec<&str> = running.iter().map(|(i, _)| states[*i].name.as_str()).collect();
        bar.set_message(format!(
            "{}running: {}",
            if failed > 0 { format!("{failed} failed; ") } else { String::new() },
            names.join(" ")
        ));
        std::thread::sleep(Duration::from_millis(100));
        let mut k = 0;
        while k < running.len() {
            match running[k].1.try_wait() {
                Ok(Some(st)) => {
                    let (i, _) = running.remove(k);
                    if !st.success() {
                        failed += 1;
                        bar.println(format!(
                            "run {} failed ({st}); see {}",
                            states[i].name,
                            states[i].dir.join("status.json").display()
                        ));
                    }
                    bar.inc(1);
                }
                Ok(None) => k += 1,
                Err(e) => {
                    tracing::warn!("waiting for run {}: {e}", states[running[k].0].name);
                    k += 1;
                }
            }
        }
    }
    bar.finish_and_clear();
    Ok(Summary::from_states(&reconcile(sweep)))
}
