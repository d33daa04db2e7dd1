//! The numbers the kernels take for activations, error functions, optimizers, column-sum
//! modes and output forms, and the parameters that travel with them. Each is a
//! `#[repr(i32)]` enum here, and [`header`] writes the same names and values as C enums
//! that `kernels.rs` prepends to every program, so the two sides cannot drift.

use cudarc::driver::DeviceRepr;
use destiny_core::backend::{OptimizerKind, Pooling};
use destiny_core::config::{Activation, DeltaBoost, ErrorFunction, MarginalParameters};
use std::fmt::Write;

/// Defines a `#[repr(i32)]` enum shared with the kernels. On the CUDA side the enum keeps
/// its name and each variant is `PREFIX_VARIANT` in upper snake case (`ErrorCode::L2Hinge`
/// is `ERROR_L2_HINGE`), so that both sides come from this one list.
macro_rules! codes {
    ($(#[$doc:meta])* $name:ident as $prefix:literal {
        $($(#[$variant_doc:meta])* $variant:ident = $value:literal,)*
    }) => {
        $(#[$doc])*
        #[repr(i32)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$variant_doc])* $variant = $value,)*
        }

        // SAFETY: `repr(i32)`: the kernels take it as an `int`.
        unsafe impl DeviceRepr for $name {}

        impl Code for $name {
            const NAME: &'static str = stringify!($name);
            const PREFIX: &'static str = $prefix;
            const ALL: &'static [(Self, &'static str)] = &[$(($name::$variant, stringify!($variant)),)*];
            fn value(self) -> i32 {
                self as i32
            }
        }
    };
}

/// An enum shared with the kernels.
pub(crate) trait Code: Copy + PartialEq + std::fmt::Debug + 'static {
    /// The enum's name, on both sides.
    const NAME: &'static str;
    /// What its variants' names start with on the CUDA side.
    const PREFIX: &'static str;
    /// Every variant with its Rust name.
    const ALL: &'static [(Self, &'static str)];
    /// The number the kernels see.
    fn value(self) -> i32;
}

/// A variant's name on the CUDA side: `PREFIX_` and the Rust name in upper snake case.
pub(crate) fn c_name(prefix: &str, variant: &str) -> String {
    let mut c = format!("{prefix}_");
    let mut previous = '_';
    for ch in variant.chars() {
        // A word starts at an upper-case letter after a lower-case one or a digit.
        if ch.is_ascii_uppercase() && (previous.is_ascii_lowercase() || previous.is_ascii_digit()) {
            c.push('_');
        }
        c.push(ch.to_ascii_uppercase());
        previous = ch;
    }
    c
}

codes! {
    /// Activations as `kernels/activation.cu` numbers them.
    ActivationCode as "ACTIVATION" {
        /// Not applied in the output pass: the activations were computed before it (the
        /// row-wise ones, whose derivative is applied after it).
        Precomputed = -1,
        Sigmoid = 0, Tanh = 1, RectifiedLinear = 2, LeakyRectifiedLinear = 3,
        ParametricRectifiedLinear = 4, ExponentialLinear = 5, ScaledExponentialLinear = 6,
        SoftPlus = 7, SoftSign = 8, Linear = 9, SoftMax = 10, ReluMax = 11, LinearMax = 12,
    }
}

codes! {
    /// Error functions as `kernels/output.cu` numbers them.
    ErrorCode as "ERROR" {
        L1 = 0, L2 = 1, CrossEntropy = 2, ScaledMarginalCrossEntropy = 3,
        DataScaledMarginalCrossEntropy = 4, Hinge = 5, L2Hinge = 6,
    }
}

codes! {
    /// Optimizers as `kernels/optimizer.cu` numbers them.
    OptimizerCode as "OPTIMIZER" {
        Sgd = 0, Momentum = 1, Nesterov = 2, AdaGrad = 3, RmsProp = 4, AdaDelta = 5, Adam = 6,
    }
}

codes! {
    /// What `column_sums` in `kernels/elementwise.cu` adds up per column.
    ColumnSumsMode as "COLUMN_SUMS" {
        /// `x`: bias gradients and column means.
        Sum = 0,
        /// `x * x`: squared column norms.
        Squares = 1,
        /// `[x <= 0] x * y`: PReLU slope gradients.
        Slope = 2,
    }
}

codes! {
    /// What `kernels/pooling.cu` takes of each window.
    PoolingCode as "POOLING" {
        Max = 0, Average = 1,
    }
}

