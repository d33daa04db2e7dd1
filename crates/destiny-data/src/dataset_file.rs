//! Dataset files: Arrow IPC with one row per sample: `sample` (its id), `indices`
//! (`large_list<uint32>`, the sample's columns) and optionally `values`
//! (`large_list<float32>`); the schema metadata holds the dataset's name and width, and for
//! images the dimensions of a sample. Loading builds the CSR straight from the Arrow
//! buffers, with no text to parse; an image dataset is read into dense rows, which
//! convolutions take.

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, LargeListArray, RecordBatch};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema};
use destiny_core::atomic;
use destiny_core::data::{Dataset, DenseRows, Rows, SparseRows};
use destiny_core::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const NAME_KEY: &str = "destiny.name";
const WIDTH_KEY: &str = "destiny.width";
const DIMENSIONS_KEY: &str = "destiny.dimensions";

/// A dataset with the ids of its samples (rows).
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetFile {
    pub dataset: Dataset,
    pub samples: Vec<String>,
}

fn list_array<T: arrow_array::ArrowPrimitiveType>(
    offsets: &[usize],
    values: Vec<T::Native>,
) -> LargeListArray {
    let offsets = OffsetBuffer::new(offsets.iter().map(|&o| o as i64).collect::<Vec<_>>().into());
    let values: ArrayRef = Arc::new(arrow_array::PrimitiveArray::<T>::from_iter_values(values));
    LargeListArray::new(
        Arc::new(Field::new("item", T::DATA_TYPE, false)),
        offsets,
        values,
        None,
    )
}

/// True for an Arrow file (a dataset), false for anything else (text).
pub fn is_dataset_file(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 6];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1")
}

/// Writes sparse rows with their sample ids, atomically; `dimensions` (empty for flat data)
/// are an image's, x first, whose product is the width.
pub fn write_dataset(
    path: &Path,
    name: &str,
    rows: &SparseRows,
    samples: &[String],
    dimensions: &[usize],
) -> Result<()> {
    if samples.len() != rows.len() {
        return Err(Error::Dimension(format!(
            "{} sample ids for {} rows",
            samples.len(),
            rows.len()
        )));
    }
    let mut sample_column = StringBuilder::new();
    samples.iter().for_each(|s| sample_column.append_value(s));
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("sample", Arc::new(sample_column.finish())),
        (
            "indices",
            Arc::new(list_array::<UInt32Type>(
                rows.offsets(),
                rows.indices().to_vec(),
            )),
        ),
    ];
    if let Some(values) = rows.values() {
        columns.push((
            "values",
            Arc::new(list_array::<Float32Type>(rows.offsets(), values.to_vec())),
        ));
    }
    let mut metadata = HashMap::from([
        (NAME_KEY.to_string(), name.to_string()),
        (WIDTH_KEY.to_string(), rows.width().to_string()),
    ]);
    if !dimensions.is_empty() {
        if dimensions.iter().product::<usize>() != rows.width() {
            return Err(Error::Dimension(format!(
                "samples of dimensions {dimensions:?} for {} columns",
                rows.width()
            )));
        }
        let text: Vec<String> = dimensions.iter().map(usize::to_string).collect();
        metadata.insert(DIMENSIONS_KEY.to_string(), text.join(","));
    }
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), false))
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    atomic::write_path(path, |temporary| {
        let file = std::fs::File::create(temporary).map_err(|e| Error::io(path, e))?;
        let arrow_error =
            |e: arrow_schema::ArrowError| Error::Data(format!("{}: {e}", path.display()));
        let mut writer =
            arrow_ipc::writer::FileWriter::try_new(file, &schema).map_err(arrow_error)?;
        writer.write(&batch).map_err(arrow_error)?;
        writer.finish().map_err(arrow_error)
    })
}

