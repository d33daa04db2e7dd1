//! Baselines computed the same way as a model's recommendations (top-K per user, leaving out
//! the items the user already has): the most popular items, and EASE (Steck 2019), a
//! closed-form linear item-item model.

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::{Backend, Shape};
use destiny_core::data::SparseRows;
use destiny_core::error::{Error, Result};
use destiny_core::predict::TopK;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};

/// Users scored per batch, bounding the dense score matrix.
const BATCH: usize = 1024;

/// Ranks items for each row of `input` by `score(batch rows) -> rows x items scores`,
/// keeping the `k` best that the row does not already have.
fn rank(
    input: &SparseRows,
    k: usize,
    score: impl Fn(&SparseRows) -> Result<Vec<f32>>,
) -> Result<TopK> {
    let backend = CpuBackend::new();
    let mut result = TopK {
        k,
        columns: Vec::with_capacity(input.len() * k),
        scores: Vec::with_capacity(input.len() * k),
    };
    for start in (0..input.len()).step_by(BATCH) {
        let rows: Vec<usize> = (start..(start + BATCH).min(input.len())).collect();
        let batch = input.gather(&rows);
        let scores = score(&batch)?;
        let exclude = backend.upload_sparse(&batch)?;
        let shape = Shape::new(rows.len(), input.width());
        let top = backend.top_k(shape, &scores, k, Some(&exclude), 0)?;
        let (columns, best) = backend.read_top_k(top)?;
        result.columns.extend(columns);
        result.scores.extend(best);
    }
    Ok(result)
}

fn check_widths(train: &SparseRows, input: &SparseRows) -> Result<()> {
    if train.width() != input.width() {
        return Err(Error::Dimension(format!(
            "the training rows have {} items but the rows to recommend for have {}",
            train.width(),
            input.width()
        )));
    }
    Ok(())
}

/// Recommends the items most often present in `train`'s rows (ties: lower column first).
pub fn most_popular(train: &SparseRows, input: &SparseRows, k: usize) -> Result<TopK> {
    check_widths(train, input)?;
    let mut counts = vec![0.0f32; train.width()];
    train
        .indices()
        .iter()
        .for_each(|&i| counts[i as usize] += 1.0);
    rank(input, k, |batch| {
        Ok(counts
            .iter()
            .copied()
            .cycle()
            .take(batch.len() * counts.len())
            .collect())
    })
}

/// An EASE model: the item-item weight matrix `B`, items x items, row-major.
pub struct Ease {
    items: usize,
    weights: Vec<f32>,
}

