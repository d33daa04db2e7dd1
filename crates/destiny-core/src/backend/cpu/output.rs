//! The fused output layer: error, loss and `dE/dz` in one pass, with sparse targets handled
//! without a dense target.

use super::elementwise;
use super::simd::{map_sum, monomorphic, StaticError, Unit};
use super::sparse::HostSparse;
use crate::config::{Activation, DeltaBoost, ErrorFunction};
use crate::math::error_function::{self as ef, OutputDeltaForm};
use rayon::prelude::*;

/// The target of one row: dense values, or sparse `(column, value)` entries of a wider
/// output whose columns from `first_column` on these are.
pub enum RowTarget<'a> {
    Dense(&'a [f32]),
    Sparse {
        entries: &'a HostSparse<'a>,
        first_column: usize,
    },
}

/// An output layer's bias, activation and slopes, on the host, and the boost of its error.
pub struct OutputUnits<'a> {
    pub activation: Activation,
    pub boost: DeltaBoost,
    pub bias: Option<&'a [f32]>,
    pub slope: Option<&'a [f32]>,
}

/// Writes `delta = dE/dz` for `rows x cols` outputs whose products without the bias are `z`,
/// and returns the summed error. Each row's biased sums and activations live in scratch
/// rows only.
pub fn output_delta(
    error: ErrorFunction,
    units: OutputUnits,
    rows: usize,
    cols: usize,
    z: &[f32],
    target: RowTarget,
    delta: &mut [f32],
) -> f32 {
    let (activation, boost) = (units.activation, units.boost);
    let form = ef::output_delta_form(activation, error);
    delta[..rows * cols]
        .par_chunks_mut(cols)
        .enumerate()
        .map_init(
            || (vec![0.0f32; cols], vec![0.0f32; cols]),
            |(z_row, a), (r, delta)| {
                z_row.copy_from_slice(&z[r * cols..(r + 1) * cols]);
                elementwise::activation_forward_row(activation, units.bias, z_row, units.slope, a);
                let (z, a) = (&z_row[..], &a[..]);
                let (dense, entries) = match &target {
                    RowTarget::Dense(t) => (Some(&t[r * cols..(r + 1) * cols]), 0..0),
                    RowTarget::Sparse { entries: x, .. } => {
                        (None, x.offsets[r] as usize..x.offsets[r + 1] as usize)
                    }
                };
                // Every unit first as if its target were 0 (or its dense target), then the stored
                // sparse targets in this block of columns corrected (boosted as non-zero ones).
                let entry = |e: usize| match &target {
                    RowTarget::Sparse {
                        entries: x,
                        first_column,
                    } => (x.indices[e] as usize)
                        .checked_sub(*first_column)
                        .filter(|&c| c < cols)
                        .map(|c| (c, x.values.map_or(1.0, |v| v[e]))),
                    RowTarget::Dense(_) => unreachable!("dense targets have no entries"),
                };
                let entries = entries.filter_map(entry);
                let loss = monomorphic!(error error, |unit| match form {
                    OutputDeltaForm::FusedSigmoid => {
                        let mut loss = map_sum(a, dense, delta, FusedSigmoid(unit, boost));
                        for (c, t) in entries {
                            delta[c] = boost.one * ef::fused_sigmoid_delta(error, a[c], t);
                            loss += boost.one * ef::error(error, a[c], t)
                                - boost.zero * ef::error(error, a[c], 0.0);
                        }
                        loss
                    }
                    OutputDeltaForm::SoftMaxCrossEntropy => {
                        let mut target_sum = 0.0;
                        let mut loss = 0.0;
                        // E = -sum w t ln a, dE/dz = a sum(w t) - w t, with w the boost.
                        for c in 0..cols {
                            let t = dense.map_or(0.0, |t| t[c]);
                            let w = boost.weight(t);
                            target_sum += w * t;
                            loss += w * ef::categorical_error(a[c], t);
                            delta[c] = -w * t;
                        }
                        for (c, t) in entries {
                            target_sum += boost.one * t;
                            loss += boost.one * ef::categorical_error(a[c], t);
                            delta[c] -= boost.one * t;
                        }
                        delta.iter_mut().zip(a).for_each(|(d, a)| *d += a * target_sum);
                        loss
                    }
                    OutputDeltaForm::Chain => {
                        let mut loss = map_sum(a, dense, delta, Chain(unit, boost));
                        for (c, t) in entries {
                            delta[c] = boost.one * ef::gradient(error, a[c], t);
                            loss += boost.one * ef::error(error, a[c], t)
                                - boost.zero * ef::error(error, a[c], 0.0);
                        }
                        elementwise::activation_backward_row(activation, z, a, units.slope, delta);
                        loss
                    }
                });
                loss as f64
            },
        )
        .sum::<f64>() as f32
}

/// `(dE/dz, E)` of a sigmoid unit with a cross entropy, boosted.
#[derive(Clone, Copy)]
struct FusedSigmoid<const K: u8>(StaticError<K>, DeltaBoost);

impl<const K: u8> Unit for FusedSigmoid<K> {
    #[inline(always)]
    fn apply(self, a: f32, t: f32) -> (f32, f32) {
        let w = self.1.weight(t);
        (
            w * ef::fused_sigmoid_delta(self.0.get(), a, t),
            w * ef::error(self.0.get(), a, t),
        )
    }
}

/// `(dE/da, E)` of a unit, boosted, before the activation's derivative.
#[derive(Clone, Copy)]
struct Chain<const K: u8>(StaticError<K>, DeltaBoost);

impl<const K: u8> Unit for Chain<K> {
    #[inline(always)]
    fn apply(self, a: f32, t: f32) -> (f32, f32) {
        let w = self.1.weight(t);
        (
            w * ef::gradient(self.0.get(), a, t),
            w * ef::error(self.0.get(), a, t),
        )
    }
}
