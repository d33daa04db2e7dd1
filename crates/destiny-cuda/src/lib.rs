//! Destiny's CUDA backend: weights, optimizer state and batches resident on one GPU, dense
//! products through cuBLAS, and the fused sparse kernels of `kernels/` compiled by NVRTC at
//! start-up. Everything runs on one stream; only `download` and `top_k` wait for the GPU.
//!
//! The CUDA libraries are loaded when the backend starts, so the binary builds and runs
//! without them; a machine without a GPU gets a clear error from [`CudaBackend::new`].

pub mod kernels;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use destiny_core::backend::{
    Backend, GemmShape, OptimizerKind, OptimizerStep, SparseBatch, Target,
};
use destiny_core::config::{Activation, ErrorFunction, MarginalParameters};
use destiny_core::error::{Error, Result};
use destiny_core::math::activation::is_row_wise;
use destiny_core::math::error_function::{output_delta_form, OutputDeltaForm};
use std::collections::HashMap;
use std::sync::Arc;

/// Threads per block of the element-wise kernels.
const THREADS: u32 = 256;
/// Largest K of `top_k` (the winners are sorted in shared memory).
const MAX_K: usize = 1024;

/// One GPU.
pub struct CudaBackend {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    functions: HashMap<&'static str, CudaFunction>,
    name: String,
}

/// The margins of the marginal cross entropies, passed to kernels by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct Margins {
    one_target: f32,
    zero_target: f32,
    one_scale: f32,
    zero_scale: f32,
}

unsafe impl DeviceRepr for Margins {}

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

/// Kernel numbering of activations (see `kernels/activation.cu`) and their parameters.
fn activation_code(activation: Activation) -> (i32, f32, f32) {
    match activation {
        Activation::Sigmoid => (0, 0.0, 0.0),
        Activation::Tanh => (1, 0.0, 0.0),
        Activation::RectifiedLinear => (2, 0.0, 0.0),
        Activation::LeakyRectifiedLinear { slope } => (3, slope, 0.0),
        Activation::ParametricRectifiedLinear { slope } => (4, slope, 0.0),
        Activation::ExponentialLinear { alpha } => (5, alpha, 0.0),
        Activation::ScaledExponentialLinear { alpha, lambda } => (6, alpha, lambda),
        Activation::SoftPlus => (7, 0.0, 0.0),
        Activation::SoftSign => (8, 0.0, 0.0),
        Activation::Linear => (9, 0.0, 0.0),
        Activation::SoftMax => (10, 0.0, 0.0),
        Activation::ReluMax => (11, 0.0, 0.0),
        Activation::LinearMax => (12, 0.0, 0.0),
    }
}

/// Kernel numbering of error functions (see `kernels/output.cu`) and their margins.
fn error_code(error: ErrorFunction) -> (i32, Margins) {
    let margins = |m: MarginalParameters| Margins {
        one_target: m.one_target,
        zero_target: m.zero_target,
        one_scale: m.one_scale,
        zero_scale: m.zero_scale,
    };
    let none = margins(MarginalParameters::default());
    match error {
        ErrorFunction::L1 => (0, none),
        ErrorFunction::L2 => (1, none),
        ErrorFunction::CrossEntropy => (2, none),
        ErrorFunction::ScaledMarginalCrossEntropy(m) => (3, margins(m)),
        ErrorFunction::DataScaledMarginalCrossEntropy(m) => (4, margins(m)),
        ErrorFunction::Hinge => (5, none),
        ErrorFunction::L2Hinge => (6, none),
    }
}

impl CudaBackend {
    /// Opens GPU `ordinal`, compiles the kernels for it and creates the cuBLAS handle.
    pub fn new(ordinal: usize) -> Result<Self> {
        let driver = ["libcuda.so.1", "libcuda.so"]
            .into_iter()
            .any(|n| unsafe { libloading::Library::new(n) }.is_ok());
        if !driver {
            return Err(backend_error("no CUDA driver (libcuda.so) on this machine"));
        }
        if !kernels::nvrtc_available() {
            return Err(backend_error(
                "NVRTC (libnvrtc.so) was not found; it compiles Destiny's kernels",
            ));
        }
        let count = CudaContext::device_count().map_err(backend_error)?;
        if ordinal >= count.max(0) as usize {
            return Err(backend_error(format!(
                "there is no GPU cuda:{ordinal} ({count} found)"
            )));
        }
        let context = CudaContext::new(ordinal).map_err(backend_error)?;
        // One stream: the driver orders the work, no per-buffer events are needed.
        unsafe { context.disable_event_tracking() };
        let stream = context.default_stream();
        let major = context
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            .map_err(backend_error)?;
        let minor = context
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
            .map_err(backend_error)?;
        let mut functions = HashMap::new();
        for (name, ptx) in
            kernels::compile_all(&format!("sm_{major}{minor}")).map_err(backend_error)?
        {
            let module = context.load_module(ptx).map_err(backend_error)?;
            let (_, _, names) = kernels::PROGRAMS
                .iter()
                .find(|(n, _, _)| *n == name)
                .expect("compiled from the list");
            for &function in names.iter() {
                functions.insert(
                    function,
                    module.load_function(function).map_err(backend_error)?,
                );
            }
        }
        let blas = CudaBlas::new(stream.clone()).map_err(backend_error)?;
        let name = format!("cuda:{ordinal} {}", context.name().map_err(backend_error)?);
        Ok(CudaBackend {
            stream,
            blas,
            functions,
            name,
        })
    }

