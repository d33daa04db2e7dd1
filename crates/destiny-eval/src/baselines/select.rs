//! Baselines by name and settings, and the choice of a baseline's main setting on validation
//! users (never on test users): each candidate is fitted on the training rows and judged by
//! NDCG@100 on the validation users' held-out items.

use super::als::AlsSettings;
use super::{most_popular, Als, ItemItem};
use destiny_core::data::SparseRows;
use destiny_core::error::{Error, Result};
use destiny_core::predict::TopK;
use destiny_core::ranking::{validation_scores, VALIDATION_TOP};
use std::fmt;

/// A baseline with its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baseline {
    Popularity,
    Ease { lambda: f64 },
    ItemKnn { neighbours: usize },
    Als(AlsSettings),
}

/// The kinds of baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineKind {
    Popularity,
    Ease,
    ItemKnn,
    Als,
}

/// ALS with `alpha` and `lambda` and the settings every ALS candidate shares.
fn als(alpha: f64, lambda: f64) -> Baseline {
    Baseline::Als(AlsSettings {
        factors: 32,
        alpha,
        lambda,
        iterations: 10,
        seed: 1,
    })
}

impl BaselineKind {
    /// The candidates validation chooses from: EASE's L2 weight, ItemKNN's neighbourhood,
    /// ALS's confidence and L2 weight (32 factors, 10 iterations).
    pub fn candidates(self) -> Vec<Baseline> {
        match self {
            BaselineKind::Popularity => vec![Baseline::Popularity],
            BaselineKind::Ease => [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
                .map(|lambda| Baseline::Ease { lambda })
                .to_vec(),
            BaselineKind::ItemKnn => [10, 25, 50, 100, 200, 400]
                .map(|neighbours| Baseline::ItemKnn { neighbours })
                .to_vec(),
            BaselineKind::Als => [(1.0, 10.0), (5.0, 10.0), (5.0, 50.0), (20.0, 50.0)]
                .map(|(alpha, lambda)| als(alpha, lambda))
                .to_vec(),
        }
    }

    /// The kind's settings when none is chosen on validation users.
    pub fn default_baseline(self) -> Baseline {
        match self {
            BaselineKind::Popularity => Baseline::Popularity,
            BaselineKind::Ease => Baseline::Ease { lambda: 500.0 },
            BaselineKind::ItemKnn => Baseline::ItemKnn { neighbours: 100 },
            BaselineKind::Als => als(5.0, 10.0),
        }
    }
}

impl Baseline {
    /// Fits the baseline on `train` and keeps the `k` best unseen items of each row of
    /// `input`.
    pub fn recommend(&self, train: &SparseRows, input: &SparseRows, k: usize) -> Result<TopK> {
        super::check_widths(train, input)?;
        match *self {
            Baseline::Popularity => most_popular(train, input, k),
            Baseline::Ease { lambda } => ItemItem::ease(train, lambda)?.recommend(input, k),
            Baseline::ItemKnn { neighbours } => {
                ItemItem::item_knn(train, neighbours)?.recommend(input, k)
            }
            Baseline::Als(settings) => Als::fit(train, settings)?.recommend(input, k),
        }
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Baseline::Popularity => write!(f, "most popular"),
            Baseline::Ease { lambda } => write!(f, "EASE (lambda {lambda})"),
            Baseline::ItemKnn { neighbours } => write!(f, "ItemKNN ({neighbours} neighbours)"),
            Baseline::Als(s) => write!(
                f,
                "ALS ({} factors, alpha {}, lambda {})",
                s.factors, s.alpha, s.lambda
            ),
        }
    }
}

/// One candidate judged on the validation users.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    pub baseline: Baseline,
    pub ndcg_at_100: f64,
    pub recall_at_20: f64,
}

/// Fits every candidate of `kind` on `train` and judges it on the validation users
/// (`fold_in` recommended for, `held_out` to find); returns the best by NDCG@100 (the
/// first of equals) and every trial.
pub fn choose(
    kind: BaselineKind,
    train: &SparseRows,
    fold_in: &SparseRows,
    held_out: &SparseRows,
) -> Result<(Baseline, Vec<Trial>)> {
    if fold_in.len() != held_out.len() || fold_in.is_empty() {
        return Err(Error::Data(format!(
            "validation users need as many held-out rows as fold-in rows, and some: {} and {}",
            fold_in.len(),
            held_out.len()
        )));
    }
    let mut trials = Vec::new();
    for baseline in kind.candidates() {
        let top = baseline.recommend(train, fold_in, VALIDATION_TOP)?;
        let (ndcg_at_100, recall_at_20) = validation_scores(&top, held_out);
        trials.push(Trial {
            baseline,
            ndcg_at_100,
            recall_at_20,
        });
    }
    let best = trials
        .iter()
        .fold(&trials[0], |best, t| {
            if t.ndcg_at_100 > best.ndcg_at_100 {
                t
            } else {
                best
            }
        })
        .baseline;
    Ok((best, trials))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::tests::rows;

    #[test]
    fn the_choice_is_the_best_on_the_validation_users() {
        // Two tastes; validation users hold out an item of their taste.
        let train = rows(
            6,
            &[
                &[0, 1, 2],
                &[0, 1],
                &[1, 2],
                &[3, 4, 5],
                &[3, 4],
                &[4, 5],
                &[0, 2],
            ],
        );
        let fold_in = rows(6, &[&[0, 1], &[3, 5]]);
        let held_out = rows(6, &[&[2], &[4]]);
        let (best, trials) = choose(BaselineKind::ItemKnn, &train, &fold_in, &held_out).unwrap();
        assert_eq!(trials.len(), BaselineKind::ItemKnn.candidates().len());
        let top = trials
            .iter()
            .map(|t| t.ndcg_at_100)
            .fold(f64::MIN, f64::max);
        let first_best = trials.iter().find(|t| t.ndcg_at_100 == top).unwrap();
        assert_eq!(best, first_best.baseline);
        // Each user's held-out item is its first recommendation: NDCG and recall are 1.
        assert_eq!(
            (first_best.ndcg_at_100, first_best.recall_at_20),
            (1.0, 1.0)
        );
        assert!(choose(BaselineKind::Ease, &train, &fold_in, &rows(6, &[&[2]])).is_err());
    }
}
