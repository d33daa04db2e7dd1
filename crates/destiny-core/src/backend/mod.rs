//! The boundary between the network and the device that computes it.
//!
//! The network (forward order, back-propagation, optimizer schedule) is written once against
//! [`Backend`]; each device implements a small set of fused operations. Operations take the
//! logical shape of every matrix, so that a backend may lay a matrix out however it likes,
//! including split across several devices.
//!
//! Every operation is checked once, here: the public methods of [`Backend`] (and of the
//! spatial layers' [`SpatialOperations`], which it includes) are provided ones that check
//! each buffer's length against the shapes (an
//! [`Error::Dimension`](crate::error::Error::Dimension) naming the operand) and then call
//! the device's `*_unchecked` implementation, as candle's `Storage` checks before its
//! backends run. A device implements only the unchecked methods, which may assume what the
//! checks established; callers use the checked ones.
//!
//! Conventions: dense matrices are row-major `rows x cols` buffers of `f32`; a weight matrix
//! of a connection from `m` units to `n` units is `m x n` (one row per input unit), so a
//! sparse input touches whole rows. Operations that add into an output say so.

mod checks;
pub mod cpu;
mod operands;
pub mod random;
mod spatial;

pub use checks::check_len;
pub use operands::*;
pub use spatial::*;

use crate::config::Activation;
use crate::data::SparseRows;
use crate::error::Result;
use checks::{check_buffer, check_gather_layout, check_sparse_columns, check_units};

/// A device's memory: its buffers of `f32` and their lengths, which every set of operations
/// checks against. Apart from [`Backend`] so that the spatial layers' operations
/// ([`SpatialOperations`]) are a trait of their own that `Backend` includes.
pub trait Memory: Send + Sync {
    /// A buffer of `f32` on the device.
    type Buffer: Send + Sync;

    /// The number of values `buffer` holds (without waiting for the device).
    fn buffer_len(&self, buffer: &Self::Buffer) -> usize;
}

/// The fused operations a device provides. See the module documentation for conventions:
/// the provided methods check and are the ones to call; a device implements the required
/// `*_unchecked` ones.
pub trait Backend: Memory + SpatialOperations {
    /// A buffer of `u32` on the device.
    type Indices: Send + Sync;
    /// Top-K results on their way to the host (see [`Backend::top_k`]).
    type TopK: Send;

    /// A short description of the device, for logs ("cpu (2 threads)", "cuda:0 H100").
    fn name(&self) -> String;

    /// Bytes the device can still allocate, where it can tell: a network is checked against
    /// it before it is built, so that one too large is refused with the figures instead of
    /// failing (or, on the host, being killed) halfway.
    fn available_memory(&self) -> Option<u64> {
        None
    }

    /// A buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Buffer>;
    /// A buffer holding `host`.
    fn upload(&self, host: &[f32]) -> Result<Self::Buffer>;
    /// The buffer's contents (waits for pending work).
    fn download(&self, buffer: &Self::Buffer) -> Result<Vec<f32>>;
    /// An index buffer holding `host`.
    fn upload_indices(&self, host: &[u32]) -> Result<Self::Indices>;
    /// The contents of an index buffer (waits for pending work).
    fn download_indices(&self, buffer: &Self::Indices) -> Result<Vec<u32>>;

    /// Overwrites the start of `buffer` with `host` (no reallocation).
    fn write(&self, host: &[f32], buffer: &mut Self::Buffer) -> Result<()> {
        check_buffer(self, "write", buffer, host.len())?;
        self.write_unchecked(host, buffer)
    }

    /// Sets the first `len` values of `buffer` to `value`.
    fn fill(&self, buffer: &mut Self::Buffer, len: usize, value: f32) -> Result<()> {
        check_buffer(self, "fill", buffer, len)?;
        self.fill_unchecked(buffer, len, value)
    }

