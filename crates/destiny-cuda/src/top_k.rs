//! Top-K of each row on the GPU, excluding what each row already has.

use crate::kernels::Kernel;
use crate::{address, backend_error, CudaBackend, THREADS};
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{
    result, CudaEvent, CudaSlice, DevicePtr, LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use destiny_core::backend::{Shape, SparseBatch};
use destiny_core::error::Result;

/// Largest K (the winners are sorted in shared memory).
const MAX_K: usize = 1024;
/// Shared memory the kernels declare statically (histogram, maxima, counters), kept free.
const STATIC_SHARED_BYTES: usize = 4096;
/// Keys the filter of `top_k_cached` may keep before it falls back to the radix select: for
/// K = 100 it typically keeps little more than K.
const FILTERED_CANDIDATES: usize = 256;
/// Threads per row of the variant that keeps the row in shared memory (two rows per
/// multiprocessor, as `__launch_bounds__` in `top_k.cu` says).
const CACHED_THREADS: u32 = 512;

impl CudaBackend {
    /// [`Backend::top_k`](destiny_core::backend::Backend::top_k) on this GPU, after its
    /// checks.
    pub(crate) fn top_k_rows(
        &self,
        shape: Shape,
        scores: &CudaSlice<f32>,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<PendingTopK> {
        let Shape { rows, cols } = shape;
        if k > MAX_K {
            return Err(backend_error(format!(
                "top-k on the GPU takes K up to {MAX_K}, not {k}"
            )));
        }
        if rows == 0 || k == 0 {
            return Ok(PendingTopK {
                len: 0,
                buffers: None,
            });
        }
        let padded = k.next_power_of_two().max(2);
        let available = self.max_shared_bytes.saturating_sub(STATIC_SHARED_BYTES);
        // Room for the keys that pass the filter of `top_k_cached` (a power of two).
        let filtered = padded.max(FILTERED_CANDIDATES);
        let cached = cols.next_multiple_of(2) * 4 + filtered * 8;
        let bitmap = cols.div_ceil(32).next_multiple_of(2) * 4 + padded * 8;
        let (kernel, shared, threads, capacity) = if cached <= available {
            (Kernel::TopKCached, cached, CACHED_THREADS, filtered)
        } else if bitmap <= available {
            (Kernel::TopK, bitmap, THREADS, padded)
        } else {
            return Err(backend_error(format!(
                "top-k on the GPU: {cols} columns need {bitmap} bytes of shared memory, the GPU has {available}"
            )));
        };
        let function = self.function(kernel)?;
        function
            .set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                shared as i32,
            )
            .map_err(backend_error)?;
        // The kernel writes every one of the `rows * k` outputs.
        let mut columns = self.allocate::<u32>(rows * k)?;
        let mut best = self.allocate::<f32>(rows * k)?;
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
            &(capacity as u32),
            scores,
            &address(exclude.map(|x| &x.offsets)),
            &address(exclude.map(|x| &x.indices)),
            &(first_column as u32),
            &mut columns,
            &mut best
        )?;
        // Queued right behind the selection, so the copy does not wait for later batches.
        let len = rows * k;
        let mut buffers = self
            .read_back
            .lock()
            .expect("a read-back user panicked")
            .take(self, len)?;
        let (columns_address, _c) = columns.device_ptr(&self.stream);
        let (best_address, _b) = best.device_ptr(&self.stream);
        let host_columns = &mut buffers.columns.as_mut_slice().map_err(backend_error)?[..len];
        // SAFETY: both sides hold `len` elements; the device buffers are freed in stream
        // order, after the copies.
        unsafe {
            result::memcpy_dtoh_async(host_columns, columns_address, self.stream.cu_stream())
        }
        .map_err(backend_error)?;
        let host_scores = &mut buffers.scores.as_mut_slice().map_err(backend_error)?[..len];
        unsafe { result::memcpy_dtoh_async(host_scores, best_address, self.stream.cu_stream()) }
            .map_err(backend_error)?;
        buffers.copied.record(&self.stream).map_err(backend_error)?;
        Ok(PendingTopK {
            len,
            buffers: Some(buffers),
        })
    }

    pub(crate) fn read_top_k_rows(&self, top: PendingTopK) -> Result<(Vec<u32>, Vec<f32>)> {
        let Some(mut buffers) = top.buffers else {
            return Ok((Vec::new(), Vec::new()));
        };
        // Waits for this batch's copies only.
        buffers.copied.synchronize().map_err(backend_error)?;
        let result = (
            buffers.columns.as_mut_slice().map_err(backend_error)?[..top.len].to_vec(),
            buffers.scores.as_mut_slice().map_err(backend_error)?[..top.len].to_vec(),
        );
        self.read_back
            .lock()
            .expect("a read-back user panicked")
            .free
            .push(buffers);
        Ok(result)
    }
}

/// Top-K results being copied to page-locked host memory.
pub struct PendingTopK {
    len: usize,
    /// Absent when there is nothing to copy.
    buffers: Option<ReadBackBuffers>,
}

/// Page-locked host buffers for one batch's results, and the event recorded after the
/// copies into them.
struct ReadBackBuffers {
    columns: PinnedHostSlice<u32>,
    scores: PinnedHostSlice<f32>,
    copied: CudaEvent,
}

/// Read-back buffers reused from batch to batch (allocating page-locked memory is slow).
#[derive(Default)]
pub(crate) struct ReadBack {
    free: Vec<ReadBackBuffers>,
}

impl ReadBack {
    /// Free buffers for `len` results, or new ones.
    fn take(&mut self, gpu: &CudaBackend, len: usize) -> Result<ReadBackBuffers> {
        if let Some(i) = self.free.iter().position(|b| b.columns.len() >= len) {
            return Ok(self.free.swap_remove(i));
        }
        let context = gpu.stream.context();
        // SAFETY: read only after a copy into them has completed. Not write-combined: the
        // host reads them.
        let (columns, scores) = unsafe {
            (
                context.alloc_pinned_with_flags::<u32>(len, 0),
                context.alloc_pinned_with_flags::<f32>(len, 0),
            )
        };
        Ok(ReadBackBuffers {
            columns: columns.map_err(backend_error)?,
            scores: scores.map_err(backend_error)?,
            copied: context.new_event(None).map_err(backend_error)?,
        })
    }
}
