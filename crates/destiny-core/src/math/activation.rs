//! Activation functions and their derivatives.

use super::fast;
use crate::config::Activation;

/// True for activations that couple a whole row (each output depends on every input).
pub fn is_row_wise(activation: Activation) -> bool {
    matches!(
        activation,
        Activation::SoftMax | Activation::ReluMax | Activation::LinearMax
    )
}

/// `f(z)` for an element-wise activation; `slope` is the unit's PReLU slope.
#[inline(always)]
pub fn forward(activation: Activation, z: f32, slope: f32) -> f32 {
    match activation {
        Activation::Sigmoid => sigmoid(z),
        Activation::Tanh => z.tanh(),
        Activation::RectifiedLinear => z.max(0.0),
        Activation::LeakyRectifiedLinear { slope } => leaky(z, slope),
        Activation::ParametricRectifiedLinear { .. } => leaky(z, slope),
        Activation::ExponentialLinear { alpha } => elu(z, alpha),
        Activation::ScaledExponentialLinear { alpha, lambda } => lambda * elu(z, alpha),
        // Stable log(1 + e^z).
        Activation::SoftPlus => z.max(0.0) + (-z.abs()).exp().ln_1p(),
        Activation::SoftSign => z / (1.0 + z.abs()),
        Activation::Linear => z,
        Activation::SoftMax | Activation::ReluMax | Activation::LinearMax => {
            unreachable!("row-wise activation evaluated element-wise")
        }
    }
}

/// `f'(z)` for an element-wise activation, given `z` and `a = f(z)`.
#[inline(always)]
pub fn derivative(activation: Activation, z: f32, a: f32, slope: f32) -> f32 {
    match activation {
        Activation::Sigmoid => a * (1.0 - a),
        Activation::Tanh => 1.0 - a * a,
        Activation::RectifiedLinear => step(z),
        Activation::LeakyRectifiedLinear { slope } => leaky_derivative(z, slope),
        Activation::ParametricRectifiedLinear { .. } => leaky_derivative(z, slope),
        Activation::ExponentialLinear { alpha } => {
            if z > 0.0 {
                1.0
            } else {
                a + alpha
            }
        }
        Activation::ScaledExponentialLinear { alpha, lambda } => {
            if z > 0.0 {
                lambda
            } else {
                a + lambda * alpha
            }
        }
        Activation::SoftPlus => sigmoid(z),
        Activation::SoftSign => {
            let d = 1.0 + z.abs();
            1.0 / (d * d)
        }
        Activation::Linear => 1.0,
        Activation::SoftMax | Activation::ReluMax | Activation::LinearMax => {
            unreachable!("row-wise activation differentiated element-wise")
        }
    }
}

/// `a = f(z)` for one row of a row-wise activation.
pub fn forward_row(activation: Activation, z: &[f32], a: &mut [f32]) {
    match activation {
        Activation::SoftMax => {
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for (a, &z) in a.iter_mut().zip(z) {
                *a = fast::exp(z - max);
                sum += *a;
            }
            let inverse = 1.0 / sum;
            a.iter_mut().for_each(|a| *a *= inverse);
        }
        Activation::ReluMax => {
            let max = z.iter().copied().fold(0.0f32, f32::max);
            let inverse = if max > 0.0 { 1.0 / max } else { 0.0 };
            for (a, &z) in a.iter_mut().zip(z) {
                *a = z.max(0.0) * inverse;
            }
        }
        Activation::LinearMax => {
            let max = z.iter().fold(0.0f32, |m, z| m.max(z.abs()));
            let inverse = if max > 0.0 { 1.0 / max } else { 0.0 };
            for (a, &z) in a.iter_mut().zip(z) {
                *a = z * inverse;
            }
        }
        _ => unreachable!("element-wise activation evaluated row-wise"),
    }
}

/// Turns one row of `delta` from `dE/da` into `dE/dz` for a row-wise activation.
pub fn backward_row(activation: Activation, z: &[f32], a: &[f32], delta: &mut [f32]) {
    let dot: f32 = delta.iter().zip(a).map(|(g, a)| g * a).sum();
    match activation {
        Activation::SoftMax => {
            for (d, &a) in delta.iter_mut().zip(a) {
                *d = a * (*d - dot);
            }
        }
        // a_i = r_i / M with M the row's largest r: every a_i moves with z_i (where it is
        // active) and all of them move, through M, with the largest unit m.
        Activation::ReluMax | Activation::LinearMax => {
            let relu = activation == Activation::ReluMax;
            let (m, max) = z.iter().enumerate().fold((0, 0.0f32), |(bi, bv), (i, &z)| {
                let v = if relu { z.max(0.0) } else { z.abs() };
                if v > bv {
                    (i, v)
                } else {
                    (bi, bv)
                }
            });
            if max <= 0.0 {
                delta.iter_mut().for_each(|d| *d = 0.0);
                return;
            }
            let inverse = 1.0 / max;
            for (d, &z) in delta.iter_mut().zip(z) {
                *d *= if relu { step(z) } else { 1.0 } * inverse;
            }
            let sign = if z[m] < 0.0 { -1.0 } else { 1.0 };
            delta[m] -= sign * dot * inverse;
        }
        _ => unreachable!("element-wise activation differentiated row-wise"),
    }
}

#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    fast::sigmoid(z)
}

#[inline(always)]
fn step(z: f32) -> f32 {
    if z > 0.0 {
        1.0
    } else {
        0.0
    }
}

#[inline(always)]
fn leaky(z: f32, slope: f32) -> f32 {
    if z > 0.0 {
        z
    } else {
        slope * z
    }
}

#[inline(always)]
fn leaky_derivative(z: f32, slope: f32) -> f32 {
    if z > 0.0 {
        1.0
    } else {
        slope
    }
}

#[inline(always)]
fn elu(z: f32, alpha: f32) -> f32 {
    if z > 0.0 {
        z
    } else {
        alpha * z.exp_m1()
    }
}
