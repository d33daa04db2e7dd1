//! Dense products through cuBLAS, at the backend's precision.

use crate::{backend_error, CudaBackend, Precision};
use cudarc::cublas::result::gemm_ex;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use destiny_core::backend::GemmShape;
use destiny_core::error::Result;

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
        if m == 0 || n == 0 {
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
        let (a_pointer, _a) = a.device_ptr(&self.stream);
        let (b_pointer, _b) = b.device_ptr(&self.stream);
        let (c_pointer, _c) = c.device_ptr_mut(&self.stream);
        let float = cudaDataType::CUDA_R_32F;
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
        // SAFETY: the buffers hold the shapes `Backend::gemm` checked and stay alive while the product
        // is queued (their memory is freed in stream order).
        unsafe {
            gemm_ex(
                *self.blas.handle(),
                operation(transpose_b),
                operation(transpose_a),
                n as i32,
                m as i32,
                k as i32,
                &alpha as *const f32 as *const _,
                b_pointer as *const _,
                float,
                if transpose_b { k } else { n } as i32,
                a_pointer as *const _,
                float,
                if transpose_a { m } else { k } as i32,
                &beta as *const f32 as *const _,
                c_pointer as *mut _,
                float,
                n as i32,
                compute,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(backend_error)
    }
}
