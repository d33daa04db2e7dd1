//! Top-K selection per row, skipping excluded columns: one pass over each row keeping the
//! `k` best seen so far in a heap whose root is the worst of them, so that nearly every
//! score costs one comparison with that root (a row's scores are read once, not copied
//! into pairs and partitioned). The output layer's activations can be computed a row at a
//! time into a buffer of the thread as they are selected, so that a wide output's
//! activations never go to memory.

use super::elementwise::activation_forward_row;
use super::sparse::HostSparse;
use crate::backend::top_k_order;
use crate::config::Activation;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate `(score, column)`, ordered so that the heap's greatest is the worst by
/// [`top_k_order`].
#[derive(Clone, Copy, PartialEq)]
struct Candidate(f32, u32);

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        top_k_order(&(self.0, self.1), &(other.0, other.1))
    }
}

/// What one thread keeps between rows: the heap, and marks of the row's excluded columns.
#[derive(Default)]
struct Selection {
    heap: BinaryHeap<Candidate>,
    excluded: Vec<bool>,
    marked: Vec<usize>,
}

/// How [`top_k_order`] ranks a score: NaN as -inf.
#[inline(always)]
fn rank(score: f32) -> f32 {
    if score.is_nan() {
        f32::NEG_INFINITY
    } else {
        score
    }
}

impl Selection {
    /// Writes the `columns.len()` best of row `r`'s `scores` (columns `first_column..` of the
    /// whole output) into `columns` and `best`, best first, padded with `(u32::MAX, -inf)`.
    fn select(
        &mut self,
        r: usize,
        scores: &[f32],
        exclude: Option<&HostSparse>,
        first_column: usize,
        columns: &mut [u32],
        best: &mut [f32],
    ) {
        let k = columns.len();
        self.excluded.resize(scores.len(), false);
        if let Some(x) = exclude {
            let (start, end) = (x.offsets[r] as usize, x.offsets[r + 1] as usize);
            for &c in &x.indices[start..end] {
                let local = (c as usize).checked_sub(first_column);
                if let Some(c) = local.filter(|&c| c < scores.len()) {
                    self.excluded[c] = true;
                    self.marked.push(c);
                }
            }
        }
        self.heap.clear();
        // Columns come in increasing order, so a score equal to the worst kept one ranks
        // after it: only a strictly higher one enters once the heap is full.
        let mut worst = f32::NEG_INFINITY;
        for (c, &s) in scores.iter().enumerate() {
            if self.excluded[c] {
                continue;
            }
            let candidate = Candidate(s, (first_column + c) as u32);
            if self.heap.len() < k {
                self.heap.push(candidate);
                if self.heap.len() == k {
                    worst = rank(self.heap.peek().expect("k > 0").0);
                }
            } else if rank(s) > worst {
                *self.heap.peek_mut().expect("k > 0") = candidate;
                worst = rank(self.heap.peek().expect("k > 0").0);
            }
        }
        for c in self.marked.drain(..) {
            self.excluded[c] = false;
        }
        columns.fill(u32::MAX);
        best.fill(f32::NEG_INFINITY);
        let mut kept = std::mem::take(&mut self.heap).into_vec();
        kept.sort_unstable();
        for (i, Candidate(s, c)) in kept.iter().enumerate() {
            columns[i] = *c;
            best[i] = *s;
        }
        // The allocation is kept for the next row.
        kept.clear();
        self.heap = BinaryHeap::from(kept);
    }
}

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
    if k == 0 || cols == 0 {
        return (columns, best);
    }
    columns
        .par_chunks_mut(k)
        .zip(best.par_chunks_mut(k))
        .zip(scores[..rows * cols].par_chunks(cols))
        .enumerate()
        .for_each_init(
            Selection::default,
            |selection, (r, ((columns, best), row))| {
                selection.select(r, row, exclude, first_column, columns, best)
            },
        );
    (columns, best)
}