codes! {
    /// How `kernels/output.cu` computes `dE/dz` (numbered as
    /// `destiny_core::math::error_function::OutputDeltaForm`; SoftMax has its own kernel).
    OutputForm as "OUTPUT" {
        /// Sigmoid with a cross entropy, differentiated together.
        FusedSigmoid = 0,
        /// The error's gradient times the activation's derivative.
        Chain = 2,
    }
}

/// The C enums of every code, prepended to each kernel program.
pub(crate) fn header() -> String {
    let mut text = String::from("// Generated from destiny-cuda/src/codes.rs.\n");
    enum_text::<ActivationCode>(&mut text);
    enum_text::<ErrorCode>(&mut text);
    enum_text::<OptimizerCode>(&mut text);
    enum_text::<ColumnSumsMode>(&mut text);
    enum_text::<OutputForm>(&mut text);
    enum_text::<PoolingCode>(&mut text);
    text
}

fn enum_text<T: Code>(text: &mut String) {
    let _ = write!(text, "enum {} {{", T::NAME);
    for (code, variant) in T::ALL {
        let _ = write!(text, " {} = {},", c_name(T::PREFIX, variant), code.value());
    }
    text.push_str(" };\n");
}

/// Kernel numbering of an activation and its parameters.
pub(crate) fn activation_code(activation: Activation) -> (ActivationCode, f32, f32) {
    use ActivationCode as C;
    match activation {
        Activation::Sigmoid => (C::Sigmoid, 0.0, 0.0),
        Activation::Tanh => (C::Tanh, 0.0, 0.0),
        Activation::RectifiedLinear => (C::RectifiedLinear, 0.0, 0.0),
        Activation::LeakyRectifiedLinear { slope } => (C::LeakyRectifiedLinear, slope, 0.0),
        Activation::ParametricRectifiedLinear { slope } => {
            (C::ParametricRectifiedLinear, slope, 0.0)
        }
        Activation::ExponentialLinear { alpha } => (C::ExponentialLinear, alpha, 0.0),
        Activation::ScaledExponentialLinear { alpha, lambda } => {
            (C::ScaledExponentialLinear, alpha, lambda)
        }
        Activation::SoftPlus => (C::SoftPlus, 0.0, 0.0),
        Activation::SoftSign => (C::SoftSign, 0.0, 0.0),
        Activation::Linear => (C::Linear, 0.0, 0.0),
        Activation::SoftMax => (C::SoftMax, 0.0, 0.0),
        Activation::ReluMax => (C::ReluMax, 0.0, 0.0),
        Activation::LinearMax => (C::LinearMax, 0.0, 0.0),
    }
}

/// Kernel numbering of an optimizer and its parameters `(p1, p2, epsilon)`.
pub(crate) fn optimizer_code(kind: OptimizerKind) -> (OptimizerCode, f32, f32, f32) {
    use OptimizerCode as C;
    match kind {
        OptimizerKind::Sgd => (C::Sgd, 0.0, 0.0, 0.0),
        OptimizerKind::Momentum { momentum } => (C::Momentum, momentum, 0.0, 0.0),
        OptimizerKind::Nesterov { momentum } => (C::Nesterov, momentum, 0.0, 0.0),
        OptimizerKind::AdaGrad { epsilon } => (C::AdaGrad, 0.0, 0.0, epsilon),
        OptimizerKind::RmsProp { rho, epsilon } => (C::RmsProp, rho, 0.0, epsilon),
        OptimizerKind::AdaDelta { rho, epsilon } => (C::AdaDelta, rho, 0.0, epsilon),
        OptimizerKind::Adam {
            beta1,
            beta2,
            epsilon,
        } => (C::Adam, beta1, beta2, epsilon),
    }
}

