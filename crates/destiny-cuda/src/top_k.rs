//! Top-K of each row on the GPU, excluding what each row already has.

use crate::{address, backend_error, check, CudaBackend, THREADS};
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use destiny_core::backend::{SparseBatch, TopKBatch};
use destiny_core::error::Result;

/// Largest K (the winners are sorted in shared memory).
const MAX_K: usize = 1024;
/// Shared memory the kernels declare statically (histogram, counters), kept free.
const STATIC_SHARED_BYTES: usize = 2048;
/// Threads per row of the variant that keeps the row in shared memory (two rows per
/// multiprocessor, as `__launch_bounds__` in `top_k.cu` says).
const CACHED_THREADS: u32 = 512;

impl CudaBackend {
    pub(crate) fn top_k_rows(
        &self,
        rows: usize,
        cols: usize,
        scores: &CudaSlice<f32>,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
    ) -> Result<TopKBatch<Self>> {
        check("top-k scores", scores, rows * cols)?;
        if k > MAX_K {
            return Err(backend_error(format!(
                "top-k on the GPU takes K up to {MAX_K}, not {k}"
            )));
        }
        if let Some(x) = exclude {
            if x.rows != rows || x.width != cols {
                return Err(destiny_core::error::Error::Dimension(format!(
                    "exclusions of {} x {} for scores of {rows} x {cols}",
                    x.rows, x.width
                )));
            }
        }
        if rows == 0 || k == 0 {
            return Ok(TopKBatch {
                columns: self.upload_slice::<u32>(&[])?,
                scores: self.upload_slice::<f32>(&[])?,
            });
        }
        let padded = k.next_power_of_two().max(2);
        let available = self.max_shared_bytes.saturating_sub(STATIC_SHARED_BYTES);
        let cached = cols.next_multiple_of(2) * 4 + padded * 8;
        let bitmap = cols.div_ceil(32).next_multiple_of(2) * 4 + padded * 8;
        let (kernel, shared, threads) = if cached <= available {
            ("top_k_cached", cached, CACHED_THREADS)
        } else if bitmap <= available {
            ("top_k", bitmap, THREADS)
        } else {
            return Err(backend_error(format!(
                "top-k on the GPU: {cols} columns need {bitmap} bytes of shared memory, the GPU has {available}"
            )));
        };
        let function = self.function(kernel);
        function
            .set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                shared as i32,
            )
            .map_err(backend_error)?;
        // SAFETY: the kernel writes every one of the `rows * k` outputs.
        let mut columns = unsafe { self.stream.alloc::<u32>(rows * k) }.map_err(backend_error)?;
        let mut best = unsafe { self.stream.alloc::<f32>(rows * k) }.map_err(backend_error)?;
        let config = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        launch!(
            self,
            kernel,
            config,
            &(cols as u32),
            &(k as u32),
            &(padded as u32),
            scores,
            &address(exclude.map(|x| &x.offsets)),
            &address(exclude.map(|x| &x.indices)),
            &mut columns,
            &mut best
        )?;
        Ok(TopKBatch {
            columns,
            scores: best,
        })
    }
}
