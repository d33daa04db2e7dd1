//! A model file opened, not read: memory-mapped, its header checked, its tensors read from
//! the mapping when asked for.

use super::{model_error, Contents, DatasetEntry, ModelFile, FORMAT};
use crate::backend::Backend;
use crate::config::NetworkDefinition;
use crate::error::{Error, Result};
use crate::model::{DatasetShape, Network, Topology};
use crate::parallel::Group;
use crate::run::TrainingState;
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorInfo};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A model file mapped into memory, with its header read and checked.
pub struct OpenModel {
    path: PathBuf,
    map: Mmap,
    /// Where the tensors' bytes start (after the length and the header).
    pub(super) data_start: usize,
    pub(super) header: Metadata,
    /// The network the file holds.
    pub topology: Topology,
    /// Where training stood when the file was written.
    pub training: TrainingState,
    /// Whether the optimizer state is there.
    pub contents: Contents,
}

/// Opens a model file: maps it and reads its header only. The header's length, every
/// tensor's offsets (contiguous, within the file, matching its shape and type) and the
/// metadata are checked now, so that a truncated or hostile file fails here with its name;
/// the tensors' bytes are not read until asked for.
pub fn open_model(path: &Path) -> Result<OpenModel> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // Safety: the mapping is read only, and model files are replaced by renaming a new file
    // over them (atomic writes), never rewritten in place, so what is mapped does not change.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let (header_len, header) = SafeTensors::read_metadata(&map)
        .map_err(|e| model_error(path, format!("not a complete safetensors file ({e})")))?;
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
    let contents = match metadata.get("contents").map(String::as_str) {
        None | Some("training") => Contents::Training,
        Some("weights") => Contents::Weights,
        Some(other) => {
            return Err(model_error(
                path,
                format!("metadata 'contents' is '{other}', not 'training' or 'weights'"),
            ))
        }
    };
    let parse_error =
        |key: &str, e: serde_json::Error| model_error(path, format!("metadata '{key}': {e}"));
    let definition: NetworkDefinition =
        serde_json::from_str(field("definition")?).map_err(|e| parse_error("definition", e))?;
    let datasets: BTreeMap<String, DatasetEntry> =
        serde_json::from_str(field("datasets")?).map_err(|e| parse_error("datasets", e))?;
    let training: TrainingState =
        serde_json::from_str(field("training")?).map_err(|e| parse_error("training", e))?;
    let topology = Topology::new(&definition, &|name| {
        // Shapes beyond the width are in the definition, resolved when the model was built.
        datasets
            .get(name)
            .map(|d| DatasetShape::flat(d.width, d.sparse))
    })
    .map_err(|e| model_error(path, e.to_string()))?;
    let model = OpenModel {
        path: path.to_path_buf(),
        map,
        data_start: 8 + header_len,
        header,
        topology,
        training,
        contents,
    };
    // Every tensor the network needs is there with its shape, before any is read.
    for spec in &model.topology.parameters {
        model.weights_info(&spec.name, spec.rows, spec.cols)?;
    }
    Ok(model)
}

impl OpenModel {
    /// The file this model was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size of the file in bytes.
    pub fn file_size(&self) -> usize {
        self.map.len()
    }

    /// The element type of the stored weights (F32, or BF16 in a bf16 export).
    pub fn weights_dtype(&self) -> Option<Dtype> {
        let spec = self.topology.parameters.first()?;
        self.header.info(&spec.name).map(|info| info.dtype)
    }

    /// The entry of tensor `name`, checked to be f32 or bf16 of shape `[rows, cols]`.
    fn weights_info(&self, name: &str, rows: usize, cols: usize) -> Result<&TensorInfo> {
        let info = self
            .header
            .info(name)
            .ok_or_else(|| model_error(&self.path, format!("tensor '{name}' is missing")))?;
        if !matches!(info.dtype, Dtype::F32 | Dtype::BF16) || info.shape != [rows, cols] {
            return Err(model_error(
                &self.path,
                format!(
                    "tensor '{name}' is {:?} {:?}, f32 or bf16 [{rows}, {cols}] expected",
                    info.dtype, info.shape
                ),
            ));
        }
        Ok(info)
    }

