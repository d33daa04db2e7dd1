//! Dense rows: a row-major matrix of `f32`.

use super::row_chunks::for_each_row_mut;
use super::SparseRows;
use crate::error::{Error, Result};

/// Rows of a dense matrix stored row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseRows {
    width: usize,
    data: Vec<f32>,
}

impl DenseRows {
    /// Wraps row-major data of the given width; the length must be a multiple of the width
    /// and every value finite.
    pub fn new(width: usize, data: Vec<f32>) -> Result<Self> {
        if width == 0 || !data.len().is_multiple_of(width) {
            return Err(Error::Data(format!(
                "dense rows: {} values do not make rows of width {width}",
                data.len()
            )));
        }
        if let Some(position) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Data(format!(
                "dense rows: row {} column {} is not finite",
                position / width,
                position % width
            )));
        }
        Ok(DenseRows { width, data })
    }

    /// The rows of `sparse` with every entry not stored 0 (a stored entry without a value 1).
    pub fn from_sparse(sparse: &SparseRows) -> Self {
        let width = sparse.width();
        let mut data = vec![0.0; sparse.len() * width];
        for (r, row) in data.chunks_mut(width.max(1)).enumerate().take(sparse.len()) {
            let values = sparse.row_values(r);
            for (i, &c) in sparse.row_indices(r).iter().enumerate() {
                row[c as usize] = values.map_or(1.0, |v| v[i]);
            }
        }
        DenseRows { width, data }
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.width
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// All values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// One row.
    pub fn row(&self, row: usize) -> &[f32] {
        &self.data[row * self.width..(row + 1) * self.width]
    }

    /// Copies the given rows, in the given order, into a new set, in parallel over chunks of
    /// rows.
    pub fn gather(&self, rows: &[usize]) -> DenseRows {
        let mut data = vec![0.0; rows.len() * self.width];
        for_each_row_mut(
            &mut data,
            rows.len(),
            |b| b * self.width,
            |b, row| row.copy_from_slice(self.row(rows[b])),
        );
        DenseRows {
            width: self.width,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_rows_in_order() {
        // 500 rows of 64: many chunks of rows.
        let data: Vec<f32> = (0..500 * 64).map(|v| v as f32).collect();
        let rows = DenseRows::new(64, data).unwrap();
        let order: Vec<usize> = (0..700).map(|b| (b * 37) % 500).collect();
        let batch = rows.gather(&order);
        assert_eq!(batch.len(), 700);
        for (b, &r) in order.iter().enumerate() {
            assert_eq!(batch.row(b), rows.row(r));
        }
    }
}
