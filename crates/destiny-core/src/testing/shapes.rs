//! The case that every backend refuses every wrong shape with the same
//! [`Error::Dimension`], before it computes anything, and accepts the right ones.

use crate::backend::{
    Backend, ColumnWindow, GemmShape, OptimizerKind, OptimizerStep, OutputLayer, Shape,
    SparseBatch, Strided, Target,
};
use crate::config::{Activation, DeltaBoost, ErrorFunction};
use crate::data::SparseRows;
use crate::error::{Error, Result};

/// The message of a buffer of `len` values where `needed` are.
fn short(what: &str, len: usize, needed: usize) -> String {
    format!("{what}: buffer holds {len} values, {needed} needed")
}

/// Asserts that `result` is a dimension error saying exactly `expected`.
fn refused<T>(result: Result<T>, expected: &str) {
    match result {
        Err(Error::Dimension(message)) => assert_eq!(message, expected),
        Err(other) => panic!("expected the dimension error '{expected}', got '{other}'"),
        Ok(_) => panic!("expected the dimension error '{expected}', got success"),
    }
}

/// Asserts that a call of the right shapes succeeds.
fn accepted<T>(what: &str, result: Result<T>) {
    if let Err(error) = result {
        panic!("{what} of the right shapes failed: {error}");
    }
}

/// Sparse rows of `width` columns, one entry in each of `rows` rows.
fn sparse<B: Backend>(backend: &B, rows: usize, width: usize) -> SparseBatch<B> {
    let entries: Vec<Vec<(u32, f32)>> =
        (0..rows).map(|r| vec![((r % width) as u32, 1.0)]).collect();
    let rows = SparseRows::from_rows(width, &entries).expect("sparse rows");
    backend.upload_sparse(&rows).expect("upload")
}

