//! Atomic writes of plain files (TOML, HTML, JSON, PNG): the bytes go to a
//! temporary file beside the target, which is fsynced and renamed over it, so
//! a kill or a full disk never leaves a truncated file where a good one was.
//! (HDF5 files use [`crate::atomic_write`], which follows the same steps.)

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StoreError;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// The temporary name used while `path` is being written: hidden, in the same
/// folder (so the rename is atomic), and ending in the same extension (so
/// writers that pick a format by extension, like image encoders, still work):
/// `DIR/.NAME.partial.EXT`.
pub fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "file".into());
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial{ext}"))
}

/// fsync the folder holding `path` so the rename itself is durable (best effort).
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Rename a finished temporary file over `path`, after fsyncing it.
fn commit(tmp: &Path, path: &Path) -> Result<(), StoreError> {
    let f = std::fs::File::open(tmp).map_err(io_err(tmp))?;
    f.sync_all().map_err(io_err(tmp))?;
    drop(f);
    std::fs::rename(tmp, path).map_err(io_err(path))?;
    sync_parent(path);
    Ok(())
}

/// Write `bytes` to `path` atomically (parent folders are created).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    with_atomic_path(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(io_err(tmp))?;
        f.write_all(bytes).map_err(io_err(tmp))?;
        f.flush().map_err(io_err(tmp))
    })
}

/// Write `bytes` to `path` atomically unless it already holds exactly these
/// bytes; returns whether it wrote.
pub fn write_atomic_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, StoreError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    write_atomic(path, bytes)?;
    Ok(true)
}

/// Move a file finished at [`partial_path`]`(path)` over `path` (fsynced);
/// for writers whose errors are not [`StoreError`]s (see [`with_atomic_path`]).
pub fn commit_partial(path: &Path) -> Result<(), StoreError> {
    let tmp = partial_path(path);
    commit(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Let `fill` write a whole file at a temporary path (see [`partial_path`]),
/// then move it over `path`. On error the temporary file is removed and
/// `path` is untouched.
pub fn with_atomic_path<T, E: From<StoreError>>(path: &Path, fill: impl FnOnce(&Path) -> Result<T, E>) -> Result<T, E> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
    }
    let tmp = partial_path(path);
    let out = match fill(&tmp) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = commit(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_failures_keep_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/config.toml");
        write_atomic(&p, b"a = 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 1\n");
        assert!(!write_atomic_if_changed(&p, b"a = 1\n").unwrap());
        let before = std::fs::metadata(&p).unwrap().modified().unwrap();
        assert!(write_atomic_if_changed(&p, b"a = 2\n").unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 2\n");
        assert!(std::fs::metadata(&p).unwrap().modified().unwrap() >= before);
        // A writer that fails half-way leaves the old content and no partial file.
        let r: Result<(), StoreError> = with_atomic_path(&p, |tmp| {
            std::fs::write(tmp, b"a = ").unwrap();
            Err(StoreError::Io { path: tmp.to_path_buf(), source: std::io::Error::other("disk full") })
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 2\n");
        assert!(!partial_path(&p).exists());
        assert_eq!(partial_path(Path::new("/x/loss.png")), Path::new("/x/.loss.png.partial.png"));
    }
}
