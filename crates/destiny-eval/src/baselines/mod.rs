//! Baselines computed the same way as a model's recommendations (top-K per user, leaving out
//! the items the user already has): the most popular items, the item-item models EASE
//! (Steck 2019) and ItemKNN (cosine), and implicit ALS (Hu, Koren and Volinsky 2008), each
//! with its main setting chosen on validation users ([`select`]).

mod als;
mod item_item;
mod select;

pub use als::{Als, AlsSettings};
pub use item_item::ItemItem;
pub use select::{choose, Baseline, BaselineKind, Trial};

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::{Backend, Shape};
use destiny_core::data::SparseRows;
use destiny_core::error::{Error, Result};
use destiny_core::predict::TopK;

/// Users scored per batch, bounding the dense score matrix.
const BATCH: usize = 1024;

/// Ranks items for each row of `input` by `score(batch rows) -> rows x items scores`,
/// keeping the `k` best that the row does not already have.
pub(crate) fn rank(
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

pub(crate) fn check_widths(train: &SparseRows, input: &SparseRows) -> Result<()> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Rows of ones from their items.
    pub(crate) fn rows(width: usize, rows: &[&[u32]]) -> SparseRows {
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
            top.row(1).collect::<Vec<_>>(),
            vec![(2, 2.0), (0, 1.0), (3, 1.0)]
        );
    }
}
