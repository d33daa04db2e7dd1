//! Destiny's backend operations on one GPU.

use crate::codes::{activation_code, optimizer_code, ColumnSumsMode};
use crate::kernels::Kernel;
use crate::top_k::{Activated, PendingTopK};
use crate::{address, backend_error, columns_config, elements, rows_config, CudaBackend};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use destiny_core::backend::{
    Backend, ColumnWindow, GemmShape, Grid, LocalResponse, Memory, Normalization,
    NormalizationPass, OptimizerStep, OutputLayer, Pooling, ResidentEntries, Shape, Sliding,
    SparseBatch, SpatialOperations, Strided, Target,
};
use destiny_core::config::Activation;
use destiny_core::error::Result;
use destiny_core::math::activation::is_row_wise;

/// A block per sample and per 128 output columns, its eight warps sharing the sample's
/// entries: the sparse products (at most 16 warps, as `kernels/sparse.cu` says).
fn sparse_config(rows: usize, n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, n.div_ceil(128) as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl Memory for CudaBackend {
    type Buffer = CudaSlice<f32>;

    fn buffer_len(&self, buffer: &CudaSlice<f32>) -> usize {
        buffer.len()
    }
}

impl Backend for CudaBackend {
    type Indices = CudaSlice<u32>;
    type TopK = PendingTopK;

    fn name(&self) -> String {
        self.description()
    }

    fn available_memory(&self) -> Option<u64> {
        self.free_memory().ok()
    }

    fn zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.allocate_zeros::<f32>(len.max(1))
    }

    fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>> {
        self.upload_slice(host)
    }

    fn write_unchecked(&self, host: &[f32], buffer: &mut CudaSlice<f32>) -> Result<()> {
        self.copy_to_device(host, buffer)
    }

    fn download(&self, buffer: &CudaSlice<f32>) -> Result<Vec<f32>> {
        self.stream.clone_dtoh(buffer).map_err(backend_error)
    }

    fn upload_indices(&self, host: &[u32]) -> Result<CudaSlice<u32>> {
        self.upload_slice(host)
    }

    fn download_indices(&self, buffer: &CudaSlice<u32>) -> Result<Vec<u32>> {
        self.stream.clone_dtoh(buffer).map_err(backend_error)
    }

    fn prefers_resident_data(&self) -> bool {
        true
    }

    fn gather_sparse_unchecked(
        &self,
        entries: &ResidentEntries<Self>,
        width: usize,
        offsets: &[u32],
        sources: &[u64],
        denoising: Option<(f32, u64)>,
    ) -> Result<SparseBatch<Self>> {
        let rows = offsets.len().saturating_sub(1);
        let nnz = offsets.last().copied().unwrap_or(0) as usize;
        let device_offsets = self.upload_slice(offsets)?;
        // The kernel writes every entry of the batch.
        let mut indices = self.allocate::<u32>(nnz)?;
        let values = (entries.values.is_some() || denoising.is_some())
            .then(|| self.allocate::<f32>(nnz))
            .transpose()?;
        if nnz > 0 {
            let (p, seed) = denoising.unwrap_or((0.0, 0));
            launch!(
                self,
                Kernel::GatherRows,
                LaunchConfig {
                    grid_dim: (rows as u32, 1, 1),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                },
                &device_offsets,
                &self.upload_slice(sources)?,
                &entries.indices,
                &address(entries.values.as_ref()),
                &p,
                &seed,
                &mut indices,
                &address(values.as_ref())
            )?;
        }
        Ok(SparseBatch {
            rows,
            width,
            nnz,
            offsets: device_offsets,
            indices,
            values,
        })
    }

    fn fill_unchecked(&self, buffer: &mut CudaSlice<f32>, len: usize, value: f32) -> Result<()> {
        launch!(
            self,
            Kernel::Fill,
            elements(len),
            buffer,
            &(len as u32),
            &value
        )
    }

    fn axpy_unchecked(
        &self,
        len: usize,
        alpha: f32,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        launch!(
            self,
            Kernel::Axpy,
            elements(len),
            &(len as u32),
            &alpha,
            x,
            y
        )
    }

    fn gemm_unchecked(
        &self,
        shape: GemmShape,
        alpha: f32,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        beta: f32,
        c: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.dense_product(shape, alpha, a, b, beta, c)
    }

    fn sparse_matmul_unchecked(
        &self,
        x: &SparseBatch<Self>,
        w: &CudaSlice<f32>,
        n: usize,
        beta: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        if x.rows == 0 {
            return Ok(());
        }
        launch!(
            self,
            Kernel::SparseMatmul,
            sparse_config(x.rows, n),
            &(n as u32),
            &x.offsets,
            &x.indices,
            &address(x.values.as_ref()),
            w,
            &beta,
            out
        )
    }

    fn sparse_transpose_matmul_unchecked(
        &self,
        x: &SparseBatch<Self>,
        delta: &CudaSlice<f32>,
        n: usize,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        if x.rows == 0 {
            return Ok(());
        }
        launch!(
            self,
            Kernel::SparseTransposeMatmul,
            sparse_config(x.rows, n),
            &(n as u32),
            &x.offsets,
            &x.indices,
            &address(x.values.as_ref()),
            delta,
            &alpha,
            grad
        )
    }

    fn bias_gradient_unchecked(
        &self,
        shape: Shape,
        delta: &CudaSlice<f32>,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let Shape { rows, cols } = shape;
        launch!(
            self,
            Kernel::ColumnSums,
            columns_config(rows, cols),
            &(rows as u32),
            &(cols as u32),
            delta,
            delta,
            &ColumnSumsMode::Sum,
            &alpha,
            grad
        )
    }

    fn activation_forward_unchecked(
        &self,
        activation: Activation,
        shape: Shape,
        bias: Option<&CudaSlice<f32>>,
        z: &mut CudaSlice<f32>,
        slope: Option<&CudaSlice<f32>>,
        a: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let Shape { rows, cols } = shape;
        let len = rows * cols;
        if len == 0 {
            return Ok(());
        }
        let (kind, p1, p2) = activation_code(activation);
        if is_row_wise(activation) {
            return launch!(
                self,
                Kernel::RowwiseForward,
                rows_config(rows),
                &(cols as u32),
                &kind,
                &address(bias),
                z,
                a
            );
        }
        launch!(
            self,
            Kernel::ActivationForward,
            elements(len),
            &(len as u32),
            &(cols as u32),
            &kind,
            &p1,
            &p2,
            &address(bias),
            z,
            &address(slope),
            a
        )
    }

    fn activation_backward_unchecked(
        &self,
        activation: Activation,
        shape: Shape,
        z: &CudaSlice<f32>,
        a: &CudaSlice<f32>,
        slope: Option<&CudaSlice<f32>>,
        delta: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let Shape { rows, cols } = shape;
        let len = rows * cols;
        if len == 0 {
            return Ok(());
        }
        let (kind, p1, p2) = activation_code(activation);
        if is_row_wise(activation) {
            return launch!(
                self,
                Kernel::RowwiseBackward,
                rows_config(rows),
                &(cols as u32),
                &kind,
                z,
                a,
                delta
            );
        }
        launch!(
            self,
            Kernel::ActivationBackward,
            elements(len),
            &(len as u32),
            &(cols as u32),
            &kind,
            &p1,
            &p2,
            z,
            a,
            &address(slope),
            delta
        )
    }

    fn slope_gradient_unchecked(
        &self,
        shape: Shape,
        z: &CudaSlice<f32>,
        delta: &CudaSlice<f32>,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let Shape { rows, cols } = shape;
        launch!(
            self,
            Kernel::ColumnSums,
            columns_config(rows, cols),
            &(rows as u32),
            &(cols as u32),
            z,
            delta,
            &ColumnSumsMode::Slope,
            &alpha,
            grad
        )
    }

    fn output_delta_unchecked(
        &self,
        output: OutputLayer<'_, Self>,
        shape: Shape,
        z: &CudaSlice<f32>,
        target: Target<'_, Self>,
        delta: &mut CudaSlice<f32>,
        loss: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.output_pass(output, shape, z, target, delta, loss)
    }

    fn sparseness_penalty_unchecked(
        &self,
        shape: Shape,
        a: &CudaSlice<f32>,
        p: f32,
        beta: f32,
        delta: &mut CudaSlice<f32>,
        loss: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let Shape { rows, cols } = shape;
        let mut means = self.zeros(cols)?;
        let mean_scale = 1.0 / rows as f32;
        launch!(
            self,
            Kernel::ColumnSums,
            columns_config(rows, cols),
            &(rows as u32),
            &(cols as u32),
            a,
            a,
            &ColumnSumsMode::Sum,
            &mean_scale,
            &mut means
        )?;
        launch!(
            self,
            Kernel::SparsenessGradient,
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
            Kernel::SparsenessLoss,
            rows_config(1),
            &(rows as u32),
            &(cols as u32),
            &means,
            &p,
            &beta,
            loss
        )
    }

    fn dropout_unchecked(
        &self,
        shape: Shape,
        window: ColumnWindow,
        p: f32,
        seed: u64,
        x: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (len, cols) = (shape.len(), shape.cols);
        launch!(
            self,
            Kernel::Dropout,
            elements(len),
            &(len as u32),
            &(cols as u32),
            &(window.offset as u64),
            &(window.total as u64),
            &p,
            &seed,
            x
        )
    }

    fn copy_matrix_unchecked(
        &self,
        shape: Shape,
        src: &CudaSlice<f32>,
        from: Strided,
        dst: &mut CudaSlice<f32>,
        to: Strided,
        accumulate: bool,
    ) -> Result<()> {
        let Shape { rows, cols } = shape;
        launch!(
            self,
            Kernel::CopyMatrix,
            elements(rows * cols),
            &((rows * cols) as u32),
            &(cols as u32),
            src,
            &(from.offset as u64),
            &(from.stride as u64),
            dst,
            &(to.offset as u64),
            &(to.stride as u64),
            &(accumulate as i32)
        )
    }

    fn optimizer_step_unchecked(
        &self,
        step: &OptimizerStep,
        len: usize,
        params: &mut CudaSlice<f32>,
        grad: &CudaSlice<f32>,
        state: &mut [CudaSlice<f32>],
    ) -> Result<()> {
        let (kind, p1, p2, epsilon) = optimizer_code(step.kind);
        let (c1, c2) = step.bias_corrections();
        // Optimizers without state never touch the state arguments: they are null.
        launch!(
            self,
            Kernel::OptimizerStep,
            elements(len),
            &(len as u32),
            &kind,
            &step.learning_rate,
            &step.l1,
            &step.l2,
            &p1,
            &p2,
            &epsilon,
            &c1,
            &c2,
            params,
            grad,
            &address(state.first()),
            &address(state.get(1))
        )
    }

    fn max_norm_unchecked(
        &self,
        shape: Shape,
        max_norm: f32,
        w: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let Shape { rows, cols } = shape;
        let mut squares = self.zeros(cols)?;
        launch!(
            self,
            Kernel::ColumnSums,
            columns_config(rows, cols),
            &(rows as u32),
            &(cols as u32),
            &*w,
            &*w,
            &ColumnSumsMode::Squares,
            &1.0f32,
            &mut squares
        )?;
        launch!(
            self,
            Kernel::ScaleLongColumns,
            elements(rows * cols),
            &((rows * cols) as u32),
            &(cols as u32),
            &squares,
            &max_norm,
            w
        )
    }

    fn top_k_unchecked(
        &self,
        shape: Shape,
        scores: &CudaSlice<f32>,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<PendingTopK> {
        self.top_k_rows(shape, scores, None, k, exclude, first_column)
    }

    fn top_k_activated_unchecked(
        &self,
        activation: Activation,
        shape: Shape,
        bias: Option<&CudaSlice<f32>>,
        z: &mut CudaSlice<f32>,
        slope: Option<&CudaSlice<f32>>,
        a: &mut CudaSlice<f32>,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<PendingTopK> {
        if is_row_wise(activation) {
            // Each score needs its whole row first.
            self.activation_forward_unchecked(activation, shape, bias, z, slope, a)?;
            return self.top_k_rows(shape, a, None, k, exclude, first_column);
        }
        let (kind, p1, p2) = activation_code(activation);
        let activated = Activated {
            kind,
            p1,
            p2,
            bias,
            slope,
        };
        self.top_k_rows(shape, z, Some(activated), k, exclude, first_column)
    }

    fn read_top_k(&self, top: PendingTopK) -> Result<(Vec<u32>, Vec<f32>)> {
        let (mut columns, mut scores) = (Vec::new(), Vec::new());
        self.append_top_k_rows(top, &mut columns, &mut scores)?;
        Ok((columns, scores))
    }

    fn append_top_k(
        &self,
        top: PendingTopK,
        columns: &mut Vec<u32>,
        scores: &mut Vec<f32>,
    ) -> Result<()> {
        self.append_top_k_rows(top, columns, scores)
    }
}

impl SpatialOperations for CudaBackend {
    fn convolution_forward_unchecked(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        beta: f32,
        z: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.convolve(sliding, rows, x, w, beta, z)
    }

    fn convolution_backward_data_unchecked(
        &self,
        sliding: Sliding,
        rows: usize,
        delta: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.convolution_input_deltas(sliding, rows, delta, w, dx)
    }

    fn convolution_backward_filter_unchecked(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &CudaSlice<f32>,
        delta: &CudaSlice<f32>,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.convolution_filter_gradient(sliding, rows, x, delta, alpha, grad)
    }

    fn channel_bias_unchecked(
        &self,
        grid: Grid,
        rows: usize,
        bias: &CudaSlice<f32>,
        z: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.add_channel_bias(grid, rows, bias, z)
    }

    fn channel_bias_gradient_unchecked(
        &self,
        grid: Grid,
        rows: usize,
        delta: &CudaSlice<f32>,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.channel_bias_sums(grid, rows, delta, alpha, grad)
    }

    fn pooling_forward_unchecked(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.pool(pooling, sliding, rows, x, y)
    }

    fn pooling_backward_unchecked(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &CudaSlice<f32>,
        _y: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.pooling_deltas(pooling, sliding, rows, x, dy, dx)
    }

    fn local_response_forward_unchecked(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.normalize_responses(response, grid, rows, x, y)
    }

    fn local_response_backward_unchecked(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.local_response_deltas(response, grid, rows, x, y, dy, dx)
    }

    fn batch_norm_forward_unchecked(
        &self,
        normalization: Normalization,
        rows: usize,
        x: &CudaSlice<f32>,
        scale: &CudaSlice<f32>,
        shift: &CudaSlice<f32>,
        pass: NormalizationPass<'_, Self>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.batch_normalize(normalization, rows, x, scale, shift, pass, y)
    }

    fn batch_norm_backward_unchecked(
        &self,
        normalization: Normalization,
        rows: usize,
        x: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        scale: &CudaSlice<f32>,
        saved_mean: &CudaSlice<f32>,
        saved_inverse_deviation: &CudaSlice<f32>,
        alpha: f32,
        scale_gradient: &mut CudaSlice<f32>,
        shift_gradient: &mut CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.batch_norm_deltas(
            normalization,
            rows,
            x,
            dy,
            scale,
            saved_mean,
            saved_inverse_deviation,
            alpha,
            scale_gradient,
            shift_gradient,
            dx,
        )
    }
}