/// Kernel numbering of a pooling.
pub(crate) fn pooling_code(pooling: Pooling) -> PoolingCode {
    match pooling {
        Pooling::Max => PoolingCode::Max,
        Pooling::Average => PoolingCode::Average,
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
    form: OutputForm,
    error: ErrorCode,
    /// The element-wise activation applied in the pass, or `Precomputed`.
    activation: ActivationCode,
    p1: f32,
    p2: f32,
    margins: Margins,
    /// DeltaBoost's weights of units with a non-zero target and of the others.
    boost_one: f32,
    boost_zero: f32,
}

// SAFETY: plain `repr(C)` data (the codes are `repr(i32)`), laid out as `struct OutputUnit`
// in `kernels/output.cu`.
unsafe impl DeviceRepr for OutputUnit {}

impl OutputUnit {
    pub(crate) fn new(
        error: ErrorFunction,
        boost: DeltaBoost,
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
            ErrorFunction::L1 => (ErrorCode::L1, none),
            ErrorFunction::L2 => (ErrorCode::L2, none),
            ErrorFunction::CrossEntropy => (ErrorCode::CrossEntropy, none),
            ErrorFunction::ScaledMarginalCrossEntropy(m) => {
                (ErrorCode::ScaledMarginalCrossEntropy, margins(m))
            }
            ErrorFunction::DataScaledMarginalCrossEntropy(m) => {
                (ErrorCode::DataScaledMarginalCrossEntropy, margins(m))
            }
            ErrorFunction::Hinge => (ErrorCode::Hinge, none),
            ErrorFunction::L2Hinge => (ErrorCode::L2Hinge, none),
        };
        let (kind, p1, p2) = activation_code(activation);
        OutputUnit {
            form: if fused_sigmoid {
                OutputForm::FusedSigmoid
            } else {
                OutputForm::Chain
            },
            error,
            activation: if in_pass {
                kind
            } else {
                ActivationCode::Precomputed
            },
            p1,
            p2,
            margins,
            boost_one: boost.one,
            boost_zero: boost.zero,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use destiny_core::math::error_function::OutputDeltaForm;

    /// The value the generated header gives `name`.
    fn generated(header: &str, name: &str) -> i32 {
        let at = header
            .find(&format!(" {name} = "))
            .unwrap_or_else(|| panic!("{name} is not in the header"));
        let rest = &header[at + name.len() + 4..];
        rest[..rest.find(',').unwrap()].parse().unwrap()
    }

    fn check<T: Code>(header: &str, expected: &[(T, i32)]) {
        assert!(header.contains(&format!("enum {} {{", T::NAME)));
        assert_eq!(T::ALL.len(), expected.len(), "{}", T::NAME);
        for ((code, variant), (same, value)) in T::ALL.iter().zip(expected) {
            assert_eq!(code, same);
            assert_eq!(code.value(), *value, "{code:?}");
            let name = c_name(T::PREFIX, variant);
            assert_eq!(generated(header, &name), *value, "{name}");
        }
    }

    #[test]
    fn cuda_names_are_upper_snake_case() {
        assert_eq!(c_name("ERROR", "L2Hinge"), "ERROR_L2_HINGE");
        assert_eq!(c_name("ERROR", "L1"), "ERROR_L1");
        assert_eq!(
            c_name("ACTIVATION", "ScaledExponentialLinear"),
            "ACTIVATION_SCALED_EXPONENTIAL_LINEAR"
        );
    }

    #[test]
    fn header_gives_the_kernels_each_rust_value() {
        let header = header();
        use ActivationCode as A;
        #[rustfmt::skip]
        check(&header, &[
            (A::Precomputed, -1), (A::Sigmoid, 0), (A::Tanh, 1), (A::RectifiedLinear, 2),
            (A::LeakyRectifiedLinear, 3), (A::ParametricRectifiedLinear, 4),
            (A::ExponentialLinear, 5), (A::ScaledExponentialLinear, 6), (A::SoftPlus, 7),
            (A::SoftSign, 8), (A::Linear, 9), (A::SoftMax, 10), (A::ReluMax, 11),
            (A::LinearMax, 12),
        ]);
        use ErrorCode as E;
        #[rustfmt::skip]
        check(&header, &[
            (E::L1, 0), (E::L2, 1), (E::CrossEntropy, 2), (E::ScaledMarginalCrossEntropy, 3),
            (E::DataScaledMarginalCrossEntropy, 4), (E::Hinge, 5), (E::L2Hinge, 6),
        ]);
        use OptimizerCode as O;
        #[rustfmt::skip]
        check(&header, &[
            (O::Sgd, 0), (O::Momentum, 1), (O::Nesterov, 2), (O::AdaGrad, 3), (O::RmsProp, 4),
            (O::AdaDelta, 5), (O::Adam, 6),
        ]);
        use ColumnSumsMode as M;
        check(&header, &[(M::Sum, 0), (M::Squares, 1), (M::Slope, 2)]);
        check(&header, &[(PoolingCode::Max, 0), (PoolingCode::Average, 1)]);
        // The output forms keep core's numbering of `OutputDeltaForm`.
        check(
            &header,
            &[
                (
                    OutputForm::FusedSigmoid,
                    OutputDeltaForm::FusedSigmoid as i32,
                ),
                (OutputForm::Chain, OutputDeltaForm::Chain as i32),
            ],
        );
    }

    #[test]
    fn output_unit_is_laid_out_as_the_kernel_reads_it() {
        // struct OutputUnit { int form, error, activation; float p1, p2; Margins m;
        //                     float boost_one, boost_zero; }
        assert_eq!(std::mem::size_of::<OutputUnit>(), 11 * 4);
        assert_eq!(std::mem::align_of::<OutputUnit>(), 4);
    }
}
