//! Model files: the resolved network definition, every weight, the optimizer state and the
//! training position in one safetensors file, so that PyTorch and NumPy users can open the
//! weights and a killed run can resume exactly.
//!
//! Tensors: each parameter under its name (`weights.SOURCE.LAYER` as `source x layer`,
//! `bias.LAYER`, `slope.LAYER`), and optimizer state as `optimizer.K.NAME`. Metadata:
//! `format` = `destiny-model`, `definition` (JSON), `datasets` (JSON: the width and sparsity
//! of each bound dataset) and `training` (JSON [`TrainingState`]).

use crate::backend::Backend;
use crate::config::NetworkDefinition;
use crate::error::{Error, Result};
use crate::model::{DatasetShape, Network, Topology};
use crate::parallel::Group;
use crate::run::TrainingState;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

const FORMAT: &str = "destiny-model";

#[derive(Serialize, Deserialize)]
struct DatasetEntry {
    width: usize,
    sparse: bool,
}

/// A model file read into host memory.
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

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
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
    let topology = network.topology();
    let values = network.parameter_values()?;
    let state = network.optimizer_state()?;
    if network.group().rank() != 0 {
        return Ok(());
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (spec, values) in topology.parameters.iter().zip(values) {
        tensors.push((
            spec.name.clone(),
            vec![spec.rows, spec.cols],
            to_bytes(&values),
        ));
    }
    for (spec, state) in topology.parameters.iter().zip(state) {
        for (k, values) in state.iter().enumerate() {
            tensors.push((
                format!("optimizer.{k}.{}", spec.name),
                vec![spec.rows, spec.cols],
                to_bytes(values),
            ));
        }
    }
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
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), FORMAT.to_string());
    metadata.insert("definition".to_string(), to_json(&topology.definition));
    metadata.insert("datasets".to_string(), to_json(&datasets));
    metadata.insert("training".to_string(), to_json(training));
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
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

/// Reads a model file, checking that it is complete and consistent with its definition.
pub fn load_model(path: &Path) -> Result<ModelFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| model_error(path, format!("not a complete safetensors file ({e})")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| model_error(path, e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let field = |key: &str| {
        metadata.get(key).ok_or_else(|| {
            model_error(
                path,
                format!("no '{key}' in the metadata: not a Destiny model"),
            )
        })
    };
    if field("format")? != FORMAT {
        return Err(model_error(path, "not a Destiny model"));
    }
    let parse_error =
        |key: &str, e: serde_json::Error| model_error(path, format!("metadata '{key}': {e}"));
    let definition: NetworkDefinition =
        serde_json::from_str(field("definition")?).map_err(|e| parse_error("definition", e))?;
    let datasets: BTreeMap<String, DatasetEntry> =
        serde_json::from_str(field("datasets")?).map_err(|e| parse_error("datasets", e))?;
    let training: TrainingState =
        serde_json::from_str(field("training")?).map_err(|e| parse_error("training", e))?;
    let topology = Topology::new(&definition, &|name| {
        datasets.get(name).map(|d| DatasetShape {
            width: d.width,
            sparse: d.sparse,
        })
    })
    .map_err(|e| model_error(path, e.to_string()))?;
    let read = |name: &str, rows: usize, cols: usize| -> Result<Vec<f32>> {
        let view = tensors
            .tensor(name)
            .map_err(|_| model_error(path, format!("tensor '{name}' is missing")))?;
        if view.dtype() != Dtype::F32 || view.shape() != [rows, cols] {
            return Err(model_error(
                path,
                format!(
                    "tensor '{name}' is {:?} {:?}, f32 [{rows}, {cols}] expected",
                    view.dtype(),
                    view.shape()
                ),
            ));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let mut parameters = Vec::new();
    let mut optimizer_state = Vec::new();
    let state_count = training.optimizer.map_or(0, |o| o.kind.state_count());
    for spec in &topology.parameters {
        parameters.push(read(&spec.name, spec.rows, spec.cols)?);
        let state = (0..state_count)
            .map(|k| {
                read(
                    &format!("optimizer.{k}.{}", spec.name),
                    spec.rows,
                    spec.cols,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        optimizer_state.push(state);
    }
    if let Some((name, _)) =
        parameters
            .iter()
            .zip(&topology.parameters)
            .find_map(|(values, spec)| {
                values
                    .iter()
                    .any(|v| !v.is_finite())
                    .then_some((spec.name.clone(), ()))
            })
    {
        return Err(model_error(
            path,
            format!("tensor '{name}' holds NaN or infinite values"),
        ));
    }
    Ok(ModelFile {
        topology,
        parameters,
        optimizer_state,
        training,
    })
}

impl ModelFile {
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
