//! Parquet files of interactions, as Spark writes them: one row per interaction, user and
//! item ids as strings or integers, optional rating and timestamp columns.

use super::Columns;
use crate::interactions::Interactions;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use destiny_core::error::{Error, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::Path;

const USER_NAMES: &[&str] = &["user", "user_id", "userid"];
const ITEM_NAMES: &[&str] = &["item", "item_id", "itemid", "movieid", "movie_id"];
const RATING_NAMES: &[&str] = &["rating", "score", "value"];
const TIMESTAMP_NAMES: &[&str] = &["timestamp", "time", "ts"];

fn column_index(
    batch: &RecordBatch,
    chosen: &Option<String>,
    names: &[&str],
    what: &str,
    path: &Path,
) -> Result<Option<usize>> {
    let schema = batch.schema();
    let fields = schema.fields();
    let found = match chosen {
        Some(name) => Some(
            fields
                .iter()
                .position(|f| f.name() == name)
                .ok_or_else(|| {
                    let all: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
                    Error::Data(format!(
                        "{}: no column '{name}' for the {what} (columns: {})",
                        path.display(),
                        all.join(", ")
                    ))
                })?,
        ),
        None => fields
            .iter()
            .position(|f| names.contains(&f.name().to_lowercase().as_str())),
    };
    Ok(found)
}

/// The value at `row` as an id string.
fn id_at(column: &ArrayRef, row: usize) -> Option<String> {
    if column.is_null(row) {
        return None;
    }
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    Some(match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => column.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => column.as_string_view().value(row).to_string(),
        DataType::Int32 => column.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => column.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt32 => column.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => column.as_primitive::<UInt64Type>().value(row).to_string(),
        _ => return None,
    })
}

/// The value at `row` as a number (timestamps in seconds).
fn number_at(column: &ArrayRef, row: usize) -> Option<f64> {
    if column.is_null(row) {
        return None;
    }
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    Some(match column.data_type() {
        DataType::Float32 => column.as_primitive::<Float32Type>().value(row) as f64,
        DataType::Float64 => column.as_primitive::<Float64Type>().value(row),
        DataType::Int32 => column.as_primitive::<Int32Type>().value(row) as f64,
        DataType::Int64 => column.as_primitive::<Int64Type>().value(row) as f64,
        DataType::Timestamp(TimeUnit::Second, _) => {
            column.as_primitive::<TimestampSecondType>().value(row) as f64
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            column.as_primitive::<TimestampMillisecondType>().value(row) as f64 / 1e3
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            column.as_primitive::<TimestampMicrosecondType>().value(row) as f64 / 1e6
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            column.as_primitive::<TimestampNanosecondType>().value(row) as f64 / 1e9
        }
        _ => return None,
    })
}

fn check_type(column: &ArrayRef, ok: bool, name: &str, path: &Path) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Data(format!(
            "{}: column '{name}' has type {}, which cannot be read as one",
            path.display(),
            column.data_type()
        )))
    }
}

/// Reads every row group of the file.
pub fn read(path: &Path, columns: &Columns) -> Result<Interactions> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let parquet_error = |e: &dyn std::fmt::Display| Error::Data(format!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| parquet_error(&e))?
        .build()
        .map_err(|e| parquet_error(&e))?;
    let mut interactions = Interactions::default();
    let mut row_number = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(&e))?;
        let user =
            column_index(&batch, &columns.user, USER_NAMES, "user", path)?.ok_or_else(|| {
                Error::Data(format!(
                    "{}: no user column; name it with an option",
                    path.display()
                ))
            })?;
        let item =
            column_index(&batch, &columns.item, ITEM_NAMES, "item", path)?.ok_or_else(|| {
                Error::Data(format!(
                    "{}: no item column; name it with an option",
                    path.display()
                ))
            })?;
        let rating = column_index(&batch, &columns.rating, RATING_NAMES, "rating", path)?;
        let timestamp = column_index(
            &batch,
            &columns.timestamp,
            TIMESTAMP_NAMES,
            "timestamp",
            path,
        )?;
        let (users, items) = (batch.column(user), batch.column(item));
        let schema = batch.schema();
        let name = |i: usize| schema.field(i).name().clone();
        if batch.num_rows() > 0 {
            check_type(
                users,
                id_at(users, 0).is_some() || users.is_null(0),
                &name(user),
                path,
            )?;
            check_type(
                items,
                id_at(items, 0).is_some() || items.is_null(0),
                &name(item),
                path,
            )?;
        }
        for row in 0..batch.num_rows() {
            row_number += 1;
            let (Some(u), Some(i)) = (id_at(users, row), id_at(items, row)) else {
                return Err(Error::Data(format!(
                    "{}: row {row_number} has no user or item",
                    path.display()
                )));
            };
            let r = rating.and_then(|c| number_at(batch.column(c), row));
            if let Some(r) = r.filter(|r| !(*r as f32).is_finite()) {
                return Err(Error::Data(format!(
                    "{}: row {row_number}: the rating {r} is not a finite number",
                    path.display()
                )));
            }
            let t = timestamp.and_then(|c| number_at(batch.column(c), row));
            interactions.push(&u, &i, r.map(|r| r as f32), t.map(|t| t as i64));
        }
    }
    Ok(interactions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    #[test]
    fn reads_what_spark_writes() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("part-0000.parquet");
        let batch = RecordBatch::try_from_iter(vec![
            (
                "user",
                Arc::new(StringArray::from(vec!["a", "b", "a"])) as ArrayRef,
            ),
            (
                "item",
                Arc::new(Int64Array::from(vec![10, 20, 30])) as ArrayRef,
            ),
            (
                "rating",
                Arc::new(Float64Array::from(vec![4.0, 2.5, 5.0])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None)
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let table = read(&path, &Columns::default()).unwrap();
        assert_eq!(table.users.ids(), &["a".to_string(), "b".to_string()]);
        assert_eq!(
            table.items.ids(),
            &["10".to_string(), "20".to_string(), "30".to_string()]
        );
        assert_eq!(table.rating, vec![4.0, 2.5, 5.0]);
        let error = read(
            &path,
            &Columns {
                user: Some("customer".into()),
                ..Columns::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("no column 'customer'"), "{error}");
        std::fs::write(&path, b"PAR1 truncated").unwrap();
        assert!(read(&path, &Columns::default()).is_err());
    }
}
