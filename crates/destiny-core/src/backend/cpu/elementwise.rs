//! Operations over dense matrices one element or one row at a time.

use crate::backend::random;
use crate::config::Activation;
use crate::math::activation as act;
use rayon::prelude::*;

/// Rows per parallel task: enough work per task to outweigh scheduling.
fn rows_per_task(cols: usize) -> usize {
    (16_384 / cols.max(1)).max(1)
}

/// `a = f(z)` over `rows x cols`.
pub fn activation_forward(
    activation: Activation,
    cols: usize,
    z: &[f32],
    slope: Option<&[f32]>,
    a: &mut [f32],
) {
    let chunk = rows_per_task(cols) * cols;
    a.par_chunks_mut(chunk)
        .zip(z.par_chunks(chunk))
        .for_each(|(a, z)| {
            for (a, z) in a.chunks_mut(cols).zip(z.chunks(cols)) {
                if act::is_row_wise(activation) {
                    act::forward_row(activation, z, a);
                } else {
                    for c in 0..cols {
                        a[c] = act::forward(activation, z[c], slope.map_or(0.0, |s| s[c]));
                    }
                }
            }
        });
}

/// `delta = delta * f'(z)` (row-wise Jacobian product for the row-wise activations).
pub fn activation_backward(
    activation: Activation,
    cols: usize,
    z: &[f32],
    a: &[f32],
    slope: Option<&[f32]>,
    delta: &mut [f32],
) {
    let chunk = rows_per_task(cols) * cols;
    delta
        .par_chunks_mut(chunk)
        .zip(z.par_chunks(chunk).zip(a.par_chunks(chunk)))
        .for_each(|(delta, (z, a))| {
            for ((d, z), a) in delta
                .chunks_mut(cols)
                .zip(z.chunks(cols))
                .zip(a.chunks(cols))
            {
                if act::is_row_wise(activation) {
                    act::backward_row(activation, z, a, d);
                } else {
                    for c in 0..cols {
                        d[c] *=
                            act::derivative(activation, z[c], a[c], slope.map_or(0.0, |s| s[c]));
                    }
                }
            }
        });
}

/// Applies `per_column(c, column values)` to each column of a `rows x cols` matrix, in
/// parallel over columns (each column summed in row order, so results are reproducible).
fn column_sums(rows: usize, cols: usize, values: impl Fn(usize, usize) -> f32 + Sync) -> Vec<f32> {
    (0..cols)
        .into_par_iter()
        .map(|c| (0..rows).map(|r| values(r, c)).sum())
        .collect()
}

/// `grad[c] += alpha * sum_r delta[r, c]`.
pub fn bias_gradient(rows: usize, cols: usize, delta: &[f32], alpha: f32, grad: &mut [f32]) {
    let sums = column_sums(rows, cols, |r, c| delta[r * cols + c]);
    grad.iter_mut().zip(sums).for_each(|(g, s)| *g += alpha * s);
}

/// `grad[c] += alpha * sum_r [z < 0] z * delta`.
pub fn slope_gradient(
    rows: usize,
    cols: usize,
    z: &[f32],
    delta: &[f32],
    alpha: f32,
    grad: &mut [f32],
) {
    let sums = column_sums(rows, cols, |r, c| {
        let z = z[r * cols + c];
        if z > 0.0 {
            0.0
        } else {
            z * delta[r * cols + c]
        }
    });
    grad.iter_mut().zip(sums).for_each(|(g, s)| *g += alpha * s);
}

/// Adds `bias` to every row.
pub fn add_bias(cols: usize, bias: &[f32], out: &mut [f32]) {
    out.par_chunks_mut(cols)
        .for_each(|row| row.iter_mut().zip(bias).for_each(|(o, b)| *o += b));
}

/// Inverted dropout with the counter-based mask of [`random::uniform`].
pub fn dropout(p: f32, seed: u64, x: &mut [f32]) {
    let keep_scale = 1.0 / (1.0 - p);
    x.par_chunks_mut(16_384).enumerate().for_each(|(chunk, x)| {
        let base = (chunk * 16_384) as u64;
        for (i, x) in x.iter_mut().enumerate() {
            *x = if random::uniform(seed, base + i as u64) < p {
                0.0
            } else {
                *x * keep_scale
            };
        }
    });
}

/// The sparseness penalty of a hidden layer; returns the penalty to add to the loss.
pub fn sparseness_penalty(
    rows: usize,
    cols: usize,
    a: &[f32],
    p: f32,
    beta: f32,
    delta: &mut [f32],
) -> f32 {
    const EPSILON: f32 = 1e-7;
    let inverse_rows = 1.0 / rows as f32;
    let means: Vec<f32> = column_sums(rows, cols, |r, c| a[r * cols + c])
        .into_iter()
        .map(|s| (s * inverse_rows).clamp(EPSILON, 1.0 - EPSILON))
        .collect();
    let gradient: Vec<f32> = means
        .iter()
        .map(|&rho| beta * (-p / rho + (1.0 - p) / (1.0 - rho)))
        .collect();
    delta[..rows * cols]
        .par_chunks_mut(cols)
        .for_each(|row| row.iter_mut().zip(&gradient).for_each(|(d, g)| *d += g));
    let divergence: f32 = means
        .iter()
        .map(|&rho| {
            let mut kl = 0.0;
            if p > 0.0 {
                kl += p * (p / rho).ln();
            }
            if p < 1.0 {
                kl += (1.0 - p) * ((1.0 - p) / (1.0 - rho)).ln();
            }
            kl
        })
        .sum();
    rows as f32 * beta * divergence
}