    /// `y[..len] += alpha * x[..len]`.
    fn axpy(&self, len: usize, alpha: f32, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()> {
        check_buffer(self, "axpy x", x, len)?;
        check_buffer(self, "axpy y", y, len)?;
        self.axpy_unchecked(len, alpha, x, y)
    }

    /// Uploads a batch of sparse rows. Offsets must fit in `u32`.
    fn upload_sparse(&self, rows: &SparseRows) -> Result<SparseBatch<Self>> {
        let offsets: Vec<u32> = rows.offsets().iter().map(|&o| o as u32).collect();
        Ok(SparseBatch {
            rows: rows.len(),
            width: rows.width(),
            nnz: rows.nnz(),
            offsets: self.upload_indices(&offsets)?,
            indices: self.upload_indices(rows.indices())?,
            values: rows.values().map(|v| self.upload(v)).transpose()?,
        })
    }

    /// Whether training should copy sparse datasets to the backend once and gather each batch
    /// there ([`Backend::gather_sparse`]), rather than gather batches on the host and upload
    /// them: true where the host would otherwise be the bottleneck, as in front of a GPU.
    fn prefers_resident_data(&self) -> bool {
        false
    }

    /// Copies the entries of `rows` to the backend for [`Backend::gather_sparse`].
    fn upload_entries(&self, rows: &SparseRows) -> Result<ResidentEntries<Self>> {
        Ok(ResidentEntries {
            nnz: rows.nnz(),
            indices: self.upload_indices(rows.indices())?,
            values: rows.values().map(|v| self.upload(v)).transpose()?,
        })
    }

    /// Gathers a batch from resident entries: row `r` is the `offsets[r + 1] - offsets[r]`
    /// entries from `sources[r]` on. With `denoising = Some((p, seed))`, entry `e` of the
    /// batch is zeroed when `random::uniform(seed, e) < p` and the others are scaled by
    /// `1 / (1 - p)`, which gives the products and gradients of dropping the zeroed entries.
    fn gather_sparse(
        &self,
        entries: &ResidentEntries<Self>,
        width: usize,
        offsets: &[u32],
        sources: &[u64],
        denoising: Option<(f32, u64)>,
    ) -> Result<SparseBatch<Self>> {
        check_gather_layout(offsets, sources, entries.nnz)?;
        self.gather_sparse_unchecked(entries, width, offsets, sources, denoising)
    }

    /// Dense product `c = alpha * op(a) * op(b) + beta * c`.
    fn gemm(
        &self,
        shape: GemmShape,
        alpha: f32,
        a: &Self::Buffer,
        b: &Self::Buffer,
        beta: f32,
        c: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "gemm A", a, shape.m * shape.k)?;
        check_buffer(self, "gemm B", b, shape.k * shape.n)?;
        check_buffer(self, "gemm C", c, shape.m * shape.n)?;
        self.gemm_unchecked(shape, alpha, a, b, beta, c)
    }

