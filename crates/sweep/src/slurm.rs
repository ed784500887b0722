//! Slurm backend: one sbatch array script per submission (split into chunks
//! above the cluster's MaxArraySize), submitted with `sbatch`, followed by
//! polling `squeue` (never `sbatch --wait`, never `sacct`, which needs
//! slurmdbd). Every array task `exec`s its run's `task.sh`, which writes the
//! run's own `status.json`; tasks that died without a word (SIGKILL, node
//! failure) are found by their absence from `squeue` and classified with
//! `scontrol show job -o`.

use crate::status::{self, RunStatus, State};
use crate::task::sh_quote;
use crate::{io_err, to_launch, Result, RunState, Summary, Sweep, SweepError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
/// How to submit a sweep to Slurm.
pub struct SlurmOptions {
    /// Also resubmit runs that failed before.
    pub retry_failed: bool,
    /// Largest array per submission; overrides the sweep file and the cluster.
    pub max_array_size: Option<u32>,
}

/// One sbatch array: its script and the runs of its tasks, in task order.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Where the sbatch script is written.
    pub script_path: PathBuf,
    /// The script's text.
    pub script: String,
    /// Runs of its tasks, in task order.
    pub runs: Vec<String>,
    /// `--dependency=afterany:<previous chunk>` is added when a throttle is
    /// set, so that the throttle holds for the whole sweep.
    pub after_previous: bool,
}

/// A submitted chunk.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Submission {
    /// Slurm's job id of the array.
    pub job_id: String,
    /// The sbatch script submitted.
    pub script: PathBuf,
    /// When (UTC, ISO 8601).
    pub submitted: String,
    /// Runs of its tasks, in task order.
    pub runs: Vec<String>,
}

fn run_cmd(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| SweepError::Command {
        command: shown.clone(),
        message: format!("cannot run it ({e}); is Slurm installed here? (tools/slurm-up starts a local one)"),
    })?;
    if !out.status.success() {
        return Err(SweepError::Command {
            command: shown,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Whether a Slurm controller answers here (`sinfo` succeeds and lists a node).
pub fn available() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%n"])
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false)
}

/// The cluster's MaxArraySize (`scontrol show config`): array indices must be below it.
pub fn cluster_max_array_size() -> Result<u32> {
    let text = run_cmd(Command::new("scontrol").args(["show", "config"]))?;
    parse_max_array_size(&text)
        .ok_or_else(|| SweepError::Slurm("`scontrol show config` has no MaxArraySize line".into()))
}

fn parse_max_array_size(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "MaxArraySize").then(|| v.trim().parse().ok()).flatten()
    })
}

fn user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    })
}

/// This user's jobs in the queue (pending or running), array tasks expanded:
/// `"1234_5" -> "RUNNING"`. (Listing by user rather than by job id: squeue
/// fails on job ids the controller has already forgotten.)
pub fn live_tasks() -> Result<BTreeMap<String, String>> {
    let text = run_cmd(Command::new("squeue").args(["-h", "-r", "-o", "%i|%T", "-u", &user()]))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(id, st)| (id.trim().to_string(), st.trim().to_string()))
        .collect())
}

/// `scontrol show job -o JOB` as one key=value map per array task, keyed by
/// `ARRAYJOB_TASK`. Empty when the controller has forgotten the job.
pub fn job_info(array_job: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let Ok(text) = run_cmd(Command::new("scontrol").args(["show", "job", "-o", array_job])) else {
        return BTreeMap::new();
    };
    parse_job_info(&text)
}

fn parse_job_info(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let kv: BTreeMap<String, String> = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let id = match (kv.get("ArrayJobId"), kv.get("ArrayTaskId")) {
            (Some(a), Some(t)) => format!("{a}_{t}"),
            _ => match kv.get("JobId") {
                Some(j) => j.clone(),
                None => continue,
            },
        };
        out.insert(id, kv);
    }
    out
}

/// Slurm's `ExitCode=code:signal` as one shell-style code.
fn exit_code(s: &str) -> Option<i32> {
    let (c, sig) = s.split_once(':')?;
    let (c, sig): (i32, i32) = (c.parse().ok()?, sig.parse().ok()?);
    Some(if sig != 0 { 128 + sig } else { c })
}

