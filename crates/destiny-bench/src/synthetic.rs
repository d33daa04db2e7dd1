//! Synthetic interaction data with the shape of real recommendation data: item popularity
//! follows a power law and users have varying numbers of interactions.

use destiny_core::data::SparseRows;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use std::io::Write;
use std::path::Path;

/// Draws `users` rows over `items` columns with about `interactions` entries in all.
pub fn power_law_interactions(
    users: usize,
    items: usize,
    interactions: usize,
    seed: u64,
) -> SparseRows {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Zipf-like popularity with exponent 1 over a random permutation of the items, sampled
    // through its cumulative weights.
    let mut cumulative = Vec::with_capacity(items);
    let mut total = 0.0f64;
    for rank in 0..items {
        total += 1.0 / (rank as f64 + 10.0);
        cumulative.push(total);
    }
    let mut permutation: Vec<u32> = (0..items as u32).collect();
    for i in (1..items).rev() {
        permutation.swap(i, rng.random_range(0..=i));
    }
    let mean = interactions as f64 / users as f64;
    // A log-normal count per user, with its mean at `mean`.
    let sigma = 0.8f64;
    let counts = LogNormal::new(mean.ln() - sigma * sigma / 2.0, sigma).expect("valid parameters");
    let mut offsets = Vec::with_capacity(users + 1);
    offsets.push(0);
    let mut indices: Vec<u32> = Vec::with_capacity(interactions + users);
    let mut row = Vec::new();
    let mut taken = vec![false; items];
    for _ in 0..users {
        let count = (counts.sample(&mut rng).round() as usize).clamp(1, items / 2);
        row.clear();
        while row.len() < count {
            let u = rng.random::<f64>() * total;
            let item = permutation[cumulative.partition_point(|&c| c < u).min(items - 1)];
            if !taken[item as usize] {
                taken[item as usize] = true;
                row.push(item);
            }
        }
        row.iter().for_each(|&i| taken[i as usize] = false);
        row.sort_unstable();
        indices.extend_from_slice(&row);
        offsets.push(indices.len());
    }
    SparseRows::new(items, offsets, indices, None).expect("valid rows")
}

/// Writes rows as raw little-endian arrays for the PyTorch reference: `offsets.i64` and
/// `indices.i32`, with `shape.json` holding rows and width.
pub fn export(rows: &SparseRows, folder: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let mut offsets = std::io::BufWriter::new(std::fs::File::create(folder.join("offsets.i64"))?);
    for &o in rows.offsets() {
        offsets.write_all(&(o as i64).to_le_bytes())?;
    }
    offsets.flush()?;
    let mut indices = std::io::BufWriter::new(std::fs::File::create(folder.join("indices.i32"))?);
    for &i in rows.indices() {
        indices.write_all(&(i as i32).to_le_bytes())?;
    }
    indices.flush()?;
    std::fs::write(
        folder.join("shape.json"),
        serde_json::json!({ "rows": rows.len(), "width": rows.width(), "nnz": rows.nnz() })
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_skew() {
        let rows = power_law_interactions(2000, 500, 40_000, 1);
        assert_eq!(rows.len(), 2000);
        let nnz = rows.nnz() as f64;
        assert!((nnz - 40_000.0).abs() < 6_000.0, "{nnz}");
        let mut popularity = vec![0usize; 500];
        rows.indices()
            .iter()
            .for_each(|&i| popularity[i as usize] += 1);
        popularity.sort_unstable_by(|a, b| b.cmp(a));
        // The 10% most popular items hold far more than 10% of the interactions.
        let head: usize = popularity[..50].iter().sum();
        assert!(head as f64 > 0.25 * nnz, "{head} of {nnz}");
        assert_eq!(rows, power_law_interactions(2000, 500, 40_000, 1));
    }
}
