//! Top-K of each row on the GPU, excluding what each row already has.

use crate::codes::ActivationCode;
use crate::kernels::Kernel;
use crate::{address, backend_error, CudaBackend};
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
/// Keys the filter may keep before it falls back to the radix select: for K = 100 it
/// typically keeps little more than K.
const FILTERED_CANDIDATES: usize = 256;
/// Threads of the block that selects a whole row (two blocks a multiprocessor, as
/// `__launch_bounds__` in `top_k.cu` says).
const ROW_THREADS: u32 = 512;
/// Threads of a block that selects a tile of candidates in a later round of a wide row:
/// four smaller blocks a multiprocessor hide each other's waits better than two large ones.
const TILE_THREADS: u32 = 256;
/// Columns and threads of a first-round block of a wide row (`WIDE_COLUMNS` and
/// `WIDE_THREADS` in `top_k_wide.cu`).
const WIDE_COLUMNS: usize = 8192;
const WIDE_THREADS: u32 = 512;

/// An output layer's products read as `f(z + bias)`, the activations they stand for.
pub(crate) struct Activated<'a> {
    pub kind: ActivationCode,
    pub p1: f32,
    pub p2: f32,
    pub bias: Option<&'a CudaSlice<f32>>,
    pub slope: Option<&'a CudaSlice<f32>>,
}

impl CudaBackend {
    /// [`Backend::top_k`](destiny_core::backend::Backend::top_k) on this GPU, after its
    /// checks, of the scores or of the activations the products `scores` stand for.
    pub(crate) fn top_k_rows(
        &self,
        shape: Shape,
        scores: &CudaSlice<f32>,
        activated: Option<Activated<'_>>,
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
        // Room for the keys that pass the filter (a power of two).
        let capacity = padded.max(FILTERED_CANDIDATES);
        let shared = |width: usize| width.next_multiple_of(2) * 4 + capacity * 8;
        // Tiles of wide rows: the widest power of two that leaves room for four blocks a
        // multiprocessor, and several times K, so that each round narrows the rows.
        let tile = prev_power_of_two((available / 4).saturating_sub(capacity * 8) / 4);
        if tile < 4 * k {
            return Err(backend_error(format!(
                "top-k on the GPU: K = {k} needs more shared memory than the GPU's {available} bytes"
            )));
        }
        self.function(Kernel::TopK)?
            .set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                available as i32,
            )
            .map_err(backend_error)?;
        // Rounds narrow each row to candidates until a row fits one block; the exclusions and
        // the activation apply in the first round, which reads the columns themselves. A
        // row too wide for one block starts with `top_k_wide`, which passes on a superset of
        // each tile's K best in a region of twice K slots, unsorted.
        let mut width = cols;
        let mut candidates: Option<(CudaSlice<u32>, CudaSlice<f32>)> = None;
        if shared(width) > available {
            let tiles = cols.div_ceil(WIDE_COLUMNS);
            let region = 2 * k;
            check_tiles(tiles, cols, WIDE_COLUMNS)?;
            // The kernel writes every one of the `rows * tiles * region` outputs.
            let mut columns = self.allocate::<u32>(rows * tiles * region)?;
            let mut best = self.allocate::<f32>(rows * tiles * region)?;
            let config = LaunchConfig {
                grid_dim: (rows as u32, tiles as u32, 1),
                block_dim: (WIDE_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(
                self,
                Kernel::TopKWide,
                config,
                &(cols as u32),
                &(k as u32),
                &(region as u32),
                scores,
                &address(exclude.map(|x| &x.offsets)),
                &address(exclude.map(|x| &x.indices)),
                &(first_column as u32),
                &activated
                    .as_ref()
                    .map_or(ActivationCode::Precomputed, |a| a.kind),
                &activated.as_ref().map_or(0.0, |a| a.p1),
                &activated.as_ref().map_or(0.0, |a| a.p2),
                &address(activated.as_ref().and_then(|a| a.bias)),
                &address(activated.as_ref().and_then(|a| a.slope)),
                &mut columns,
                &mut best
            )?;
            width = tiles * region;
            candidates = Some((columns, best));
        }
        let (columns, best) = loop {
            let last = shared(width) <= available;
            let (tile_cols, tiles, threads) = if last {
                (width, 1, ROW_THREADS)
            } else {
                (tile, width.div_ceil(tile), TILE_THREADS)
            };
            check_tiles(tiles, width, tile)?;
            // The kernel writes every one of the `rows * tiles * k` outputs.
            let mut columns = self.allocate::<u32>(rows * tiles * k)?;
            let mut best = self.allocate::<f32>(rows * tiles * k)?;
            let config = LaunchConfig {
                grid_dim: (rows as u32, tiles as u32, 1),
                block_dim: (threads, 1, 1),
                shared_mem_bytes: shared(tile_cols) as u32,
            };
            let first_round = candidates.is_none();
            let (scores, columns_of) = match &candidates {
                Some((columns, best)) => (best, Some(columns)),
                None => (scores, None),
            };
            let exclude = exclude.filter(|_| first_round);
            let activated = activated.as_ref().filter(|_| first_round);
            launch!(
                self,
                Kernel::TopK,
                config,
                &(width as u32),
                &(tile_cols as u32),
                &(k as u32),
                &(padded as u32),
                &(capacity as u32),
                scores,
                &address(columns_of),
                &address(exclude.map(|x| &x.offsets)),
                &address(exclude.map(|x| &x.indices)),
                &(first_column as u32),
                &activated.map_or(ActivationCode::Precomputed, |a| a.kind),
                &activated.map_or(0.0, |a| a.p1),
                &activated.map_or(0.0, |a| a.p2),
                &address(activated.and_then(|a| a.bias)),
                &address(activated.and_then(|a| a.slope)),
                &mut columns,
                &mut best
            )?;
            if last {
                break (columns, best);
            }
            width = tiles * k;
            candidates = Some((columns, best));
        };
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

    pub(crate) fn append_top_k_rows(
        &self,
        top: PendingTopK,
        columns: &mut Vec<u32>,
        scores: &mut Vec<f32>,
    ) -> Result<()> {
        let Some(mut buffers) = top.buffers else {
            return Ok(());
        };
        // Waits for this batch's copies only.
        buffers.copied.synchronize().map_err(backend_error)?;
        columns
            .extend_from_slice(&buffers.columns.as_mut_slice().map_err(backend_error)?[..top.len]);
        scores.extend_from_slice(&buffers.scores.as_mut_slice().map_err(backend_error)?[..top.len]);
        self.read_back
            .lock()
            .expect("a read-back user panicked")
            .free
            .push(buffers);
        Ok(())
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

/// Refuses more tiles of a row than a grid's second dimension takes.
fn check_tiles(tiles: usize, width: usize, tile: usize) -> Result<()> {
    if tiles > u16::MAX as usize {
        return Err(backend_error(format!(
            "top-k on the GPU: {width} columns are more than {} tiles of {tile}",
            u16::MAX
        )));
    }
    Ok(())
}

/// The largest power of two at most `n` (0 for 0).
fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << n.ilog2()
    }
}
