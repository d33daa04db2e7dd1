//! Feature and sample indices in DSSTNE's format: one `id<TAB>position` line each.

use crate::interactions::IdMap;
use destiny_core::atomic;
use destiny_core::error::{Error, Result};
use std::path::Path;

/// Reads an index; positions must be exactly `0..n`, each once.
pub fn read_index(path: &Path) -> Result<IdMap> {
    let mut entries: Vec<(u32, String)> = Vec::new();
    for line in crate::text::lines(path)? {
        let (number, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = || {
            Error::Data(format!(
                "{}:{}: expected 'id<TAB>position', found '{line}'",
                path.display(),
                number
            ))
        };
        let (id, position) = line.rsplit_once('\t').ok_or_else(bad)?;
        let position: u32 = position.trim().parse().map_err(|_| bad())?;
        if id.is_empty() {
            return Err(bad());
        }
        entries.push((position, id.to_string()));
    }
    entries.sort_unstable();
    let mut map = IdMap::default();
    for (expected, (position, id)) in entries.iter().enumerate() {
        if *position as usize != expected {
            return Err(Error::Data(format!(
                "{}: positions must run from 0 without gaps or repeats; position {expected} is {}",
                path.display(),
                if (*position as usize) < expected {
                    "repeated"
                } else {
                    "missing"
                }
            )));
        }
        if map.get(id).is_some() {
            return Err(Error::Data(format!(
                "{}: id '{id}' appears twice",
                path.display()
            )));
        }
        map.intern(id);
    }
    Ok(map)
}

/// The file name of a dataset's feature index, which lies beside the dataset (convert
/// writes it there, and readers of a dataset look for it there, beside an object too).
pub const FEATURE_INDEX: &str = "features.idx";

/// The feature index of a dataset: the one `given`, else [`FEATURE_INDEX`] beside `dataset`.
pub fn feature_ids(dataset: &Path, given: Option<&Path>) -> Result<Vec<String>> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => dataset.with_file_name(FEATURE_INDEX),
    };
    let index = read_index(&path).map_err(|error| {
        Error::Data(format!(
            "reading the feature index {} (name it with the features option): {error}",
            path.display()
        ))
    })?;
    Ok(index.ids().to_vec())
}

/// Writes an index atomically.
pub fn write_index(path: &Path, ids: &[String]) -> Result<()> {
    atomic::write_file(path, |out| {
        for (position, id) in ids.iter().enumerate() {
            writeln!(out, "{id}\t{position}")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("features");
        let ids = vec![
            "item one".to_string(),
            "ü,2".to_string(),
            "x\ty".to_string(),
        ];
        write_index(&path, &ids).unwrap();
        let map = read_index(&path).unwrap();
        assert_eq!(map.ids(), &ids[..]);
        assert_eq!(map.get("x\ty"), Some(2));
        std::fs::write(&path, "a\t0\nb\t2\n").unwrap();
        assert!(read_index(&path)
            .unwrap_err()
            .to_string()
            .contains("position 1 is missing"));
        std::fs::write(&path, "a\t0\nb\tone\n").unwrap();
        let error = read_index(&path).unwrap_err().to_string();
        assert!(error.contains("features:2:"), "{error}");
    }
}
