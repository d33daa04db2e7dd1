//! The pieces of `destiny convert` that `destiny.spark.prepare` calls from Spark jobs, so
//! that the seeded choices (held-out users, each user's fold-in and held-out items) and the
//! files written are exactly those of `destiny convert`: the seeded shuffles are ChaCha8
//! streams that Spark's own random functions cannot reproduce.

use crate::{arrow, to_py};
use arrow_array::builder::{Float32Builder, Int32Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use destiny_data::convert::{write_conversion, Conversion};
use destiny_data::interactions::NO_TIMESTAMP;
use destiny_data::split::{check_fraction, fold_user, held_out_users, missing_timestamps, RowSet};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Arc;

/// The positions (among `users` cleaned users) of the test and the validation users of a
/// held-out-users split.
#[pyfunction]
fn held_out(
    users: usize,
    test_users: usize,
    validation_users: usize,
    seed: u64,
) -> PyResult<(Vec<usize>, Vec<usize>)> {
    let (test, validation, _) =
        held_out_users(users, test_users, validation_users, seed).map_err(to_py)?;
    Ok((test, validation))
}

/// Checks a split's settings before any work: the hold-out fraction, and for a split by
/// time that every interaction has a timestamp.
#[pyfunction]
fn check_split(fraction: f64, by_time: bool, timestamps_complete: bool) -> PyResult<()> {
    check_fraction(fraction).map_err(to_py)?;
    if by_time && !timestamps_complete {
        return Err(to_py(missing_timestamps()));
    }
    Ok(())
}

/// Splits users' items into fold-in input and held-out target. `batch` has one row per user:
/// `user` (position among the cleaned users, int64), `indices` (columns, sorted), `values`
/// and `timestamps` (lists lined up with `indices`). Returns `user`, `input_indices`,
/// `input_values`, `target_indices`, `target_values`.
#[pyfunction]
fn fold(
    py: Python<'_>,
    batch: &Bound<'_, PyAny>,
    fraction: f64,
    seed: u64,
    by_time: bool,
) -> PyResult<Py<PyAny>> {
    let batches = arrow::batches(batch)?;
    let result = py
        .detach(|| fold_batches(&batches, fraction, seed, by_time))
        .map_err(to_py)?;
    arrow::to_python(py, result)
}

fn fold_batches(
    batches: &[RecordBatch],
    fraction: f64,
    seed: u64,
    by_time: bool,
) -> destiny_core::Result<RecordBatch> {
    let bad = |what: &str| destiny_core::Error::Data(format!("fold: {what}"));
    let mut users = Vec::new();
    let mut lists: [ListBuilder<Int32Builder>; 2] = [
        ListBuilder::new(Int32Builder::new()),
        ListBuilder::new(Int32Builder::new()),
    ];
    let mut values: [ListBuilder<Float32Builder>; 2] = [
        ListBuilder::new(Float32Builder::new()),
        ListBuilder::new(Float32Builder::new()),
    ];
    for batch in batches {
        let (rows, _) =
            destiny_data::rows_from_batches(std::slice::from_ref(batch), u32::MAX as usize, None)?;
        let user = batch
            .column_by_name("user")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| bad("no int64 'user' column"))?;
        let stamps = batch
            .column_by_name("timestamps")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| bad("no 'timestamps' list column"))?;
        for r in 0..batch.num_rows() {
            let columns = rows.row_indices(r);
            let row_values = rows.row_values(r);
            let times = stamps.value(r);
            let times = times.as_primitive::<Int64Type>();
            let row: Vec<(u32, f32, i64)> = (0..columns.len())
                .map(|k| {
                    let value = row_values.map_or(1.0, |v| v[k]);
                    let time = if times.is_null(k) {
                        NO_TIMESTAMP
                    } else {
                        times.value(k)
                    };
                    (columns[k], value, time)
                })
                .collect();
            let position = user.value(r);
            let (input, target) = fold_user(&row, position as usize, fraction, seed, by_time);
            users.push(position);
            for (n, part) in [input, target].into_iter().enumerate() {
                for (column, value) in part {
                    lists[n].values().append_value(column as i32);
                    values[n].values().append_value(value);
                }
                lists[n].append(true);
                values[n].append(true);
            }
        }
    }
    let [mut input, mut target] = lists;
    let [mut input_values, mut target_values] = values;
    RecordBatch::try_from_iter([
        ("user", Arc::new(Int64Array::from(users)) as ArrayRef),
        ("input_indices", Arc::new(input.finish()) as ArrayRef),
        ("input_values", Arc::new(input_values.finish()) as ArrayRef),
        ("target_indices", Arc::new(target.finish()) as ArrayRef),
        (
            "target_values",
            Arc::new(target_values.finish()) as ArrayRef,
        ),
    ])
    .map_err(|e| bad(&e.to_string()))
}

/// Writes datasets and indices into `out_dir` exactly as `destiny convert --out-dir` does:
/// `features` is the feature index (item ids by column) and `sets` are `(name, data)` pairs
/// in the order convert writes them, each with columns `sample`, `indices` and `values`.
#[pyfunction]
fn write_sets<'py>(
    py: Python<'py>,
    out_dir: PathBuf,
    features: Vec<String>,
    sets: Vec<(String, Bound<'py, PyAny>)>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let mut row_sets = Vec::with_capacity(sets.len());
    for (name, data) in &sets {
        let batches = arrow::batches(data)?;
        row_sets.push((name.clone(), batches));
    }
    let written = py
        .detach(|| -> destiny_core::Result<_> {
            let mut conversion = Conversion {
                features,
                sets: Vec::new(),
                dropped_items: 0,
            };
            for (name, batches) in row_sets {
                let (rows, samples) = destiny_data::rows_from_batches(
                    &batches,
                    conversion.features.len(),
                    Some("sample"),
                )?;
                let rows = (0..rows.len())
                    .map(|r| {
                        let values = rows.row_values(r);
                        let columns = rows.row_indices(r).iter().enumerate();
                        columns
                            .map(|(k, &c)| (c, values.map_or(1.0, |v| v[k])))
                            .collect()
                    })
                    .collect();
                conversion.sets.push(RowSet {
                    name,
                    samples,
                    rows,
                });
            }
            // A prefix in a bucket is written locally and uploaded once complete.
            let folder = destiny_storage::Output::folder(&out_dir)?;
            let written = write_conversion(folder.path(), &conversion)?;
            folder.publish()?;
            Ok(written)
        })
        .map_err(|e| to_py(format!("writing into {}: {e}", out_dir.display())))?;
    crate::written(py, written)
}

/// Adds the functions to the module, under private names (`destiny.spark` calls them).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    for function in [
        wrap_pyfunction!(held_out, m)?,
        wrap_pyfunction!(check_split, m)?,
        wrap_pyfunction!(fold, m)?,
        wrap_pyfunction!(write_sets, m)?,
    ] {
        let name: String = function.getattr("__name__")?.extract()?;
        m.add(format!("_{name}"), function)?;
    }
    Ok(())
}
