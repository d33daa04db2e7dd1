//! Recommendation files in DSSTNE's format: `user<TAB>item,score:item,score:...`, best
//! first, with the original ids.

use destiny_core::atomic;
use destiny_core::error::{Error, Result};
use destiny_core::predict::TopK;
use std::path::Path;

/// Ranked recommendations per user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recommendations {
    pub users: Vec<String>,
    /// Per user, `(item, score)` best first.
    pub lists: Vec<Vec<(String, f32)>>,
}

impl Recommendations {
    /// Turns top-K columns into recommendations with the original ids: `samples` name the
    /// rows of `top`, `features` its columns.
    pub fn from_top_k(samples: &[String], top: &TopK, features: &[String]) -> Result<Self> {
        let mut lists = Vec::with_capacity(samples.len());
        for row in 0..samples.len() {
            let list = top
                .row(row)
                .map(|(column, score)| {
                    features
                        .get(column as usize)
                        .map(|id| (id.clone(), score))
                        .ok_or_else(|| {
                            Error::Data(format!(
                                "column {column} is outside the feature index of {} items",
                                features.len()
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            lists.push(list);
        }
        Ok(Recommendations {
            users: samples.to_vec(),
            lists,
        })
    }
}

/// Writes recommendations atomically. Ids must not contain the format's separators.
pub fn write_recommendations(path: &Path, recommendations: &Recommendations) -> Result<()> {
    let bad = recommendations
        .users
        .iter()
        .chain(recommendations.lists.iter().flatten().map(|(item, _)| item))
        .find(|id| id.contains(['\t', '\n', ':', ',']));
    if let Some(id) = bad {
        return Err(Error::Data(format!(
            "id '{id}' contains a tab, newline, ':' or ',', which the recs format cannot hold"
        )));
    }
    atomic::write_file(path, |out| {
        for (user, list) in recommendations.users.iter().zip(&recommendations.lists) {
            write!(out, "{user}\t")?;
            for (n, (item, score)) in list.iter().enumerate() {
                write!(out, "{}{item},{score:.6}", if n == 0 { "" } else { ":" })?;
            }
            writeln!(out)?;
        }
        Ok(())
    })
}

/// Writes recommendations as Parquet (snappy), one row per recommendation with columns
/// `user`, `rank` (from 1), `item` and `score`: the long form Spark and pandas read directly.
pub fn write_recommendations_parquet(path: &Path, recommendations: &Recommendations) -> Result<()> {
    use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array};
    use std::sync::Arc;
    let rows = recommendations.lists.iter().map(Vec::len).sum::<usize>();
    let (mut users, mut ranks, mut items, mut scores) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for (user, list) in recommendations.users.iter().zip(&recommendations.lists) {
        for (rank, (item, score)) in list.iter().enumerate() {
            users.push(user.as_str());
            ranks.push(rank as u32 + 1);
            items.push(item.as_str());
            scores.push(*score);
        }
    }
    let batch = RecordBatch::try_from_iter([
        ("user", Arc::new(StringArray::from(users)) as ArrayRef),
        ("rank", Arc::new(UInt32Array::from(ranks)) as ArrayRef),
        ("item", Arc::new(StringArray::from(items)) as ArrayRef),
        ("score", Arc::new(Float32Array::from(scores)) as ArrayRef),
    ])
    .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    atomic::write_path(path, |temporary| {
        let parquet_error =
            |e: parquet::errors::ParquetError| Error::Data(format!("{}: {e}", path.display()));
        let file = std::fs::File::create(temporary).map_err(|e| Error::io(path, e))?;
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(properties))
                .map_err(parquet_error)?;
        writer.write(&batch).map_err(parquet_error)?;
        writer.close().map_err(parquet_error)?;
        Ok(())
    })
}

/// Reads a recommendations file; malformed lines name the file and line.
pub fn read_recommendations(path: &Path) -> Result<Recommendations> {
    let mut recommendations = Recommendations::default();
    for line in destiny_data::text::lines(path)? {
        let (number, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{number}", path.display());
        let (user, list) = line
            .split_once('\t')
            .ok_or_else(|| Error::Data(format!("{}: no tab after the user id", at())))?;
        let mut items = Vec::new();
        for entry in list.split(':').filter(|e| !e.is_empty()) {
            let (item, score) = match entry.split_once(',') {
                Some((item, score)) => {
                    let score = score.parse::<f32>().map_err(|_| {
                        Error::Data(format!("{}: score '{score}' is not a number", at()))
                    })?;
                    (item, score)
                }
                None => (entry, f32::NAN),
            };
            items.push((item.to_string(), score));
        }
        recommendations.users.push(user.to_string());
        recommendations.lists.push(items);
    }
    Ok(recommendations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("recs");
        let recs = Recommendations {
            users: vec!["u1".into(), "u 2".into()],
            lists: vec![vec![("i9".into(), 0.5), ("i1".into(), 0.25)], vec![]],
        };
        write_recommendations(&path, &recs).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "u1\ti9,0.500000:i1,0.250000\nu 2\t\n"
        );
        assert_eq!(read_recommendations(&path).unwrap(), recs);
        std::fs::write(&path, "u1\ti1,0.5\nu2\ti2,high\n").unwrap();
        let error = read_recommendations(&path).unwrap_err().to_string();
        assert!(
            error.contains("recs:2:") && error.contains("'high'"),
            "{error}"
        );
        let bad = Recommendations {
            users: vec!["a:b".into()],
            lists: vec![vec![]],
        };
        assert!(write_recommendations(&path, &bad).is_err());
    }

    #[test]
    fn parquet_in_long_form() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("recs.parquet");
        let recs = Recommendations {
            users: vec!["u1".into(), "u2".into()],
            lists: vec![
                vec![("a".into(), 0.9), ("b".into(), 0.5)],
                vec![("c".into(), 0.7)],
            ],
        };
        write_recommendations_parquet(&path, &recs).unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 3);
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(rows[1], "{user: \"u1\", rank: 2, item: \"b\", score: 0.5}");
        assert_eq!(rows[2], "{user: \"u2\", rank: 1, item: \"c\", score: 0.7}");
    }
}
