//! DSSTNE's NetCDF datasets, as its `NNDataSet` reads them: a global attribute `datasets`
//! with their count and, for dataset `n`, the attributes `name{n}`, `attributes{n}` (flags:
//! sparse 1, boolean 2, indexed 64, weighted 128), `width{n}` (with `height{n}` and
//! `length{n}` when `dimensions{n}` says so), and the variables `sparseStart{n}`,
//! `sparseEnd{n}`, `sparseIndex{n}` and, unless boolean, `sparseData{n}` (sparse), or
//! `data{n}` over `dataDim{n}` (dense: every value, or one column per example when
//! boolean), with `index{n}` mapping examples to unique examples when indexed. Read through
//! the netCDF C library (the `netcdf` crate), which reads every format DSSTNE wrote.

use destiny_core::data::{Dataset, DenseRows, Rows, SparseRows};
use destiny_core::error::{Error, Result};
use std::path::Path;

const SPARSE: u32 = 1;
const BOOLEAN: u32 = 2;
const INDEXED: u32 = 64;
const WEIGHTED: u32 = 128;

/// Reads every dataset of the DSSTNE NetCDF file `path`; a dataset of 2 or 3 dimensions
/// (images) keeps them, x first.
pub fn read_netcdf(path: &Path) -> Result<Vec<Dataset>> {
    let at = |message: String| Error::Data(format!("{}: {message}", path.display()));
    let file = netcdf::open(path).map_err(|e| at(e.to_string()))?;
    let count = unsigned(&file, "datasets").map_err(at)?;
    (0..count)
        .map(|n| read_dataset(&file, n as usize).map_err(|e| at(format!("dataset {n}: {e}"))))
        .collect()
}

/// A global attribute holding one unsigned number.
fn unsigned(file: &netcdf::File, name: &str) -> std::result::Result<u64, String> {
    let value = file
        .attribute(name)
        .ok_or_else(|| format!("no attribute '{name}' (not a DSSTNE dataset file)"))?
        .value()
        .map_err(|e| format!("attribute '{name}': {e}"))?;
    use netcdf::AttributeValue as V;
    match value {
        V::Uint(v) => Ok(v.into()),
        V::Int(v) if v >= 0 => Ok(v as u64),
        V::Ulonglong(v) => Ok(v),
        V::Longlong(v) if v >= 0 => Ok(v as u64),
        V::Ushort(v) => Ok(v.into()),
        V::Uchar(v) => Ok(v.into()),
        other => Err(format!("attribute '{name}' is {other:?}, not a count")),
    }
}

/// The values of variable `name`, converted to `T`.
fn values<T: netcdf::NcTypeDescriptor + Copy>(
    file: &netcdf::File,
    name: &str,
) -> std::result::Result<Vec<T>, String> {
    let variable = file
        .variable(name)
        .ok_or_else(|| format!("no variable '{name}'"))?;
    variable
        .get_values::<T, _>(..)
        .map_err(|e| format!("variable '{name}': {e}"))
}

fn read_dataset(file: &netcdf::File, n: usize) -> std::result::Result<Dataset, String> {
    let name = match file.attribute(&format!("name{n}")).map(|a| a.value()) {
        Some(Ok(netcdf::AttributeValue::Str(name))) => name,
        _ => return Err(format!("no name{n} attribute")),
    };
    let flags = unsigned(file, &format!("attributes{n}"))? as u32;
    if flags & WEIGHTED != 0 {
        return Err(format!(
            "'{name}' has a weight per example, which Destiny's datasets do not hold"
        ));
    }
    let dimensions = unsigned(file, &format!("dimensions{n}")).unwrap_or(1);
    let mut shape = vec![unsigned(file, &format!("width{n}"))? as usize];
    for (extra, key) in [(2, "height"), (3, "length")] {
        if dimensions >= extra {
            shape.push(unsigned(file, &format!("{key}{n}"))? as usize);
        }
    }
    let width = shape.iter().product();
    let rows = if flags & SPARSE != 0 {
        sparse(file, n, width, flags & BOOLEAN != 0)?
    } else {
        dense(file, n, width, flags & BOOLEAN != 0)?
    };
    let rows = if flags & INDEXED != 0 {
        let index: Vec<u32> = values(file, &format!("index{n}"))?;
        let unique = rows.len();
        if let Some(bad) = index.iter().find(|&&i| i as usize >= unique) {
            return Err(format!("index{n} names example {bad} of {unique}"));
        }
        rows.gather(&index.iter().map(|&i| i as usize).collect::<Vec<_>>())
    } else {
        rows
    };
    let dataset = Dataset::new(name, rows);
    match shape.len() {
        1 => Ok(dataset),
        _ => dataset.with_dimensions(shape).map_err(|e| e.to_string()),
    }
}

fn sparse(
    file: &netcdf::File,
    n: usize,
    width: usize,
    boolean: bool,
) -> std::result::Result<Rows, String> {
    let starts: Vec<u64> = values(file, &format!("sparseStart{n}"))?;
    let ends: Vec<u64> = values(file, &format!("sparseEnd{n}"))?;
    let columns: Vec<u64> = values(file, &format!("sparseIndex{n}"))?;
    let data: Option<Vec<f32>> = match boolean {
        true => None,
        false => Some(values(file, &format!("sparseData{n}"))?),
    };
    if starts.len() != ends.len() || data.as_ref().is_some_and(|d| d.len() != columns.len()) {
        return Err(format!(
            "sparseStart{n}, sparseEnd{n}, sparseIndex{n} and sparseData{n} disagree in length"
        ));
    }
    let mut offsets = vec![0usize];
    let mut indices = Vec::with_capacity(columns.len());
    let mut kept = Vec::with_capacity(data.as_ref().map_or(0, Vec::len));
    for (row, (&start, &end)) in starts.iter().zip(&ends).enumerate() {
        let (start, end) = (start as usize, end as usize);
        if start > end || end > columns.len() {
            return Err(format!(
                "example {row} spans entries {start} to {end} of {}",
                columns.len()
            ));
        }
        for e in start..end {
            let column = u32::try_from(columns[e])
                .ok()
                .filter(|&c| (c as usize) < width)
                .ok_or_else(|| format!("example {row} has column {} of {width}", columns[e]))?;
            indices.push(column);
            if let Some(data) = &data {
                kept.push(data[e]);
            }
        }
        offsets.push(indices.len());
    }
    let values = data.map(|_| kept);
    let rows = SparseRows::new(width, offsets, indices, values).map_err(|e| e.to_string())?;
    Ok(Rows::Sparse(rows))
}

fn dense(
    file: &netcdf::File,
    n: usize,
    width: usize,
    boolean: bool,
) -> std::result::Result<Rows, String> {
    let data: Vec<f32> = if boolean {
        // One column per example, the others zero.
        let columns: Vec<u64> = values(file, &format!("data{n}"))?;
        let mut data = vec![0.0; columns.len() * width];
        for (row, &column) in columns.iter().enumerate() {
            if column as usize >= width {
                return Err(format!("example {row} has column {column} of {width}"));
            }
            data[row * width + column as usize] = 1.0;
        }
        data
    } else {
        values(file, &format!("data{n}"))?
    };
    DenseRows::new(width, data)
        .map(Rows::Dense)
        .map_err(|e| e.to_string())
}