impl Ease {
    /// Fits `B` on the training rows: with `G = X^T X + lambda I` and `P = G^-1`,
    /// `B[i][j] = -P[i][j] / P[j][j]` off the diagonal and 0 on it. Needs items^2 doubles.
    pub fn fit(train: &SparseRows, lambda: f64) -> Result<Ease> {
        if lambda <= 0.0 {
            return Err(Error::Options(format!(
                "EASE needs a positive L2 weight, not {lambda}"
            )));
        }
        let n = train.width();
        let mut gram = Mat::<f64>::zeros(n, n);
        for r in 0..train.len() {
            let (items, values) = (train.row_indices(r), train.row_values(r));
            for (a, &i) in items.iter().enumerate() {
                let vi = values.map_or(1.0, |v| v[a]) as f64;
                for (b, &j) in items.iter().enumerate() {
                    gram[(i as usize, j as usize)] += vi * values.map_or(1.0, |v| v[b]) as f64;
                }
            }
        }
        for i in 0..n {
            gram[(i, i)] += lambda;
        }
        let precision = gram
            .llt(Side::Lower)
            .map_err(|e| {
                Error::Numerics(format!(
                    "EASE: the Gram matrix is not positive definite ({e:?})"
                ))
            })?
            .inverse();
        let mut weights = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    weights[i * n + j] = (-precision[(i, j)] / precision[(j, j)]) as f32;
                }
            }
        }
        Ok(Ease { items: n, weights })
    }

    /// The weight of item `i` towards item `j`.
    pub fn weight(&self, i: usize, j: usize) -> f32 {
        self.weights[i * self.items + j]
    }

    /// Scores `x_u B` for every row of `input` and keeps the `k` best unseen items.
    pub fn recommend(&self, input: &SparseRows, k: usize) -> Result<TopK> {
        if input.width() != self.items {
            return Err(Error::Dimension(format!(
                "EASE was fitted on {} items, the rows have {}",
                self.items,
                input.width()
            )));
        }
        let backend = CpuBackend::new();
        rank(input, k, |batch| {
            let x = backend.upload_sparse(batch)?;
            let mut scores = backend.zeros(batch.len() * self.items)?;
            backend.sparse_matmul(&x, &self.weights, self.items, 0.0, &mut scores)?;
            Ok(scores)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(width: usize, rows: &[&[u32]]) -> SparseRows {
        let rows: Vec<Vec<(u32, f32)>> = rows
            .iter()
            .map(|r| r.iter().map(|&c| (c, 1.0)).collect())
            .collect();
        let x = SparseRows::from_rows(width, &rows).unwrap();
        let (w, o, i, _) = x.into_parts();
        SparseRows::new(w, o, i, None).unwrap()
    }

    #[test]
    fn popularity_order_and_exclusion() {
        let train = rows(4, &[&[0, 1], &[1, 2], &[1, 2], &[3]]);
        let top = most_popular(&train, &rows(4, &[&[], &[1]]), 3).unwrap();
        assert_eq!(
            top.row(0).map(|(c, _)| c).collect::<Vec<_>>(),
            vec![1, 2, 0]
        );
        assert_eq!(
            top.row(1).map(|(c, s)| (c, s)).collect::<Vec<_>>(),
            vec![(2, 2.0), (0, 1.0), (3, 1.0)]
        );
    }

    #[test]
    fn ease_matches_the_closed_form() {
        // X = [[1,1,0],[0,1,1],[1,1,1]], lambda = 1: G = X^T X + I.
        let train = rows(3, &[&[0, 1], &[1, 2], &[0, 1, 2]]);
        let ease = Ease::fit(&train, 1.0).unwrap();
        let g = [[3.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 3.0f64]];
        // P = G^-1 by the adjugate.
        let det = g[0][0] * (g[1][1] * g[2][2] - g[1][2] * g[2][1])
            - g[0][1] * (g[1][0] * g[2][2] - g[1][2] * g[2][0])
            + g[0][2] * (g[1][0] * g[2][1] - g[1][1] * g[2][0]);
        let cofactor = |i: usize, j: usize| {
            let (r, c): (Vec<usize>, Vec<usize>) = (
                (0..3).filter(|&x| x != j).collect(),
                (0..3).filter(|&x| x != i).collect(),
            );
            let minor = g[r[0]][c[0]] * g[r[1]][c[1]] - g[r[0]][c[1]] * g[r[1]][c[0]];
            if (i + j) % 2 == 0 {
                minor
            } else {
                -minor
            }
        };
        let p = |i: usize, j: usize| cofactor(i, j) / det;
        for i in 0..3 {
            for j in 0..3 {
                let expected = if i == j { 0.0 } else { -p(i, j) / p(j, j) };
                assert!(
                    (ease.weight(i, j) as f64 - expected).abs() < 1e-6,
                    "B[{i}][{j}] = {} not {expected}",
                    ease.weight(i, j)
                );
            }
        }
        // A user with item 0 gets the other items ranked by B[0][j].
        let top = ease.recommend(&rows(3, &[&[0]]), 2).unwrap();
        let ranked: Vec<u32> = top.row(0).map(|(c, _)| c).collect();
        let mut expected = vec![1u32, 2];
        expected.sort_by(|&a, &b| {
            ease.weight(0, b as usize)
                .total_cmp(&ease.weight(0, a as usize))
        });
        assert_eq!(ranked, expected);
        assert!(Ease::fit(&train, 0.0).is_err());
    }
}
