//! Parquet files of interactions, as Spark writes them: one row per interaction, user and
//! item ids as strings or integers, optional rating and timestamp columns.

use super::Columns;
use crate::interactions::{IdMap, Interactions};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema, TimeUnit};
use destiny_core::error::{Error, Result};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;
use std::path::Path;

const USER_NAMES: &[&str] = &["user", "user_id", "userid"];
const ITEM_NAMES: &[&str] = &["item", "item_id", "itemid", "movieid", "movie_id"];
const RATING_NAMES: &[&str] = &["rating", "score", "value"];
const TIMESTAMP_NAMES: &[&str] = &["timestamp", "time", "ts"];

fn column_index(
    schema: &Schema,
    chosen: &Option<String>,
    names: &[&str],
    what: &str,
    path: &Path,
) -> Result<Option<usize>> {
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

/// Interns the ids of an id column into `ids`, one number per row (`None` for a null), or
/// `None` when the column's type cannot hold ids. Integer ids are interned as integers.
fn intern_column(column: &ArrayRef, ids: &mut IdMap) -> Option<Vec<Option<u32>>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    // Arrow's iterators yield `None` for nulls.
    let mut text = |id: Option<&str>| id.map(|id| ids.intern(id));
    Some(match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().iter().map(&mut text).collect(),
        DataType::LargeUtf8 => column.as_string::<i64>().iter().map(&mut text).collect(),
        DataType::Utf8View => column.as_string_view().iter().map(&mut text).collect(),
        DataType::Int32 => integers(column.as_primitive::<Int32Type>(), ids),
        DataType::Int64 => integers(column.as_primitive::<Int64Type>(), ids),
        DataType::UInt32 => integers(column.as_primitive::<UInt32Type>(), ids),
        DataType::UInt64 => (column.as_primitive::<UInt64Type>().iter())
            .map(|id| {
                id.map(|id| match i64::try_from(id) {
                    Ok(id) => ids.intern_integer(id),
                    Err(_) => ids.intern(&id.to_string()),
                })
            })
            .collect(),
        _ => return None,
    })
}

/// Interns the ids of an integer column that fits in `i64`, as integers.
fn integers<T>(column: &arrow_array::PrimitiveArray<T>, ids: &mut IdMap) -> Vec<Option<u32>>
where
    T: arrow_array::ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    column
        .iter()
        .map(|id| id.map(|id| ids.intern_integer(id.into())))
        .collect()
}

/// The values of a numeric column as numbers (timestamps in seconds), `None` for nulls and
/// for a column of another type.
fn numbers(column: &ArrayRef) -> Vec<Option<f64>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    fn convert<T: ArrowPrimitiveType>(
        column: &ArrayRef,
        f: impl Fn(T::Native) -> f64,
    ) -> Vec<Option<f64>> {
        column
            .as_primitive::<T>()
            .iter()
            .map(|v| v.map(&f))
            .collect()
    }
    match column.data_type() {
        DataType::Float32 => convert::<Float32Type>(column, f64::from),
        DataType::Float64 => convert::<Float64Type>(column, |v| v),
        DataType::Int32 => convert::<Int32Type>(column, f64::from),
        DataType::Int64 => convert::<Int64Type>(column, |v| v as f64),
        DataType::Timestamp(TimeUnit::Second, _) => {
            convert::<TimestampSecondType>(column, |v| v as f64)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            convert::<TimestampMillisecondType>(column, |v| v as f64 / 1e3)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            convert::<TimestampMicrosecondType>(column, |v| v as f64 / 1e6)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            convert::<TimestampNanosecondType>(column, |v| v as f64 / 1e9)
        }
        _ => vec![None; column.len()],
    }
}

/// The columns read, by position in the batches read (the projection keeps them in the
/// file's order).
struct Chosen {
    user: usize,
    item: usize,
    rating: Option<usize>,
    timestamp: Option<usize>,
}

