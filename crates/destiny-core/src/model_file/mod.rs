//! Model files: the resolved network definition, every weight, the optimizer state and the
//! training position in one safetensors file, so that PyTorch and NumPy users can open the
//! weights and a killed run can resume exactly.
//!
//! Tensors: each parameter under its name (`weights.SOURCE.LAYER` as `source x layer`,
//! `bias.LAYER`, `slope.LAYER`), and optimizer state as `optimizer.K.NAME`. Metadata:
//! `format` = `destiny-model`, `definition` (JSON), `datasets` (JSON: the width and sparsity
//! of each bound dataset), `training` (JSON [`TrainingState`]) and `contents`: `training`
//! (weights and optimizer state; the default of files without the key) or `weights` (an
//! inference export: no optimizer state, weights in f32 or bf16).
//!
//! Files are opened, not read ([`open_model`]): the file is memory-mapped and only its header
//! is read and checked; a tensor's bytes are touched when it is asked for, and f32 weights
//! are handed out borrowed from the mapping.

mod export;
mod open;
#[cfg(test)]
mod tests;

pub use export::{export_model, ExportPrecision};
pub use open::{open_model, OpenModel};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{Network, Topology};
use crate::parallel::Group;
use crate::run::TrainingState;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

const FORMAT: &str = "destiny-model";

#[derive(Serialize, Deserialize)]
struct DatasetEntry {
    width: usize,
    sparse: bool,
}

/// What a model file holds besides the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// Weights in f32 and the optimizer state: a checkpoint a run can resume from.
    Training,
    /// Weights only, in f32 or bf16: an inference export.
    Weights,
}

impl Contents {
    fn key(self) -> &'static str {
        match self {
            Contents::Training => "training",
            Contents::Weights => "weights",
        }
    }
}

/// A model file read whole into host memory: what a resumed run restores.
pub struct ModelFile {
    pub topology: Topology,
    pub parameters: Vec<Vec<f32>>,
    /// Per parameter, the optimizer's state tensors (empty when none were saved).
    pub optimizer_state: Vec<Vec<Vec<f32>>>,
    pub training: TrainingState,
}

fn model_error(path: &Path, message: impl Into<String>) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The little-endian bytes of `values`: the values themselves on a little-endian machine.
fn f32_bytes(values: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// Writes `network` and `training` to `path` atomically (a temporary file in the same
/// folder, renamed over the target only when complete). Every rank of a group calls it, for
/// the whole tensors are gathered from all; rank 0 alone writes, one file whatever the
/// number of ranks.
pub fn save_model<B: Backend>(
    path: &Path,
    network: &Network<B>,
    training: &TrainingState,
) -> Result<()> {
    match ModelFile::of_network(network, training)? {
        Some(file) => file.write(path),
        None => Ok(()),
    }
}

/// Reads a whole model file (weights and optimizer state), checking that it is complete and
/// consistent with its definition: what resuming a run needs. [`open_model`] opens one
/// without reading it.
pub fn load_model(path: &Path) -> Result<ModelFile> {
    open_model(path)?.read_all()
}

impl ModelFile {
    /// A host copy of `network`'s parameters and optimizer state with `training`, gathered
    /// from every rank of its group (all call it); `None` on ranks other than 0, which write
    /// nothing.
    pub fn of_network<B: Backend>(
        network: &Network<B>,
        training: &TrainingState,
    ) -> Result<Option<ModelFile>> {
        let parameters = network.parameter_values()?;
        let optimizer_state = network.optimizer_state()?;
        Ok((network.group().rank() == 0).then(|| ModelFile {
            topology: network.topology().clone(),
            parameters,
            optimizer_state,
            training: training.clone(),
        }))
    }

    /// Writes this model to `path` atomically, with its optimizer state. Parameters that
    /// are not all finite are an error naming the tensor, and the file is left as it was:
    /// a model that could not be loaded again is never written.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut parameters = self.topology.parameters.iter().zip(&self.parameters);
        if let Some((spec, _)) =
            parameters.find(|(_, values)| values.iter().any(|v| !v.is_finite()))
        {
            return Err(Error::Numerics(format!(
                "tensor '{}' holds NaN or infinite values, so {} is not written",
                spec.name,
                path.display()
            )));
        }
        let mut tensors = Vec::new();
        for (spec, values) in self.topology.parameters.iter().zip(&self.parameters) {
            tensors.push(Tensor::new(spec.name.clone(), spec, f32_bytes(values)));
        }
        for (spec, state) in self.topology.parameters.iter().zip(&self.optimizer_state) {
            for (k, values) in state.iter().enumerate() {
                let name = format!("optimizer.{k}.{}", spec.name);
                tensors.push(Tensor::new(name, spec, f32_bytes(values)));
            }
        }
        write_tensors(
            path,
            &tensors,
            metadata(&self.topology, &self.training, Contents::Training),
        )
    }

    /// Puts the model on a backend, with its optimizer state when it has one.
    pub fn into_network<B: Backend>(self, backend: B) -> Result<Network<B>> {
        self.into_network_in_group(backend, Group::single())
    }

    /// Puts the model on one rank of a group, whatever the number of ranks that wrote it:
    /// the rank keeps its share of every tensor.
    pub fn into_network_in_group<B: Backend>(
        self,
        backend: B,
        group: Group<B>,
    ) -> Result<Network<B>> {
        let mut network =
            Network::with_parameters_in_group(backend, self.topology, &self.parameters, group)?;
        restore_optimizer(&mut network, &self.training, self.optimizer_state)?;
        Ok(network)
    }

    /// Overwrites the parameters and optimizer state of `network`, which must have been made
    /// from the same definition (`path` names the file in the error otherwise); returns where
    /// training stood.
    pub fn restore_into<B: Backend>(
        self,
        path: &Path,
        network: &mut Network<B>,
    ) -> Result<TrainingState> {
        if let Some(difference) =
            crate::model::describe_difference(&self.topology, network.topology())
        {
            return Err(model_error(
                path,
                format!("it cannot be resumed here: {difference}"),
            ));
        }
        for (index, values) in self.parameters.iter().enumerate() {
            network.set_parameter_values(index, values)?;
        }
        restore_optimizer(network, &self.training, self.optimizer_state)?;
        Ok(self.training)
    }
}