    /// The values of tensor `name` (`rows x cols`), borrowed from the mapping when they are
    /// stored as f32, converted when bf16.
    fn values(&self, name: &str, rows: usize, cols: usize) -> Result<Cow<'_, [f32]>> {
        let info = self.weights_info(name, rows, cols)?;
        let (start, end) = info.data_offsets;
        // The header check made the offsets lie within the file.
        let bytes = &self.map[self.data_start + start..self.data_start + end];
        Ok(match info.dtype {
            Dtype::BF16 => Cow::Owned(bf16_values(bytes)),
            _ => f32_values(bytes),
        })
    }

    /// The whole values of parameter `index` (in `topology.parameters` order), checked to be
    /// finite.
    pub fn parameter(&self, index: usize) -> Result<Cow<'_, [f32]>> {
        let spec = &self.topology.parameters[index];
        let values = self.values(&spec.name, spec.rows, spec.cols)?;
        if values.par_iter().any(|v| !v.is_finite()) {
            return Err(model_error(
                &self.path,
                format!("tensor '{}' holds NaN or infinite values", spec.name),
            ));
        }
        Ok(values)
    }

    /// The optimizer state of parameter `index`: one tensor per state the optimizer keeps.
    fn optimizer_state(&self, index: usize) -> Result<Vec<Vec<f32>>> {
        let spec = &self.topology.parameters[index];
        let count = self
            .training
            .optimizer
            .map_or(0, |o| spec.optimizer_states(o.kind));
        (0..count)
            .map(|k| {
                let name = format!("optimizer.{k}.{}", spec.name);
                Ok(self.values(&name, spec.rows, spec.cols)?.into_owned())
            })
            .collect()
    }

    /// Reads everything into host memory: weights and optimizer state, as a resumed run
    /// needs them. An inference export has no optimizer state and cannot be resumed.
    pub fn read_all(self) -> Result<ModelFile> {
        if self.contents == Contents::Weights {
            return Err(model_error(
                &self.path,
                "it is an inference export (weights only, no optimizer state): training cannot resume from it",
            ));
        }
        let count = self.topology.parameters.len();
        let parameters = (0..count)
            .map(|i| Ok(self.parameter(i)?.into_owned()))
            .collect::<Result<Vec<_>>>()?;
        let optimizer_state = (0..count)
            .map(|i| self.optimizer_state(i))
            .collect::<Result<Vec<_>>>()?;
        Ok(ModelFile {
            topology: self.topology,
            parameters,
            optimizer_state,
            training: self.training,
        })
    }

    /// Puts the weights on a backend for inference, copying them straight from the mapping;
    /// the optimizer state is never read.
    pub fn network<B: Backend>(&self, backend: B) -> Result<Network<B>> {
        self.network_in_group(backend, Group::single())
    }

    /// Puts the weights on one rank of a group for inference: the rank keeps its share of
    /// every tensor.
    pub fn network_in_group<B: Backend>(&self, backend: B, group: Group<B>) -> Result<Network<B>> {
        Network::with_parameters_from(backend, self.topology.clone(), group, |_, i| {
            self.parameter(i)
        })
    }
}

/// f32 values from little-endian bytes: the bytes themselves where they are aligned on a
/// little-endian machine (always, in files this crate writes), else a converted copy.
fn f32_values(bytes: &[u8]) -> Cow<'_, [f32]> {
    match bytemuck::try_cast_slice::<u8, f32>(bytes) {
        Ok(values) if cfg!(target_endian = "little") => Cow::Borrowed(values),
        _ => Cow::Owned(
            bytes
                .par_chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
    }
}

/// f32 values from little-endian bf16 bytes (exact: every bf16 is an f32).
fn bf16_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .par_chunks_exact(2)
        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}
