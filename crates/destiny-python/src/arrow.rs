//! Arrow data in and out of Python through the Arrow C data interface: batches arrive as
//! any object that exports an Arrow stream or array (pyarrow `Table`, `RecordBatch`,
//! `RecordBatchReader`, ...), without copies, and results leave as pyarrow batches.

use crate::to_py;
use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_pyarrow::{FromPyArrow, PyArrowType, Table};
use arrow_schema::DataType;
use destiny_eval::Recommendations;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;

/// The record batches of `data`: a stream (`__arrow_c_stream__`) or one batch.
pub fn batches(data: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    if data.hasattr("__arrow_c_stream__")? {
        let table = Table::from_pyarrow_bound(data)?;
        return Ok(table.into_inner().0);
    }
    Ok(vec![RecordBatch::from_pyarrow_bound(data)?])
}

/// A batch as a pyarrow `RecordBatch`.
pub fn to_python(py: Python<'_>, batch: RecordBatch) -> PyResult<Py<PyAny>> {
    Ok(PyArrowType(batch).into_pyobject(py)?.unbind())
}

/// Recommendations from a file in DSSTNE's recs format (named by a path, local or an object)
/// or from Arrow data in long form: string columns `user` and `item`, and `rank` (1 is best)
/// or else `score` ordering each user's items; users keep the order of their first row.
/// Returns them with a name for the system (the file name, or "recs").
pub fn recommendations(system: &Bound<'_, PyAny>) -> PyResult<(Recommendations, String)> {
    if let Ok(path) = system.extract::<PathBuf>() {
        let recs = destiny_storage::Input::open(&path)
            .and_then(|file| destiny_eval::read_recommendations(file.path()))
            .map_err(|e| to_py(format!("reading {}: {e}", path.display())))?;
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        return Ok((recs, name));
    }
    let mut users: Vec<String> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut lists: Vec<Vec<(String, f32, f64)>> = Vec::new();
    for batch in batches(system)? {
        let strings = |name: &str| -> PyResult<&StringArray> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| to_py(format!("recommendations need a string column '{name}'")))
        };
        let number = |name: &str| -> Option<Vec<f64>> {
            let column = batch.column_by_name(name)?;
            let column = arrow_cast_f64(column)?;
            Some(column)
        };
        let (user, item) = (strings("user")?, strings("item")?);
        let score = number("score");
        let rank = number("rank");
        for row in 0..batch.num_rows() {
            let user = user.value(row);
            let slot = *position.entry(user.to_string()).or_insert_with(|| {
                users.push(user.to_string());
                lists.push(Vec::new());
                users.len() - 1
            });
            let score = score.as_ref().map_or(f32::NAN, |s| s[row] as f32);
            // Without ranks, the higher score comes first; without either, the row order.
            let order = match (&rank, &score) {
                (Some(rank), _) => rank[row],
                (None, s) if !s.is_nan() => -(*s as f64),
                _ => lists[slot].len() as f64,
            };
            lists[slot].push((item.value(row).to_string(), score, order));
        }
    }
    let lists = lists
        .into_iter()
        .map(|mut list| {
            list.sort_by(|a, b| a.2.total_cmp(&b.2));
            list.into_iter()
                .map(|(item, score, _)| (item, score))
                .collect()
        })
        .collect();
    Ok((Recommendations { users, lists }, "recs".into()))
}

/// A numeric column as f64, for ordering.
fn arrow_cast_f64(column: &ArrayRef) -> Option<Vec<f64>> {
    use arrow_array::types::*;
    Some(match column.data_type() {
        DataType::Float32 => column
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .map(|&v| v as f64)
            .collect(),
        DataType::Float64 => column.as_primitive::<Float64Type>().values().to_vec(),
        DataType::Int32 => column
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|&v| v as f64)
            .collect(),
        DataType::Int64 => column
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&v| v as f64)
            .collect(),
        DataType::UInt32 => column
            .as_primitive::<UInt32Type>()
            .values()
            .iter()
            .map(|&v| v as f64)
            .collect(),
        _ => return None,
    })
}