/// Every operation of [`Backend`] given each operand one value too short (or sparse rows of
/// the wrong shape) returns the `Error::Dimension` that names it, the same on every
/// backend; the same call with the right shapes succeeds, so the checks refuse no more than
/// they must.
pub fn wrong_shapes_are_dimension_errors<B: Backend>(make: &dyn Fn() -> B) {
    let backend = make();
    let b = &backend;
    let zeros = |len: usize| b.zeros(len).expect("zeros");
    let shape = Shape::new(2, 3);
    let len = shape.len();
    memory_operations(b, &zeros);
    products(b, &zeros);

    let (mut grad, units) = (zeros(3), zeros(3));
    accepted(
        "bias gradient",
        b.bias_gradient(shape, &zeros(len), 1.0, &mut grad),
    );
    refused(
        b.bias_gradient(shape, &zeros(len - 1), 1.0, &mut grad),
        &short("bias gradient delta", len - 1, len),
    );
    refused(
        b.bias_gradient(shape, &zeros(len), 1.0, &mut zeros(2)),
        &short("bias gradient", 2, 3),
    );
    accepted(
        "slope gradient",
        b.slope_gradient(shape, &zeros(len), &zeros(len), 1.0, &mut grad),
    );
    refused(
        b.slope_gradient(shape, &zeros(len), &zeros(len), 1.0, &mut zeros(2)),
        &short("slope gradient", 2, 3),
    );

    let prelu = Activation::ParametricRectifiedLinear { slope: 0.1 };
    let (mut z, mut a) = (zeros(len), zeros(len));
    accepted(
        "activation forward",
        b.activation_forward(prelu, shape, Some(&units), &mut z, Some(&units), &mut a),
    );
    refused(
        b.activation_forward(prelu, shape, None, &mut zeros(len - 1), None, &mut a),
        &short("activation input", len - 1, len),
    );
    refused(
        b.activation_forward(prelu, shape, None, &mut z, None, &mut zeros(len - 1)),
        &short("activation output", len - 1, len),
    );
    refused(
        b.activation_forward(prelu, shape, Some(&zeros(2)), &mut z, None, &mut a),
        &short("bias", 2, 3),
    );
    refused(
        b.activation_forward(prelu, shape, None, &mut z, Some(&zeros(2)), &mut a),
        &short("slopes", 2, 3),
    );
    let mut delta = zeros(len);
    accepted(
        "activation backward",
        b.activation_backward(prelu, shape, &z, &a, Some(&units), &mut delta),
    );
    refused(
        b.activation_backward(prelu, shape, &zeros(len - 1), &a, None, &mut delta),
        &short("activation input", len - 1, len),
    );
    refused(
        b.activation_backward(prelu, shape, &z, &a, None, &mut zeros(len - 1)),
        &short("activation delta", len - 1, len),
    );

    output_layers(b, &zeros, shape);

    let mut loss = zeros(1);
    accepted(
        "sparseness penalty",
        b.sparseness_penalty(shape, &zeros(len), 0.1, 1.0, &mut delta, &mut loss),
    );
    refused(
        b.sparseness_penalty(shape, &zeros(len - 1), 0.1, 1.0, &mut delta, &mut loss),
        &short("sparseness penalty activations", len - 1, len),
    );
    refused(
        b.sparseness_penalty(shape, &a, 0.1, 1.0, &mut zeros(len - 1), &mut loss),
        &short("sparseness penalty delta", len - 1, len),
    );
    let window = ColumnWindow::whole(3);
    accepted("dropout", b.dropout(shape, window, 0.5, 1, &mut delta));
    refused(
        b.dropout(shape, window, 0.5, 1, &mut zeros(len - 1)),
        &short("dropout", len - 1, len),
    );
    // A 2 x 3 block at column 1 of a 4-wide matrix reaches value 1 + 4 + 3 = 8.
    let wide = Strided {
        offset: 1,
        stride: 4,
    };
    let dense = Strided {
        offset: 0,
        stride: 3,
    };
    let mut target = zeros(8);
    accepted(
        "copy",
        b.copy_matrix(shape, &zeros(len), dense, &mut target, wide, true),
    );
    refused(
        b.copy_matrix(shape, &zeros(7), wide, &mut zeros(len), dense, false),
        &short("copy source", 7, 8),
    );
    refused(
        b.copy_matrix(shape, &zeros(len), dense, &mut zeros(7), wide, false),
        &short("copy target", 7, 8),
    );
    optimizer_steps(b, &zeros, len);
    let mut weights = zeros(len);
    accepted("max norm", b.max_norm(shape, 1.0, &mut weights));
    refused(
        b.max_norm(shape, 1.0, &mut zeros(len - 1)),
        &short("max norm", len - 1, len),
    );
    let scores = zeros(len);
    let exclude = sparse(b, 2, 3);
    accepted(
        "top-k",
        b.top_k(shape, &scores, 2, Some(&exclude), 0)
            .and_then(|top| b.read_top_k(top)),
    );
    refused(
        b.top_k(shape, &zeros(len - 1), 2, None, 0),
        &short("top-k scores", len - 1, len),
    );
    refused(
        b.top_k(shape, &scores, 2, Some(&sparse(b, 3, 3)), 0),
        "exclusions of 3 x 3 for a matrix of 2 x 3 from column 0",
    );
    refused(
        b.top_k(shape, &scores, 2, Some(&exclude), 1),
        "exclusions of 2 x 3 for a matrix of 2 x 3 from column 1",
    );
    let sigmoid = Activation::Sigmoid;
    let bias = zeros(3);
    accepted(
        "top-k of activations",
        b.top_k_activated(
            sigmoid,
            shape,
            Some(&bias),
            &mut zeros(len),
            None,
            &mut zeros(len),
            2,
            Some(&exclude),
            0,
        )
        .and_then(|top| b.read_top_k(top)),
    );
    refused(
        b.top_k_activated(
            sigmoid,
            shape,
            None,
            &mut zeros(len - 1),
            None,
            &mut zeros(len),
            2,
            None,
            0,
        ),
        &short("top-k products", len - 1, len),
    );
    refused(
        b.top_k_activated(
            sigmoid,
            shape,
            Some(&zeros(2)),
            &mut zeros(len),
            None,
            &mut zeros(len),
            2,
            None,
            0,
        ),
        "bias: buffer holds 2 values, 3 needed",
    );
}

