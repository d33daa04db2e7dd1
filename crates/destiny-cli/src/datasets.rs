//! Loading datasets for the commands.

use anyhow::Context;
use destiny_data::{read_dataset, DatasetFile};
use std::path::Path;

pub use destiny_data::is_dataset_file;

/// Reads a dataset file with the ids of its samples.
pub fn read_with_samples(path: &Path) -> anyhow::Result<DatasetFile> {
    read_dataset(path).with_context(|| format!("reading dataset {}", path.display()))
}
