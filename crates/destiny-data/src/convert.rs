//! The whole conversion: read, clean, index, split.

use crate::clean::{clean, CleanOptions};
use crate::interactions::IdMap;
use crate::read::{read_interactions, ReadOptions};
use crate::split::{split, RowSet, Split};
use crate::{write_dataset, write_index};
use destiny_core::atomic;
use destiny_core::data::SparseRows;
use destiny_core::error::{Error, Result};
use std::path::Path;

/// Everything `convert` needs to know.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub read: ReadOptions,
    pub clean: CleanOptions,
    pub split: Split,
    pub seed: u64,
    /// An existing feature index to number items by (so that datasets share columns).
    pub features: Option<IdMap>,
    /// With an existing feature index: drop items it lacks instead of failing.
    pub drop_unknown_items: bool,
}

/// The result: the feature index and the row sets, numbered by it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub features: Vec<String>,
    pub sets: Vec<RowSet>,
    /// Items dropped because the reused feature index lacks them.
    pub dropped_items: usize,
}

impl Conversion {
    /// The rows of a set as CSR, as wide as the feature index.
    pub fn sparse_rows(&self, set: &RowSet) -> Result<SparseRows> {
        sparse_rows(self.features.len(), &set.rows)
    }
}

/// Rows of `(column, value)` as CSR `width` wide; values are kept only when some differ
/// from 1 (a dataset of ones is stored as indices alone).
pub fn sparse_rows(width: usize, rows: &[Vec<(u32, f32)>]) -> Result<SparseRows> {
    let all_ones = rows.iter().flatten().all(|&(_, v)| v == 1.0);
    let mut offsets = vec![0usize];
    let mut indices = Vec::new();
    let mut values = Vec::new();
    for row in rows {
        for &(column, value) in row {
            indices.push(column);
            values.push(value);
        }
        offsets.push(indices.len());
    }
    SparseRows::new(width, offsets, indices, (!all_ones).then_some(values))
}

/// Reads `input` and turns it into indexed, split row sets.
pub fn convert(input: &Path, options: &ConvertOptions) -> Result<Conversion> {
    let interactions = read_interactions(input, &options.read)?;
    let mut table = clean(&interactions, &options.clean)?;
    let mut dropped_items = 0;
    let features = match &options.features {
        None => table.items.ids().to_vec(),
        Some(index) => {
            let mapping: Vec<Option<u32>> =
                table.items.ids().iter().map(|id| index.get(id)).collect();
            if let Some(missing) = mapping.iter().position(Option::is_none) {
                if !options.drop_unknown_items {
                    return Err(Error::Data(format!(
                        "{}: item '{}' is not in the feature index (and {} more); pass the option to drop unknown items",
                        input.display(),
                        table.items.id(missing as u32),
                        mapping.iter().filter(|m| m.is_none()).count() - 1
                    )));
                }
                dropped_items = mapping.iter().filter(|m| m.is_none()).count();
            }
            for row in &mut table.rows {
                row.retain(|e| mapping[e.0 as usize].is_some());
                row.iter_mut()
                    .for_each(|e| e.0 = mapping[e.0 as usize].unwrap());
                row.sort_unstable_by_key(|e| e.0);
            }
            index.ids().to_vec()
        }
    };
    let sets = split(&table, options.split, options.seed)?;
    Ok(Conversion {
        features,
        sets,
        dropped_items,
    })
}

/// One dataset file written by [`write_conversion`].
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenDataset {
    /// File name inside the folder (`train.arrow`, ...).
    pub file: String,
    pub samples: usize,
    pub features: usize,
    pub interactions: usize,
}