/// `write`, `fill`, `axpy` and `gather_sparse`.
fn memory_operations<B: Backend>(b: &B, zeros: &dyn Fn(usize) -> B::Buffer) {
    let mut buffer = zeros(3);
    accepted("write", b.write(&[1.0; 3], &mut buffer));
    refused(b.write(&[1.0; 4], &mut buffer), &short("write", 3, 4));
    accepted("fill", b.fill(&mut buffer, 3, 1.0));
    refused(b.fill(&mut buffer, 4, 1.0), &short("fill", 3, 4));
    accepted("axpy", b.axpy(3, 1.0, &zeros(3), &mut buffer));
    refused(
        b.axpy(3, 1.0, &zeros(2), &mut buffer),
        &short("axpy x", 2, 3),
    );
    refused(
        b.axpy(3, 1.0, &zeros(3), &mut zeros(2)),
        &short("axpy y", 2, 3),
    );
    let rows =
        SparseRows::from_rows(4, &[vec![(0, 1.0), (2, 1.0)], vec![(1, 1.0)]]).expect("sparse rows");
    let entries = b.upload_entries(&rows).expect("entries");
    accepted(
        "gather",
        b.gather_sparse(&entries, 4, &[0, 2, 3], &[0, 2], None),
    );
    refused(
        b.gather_sparse(&entries, 4, &[0, 2, 3], &[0], None),
        "gather: 1 sources for 2 rows",
    );
    refused(
        b.gather_sparse(&entries, 4, &[0, 2, 3], &[0, 3], None),
        "gather: row 1 reads entries 3..4 of 3",
    );
}

/// The dense product and both sparse products.
fn products<B: Backend>(b: &B, zeros: &dyn Fn(usize) -> B::Buffer) {
    let gemm = GemmShape {
        m: 2,
        n: 3,
        k: 4,
        transpose_a: false,
        transpose_b: false,
    };
    let mut c = zeros(6);
    accepted(
        "gemm",
        b.gemm(gemm, 1.0, &zeros(8), &zeros(12), 0.0, &mut c),
    );
    refused(
        b.gemm(gemm, 1.0, &zeros(7), &zeros(12), 0.0, &mut c),
        &short("gemm A", 7, 8),
    );
    refused(
        b.gemm(gemm, 1.0, &zeros(8), &zeros(11), 0.0, &mut c),
        &short("gemm B", 11, 12),
    );
    refused(
        b.gemm(gemm, 1.0, &zeros(8), &zeros(12), 0.0, &mut zeros(5)),
        &short("gemm C", 5, 6),
    );
    // Two sparse rows of 4 columns into 3 units.
    let x = sparse(b, 2, 4);
    accepted(
        "sparse product",
        b.sparse_matmul(&x, &zeros(12), 3, 0.0, &mut c),
    );
    refused(
        b.sparse_matmul(&x, &zeros(11), 3, 0.0, &mut c),
        &short("sparse product weights", 11, 12),
    );
    refused(
        b.sparse_matmul(&x, &zeros(12), 3, 0.0, &mut zeros(5)),
        &short("sparse product output", 5, 6),
    );
    let mut grad = zeros(12);
    accepted(
        "sparse gradient",
        b.sparse_transpose_matmul(&x, &zeros(6), 3, 1.0, &mut grad),
    );
    refused(
        b.sparse_transpose_matmul(&x, &zeros(5), 3, 1.0, &mut grad),
        &short("sparse gradient delta", 5, 6),
    );
    refused(
        b.sparse_transpose_matmul(&x, &zeros(6), 3, 1.0, &mut zeros(11)),
        &short("sparse gradient", 11, 12),
    );
}

