//! Sparse rows in compressed sparse row (CSR) form: the shape of interaction data.

use super::row_chunks::for_each_row_mut;
use super::DenseRows;
use crate::error::{Error, Result};

/// Rows of a sparse matrix: row `r` holds the column indices
/// `indices[offsets[r]..offsets[r + 1]]` and, when present, the matching `values`
/// (absent values mean every stored entry is 1, as for implicit feedback).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseRows {
    width: usize,
    offsets: Vec<usize>,
    indices: Vec<u32>,
    values: Option<Vec<f32>>,
}

impl SparseRows {
    /// Builds rows from CSR parts, checking that they are consistent: offsets start at 0,
    /// never decrease and end at the number of indices; every index is below `width`;
    /// values, when given, are finite and as many as the indices.
    pub fn new(
        width: usize,
        offsets: Vec<usize>,
        indices: Vec<u32>,
        values: Option<Vec<f32>>,
    ) -> Result<Self> {
        if offsets.first() != Some(&0) {
            return Err(Error::Data("sparse rows: offsets must start with 0".into()));
        }
        if let Some(row) = offsets.windows(2).position(|w| w[1] < w[0]) {
            return Err(Error::Data(format!(
                "sparse rows: offsets decrease at row {row}"
            )));
        }
        if *offsets.last().unwrap() != indices.len() {
            return Err(Error::Data(format!(
                "sparse rows: last offset {} does not match {} indices",
                offsets.last().unwrap(),
                indices.len()
            )));
        }
        if let Some(position) = indices.iter().position(|&i| i as usize >= width) {
            let row = offsets.partition_point(|&o| o <= position) - 1;
            return Err(Error::Data(format!(
                "sparse rows: row {row} has column {} but the width is {width}",
                indices[position]
            )));
        }
        if let Some(values) = &values {
            if values.len() != indices.len() {
                return Err(Error::Data(format!(
                    "sparse rows: {} values for {} indices",
                    values.len(),
                    indices.len()
                )));
            }
            if let Some(position) = values.iter().position(|v| !v.is_finite()) {
                let row = offsets.partition_point(|&o| o <= position) - 1;
                return Err(Error::Data(format!(
                    "sparse rows: row {row} has a non-finite value"
                )));
            }
        }
        Ok(SparseRows {
            width,
            offsets,
            indices,
            values,
        })
    }

    /// Builds rows from one list of `(column, value)` pairs per row.
    pub fn from_rows(width: usize, rows: &[Vec<(u32, f32)>]) -> Result<Self> {
        let mut offsets = Vec::with_capacity(rows.len() + 1);
        offsets.push(0);
        let mut indices = Vec::new();
        let mut values = Vec::new();
        for row in rows {
            for &(index, value) in row {
                indices.push(index);
                values.push(value);
            }
            offsets.push(indices.len());
        }
        SparseRows::new(width, offsets, indices, Some(values))
    }

    /// The non-zero values of `dense`, row by row.
    pub fn from_dense(dense: &DenseRows) -> Self {
        let mut offsets = vec![0];
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        for r in 0..dense.len() {
            for (c, &v) in dense.row(r).iter().enumerate().filter(|(_, v)| **v != 0.0) {
                indices.push(c as u32);
                values.push(v);
            }
            offsets.push(indices.len());
        }
        SparseRows::new(dense.width(), offsets, indices, Some(values))
            .expect("the non-zero values of dense rows are valid sparse rows")
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// True when `other` holds the same rows: the same object, or equal contents (an
    /// autoencoder's input and target are usually two copies of one dataset).
    pub fn same_as(&self, other: &SparseRows) -> bool {
        std::ptr::eq(self, other) || self == other
    }

    /// Row offsets into `indices` (length `len() + 1`).
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// Column indices of all rows, concatenated.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// Values matching `indices`, or `None` when every entry is 1.
    pub fn values(&self) -> Option<&[f32]> {
        self.values.as_deref()
    }

    /// Column indices of row `row`.
    pub fn row_indices(&self, row: usize) -> &[u32] {
        &self.indices[self.offsets[row]..self.offsets[row + 1]]
    }

    /// Values of row `row`, or `None` when every entry is 1.
    pub fn row_values(&self, row: usize) -> Option<&[f32]> {
        self.values
            .as_ref()
            .map(|v| &v[self.offsets[row]..self.offsets[row + 1]])
    }

    /// Copies the given rows, in the given order, into a new set (a mini-batch), in
    /// parallel over chunks of rows.
    pub fn gather(&self, rows: &[usize]) -> SparseRows {
        let mut offsets = Vec::with_capacity(rows.len() + 1);
        offsets.push(0);
        let mut total = 0;
        for &r in rows {
            total += self.offsets[r + 1] - self.offsets[r];
            offsets.push(total);
        }
        let mut indices = vec![0; total];
        copy_rows(&self.indices, &self.offsets, rows, &offsets, &mut indices);
        let values = self.values.as_ref().map(|source| {
            let mut values = vec![0.0; total];
            copy_rows(source, &self.offsets, rows, &offsets, &mut values);
            values
        });
        SparseRows {
            width: self.width,
            offsets,
            indices,
            values,
        }
    }

    /// Splits into the CSR parts `(width, offsets, indices, values)`.
    pub fn into_parts(self) -> (usize, Vec<usize>, Vec<u32>, Option<Vec<f32>>) {
        (self.width, self.offsets, self.indices, self.values)
    }
}

/// Fills `out`, laid out by `offsets`, with the entries (indices or values) of `source`, laid
/// out by `source_offsets`: its row `b` with row `rows[b]`, in parallel over chunks of rows.
fn copy_rows<T: Copy + Send + Sync>(
    source: &[T],
    source_offsets: &[usize],
    rows: &[usize],
    offsets: &[usize],
    out: &mut [T],
) {
    for_each_row_mut(
        out,
        rows.len(),
        |b| offsets[b],
        |b, row| {
            let r = rows[b];
            row.copy_from_slice(&source[source_offsets[r]..source_offsets[r + 1]]);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_inconsistent_parts() {
        assert!(SparseRows::new(3, vec![1, 2], vec![0, 1], None).is_err());
        assert!(SparseRows::new(3, vec![0, 2, 1], vec![0, 1], None).is_err());
        assert!(SparseRows::new(3, vec![0, 1], vec![0, 1], None).is_err());
        let error = SparseRows::new(3, vec![0, 1, 2], vec![0, 3], None).unwrap_err();
        assert!(error.to_string().contains("row 1 has column 3"), "{error}");
        assert!(SparseRows::new(3, vec![0, 2], vec![0, 1], Some(vec![1.0])).is_err());
        assert!(SparseRows::new(3, vec![0, 2], vec![0, 1], Some(vec![1.0, f32::NAN])).is_err());
    }

    #[test]
    fn gathers_rows_in_order() {
        let rows =
            SparseRows::from_rows(4, &[vec![(0, 1.0)], vec![(1, 2.0), (3, 3.0)], vec![]]).unwrap();
        let batch = rows.gather(&[1, 2, 0]);
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.row_indices(0), &[1, 3]);
        assert_eq!(batch.row_values(0).unwrap(), &[2.0, 3.0]);
        assert!(batch.row_indices(1).is_empty());
        assert_eq!(batch.row_indices(2), &[0]);
        assert_eq!(batch.row_values(2).unwrap(), &[1.0]);
    }
}
