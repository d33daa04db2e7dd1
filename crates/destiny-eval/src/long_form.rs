//! Recommendations in long form, one row per recommendation (`user`, `item`, `score`,
//! `rank` from 1; users in order, each one's items best first): the Arrow batches that
//! Python and Spark receive and the Parquet files `destiny predict` writes, built straight
//! from the top-K columns without a string per row, and encoded on every core.

use crate::recs::check_columns;
use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, Float32Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use destiny_core::atomic;
use destiny_core::error::{Error, Result};
use destiny_core::predict::TopK;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowRowGroupWriterFactory};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Users per Parquet row group (a million rows at K = 100): each group is encoded by one
/// task, and readers can split a file by them.
const GROUP_USERS: usize = 10_000;
/// Row groups encoded before they are written, so that memory stays bounded.
const WINDOW_GROUPS: usize = 32;

/// The long form's columns.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new("item", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
        Field::new("rank", DataType::UInt32, false),
    ]))
}

/// The long form of the rows `rows` of `top`, whose rows `users` name and whose columns
/// `items` name (checked by the caller).
fn batch(users: &[String], top: &TopK, items: &[String], rows: Range<usize>) -> RecordBatch {
    let first = rows.start * top.k;
    let end = rows.end * top.k;
    let count = top.columns[first..end]
        .iter()
        .filter(|&&c| c != u32::MAX)
        .count();
    let (mut user, mut item) = (
        StringBuilder::with_capacity(count, count * 8),
        StringBuilder::with_capacity(count, count * 8),
    );
    let (mut score, mut rank) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for row in rows {
        for (n, (column, value)) in top.row(row).enumerate() {
            user.append_value(&users[row]);
            item.append_value(&items[column as usize]);
            score.push(value);
            rank.push(n as u32 + 1);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(user.finish()),
        Arc::new(item.finish()),
        Arc::new(Float32Array::from(score)),
        Arc::new(UInt32Array::from(rank)),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns of the schema, of one length")
}

/// The top-K of every row in long form, as one batch: `users` name the rows of `top`,
/// `items` its columns.
pub fn long_form(users: &[String], top: &TopK, items: &[String]) -> Result<RecordBatch> {
    check_columns(top, items)?;
    if users.len() != top.len() {
        return Err(Error::Dimension(format!(
            "{} user ids for {} rows of recommendations",
            users.len(),
            top.len()
        )));
    }
    Ok(batch(users, top, items, 0..users.len()))
}

/// Writes the top-K of every row in long form as Parquet (snappy) atomically: row groups of
/// [`GROUP_USERS`] users, encoded in parallel and written in order.
pub fn write_top_k_parquet(
    path: &Path,
    users: &[String],
    top: &TopK,
    items: &[String],
) -> Result<()> {
    check_columns(top, items)?;
    let parquet_error =
        |e: parquet::errors::ParquetError| Error::Data(format!("{}: {e}", path.display()));
    let schema = schema();
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    add_encoded_arrow_schema_to_metadata(&schema, &mut properties);
    let parquet_schema = ArrowSchemaConverter::new()
        .convert(&schema)
        .map_err(parquet_error)?;
    let groups: Vec<Range<usize>> = (0..users.len())
        .step_by(GROUP_USERS)
        .map(|first| first..(first + GROUP_USERS).min(users.len()))
        .collect();
    atomic::write_path(path, |temporary| {
        let file = std::fs::File::create(temporary).map_err(|e| Error::io(path, e))?;
        let mut writer = SerializedFileWriter::new(
            file,
            parquet_schema.root_schema_ptr(),
            Arc::new(properties.clone()),
        )
        .map_err(parquet_error)?;
        let factory = ArrowRowGroupWriterFactory::new(&writer, schema.clone());
        for (window, ranges) in groups.chunks(WINDOW_GROUPS).enumerate() {
            let encoded: Vec<Vec<ArrowColumnChunk>> = ranges
                .par_iter()
                .enumerate()
                .map(|(i, rows)| {
                    let batch = batch(users, top, items, rows.clone());
                    let mut writers = factory.create_column_writers(window * WINDOW_GROUPS + i)?;
                    for ((field, column), writer) in schema
                        .fields()
                        .iter()
                        .zip(batch.columns())
                        .zip(&mut writers)
                    {
                        for leaf in compute_leaves(field, column)? {
                            writer.write(&leaf)?;
                        }
                    }
                    writers.into_iter().map(|w| w.close()).collect()
                })
                .collect::<parquet::errors::Result<_>>()
                .map_err(parquet_error)?;
            for chunks in encoded {
                let mut group = writer.next_row_group().map_err(parquet_error)?;
                for chunk in chunks {
                    chunk
                        .append_to_row_group(&mut group)
                        .map_err(parquet_error)?;
                }
                group.close().map_err(parquet_error)?;
            }
        }
        writer.close().map_err(parquet_error)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// `users` rows of K = 3, every fifth row with one slot of padding.
    fn top_k(users: usize) -> TopK {
        let mut columns = Vec::new();
        let mut scores = Vec::new();
        for u in 0..users {
            for n in 0..3u32 {
                let padded = u % 5 == 0 && n == 2;
                columns.push(if padded { u32::MAX } else { (u as u32 + n) % 7 });
                scores.push(1.0 - n as f32 / 10.0);
            }
        }
        TopK {
            k: 3,
            columns,
            scores,
        }
    }

    #[test]
    fn the_long_form_has_one_row_per_recommendation() {
        let users: Vec<String> = vec!["u0".into(), "u1".into()];
        let items: Vec<String> = (0..7).map(|i| format!("i{i}")).collect();
        let batch = long_form(&users, &top_k(2), &items).unwrap();
        let strings = |c: usize| {
            let column = batch
                .column(c)
                .as_any()
                .downcast_ref::<arrow_array::StringArray>();
            column
                .unwrap()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(strings(0), ["u0", "u0", "u1", "u1", "u1"]);
        assert_eq!(strings(1), ["i0", "i1", "i1", "i2", "i3"]);
        let scores = batch
            .column(2)
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap();
        assert_eq!(scores.values().as_ref(), [1.0, 0.9, 1.0, 0.9, 0.8]);
        let ranks = batch
            .column(3)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .unwrap();
        assert_eq!(ranks.values().as_ref(), [1, 2, 1, 2, 3]);
        let error = long_form(&users, &top_k(2), &items[..3]).unwrap_err();
        assert!(error.to_string().contains("column 3 is outside"), "{error}");
        assert!(long_form(&users[..1], &top_k(2), &items).is_err());
    }

    #[test]
    fn parquet_holds_the_long_form_in_row_groups_written_in_order() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("recs.parquet");
        let count = 2 * GROUP_USERS + 17;
        let users: Vec<String> = (0..count).map(|u| format!("user {u}")).collect();
        let items: Vec<String> = (0..7).map(|i| format!("item {i}")).collect();
        let top = top_k(count);
        write_top_k_parquet(&path, &users, &top, &items).unwrap();
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 3);
        assert_eq!(reader.schema().as_ref(), schema().as_ref());
        let read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let read = arrow_select::concat::concat_batches(&schema(), &read).unwrap();
        assert_eq!(read, long_form(&users, &top, &items).unwrap());
    }
}
