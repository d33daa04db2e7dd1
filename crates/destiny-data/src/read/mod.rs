//! Readers of raw interaction files: DSSTNE's text format, CSV/TSV, and Parquet.

mod delimited;
mod dsstne_text;
mod parquet;

use crate::interactions::Interactions;
use destiny_core::error::{Error, Result};
use std::path::Path;

/// The format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Decide from the file name and its first line.
    Auto,
    /// DSSTNE's `user<TAB>item[,number]:item[,number]...`.
    Dsstne,
    /// Delimited text (CSV, TSV, `::`): one interaction per line.
    Delimited,
    /// Apache Parquet, as Spark writes it.
    Parquet,
}

impl Format {
    /// The format and delimiter a user chose by name: `auto`, `dsstne`, `csv` and `tsv`
    /// (delimited text split at `,` or a tab unless `delimiter` says otherwise) or `parquet`.
    /// A delimiter written `\t` is a tab.
    pub fn choose(name: &str, delimiter: Option<&str>) -> Result<(Format, Option<String>)> {
        let delimiter = delimiter.map(|d| if d == "\\t" { "\t" } else { d }.to_string());
        Ok(match name {
            "auto" => (Format::Auto, delimiter),
            "dsstne" => (Format::Dsstne, None),
            "csv" => (Format::Delimited, delimiter.or(Some(",".into()))),
            "tsv" => (Format::Delimited, delimiter.or(Some("\t".into()))),
            "parquet" => (Format::Parquet, None),
            _ => {
                return Err(Error::Data(format!(
                    "unknown input format '{name}': auto, dsstne, csv, tsv or parquet"
                )))
            }
        })
    }
}

/// Column choices for delimited text and Parquet: names, or 1-based positions for text
/// without a header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    pub user: Option<String>,
    pub item: Option<String>,
    pub rating: Option<String>,
    pub timestamp: Option<String>,
}

/// How to read an input file.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOptions {
    pub format: Format,
    /// Field delimiter of delimited text (`\t`, `,`, `;` or `::`); detected when `None`.
    pub delimiter: Option<String>,
    /// Whether delimited text starts with a header; detected when `None`.
    pub header: Option<bool>,
    pub columns: Columns,
    /// DSSTNE text: the number after each item is a value (rating), not a timestamp.
    pub dsstne_values: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: Format::Auto,
            delimiter: None,
            header: None,
            columns: Columns::default(),
            dsstne_values: false,
        }
    }
}

/// Reads all interactions of `path`; an empty input is an error.
pub fn read_interactions(path: &Path, options: &ReadOptions) -> Result<Interactions> {
    let format = match options.format {
        Format::Auto => detect_format(path)?,
        format => format,
    };
    let interactions = match format {
        Format::Dsstne => dsstne_text::read(path, options.dsstne_values)?,
        Format::Delimited => delimited::read(path, options)?,
        Format::Parquet => parquet::read(path, &options.columns)?,
        Format::Auto => unreachable!("format decided above"),
    };
    if interactions.is_empty() {
        return Err(Error::Data(format!("{}: no interactions", path.display())));
    }
    Ok(interactions)
}

/// Parquet by its magic bytes; DSSTNE text when the first line is `user<TAB>list` with
/// `:` or `,` in the list; delimited text otherwise.
fn detect_format(path: &Path) -> Result<Format> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 4];
    use std::io::Read;
    if file.read_exact(&mut magic).is_ok() && &magic == b"PAR1" {
        return Ok(Format::Parquet);
    }
    if path.extension().is_some_and(|e| e == "parquet") {
        return Err(Error::Data(format!(
            "{}: not a Parquet file (it does not start with PAR1)",
            path.display()
        )));
    }
    for line in crate::text::lines(path)? {
        let (_, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let dsstne = fields.len() == 2 && (fields[1].contains(':') || fields[1].contains(','));
        return Ok(if dsstne {
            Format::Dsstne
        } else {
            Format::Delimited
        });
    }
    Err(Error::Data(format!(
        "{}: the file is empty",
        path.display()
    )))
}