/// Reads a dataset file written by [`write_dataset`] (or by anything writing that schema).
pub fn read_dataset(path: &Path) -> Result<DatasetFile> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: String| Error::Data(format!("{}: {message}", path.display()));
    let reader = arrow_ipc::reader::FileReader::try_new(file, None)
        .map_err(|e| bad(format!("not a complete Arrow dataset file ({e})")))?;
    let schema = reader.schema();
    let metadata = schema.metadata();
    let width: usize = metadata
        .get(WIDTH_KEY)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "no '{WIDTH_KEY}' in the schema metadata: not a Destiny dataset"
            ))
        })?;
    let name = metadata.get(NAME_KEY).cloned().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("unreadable record batch ({e})")))?;
    let (rows, samples) =
        rows_from_batches(&batches, width, Some("sample")).map_err(|e| match e {
            Error::Data(message) => bad(message),
            other => other,
        })?;
    let dataset = match metadata.get(DIMENSIONS_KEY) {
        None => Dataset::new(name, Rows::Sparse(rows)),
        Some(text) => {
            let dimensions = text
                .split(',')
                .map(|d| d.trim().parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| bad(format!("'{DIMENSIONS_KEY}' is '{text}', not numbers")))?;
            Dataset::new(name, Rows::Dense(DenseRows::from_sparse(&rows)))
                .with_dimensions(dimensions)
                .map_err(|e| bad(e.to_string()))?
        }
    };
    Ok(DatasetFile { dataset, samples })
}

/// The lists of a list column (`large_list` or `list`) as offsets relative to the first
/// list and the values they cover.
fn lists(column: &ArrayRef, name: &str) -> Result<(Vec<usize>, ArrayRef)> {
    let bad = || Error::Data(format!("'{name}' is not a list column"));
    let (offsets, values): (Vec<usize>, ArrayRef) = match column.data_type() {
        DataType::LargeList(_) => {
            let lists = column.as_list_opt::<i64>().ok_or_else(bad)?;
            let o = lists.value_offsets();
            let first = o[0];
            let offsets = o.iter().map(|&x| (x - first) as usize).collect();
            let end = (o[o.len() - 1] - first) as usize;
            (offsets, lists.values().slice(first as usize, end))
        }
        DataType::List(_) => {
            let lists = column.as_list_opt::<i32>().ok_or_else(bad)?;
            let o = lists.value_offsets();
            let first = o[0];
            let offsets = o.iter().map(|&x| (x - first) as usize).collect();
            let end = (o[o.len() - 1] - first) as usize;
            (offsets, lists.values().slice(first as usize, end))
        }
        _ => return Err(bad()),
    };
    Ok((offsets, values))
}

/// Appends a string column's values (a null as the empty string).
fn push_strings(column: &ArrayRef, name: &str, out: &mut Vec<String>) -> Result<()> {
    let text = |value: Option<&str>| value.unwrap_or_default().to_string();
    match column.data_type() {
        DataType::Utf8 => out.extend(column.as_string::<i32>().iter().map(text)),
        DataType::LargeUtf8 => out.extend(column.as_string::<i64>().iter().map(text)),
        DataType::Utf8View => out.extend(column.as_string_view().iter().map(text)),
        _ => return Err(Error::Data(format!("'{name}' is not a string column"))),
    }
    Ok(())
}

/// Column numbers as u32: uint32 is taken as is, other integer types are checked.
fn column_numbers(values: &ArrayRef, out: &mut Vec<u32>) -> Result<()> {
    fn convert<T: arrow_array::ArrowPrimitiveType>(
        values: &ArrayRef,
        out: &mut Vec<u32>,
    ) -> Result<()>
    where
        T::Native: TryInto<u32> + Copy + std::fmt::Display,
    {
        for &v in values.as_primitive::<T>().values().iter() {
            out.push(v.try_into().map_err(|_| {
                Error::Data(format!("'indices' holds {v}, which is not a column number"))
            })?);
        }
        Ok(())
    }
    match values.data_type() {
        DataType::UInt32 => out.extend_from_slice(values.as_primitive::<UInt32Type>().values()),
        DataType::Int32 => convert::<Int32Type>(values, out)?,
        DataType::Int64 => convert::<Int64Type>(values, out)?,
        DataType::UInt64 => convert::<UInt64Type>(values, out)?,
        other => {
            return Err(Error::Data(format!(
                "'indices' holds {other}, not integers"
            )))
        }
    }
    Ok(())
}