/// Re-reads each run's status and settles those that say queued/running but
/// whose process (local) or Slurm task is gone: `interrupted` (resumable),
/// or `failed` when Slurm says the task failed before its script could
/// write anything. Returns all runs' states.
pub fn reconcile(sweep: &Sweep) -> Vec<RunState> {
    // Ask squeue before reading the files: a task that is absent from the
    // queue now cannot write "running" afterwards.
    let before = sweep.states();
    let any_slurm = before.iter().any(|r| {
        r.status.as_ref().is_some_and(|s| s.slurm_job.is_some() && matches!(s.state, State::Queued | State::Running))
    });
    let live = if any_slurm {
        match live_tasks() {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("cannot ask Slurm which tasks are alive ({e}); treating their runs as interrupted");
                None
            }
        }
    } else {
        None
    };
    let host = status::hostname();
    let mut infos: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>> = BTreeMap::new();
    let mut states = sweep.states();
    for r in &mut states {
        let Some(st) = &r.status else { continue };
        if !matches!(st.state, State::Queued | State::Running) {
            continue;
        }
        let alive = match (&st.slurm_job, &live) {
            (Some(job), Some(live)) => live.contains_key(job),
            (Some(_), None) => false,
            (None, _) => st.host.as_deref() == Some(host.as_str()) && st.pid.is_some_and(status::pid_alive),
        };
        if alive {
            continue;
        }
        // Re-read: the task may have finished between the two reads.
        let Some(mut st) = status::read(&r.dir) else { continue };
        if !matches!(st.state, State::Queued | State::Running) {
            r.status = Some(st);
            continue;
        }
        st.state = State::Interrupted;
        if let Some(job) = st.slurm_job.clone() {
            let array = job.split('_').next().unwrap_or(&job).to_string();
            let info = infos.entry(array.clone()).or_insert_with(|| job_info(&array));
            if let Some(kv) = info.get(&job) {
                let js = kv.get("JobState").map(String::as_str).unwrap_or("");
                let code = kv.get("ExitCode").and_then(|c| exit_code(c));
                let never_started = r.status.as_ref().is_some_and(|s| s.state == State::Queued);
                if (never_started && js == "FAILED") || js == "OUT_OF_MEMORY" {
                    st.state = State::Failed;
                    st.exit_code = code;
                    st.step = Some(st.step.clone().unwrap_or_else(|| "slurm".into()));
                    st.log = Some(slurm_log(sweep, &job));
                }
                tracing::info!("run {}: Slurm task {job} ended as {js} (exit {code:?})", r.name);
            }
        }
        st.updated = Some(status::now_utc());
        if let Err(e) = status::write(&r.dir, &st) {
            tracing::warn!("{}: cannot update status: {e}", r.dir.display());
        }
        r.status = Some(st);
    }
    states
}

/// `SWEEP/slurm/logs/ARRAYJOB_TASK.out`: the task's Slurm output.
pub fn slurm_log(sweep: &Sweep, job: &str) -> PathBuf {
    sweep.dir.join("slurm").join("logs").join(format!("{job}.out"))
}

fn submissions_path(sweep: &Sweep) -> PathBuf {
    sweep.dir.join("slurm").join("submissions.json")
}

/// All submissions made for this sweep so far.
pub fn submissions(sweep: &Sweep) -> Vec<Submission> {
    std::fs::read_to_string(submissions_path(sweep))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The sbatch array scripts that a submission now would use: the runs to
/// launch (see [`crate::to_launch`]) in chunks of at most `max_array` tasks.
/// Reads the runs' status files; writes nothing.
pub fn plan(sweep: &Sweep, states: &[RunState], opts: &SlurmOptions, max_array: u32) -> Result<Vec<Chunk>> {
    let dir = sweep.dir.to_string_lossy();
    if dir.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'') {
        return Err(SweepError::Slurm(format!(
            "the sweep folder {dir:?} has spaces or quotes, which #SBATCH lines cannot hold; choose another --out"
        )));
    }
    let launch = to_launch(states, opts.retry_failed);
    let size = opts.max_array_size.or(sweep.file.slurm.max_array_size).unwrap_or(max_array).max(1) as usize;
    let first_no = submissions(sweep).len() + 1;
    let names: Vec<&str> = launch.iter().map(|&i| states[i].name.as_str()).collect();
    let chunks: Vec<&[&str]> = names.chunks(size).collect();
    let n = chunks.len();
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(k, runs)| {
            let no = first_no + k;
            let script_path = sweep.dir.join("slurm").join(format!("submit-{no:03}.sbatch"));
            let script = sbatch_script(sweep, runs, no, k + 1, n);
            Chunk {
                script_path,
                script,
                runs: runs.iter().map(|s| s.to_string()).collect(),
                after_previous: k > 0 && sweep.file.slurm.throttle.is_some(),
            }
        })
        .collect())
}

