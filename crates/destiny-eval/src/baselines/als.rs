//! Implicit ALS (Hu, Koren and Volinsky 2008): users and items get `factors`-long vectors,
//! fitted alternately so that `x_u . y_i` approaches 1 for a user's items and 0 elsewhere,
//! with confidence `1 + alpha` on the user's items and 1 elsewhere, and an L2 weight
//! `lambda`. Users to recommend for are folded in: their vector is solved from their items
//! with the item vectors fixed, as in training.

use super::rank;
use destiny_core::data::SparseRows;
use destiny_core::error::{Error, Result};
use destiny_core::predict::TopK;
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// The settings of an ALS fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlsSettings {
    pub factors: usize,
    /// Extra confidence of an observed item.
    pub alpha: f64,
    /// L2 weight of every vector.
    pub lambda: f64,
    pub iterations: usize,
    /// Seeds the initial item vectors.
    pub seed: u64,
}

/// A fitted ALS model: the item vectors, items x factors, row-major.
pub struct Als {
    settings: AlsSettings,
    items: usize,
    item_factors: Vec<f64>,
}

/// The rows of `x` as columns: for each column, the rows holding it.
fn transpose(x: &SparseRows) -> Vec<Vec<u32>> {
    let mut columns = vec![Vec::new(); x.width()];
    for r in 0..x.len() {
        for &c in x.row_indices(r) {
            columns[c as usize].push(r as u32);
        }
    }
    columns
}

/// `Y^T Y` of `factors`-long vectors.
fn gram(vectors: &[f64], factors: usize) -> Mat<f64> {
    let mut gram = Mat::<f64>::zeros(factors, factors);
    for y in vectors.chunks(factors) {
        for a in 0..factors {
            for b in 0..factors {
                gram[(a, b)] += y[a] * y[b];
            }
        }
    }
    gram
}

/// Solves one vector: `(Y^T Y + alpha sum_i y_i y_i^T + lambda I) x = (1 + alpha) sum_i y_i`
/// over the observed `others` (rows of `vectors`).
fn solve(others: &[u32], vectors: &[f64], gram: &Mat<f64>, s: &AlsSettings) -> Vec<f64> {
    let f = s.factors;
    let mut a = gram.clone();
    let mut b = Mat::<f64>::zeros(f, 1);
    for &o in others {
        let y = &vectors[o as usize * f..(o as usize + 1) * f];
        for p in 0..f {
            b[(p, 0)] += (1.0 + s.alpha) * y[p];
            for q in 0..f {
                a[(p, q)] += s.alpha * y[p] * y[q];
            }
        }
    }
    for p in 0..f {
        a[(p, p)] += s.lambda;
    }
    let x = a
        .llt(Side::Lower)
        .expect("a Gram matrix plus a positive diagonal is positive definite")
        .solve(&b);
    (0..f).map(|p| x[(p, 0)]).collect()
}

/// Every vector of one side from the other side's `vectors`.
fn solve_all(observed: &[Vec<u32>], vectors: &[f64], s: &AlsSettings) -> Vec<f64> {
    let gram = gram(vectors, s.factors);
    observed
        .par_iter()
        .flat_map_iter(|others| solve(others, vectors, &gram, s))
        .collect()
}

impl Als {
    /// Fits user and item vectors on the training rows.
    pub fn fit(train: &SparseRows, settings: AlsSettings) -> Result<Als> {
        if settings.factors == 0 || settings.alpha < 0.0 || settings.lambda <= 0.0 {
            return Err(Error::Options(format!(
                "ALS needs factors >= 1, alpha >= 0 and lambda > 0, not {settings:?}"
            )));
        }
        let users: Vec<Vec<u32>> = (0..train.len())
            .map(|r| train.row_indices(r).to_vec())
            .collect();
        let items = transpose(train);
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let scale = 0.1 / (settings.factors as f64).sqrt();
        let mut item_factors: Vec<f64> = (0..train.width() * settings.factors)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        for _ in 0..settings.iterations {
            let user_factors = solve_all(&users, &item_factors, &settings);
            item_factors = solve_all(&items, &user_factors, &settings);
        }
        Ok(Als {
            settings,
            items: train.width(),
            item_factors,
        })
    }

    /// Folds in every row of `input` and keeps the `k` best unseen items by `x_u . y_i`.
    pub fn recommend(&self, input: &SparseRows, k: usize) -> Result<TopK> {
        if input.width() != self.items {
            return Err(Error::Dimension(format!(
                "ALS was fitted on {} items, the rows have {}",
                self.items,
                input.width()
            )));
        }
        let f = self.settings.factors;
        let gram = gram(&self.item_factors, f);
        rank(input, k, |batch| {
            let users: Vec<Vec<u32>> = (0..batch.len())
                .map(|r| batch.row_indices(r).to_vec())
                .collect();
            let scores = users
                .par_iter()
                .flat_map_iter(|items| {
                    let x = solve(items, &self.item_factors, &gram, &self.settings);
                    self.item_factors
                        .chunks(f)
                        .map(move |y| y.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>() as f32)
                        .collect::<Vec<_>>()
                })
                .collect();
            Ok(scores)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::tests::rows;

    fn settings(factors: usize) -> AlsSettings {
        AlsSettings {
            factors,
            alpha: 10.0,
            lambda: 0.1,
            iterations: 10,
            seed: 1,
        }
    }

    #[test]
    fn a_fold_in_solves_the_normal_equations() {
        let train = rows(5, &[&[0, 1], &[1, 2], &[0, 1, 2], &[3, 4], &[3]]);
        let als = Als::fit(&train, settings(2)).unwrap();
        // The folded-in vector x of a user with items {0, 2} makes the gradient of
        // sum_i c_i (p_i - x.y_i)^2 + lambda |x|^2 vanish.
        let s = als.settings;
        let gram = gram(&als.item_factors, 2);
        let x = solve(&[0, 2], &als.item_factors, &gram, &s);
        for p in 0..2 {
            let mut gradient = s.lambda * x[p];
            for (i, y) in als.item_factors.chunks(2).enumerate() {
                let (c, target) = if i == 0 || i == 2 {
                    (1.0 + s.alpha, 1.0)
                } else {
                    (1.0, 0.0)
                };
                gradient += c * (x[0] * y[0] + x[1] * y[1] - target) * y[p];
            }
            assert!(gradient.abs() < 1e-9, "gradient {gradient}");
        }
    }

    #[test]
    fn tastes_are_learned_and_bad_settings_refused() {
        // Two groups of users: {0,1,2} and {3,4}; a user with item 0 gets 1 and 2 first.
        let train = rows(
            5,
            &[
                &[0, 1, 2],
                &[0, 1],
                &[1, 2],
                &[0, 2],
                &[3, 4],
                &[3, 4],
                &[3],
            ],
        );
        let als = Als::fit(&train, settings(2)).unwrap();
        let top = als.recommend(&rows(5, &[&[0], &[4]]), 2).unwrap();
        let mut first: Vec<u32> = top.row(0).map(|(c, _)| c).collect();
        first.sort_unstable();
        assert_eq!(first, vec![1, 2]);
        assert_eq!(top.row(1).next().unwrap().0, 3);
        assert!(Als::fit(
            &train,
            AlsSettings {
                lambda: 0.0,
                ..settings(2)
            }
        )
        .is_err());
        assert!(als.recommend(&rows(4, &[&[0]]), 2).is_err());
    }
}