/// Sparse rows `width` wide from record batches with an `indices` list column (`large_list`
/// or `list` of integers: Destiny's files, pyarrow, Spark's arrays), an optional `values`
/// list column (float32 or float64, lined up with `indices`), and, when `ids` names one, a
/// string column of sample ids. A null list is an empty row.
pub fn rows_from_batches(
    batches: &[RecordBatch],
    width: usize,
    ids: Option<&str>,
) -> Result<(SparseRows, Vec<String>)> {
    let has_values = batches
        .first()
        .is_some_and(|b| b.column_by_name("values").is_some());
    let mut samples = Vec::new();
    let mut offsets = vec![0usize];
    let mut indices: Vec<u32> = Vec::new();
    let mut values: Option<Vec<f32>> = has_values.then(Vec::new);
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Data(format!("no '{name}' column")))
        };
        if let Some(name) = ids {
            push_strings(column(name)?, name, &mut samples)?;
        }
        let (list_offsets, items) = lists(column("indices")?, "indices")?;
        let base = *offsets.last().unwrap();
        offsets.extend(list_offsets[1..].iter().map(|&o| base + o));
        column_numbers(&items, &mut indices)?;
        if let Some(values) = values.as_mut() {
            let (value_offsets, numbers) = lists(column("values")?, "values")?;
            if value_offsets != list_offsets {
                return Err(Error::Data("'values' and 'indices' do not line up".into()));
            }
            match numbers.data_type() {
                DataType::Float32 => {
                    values.extend_from_slice(numbers.as_primitive::<Float32Type>().values())
                }
                DataType::Float64 => values.extend(
                    numbers
                        .as_primitive::<Float64Type>()
                        .values()
                        .iter()
                        .map(|&v| v as f32),
                ),
                other => return Err(Error::Data(format!("'values' holds {other}, not float32"))),
            }
        }
    }
    let rows = SparseRows::new(width, offsets, indices, values)?;
    Ok((rows, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_values() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("train.arrow");
        let rows =
            SparseRows::from_rows(6, &[vec![(1, 1.0), (5, 2.0)], vec![], vec![(0, 0.5)]]).unwrap();
        let samples = vec!["a".to_string(), "b b".to_string(), "ü".to_string()];
        write_dataset(&path, "gl_input", &rows, &samples, &[]).unwrap();
        let read = read_dataset(&path).unwrap();
        assert_eq!(read.samples, samples);
        assert_eq!(read.dataset.name, "gl_input");
        assert_eq!(read.dataset.rows, Rows::Sparse(rows.clone()));
        let (width, offsets, indices, _) = rows.into_parts();
        let binary = SparseRows::new(width, offsets, indices, None).unwrap();
        write_dataset(&path, "x", &binary, &samples, &[]).unwrap();
        assert_eq!(
            read_dataset(&path).unwrap().dataset.rows,
            Rows::Sparse(binary)
        );
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("d.arrow");
        let rows = SparseRows::from_rows(3, &vec![vec![(1, 1.0)]; 100]).unwrap();
        write_dataset(&path, "d", &rows, &vec!["s".to_string(); 100], &[]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let error = read_dataset(&path).unwrap_err().to_string();
        assert!(
            error.contains("d.arrow") && error.contains("not a complete"),
            "{error}"
        );
        std::fs::write(&path, "user\titem\n").unwrap();
        assert!(read_dataset(&path).is_err());
    }

    #[test]
    fn batches_with_spark_lists() {
        use arrow_array::builder::{Float64Builder, Int32Builder, ListBuilder};
        use arrow_array::StringArray;
        let mut indices = ListBuilder::new(Int32Builder::new());
        let mut values = ListBuilder::new(Float64Builder::new());
        for row in [vec![(2, 1.0), (0, 3.0)], vec![], vec![(1, 0.5)]] {
            for (i, v) in row {
                indices.values().append_value(i);
                values.values().append_value(v);
            }
            indices.append(true);
            values.append(true);
        }
        let batch = RecordBatch::try_from_iter(vec![
            (
                "user",
                Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
            ),
            ("indices", Arc::new(indices.finish()) as ArrayRef),
            ("values", Arc::new(values.finish()) as ArrayRef),
        ])
        .unwrap();
        let (rows, ids) =
            rows_from_batches(&[batch.slice(1, 2), batch.clone()], 3, Some("user")).unwrap();
        assert_eq!(ids, ["b", "c", "a", "b", "c"]);
        assert_eq!(rows.offsets(), &[0, 0, 1, 3, 3, 4]);
        assert_eq!(rows.indices(), &[1, 2, 0, 1]);
        assert_eq!(rows.values().unwrap(), &[0.5, 1.0, 3.0, 0.5]);
        let error = rows_from_batches(&[batch], 2, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("has column 2 but the width is 2"), "{error}");
    }
}
