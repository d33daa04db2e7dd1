//! Products with a sparse batch: the forward product that sums only the weight rows a sample
//! touches, and the weight gradient that updates only those rows.

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

/// `grad += alpha * x^T * delta` with `delta` of `rows x n`, touching only the batch's rows.
pub fn transpose_matmul(x: &HostSparse, delta: &[f32], n: usize, alpha: f32, grad: &mut [f32]) {
    // Group the batch's entries by column so that each gradient row has one writer.
    let mut entries: Vec<(u32, u32, f32)> = Vec::with_capacity(x.indices.len());
    for r in 0..x.offsets.len() - 1 {
        entries.extend(x.entries(r).map(|(c, v)| (c as u32, r as u32, v)));
    }
    entries.sort_unstable_by_key(|&(c, r, _)| (c, r));
    let mut starts: Vec<usize> = (0..entries.len())
        .filter(|&e| e == 0 || entries[e].0 != entries[e - 1].0)
        .collect();
    starts.push(entries.len());
    let rows_in_grad = grad.len() / n;
    assert!(entries.last().is_none_or(|e| (e.0 as usize) < rows_in_grad));
    let pointer = RowsPointer(grad.as_mut_ptr());
    starts.par_windows(2).for_each(|span| {
        let group = &entries[span[0]..span[1]];
        let column = group[0].0 as usize;
        let pointer = pointer;
        // SAFETY: `column` is unique to this group and below `rows_in_grad`.
        let row = unsafe { std::slice::from_raw_parts_mut(pointer.0.add(column * n), n) };
        for &(_, r, value) in group {
            let scale = alpha * value;
            let delta = &delta[r as usize * n..(r as usize + 1) * n];
            row.iter_mut().zip(delta).for_each(|(g, d)| *g += scale * d);
        }
    });
}