    /// Sparse-input product: `out = beta * out + x * w`, with `x` a `rows x m` sparse batch,
    /// `w` of `m x n` and `out` of `rows x n`. Sums only the weight rows each sample touches.
    fn sparse_matmul(
        &self,
        x: &SparseBatch<Self>,
        w: &Self::Buffer,
        n: usize,
        beta: f32,
        out: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "sparse product weights", w, x.width * n)?;
        check_buffer(self, "sparse product output", out, x.rows * n)?;
        self.sparse_matmul_unchecked(x, w, n, beta, out)
    }

    /// Sparse-input weight gradient: `grad += alpha * x^T * delta`, with `delta` of
    /// `rows x n` and `grad` of `m x n`. Only the rows of `grad` the batch touches change, so
    /// passing the weights themselves with `alpha = -lr` is a plain SGD step.
    fn sparse_transpose_matmul(
        &self,
        x: &SparseBatch<Self>,
        delta: &Self::Buffer,
        n: usize,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "sparse gradient delta", delta, x.rows * n)?;
        check_buffer(self, "sparse gradient", grad, x.width * n)?;
        self.sparse_transpose_matmul_unchecked(x, delta, n, alpha, grad)
    }

    /// `grad[c] += alpha * sum_r delta[r, c]` over the matrix `delta` of `shape`.
    fn bias_gradient(
        &self,
        shape: Shape,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "bias gradient delta", delta, shape.len())?;
        check_buffer(self, "bias gradient", grad, shape.cols)?;
        self.bias_gradient_unchecked(shape, delta, alpha, grad)
    }

    /// Adds `bias` (length `cols`, when given) to every row of the matrix `z` of `shape`,
    /// then `a = f(z)`: one pass instead of two. `slope` holds the per-unit slopes of
    /// `ParametricRectifiedLinear` and is `None` for every other activation.
    fn activation_forward(
        &self,
        activation: Activation,
        shape: Shape,
        bias: Option<&Self::Buffer>,
        z: &mut Self::Buffer,
        slope: Option<&Self::Buffer>,
        a: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "activation input", z, shape.len())?;
        check_buffer(self, "activation output", a, shape.len())?;
        check_units(self, "bias", bias, shape.cols)?;
        check_units(self, "slopes", slope, shape.cols)?;
        self.activation_forward_unchecked(activation, shape, bias, z, slope, a)
    }

    /// Turns `delta` from `dE/da` into `dE/dz` in place, given `z` and `a = f(z)`, all of
    /// `shape`.
    fn activation_backward(
        &self,
        activation: Activation,
        shape: Shape,
        z: &Self::Buffer,
        a: &Self::Buffer,
        slope: Option<&Self::Buffer>,
        delta: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "activation input", z, shape.len())?;
        check_buffer(self, "activation output", a, shape.len())?;
        check_units(self, "slopes", slope, shape.cols)?;
        check_buffer(self, "activation delta", delta, shape.len())?;
        self.activation_backward_unchecked(activation, shape, z, a, slope, delta)
    }

    /// Gradient of the per-unit PReLU slopes: `grad[c] += alpha * sum_r [z<0] z * delta`,
    /// with `delta = dE/da`, both of `shape`.
    fn slope_gradient(
        &self,
        shape: Shape,
        z: &Self::Buffer,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "slope gradient input", z, shape.len())?;
        check_buffer(self, "slope gradient delta", delta, shape.len())?;
        check_buffer(self, "slope gradient", grad, shape.cols)?;
        self.slope_gradient_unchecked(shape, z, delta, alpha, grad)
    }

    /// Output layer, fused: from `z`, the layer's products without its bias, applies the bias
    /// and the activation, writes `delta = dE/dz` for the whole output of `shape` and adds
    /// the batch's summed error to `loss[0]`, in one pass where the activation allows it.
    /// Neither the biased sums nor the activations are stored, and with a sparse target no
    /// dense target is built.
    fn output_delta(
        &self,
        output: OutputLayer<'_, Self>,
        shape: Shape,
        z: &Self::Buffer,
        target: Target<'_, Self>,
        delta: &mut Self::Buffer,
        loss: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "output sums", z, shape.len())?;
        check_buffer(self, "output delta", delta, shape.len())?;
        check_units(self, "output bias", output.bias, shape.cols)?;
        check_units(self, "output slopes", output.slope, shape.cols)?;
        check_buffer(self, "loss", loss, 1)?;
        match target {
            Target::Dense(t) => check_buffer(self, "dense target", t, shape.len())?,
            Target::Sparse {
                entries,
                first_column,
            } => check_sparse_columns("sparse target", entries, shape, first_column)?,
        }
        self.output_delta_unchecked(output, shape, z, target, delta, loss)
    }

    /// Sparseness penalty on a hidden layer's activations `a` of `shape`: adds
    /// `beta * (-p / rho_c + (1 - p) / (1 - rho_c))` to `delta[r, c]` (`dE/da`), with `rho_c`
    /// the column's mean activation, and `rows * beta * sum_c KL(p || rho_c)` to `loss[0]`.
    fn sparseness_penalty(
        &self,
        shape: Shape,
        a: &Self::Buffer,
        p: f32,
        beta: f32,
        delta: &mut Self::Buffer,
        loss: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "sparseness penalty activations", a, shape.len())?;
        check_buffer(self, "sparseness penalty delta", delta, shape.len())?;
        check_buffer(self, "loss", loss, 1)?;
        self.sparseness_penalty_unchecked(shape, a, p, beta, delta, loss)
    }

    /// Inverted dropout over a matrix of `shape` that is the `window` of a wider one:
    /// element `(r, c)`, whose index in the whole matrix is `i = r * window.total +
    /// window.offset + c`, is zeroed when `random::uniform(seed, i) < p`, and kept ones are
    /// scaled by `1 / (1 - p)`. Applying it to the activations and then, with the same seed,
    /// to their deltas back-propagates it.
    fn dropout(
        &self,
        shape: Shape,
        window: ColumnWindow,
        p: f32,
        seed: u64,
        x: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "dropout", x, shape.len())?;
        if shape.is_empty() {
            return Ok(());
        }
        self.dropout_unchecked(shape, window, p, seed, x)
    }

    /// Copies the matrix of `shape` at `from` in `src` to `to` in `dst`, or adds it there
    /// when `accumulate`: how a layer's column blocks are laid out for collectives.
    fn copy_matrix(
        &self,
        shape: Shape,
        src: &Self::Buffer,
        from: Strided,
        dst: &mut Self::Buffer,
        to: Strided,
        accumulate: bool,
    ) -> Result<()> {
        if shape.is_empty() {
            return Ok(());
        }
        check_buffer(self, "copy source", src, from.extent(shape))?;
        check_buffer(self, "copy target", dst, to.extent(shape))?;
        self.copy_matrix_unchecked(shape, src, from, dst, to, accumulate)
    }

    /// One optimizer step: `params -= update(grad)`, with `state` holding
    /// `step.kind.state_count()` buffers of `len` values.
    fn optimizer_step(
        &self,
        step: &OptimizerStep,
        len: usize,
        params: &mut Self::Buffer,
        grad: &Self::Buffer,
        state: &mut [Self::Buffer],
    ) -> Result<()> {
        check_buffer(self, "optimizer parameters", params, len)?;
        check_buffer(self, "optimizer gradient", grad, len)?;
        let count = step.kind.state_count();
        if state.len() != count || state.iter().any(|s| self.buffer_len(s) < len) {
            return Err(crate::error::Error::Dimension(format!(
                "optimizer {:?} needs {count} state buffers of {len} values",
                step.kind
            )));
        }
        self.optimizer_step_unchecked(step, len, params, grad, state)
    }

    /// Max-norm constraint: scales each column of the matrix `w` of `shape` (a unit's
    /// incoming weights) whose Euclidean norm exceeds `max_norm` down to `max_norm`.
    fn max_norm(&self, shape: Shape, max_norm: f32, w: &mut Self::Buffer) -> Result<()> {
        check_buffer(self, "max norm", w, shape.len())?;
        self.max_norm_unchecked(shape, max_norm, w)
    }

    /// The `k` highest scores of each row of `scores` (of `shape`), best first, skipping the
    /// columns of that row in `exclude`; equal scores rank the lower column first. The scores
    /// are the columns from `first_column` on of a wider output (0 unless it is split across
    /// ranks), which `exclude` and the returned columns index. Queues the selection and its
    /// copy to the host; [`Backend::read_top_k`] waits for them, so that the host can queue
    /// the next batch first.
    fn top_k(
        &self,
        shape: Shape,
        scores: &Self::Buffer,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<Self::TopK> {
        check_buffer(self, "top-k scores", scores, shape.len())?;
        if let Some(x) = exclude {
            check_sparse_columns("exclusions", x, shape, first_column)?;
        }
        self.top_k_unchecked(shape, scores, k, exclude, first_column)
    }

    /// [`Backend::top_k`] of an output layer's activations `a = f(z + bias)` (of `shape`),
    /// given its products `z`: the activations [`Backend::activation_forward`] would write,
    /// ranked as `top_k` ranks them. By default it computes them into `a` first; a device may
    /// instead apply an element-wise activation as it reads the products, so that a wide
    /// layer's activations never go to memory. `z` and `a` are scratch afterwards.
    #[allow(clippy::too_many_arguments)]
    fn top_k_activated(
        &self,
        activation: Activation,
        shape: Shape,
        bias: Option<&Self::Buffer>,
        z: &mut Self::Buffer,
        slope: Option<&Self::Buffer>,
        a: &mut Self::Buffer,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<Self::TopK> {
        check_buffer(self, "top-k products", z, shape.len())?;
        check_buffer(self, "top-k activations", a, shape.len())?;
        check_units(self, "bias", bias, shape.cols)?;
        check_units(self, "slopes", slope, shape.cols)?;
        if let Some(x) = exclude {
            check_sparse_columns("exclusions", x, shape, first_column)?;
        }
        self.top_k_activated_unchecked(
            activation,
            shape,
            bias,
            z,
            slope,
            a,
            k,
            exclude,
            first_column,
        )
    }

    /// The `rows * k` columns and scores of a [`Backend::top_k`]; a row with fewer than `k`
    /// candidates is padded with column `u32::MAX` and score `-inf`.
    fn read_top_k(&self, top: Self::TopK) -> Result<(Vec<u32>, Vec<f32>)>;

    /// [`Backend::read_top_k`] onto the ends of `columns` and `scores`; a device copies
    /// straight from its read-back buffers, without a vector per batch in between.
    fn append_top_k(
        &self,
        top: Self::TopK,
        columns: &mut Vec<u32>,
        scores: &mut Vec<f32>,
    ) -> Result<()> {
        let (more_columns, more_scores) = self.read_top_k(top)?;
        columns.extend(more_columns);
        scores.extend(more_scores);
        Ok(())
    }

    // What a device implements: each operation above without its checks, which have passed.

    /// [`Backend::write`], checked.
    fn write_unchecked(&self, host: &[f32], buffer: &mut Self::Buffer) -> Result<()>;
    /// [`Backend::fill`], checked.
    fn fill_unchecked(&self, buffer: &mut Self::Buffer, len: usize, value: f32) -> Result<()>;
    /// [`Backend::axpy`], checked.
    fn axpy_unchecked(
        &self,
        len: usize,
        alpha: f32,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::gather_sparse`], checked.
    fn gather_sparse_unchecked(
        &self,
        entries: &ResidentEntries<Self>,
        width: usize,
        offsets: &[u32],
        sources: &[u64],
        denoising: Option<(f32, u64)>,
    ) -> Result<SparseBatch<Self>>;
    /// [`Backend::gemm`], checked.
    fn gemm_unchecked(
        &self,
        shape: GemmShape,
        alpha: f32,
        a: &Self::Buffer,
        b: &Self::Buffer,
        beta: f32,
        c: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::sparse_matmul`], checked.
    fn sparse_matmul_unchecked(
        &self,
        x: &SparseBatch<Self>,
        w: &Self::Buffer,
        n: usize,
        beta: f32,
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::sparse_transpose_matmul`], checked.
    fn sparse_transpose_matmul_unchecked(
        &self,
        x: &SparseBatch<Self>,
        delta: &Self::Buffer,
        n: usize,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::bias_gradient`], checked.
    fn bias_gradient_unchecked(
        &self,
        shape: Shape,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::activation_forward`], checked.
    fn activation_forward_unchecked(
        &self,
        activation: Activation,
        shape: Shape,
        bias: Option<&Self::Buffer>,
        z: &mut Self::Buffer,
        slope: Option<&Self::Buffer>,
        a: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::activation_backward`], checked.
    fn activation_backward_unchecked(
        &self,
        activation: Activation,
        shape: Shape,
        z: &Self::Buffer,
        a: &Self::Buffer,
        slope: Option<&Self::Buffer>,
        delta: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::slope_gradient`], checked.
    fn slope_gradient_unchecked(
        &self,
        shape: Shape,
        z: &Self::Buffer,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::output_delta`], checked.
    fn output_delta_unchecked(
        &self,
        output: OutputLayer<'_, Self>,
        shape: Shape,
        z: &Self::Buffer,
        target: Target<'_, Self>,
        delta: &mut Self::Buffer,
        loss: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::sparseness_penalty`], checked.
    fn sparseness_penalty_unchecked(
        &self,
        shape: Shape,
        a: &Self::Buffer,
        p: f32,
        beta: f32,
        delta: &mut Self::Buffer,
        loss: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::dropout`], checked, on a matrix that is not empty.
    fn dropout_unchecked(
        &self,
        shape: Shape,
        window: ColumnWindow,
        p: f32,
        seed: u64,
        x: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::copy_matrix`], checked, of a matrix that is not empty.
    fn copy_matrix_unchecked(
        &self,
        shape: Shape,
        src: &Self::Buffer,
        from: Strided,
        dst: &mut Self::Buffer,
        to: Strided,
        accumulate: bool,
    ) -> Result<()>;
    /// [`Backend::optimizer_step`], checked.
    fn optimizer_step_unchecked(
        &self,
        step: &OptimizerStep,
        len: usize,
        params: &mut Self::Buffer,
        grad: &Self::Buffer,
        state: &mut [Self::Buffer],
    ) -> Result<()>;
    /// [`Backend::max_norm`], checked.
    fn max_norm_unchecked(&self, shape: Shape, max_norm: f32, w: &mut Self::Buffer) -> Result<()>;

    /// [`Backend::top_k`], checked.
    fn top_k_unchecked(
        &self,
        shape: Shape,
        scores: &Self::Buffer,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<Self::TopK>;
    /// [`Backend::top_k_activated`], checked: the activations, then their top-K.
    #[allow(clippy::too_many_arguments)]
    fn top_k_activated_unchecked(
        &self,
        activation: Activation,
        shape: Shape,
        bias: Option<&Self::Buffer>,
        z: &mut Self::Buffer,
        slope: Option<&Self::Buffer>,
        a: &mut Self::Buffer,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<Self::TopK> {
        self.activation_forward_unchecked(activation, shape, bias, z, slope, a)?;
        self.top_k_unchecked(shape, a, k, exclude, first_column)
    }
}
