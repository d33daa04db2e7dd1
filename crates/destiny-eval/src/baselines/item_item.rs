//! Item-item models: a user's score for an item is the sum of the item's weights from the
//! user's items, `x_u B`. EASE (Steck 2019) fits `B` in closed form; ItemKNN takes each
//! item's most cosine-similar items.

use super::rank;
use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::Backend;
use destiny_core::data::SparseRows;
use destiny_core::error::{Error, Result};
use destiny_core::predict::TopK;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};

/// An item-item model: the weight matrix `B`, items x items, row-major.
pub struct ItemItem {
    items: usize,
    weights: Vec<f32>,
}

/// `X^T X` of the training rows (their values, or ones).
fn gram(train: &SparseRows) -> Mat<f64> {
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
    gram
}

impl ItemItem {
    /// EASE: with `G = X^T X + lambda I` and `P = G^-1`, `B[i][j] = -P[i][j] / P[j][j]` off
    /// the diagonal and 0 on it. Needs items^2 doubles.
    pub fn ease(train: &SparseRows, lambda: f64) -> Result<ItemItem> {
        if lambda <= 0.0 {
            return Err(Error::Options(format!(
                "EASE needs a positive L2 weight, not {lambda}"
            )));
        }
        let n = train.width();
        let mut gram = gram(train);
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
        Ok(ItemItem { items: n, weights })
    }

    /// ItemKNN: `B[i][j]` is the cosine similarity of items `i` and `j` (their columns of
    /// `X`) when `j` is among the `neighbours` items most similar to `i` (ties: lower
    /// column), else 0; never an item to itself.
    pub fn item_knn(train: &SparseRows, neighbours: usize) -> Result<ItemItem> {
        if neighbours == 0 {
            return Err(Error::Options(
                "ItemKNN needs at least one neighbour per item".into(),
            ));
        }
        let n = train.width();
        let gram = gram(train);
        let norm: Vec<f64> = (0..n).map(|i| gram[(i, i)].sqrt()).collect();
        let mut weights = vec![0.0f32; n * n];
        for i in 0..n {
            let mut similar: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i && norm[i] > 0.0 && norm[j] > 0.0)
                .map(|j| ((gram[(i, j)] / (norm[i] * norm[j])) as f32, j))
                .filter(|&(s, _)| s > 0.0)
                .collect();
            similar.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(s, j) in similar.iter().take(neighbours) {
                weights[i * n + j] = s;
            }
        }
        Ok(ItemItem { items: n, weights })
    }

    /// The weight of item `i` towards item `j`.
    pub fn weight(&self, i: usize, j: usize) -> f32 {
        self.weights[i * self.items + j]
    }

    /// Scores `x_u B` for every row of `input` and keeps the `k` best unseen items.
    pub fn recommend(&self, input: &SparseRows, k: usize) -> Result<TopK> {
        if input.width() != self.items {
            return Err(Error::Dimension(format!(
                "the model was fitted on {} items, the rows have {}",
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
    use crate::baselines::tests::rows;

    #[test]
    fn ease_matches_the_closed_form() {
        // X = [[1,1,0],[0,1,1],[1,1,1]], lambda = 1: G = X^T X + I.
        let train = rows(3, &[&[0, 1], &[1, 2], &[0, 1, 2]]);
        let ease = ItemItem::ease(&train, 1.0).unwrap();
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
            if (i + j).is_multiple_of(2) {
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
        assert!(ItemItem::ease(&train, 0.0).is_err());
    }

    #[test]
    fn item_knn_keeps_the_most_cosine_similar() {
        // Columns: item 0 = [1,0,1], item 1 = [1,1,1], item 2 = [0,1,1], item 3 = [0,0,0].
        let train = rows(4, &[&[0, 1], &[1, 2], &[0, 1, 2]]);
        let knn = ItemItem::item_knn(&train, 1).unwrap();
        let cos01 = 2.0 / (2f32.sqrt() * 3f32.sqrt());
        let cos02 = 1.0 / 2.0;
        // Item 0's nearest is item 1 (0.816 > 0.5); item 1 ties 0 and 2: the lower column.
        assert!((knn.weight(0, 1) - cos01).abs() < 1e-6);
        assert_eq!((knn.weight(0, 2), knn.weight(0, 0)), (0.0, 0.0));
        assert!((knn.weight(1, 0) - cos01).abs() < 1e-6);
        assert_eq!(knn.weight(1, 2), 0.0);
        assert_eq!((0..4).map(|j| knn.weight(3, j)).sum::<f32>(), 0.0);
        let all = ItemItem::item_knn(&train, 10).unwrap();
        assert!((all.weight(0, 2) - cos02).abs() < 1e-6);
        // A user with item 2 gets item 1 (cos 0.816), then item 0 (0.5); 3 never scores.
        let top = all.recommend(&rows(4, &[&[2]]), 3).unwrap();
        let ranked: Vec<u32> = top.row(0).map(|(c, _)| c).collect();
        assert_eq!(&ranked[..2], &[1, 0]);
        assert!(ItemItem::item_knn(&train, 0).is_err());
    }
}