/// [`top_k`] of the activations `f(z + bias)` of the products `z` (of `rows x cols`), each
/// row's computed into a buffer of its thread just before it is selected: the values
/// [`activation_forward_row`] gives, without the whole matrix of them. `z` is scratch after.
#[allow(clippy::too_many_arguments)]
pub fn top_k_activated(
    activation: Activation,
    rows: usize,
    cols: usize,
    bias: Option<&[f32]>,
    z: &mut [f32],
    slope: Option<&[f32]>,
    k: usize,
    exclude: Option<&HostSparse>,
    first_column: usize,
) -> (Vec<u32>, Vec<f32>) {
    let mut columns = vec![u32::MAX; rows * k];
    let mut best = vec![f32::NEG_INFINITY; rows * k];
    if k == 0 || cols == 0 {
        return (columns, best);
    }
    let state = || (Selection::default(), vec![0.0f32; cols]);
    columns
        .par_chunks_mut(k)
        .zip(best.par_chunks_mut(k))
        .zip(z[..rows * cols].par_chunks_mut(cols))
        .enumerate()
        .for_each_init(state, |(selection, a), (r, ((columns, best), z))| {
            activation_forward_row(activation, bias, z, slope, a);
            selection.select(r, a, exclude, first_column, columns, best)
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

    /// Every row's top-K equals sorting the whole row by [`top_k_order`], with ties, NaN,
    /// infinities, exclusions and `k` beyond the row.
    #[test]
    fn the_heap_selects_what_a_full_sort_ranks_first() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (rows, cols) = (40, 300);
        let scores: Vec<f32> = (0..rows * cols)
            .map(|i| match i % 97 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                // Few distinct values, so that many scores tie.
                _ => (rng.random_range(0..50) as f32) * 0.25,
            })
            .collect();
        let mut offsets = vec![0u32];
        let mut indices = Vec::new();
        for _ in 0..rows {
            let mut row: Vec<u32> = (0..cols as u32 + 20)
                .filter(|_| rng.random_bool(0.2))
                .collect();
            row.sort_unstable();
            indices.extend(row.iter().map(|c| c + 5));
            offsets.push(indices.len() as u32);
        }
        let exclude = HostSparse {
            offsets: &offsets,
            indices: &indices,
            values: None,
        };
        for k in [1, 10, 100, 290] {
            let (columns, best) = top_k(rows, cols, &scores, k, Some(&exclude), 5);
            for r in 0..rows {
                let seen = &indices[offsets[r] as usize..offsets[r + 1] as usize];
                let mut all: Vec<(f32, u32)> = (0..cols)
                    .map(|c| (scores[r * cols + c], (c + 5) as u32))
                    .filter(|(_, c)| !seen.contains(c))
                    .collect();
                all.sort_by(top_k_order);
                all.truncate(k);
                let got = &columns[r * k..(r + 1) * k];
                let expected: Vec<u32> = all.iter().map(|p| p.1).collect();
                assert_eq!(&got[..expected.len()], &expected[..], "row {r}, k {k}");
                assert!(got[expected.len()..].iter().all(|&c| c == u32::MAX));
                let scores: Vec<f32> = all.iter().map(|p| p.0).collect();
                let kept = &best[r * k..r * k + scores.len()];
                assert!(kept
                    .iter()
                    .zip(&scores)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
    }

    /// The activations computed a row at a time rank as the whole matrix of them does.
    #[test]
    fn activated_rows_rank_as_their_activations() {
        let (rows, cols) = (3, 7);
        let z: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37) % 11) as f32 - 5.0)
            .collect();
        let bias: Vec<f32> = (0..cols).map(|c| c as f32 * 0.1).collect();
        for activation in [
            Activation::Sigmoid,
            Activation::SoftMax,
            Activation::RectifiedLinear,
        ] {
            let (mut z1, mut a) = (z.clone(), vec![0.0; rows * cols]);
            for (z, a) in z1.chunks_mut(cols).zip(a.chunks_mut(cols)) {
                activation_forward_row(activation, Some(&bias), z, None, a);
            }
            let expected = top_k(rows, cols, &a, 4, None, 0);
            let mut z2 = z.clone();
            let got = top_k_activated(
                activation,
                rows,
                cols,
                Some(&bias),
                &mut z2,
                None,
                4,
                None,
                0,
            );
            assert_eq!(got, expected, "{activation:?}");
        }
    }
}
