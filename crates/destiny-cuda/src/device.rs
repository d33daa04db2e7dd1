//! The GPU a backend computes on: its context, stream, kernels, cuBLAS handle and memory.

use crate::backend_error;
use crate::blas_lt::SharedLt;
use crate::cudnn::SharedCudnn;
use crate::kernel_cache;
use crate::kernels::{self, Kernel};
use crate::top_k::ReadBack;
use crate::transfer::Staging;
use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::{CUdevice_attribute, CUmemPool_attribute, CUmemoryPool, CUresult};
use cudarc::driver::{
    result, CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, DriverError,
    ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use destiny_core::error::{Error, Result};
use std::sync::{Arc, Mutex, OnceLock};

/// Arithmetic of the dense products. Sparse kernels, activations and optimizers always
/// compute in fp32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// IEEE fp32 throughout.
    #[default]
    Fp32,
    /// Tensor cores on TF32 (10-bit mantissa) inputs, fp32 accumulation.
    Tf32,
    /// Tensor cores on bf16 (8-bit mantissa) inputs, fp32 accumulation.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" => Ok(Precision::Fp32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision '{s}': fp32, tf32 or bf16")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// The default bound of a convolution's scratch: 256 MiB unrolls a batch of 256 CIFAR-sized
/// samples through a 3 x 3 convolution of 64 channels in a few chunks, each long enough for
/// cuBLAS to run at full speed, at a small part of a GPU's memory.
const CONVOLUTION_SCRATCH: usize = 256 << 20;

/// One GPU.
pub struct CudaBackend {
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) blas: CudaBlas,
    /// cuBLASLt, where it is installed, for the single products (see `blas_lt.rs`): opened
    /// at the first product, with its workspace.
    blas_lt: OnceLock<Option<SharedLt>>,
    /// False when every product is to go through cuBLAS.
    blas_lt_allowed: bool,
    pub(crate) precision: Precision,
    /// Bytes a convolution's scratch may take (see `convolution.rs`).
    pub(crate) convolution_scratch: usize,
    /// cuDNN, where it is installed, for the convolutions (see `cudnn.rs`): opened at the
    /// first convolution, so that a network without one never loads the library.
    cudnn: OnceLock<Option<SharedCudnn>>,
    /// False when the convolutions are to use Destiny's own kernels.
    cudnn_allowed: bool,
    pub(crate) staging: Mutex<Staging>,
    pub(crate) read_back: Mutex<ReadBack>,
    /// The loaded kernels, indexed by `Kernel as usize`.
    functions: Vec<Option<CudaFunction>>,
    /// The stream-ordered allocator's pool, which every buffer comes from.
    pool: CUmemoryPool,
    /// Largest dynamic shared memory a block may ask for.
    pub(crate) max_shared_bytes: usize,
    name: String,
}

// SAFETY: the pool handle is only passed to the driver, which is thread-safe.
unsafe impl Send for CudaBackend {}
unsafe impl Sync for CudaBackend {}

impl CudaBackend {
    /// Number of GPUs the driver sees; an error where there is no driver.
    pub fn count() -> Result<usize> {
        let driver = ["libcuda.so.1", "libcuda.so"]
            .into_iter()
            .any(|n| unsafe { libloading::Library::new(n) }.is_ok());
        if !driver {
            return Err(backend_error("no CUDA driver (libcuda.so) on this machine"));
        }
        let count = CudaContext::device_count().map_err(backend_error)?;
        Ok(count.max(0) as usize)
    }

