//! Top-K of each row on the GPU, excluding what each row already has.

use crate::{address, backend_error, check, CudaBackend, THREADS};
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PinnedHostSlice, PushKernelArg};
use destiny_core::backend::SparseBatch;
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
    ) -> Result<PendingTopK> {
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
            return Ok(PendingTopK {
                len: 0,
                buffers: None,
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
        // Queued right behind the selection, so the copy does not wait for later batches.
        let mut read_back = self.read_back.lock().expect("a read-back user panicked");
        let mut host_columns = read_back.take_columns(self, rows * k)?;
        let mut host_scores = read_back.take_scores(self, rows * k)?;
        self.stream
            .memcpy_dtoh(&columns, &mut host_columns)
            .map_err(backend_error)?;
        self.stream
            .memcpy_dtoh(&best, &mut host_scores)
            .map_err(backend_error)?;
        Ok(PendingTopK {
            len: rows * k,
            buffers: Some((host_columns, host_scores)),
        })
    }

    pub(crate) fn read_top_k_rows(&self, top: PendingTopK) -> Result<(Vec<u32>, Vec<f32>)> {
        let Some((columns, scores)) = top.buffers else {
            return Ok((Vec::new(), Vec::new()));
        };
        // Each waits for the copy into it only.
        let result = (
            columns.as_slice().map_err(backend_error)?[..top.len].to_vec(),
            scores.as_slice().map_err(backend_error)?[..top.len].to_vec(),
        );
        let mut read_back = self.read_back.lock().expect("a read-back user panicked");
        read_back.columns.push(columns);
        read_back.scores.push(scores);
        Ok(result)
    }
}

/// Top-K results being copied to page-locked host memory.
pub struct PendingTopK {
    len: usize,
    /// Absent when there is nothing to copy.
    buffers: Option<(PinnedHostSlice<u32>, PinnedHostSlice<f32>)>,
}

/// Page-locked host buffers that top-K results are copied into, reused from batch to batch
/// (allocating page-locked memory is slow).
#[derive(Default)]
pub(crate) struct ReadBack {
    columns: Vec<PinnedHostSlice<u32>>,
    scores: Vec<PinnedHostSlice<f32>>,
}

/// A buffer of at least `len` from `pool`, or a new one.
fn take<T: DeviceRepr>(
    pool: &mut Vec<PinnedHostSlice<T>>,
    gpu: &CudaBackend,
    len: usize,
) -> Result<PinnedHostSlice<T>> {
    match pool.iter().position(|b| b.len() >= len) {
        Some(i) => Ok(pool.swap_remove(i)),
        // SAFETY: read only after a copy into it has completed. Not write-combined: the
        // host reads it.
        None => unsafe { gpu.stream.context().alloc_pinned_with_flags::<T>(len, 0) }
            .map_err(backend_error),
    }
}

impl ReadBack {
    fn take_columns(&mut self, gpu: &CudaBackend, len: usize) -> Result<PinnedHostSlice<u32>> {
        take(&mut self.columns, gpu, len)
    }

    fn take_scores(&mut self, gpu: &CudaBackend, len: usize) -> Result<PinnedHostSlice<f32>> {
        take(&mut self.scores, gpu, len)
    }
}
