//! `exp` and `ln` for `f32` written so that loops over slices vectorise (no calls, no
//! branches): Cephes' range reductions and minimax polynomials, accurate to a few units in
//! the last place over the ranges the engine uses.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5 * 2^23: adding and subtracting it rounds an `f32` of magnitude below 2^22 to an integer.
const ROUNDER: f32 = 12_582_912.0;

/// `e^x`, saturating to 0 below -87.3 and to about 1.7e38 above 88.7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_54, 88.722_83);
    let n = (x * LOG2E + ROUNDER) - ROUNDER;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5e-1;
    let y = p * r2 + r + 1.0;
    // 2^n through the exponent bits; n + 127 stays within 0..=255 after the clamp. n is a
    // whole number, so adding 2^23 leaves n + 127 in the low bits of the mantissa: no
    // float-to-integer conversion, whose saturation keeps the loop from vectorising.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() - 0x4b00_0000;
    y * f32::from_bits(biased << 23)
}

/// `ln(x)` for finite positive normal `x`.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    // Mantissa in [0.5, 1).
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    e -= small as i32;
    let r = if small { m + m - 1.0 } else { m - 1.0 };
    let e = e as f32;
    let r2 = r * r;
    let mut y = ((((((((7.037_683_6e-2 * r - 1.151_461e-1) * r + 1.167_699_9e-1) * r
        - 1.242_014_1e-1)
        * r
        + 1.424_932_3e-1)
        * r
        - 1.666_805_8e-1)
        * r
        + 2.000_071_4e-1)
        * r
        - 2.499_999_4e-1)
        * r
        + 3.333_333e-1)
        * r
        * r2;
    y += -2.121_944_4e-4 * e;
    y += -0.5 * r2;
    r + y + 0.693_359_4 * e
}

/// The logistic function `1 / (1 + e^-z)`.
#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let relative = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(relative);
            x += 0.0137;
        }
        assert!(worst < 4e-7, "{worst}");
        assert!(exp(-200.0) < 1e-37 && exp(200.0) > 1e38);
    }

    #[test]
    fn ln_matches_std() {
        let mut worst = 0.0f64;
        let mut x = 1e-7f32;
        while x < 1e6 {
            let expected = (x as f64).ln();
            let error = (ln(x) as f64 - expected).abs() / expected.abs().max(1.0);
            worst = worst.max(error);
            x *= 1.0013;
        }
        assert!(worst < 4e-7, "{worst}");
        assert_eq!(ln(1.0), 0.0);
    }
}
