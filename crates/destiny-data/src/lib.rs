//! Destiny's datasets: raw interactions (DSSTNE's text format, CSV/TSV, Parquet) cleaned,
//! indexed and split into sparse datasets in Arrow files, as DSSTNE's `generateNetCDF` did.

pub mod bind;
pub mod clean;
pub mod convert;
pub mod dataset_file;
pub mod index;
pub mod interactions;
#[cfg(feature = "netcdf")]
pub mod netcdf;
pub mod read;
pub mod split;
pub mod text;

pub use dataset_file::{
    is_dataset_file, read_dataset, rows_from_batches, write_dataset, DatasetFile,
};
pub use index::{feature_ids, read_index, write_index, FEATURE_INDEX};