    /// Opens GPU `ordinal`, compiles the kernels for it and creates the cuBLAS handle.
    pub fn new(ordinal: usize) -> Result<Self> {
        let count = CudaBackend::count()?;
        if !kernels::nvrtc_available() {
            return Err(backend_error(
                "NVRTC (libnvrtc.so) was not found; it compiles Destiny's kernels",
            ));
        }
        if ordinal >= count {
            return Err(backend_error(format!(
                "there is no GPU cuda:{ordinal} ({count} found)"
            )));
        }
        let context = CudaContext::new(ordinal).map_err(backend_error)?;
        // One stream: the driver orders the work, no per-buffer events are needed.
        unsafe { context.disable_event_tracking() };
        let stream = context.default_stream();
        let attribute = |a| context.attribute(a).map_err(backend_error);
        let major = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let max_shared_bytes =
            attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
                as usize;
        let mut functions = vec![None; Kernel::ALL.len()];
        for compiled in kernels::compile_all(
            &format!("sm_{major}{minor}"),
            kernel_cache::folder().as_deref(),
        )
        .map_err(backend_error)?
        {
            let module = context
                .load_module(Ptx::from_binary(compiled.cubin))
                .map_err(backend_error)?;
            for &kernel in compiled.program.kernels {
                functions[kernel as usize] =
                    Some(module.load_function(kernel.name()).map_err(backend_error)?);
            }
        }
        // SAFETY: the device comes from a live context; the attribute takes a u64.
        let pool = unsafe {
            let pool =
                result::device::get_default_mem_pool(context.cu_device()).map_err(backend_error)?;
            // Keep freed memory in the pool: batches free and allocate the same sizes, and
            // returning memory at every synchronisation would map it again each time.
            let mut keep = u64::MAX;
            result::mem_pool::set_attribute(
                pool,
                CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut keep as *mut u64 as *mut _,
            )
            .map_err(backend_error)?;
            pool
        };
        let blas = CudaBlas::new(stream.clone()).map_err(backend_error)?;
        let name = format!("cuda:{ordinal} {}", context.name().map_err(backend_error)?);
        Ok(CudaBackend {
            staging: Mutex::new(Staging::new(context.clone())),
            read_back: Mutex::new(ReadBack::default()),
            stream,
            blas,
            blas_lt: OnceLock::new(),
            blas_lt_allowed: true,
            precision: Precision::Fp32,
            convolution_scratch: CONVOLUTION_SCRATCH,
            cudnn: OnceLock::new(),
            cudnn_allowed: true,
            functions,
            pool,
            max_shared_bytes,
            name,
        })
    }

    /// Computes the dense products at `precision` (fp32 unless asked).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Bounds the scratch memory of a convolution to `bytes` (256 MiB unless asked): its
    /// batch is unrolled into columns a chunk of samples at a time, as many samples as fit,
    /// and at least one.
    pub fn with_convolution_scratch(mut self, bytes: usize) -> Self {
        self.convolution_scratch = bytes;
        self
    }

    /// Computes convolutions with Destiny's own kernels even where cuDNN is installed.
    pub fn without_cudnn(mut self) -> Self {
        self.cudnn_allowed = false;
        self
    }

    /// True when convolutions go through cuDNN (which this opens, where it is installed).
    pub fn uses_cudnn(&self) -> bool {
        self.cudnn().is_some()
    }

    /// cuDNN's handle, opened at the first call, where it is installed and allowed.
    pub(crate) fn cudnn(&self) -> Option<&SharedCudnn> {
        if !self.cudnn_allowed {
            return None;
        }
        self.cudnn
            .get_or_init(|| SharedCudnn::open(&self.stream))
            .as_ref()
    }

    /// Computes every dense product through cuBLAS even where cuBLASLt is installed.
    pub fn without_cublaslt(mut self) -> Self {
        self.blas_lt_allowed = false;
        self
    }

    /// True when single dense products go through cuBLASLt (which this opens, where it is
    /// installed and `DESTINY_CUBLASLT=0` does not turn it off).
    pub fn uses_cublaslt(&self) -> bool {
        self.blas_lt().is_some()
    }

    /// cuBLASLt's handle, opened at the first call, where it is installed and allowed.
    pub(crate) fn blas_lt(&self) -> Option<&SharedLt> {
        if !self.blas_lt_allowed {
            return None;
        }
        self.blas_lt.get_or_init(|| SharedLt::open(self)).as_ref()
    }

