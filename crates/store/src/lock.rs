//! One writer per run folder: an advisory lock on `RUN/.lock`.
//!
//! Every command that writes into a run folder (train, probe, llc, eval,
//! lens physics, report) holds a [`RunLock`] while it works. The lock is an
//! `flock` on `RUN/.lock`, which holds the holder's PID and command line; the
//! kernel releases it when the holder exits, however it exits (kill -9
//! included), so a lock left by a dead process is simply taken over (with a
//! note naming the dead PID). A second writer is refused with an error that
//! names the holder's PID. (The caller reports a taken-over stale lock:
//! see [`RunLock::took_over`].)

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// Name of the lock file inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// Who holds (or held) a run folder's lock, as written in `RUN/.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockHolder {
    /// Process id of the holder (0 when the file named none).
    pub pid: u32,
    /// What it was doing (e.g. `headlab train`).
    pub what: String,
}

impl LockHolder {
    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        Some(LockHolder { pid, what: lines.next().unwrap_or("").trim().to_string() })
    }
}

/// An advisory lock on a run folder; released when dropped (or when the
/// process ends).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    /// The dead holder whose stale lock was taken over, if any.
    pub took_over: Option<LockHolder>,
}

impl RunLock {
    /// Lock `run_dir` (created if missing) for `what` (e.g. "headlab train").
    /// Refused with [`StoreError::Locked`] while another process holds it.
    pub fn acquire(run_dir: &Path, what: &str) -> Result<RunLock, StoreError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source: std::io::Error| StoreError::Io { path: p.clone(), source }
        };
        std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
        let path = run_dir.join(LOCK_FILE);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = LockHolder::parse(&text);
                return Err(StoreError::Locked {
                    run: run_dir.to_path_buf(),
                    holder: match holder {
                        Some(h) if h.what.is_empty() => format!("PID {}", h.pid),
                        Some(h) => format!("PID {} ({})", h.pid, h.what),
                        None => "a process that has not written its PID yet".into(),
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        // We hold it. A PID left in the file is a holder that died without
        // releasing (a clean exit empties the file).
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let took_over = LockHolder::parse(&text).filter(|h| h.pid != std::process::id());
        let body = format!("{}\n{}\n", std::process::id(), what.replace('\n', " "));
        file.set_len(0).map_err(io(&path))?;
        file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        file.write_all(body.as_bytes()).map_err(io(&path))?;
        let _ = file.sync_all();
        Ok(RunLock { file, path, took_over })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Empty the file first, so the next holder does not report us as stale.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Who holds the lock of `run_dir` now, if anyone (for messages and tests).
pub fn lock_holder(run_dir: &Path) -> Option<LockHolder> {
    let path = run_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(_) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Some(LockHolder::parse(&text).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_with_the_holder_pid_and_a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let a = RunLock::acquire(&run, "headlab train").unwrap();
        assert!(a.took_over.is_none());
        // A second open file description (another thread or process) is refused.
        let b = std::thread::spawn({
            let run = run.clone();
            move || RunLock::acquire(&run, "headlab probe").map(|_| ()).unwrap_err().to_string()
        })
        .join()
        .unwrap();
        let pid = std::process::id();
        assert!(b.contains(&format!("PID {pid} (headlab train)")) && b.contains("run"), "{b}");
        assert_eq!(lock_holder(&run).unwrap().pid, pid);
        drop(a);
        assert!(lock_holder(&run).is_none());
        // Released cleanly: the next holder sees no stale lock.
        let c = RunLock::acquire(&run, "headlab probe").unwrap();
        assert!(c.took_over.is_none());
        drop(c);
        // A lock file left by a dead process (kernel released the flock, PID still written).
        std::fs::write(run.join(LOCK_FILE), "999999999\nheadlab train\n").unwrap();
        let d = RunLock::acquire(&run, "headlab train").unwrap();
        assert_eq!(d.took_over, Some(LockHolder { pid: 999_999_999, what: "headlab train".into() }));
    }
}
