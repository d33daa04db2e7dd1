//! The datasets of a training run, bound to the layers of a network definition by the names
//! in their `DataSet` keys.

use crate::read_dataset;
use destiny_core::backend::Backend;
use destiny_core::config::{LayerKind, NetworkDefinition};
use destiny_core::data::Dataset;
use destiny_core::error::{Error, Result};
use destiny_core::model::Network;
use destiny_core::train::TrainingData;
use destiny_storage::Input;
use std::path::{Path, PathBuf};

/// Loads the datasets the definition's input and output layers name: `input` for the one
/// input layer, `output` (else `input`: an autoencoder) for the one output layer, and
/// `named` as `(DataSet name, file)` for networks with several. A file named twice is
/// read once. Any of them may be an object (`s3://...`), read through a local copy.
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
        let file = Input::open(&path)?;
        let mut dataset = match crate::is_netcdf_file(file.path()) {
            true => netcdf_dataset(file.path(), &name)?,
            false => read_dataset(file.path())?.dataset,
        };
        dataset.name = name;
        datasets.push(dataset);
    }
    Ok(datasets)
}

/// The dataset `name` of a DSSTNE NetCDF file (as DSSTNE binds a layer's `DataSet` to the
/// file's dataset of that name), or its only dataset.
#[cfg(feature = "netcdf")]
fn netcdf_dataset(path: &Path, name: &str) -> Result<Dataset> {
    let mut datasets = crate::netcdf::read_netcdf(path)?;
    let found = match datasets.iter().position(|d| d.name == name) {
        Some(found) => found,
        None if datasets.len() == 1 => 0,
        None => {
            let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::Data(format!(
                "{}: no dataset '{name}' (it holds {})",
                path.display(),
                names.join(", ")
            )));
        }
    };
    Ok(datasets.swap_remove(found))
}

#[cfg(not(feature = "netcdf"))]
fn netcdf_dataset(path: &Path, _name: &str) -> Result<Dataset> {
    Err(crate::netcdf_unsupported(path))
}

/// The validation users' files in a folder `destiny convert` wrote: the fold-in rows bound
/// to the input layer, the held-out items to the output layer.
pub const VALIDATION_FILES: [&str; 2] = ["validation_input.arrow", "validation_target.arrow"];

/// What a run validates on (`destiny train --validation PATH`).
pub enum Validation {
    /// Validation users from a folder `destiny convert` wrote: `validation_input.arrow` bound
    /// to the input layer, `validation_target.arrow` to the output layer; the epochs are
    /// judged by ranking quality on them.
    Users(Vec<Dataset>),
    /// One dataset file, bound as a training input is; its loss is reported.
    Loss(Vec<Dataset>),
}

impl Validation {
    /// Reads the validation data at `path`: a folder of validation users, or a dataset.
    /// A prefix in a bucket is a folder, of which only the two validation files are read.
    pub fn load(definition: &NetworkDefinition, path: &Path) -> Result<Validation> {
        let copy = Input::open_file_or_folder(path, &VALIDATION_FILES)?;
        let local = copy.path();
        if !local.is_dir() {
            return Ok(Validation::Loss(load_bound_datasets(
                definition,
                Some(local),
                None,
                &[],
            )?));
        }
        let [input, target] = VALIDATION_FILES.map(|name| local.join(name));
        if let Some(missing) = [&input, &target].into_iter().find(|file| !file.exists()) {
            return Err(Error::Data(format!(
                "{}: no {} (destiny convert writes it with --validation-users)",
                path.display(),
                missing.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
        Ok(Validation::Users(load_bound_datasets(
            definition,
            Some(&input),
            Some(&target),
            &[],
        )?))
    }

    /// Adds these validation datasets to a run's training data.
    pub fn bind_to<'a, B: Backend>(
        &'a self,
        data: TrainingData<'a, B>,
        network: &Network<B>,
    ) -> Result<TrainingData<'a, B>> {
        match self {
            Validation::Users(datasets) => data.with_ranking_validation(network, datasets),
            Validation::Loss(datasets) => data.with_validation(network, datasets),
        }
    }
}