    fn function(&self, name: &str) -> &CudaFunction {
        &self.functions[name]
    }

    /// Waits for all queued work (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(backend_error)
    }
}

/// Launches `$kernel` with `$config` and the arguments after it.
macro_rules! launch {
    ($self:ident, $kernel:expr, $config:expr, $($arg:expr),* $(,)?) => {{
        let function = $self.function($kernel);
        // One expression, so that temporary arguments live until the launch.
        // SAFETY: the arguments match the kernel's parameters in `kernels/*.cu`, and the
        // buffers were checked against the shapes by the caller.
        unsafe { $self.stream.launch_builder(function)$(.arg($arg))*.launch($config) }.map(|_| ()).map_err(backend_error)
    }};
}

fn check(what: &str, buffer: &CudaSlice<f32>, needed: usize) -> Result<()> {
    if buffer.len() < needed {
        return Err(Error::Dimension(format!(
            "{what}: buffer holds {} values, {needed} needed",
            buffer.len()
        )));
    }
    Ok(())
}

impl Backend for CudaBackend {
    type Buffer = CudaSlice<f32>;
    type Indices = CudaSlice<u32>;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(backend_error)
    }

    fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>> {
        if host.is_empty() {
            return self.zeros(1);
        }
        self.stream.clone_htod(host).map_err(backend_error)
    }

    fn write(&self, host: &[f32], buffer: &mut CudaSlice<f32>) -> Result<()> {
        check("write", buffer, host.len())?;
        let mut view = buffer.slice_mut(0..host.len());
        self.stream
            .memcpy_htod(host, &mut view)
            .map_err(backend_error)
    }

    fn download(&self, buffer: &CudaSlice<f32>) -> Result<Vec<f32>> {
        self.stream.clone_dtoh(buffer).map_err(backend_error)
    }

    fn upload_indices(&self, host: &[u32]) -> Result<CudaSlice<u32>> {
        if host.is_empty() {
            return self.stream.alloc_zeros::<u32>(1).map_err(backend_error);
        }
        self.stream.clone_htod(host).map_err(backend_error)
    }

    fn fill(&self, buffer: &mut CudaSlice<f32>, len: usize, value: f32) -> Result<()> {
        check("fill", buffer, len)?;
        launch!(self, "fill", elements(len), buffer, &(len as u32), &value)
    }

    fn axpy(
        &self,
        len: usize,
        alpha: f32,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("axpy", x, len)?;
        check("axpy", y, len)?;
        launch!(self, "axpy", elements(len), &(len as u32), &alpha, x, y)
    }

    fn gemm(
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
        check("gemm A", a, m * k)?;
        check("gemm B", b, k * n)?;
        check("gemm C", c, m * n)?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
        let operation = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let config = GemmConfig {
            transa: operation(transpose_b),
            transb: operation(transpose_a),
            m: n as i32,
            n: m as i32,
            k: k as i32,
            alpha,
            lda: if transpose_b { k } else { n } as i32,
            ldb: if transpose_a { m } else { k } as i32,
            beta,
            ldc: n as i32,
        };
        // SAFETY: the buffers hold the shapes checked above.
        unsafe { self.blas.gemm(config, b, a, c) }.map_err(backend_error)
    }

    fn sparse_matmul(
        &self,
        x: &SparseBatch<Self>,
        w: &CudaSlice<f32>,
        n: usize,
        beta: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("sparse product weights", w, x.width * n)?;
        check("sparse product output", out, x.rows * n)?;
        if x.rows == 0 {
            return Ok(());
        }
        let config = LaunchConfig {
            grid_dim: (x.rows as u32, n.div_ceil(128) as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let values = x.values.as_ref().unwrap_or(w);
        launch!(
            self,
            "sparse_matmul",
            config,
            &(n as u32),
            &x.offsets,
            &x.indices,
            values,
            &(x.values.is_some() as i32),
            w,
            &beta,
            out
        )
    }

    fn sparse_transpose_matmul(
        &self,
        x: &SparseBatch<Self>,
        delta: &CudaSlice<f32>,
        n: usize,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("sparse gradient delta", delta, x.rows * n)?;
        check("sparse gradient", grad, x.width * n)?;
        if x.rows == 0 {
            return Ok(());
        }
        let config = LaunchConfig {
            grid_dim: (x.rows as u32, n.div_ceil(128) as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let values = x.values.as_ref().unwrap_or(delta);
        launch!(
            self,
            "sparse_transpose_matmul",
            config,
            &(n as u32),
            &x.offsets,
            &x.indices,
            values,
            &(x.values.is_some() as i32),
            delta,
            &alpha,
            grad
        )
    }

    fn add_bias(
        &self,
        rows: usize,
        cols: usize,
        bias: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("bias", bias, cols)?;
        check("bias output", out, rows * cols)?;
        launch!(
            self,
            "add_bias",
            elements(rows * cols),
            &(rows as u32),
            &(cols as u32),
            bias,
            out
        )
    }

    fn bias_gradient(
        &self,
        rows: usize,
        cols: usize,
        delta: &CudaSlice<f32>,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("bias gradient delta", delta, rows * cols)?;
        check("bias gradient", grad, cols)?;
        launch!(
            self,
            "column_sums",
            columns_config(rows, cols),
            &(rows as u32),
            &(cols as u32),
            delta,
            delta,
            &0i32,
            &alpha,
            grad
        )
    }

    fn activation_forward(
        &self,
        activation: Activation,
        rows: usize,
        cols: usize,
        z: &CudaSlice<f32>,
        slope: Option<&CudaSlice<f32>>,
        a: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let len = rows * cols;
        check("activation input", z, len)?;
        check("activation output", a, len)?;
        let (kind, p1, p2) = activation_code(activation);
        if is_row_wise(activation) {
            return launch!(
                self,
                "rowwise_forward",
                rows_config(rows),
                &(cols as u32),
                &kind,
                z,
                a
            );
        }
        let slope_buffer = slope.unwrap_or(z);
        launch!(
            self,
            "activation_forward",
            elements(len),
            &(len as u32),
            &(cols as u32),
            &kind,
            &p1,
            &p2,
            z,
            slope_buffer,
            &(slope.is_some() as i32),
            a
        )
    }

    fn activation_backward(
        &self,
        activation: Activation,
        rows: usize,
        cols: usize,
        z: &CudaSlice<f32>,
        a: &CudaSlice<f32>,
        slope: Option<&CudaSlice<f32>>,
        delta: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let len = rows * cols;
        check("activation delta", delta, len)?;
        let (kind, p1, p2) = activation_code(activation);
        if is_row_wise(activation) {
            return launch!(
                self,
                "rowwise_backward",
                rows_config(rows),
                &(cols as u32),
                &kind,
                z,
                a,
                delta
            );
        }
        let slope_buffer = slope.unwrap_or(z);
        launch!(
            self,
            "activation_backward",
            elements(len),
            &(len as u32),
            &(cols as u32),
            &kind,
            &p1,
            &p2,
            z,
            a,
            slope_buffer,
            &(slope.is_some() as i32),
            delta
        )
    }

    fn slope_gradient(
        &self,
        rows: usize,
        cols: usize,
        z: &CudaSlice<f32>,
        delta: &CudaSlice<f32>,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("slope gradient", grad, cols)?;
        launch!(
            self,
            "column_sums",
            columns_config(rows, cols),
            &(rows as u32),
            &(cols as u32),
            z,
            delta,
            &2i32,
            &alpha,
            grad
        )
    }

    fn output_delta(
        &self,
        error: ErrorFunction,
        activation: Activation,
        rows: usize,
        cols: usize,
        z: &CudaSlice<f32>,
        a: &CudaSlice<f32>,
        target: Target<'_, Self>,
        delta: &mut CudaSlice<f32>,
        loss: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let len = rows * cols;
        check("output delta", delta, len)?;
        let (error_kind, margins) = error_code(error);
        let (activation_kind, p1, p2) = activation_code(activation);
        let (dense, sparse) = match target {
            Target::Dense(t) => {
                check("dense target", t, len)?;
                (Some(t), None)
            }
            Target::Sparse(x) => {
                if x.rows != rows || x.width != cols {
                    return Err(Error::Dimension(format!(
                        "sparse target of {} x {} for an output of {rows} x {cols}",
                        x.rows, x.width
                    )));
                }
                (None, Some(x))
            }
        };
        let form = output_delta_form(activation, error);
        if form == OutputDeltaForm::SoftMaxCrossEntropy {
            let (offsets, indices, values) = match sparse {
                Some(x) => (&x.offsets, &x.indices, x.values.as_ref().unwrap_or(a)),
                None => (
                    &self.stream.alloc_zeros::<u32>(1).map_err(backend_error)?,
                    &self.stream.alloc_zeros::<u32>(1).map_err(backend_error)?,
                    a,
                ),
            };
            let has_values = sparse.is_some_and(|x| x.values.is_some()) as i32;
            return launch!(
                self,
                "output_softmax_cross_entropy",
                rows_config(rows),
                &(cols as u32),
                a,
                dense.unwrap_or(a),
                &(dense.is_some() as i32),
                offsets,
                indices,
                values,
                &has_values,
                &(sparse.is_some() as i32),
                delta,
                loss
            );
        }
        let form_code: i32 = if form == OutputDeltaForm::FusedSigmoid {
            0
        } else {
            2
        };
        // Element-wise activations are differentiated inside the pass; row-wise ones after it.
        let chain_kind = if form == OutputDeltaForm::Chain && !is_row_wise(activation) {
            activation_kind
        } else {
            -1
        };
        launch!(
            self,
            "output_dense",
            elements(len),
            &(len as u32),
            &form_code,
            &error_kind,
            &margins,
            &chain_kind,
            &p1,
            &p2,
            z,
            a,
            dense.unwrap_or(a),
            &(dense.is_some() as i32),
            &mut *delta,
            &mut *loss
        )?;
        if let Some(x) = sparse {
            let values = x.values.as_ref().unwrap_or(a);
            launch!(
                self,
                "output_sparse_entries",
                rows_config(rows),
                &(cols as u32),
                &form_code,
                &error_kind,
                &margins,
                &chain_kind,
                &p1,
                &p2,
                z,
                a,
                &x.offsets,
                &x.indices,
                values,
                &(x.values.is_some() as i32),
                &mut *delta,
                &mut *loss
            )?;
        }
        if form == OutputDeltaForm::Chain && is_row_wise(activation) {
            launch!(
                self,
                "rowwise_backward",
                rows_config(rows),
                &(cols as u32),
                &activation_kind,
                z,
                a,
                delta
            )?;
        }
        Ok(())
    }

    fn sparseness_penalty(
        &self,
        rows: usize,
        cols: usize,
        a: &CudaSlice<f32>,
        p: f32,
        beta: f32,
        delta: &mut CudaSlice<f32>,
        loss: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("sparseness penalty", delta, rows * cols)?;
        let mut means = self.zeros(cols)?;
        let mean_scale = 1.0 / rows as f32;
        launch!(
            self,
            "column_sums",
            columns_config(rows, cols),
            &(rows as u32),
            &(cols as u32),
            a,
            a,
            &0i32,
            &mean_scale,
            &mut means
        )?;
        launch!(
            self,
            "sparseness_gradient",
            elements(rows * cols),
            &((rows * cols) as u32),
            &(cols as u32),
            &means,
            &p,
            &beta,
            delta
        )?;
        launch!(
            self,
            "sparseness_loss",
            rows_config(1),
            &(rows as u32),
            &(cols as u32),
            &means,
            &p,
            &beta,
            loss
        )
    }

    fn dropout(&self, len: usize, p: f32, seed: u64, x: &mut CudaSlice<f32>) -> Result<()> {
        check("dropout", x, len)?;
        launch!(self, "dropout", elements(len), &(len as u32), &p, &seed, x)
    }

    fn optimizer_step(
        &self,
        step: &OptimizerStep,
        len: usize,
        params: &mut CudaSlice<f32>,
        grad: &CudaSlice<f32>,
        state: &mut [CudaSlice<f32>],
    ) -> Result<()> {
        check("optimizer gradient", grad, len)?;
        if state.len() != step.kind.state_count() || state.iter().any(|s| s.len() < len) {
            return Err(Error::Dimension(format!(
                "optimizer {:?} needs {} state buffers of {len} values",
                step.kind,
                step.kind.state_count()
            )));
        }
        let (kind, p1, p2, epsilon): (i32, f32, f32, f32) = match step.kind {
            OptimizerKind::Sgd => (0, 0.0, 0.0, 0.0),
            OptimizerKind::Momentum { momentum } => (1, momentum, 0.0, 0.0),
            OptimizerKind::Nesterov { momentum } => (2, momentum, 0.0, 0.0),
            OptimizerKind::AdaGrad { epsilon } => (3, 0.0, 0.0, epsilon),
            OptimizerKind::RmsProp { rho, epsilon } => (4, rho, 0.0, epsilon),
            OptimizerKind::AdaDelta { rho, epsilon } => (5, rho, 0.0, epsilon),
            OptimizerKind::Adam {
                beta1,
                beta2,
                epsilon,
            } => (6, beta1, beta2, epsilon),
        };
        let t = step.step as i32;
        let (c1, c2) = if kind == 6 {
            (1.0 / (1.0 - p1.powi(t)), 1.0 / (1.0 - p2.powi(t)))
        } else {
            (1.0, 1.0)
        };
        let config = elements(len);
        let scalars = (
            len as u32,
            kind,
            step.learning_rate,
            step.l1,
            step.l2,
            p1,
            p2,
            epsilon,
            c1,
            c2,
        );
        match state {
            [] => {
                let mut unused = self.zeros(1)?;
                let mut unused2 = self.zeros(1)?;
                launch!(
                    self,
                    "optimizer_step",
                    config,
                    &scalars.0,
                    &scalars.1,
                    &scalars.2,
                    &scalars.3,
                    &scalars.4,
                    &scalars.5,
                    &scalars.6,
                    &scalars.7,
                    &scalars.8,
                    &scalars.9,
                    params,
                    grad,
                    &mut unused,
                    &mut unused2
                )
            }
            [s0] => {
                let mut unused = self.zeros(1)?;
                launch!(
                    self,
                    "optimizer_step",
                    config,
                    &scalars.0,
                    &scalars.1,
                    &scalars.2,
                    &scalars.3,
                    &scalars.4,
                    &scalars.5,
                    &scalars.6,
                    &scalars.7,
                    &scalars.8,
                    &scalars.9,
                    params,
                    grad,
                    s0,
                    &mut unused
                )
            }
            [s0, s1] => launch!(
                self,
                "optimizer_step",
                config,
                &scalars.0,
                &scalars.1,
                &scalars.2,
                &scalars.3,
                &scalars.4,
                &scalars.5,
                &scalars.6,
                &scalars.7,
                &scalars.8,
                &scalars.9,
                params,
                grad,
                s0,
                s1
            ),
            _ => unreachable!("checked above"),
        }
    }

    fn max_norm(
        &self,
        rows: usize,
        cols: usize,
        max_norm: f32,
        w: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("max norm", w, rows * cols)?;
        let mut squares = self.zeros(cols)?;
        launch!(
            self,
            "column_sums",
            columns_config(rows, cols),
            &(rows as u32),
            &(cols as u32),
            &*w,
            &*w,
            &1i32,
            &1.0f32,
            &mut squares
        )?;
        launch!(
            self,
            "scale_long_columns",
            elements(rows * cols),
            &((rows * cols) as u32),
            &(cols as u32),
            &squares,
            &max_norm,
            w
        )
    }

    fn top_k(
        &self,
        rows: usize,
        cols: usize,
        scores: &CudaSlice<f32>,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        check("top-k scores", scores, rows * cols)?;
        if k > MAX_K {
            return Err(backend_error(format!(
                "top-k on the GPU takes K up to {MAX_K}, not {k}"
            )));
        }
        if rows == 0 || k == 0 {
            return Ok((vec![u32::MAX; rows * k], vec![f32::NEG_INFINITY; rows * k]));
        }
        let words = cols.div_ceil(32).next_multiple_of(2);
        let padded = k.next_power_of_two().max(2);
        let shared = words * 4 + padded * 8;
        if shared > 48 * 1024 {
            return Err(backend_error(format!(
                "top-k on the GPU takes up to 327,680 columns, not {cols}"
            )));
        }
        let mut columns = self
            .stream
            .alloc_zeros::<u32>(rows * k)
            .map_err(backend_error)?;
        let mut best = self.zeros(rows * k)?;
        let empty = self.stream.alloc_zeros::<u32>(1).map_err(backend_error)?;
        let (offsets, indices) = exclude.map_or((&empty, &empty), |x| (&x.offsets, &x.indices));
        let config = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        launch!(
            self,
            "top_k",
            config,
            &(cols as u32),
            &(k as u32),
            &(padded as u32),
            scores,
            offsets,
            indices,
            &(exclude.is_some() as i32),
            &mut columns,
            &mut best
        )?;
        let columns = self.stream.clone_dtoh(&columns).map_err(backend_error)?;
        let best = self.stream.clone_dtoh(&best).map_err(backend_error)?;
        Ok((columns, best))
    }
}
