//! Counter-based random numbers: the same `(seed, index)` gives the same number on every
//! backend, so that a dropout mask drawn on a GPU equals the one drawn on the CPU and a
//! mask can be redrawn for the backward pass instead of stored.

/// SplitMix64's finaliser: a bijective mix of 64 bits.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform number in `[0, 1)` with 24 random bits, a pure function of `seed` and `index`:
/// `(mix64(seed ^ mix64(index)) >> 40) * 2^-24`.
#[inline]
pub fn uniform(seed: u64, index: u64) -> f32 {
    (mix64(seed ^ mix64(index)) >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Derives an independent stream seed from a base seed and a purpose (layer, epoch, batch).
#[inline]
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(mix64(seed), |acc, &p| mix64(acc ^ mix64(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let n = 100_000;
        let mut buckets = [0usize; 10];
        for i in 0..n {
            let u = uniform(42, i);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((b as f64 - 10_000.0).abs() < 500.0, "{buckets:?}");
        }
        assert_ne!(uniform(1, 7), uniform(2, 7));
    }
}
