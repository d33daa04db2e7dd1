//! The datasets of a training run, bound to the layers of a network definition by the names
//! in their `DataSet` keys.

use crate::read_dataset;
use destiny_core::config::{LayerKind, NetworkDefinition};
use destiny_core::data::Dataset;
use destiny_core::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Loads the datasets the definition's input and output layers name: `input` for the one
/// input layer, `output` (else `input`: an autoencoder) for the one output layer, and
/// `named` as `(DataSet name, file)` for networks with several. A file named twice is
/// read once.
pub fn load_bound_datasets(
    definition: &NetworkDefinition,
    input: Option<&Path>,
    output: Option<&Path>,
    named: &[(String, PathBuf)],
) -> Result<Vec<Dataset>> {
    let names_of = |kind: LayerKind| -> Vec<String> {
        definition
            .layers
            .iter()
            .filter(|l| l.kind == kind)
            .filter_map(|l| l.dataset.clone())
            .collect()
    };
    let mut files: Vec<(String, PathBuf)> = named.to_vec();
    let mut bind = |what: &str, path: Option<&Path>, names: Vec<String>| -> Result<()> {
        let Some(path) = path else { return Ok(()) };
        match names.as_slice() {
            [name] => files.push((name.clone(), path.to_path_buf())),
            [] => {
                return Err(Error::Data(format!(
                    "{what} dataset was given but the network has no {what} layer with a DataSet"
                )))
            }
            _ => {
                return Err(Error::Data(format!(
                    "the network has several {what} layers ({}): bind their datasets by name",
                    names.join(", ")
                )))
            }
        }
        Ok(())
    };
    bind("an input", input, names_of(LayerKind::Input))?;
    bind("an output", output.or(input), names_of(LayerKind::Output))?;
    let mut datasets = Vec::new();
    for (name, path) in files {
        if datasets.iter().any(|d: &Dataset| d.name == name) {
            continue;
        }
        let mut dataset = read_dataset(&path)?.dataset;
        dataset.name = name;
        datasets.push(dataset);
    }
    Ok(datasets)
}