    /// The arithmetic of the dense products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// A buffer of `len` elements whose contents are unset: callers write every element
    /// before a kernel reads it. Running out of device memory is an error that says how much
    /// was asked for and how much is free.
    pub(crate) fn allocate<T: DeviceRepr>(&self, len: usize) -> Result<CudaSlice<T>> {
        // SAFETY: device memory, written by the caller before it is read.
        unsafe { self.stream.alloc::<T>(len) }
            .map_err(|e| self.allocation_error(len * std::mem::size_of::<T>(), e))
    }

    /// A buffer of `len` zeros; errors as [`CudaBackend::allocate`].
    pub(crate) fn allocate_zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(len)
            .map_err(|e| self.allocation_error(len * std::mem::size_of::<T>(), e))
    }

    fn allocation_error(&self, bytes: usize, error: DriverError) -> Error {
        if error.0 != CUresult::CUDA_ERROR_OUT_OF_MEMORY {
            return backend_error(error);
        }
        let megabytes = |b: usize| b as f64 / 1e6;
        match self.stream.context().mem_get_info() {
            Ok((free, total)) => backend_error(format!(
                "out of GPU memory: {:.1} MB asked for, {:.1} MB free of {:.1} MB on {}",
                megabytes(bytes),
                megabytes(free),
                megabytes(total),
                self.name
            )),
            Err(_) => backend_error(format!(
                "out of GPU memory: {:.1} MB asked for on {}",
                megabytes(bytes),
                self.name
            )),
        }
    }

    /// A loaded kernel; an error, not a panic, if its program did not define it.
    pub(crate) fn function(&self, kernel: Kernel) -> Result<&CudaFunction> {
        self.functions
            .get(kernel as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| {
                backend_error(format!(
                    "kernel {} was not loaded: no program in kernels.rs lists it",
                    kernel.name()
                ))
            })
    }

    /// The device name with the precision, for logs.
    pub(crate) fn description(&self) -> String {
        match self.precision {
            Precision::Fp32 => self.name.clone(),
            other => format!("{} ({other} products)", self.name),
        }
    }

    /// The GPU's memory not yet allocated, in bytes.
    pub fn free_memory(&self) -> Result<u64> {
        let (free, _) = self
            .stream
            .context()
            .mem_get_info()
            .map_err(backend_error)?;
        Ok(free as u64)
    }

    /// The GPU's memory, in bytes.
    pub fn total_memory(&self) -> Result<u64> {
        let (_, total) = self
            .stream
            .context()
            .mem_get_info()
            .map_err(backend_error)?;
        Ok(total as u64)
    }

    /// Waits for all queued work (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(backend_error)
    }

    /// The most device memory this process's buffers have held at once since the last
    /// [`CudaBackend::reset_peak_memory`], in bytes (cuBLAS's workspace is not counted;
    /// cuBLASLt's, allocated at the first product, is).
    pub fn peak_memory(&self) -> Result<u64> {
        self.synchronize()?;
        let mut bytes = 0u64;
        // SAFETY: the pool is the device's default pool; the attribute is a u64.
        unsafe {
            result::mem_pool::get_attribute(
                self.pool,
                CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                &mut bytes as *mut u64 as *mut _,
            )
        }
        .map_err(backend_error)?;
        Ok(bytes)
    }

    /// Starts a new peak at the memory in use now.
    pub fn reset_peak_memory(&self) -> Result<()> {
        self.synchronize()?;
        let mut zero = 0u64;
        // SAFETY: as above; setting the high-water mark to 0 resets it to current use.
        unsafe {
            result::mem_pool::set_attribute(
                self.pool,
                CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                &mut zero as *mut u64 as *mut _,
            )
        }
        .map_err(backend_error)
    }
}
