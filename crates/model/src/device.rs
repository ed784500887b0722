//! Where tensors live: [`DeviceSpec`], what a config or a `--device` flag says
//! (`auto`, `cpu`, `cuda`, `cuda:N`), and its resolution to a libtorch device,
//! which checks that the device exists (a clear error instead of a libtorch
//! panic on the first tensor moved there).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::Device;

/// Sets libtorch's intra-op thread count and restores the previous count
/// when dropped, on every path out. The count is process-wide: take the
/// guard on the thread that owns the work, around the workers, not inside
/// them (a worker's restore would change the count under the others).
pub struct TorchThreads(i32);

impl TorchThreads {
    /// Set the count to `n` (only if it differs) until the guard is dropped.
    pub fn set(n: i32) -> Self {
        let old = tch::get_num_threads();
        if old != n {
            tch::set_num_threads(n);
        }
        TorchThreads(old)
    }
}

impl Drop for TorchThreads {
    fn drop(&mut self) {
        if tch::get_num_threads() != self.0 {
            tch::set_num_threads(self.0);
        }
    }
}

/// Whether libtorch sees a CUDA device. Loads libtorch's CUDA backend first
/// where an NVIDIA driver is installed (see [`load_cuda_backend`]); without
/// that, a binary linked with `--as-needed` never sees a GPU.
pub fn cuda_available() -> bool {
    load_cuda_backend();
    tch::Cuda::is_available()
}

/// Load `libtorch_cuda.so` (once per process) if the NVIDIA driver library
/// `libcuda.so.1` can be loaded; returns whether the CUDA backend is loaded.
///
/// The linker drops `libtorch_cuda.so` from headlab's binaries: nothing in
/// them calls it directly (tch reaches CUDA through libtorch's dispatcher),
/// so with the default `--as-needed` it never becomes a dependency and
/// libtorch reports no CUDA device even on a GPU machine. Loading it at run
/// time registers the backend, as `import torch` does in Python. On a
/// machine without the driver this costs one failed `dlopen` and loads
/// nothing; with a CPU-only libtorch there is no `libtorch_cuda.so` and the
/// CPU stays the only device (a `--device cuda` then fails with
/// [`DeviceError::NoCuda`]). It is found like libtorch itself
/// (`LD_LIBRARY_PATH`, which tools/setup.sh sets).
pub fn load_cuda_backend() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            use std::ffi::{c_char, c_int, c_void};
            extern "C" {
                fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
            }
            const RTLD_LAZY: c_int = 0x1;
            const RTLD_NOW: c_int = 0x2;
            const RTLD_GLOBAL: c_int = 0x100;
            // SAFETY: dlopen with NUL-terminated names; the handles are kept
            // (the libraries stay loaded for the life of the process).
            unsafe {
                if dlopen(c"libcuda.so.1".as_ptr(), RTLD_LAZY | RTLD_GLOBAL).is_null() {
                    return false;
                }
                !dlopen(c"libtorch_cuda.so".as_ptr(), RTLD_NOW | RTLD_GLOBAL).is_null()
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    })
}

/// A device as written in configs and on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    /// The first CUDA device if there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// `cuda` (`None`: device 0) or `cuda:N`.
    Cuda(Option<usize>),
}

#[derive(Debug, thiserror::Error)]
/// A device that cannot be parsed or does not exist here.
pub enum DeviceError {
    /// Shown as "device '{0}' is not a device; use auto, cpu, cuda or cuda:N".
    #[error("device `{0}` is not a device; use auto, cpu, cuda or cuda:N")]
    Parse(String),
    /// Shown as "--device {spec}: no CUDA device found (tch::Cuda::device_count() = 0); use --device cpu...".
    #[error("--device {spec}: no CUDA device found (tch::Cuda::device_count() = 0); use --device cpu or auto")]
    NoCuda {
        /// The device as given.
        spec: DeviceSpec,
    },
    /// Shown as "--device {spec}: no CUDA device {index} (tch::Cuda::device_count() = {count}, so cuda:0...".
    #[error("--device {spec}: no CUDA device {index} (tch::Cuda::device_count() = {count}, so cuda:0 to cuda:{last}); use one of those, cpu or auto", last = .count - 1)]
    NoSuchCuda {
        /// The device as given.
        spec: DeviceSpec,
        /// The index asked for.
        index: usize,
        /// How many there are.
        count: usize,
    },
}

impl DeviceSpec {
    /// The libtorch device, after checking that it exists (call it once per
    /// command; the error is a [`crate::ModelError::Device`]).
    pub fn resolve(self) -> crate::Result<Device> {
        Ok(self.resolve_device()?)
    }

    fn resolve_device(self) -> Result<Device, DeviceError> {
        match self {
            DeviceSpec::Auto => Ok(if cuda_available() { Device::Cuda(0) } else { Device::Cpu }),
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(i) => {
                let index = i.unwrap_or(0);
                load_cuda_backend();
                let count = tch::Cuda::device_count().max(0) as usize;
                if count == 0 {
                    Err(DeviceError::NoCuda { spec: self })
                } else if index >= count {
                    Err(DeviceError::NoSuchCuda { spec: self, index, count })
                } else {
                    Ok(Device::Cuda(index))
                }
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(i)) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        match s.trim() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            t => t
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(|i| DeviceSpec::Cuda(Some(i)))
                .ok_or_else(|| DeviceError::Parse(s.into())),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A resolved device as `--device` writes it (`cpu`, `cuda:N`), for messages.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Parse and resolve in one go: `s.parse::<DeviceSpec>()?.resolve()`.
pub fn parse_device(s: &str) -> crate::Result<Device> {
    s.parse::<DeviceSpec>()?.resolve()
}
