//! Operations over dense matrices one element or one row at a time.

use super::simd::monomorphic;
use crate::backend::{random, ColumnWindow};
use crate::config::Activation;
use crate::math::activation as act;
use rayon::prelude::*;

/// Rows per parallel task: enough work per task to outweigh scheduling.
fn rows_per_task(cols: usize) -> usize {
    (16_384 / cols.max(1)).max(1)
}

/// Elements per parallel task of [`fill`] and [`axpy`]: a buffer of one task or less is
/// filled on the calling thread.
const ELEMENTS_PER_TASK: usize = 1 << 16;

/// `x = value` everywhere, in parallel over a large buffer: the gradients zeroed before
/// every batch hold a wide layer's whole weights (megabytes), which one thread would zero
/// while the others wait.
pub fn fill(x: &mut [f32], value: f32) {
    if x.len() <= ELEMENTS_PER_TASK {
        x.fill(value);
    } else {
        x.par_chunks_mut(ELEMENTS_PER_TASK)
            .for_each(|x| x.fill(value));
    }
}

/// `y += alpha * x`, in parallel over large buffers as [`fill`].
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let add = |(y, x): (&mut [f32], &[f32])| {
        y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
    };
    if y.len() <= ELEMENTS_PER_TASK {
        add((y, x));
    } else {
        y.par_chunks_mut(ELEMENTS_PER_TASK)
            .zip(x.par_chunks(ELEMENTS_PER_TASK))
            .for_each(add);
    }
}

/// `z += bias` on every row, then `a = f(z)`, over `rows x cols`.
pub fn activation_forward(
    activation: Activation,
    cols: usize,
    bias: Option<&[f32]>,
    z: &mut [f32],
    slope: Option<&[f32]>,
    a: &mut [f32],
) {
    let chunk = rows_per_task(cols) * cols;
    a.par_chunks_mut(chunk)
        .zip(z.par_chunks_mut(chunk))
        .for_each(|(a, z)| {
            for (a, z) in a.chunks_mut(cols).zip(z.chunks_mut(cols)) {
                activation_forward_row(activation, bias, z, slope, a);
            }
        });
}

/// [`activation_forward`] for one row.
pub fn activation_forward_row(
    activation: Activation,
    bias: Option<&[f32]>,
    z: &mut [f32],
    slope: Option<&[f32]>,
    a: &mut [f32],
) {
    if let Some(bias) = bias {
        z.iter_mut().zip(bias).for_each(|(z, b)| *z += b);
    }
    if act::is_row_wise(activation) {
        act::forward_row(activation, z, a);
        return;
    }
    monomorphic!(activation activation, |f| match slope {
        Some(slope) => {
            for ((a, &z), &s) in a.iter_mut().zip(z.iter()).zip(slope) {
                *a = act::forward(f.get(), z, s);
            }
        }
        None => {
            for (a, &z) in a.iter_mut().zip(z.iter()) {
                *a = act::forward(f.get(), z, 0.0);
            }
        }
    })
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
                activation_backward_row(activation, z, a, slope, d);
            }
        });
}

/// [`activation_backward`] for one row.
pub fn activation_backward_row(
    activation: Activation,
    z: &[f32],
    a: &[f32],
    slope: Option<&[f32]>,
    d: &mut [f32],
) {
    if act::is_row_wise(activation) {
        act::backward_row(activation, z, a, d);
        return;
    }
    monomorphic!(activation activation, |f| match slope {
        Some(slope) => {
            for (((d, &z), &a), &s) in d.iter_mut().zip(z).zip(a).zip(slope) {
                *d *= act::derivative(f.get(), z, a, s);
            }
        }
        None => {
            for ((d, &z), &a) in d.iter_mut().zip(z).zip(a) {
                *d *= act::derivative(f.get(), z, a, 0.0);
            }
        }
    })
}

/// Sums the columns of a `rows x cols` matrix, `add_row(r, sums)` adding row `r` into
/// `sums`. Rows are summed in blocks in parallel and the blocks added in order, so results
/// do not depend on scheduling.
fn column_sums(rows: usize, cols: usize, add_row: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    // Fixed-size blocks: few partial vectors, and the same sums whatever the thread count.
    let block = 64;
    let partials: Vec<Vec<f32>> = (0..rows.div_ceil(block))
        .into_par_iter()
        .map(|b| {
            let mut sums = vec![0.0f32; cols];
            for r in b * block..((b + 1) * block).min(rows) {
                add_row(r, &mut sums);
            }
            sums
        })
        .collect();
    let mut sums = vec![0.0f32; cols];
    for partial in partials {
        sums.iter_mut().zip(partial).for_each(|(s, p)| *s += p);
    }
    sums
}

/// `grad[c] += alpha * sum_r delta[r, c]`.
pub fn bias_gradient(rows: usize, cols: usize, delta: &[f32], alpha: f32, grad: &mut [f32]) {
    let sums = column_sums(rows, cols, |r, sums| {
        sums.iter_mut()
            .zip(&delta[r * cols..(r + 1) * cols])
            .for_each(|(s, d)| *s += d)
    });
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
    let sums = column_sums(rows, cols, |r, sums| {
        let (z, delta) = (
            &z[r * cols..(r + 1) * cols],
            &delta[r * cols..(r + 1) * cols],
        );
        for ((s, &z), &d) in sums.iter_mut().zip(z).zip(delta) {
            *s += if z > 0.0 { 0.0 } else { z * d };
        }
    });
    grad.iter_mut().zip(sums).for_each(|(g, s)| *g += alpha * s);
}

/// Inverted dropout over the rows of `cols` values in `x`, with the counter-based mask of
/// [`random::uniform`] indexed as in the whole matrix that `window` places them in.
pub fn dropout(cols: usize, window: ColumnWindow, p: f32, seed: u64, x: &mut [f32]) {
    let keep_scale = 1.0 / (1.0 - p);
    x.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(r, row)| {
            let base = (r * window.total + window.offset) as u64;
            for (c, x) in row.iter_mut().enumerate() {
                *x = if random::uniform(seed, base + c as u64) < p {
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
    let means: Vec<f32> = column_sums(rows, cols, |r, sums| {
        sums.iter_mut()
            .zip(&a[r * cols..(r + 1) * cols])
            .for_each(|(s, a)| *s += a)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_adds_buffers_of_many_tasks() {
        for len in [10, 3 * ELEMENTS_PER_TASK + 5] {
            let x: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let mut y = vec![1.0; len];
            axpy(0.5, &x, &mut y);
            assert!(y.iter().zip(&x).all(|(y, x)| *y == 1.0 + 0.5 * x));
            fill(&mut y, -2.0);
            assert!(y.iter().all(|&y| y == -2.0));
        }
    }
}
