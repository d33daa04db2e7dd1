//! Ranking metrics at K, for evaluation and for validation during training, as in the
//! autoencoder literature (Liang et al. 2018): for a user with relevant (held-out) items R
//! and a ranked list, with `hits@K` the relevant items in the first K,
//!
//! - precision@K = hits@K / K;
//! - recall@K = hits@K / min(K, |R|) (so that a perfect list scores 1 even when |R| > K);
//! - NDCG@K = DCG@K / IDCG@K with DCG@K = sum over ranks i <= K of [item i in R] / log2(i + 1)
//!   and IDCG@K the DCG of min(K, |R|) hits at the top;
//! - MAP@K = the sum of precision@i over the ranks i <= K holding a hit, / min(K, |R|).
//!
//! Each is averaged over the users with at least one relevant item; a user without
//! recommendations scores 0, and ranks past the end of a list shorter than K count as misses
//! (such lists are counted in `short_lists`, for callers to report). Items must not repeat
//! within a list: [`evaluate_recommendations`](crate::evaluate_recommendations) refuses
//! lists that repeat one, which would otherwise count as extra hits.

use crate::data::SparseRows;
use crate::predict::TopK;
use serde::Serialize;
use std::collections::HashSet;

/// The length of the lists validation scores: NDCG is taken at 100...
pub const VALIDATION_TOP: usize = 100;
/// ...and recall at 20.
pub const VALIDATION_RECALL_AT: usize = 20;

/// `(NDCG@100, Recall@20)` of top-K lists (`VALIDATION_TOP` long) against each row's
/// relevant items in `held_out`: the figures validation judges by.
pub fn validation_scores(top: &TopK, held_out: &SparseRows) -> (f64, f64) {
    let ranked: Vec<Vec<u32>> = (0..top.len())
        .map(|r| top.row(r).map(|(column, _)| column).collect())
        .collect();
    let relevant: Vec<&[u32]> = (0..held_out.len())
        .map(|r| held_out.row_indices(r))
        .collect();
    let ranked: Vec<&[u32]> = ranked.iter().map(Vec::as_slice).collect();
    let metrics = evaluate(&ranked, &relevant, &[VALIDATION_RECALL_AT, VALIDATION_TOP]);
    (metrics[1].ndcg, metrics[0].recall)
}

/// The metrics at one K.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    pub k: usize,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    /// Users averaged over.
    pub users: usize,
    /// Of those, the users whose list holds fewer than K items.
    pub short_lists: usize,
}

/// Scores ranked lists against relevant items, user by user (`ranked[u]` and `relevant[u]`
/// belong to the same user; items are any comparable ids), at each K of `ks`.
pub fn evaluate<T: std::hash::Hash + Eq, L: AsRef<[T]>>(
    ranked: &[L],
    relevant: &[L],
    ks: &[usize],
) -> Vec<Metrics> {
    assert_eq!(ranked.len(), relevant.len(), "one ranked list per user");
    ks.iter()
        .map(|&k| {
            let mut sums = [0.0f64; 4];
            let (mut users, mut short_lists) = (0, 0);
            for (list, truth) in ranked.iter().zip(relevant) {
                let (list, truth) = (list.as_ref(), truth.as_ref());
                let truth: HashSet<&T> = truth.iter().collect();
                if truth.is_empty() {
                    continue;
                }
                users += 1;
                short_lists += usize::from(list.len() < k);
                let ideal = k.min(truth.len());
                let (mut hits, mut dcg, mut precision_sum) = (0usize, 0.0f64, 0.0f64);
                for (rank, item) in list.iter().take(k).enumerate() {
                    if truth.contains(item) {
                        hits += 1;
                        dcg += 1.0 / ((rank + 2) as f64).log2();
                        precision_sum += hits as f64 / (rank + 1) as f64;
                    }
                }
                let idcg: f64 = (0..ideal)
                    .map(|rank| 1.0 / ((rank + 2) as f64).log2())
                    .sum();
                sums[0] += hits as f64 / k as f64;
                sums[1] += hits as f64 / ideal as f64;
                sums[2] += dcg / idcg;
                sums[3] += precision_sum / ideal as f64;
            }
            let mean = |s: f64| if users == 0 { 0.0 } else { s / users as f64 };
            Metrics {
                k,
                precision: mean(sums[0]),
                recall: mean(sums[1]),
                ndcg: mean(sums[2]),
                map: mean(sums[3]),
                users,
                short_lists,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn hand_computed_values() {
        // User 1: relevant {1, 2, 3}, ranked [1, 9, 2, 8]: hits at ranks 1 and 3.
        // User 2: relevant {5}, ranked [7, 6] (no hit).
        // User 3: relevant {} (skipped). User 4: relevant {4}, no recommendations.
        let ranked = vec![vec![1, 9, 2, 8], vec![7, 6], vec![1], vec![]];
        let relevant = vec![vec![1, 2, 3], vec![5], vec![], vec![4]];
        let m = evaluate(&ranked, &relevant, &[2, 4]);
        assert_eq!(m[0].users, 3);
        // User 4's empty list is short at K = 2; at K = 4 user 2's two items are too.
        assert_eq!((m[0].short_lists, m[1].short_lists), (1, 2));
        // K = 2: user 1 has 1 hit; ideal = min(2, 3) = 2.
        close(m[0].precision, (1.0 / 2.0) / 3.0);
        close(m[0].recall, (1.0 / 2.0) / 3.0);
        let idcg2 = 1.0 + 1.0 / 3f64.log2();
        close(m[0].ndcg, (1.0 / idcg2) / 3.0);
        close(m[0].map, (1.0 / 2.0) / 3.0);
        // K = 4: user 1 has 2 hits (ranks 1, 3); ideal = 3.
        close(m[1].precision, (2.0 / 4.0) / 3.0);
        close(m[1].recall, (2.0 / 3.0) / 3.0);
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let idcg3 = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        close(m[1].ndcg, (dcg / idcg3) / 3.0);
        close(m[1].map, ((1.0 + 2.0 / 3.0) / 3.0) / 3.0);
    }

    #[test]
    fn a_perfect_list_scores_one() {
        let m = evaluate(&[vec!["a", "b", "c"]], &[vec!["c", "b", "a", "d"]], &[3]);
        close(m[0].recall, 1.0);
        close(m[0].ndcg, 1.0);
        close(m[0].map, 1.0);
        close(m[0].precision, 1.0);
    }
}
