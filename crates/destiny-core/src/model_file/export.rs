//! Inference exports: a model file's weights without the optimizer state (a third of an Adam
//! checkpoint), optionally in bf16 (a sixth), which predicting reads like a full model.

use super::{f32_bytes, metadata, open_model, write_tensors, Contents, Tensor};
use crate::error::Result;
use rayon::prelude::*;
use safetensors::tensor::Dtype;
use std::borrow::Cow;
use std::path::Path;

/// The element type of an export's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportPrecision {
    /// As trained: predicting from the export gives the same scores.
    F32,
    /// Rounded to bf16 (to nearest, ties to even): 8 bits of mantissa, converted back to
    /// f32 on load.
    Bf16,
}

/// Writes the weights of the model file `source` to `target` (atomically) as an inference
/// export in `precision`, with the same definition and training metadata.
pub fn export_model(source: &Path, target: &Path, precision: ExportPrecision) -> Result<()> {
    let model = open_model(source)?;
    let specs = &model.topology.parameters;
    let values = (0..specs.len())
        .map(|i| model.parameter(i))
        .collect::<Result<Vec<_>>>()?;
    let tensors: Vec<Tensor<'_>> = specs
        .iter()
        .zip(&values)
        .map(|(spec, values)| {
            let mut tensor = Tensor::new(spec.name.clone(), spec, f32_bytes(values));
            if precision == ExportPrecision::Bf16 {
                tensor.dtype = Dtype::BF16;
                tensor.bytes = Cow::Owned(bf16_bytes(values));
            }
            tensor
        })
        .collect();
    write_tensors(
        target,
        &tensors,
        metadata(&model.topology, &model.training, Contents::Weights),
    )
}

/// `values` rounded to bf16, as little-endian bytes.
fn bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .par_iter()
        .flat_map_iter(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect()
}
