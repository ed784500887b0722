//! Shared HDF5 helpers: atomic writes, string/number attributes, typed reads
//! with errors that name the file, the key and what was found.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;

/// Version of the on-disk layout; bumped when a reader could misread old files.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
/// A file that cannot be read or written as headlab HDF5; every variant names the file.
pub enum StoreError {
    /// Shown as "{path}: cannot open as HDF5 ({source}). Is it a headlab file, and was it written comple...".
    #[error("{path}: cannot open as HDF5 ({source}). Is it a headlab file, and was it written completely?")]
    Open {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: hdf5::Error,
    },
    /// Shown as "{path}: missing '{key}'; this is not a complete headlab {expected} file".
    #[error("{path}: missing `{key}`; this is not a complete headlab {expected} file")]
    Missing {
        /// The file or folder concerned.
        path: PathBuf,
        /// The offending key or option.
        key: String,
        /// What was expected.
        expected: String,
    },
    /// Shown as "{path}: '{key}' is {found}, expected {expected}".
    #[error("{path}: `{key}` is {found}, expected {expected}")]
    Invalid {
        /// The file or folder concerned.
        path: PathBuf,
        /// The offending key or option.
        key: String,
        /// What was found.
        found: String,
        /// What was expected.
        expected: String,
    },
    /// Shown as "{path}: file kind is '{found}', expected '{expected}'".
    #[error("{path}: file kind is `{found}`, expected `{expected}`")]
    WrongKind {
        /// The file or folder concerned.
        path: PathBuf,
        /// What was found.
        found: String,
        /// What was expected.
        expected: String,
    },
    /// Shown as "{path}: format_version {found} is newer than this headlab understands ({FORMAT_VERSION}...".
    #[error(
        "{path}: format_version {found} is newer than this headlab understands ({FORMAT_VERSION}); upgrade headlab"
    )]
    Version {
        /// The file or folder concerned.
        path: PathBuf,
        /// What was found.
        found: u32,
    },
    /// Shown as "{path}: HDF5 error at '{key}': {source}".
    #[error("{path}: HDF5 error at `{key}`: {source}")]
    Hdf5 {
        /// The file or folder concerned.
        path: PathBuf,
        /// The offending key or option.
        key: String,
        /// The underlying error.
        source: hdf5::Error,
    },
    /// Shown as "{path}: {source}".
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process holds the run folder's lock (see [`crate::lock`]).
    #[error("{run}: another headlab process is writing this run folder: {holder}. Wait for it to finish or stop it; one writer per run folder (lock file {run}/.lock)")]
    Locked {
        /// The run folder.
        run: PathBuf,
        /// Who holds the lock (PID and command).
        holder: String,
    },
}

/// What a headlab HDF5 file holds (the `kind` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A simulated dataset (`headlab simulate`).
    Dataset,
    /// A model checkpoint.
    Checkpoint,
    /// Training curves (`metrics.h5`).
    Metrics,
    /// Probe results (`analysis.h5`).
    Analysis,
    /// A lens result.
    Lens,
}

impl FileKind {
    /// The `kind` attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Dataset => "dataset",
            FileKind::Checkpoint => "checkpoint",
            FileKind::Metrics => "metrics",
            FileKind::Analysis => "analysis",
            FileKind::Lens => "lens",
        }
    }
    /// The kind named by a `kind` attribute.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "dataset" => FileKind::Dataset,
            "checkpoint" => FileKind::Checkpoint,
            "metrics" => FileKind::Metrics,
            "analysis" => FileKind::Analysis,
            "lens" => FileKind::Lens,
            _ => return None,
        })
    }
}

/// Helper carrying the file path for error messages.
pub struct Ctx<'a>(pub &'a Path);

