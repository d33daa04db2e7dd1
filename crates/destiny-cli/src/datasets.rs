//! Loading datasets and indices for the commands.

use anyhow::Context;
use destiny_core::data::Dataset;
use destiny_data::{read_dataset, DatasetFile};
use std::path::Path;

/// True for an Arrow file (a dataset), false for text.
pub fn is_dataset_file(path: &Path) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 6];
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1")
}

/// Reads a dataset file written by `destiny convert`.
pub fn read(path: &Path) -> anyhow::Result<Dataset> {
    Ok(read_with_samples(path)?.dataset)
}

/// Reads a dataset file with the ids of its samples.
pub fn read_with_samples(path: &Path) -> anyhow::Result<DatasetFile> {
    read_dataset(path).with_context(|| format!("reading dataset {}", path.display()))
}

/// The feature index for a dataset: the one given, else `features.idx` beside the dataset.
pub fn feature_ids(dataset: &Path, given: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => dataset.with_file_name("features.idx"),
    };
    let index = destiny_data::read_index(&path).with_context(|| {
        format!(
            "reading the feature index {} (name it with the features option)",
            path.display()
        )
    })?;
    Ok(index.ids().to_vec())
}

/// Turns top-K columns into recommendations with the original ids.
pub fn recommendations(
    samples: &[String],
    top: &destiny_core::predict::TopK,
    features: &[String],
) -> anyhow::Result<destiny_eval::Recommendations> {
    let mut lists = Vec::with_capacity(samples.len());
    for row in 0..samples.len() {
        let list = top
            .row(row)
            .map(|(column, score)| {
                features
                    .get(column as usize)
                    .map(|id| (id.clone(), score))
                    .with_context(|| {
                        format!(
                            "column {column} is outside the feature index of {} items",
                            features.len()
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        lists.push(list);
    }
    Ok(destiny_eval::Recommendations {
        users: samples.to_vec(),
        lists,
    })
}
