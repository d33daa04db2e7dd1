//! Datasets in memory: named sets of sparse or dense rows, one row per sample.

mod dense_rows;
pub(crate) mod row_chunks;
mod sparse_rows;

pub use dense_rows::DenseRows;
pub use sparse_rows::SparseRows;

use crate::error::{Error, Result};

/// The rows of a dataset, sparse or dense.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    Sparse(SparseRows),
    Dense(DenseRows),
}

impl Rows {
    /// Number of columns (features).
    pub fn width(&self) -> usize {
        match self {
            Rows::Sparse(rows) => rows.width(),
            Rows::Dense(rows) => rows.width(),
        }
    }

    /// Number of rows (samples).
    pub fn len(&self) -> usize {
        match self {
            Rows::Sparse(rows) => rows.len(),
            Rows::Dense(rows) => rows.len(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the given rows into a mini-batch.
    pub fn gather(&self, rows: &[usize]) -> Rows {
        match self {
            Rows::Sparse(r) => Rows::Sparse(r.gather(rows)),
            Rows::Dense(r) => Rows::Dense(r.gather(rows)),
        }
    }
}

/// A named dataset; the name is what a layer's `DataSet` key refers to.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub rows: Rows,
    /// The extent of each dimension of a sample (an image's `[x, y, channels]`), whose
    /// product is the width; empty for flat data.
    pub dimensions: Vec<usize>,
}

impl Dataset {
    /// A named dataset of flat samples.
    pub fn new(name: impl Into<String>, rows: Rows) -> Self {
        Dataset {
            name: name.into(),
            rows,
            dimensions: Vec::new(),
        }
    }

    /// The dataset with samples of the given dimensions (x first), checked against its width.
    pub fn with_dimensions(mut self, dimensions: Vec<usize>) -> Result<Self> {
        let product: usize = dimensions.iter().product();
        if dimensions.is_empty() || dimensions.len() > 4 || product != self.rows.width() {
            return Err(Error::Dimension(format!(
                "dataset '{}': samples of dimensions {dimensions:?} for {} columns",
                self.name,
                self.rows.width()
            )));
        }
        self.dimensions = dimensions;
        Ok(self)
    }
}

/// Finds the dataset of the given name, with an error listing the names there are.
pub fn find_dataset<'a>(datasets: &'a [Dataset], name: &str) -> Result<&'a Dataset> {
    datasets.iter().find(|d| d.name == name).ok_or_else(|| {
        let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
        Error::Data(format!(
            "no dataset named '{name}' (have: {})",
            names.join(", ")
        ))
    })
}