/// Writes a conversion into `folder` (created when missing): `features.idx`, one
/// `NAME.arrow` per row set, and one `GROUP.samples.idx` per group of rows (`train`,
/// `test`, `validation`, or `data` for `input`/`target` and an unsplit `data`).
pub fn write_conversion(folder: &Path, conversion: &Conversion) -> Result<Vec<WrittenDataset>> {
    std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
    // Every file is written into a hidden folder beside the others first and moved into
    // place only when all are written, so that a failure leaves no partial set of files.
    let staging = tempfile::Builder::new()
        .prefix(".destiny-convert.")
        .tempdir_in(folder)
        .map_err(|e| Error::io(folder, e))?;
    let mut files = vec![crate::FEATURE_INDEX.to_string()];
    write_index(
        &staging.path().join(crate::FEATURE_INDEX),
        &conversion.features,
    )?;
    let mut written = Vec::with_capacity(conversion.sets.len());
    for set in &conversion.sets {
        let rows = conversion.sparse_rows(set)?;
        let file = format!("{}.arrow", set.name);
        write_dataset(
            &staging.path().join(&file),
            &set.name,
            &rows,
            &set.samples,
            &[],
        )?;
        files.push(file.clone());
        if !set.name.ends_with("_target") && set.name != "target" {
            let group = match set.name.as_str() {
                "input" => "data",
                name => name.trim_end_matches("_input"),
            };
            let index = format!("{group}.samples.idx");
            write_index(&staging.path().join(&index), &set.samples)?;
            files.push(index);
        }
        written.push(WrittenDataset {
            file,
            samples: rows.len(),
            features: rows.width(),
            interactions: rows.nnz(),
        });
    }
    for file in &files {
        let target = atomic::follow_links(&folder.join(file))?;
        std::fs::rename(staging.path().join(file), &target).map_err(|e| Error::io(&target, e))?;
    }
    Ok(written)
}

/// Orders the rows of `set` by an existing sample index: its samples first, in its order
/// (empty rows for those without data), then new samples, which are added to the index.
pub fn align_samples(set: &mut RowSet, index: &mut IdMap) {
    let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); index.len()];
    for (sample, row) in set.samples.iter().zip(std::mem::take(&mut set.rows)) {
        let position = index.intern(sample) as usize;
        if position == rows.len() {
            rows.push(row);
        } else {
            rows[position] = row;
        }
    }
    set.samples = index.ids().to_vec();
    set.rows = rows;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::Format;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("ratings.txt");
        std::fs::write(&path, text).unwrap();
        (folder, path)
    }

    fn options() -> ConvertOptions {
        ConvertOptions {
            read: ReadOptions {
                format: Format::Auto,
                ..ReadOptions::default()
            },
            clean: CleanOptions::default(),
            split: Split::None,
            seed: 1,
            features: None,
            drop_unknown_items: false,
        }
    }

    #[test]
    fn reused_feature_index_keeps_columns() {
        let (_f, path) = write("u1\ta,1:b,2\nu2\tc,3\n");
        let first = convert(&path, &options()).unwrap();
        assert_eq!(first.features, vec!["a", "b", "c"]);
        let (_g, other) = write("u3\tc,1:a,2:z,3\n");
        let mut index = IdMap::default();
        first.features.iter().for_each(|f| {
            index.intern(f);
        });
        let strict = ConvertOptions {
            features: Some(index.clone()),
            ..options()
        };
        let error = convert(&other, &strict).unwrap_err().to_string();
        assert!(
            error.contains("item 'z' is not in the feature index"),
            "{error}"
        );
        let lenient = ConvertOptions {
            features: Some(index),
            drop_unknown_items: true,
            ..options()
        };
        let second = convert(&other, &lenient).unwrap();
        assert_eq!(second.features, first.features);
        assert_eq!(second.dropped_items, 1);
        assert_eq!(second.sets[0].rows[0], vec![(0, 1.0), (2, 1.0)]);
        let rows = second.sparse_rows(&second.sets[0]).unwrap();
        assert_eq!((rows.width(), rows.values()), (3, None));
    }

    #[test]
    fn samples_align_to_an_existing_index() {
        let mut index = IdMap::default();
        index.intern("u2");
        index.intern("u9");
        let mut set = RowSet {
            name: "d".into(),
            samples: vec!["u1".into(), "u2".into()],
            rows: vec![vec![(0, 1.0)], vec![(1, 1.0)]],
        };
        align_samples(&mut set, &mut index);
        assert_eq!(set.samples, vec!["u2", "u9", "u1"]);
        assert_eq!(set.rows, vec![vec![(1, 1.0)], vec![], vec![(0, 1.0)]]);
    }
}
