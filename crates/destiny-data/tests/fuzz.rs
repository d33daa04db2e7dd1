//! Arbitrary and damaged input for the readers of outside files in destiny-data: DSSTNE
//! text, CSV/TSV, Parquet, the indices and dataset files. Each must return a value or an
//! error, never panic, hang or allocate out of proportion to its input. The number of cases
//! is PROPTEST_CASES (64 when unset, for CI); docs/faults.md records a longer run.

use destiny_core::data::SparseRows;
use destiny_data::read::{read_interactions, Format, ReadOptions};
use destiny_data::{read_dataset, read_index, write_dataset};
use proptest::prelude::*;

#[path = "../../destiny-core/tests/support/fuzz.rs"]
mod support;
use std::path::Path;
use support::{config, damaged};

/// Reads `bytes` as `name` in every format and as an index and a dataset.
fn read_everything(folder: &Path, name: &str, bytes: &[u8]) {
    let path = folder.join(name);
    std::fs::write(&path, bytes).unwrap();
    for format in [
        Format::Auto,
        Format::Dsstne,
        Format::Delimited,
        Format::Parquet,
    ] {
        let options = ReadOptions {
            format,
            ..ReadOptions::default()
        };
        let _ = read_interactions(&path, &options);
    }
    let _ = read_index(&path);
    let _ = read_dataset(&path);
}

/// Text in the shape of the formats: ids, numbers (NaN and huge ones too) and separators.
fn text_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[a-z0-9]{1,4}",
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("1e400".to_string()),
        Just("-0".to_string()),
        Just("\"".to_string()),
        Just("\t".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("::".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
    ];
    prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat())
}

fn dataset_bytes(folder: &Path) -> Vec<u8> {
    let rows =
        SparseRows::from_rows(9, &[vec![(1, 1.0), (4, 2.0)], vec![], vec![(8, 1.0)]]).unwrap();
    let samples: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let path = folder.join("valid.arrow");
    write_dataset(&path, "gl_input", &rows, &samples, &[]).unwrap();
    std::fs::read(path).unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let folder = tempfile::tempdir().unwrap();
        read_everything(folder.path(), "fuzzed", &bytes);
        read_everything(folder.path(), "fuzzed.parquet", &bytes);
        let mut parquet = b"PAR1".to_vec();
        parquet.extend(&bytes);
        parquet.extend(b"PAR1");
        read_everything(folder.path(), "magic.parquet", &parquet);
    }

    #[test]
    fn text_in_the_shape_of_the_formats(text in text_like()) {
        let folder = tempfile::tempdir().unwrap();
        read_everything(folder.path(), "fuzzed.csv", text.as_bytes());
    }

    #[test]
    fn damaged_dataset_files(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        keep in 0.0f64..=1.0,
    ) {
        let folder = tempfile::tempdir().unwrap();
        let bytes = damaged(&dataset_bytes(folder.path()), &edits, keep);
        read_everything(folder.path(), "fuzzed.arrow", &bytes);
    }
}

#[test]
fn non_finite_values_are_rejected_with_the_line() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("ratings.txt");
    std::fs::write(&path, "u1\ti1,4:i2,5\nu2\ti1,NaN\n").unwrap();
    let options = ReadOptions {
        format: Format::Dsstne,
        dsstne_values: true,
        ..ReadOptions::default()
    };
    let error = read_interactions(&path, &options).unwrap_err().to_string();
    assert!(
        error.contains("ratings.txt:2:") && error.contains("'NaN'"),
        "{error}"
    );
    let csv = folder.path().join("ratings.csv");
    std::fs::write(&csv, "user,item,rating\nu1,i1,4\nu1,i2,inf\n").unwrap();
    let error = read_interactions(&csv, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("ratings.csv:3:") && error.contains("'inf'"),
        "{error}"
    );
}

#[test]
fn binary_garbage_and_false_parquet_get_clear_errors() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("ratings.csv");
    std::fs::write(&path, b"user,item\nu1,i1\n\x00\xff\xfe\x80garbage\n").unwrap();
    let error = read_interactions(&path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("ratings.csv") && error.contains("byte"),
        "{error}"
    );
    let parquet = folder.path().join("ratings.parquet");
    std::fs::write(&parquet, b"user,item\nu1,i1\n").unwrap();
    let error = read_interactions(&parquet, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a Parquet file"), "{error}");
}
