//! Rows of entries cut into chunks of whole rows for rayon's threads, so that a batch's rows
//! are gathered, scaled or denoised on every core. Each chunk writes only its own rows, and
//! what it writes depends on the row's position alone, never on the chunk: the results are
//! the same whatever the number of threads.

use rayon::prelude::*;
use std::ops::Range;

/// Entries per chunk: enough that a task's scheduling (about a microsecond) is small beside
/// copying or drawing masks for them, few enough that a batch of a few hundred rows (tens
/// of thousands of entries) splits among the cores.
const GRAIN: usize = 4096;

/// Rows `0..rows`, row `r` holding entries `offset(r)..offset(r + 1)`, cut into consecutive
/// ranges of at least [`GRAIN`] entries each (the last may hold fewer).
fn row_chunks(rows: usize, offset: &impl Fn(usize) -> usize) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    for r in 1..=rows {
        if r == rows || offset(r) - offset(start) >= GRAIN {
            chunks.push(start..r);
            start = r;
        }
    }
    chunks
}

/// Calls `f(r, row)` with each row `r` of `entries`, whose row `r` is
/// `entries[offset(r) - offset(0)..offset(r + 1) - offset(0)]`, in parallel over chunks of
/// rows (on the calling thread when there is one chunk: a small batch is not worth a task).
pub(crate) fn for_each_row_mut<T: Send>(
    entries: &mut [T],
    rows: usize,
    offset: impl Fn(usize) -> usize + Sync,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunks = row_chunks(rows, &offset);
    let fill = |chunk: &Range<usize>, part: &mut [T]| {
        let base = offset(chunk.start);
        for r in chunk.clone() {
            f(r, &mut part[offset(r) - base..offset(r + 1) - base]);
        }
    };
    if chunks.len() <= 1 {
        return chunks.iter().for_each(|chunk| fill(chunk, entries));
    }
    let mut parts = Vec::with_capacity(chunks.len());
    let mut rest = entries;
    for chunk in &chunks {
        let (part, tail) = rest.split_at_mut(offset(chunk.end) - offset(chunk.start));
        parts.push(part);
        rest = tail;
    }
    parts
        .into_par_iter()
        .zip(&chunks)
        .for_each(|(part, chunk)| fill(chunk, part));
}

/// `f(chunk)` for consecutive chunks of the rows `0..rows` (laid out by `offset` as for
/// [`for_each_row_mut`]), in parallel, in row order: for outputs whose rows' lengths are
/// known only once computed, which the caller then concatenates.
pub(crate) fn map_row_chunks<R: Send>(
    rows: usize,
    offset: impl Fn(usize) -> usize,
    f: impl Fn(Range<usize>) -> R + Sync,
) -> Vec<R> {
    let chunks = row_chunks(rows, &offset);
    if chunks.len() <= 1 {
        return chunks.into_iter().map(f).collect();
    }
    chunks.into_par_iter().map(&f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_in_order() {
        // Rows of 0, 1, ..., 299 entries.
        let offsets: Vec<usize> = (0..=300usize)
            .map(|r| r * r.saturating_sub(1) / 2)
            .collect();
        let chunks = row_chunks(300, &|r| offsets[r]);
        assert!(chunks.len() > 2, "{chunks:?}");
        assert_eq!(chunks.first().unwrap().start, 0);
        assert_eq!(chunks.last().unwrap().end, 300);
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
            assert!(offsets[pair[0].end] - offsets[pair[0].start] >= GRAIN);
        }
        assert!(row_chunks(0, &|_| 0).is_empty());

        // Every entry is visited once, as part of its own row, from an offset other than 0.
        let mut entries = vec![usize::MAX; offsets[300] - offsets[10]];
        for_each_row_mut(
            &mut entries,
            290,
            |r| offsets[r + 10],
            |r, row| {
                assert_eq!(row.len(), r + 10);
                row.fill(r);
            },
        );
        let expected: Vec<usize> = (0..290).flat_map(|r| vec![r; r + 10]).collect();
        assert_eq!(entries, expected);
        let lengths = map_row_chunks(300, |r| offsets[r], |rows| rows.len());
        assert_eq!(lengths.len(), chunks.len());
        assert_eq!(lengths.iter().sum::<usize>(), 300);
    }
}
