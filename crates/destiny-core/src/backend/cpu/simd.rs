//! Vectorised loops: monomorphic dispatch on activations and error functions, and float
//! reductions that vectorise.

use crate::config::{Activation, ErrorFunction, MarginalParameters};

/// An activation whose variant is a compile-time constant `K` (its parameters stay values),
/// so that `get()` folds to one variant and closures over it stay small enough to inline.
#[derive(Clone, Copy)]
pub struct StaticActivation<const K: u8>(pub f32, pub f32);

impl<const K: u8> StaticActivation<K> {
    #[inline(always)]
    pub fn get(self) -> Activation {
        match K {
            0 => Activation::Sigmoid,
            1 => Activation::Tanh,
            2 => Activation::RectifiedLinear,
            3 => Activation::LeakyRectifiedLinear { slope: self.0 },
            4 => Activation::ParametricRectifiedLinear { slope: self.0 },
            5 => Activation::ExponentialLinear { alpha: self.0 },
            6 => Activation::ScaledExponentialLinear {
                alpha: self.0,
                lambda: self.1,
            },
            7 => Activation::SoftPlus,
            8 => Activation::SoftSign,
            _ => Activation::Linear,
        }
    }
}

/// An error function whose variant is the compile-time constant `K`.
#[derive(Clone, Copy)]
pub struct StaticError<const K: u8>(pub MarginalParameters);

impl<const K: u8> StaticError<K> {
    #[inline(always)]
    pub fn get(self) -> ErrorFunction {
        match K {
            0 => ErrorFunction::L1,
            1 => ErrorFunction::L2,
            2 => ErrorFunction::CrossEntropy,
            3 => ErrorFunction::ScaledMarginalCrossEntropy(self.0),
            4 => ErrorFunction::DataScaledMarginalCrossEntropy(self.0),
            5 => ErrorFunction::Hinge,
            _ => ErrorFunction::L2Hinge,
        }
    }
}

/// Runs `$body` with `$name` bound to the [`StaticActivation`] or [`StaticError`] of
/// `$value`, once per variant, so that each copy of `$body` is compiled for one variant.
/// Row-wise activations are not element-wise and must be handled before.
macro_rules! monomorphic {
    (activation $value:expr, |$name:ident| $body:expr) => {{
        use $crate::backend::cpu::simd::StaticActivation as S;
        use $crate::config::Activation as A;
        match $value {
            A::Sigmoid => {
                let $name = S::<0>(0.0, 0.0);
                $body
            }
            A::Tanh => {
                let $name = S::<1>(0.0, 0.0);
                $body
            }
            A::RectifiedLinear => {
                let $name = S::<2>(0.0, 0.0);
                $body
            }
            A::LeakyRectifiedLinear { slope } => {
                let $name = S::<3>(slope, 0.0);
                $body
            }
            A::ParametricRectifiedLinear { slope } => {
                let $name = S::<4>(slope, 0.0);
                $body
            }
            A::ExponentialLinear { alpha } => {
                let $name = S::<5>(alpha, 0.0);
                $body
            }
            A::ScaledExponentialLinear { alpha, lambda } => {
                let $name = S::<6>(alpha, lambda);
                $body
            }
            A::SoftPlus => {
                let $name = S::<7>(0.0, 0.0);
                $body
            }
            A::SoftSign => {
                let $name = S::<8>(0.0, 0.0);
                $body
            }
            A::Linear => {
                let $name = S::<9>(0.0, 0.0);
                $body
            }
            A::SoftMax | A::ReluMax | A::LinearMax => {
                unreachable!("row-wise activation in an element-wise loop")
            }
        }
    }};
    (error $value:expr, |$name:ident| $body:expr) => {{
        use $crate::backend::cpu::simd::StaticError as S;
        use $crate::config::{ErrorFunction as E, MarginalParameters as M};
        match $value {
            E::L1 => {
                let $name = S::<0>(M::default());
                $body
            }
            E::L2 => {
                let $name = S::<1>(M::default());
                $body
            }
            E::CrossEntropy => {
                let $name = S::<2>(M::default());
                $body
            }
            E::ScaledMarginalCrossEntropy(m) => {
                let $name = S::<3>(m);
                $body
            }
            E::DataScaledMarginalCrossEntropy(m) => {
                let $name = S::<4>(m);
                $body
            }
            E::Hinge => {
                let $name = S::<5>(M::default());
                $body
            }
            E::L2Hinge => {
                let $name = S::<6>(M::default());
                $body
            }
        }
    }};
}
pub(crate) use monomorphic;

/// Lanes of the partial sums that let a float reduction vectorise without reassociation.
pub const LANES: usize = 16;

/// A function of two values giving two values, always inlined into the loops that use it
/// (closures are inlined only when the compiler finds them small enough).
pub trait Unit: Copy {
    fn apply(self, x: f32, y: f32) -> (f32, f32);
}

/// For each `c`, writes `out[c]` and sums `e` where `(out[c], e) = unit(x[c], y[c])`, with
/// `y` all zero when absent. Arrays of `LANES` keep the loop free of bounds checks and the
/// sum in `LANES` partial sums, so that it vectorises.
#[inline(always)]
pub fn map_sum(x: &[f32], y: Option<&[f32]>, out: &mut [f32], unit: impl Unit) -> f32 {
    let out = &mut out[..x.len()];
    let mut partial = [0.0f32; LANES];
    let (x_blocks, x_tail) = x.as_chunks::<LANES>();
    let (out_blocks, out_tail) = out.as_chunks_mut::<LANES>();
    let mut tail = 0.0f32;
    match y {
        Some(y) => {
            let (y_blocks, y_tail) = y[..x.len()].as_chunks::<LANES>();
            for ((x, y), out) in x_blocks.iter().zip(y_blocks).zip(out_blocks.iter_mut()) {
                for lane in 0..LANES {
                    let (o, e) = unit.apply(x[lane], y[lane]);
                    out[lane] = o;
                    partial[lane] += e;
                }
            }
            for ((x, y), out) in x_tail.iter().zip(y_tail).zip(out_tail.iter_mut()) {
                let (o, e) = unit.apply(*x, *y);
                *out = o;
                tail += e;
            }
        }
        None => {
            for (x, out) in x_blocks.iter().zip(out_blocks.iter_mut()) {
                for lane in 0..LANES {
                    let (o, e) = unit.apply(x[lane], 0.0);
                    out[lane] = o;
                    partial[lane] += e;
                }
            }
            for (x, out) in x_tail.iter().zip(out_tail.iter_mut()) {
                let (o, e) = unit.apply(*x, 0.0);
                *out = o;
                tail += e;
            }
        }
    }
    partial.iter().sum::<f32>() + tail
}
