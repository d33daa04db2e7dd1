//! DSSTNE's NetCDF datasets read into Destiny's rows, on files written in DSSTNE's layout by
//! the netCDF4 Python package (`tests/netcdf/make_fixtures.py`).
#![cfg(feature = "netcdf")]

use destiny_core::data::{DenseRows, Rows, SparseRows};
use destiny_data::netcdf::read_netcdf;
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/netcdf")
        .join(name)
}

#[test]
fn sparse_indexed_and_dense_datasets_read_as_dsstne_wrote_them() {
    let datasets = read_netcdf(&fixture("dsstne.nc")).unwrap();
    let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["gl_input", "ratings", "dense"]);
    // Boolean: indices alone.
    let boolean = SparseRows::new(5, vec![0, 2, 3, 6], vec![0, 3, 1, 2, 3, 4], None).unwrap();
    assert_eq!(datasets[0].rows, Rows::Sparse(boolean));
    // Examples 1, 0, 0, 1 of the two unique ones.
    let (a, b) = (vec![(1, 4.0), (2, 2.5)], vec![(0, 5.0)]);
    let indexed = SparseRows::from_rows(4, &[b.clone(), a.clone(), a, b]).unwrap();
    assert_eq!(datasets[1].rows, Rows::Sparse(indexed));
    let dense = DenseRows::new(3, vec![0.5, 0.0, 1.5, 2.0, 1.0, 0.0]).unwrap();
    assert_eq!(datasets[2].rows, Rows::Dense(dense));
}

#[test]
fn what_destiny_cannot_hold_is_an_error_naming_the_file_and_dataset() {
    let error = read_netcdf(&fixture("weighted.nc"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("weighted.nc: dataset 0: 'weighted' has a weight per example"),
        "{error}"
    );
    let error = read_netcdf(&fixture("make_fixtures.py"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("make_fixtures.py"), "{error}");
    let error = read_netcdf(&fixture("missing.nc")).unwrap_err().to_string();
    assert!(error.contains("missing.nc"), "{error}");
}
