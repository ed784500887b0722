//! `RUN/status.json`: each run's own record of where it is, written by its
//! task script (running, done, failed, interrupted) and by the Slurm backend
//! (queued). Readable with any JSON tool: `jq .state checkpoints/sweeps/*/runs/*/status.json`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The status file of every run folder.
pub const STATUS_FILE: &str = "status.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
/// Where a run stands.
pub enum State {
    /// Submitted to Slurm, not started yet.
    Queued,
    /// A step is running.
    Running,
    /// Every step finished.
    Done,
    /// A step exited non-zero (see `step`, `exit_code`, `log`).
    Failed,
    /// Stopped by a signal (Ctrl-C, scancel, time limit) or found dead;
    /// the next submission resumes it from its last checkpoint.
    Interrupted,
}

impl State {
    /// The name stored in status.json.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
        }
    }
}

/// The content of `RUN/status.json`. Unknown fields are ignored so that
/// older and newer headlab versions can read each other's files.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RunStatus {
    /// Where the run stands.
    pub state: State,
    /// The step that is running, failed or was interrupted.
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    /// Exit code of the failed step.
    pub exit_code: Option<i32>,
    /// Log of that step (`RUN/logs/<step>.log`) or the Slurm output file.
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// UTC times, ISO 8601.
    #[serde(default)]
    pub started: Option<String>,
    #[serde(default)]
    /// Last update.
    pub updated: Option<String>,
    #[serde(default)]
    /// Machine of the task.
    pub host: Option<String>,
    #[serde(default)]
    /// Process id of the task script.
    pub pid: Option<u32>,
    /// `ARRAYJOB_TASK` when run by Slurm.
    #[serde(default)]
    pub slurm_job: Option<String>,
    /// How many times the task script has started for this run.
    #[serde(default)]
    pub attempt: u32,
}

impl RunStatus {
    /// A status in `state`, everything else unset.
    pub fn new(state: State) -> RunStatus {
        RunStatus {
            state,
            step: None,
            exit_code: None,
            log: None,
            started: None,
            updated: Some(now_utc()),
            host: None,
            pid: None,
            slurm_job: None,
            attempt: 0,
        }
    }
}

/// Reads `RUN/status.json`; `None` when the run never started. A file that
/// cannot be parsed (e.g. cut by a full disk) reads as `interrupted`, so that
/// the run is resumed rather than silently skipped.
pub fn read(run_dir: &Path) -> Option<RunStatus> {
    let p = run_dir.join(STATUS_FILE);
    let text = std::fs::read_to_string(&p).ok()?;
    match serde_json::from_str::<RunStatus>(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("{}: unreadable status ({e}); treating the run as interrupted", p.display());
            Some(RunStatus::new(State::Interrupted))
        }
    }
}

/// Writes `RUN/status.json` atomically (temporary file + rename).
pub fn write(run_dir: &Path, s: &RunStatus) -> std::io::Result<()> {
    let p = run_dir.join(STATUS_FILE);
    let tmp = run_dir.join(format!("{STATUS_FILE}.tmp"));
    let text = serde_json::to_string_pretty(s).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, &p)
}

/// This machine's host name (the same string the task script records).
pub fn hostname() -> String {
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        return h.trim().to_string();
    }
    std::process::Command::new("hostname")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Whether a process with this PID exists on this machine.
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        || std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corrupt_file() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path()).is_none());
        let mut s = RunStatus::new(State::Failed);
        s.exit_code = Some(3);
        s.step = Some("probe".into());
        write(d.path(), &s).unwrap();
        assert_eq!(read(d.path()).unwrap(), s);
        std::fs::write(d.path().join(STATUS_FILE), "{\"state\": \"do").unwrap();
        assert_eq!(read(d.path()).unwrap().state, State::Interrupted);
    }

    #[test]
    fn utc_time_matches_date() {
        let ours = now_utc();
        let theirs = std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M"]).output();
        if let Ok(o) = theirs {
            let t = String::from_utf8_lossy(&o.stdout).trim().to_string();
            // Same minute (or the next one if the clock ticked between the calls).
            assert!(ours.starts_with(&t) || ours[..16] > *t, "{ours} vs {t}");
        }
        assert_eq!(ours.len(), 20);
    }
}