/// Seconds of a Slurm `--time` value (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`,
/// `D-H:M:S`); None for what is not one (or `UNLIMITED`).
pub fn slurm_time_seconds(t: &str) -> Option<u64> {
    let t = t.trim();
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, t),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse::<u64>().ok()).collect::<Option<_>>()?;
    let secs = match (t.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, s]) => m * 60 + s,
        (false, [h, m, s]) => h * 3600 + m * 60 + s,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        (true, [h, m, s]) => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(days * 86_400 + secs)
}

/// How long before a time limit `time` the task is told to stop: 90 s, or a
/// quarter of short limits (at least 10 s). None without a readable limit.
pub fn signal_lead_seconds(time: &str) -> Option<u64> {
    let total = slurm_time_seconds(time)?;
    Some(if total >= 600 { 90 } else { (total / 4).max(10) })
}

/// The text of one sbatch array script (tasks 0..runs.len()-1).
pub fn sbatch_script(sweep: &Sweep, runs: &[&str], submission: usize, chunk: usize, n_chunks: usize) -> String {
    let s = &sweep.file.slurm;
    let dir = sweep.dir.to_string_lossy();
    let base = sweep.dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "sweep".into());
    let job_name = s.job_name.clone().unwrap_or_else(|| {
        format!(
            "headlab-{}",
            base.chars()
                .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
                .collect::<String>()
        )
    });
    let mut t = String::from("#!/bin/bash\n");
    let mut opt = |o: String| t.push_str(&format!("#SBATCH {o}\n"));
    opt(format!("--job-name={job_name}"));
    let throttle = s.throttle.map(|k| format!("%{k}")).unwrap_or_default();
    opt(format!("--array=0-{}{throttle}", runs.len().saturating_sub(1)));
    opt(format!("--output={dir}/slurm/logs/%A_%a.out"));
    opt(format!("--chdir={dir}"));
    opt("--ntasks=1".into());
    opt(format!("--cpus-per-task={}", s.cpus));
    for (k, v) in [
        ("mem", &s.mem),
        ("time", &s.time),
        ("gres", &s.gres),
        ("partition", &s.partition),
        ("account", &s.account),
        ("qos", &s.qos),
    ] {
        if let Some(v) = v {
            opt(format!("--{k}={v}"));
        }
    }
    // Before a time limit, Slurm signals the task script (B:) early; it
    // passes SIGTERM on to training, which writes a checkpoint and stops, and
    // records the run as interrupted (resumed by --retry-failed or a resubmit).
    if let (Some(lead), false) =
        (s.time.as_deref().and_then(signal_lead_seconds), s.extra.iter().any(|e| e.contains("--signal")))
    {
        opt(format!("--signal=B:TERM@{lead}"));
    }
    for e in &s.extra {
        let e = e.trim();
        opt(e.strip_prefix("#SBATCH ").unwrap_or(e).trim().to_string());
    }
    t.push_str(&format!(
        "# headlab sweep {dir}: submission {submission}, chunk {chunk} of {n_chunks}, {} runs.\n# One array task per run; each runs its run's task.sh (train -> probe ...),\n# which writes runs/NAME/status.json. Generated by `headlab sweep`.\nset -u\nRUNS=(\n",
        runs.len()
    ));
    for (i, r) in runs.iter().enumerate() {
        t.push_str(&format!("  {}  # {i}\n", sh_quote(r)));
    }
    t.push_str(&format!(
        ")\nRUN={}/runs/\"${{RUNS[$SLURM_ARRAY_TASK_ID]}}\"\necho \"headlab sweep: task $SLURM_ARRAY_JOB_ID_$SLURM_ARRAY_TASK_ID runs $RUN on $(hostname)\"\nexec bash \"$RUN/task.sh\"\n",
        sh_quote(&dir)
    ));
    t.replace("$SLURM_ARRAY_JOB_ID_$", "${SLURM_ARRAY_JOB_ID}_$")
}