impl Ctx<'_> {
    /// Name the file and `key` in an HDF5 error.
    pub fn h5<T>(&self, key: &str, r: hdf5::Result<T>) -> Result<T, StoreError> {
        r.map_err(|source| StoreError::Hdf5 { path: self.0.to_path_buf(), key: key.to_string(), source })
    }
    /// `key` holds `found` where `expected` was expected.
    pub fn invalid(&self, key: &str, found: impl ToString, expected: impl ToString) -> StoreError {
        StoreError::Invalid {
            path: self.0.to_path_buf(),
            key: key.to_string(),
            found: found.to_string(),
            expected: expected.to_string(),
        }
    }
    /// `key` is missing from this `expected` file.
    pub fn missing(&self, key: &str, expected: FileKind) -> StoreError {
        StoreError::Missing { path: self.0.to_path_buf(), key: key.to_string(), expected: expected.as_str().into() }
    }
}

/// Write an HDF5 file atomically: `fill` writes into `PATH.tmp`, which is then
/// closed, fsynced and renamed to `PATH`. `kind` and `format_version` are set
/// before `fill` runs. On error the temporary file is removed and `PATH` is
/// untouched.
pub fn atomic_write<T>(
    path: &Path,
    kind: FileKind,
    fill: impl FnOnce(&hdf5::File) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let ctx = Ctx(path);
    let result = (|| {
        let file = ctx.h5("/", hdf5::File::create(&tmp))?;
        set_str_attr(&file, path, "kind", kind.as_str())?;
        set_attr(&file, path, "format_version", FORMAT_VERSION)?;
        let out = fill(&file)?;
        ctx.h5("/", file.flush())?;
        drop(file);
        Ok(out)
    })();
    match result {
        Ok(out) => {
            let f = std::fs::File::open(&tmp).map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            if let Some(dir) = path.parent() {
                if let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
                    let _ = d.sync_all();
                }
            }
            Ok(out)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Open a headlab file read-only and check its `kind` (if `expect` is given)
/// and `format_version`.
pub fn open_kind(path: &Path, expect: Option<FileKind>) -> Result<(hdf5::File, FileKind), StoreError> {
    if !path.exists() {
        return Err(StoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let file = hdf5::File::open(path).map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    let kind_s = get_str_attr(&file, path, "kind").map_err(|_| StoreError::Missing {
        path: path.to_path_buf(),
        key: "kind (attribute)".into(),
        expected: expect.map(|k| k.as_str()).unwrap_or("headlab").into(),
    })?;
    let kind = FileKind::parse(&kind_s).ok_or_else(|| Ctx(path).invalid("kind", &kind_s, "a headlab file kind"))?;
    if let Some(e) = expect {
        if e != kind {
            return Err(StoreError::WrongKind { path: path.to_path_buf(), found: kind_s, expected: e.as_str().into() });
        }
    }
    let v: u32 = get_attr(&file, path, "format_version")?;
    if v > FORMAT_VERSION {
        return Err(StoreError::Version { path: path.to_path_buf(), found: v });
    }
    Ok((file, kind))
}

/// Write a string attribute `name`.
pub fn set_str_attr(loc: &hdf5::Location, path: &Path, name: &str, value: &str) -> Result<(), StoreError> {
    let v: VarLenUnicode = value.parse().map_err(|_| Ctx(path).invalid(name, "a string with NUL bytes", "text"))?;
    let ctx = Ctx(path);
    let a = ctx.h5(name, loc.new_attr::<VarLenUnicode>().shape(()).create(name))?;
    ctx.h5(name, a.write_scalar(&v))
}

/// Read a string attribute `name`.
pub fn get_str_attr(loc: &hdf5::Location, path: &Path, name: &str) -> Result<String, StoreError> {
    let ctx = Ctx(path);
    let a = ctx.h5(name, loc.attr(name))?;
    let v: VarLenUnicode = ctx.h5(name, a.read_scalar())?;
    Ok(v.as_str().to_string())
}

/// Write a scalar attribute `name`.
pub fn set_attr<T: hdf5::H5Type>(loc: &hdf5::Location, path: &Path, name: &str, value: T) -> Result<(), StoreError> {
    let ctx = Ctx(path);
    let a = ctx.h5(name, loc.new_attr::<T>().shape(()).create(name))?;
    ctx.h5(name, a.write_scalar(&value))
}

/// Read a scalar attribute `name`.
pub fn get_attr<T: hdf5::H5Type>(loc: &hdf5::Location, path: &Path, name: &str) -> Result<T, StoreError> {
    let ctx = Ctx(path);
    let a = ctx.h5(name, loc.attr(name))?;
    ctx.h5(name, a.read_scalar())
}

/// Write a 1-D attribute `name`.
pub fn set_vec_attr<T: hdf5::H5Type>(
    loc: &hdf5::Location,
    path: &Path,
    name: &str,
    value: &[T],
) -> Result<(), StoreError> {
    let ctx = Ctx(path);
    let a = ctx.h5(name, loc.new_attr::<T>().shape(value.len()).create(name))?;
    ctx.h5(name, a.write_raw(value))
}

/// Read a 1-D attribute `name`.
pub fn get_vec_attr<T: hdf5::H5Type>(loc: &hdf5::Location, path: &Path, name: &str) -> Result<Vec<T>, StoreError> {
    let ctx = Ctx(path);
    let a = ctx.h5(name, loc.attr(name))?;
    ctx.h5(name, a.read_raw())
}

/// Write a flat array with the given shape as dataset `name` (gzip-free for speed).
pub fn write_array<T: hdf5::H5Type>(
    group: &hdf5::Group,
    path: &Path,
    name: &str,
    data: &[T],
    shape: &[usize],
) -> Result<(), StoreError> {
    let ctx = Ctx(path);
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(ctx.invalid(name, format!("{} values", data.len()), format!("shape {shape:?} ({n} values)")));
    }
    let ds = ctx.h5(name, group.new_dataset::<T>().shape(shape).create(name))?;
    ctx.h5(name, ds.write_raw(data))
}

/// Read a dataset as a flat Vec with its shape; `expect_ndim` checks the rank.
pub fn read_array<T: hdf5::H5Type>(
    group: &hdf5::Group,
    path: &Path,
    name: &str,
    expect_ndim: Option<usize>,
) -> Result<(Vec<T>, Vec<usize>), StoreError> {
    let ctx = Ctx(path);
    let ds = group.dataset(name).map_err(|_| StoreError::Missing {
        path: path.to_path_buf(),
        key: name.to_string(),
        expected: "headlab".into(),
    })?;
    let shape = ds.shape();
    if let Some(nd) = expect_ndim {
        if shape.len() != nd {
            return Err(ctx.invalid(name, format!("shape {shape:?}"), format!("{nd} dimensions")));
        }
    }
    let data: Vec<T> = ctx.h5(name, ds.read_raw())?;
    Ok((data, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_roundtrip_and_failure_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.h5");
        atomic_write(&p, FileKind::Metrics, |f| {
            write_array(f, &p, "x", &[1.0f32, 2.0, 3.0], &[3])?;
            set_str_attr(f, &p, "note", "hello")
        })
        .unwrap();
        let (f, k) = open_kind(&p, Some(FileKind::Metrics)).unwrap();
        assert_eq!(k, FileKind::Metrics);
        let (x, s) = read_array::<f32>(&f, &p, "x", Some(1)).unwrap();
        assert_eq!((x, s), (vec![1.0, 2.0, 3.0], vec![3]));
        assert_eq!(get_str_attr(&f, &p, "note").unwrap(), "hello");
        drop(f);
        // A failing writer leaves the old file intact and no tmp behind.
        let err = atomic_write(&p, FileKind::Metrics, |f| write_array(f, &p, "y", &[1.0f32], &[2]));
        assert!(err.is_err());
        assert!(!dir.path().join("a.h5.tmp").exists());
        let (f, _) = open_kind(&p, None).unwrap();
        assert!(f.dataset("x").is_ok());
        // Wrong kind is a clear error.
        let e = open_kind(&p, Some(FileKind::Dataset)).unwrap_err().to_string();
        assert!(e.contains("expected `dataset`"), "{e}");
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.h5");
        std::fs::write(&p, b"not an hdf5 file at all").unwrap();
        let e = open_kind(&p, None).unwrap_err().to_string();
        assert!(e.contains("bad.h5") && e.contains("cannot open"), "{e}");
    }
}
