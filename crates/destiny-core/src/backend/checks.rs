//! The shape checks of the backend's operations, made once in [`Backend`]'s provided methods
//! before a device's unchecked implementation runs. Each is O(1) on lengths, except the
//! gather layout, which reads the host's row offsets once per batch.

use super::{Backend, LocalResponse, Memory, Shape, Sliding, SparseBatch};
use crate::error::{Error, Result};

/// Checks that a buffer of `len` values holds the `needed` that `what` reads or writes.
pub fn check_len(what: &str, len: usize, needed: usize) -> Result<()> {
    if len < needed {
        return Err(Error::Dimension(format!(
            "{what}: buffer holds {len} values, {needed} needed"
        )));
    }
    Ok(())
}

/// Checks that `buffer` on `backend` holds `needed` values.
pub(super) fn check_buffer<B: Memory + ?Sized>(
    backend: &B,
    what: &str,
    buffer: &B::Buffer,
    needed: usize,
) -> Result<()> {
    check_len(what, backend.buffer_len(buffer), needed)
}

/// Checks an optional per-unit buffer (a bias or slopes) against `cols` units.
pub(super) fn check_units<B: Memory + ?Sized>(
    backend: &B,
    what: &str,
    buffer: Option<&B::Buffer>,
    cols: usize,
) -> Result<()> {
    match buffer {
        Some(buffer) => check_buffer(backend, what, buffer, cols),
        None => Ok(()),
    }
}

/// Checks that sparse rows (targets or exclusions) have the rows of a matrix of `shape` and
/// reach its columns, which are theirs from `first_column` on.
pub(super) fn check_sparse_columns<B: Backend + ?Sized>(
    what: &str,
    x: &SparseBatch<B>,
    shape: Shape,
    first_column: usize,
) -> Result<()> {
    if x.rows != shape.rows || first_column + shape.cols > x.width {
        return Err(Error::Dimension(format!(
            "{what} of {} x {} for a matrix of {} x {} from column {first_column}",
            x.rows, x.width, shape.rows, shape.cols
        )));
    }
    Ok(())
}

/// Checks the layout of a [`Backend::gather_sparse`] against `nnz` resident entries: one
/// source per row, offsets that never decrease, and no row reading past the entries.
pub(super) fn check_gather_layout(offsets: &[u32], sources: &[u64], nnz: usize) -> Result<()> {
    let rows = offsets.len().saturating_sub(1);
    if sources.len() != rows {
        return Err(Error::Dimension(format!(
            "gather: {} sources for {rows} rows",
            sources.len()
        )));
    }
    for r in 0..rows {
        let len = offsets[r + 1]
            .checked_sub(offsets[r])
            .ok_or_else(|| Error::Dimension(format!("gather: offsets decrease at row {r}")))?;
        if sources[r] + len as u64 > nnz as u64 {
            return Err(Error::Dimension(format!(
                "gather: row {r} reads entries {}..{} of {nnz}",
                sources[r],
                sources[r] + len as u64
            )));
        }
    }
    Ok(())
}

/// Checks a sliding window: kernels and strides of at least 1, and every output window
/// overlapping the input (padding short of the kernel, no window starting past the end), so
/// that no pooling window is empty.
pub(super) fn check_sliding(what: &str, sliding: &Sliding) -> Result<()> {
    let w = &sliding.window;
    for d in 0..3 {
        let (input, output) = (sliding.input.spatial[d], sliding.output.spatial[d]);
        let fits = w.kernel[d] >= 1
            && w.stride[d] >= 1
            && w.padding[d] < w.kernel[d]
            && input >= 1
            && output >= 1
            && (output - 1) * w.stride[d] < input + w.padding[d];
        if !fits {
            return Err(Error::Dimension(format!(
                "{what}: a window of {} with stride {} and padding {} cannot slide from {input} to {output} positions (dimension {d})",
                w.kernel[d], w.stride[d], w.padding[d]
            )));
        }
    }
    Ok(())
}

/// Checks a pooling's window ([`check_sliding`]) and that it keeps the channels.
pub(super) fn check_pooling(sliding: &Sliding) -> Result<()> {
    check_sliding("pooling", sliding)?;
    if sliding.input.channels != sliding.output.channels {
        return Err(Error::Dimension(format!(
            "pooling: {} channels in, {} out",
            sliding.input.channels, sliding.output.channels
        )));
    }
    Ok(())
}

/// Checks local response normalisation's parameters: a window of at least one channel.
pub(super) fn check_local_response(response: &LocalResponse) -> Result<()> {
    if response.n == 0 {
        return Err(Error::Dimension(
            "local response normalisation over a window of 0 channels".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_layouts_are_checked() {
        assert!(check_gather_layout(&[0, 2, 5], &[4, 0], 7).is_ok());
        let errors = [
            (
                check_gather_layout(&[0, 2, 5], &[4], 7),
                "1 sources for 2 rows",
            ),
            (
                check_gather_layout(&[0, 3, 2], &[0, 0], 7),
                "decrease at row 1",
            ),
            (
                check_gather_layout(&[0, 2, 5], &[6, 0], 7),
                "row 0 reads entries 6..8 of 7",
            ),
        ];
        for (result, expected) in errors {
            let message = result.unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }
}