/// Prepares the sweep folder, settles dead runs, and submits the runs that
/// need running as sbatch arrays; marks them `queued` with their task ids.
/// Returns the submissions (none when every run is done, queued or running,
/// or failed without `retry_failed`).
pub fn submit(sweep: &Sweep, opts: &SlurmOptions) -> Result<Vec<Submission>> {
    sweep.prepare()?;
    let states = reconcile(sweep);
    let max_array = match opts.max_array_size.or(sweep.file.slurm.max_array_size) {
        Some(m) => m,
        None => cluster_max_array_size()?,
    };
    let chunks = plan(sweep, &states, opts, max_array)?;
    let slurm_dir = sweep.dir.join("slurm");
    std::fs::create_dir_all(slurm_dir.join("logs")).map_err(io_err(&slurm_dir))?;
    let mut subs = submissions(sweep);
    let mut made = Vec::new();
    let mut prev: Option<String> = None;
    for c in chunks {
        std::fs::write(&c.script_path, &c.script).map_err(io_err(&c.script_path))?;
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable");
        if let (true, Some(p)) = (c.after_previous, &prev) {
            cmd.arg(format!("--dependency=afterany:{p}"));
        }
        cmd.arg(&c.script_path).current_dir(&sweep.dir);
        let out = run_cmd(&mut cmd)?;
        let job_id = out.trim().split(';').next().unwrap_or("").trim().to_string();
        if job_id.is_empty() || !job_id.chars().all(|ch| ch.is_ascii_digit()) {
            return Err(SweepError::Slurm(format!("sbatch printed {out:?}, not a job id")));
        }
        tracing::info!("submitted {} runs as Slurm array job {job_id}", c.runs.len());
        for (i, name) in c.runs.iter().enumerate() {
            let dir = sweep.dir.join("runs").join(name);
            let mut st = status::read(&dir).unwrap_or_else(|| RunStatus::new(State::Queued));
            st.state = State::Queued;
            st.slurm_job = Some(format!("{job_id}_{i}"));
            st.exit_code = None;
            st.log = Some(slurm_log(sweep, &format!("{job_id}_{i}")));
            st.updated = Some(status::now_utc());
            st.pid = None;
            status::write(&dir, &st).map_err(io_err(&dir))?;
        }
        let sub = Submission {
            job_id: job_id.clone(),
            script: c.script_path.clone(),
            submitted: status::now_utc(),
            runs: c.runs.clone(),
        };
        subs.push(sub.clone());
        let p = submissions_path(sweep);
        std::fs::write(&p, serde_json::to_string_pretty(&subs).unwrap_or_default()).map_err(io_err(&p))?;
        made.push(sub);
        prev = Some(job_id);
    }
    Ok(made)
}

/// Polls `squeue` every `poll` until no run of the sweep is queued or
/// running, calling `on_poll` with the current states; then returns the
/// summary. Errors after `timeout`, leaving the jobs alone.
pub fn follow(
    sweep: &Sweep,
    poll: Duration,
    timeout: Option<Duration>,
    mut on_poll: impl FnMut(&[RunState]),
) -> Result<Summary> {
    let start = Instant::now();
    loop {
        let states = reconcile(sweep);
        on_poll(&states);
        let busy = states.iter().filter(|r| matches!(r.state(), Some(State::Queued) | Some(State::Running))).count();
        if busy == 0 {
            return Ok(Summary::from_states(&states));
        }
        if let Some(t) = timeout {
            if start.elapsed() > t {
                return Err(SweepError::Slurm(format!(
                    "{busy} runs still queued or running after {:.0} s; the jobs go on: run the same `headlab sweep` again later to follow them",
                    t.as_secs_f64()
                )));
            }
        }
        std::thread::sleep(poll);
    }
}

/// What `--dry-run` prints: the runs with their state and what would happen
/// to them, then each sbatch script. Writes nothing.
pub fn dry_run(sweep: &Sweep, opts: &SlurmOptions, max_array: u32) -> Result<String> {
    let states = sweep.states();
    let mut out = crate::describe_runs(sweep, &states, opts.retry_failed);
    for c in plan(sweep, &states, opts, max_array)? {
        out.push_str(&format!(
            "\n# ---- {} ({} runs{}) ----\n",
            c.script_path.display(),
            c.runs.len(),
            if c.after_previous { ", after the previous chunk" } else { "" }
        ));
        out.push_str(&c.script);
    }
    Ok(out)
}

/// The sbatch scripts written for this sweep so far, oldest first.
pub fn script_paths(sweep: &Sweep) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(sweep.dir.join("slurm"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sbatch"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scontrol_output() {
        let cfg = "AccountingStorageType   = (null)\nMaxArraySize            = 1001\nMaxJobCount = 10000\n";
        assert_eq!(parse_max_array_size(cfg), Some(1001));
        assert_eq!(parse_max_array_size("nothing"), None);
        let job = "JobId=7 ArrayJobId=5 ArrayTaskId=2 JobName=x JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 RunTime=00:00:01\n\
                   JobId=5 ArrayJobId=5 ArrayTaskId=0 JobState=CANCELLED ExitCode=0:15\n";
        let info = parse_job_info(job);
        assert_eq!(info["5_2"]["JobState"], "FAILED");
        assert_eq!(exit_code(&info["5_2"]["ExitCode"]), Some(3));
        assert_eq!(exit_code(&info["5_0"]["ExitCode"]), Some(143));
    }
}
