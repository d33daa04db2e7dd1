//! Error functions: the error of one output unit and its gradient.
//!
//! Logarithms use [`fast::ln`] so that loops over outputs vectorise.
//! `t` is the unit's target (1 or a data value for a stored sparse entry, 0 otherwise).

use super::fast;
use crate::config::{Activation, ErrorFunction};

/// Outputs are clamped this far inside (0, 1) before taking logarithms.
pub const LOG_EPSILON: f32 = 1e-7;

/// The error of one unit with output `a` and target `t`.
#[inline(always)]
pub fn error(error: ErrorFunction, a: f32, t: f32) -> f32 {
    match error {
        ErrorFunction::L1 => (a - t).abs(),
        ErrorFunction::L2 => 0.5 * (a - t) * (a - t),
        ErrorFunction::CrossEntropy => {
            -(weighted(t, || ln(clamp(a))) + weighted(1.0 - t, || ln(1.0 - clamp(a))))
        }
        ErrorFunction::ScaledMarginalCrossEntropy(m) => {
            let one = if a < m.one_target {
                -m.one_scale * weighted(t, || ln(clamp(a)))
            } else {
                0.0
            };
            let zero = if a > m.zero_target {
                -m.zero_scale * weighted(1.0 - t, || ln(1.0 - clamp(a)))
            } else {
                0.0
            };
            one + zero
        }
        ErrorFunction::DataScaledMarginalCrossEntropy(m) => {
            if t > 0.0 {
                if a < m.one_target {
                    -m.one_scale * t * ln(clamp(a))
                } else {
                    0.0
                }
            } else if a > m.zero_target {
                -m.zero_scale * ln(1.0 - clamp(a))
            } else {
                0.0
            }
        }
        ErrorFunction::Hinge => (1.0 - sign(t) * a).max(0.0),
        ErrorFunction::L2Hinge => {
            let margin = (1.0 - sign(t) * a).max(0.0);
            margin * margin
        }
    }
}

/// `dE/da` of one unit.
#[inline(always)]
pub fn gradient(error: ErrorFunction, a: f32, t: f32) -> f32 {
    match error {
        ErrorFunction::L1 => {
            if a > t {
                1.0
            } else if a < t {
                -1.0
            } else {
                0.0
            }
        }
        ErrorFunction::L2 => a - t,
        ErrorFunction::CrossEntropy => {
            let a = clamp(a);
            (a - t) / (a * (1.0 - a))
        }
        ErrorFunction::ScaledMarginalCrossEntropy(m) => {
            let one = if a < m.one_target {
                -m.one_scale * t / clamp(a)
            } else {
                0.0
            };
            let zero = if a > m.zero_target {
                m.zero_scale * (1.0 - t) / (1.0 - clamp(a))
            } else {
                0.0
            };
            one + zero
        }
        ErrorFunction::DataScaledMarginalCrossEntropy(m) => {
            if t > 0.0 {
                if a < m.one_target {
                    -m.one_scale * t / clamp(a)
                } else {
                    0.0
                }
            } else if a > m.zero_target {
                m.zero_scale / (1.0 - clamp(a))
            } else {
                0.0
            }
        }
        ErrorFunction::Hinge => {
            let y = sign(t);
            if 1.0 - y * a > 0.0 {
                -y
            } else {
                0.0
            }
        }
        ErrorFunction::L2Hinge => -2.0 * sign(t) * (1.0 - sign(t) * a).max(0.0),
    }
}

/// `dE/dz` directly, for the pairs where the activation's derivative cancels: sigmoid with
/// the cross entropies. Exact, and free of the division by `a (1 - a)`.
#[inline(always)]
pub fn fused_sigmoid_delta(error: ErrorFunction, a: f32, t: f32) -> f32 {
    match error {
        ErrorFunction::CrossEntropy => a - t,
        ErrorFunction::ScaledMarginalCrossEntropy(m) => {
            let one = if a < m.one_target {
                m.one_scale * t * (a - 1.0)
            } else {
                0.0
            };
            let zero = if a > m.zero_target {
                m.zero_scale * (1.0 - t) * a
            } else {
                0.0
            };
            one + zero
        }
        ErrorFunction::DataScaledMarginalCrossEntropy(m) => {
            if t > 0.0 {
                if a < m.one_target {
                    m.one_scale * t * (a - 1.0)
                } else {
                    0.0
                }
            } else if a > m.zero_target {
                m.zero_scale * a
            } else {
                0.0
            }
        }
        _ => unreachable!("no fused sigmoid delta for {error:?}"),
    }
}

/// How the output delta of an (activation, error) pair is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputDeltaForm {
    /// Sigmoid with a cross entropy: [`fused_sigmoid_delta`] per unit.
    FusedSigmoid,
    /// SoftMax with cross entropy: the categorical error `-sum t ln a`, whose
    /// `dE/dz_i = a_i * sum(t) - t_i`.
    SoftMaxCrossEntropy,
    /// Any other pair: [`gradient`] per unit, then the activation's derivative.
    Chain,
}

/// Chooses the form for a pair.
pub fn output_delta_form(activation: Activation, error: ErrorFunction) -> OutputDeltaForm {
    use ErrorFunction::*;
    match (activation, error) {
        (
            Activation::Sigmoid,
            CrossEntropy | ScaledMarginalCrossEntropy(_) | DataScaledMarginalCrossEntropy(_),
        ) => OutputDeltaForm::FusedSigmoid,
        (Activation::SoftMax, CrossEntropy) => OutputDeltaForm::SoftMaxCrossEntropy,
        _ => OutputDeltaForm::Chain,
    }
}

/// The categorical cross entropy term of one SoftMax unit: `-t ln a`.
#[inline(always)]
pub fn categorical_error(a: f32, t: f32) -> f32 {
    if t == 0.0 {
        0.0
    } else {
        -t * ln(clamp(a))
    }
}

/// `weight * term()`, and exactly 0 without evaluating `term` when the weight is 0: the
/// bulk of a sparse target is zeros, and skipping their logarithm halves the work.
#[inline(always)]
fn weighted(weight: f32, term: impl FnOnce() -> f32) -> f32 {
    if weight == 0.0 {
        0.0
    } else {
        weight * term()
    }
}

#[inline(always)]
fn ln(x: f32) -> f32 {
    fast::ln(x)
}

#[inline(always)]
fn clamp(a: f32) -> f32 {
    a.clamp(LOG_EPSILON, 1.0 - LOG_EPSILON)
}

/// Hinge labels: a positive target is +1, anything else -1.
#[inline(always)]
fn sign(t: f32) -> f32 {
    if t > 0.0 {
        1.0
    } else {
        -1.0
    }
}
