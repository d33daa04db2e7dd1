//! Dataset files: Arrow IPC with one row per sample: `sample` (its id), `indices`
//! (`large_list<uint32>`, the sample's columns) and optionally `values`
//! (`large_list<float32>`); the schema metadata holds the dataset's name and width.
//! Loading builds the CSR straight from the Arrow buffers, with no text to parse.

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type};
use arrow_array::{Array, ArrayRef, LargeListArray, RecordBatch};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{Field, Schema};
use destiny_core::atomic;
use destiny_core::data::{Dataset, Rows, SparseRows};
use destiny_core::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const NAME_KEY: &str = "destiny.name";
const WIDTH_KEY: &str = "destiny.width";

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

/// Writes sparse rows with their sample ids, atomically.
pub fn write_dataset(path: &Path, name: &str, rows: &SparseRows, samples: &[String]) -> Result<()> {
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
    let metadata = HashMap::from([
        (NAME_KEY.to_string(), name.to_string()),
        (WIDTH_KEY.to_string(), rows.width().to_string()),
    ]);
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
    let has_values = schema.field_with_name("values").is_ok();
    let mut samples = Vec::new();
    let mut offsets = vec![0usize];
    let mut indices: Vec<u32> = Vec::new();
    let mut values: Option<Vec<f32>> = has_values.then(Vec::new);
    for batch in reader {
        let batch = batch.map_err(|e| bad(format!("unreadable record batch ({e})")))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| bad(format!("no '{name}' column")))
        };
        let ids = column("sample")?;
        let ids = ids
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("'sample' is not a string column".into()))?;
        samples.extend(ids.iter().map(|s| s.unwrap_or_default().to_string()));
        let lists = column("indices")?;
        let lists = lists
            .as_list_opt::<i64>()
            .ok_or_else(|| bad("'indices' is not a large list column".into()))?;
        let items = lists
            .values()
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| bad("'indices' does not hold uint32".into()))?;
        let base = *offsets.last().unwrap();
        let first = lists.value_offsets()[0] as usize;
        offsets.extend(
            lists.value_offsets()[1..]
                .iter()
                .map(|&o| base + o as usize - first),
        );
        let end = *lists.value_offsets().last().unwrap() as usize;
        indices.extend_from_slice(&items.values()[first..end]);
        if let Some(values) = values.as_mut() {
            let lists = column("values")?;
            let lists = lists
                .as_list_opt::<i64>()
                .ok_or_else(|| bad("'values' is not a large list column".into()))?;
            if lists.value_offsets() != column("indices")?.as_list::<i64>().value_offsets() {
                return Err(bad("'values' and 'indices' do not line up".into()));
            }
            let numbers = lists
                .values()
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| bad("'values' does not hold float32".into()))?;
            values.extend_from_slice(&numbers.values()[first..end]);
        }
    }
    let rows = SparseRows::new(width, offsets, indices, values).map_err(|e| bad(e.to_string()))?;
    Ok(DatasetFile {
        dataset: Dataset::new(name, Rows::Sparse(rows)),
        samples,
    })
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
        write_dataset(&path, "gl_input", &rows, &samples).unwrap();
        let read = read_dataset(&path).unwrap();
        assert_eq!(read.samples, samples);
        assert_eq!(read.dataset.name, "gl_input");
        assert_eq!(read.dataset.rows, Rows::Sparse(rows.clone()));
        let (width, offsets, indices, _) = rows.into_parts();
        let binary = SparseRows::new(width, offsets, indices, None).unwrap();
        write_dataset(&path, "x", &binary, &samples).unwrap();
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
        write_dataset(&path, "d", &rows, &vec!["s".to_string(); 100]).unwrap();
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
}