/// Sets the saved optimizer, with its state and step count, when there is one.
fn restore_optimizer<B: Backend>(
    network: &mut Network<B>,
    training: &TrainingState,
    state: Vec<Vec<Vec<f32>>>,
) -> Result<()> {
    if let Some(optimizer) = training.optimizer {
        network.set_optimizer(optimizer)?;
        network.restore_optimizer_state(training.steps, state)?;
    }
    Ok(())
}

/// One tensor to write: its name, element type, shape and little-endian bytes.
struct Tensor<'a> {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Cow<'a, [u8]>,
}

impl<'a> Tensor<'a> {
    /// An f32 tensor of the shape of parameter `spec`.
    fn new(
        name: String,
        spec: &crate::model::topology::ParameterSpec,
        bytes: Cow<'a, [u8]>,
    ) -> Self {
        Tensor {
            name,
            dtype: Dtype::F32,
            shape: vec![spec.rows, spec.cols],
            bytes,
        }
    }
}

/// The metadata of a model file of `topology` at `training`, holding `contents`.
fn metadata(
    topology: &Topology,
    training: &TrainingState,
    contents: Contents,
) -> HashMap<String, String> {
    let datasets: BTreeMap<String, DatasetEntry> = topology
        .layers
        .iter()
        .filter_map(|l| {
            l.definition.dataset.clone().map(|name| {
                (
                    name,
                    DatasetEntry {
                        width: l.width,
                        sparse: l.sparse_data,
                    },
                )
            })
        })
        .collect();
    HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("definition".to_string(), to_json(&topology.definition)),
        ("datasets".to_string(), to_json(&datasets)),
        ("training".to_string(), to_json(training)),
        ("contents".to_string(), contents.key().to_string()),
    ])
}

/// Writes `tensors` and `metadata` as a safetensors file at `path`, atomically.
fn write_tensors(
    path: &Path,
    tensors: &[Tensor<'_>],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|t| {
            Ok((
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| model_error(path, e.to_string()))?;
    crate::atomic::write_path(path, |temporary| {
        safetensors::tensor::serialize_to_file(views, Some(metadata), temporary)
            .map_err(|e| model_error(path, e.to_string()))
    })
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model metadata serialises")
}
