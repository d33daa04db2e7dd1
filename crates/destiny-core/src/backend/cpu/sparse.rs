//! Products with a sparse batch: the forward product that sums only the weight rows a sample
//! touches, and the weight gradient that updates only those rows.

use crate::backend::random;
use crate::data::row_chunks::for_each_row_mut;
use rayon::prelude::*;

/// A sparse batch in host memory.
pub struct HostSparse<'a> {
    pub offsets: &'a [u32],
    pub indices: &'a [u32],
    pub values: Option<&'a [f32]>,
}

impl HostSparse<'_> {
    fn entries(&self, row: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let (start, end) = (self.offsets[row] as usize, self.offsets[row + 1] as usize);
        (start..end).map(move |e| (self.indices[e] as usize, self.values.map_or(1.0, |v| v[e])))
    }
}

/// `out = beta * out + x * w` with `w` of `m x n`.
pub fn matmul(x: &HostSparse, w: &[f32], n: usize, beta: f32, out: &mut [f32]) {
    let rows = x.offsets.len() - 1;
    out[..rows * n]
        .par_chunks_mut(n)
        .enumerate()
        .for_each(|(r, out)| {
            if beta == 0.0 {
                out.fill(0.0);
            } else if beta != 1.0 {
                out.iter_mut().for_each(|o| *o *= beta);
            }
            for (column, value) in x.entries(r) {
                let w = &w[column * n..(column + 1) * n];
                out.iter_mut().zip(w).for_each(|(o, w)| *o += value * w);
            }
        });
}

/// A raw pointer that may cross threads; every thread writes rows no other thread touches.
#[derive(Clone, Copy)]
struct RowsPointer(*mut f32);
unsafe impl Send for RowsPointer {}
unsafe impl Sync for RowsPointer {}

thread_local! {
    /// Per-column counters for grouping a batch's entries by column, all zero between calls.
    static COLUMN_COUNTS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A batch's entries grouped by column with a counting sort that touches only the columns
/// present: the entries of `columns[g]` are `entries[starts[g]..starts[g + 1]]`, as
/// `(row, value)` in row order.
struct ColumnGroups {
    columns: Vec<u32>,
    starts: Vec<usize>,
    entries: Vec<(u32, f32)>,
}

fn group_by_column(x: &HostSparse, width: usize) -> ColumnGroups {
    COLUMN_COUNTS.with(|counts| {
        let mut counts = counts.borrow_mut();
        if counts.len() < width {
            counts.resize(width, 0);
        }
        let mut columns = Vec::new();
        for &c in x.indices {
            if counts[c as usize] == 0 {
                columns.push(c);
            }
            counts[c as usize] += 1;
        }
        // Counts become start positions, and each then walks through its group.
        let mut starts = Vec::with_capacity(columns.len() + 1);
        let mut position = 0usize;
        for &c in &columns {
            starts.push(position);
            let count = counts[c as usize] as usize;
            counts[c as usize] = position as u32;
            position += count;
        }
        starts.push(position);
        let mut entries = vec![(0u32, 0.0f32); position];
        for r in 0..x.offsets.len() - 1 {
            for (c, v) in x.entries(r) {
                let slot = &mut counts[c];
                entries[*slot as usize] = (r as u32, v);
                *slot += 1;
            }
        }
        for &c in &columns {
            counts[c as usize] = 0;
        }
        ColumnGroups {
            columns,
            starts,
            entries,
        }
    })
}

/// `grad += alpha * x^T * delta` with `delta` of `rows x n`, touching only the batch's rows.
pub fn transpose_matmul(x: &HostSparse, delta: &[f32], n: usize, alpha: f32, grad: &mut [f32]) {
    let rows_in_grad = grad.len() / n;
    assert!(
        x.indices.iter().all(|&c| (c as usize) < rows_in_grad),
        "sparse column outside the weights"
    );
    let groups = group_by_column(x, rows_in_grad);
    let pointer = RowsPointer(grad.as_mut_ptr());
    (0..groups.columns.len()).into_par_iter().for_each(|g| {
        let column = groups.columns[g] as usize;
        // The Send wrapper itself, not its raw pointer (a closure captures fields).
        #[allow(clippy::redundant_locals)]
        let pointer = pointer;
        // SAFETY: each column has one group, so one writer, and lies inside `grad`.
        let row = unsafe { std::slice::from_raw_parts_mut(pointer.0.add(column * n), n) };
        for &(r, value) in &groups.entries[groups.starts[g]..groups.starts[g + 1]] {
            let scale = alpha * value;
            let delta = &delta[r as usize * n..(r as usize + 1) * n];
            row.iter_mut().zip(delta).for_each(|(g, d)| *g += scale * d);
        }
    });
}

/// The entries of a batch gathered from a dataset's `indices` and `values`: row `r` is the
/// `offsets[r + 1] - offsets[r]` entries from `sources[r]` on, with denoising applied as
/// [`crate::backend::Backend::gather_sparse`] says (values are then always present), from
/// a layout that it checked. Chunks of rows are gathered in parallel; the mask of entry `e`
/// depends on `e` alone.
pub fn gather(
    indices: &[u32],
    values: Option<&[f32]>,
    offsets: &[u32],
    sources: &[u64],
    denoising: Option<(f32, u64)>,
) -> (Vec<u32>, Option<Vec<f32>>) {
    let rows = offsets.len().saturating_sub(1);
    let first = offsets.first().copied().unwrap_or(0) as usize;
    let nnz = offsets.last().copied().unwrap_or(0) as usize - first;
    // Where batch row `r`'s entries start in the batch and in the dataset.
    let offset = |r: usize| offsets[r] as usize;
    let source = |r: usize| sources[r] as usize;
    let mut batch_indices = vec![0; nnz];
    for_each_row_mut(&mut batch_indices, rows, offset, |r, row| {
        row.copy_from_slice(&indices[source(r)..source(r) + row.len()]);
    });
    let batch_values = (values.is_some() || denoising.is_some()).then(|| {
        let mut batch_values = vec![0.0; nnz];
        for_each_row_mut(&mut batch_values, rows, offset, |r, row| {
            let (start, e) = (source(r), offset(r) - first);
            for (k, out) in row.iter_mut().enumerate() {
                let value = values.map_or(1.0, |v| v[start + k]);
                *out = match denoising {
                    Some((p, seed)) if random::uniform(seed, (e + k) as u64) < p => 0.0,
                    Some((p, _)) => (1.0 / (1.0 - p)) * value,
                    None => value,
                };
            }
        });
        batch_values
    });
    (batch_indices, batch_values)
}
