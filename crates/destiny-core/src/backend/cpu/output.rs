//! The fused output layer: error, loss and `dE/dz` in one pass, with sparse targets handled
//! without a dense target.

use super::elementwise;
use super::sparse::HostSparse;
use crate::config::{Activation, ErrorFunction};
use crate::math::activation as act;
use crate::math::error_function::{self as ef, OutputDeltaForm};
use rayon::prelude::*;

/// The target of one row: dense values, or sparse `(column, value)` entries.
pub enum RowTarget<'a> {
    Dense(&'a [f32]),
    Sparse(&'a HostSparse<'a>),
}

/// Writes `delta = dE/dz` for `rows x cols` outputs and returns the summed error.
#[allow(clippy::too_many_arguments)]
pub fn output_delta(
    error: ErrorFunction,
    activation: Activation,
    rows: usize,
    cols: usize,
    z: &[f32],
    a: &[f32],
    target: RowTarget,
    delta: &mut [f32],
) -> f32 {
    let form = ef::output_delta_form(activation, error);
    delta[..rows * cols]
        .par_chunks_mut(cols)
        .enumerate()
        .map(|(r, delta)| {
            let a = &a[r * cols..(r + 1) * cols];
            let z = &z[r * cols..(r + 1) * cols];
            // Every unit first as if its target were 0, then the stored targets corrected.
            let (dense, entries): (Option<&[f32]>, Vec<(usize, f32)>) = match &target {
                RowTarget::Dense(t) => (Some(&t[r * cols..(r + 1) * cols]), Vec::new()),
                RowTarget::Sparse(x) => {
                    let (start, end) = (x.offsets[r] as usize, x.offsets[r + 1] as usize);
                    let entries = (start..end)
                        .map(|e| (x.indices[e] as usize, x.values.map_or(1.0, |v| v[e])))
                        .collect();
                    (None, entries)
                }
            };
            let target_of = |c: usize| dense.map_or(0.0, |t| t[c]);
            let mut loss = 0.0f32;
            match form {
                OutputDeltaForm::FusedSigmoid => {
                    for c in 0..cols {
                        let t = target_of(c);
                        delta[c] = ef::fused_sigmoid_delta(error, a[c], t);
                        loss += ef::error(error, a[c], t);
                    }
                    for &(c, t) in &entries {
                        delta[c] = ef::fused_sigmoid_delta(error, a[c], t);
                        loss += ef::error(error, a[c], t) - ef::error(error, a[c], 0.0);
                    }
                }
                OutputDeltaForm::SoftMaxCrossEntropy => {
                    let mut target_sum = 0.0;
                    for c in 0..cols {
                        let t = target_of(c);
                        target_sum += t;
                        loss += ef::categorical_error(a[c], t);
                        delta[c] = -t;
                    }
                    for &(c, t) in &entries {
                        target_sum += t;
                        loss += ef::categorical_error(a[c], t);
                        delta[c] -= t;
                    }
                    delta
                        .iter_mut()
                        .zip(a)
                        .for_each(|(d, a)| *d += a * target_sum);
                }
                OutputDeltaForm::Chain => {
                    for c in 0..cols {
                        let t = target_of(c);
                        delta[c] = ef::gradient(error, a[c], t);
                        loss += ef::error(error, a[c], t);
                    }
                    for &(c, t) in &entries {
                        delta[c] = ef::gradient(error, a[c], t);
                        loss += ef::error(error, a[c], t) - ef::error(error, a[c], 0.0);
                    }
                    if act::is_row_wise(activation) {
                        act::backward_row(activation, z, a, delta);
                    } else {
                        elementwise::activation_backward(activation, cols, z, a, None, delta);
                    }
                }
            }
            loss as f64
        })
        .sum::<f64>() as f32
}