/// The fused output pass, with dense and sparse targets.
fn output_layers<B: Backend>(b: &B, zeros: &dyn Fn(usize) -> B::Buffer, shape: Shape) {
    let len = shape.len();
    let (bias, short_bias) = (zeros(3), zeros(2));
    let output = |bias| OutputLayer {
        error: ErrorFunction::CrossEntropy,
        boost: DeltaBoost::default(),
        activation: Activation::Sigmoid,
        bias,
        slope: None,
    };
    let (z, dense, mut delta, mut loss) = (zeros(len), zeros(len), zeros(len), zeros(1));
    let targets = sparse(b, 2, 4);
    accepted(
        "output delta",
        b.output_delta(
            output(Some(&bias)),
            shape,
            &z,
            Target::Dense(&dense),
            &mut delta,
            &mut loss,
        ),
    );
    let at = |first_column| Target::Sparse {
        entries: &targets,
        first_column,
    };
    accepted(
        "output delta",
        b.output_delta(output(None), shape, &z, at(1), &mut delta, &mut loss),
    );
    refused(
        b.output_delta(
            output(None),
            shape,
            &zeros(len - 1),
            at(0),
            &mut delta,
            &mut loss,
        ),
        &short("output sums", len - 1, len),
    );
    refused(
        b.output_delta(
            output(None),
            shape,
            &z,
            at(0),
            &mut zeros(len - 1),
            &mut loss,
        ),
        &short("output delta", len - 1, len),
    );
    refused(
        b.output_delta(
            output(Some(&short_bias)),
            shape,
            &z,
            at(0),
            &mut delta,
            &mut loss,
        ),
        &short("output bias", 2, 3),
    );
    let short_target = zeros(len - 1);
    refused(
        b.output_delta(
            output(None),
            shape,
            &z,
            Target::Dense(&short_target),
            &mut delta,
            &mut loss,
        ),
        &short("dense target", len - 1, len),
    );
    refused(
        b.output_delta(output(None), shape, &z, at(2), &mut delta, &mut loss),
        "sparse target of 2 x 4 for a matrix of 2 x 3 from column 2",
    );
    let three_rows = sparse(b, 3, 4);
    let other_rows = Target::Sparse {
        entries: &three_rows,
        first_column: 0,
    };
    refused(
        b.output_delta(output(None), shape, &z, other_rows, &mut delta, &mut loss),
        "sparse target of 3 x 4 for a matrix of 2 x 3 from column 0",
    );
}

/// Optimizer steps with short parameters, gradients and state.
fn optimizer_steps<B: Backend>(b: &B, zeros: &dyn Fn(usize) -> B::Buffer, len: usize) {
    let kind = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
    };
    let step = OptimizerStep {
        kind,
        learning_rate: 0.01,
        l1: 0.0,
        l2: 0.0,
        step: 1,
    };
    let (mut params, grad) = (zeros(len), zeros(len));
    let mut state = [zeros(len), zeros(len)];
    accepted(
        "optimizer step",
        b.optimizer_step(&step, len, &mut params, &grad, &mut state),
    );
    refused(
        b.optimizer_step(&step, len, &mut zeros(len - 1), &grad, &mut state),
        &short("optimizer parameters", len - 1, len),
    );
    refused(
        b.optimizer_step(&step, len, &mut params, &zeros(len - 1), &mut state),
        &short("optimizer gradient", len - 1, len),
    );
    let needs = format!("optimizer {kind:?} needs 2 state buffers of {len} values");
    refused(
        b.optimizer_step(&step, len, &mut params, &grad, &mut [zeros(len)]),
        &needs,
    );
    refused(
        b.optimizer_step(&step, len, &mut params, &grad, &mut [zeros(len), zeros(1)]),
        &needs,
    );
}
