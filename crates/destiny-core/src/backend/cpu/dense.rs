//! Dense products through the `gemm` crate.

use crate::backend::GemmShape;
use gemm::Parallelism;

/// `c = alpha * op(a) * op(b) + beta * c`, all row-major.
pub fn gemm(
    threads: usize,
    shape: GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    let GemmShape {
        m,
        n,
        k,
        transpose_a,
        transpose_b,
    } = shape;
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm: buffers too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    // Row-major (rows x cols) storage: element (i, j) at i * cols + j.
    let (a_row_stride, a_col_stride) = if transpose_a {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_row_stride, b_col_stride) = if transpose_b {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    let parallelism = if threads > 1 && m * n * k >= 64 * 64 * 64 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // The gemm crate computes dst = alpha * dst + beta * lhs * rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            a_col_stride,
            a_row_stride,
            b.as_ptr(),
            b_col_stride,
            b_row_stride,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}
