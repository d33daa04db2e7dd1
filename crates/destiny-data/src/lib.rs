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

/// Whether `path` is a NetCDF file, by its first bytes (classic `CDF`, or the HDF5 signature
/// of netCDF-4), whatever its name: DSSTNE's flags also name Destiny's own datasets `.nc`.
pub fn is_netcdf_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut start = [0u8; 8];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut start));
    read.is_ok() && (start.starts_with(b"CDF") || start == *b"\x89HDF\r\n\x1a\n")
}

/// Why a NetCDF file cannot be read by a build without the `netcdf` feature.
pub fn netcdf_unsupported(path: &std::path::Path) -> destiny_core::error::Error {
    destiny_core::error::Error::Data(format!(
        "{} is a NetCDF file, and this destiny was built without NetCDF support; build it with \
         `cargo build --release --features netcdf` (needs the netCDF C library, libnetcdf-dev)",
        path.display()
    ))
}
