//! Destiny's CUDA backend: weights, optimizer state and batches resident on one GPU, dense
//! products through cuBLASLt with measured algorithms where it can and cuBLAS otherwise
//! (convolutions too, on their input unrolled into columns), and
//! the fused sparse and spatial kernels of `kernels/` compiled by NVRTC at start-up.
//! Everything runs on one stream, and uploads go through page-locked staging buffers, so the
//! host queues work ahead of the GPU; only downloads wait for it.
//!
//! The CUDA libraries are loaded when the backend starts, so the binary builds and runs
//! without them; a machine without a GPU gets a clear error from [`CudaBackend::new`], one
//! without NCCL from the first [`NcclCommunicator`].
//!
//! The backend implements destiny-core's `Backend` through its `*_unchecked` methods: the
//! trait's provided methods have checked every buffer against the shapes before a kernel is
//! launched, so the modules here check only what is the GPU's own limit (top-K's K).
//!
//! Several GPUs compute one network through [`NcclCommunicator`], destiny-core's
//! `Communicator` over NCCL: one rank per GPU, as threads of one process
//! ([`NcclCommunicator::local`]) or as processes that a launcher started and that meet
//! through destiny-core's `parallel::rendezvous` ([`NcclCommunicator::join`]).

/// Launches `$kernel` (a [`kernels::Kernel`]) of `$self` with `$config` and the arguments
/// after it; returns from the caller if the kernel is not loaded.
macro_rules! launch {
    ($self:ident, $kernel:expr, $config:expr, $($arg:expr),* $(,)?) => {{
        let function = $self.function($kernel)?;
        // One expression, so that temporary arguments live until the launch.
        // SAFETY: the arguments match the kernel's parameters in `kernels/*.cu`, and the
        // buffers were checked against the shapes by `Backend`'s provided methods.
        unsafe { $self.stream.launch_builder(function)$(.arg($arg))*.launch($config) }
            .map(|_| ())
            .map_err($crate::backend_error)
    }};
}

mod backend;
mod blas_lt;
mod codes;
mod convolution;
mod cudnn;
mod dense;
mod device;
pub mod kernel_cache;
pub mod kernels;
mod local_response;
mod nccl;
mod normalization;
mod output;
mod pooling;
pub mod ranks;
pub mod select;
mod sliding;
mod top_k;
mod transfer;

pub use device::{CudaBackend, Precision};
pub use nccl::{NcclCommunicator, NcclId, Watchdog};
pub use select::{with_backend, BackendTask, DeviceChoice};
pub use top_k::PendingTopK;

use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig};
use destiny_core::error::Error;

/// Threads per block of the element-wise kernels.
const THREADS: u32 = 256;

fn backend_error(message: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: "cuda".into(),
        message: message.to_string(),
    }
}

/// A grid-stride launch over `n` elements.
fn elements(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 8192) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Column reductions: blocks of 32 columns x 8 row lanes, each over a band of 64 rows.
fn columns_config(rows: usize, cols: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (cols.div_ceil(32) as u32, rows.div_ceil(64).max(1) as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row.
fn rows_config(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per group of `values` values, reduced by the block: as many threads as there
/// are values, in whole warps, up to 1024.
fn groups_config(groups: usize, values: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (groups as u32, 1, 1),
        block_dim: (values.next_multiple_of(32).clamp(32, 1024) as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The device address of an optional buffer, null when absent: kernels test optional
/// arguments against null.
fn address<T>(buffer: Option<&CudaSlice<T>>) -> u64 {
    buffer.map_or(0, |b| b.device_ptr(b.stream()).0)
}
