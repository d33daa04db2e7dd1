//! Dense products through cuBLAS, at the backend's precision: batches of them, and single
//! ones where cuBLASLt cannot compute them (`blas_lt.rs`).

use crate::{backend_error, CudaBackend, Precision};
use cudarc::cublas::result::gemm_strided_batched_ex;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use destiny_core::backend::GemmShape;
use destiny_core::error::Result;

/// Where one operand of a batch of products lies in its buffer: row-major from `offset` on,
/// `ld` values a stored row (before any transpose), each product's matrix `stride` values
/// after the one before.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Matrix {
    pub(crate) offset: usize,
    pub(crate) ld: usize,
    pub(crate) stride: usize,
}

impl Matrix {
    /// A matrix at the start of its buffer with `cols` stored columns, alone in its batch.
    fn whole(cols: usize) -> Self {
        Matrix {
            offset: 0,
            ld: cols,
            stride: 0,
        }
    }
}

/// `count` products of [`CudaBackend::batched_product`] and where their operands lie.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch {
    pub(crate) count: usize,
    pub(crate) a: Matrix,
    pub(crate) b: Matrix,
    pub(crate) c: Matrix,
}

impl CudaBackend {
    /// Row-major `c = alpha * op(a) * op(b) + beta * c`, the buffers checked against `shape`.
    pub(crate) fn dense_product(
        &self,
        shape: GemmShape,
        alpha: f32,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        beta: f32,
        c: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let GemmShape {
            m,
            n,
            k,
            transpose_a,
            transpose_b,
        } = shape;
        let batch = Batch {
            count: 1,
            a: Matrix::whole(if transpose_a { m } else { k }),
            b: Matrix::whole(if transpose_b { k } else { n }),
            c: Matrix::whole(n),
        };
        self.batched_product(shape, batch, alpha, a, b, beta, c)
    }

    /// `batch.count` row-major products `c_i = alpha * op(a_i) * op(b_i) + beta * c_i`, each
    /// of `shape`, the operands where `batch` says in buffers that hold them. With `beta`
    /// 0, `c` is not read (cuBLAS's promise), so it may hold anything.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn batched_product(
        &self,
        shape: GemmShape,
        batch: Batch,
        alpha: f32,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        beta: f32,
        c: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let GemmShape {
            m,
            n,
            k,
            transpose_a,
            transpose_b,
        } = shape;
        if m == 0 || n == 0 || batch.count == 0 {
            return Ok(());
        }
        // A single product goes through cuBLASLt's measured algorithms where it can.
        if batch.count == 1 && self.blas_lt_product(shape, batch, alpha, a, b, beta, c)? {
            return Ok(());
        }
        let operation = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let compute = match self.precision {
            Precision::Fp32 => cublasComputeType_t::CUBLAS_COMPUTE_32F,
            Precision::Tf32 => cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            Precision::Bf16 => cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF,
        };
        let at = |pointer: u64, matrix: Matrix| pointer + (matrix.offset * size_of::<f32>()) as u64;
        let (a_pointer, _a) = a.device_ptr(&self.stream);
        let (b_pointer, _b) = b.device_ptr(&self.stream);
        let (c_pointer, _c) = c.device_ptr_mut(&self.stream);
        let float = cudaDataType::CUDA_R_32F;
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
        // SAFETY: the buffers hold the matrices `batch` places (checked by `Backend`'s provided
        // methods or sized by the caller) and stay alive while the product is queued (their
        // memory is freed in stream order).
        unsafe {
            gemm_strided_batched_ex(
                *self.blas.handle(),
                operation(transpose_b),
                operation(transpose_a),
                n as i32,
                m as i32,
                k as i32,
                &alpha as *const f32 as *const _,
                at(b_pointer, batch.b) as *const _,
                float,
                batch.b.ld as i32,
                batch.b.stride as i64,
                at(a_pointer, batch.a) as *const _,
                float,
                batch.a.ld as i32,
                batch.a.stride as i64,
                &beta as *const f32 as *const _,
                at(c_pointer, batch.c) as *mut _,
                float,
                batch.c.ld as i32,
                batch.c.stride as i64,
                batch.count as i32,
                compute,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(backend_error)
    }
}
