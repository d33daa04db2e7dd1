//! Top-K selection per row, skipping excluded columns.

use super::sparse::HostSparse;
use crate::backend::top_k_order;
use rayon::prelude::*;

/// The `k` best columns of each row, padded with `(u32::MAX, -inf)`. The scores are the
/// columns from `first_column` on of a wider output, which exclusions and results index.
pub fn top_k(
    rows: usize,
    cols: usize,
    scores: &[f32],
    k: usize,
    exclude: Option<&HostSparse>,
    first_column: usize,
) -> (Vec<u32>, Vec<f32>) {
    let mut columns = vec![u32::MAX; rows * k];
    let mut best = vec![f32::NEG_INFINITY; rows * k];
    if k == 0 {
        return (columns, best);
    }
    columns
        .par_chunks_mut(k)
        .zip(best.par_chunks_mut(k))
        .enumerate()
        .for_each_init(Vec::new, |candidates, (r, (columns, best))| {
            let row = &scores[r * cols..(r + 1) * cols];
            candidates.clear();
            candidates.extend(
                row.iter()
                    .enumerate()
                    .map(|(c, &s)| (s, (first_column + c) as u32)),
            );
            if let Some(x) = exclude {
                let (start, end) = (x.offsets[r] as usize, x.offsets[r + 1] as usize);
                for &c in &x.indices[start..end] {
                    if let Some(c) = (c as usize).checked_sub(first_column).filter(|&c| c < cols) {
                        candidates[c].1 = u32::MAX;
                    }
                }
                candidates.retain(|c| c.1 != u32::MAX);
            }
            let take = k.min(candidates.len());
            if take < candidates.len() {
                candidates.select_nth_unstable_by(take, top_k_order);
            }
            candidates.truncate(take);
            candidates.sort_unstable_by(top_k_order);
            for (i, &(s, c)) in candidates.iter().enumerate() {
                columns[i] = c;
                best[i] = s;
            }
        });
    (columns, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_first_excluding_seen_with_ties_by_column() {
        let scores = [
            0.1,
            0.9,
            0.5,
            0.9,
            f32::NAN,
            0.3,
            /* row 2 */ 1.0,
            2.0,
            3.0,
            4.0,
            5.0,
            6.0,
        ];
        let offsets = [0u32, 1, 3];
        let indices = [1u32, 5, 4];
        let exclude = HostSparse {
            offsets: &offsets,
            indices: &indices,
            values: None,
        };
        let (columns, best) = top_k(2, 6, &scores, 3, Some(&exclude), 0);
        assert_eq!(&columns[..3], &[3, 2, 5]);
        assert_eq!(&best[..3], &[0.9, 0.5, 0.3]);
        assert_eq!(&columns[3..], &[3, 2, 1]);
        // The same scores as columns 10..16 of a wider output: exclusions outside are skipped.
        let offsets = [0u32, 2, 4];
        let indices = [3u32, 11, 14, 15];
        let exclude = HostSparse {
            offsets: &offsets,
            indices: &indices,
            values: None,
        };
        let (columns, _) = top_k(2, 6, &scores, 3, Some(&exclude), 10);
        assert_eq!(columns, vec![13, 12, 15, 13, 12, 11]);
        let (columns, best) = top_k(1, 3, &[0.2, 0.1, 0.3], 5, None, 0);
        assert_eq!(columns, vec![2, 0, 1, u32::MAX, u32::MAX]);
        assert_eq!(best[4], f32::NEG_INFINITY);
    }
}
