//! Where tensors live: [`DeviceSpec`], what a config or a `--device` flag says
//! (`auto`, `cpu`, `cuda`, `cuda:N`), and its resolution to a libtorch device,
//! which checks that the device exists (a clear error instead of a libtorch
//! panic on the first tensor moved there).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::Device;

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
            DeviceSpec::Auto => Ok(if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(i) => {
                let index = i.unwrap_or(0);
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
