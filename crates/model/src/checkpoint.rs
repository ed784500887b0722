//! Parameters in and out: building a model from named arrays (a checkpoint's
//! `/params`) into one flat buffer, loading checkpoint files, and copying
//! tensors back to host arrays.

use std::path::Path;

use headlab_store::checkpoint::{read_checkpoint, Checkpoint, NamedArray};
use tch::{Device, Kind, Tensor};

use crate::config::{model_config_from_run_toml, param_shapes, ModelConfig};
use crate::model::{Model, Param};
use crate::norm::Normalization;
use crate::{ModelError, Result};

impl Model {
    /// Build from named arrays (e.g. a checkpoint's `/params`); checks names and shapes.
    /// All parameters are copied into one flat buffer on `device`; each named
    /// parameter is a leaf view into it that requires grad.
    pub fn from_arrays(
        config: ModelConfig,
        norm: Normalization,
        arrays: &[NamedArray],
        device: Device,
        path: &str,
    ) -> Result<Model> {
        config.validate()?;
        let shapes = param_shapes(&config, norm.dimension);
        let total: usize = shapes.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        let mut data = Vec::with_capacity(total);
        for (name, shape) in &shapes {
            let a = arrays.iter().find(|a| &a.name == name).ok_or_else(|| ModelError::Checkpoint {
                path: path.into(),
                msg: format!(
                    "missing parameter /params/{name} (shape {shape:?}); does the [model] config match the checkpoint?"
                ),
            })?;
            if &a.shape != shape {
                return Err(ModelError::Checkpoint {
                    path: path.into(),
                    msg: format!("parameter {name} has shape {:?}, the [model] config implies {shape:?}", a.shape),
                });
            }
            data.extend_from_slice(&a.data);
        }
        let flat = Tensor::from_slice(&data).f_to_device(device)?;
        Model::on_flat(config, norm, flat)
    }

    /// Bind a model of `config` to `flat` (already filled, in
    /// [`param_shapes`] order): one leaf view per named parameter.
    fn on_flat(config: ModelConfig, norm: Normalization, flat: Tensor) -> Result<Model> {
        let shapes = param_shapes(&config, norm.dimension);
        let mut params = Vec::new();
        let mut off = 0i64;
        for (name, shape) in shapes {
            let n: i64 = shape.iter().product::<usize>() as i64;
            let dims: Vec<i64> = shape.iter().map(|&x| x as i64).collect();
            let t = flat.f_narrow(0, off, n)?.f_view(dims.as_slice())?.set_requires_grad(true);
            params.push(Param { name, t });
            off += n;
        }
        Model::bind(config, norm, flat, params)
    }

    /// Another model on the same parameter storage: its weights are this
    /// model's (an update of either's flat buffer is seen by both), but its
    /// named parameters are leaves of their own, so the two can build and
    /// differentiate graphs at the same time on different threads
    /// (data-parallel training: one replica per shard of the batch).
    pub fn share(&self) -> Result<Model> {
        Model::on_flat(self.config.clone(), self.norm.clone(), self.flat_params().shallow_clone())
    }

    /// Load the weights of a checkpoint written by `headlab train`.
    /// `config_toml` is the run's TOML text; its `[model]` table is used.
    pub fn from_checkpoint(ck: &Checkpoint, device: Device, path: &str) -> Result<Model> {
        let config = model_config_from_run_toml(&ck.config_toml)
            .map_err(|msg| ModelError::Checkpoint { path: path.into(), msg })?;
        let norm = Normalization::from_arrays(&ck.norm, config.wall_features, path)?;
        Model::from_arrays(config, norm, &ck.params, device, path)
    }

    /// Read a checkpoint file and build the model on `device`.
    pub fn load(path: &Path, device: Device) -> Result<Model> {
        let ck = read_checkpoint(path)?;
        Model::from_checkpoint(&ck, device, &path.display().to_string())
    }

    /// An independent copy (own flat buffer) on `device`.
    pub fn deep_clone(&self, device: Device) -> Result<Model> {
        Model::from_arrays(self.config.clone(), self.norm.clone(), &self.to_arrays()?, device, "<clone>")
    }

    /// Parameters as named host arrays (for checkpoints).
    pub fn to_arrays(&self) -> Result<Vec<NamedArray>> {
        self.named_parameters().into_iter().map(|(name, t)| tensor_to_array(name, t)).collect()
    }
}

/// Copy a tensor to a host f32 array.
pub fn tensor_to_array(name: &str, t: &Tensor) -> Result<NamedArray> {
    let shape: Vec<usize> = t.size().iter().map(|&x| x as usize).collect();
    let flat = t.detach().f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?.f_view([-1])?;
    let data = Vec::<f32>::try_from(&flat).map_err(|e| ModelError::Checkpoint {
        path: "<memory>".into(),
        msg: format!("cannot copy tensor {name} {shape:?} to the host: {e}"),
    })?;
    Ok(NamedArray { name: name.into(), shape, data })
}