/// Reads every row group of the file: the chosen columns only, the row groups decoded in
/// parallel (as many at a time as there are threads) and their ids interned in order.
pub fn read(path: &Path, columns: &Columns) -> Result<Interactions> {
    let parquet_error = |e: &dyn std::fmt::Display| Error::Data(format!("{}: {e}", path.display()));
    let open = || std::fs::File::open(path).map_err(|e| Error::io(path, e));
    let metadata = ArrowReaderMetadata::load(&open()?, ArrowReaderOptions::new())
        .map_err(|e| parquet_error(&e))?;
    let schema = metadata.schema().clone();
    let missing = |what: &str| {
        Error::Data(format!(
            "{}: no {what} column; name it with an option",
            path.display()
        ))
    };
    let user = column_index(&schema, &columns.user, USER_NAMES, "user", path)?
        .ok_or_else(|| missing("user"))?;
    let item = column_index(&schema, &columns.item, ITEM_NAMES, "item", path)?
        .ok_or_else(|| missing("item"))?;
    let rating = column_index(&schema, &columns.rating, RATING_NAMES, "rating", path)?;
    let timestamp = column_index(
        &schema,
        &columns.timestamp,
        TIMESTAMP_NAMES,
        "timestamp",
        path,
    )?;
    let mut read: Vec<usize> = [Some(user), Some(item), rating, timestamp]
        .into_iter()
        .flatten()
        .collect();
    read.sort_unstable();
    read.dedup();
    let at = |c: usize| read.iter().position(|&r| r == c).expect("projected");
    let chosen = Chosen {
        user: at(user),
        item: at(item),
        rating: rating.map(at),
        timestamp: timestamp.map(at),
    };
    let projection = ProjectionMask::roots(metadata.parquet_schema(), read.iter().copied());
    let groups = metadata.metadata().num_row_groups();
    let decode = |group: usize| -> Result<Vec<RecordBatch>> {
        ParquetRecordBatchReaderBuilder::new_with_metadata(open()?, metadata.clone())
            .with_projection(projection.clone())
            .with_row_groups(vec![group])
            .build()
            .map_err(|e| parquet_error(&e))?
            .map(|batch| batch.map_err(|e| parquet_error(&e)))
            .collect()
    };
    // Ids are interned in one pass in file order, which numbers them by first appearance:
    // a hash lookup per id, cheaper than merging per-group numberings.
    let mut interactions = Interactions::default();
    let mut row_number = 0usize;
    let window = rayon::current_num_threads().max(1);
    for first in (0..groups).step_by(window) {
        let decoded: Vec<Vec<RecordBatch>> = (first..(first + window).min(groups))
            .into_par_iter()
            .map(decode)
            .collect::<Result<_>>()?;
        for batch in decoded.iter().flatten() {
            add_batch(&mut interactions, batch, &chosen, path, &mut row_number)?;
        }
    }
    Ok(interactions)
}

/// Appends the rows of `batch`, interning their ids; `row_number` counts the rows read
/// before, for errors.
fn add_batch(
    interactions: &mut Interactions,
    batch: &RecordBatch,
    chosen: &Chosen,
    path: &Path,
    row_number: &mut usize,
) -> Result<()> {
    let schema = batch.schema();
    let interned = |c: usize, ids: &mut IdMap| {
        intern_column(batch.column(c), ids).ok_or_else(|| {
            Error::Data(format!(
                "{}: column '{}' has type {}, which cannot be read as one",
                path.display(),
                schema.field(c).name(),
                batch.column(c).data_type()
            ))
        })
    };
    let users = interned(chosen.user, &mut interactions.users)?;
    let items = interned(chosen.item, &mut interactions.items)?;
    let column_numbers = |c: Option<usize>| c.map(|c| numbers(batch.column(c)));
    let (ratings, timestamps) = (
        column_numbers(chosen.rating),
        column_numbers(chosen.timestamp),
    );
    for (row, (u, i)) in users.into_iter().zip(items).enumerate() {
        *row_number += 1;
        let (Some(u), Some(i)) = (u, i) else {
            return Err(Error::Data(format!(
                "{}: row {row_number} has no user or item",
                path.display()
            )));
        };
        let r = ratings.as_ref().and_then(|r| r[row]);
        if let Some(r) = r.filter(|r| !(*r as f32).is_finite()) {
            return Err(Error::Data(format!(
                "{}: row {row_number}: the rating {r} is not a finite number",
                path.display()
            )));
        }
        let t = timestamps.as_ref().and_then(|t| t[row]);
        interactions.push_numbers(u, i, r.map(|r| r as f32), t.map(|t| t as i64));
    }
    Ok(())
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

    #[test]
    fn row_groups_decoded_in_parallel_number_ids_in_file_order() {
        use parquet::file::properties::WriterProperties;
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("groups.parquet");
        // 10 row groups of 100 rows; an unread column between those that are read; the
        // last row of the eighth group has no item.
        let rows = 1000;
        let user: Vec<i64> = (0..rows).map(|r| (r * 7919 % 331) as i64).collect();
        let item: Vec<Option<String>> = (0..rows)
            .map(|r| (r != 799).then(|| format!("i{}", r * 31 % 97)))
            .collect();
        let batch = RecordBatch::try_from_iter(vec![
            ("user", Arc::new(Int64Array::from(user.clone())) as ArrayRef),
            (
                "note",
                Arc::new(StringArray::from(vec!["x"; rows])) as ArrayRef,
            ),
            (
                "item",
                Arc::new(StringArray::from(item.clone())) as ArrayRef,
            ),
        ])
        .unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(100))
            .build();
        let write = |batch: &RecordBatch| {
            let file = std::fs::File::create(&path).unwrap();
            let mut writer =
                ArrowWriter::try_new(file, batch.schema(), Some(properties.clone())).unwrap();
            writer.write(batch).unwrap();
            writer.close().unwrap();
        };
        write(&batch);
        let error = read(&path, &Columns::default()).unwrap_err().to_string();
        assert!(error.contains("row 800 has no user or item"), "{error}");
        // Without the empty item: the same table as pushing the rows one by one.
        write(&batch.slice(0, 799));
        let table = read(&path, &Columns::default()).unwrap();
        let mut expected = Interactions::default();
        for r in 0..799 {
            expected.push(&user[r].to_string(), item[r].as_ref().unwrap(), None, None);
        }
        // (Ratings are NaN: missing.)
        assert!(table.users == expected.users && table.items == expected.items);
        assert!(table.user == expected.user && table.item == expected.item);
        assert!(table.rating.iter().all(|r| r.is_nan()) && table.len() == 799);
    }
}
