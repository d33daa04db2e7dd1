//! How activations and error functions are numbered in the kernels, and the parameters that
//! travel with them.

use cudarc::driver::DeviceRepr;
use destiny_core::config::{Activation, ErrorFunction, MarginalParameters};

/// Kernel numbering of activations (see `kernels/activation.cu`) and their parameters.
pub(crate) fn activation_code(activation: Activation) -> (i32, f32, f32) {
    match activation {
        Activation::Sigmoid => (0, 0.0, 0.0),
        Activation::Tanh => (1, 0.0, 0.0),
        Activation::RectifiedLinear => (2, 0.0, 0.0),
        Activation::LeakyRectifiedLinear { slope } => (3, slope, 0.0),
        Activation::ParametricRectifiedLinear { slope } => (4, slope, 0.0),
        Activation::ExponentialLinear { alpha } => (5, alpha, 0.0),
        Activation::ScaledExponentialLinear { alpha, lambda } => (6, alpha, lambda),
        Activation::SoftPlus => (7, 0.0, 0.0),
        Activation::SoftSign => (8, 0.0, 0.0),
        Activation::Linear => (9, 0.0, 0.0),
        Activation::SoftMax => (10, 0.0, 0.0),
        Activation::ReluMax => (11, 0.0, 0.0),
        Activation::LinearMax => (12, 0.0, 0.0),
    }
}

/// The margins of the marginal cross entropies.
#[repr(C)]
#[derive(Clone, Copy)]
struct Margins {
    one_target: f32,
    zero_target: f32,
    one_scale: f32,
    zero_scale: f32,
}

/// An output unit as `kernels/output.cu` reads it, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct OutputUnit {
    /// 0: sigmoid with a cross entropy, differentiated together; 2: the error's gradient
    /// times the activation's derivative.
    form: i32,
    /// Kernel numbering of the error function.
    error: i32,
    /// The element-wise activation applied in the pass, or -1 when the activations are
    /// computed beforehand (row-wise activations).
    activation: i32,
    p1: f32,
    p2: f32,
    margins: Margins,
}

// SAFETY: plain `repr(C)` data, laid out as `struct OutputUnit` in `kernels/output.cu`.
unsafe impl DeviceRepr for OutputUnit {}

impl OutputUnit {
    pub(crate) fn new(
        error: ErrorFunction,
        activation: Activation,
        fused_sigmoid: bool,
        in_pass: bool,
    ) -> Self {
        let margins = |m: MarginalParameters| Margins {
            one_target: m.one_target,
            zero_target: m.zero_target,
            one_scale: m.one_scale,
            zero_scale: m.zero_scale,
        };
        let none = margins(MarginalParameters::default());
        let (error, margins) = match error {
            ErrorFunction::L1 => (0, none),
            ErrorFunction::L2 => (1, none),
            ErrorFunction::CrossEntropy => (2, none),
            ErrorFunction::ScaledMarginalCrossEntropy(m) => (3, margins(m)),
            ErrorFunction::DataScaledMarginalCrossEntropy(m) => (4, margins(m)),
            ErrorFunction::Hinge => (5, none),
            ErrorFunction::L2Hinge => (6, none),
        };
        let (kind, p1, p2) = activation_code(activation);
        OutputUnit {
            form: if fused_sigmoid { 0 } else { 2 },
            error,
            activation: if in_pass { kind } else { -1 },
            p1,
            p2,
            margins,
        }
    }
}
