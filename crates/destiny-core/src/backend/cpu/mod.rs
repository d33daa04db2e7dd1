//! The CPU backend: multi-threaded with rayon, dense products through the `gemm` crate, and
//! sparse kernels that touch only the weight rows a batch uses.

mod dense;
mod elementwise;
mod memory;
mod optimizer;
mod output;
pub(crate) mod simd;
mod sparse;
mod spatial;
mod top_k;

use super::{
    Backend, ColumnWindow, GemmShape, Grid, LocalResponse, Memory, Normalization,
    NormalizationPass, OptimizerStep, OutputLayer, Pooling, ResidentEntries, Shape, Sliding,
    SparseBatch, SpatialOperations, Strided, Target,
};
use crate::config::Activation;
use crate::error::Result;
use sparse::HostSparse;

/// Computes on the CPU's cores. Buffers are plain vectors.
#[derive(Debug, Clone)]
pub struct CpuBackend {
    threads: usize,
}

impl CpuBackend {
    /// A backend using rayon's global pool (all cores, or `RAYON_NUM_THREADS`).
    pub fn new() -> Self {
        CpuBackend {
            threads: rayon::current_num_threads(),
        }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn host_sparse(x: &SparseBatch<CpuBackend>) -> HostSparse<'_> {
    HostSparse {
        offsets: &x.offsets,
        indices: &x.indices,
        values: x.values.as_deref(),
    }
}

impl Memory for CpuBackend {
    type Buffer = Vec<f32>;

    fn buffer_len(&self, buffer: &Vec<f32>) -> usize {
        buffer.len()
    }
}

impl Backend for CpuBackend {
    type Indices = Vec<u32>;
    type TopK = (Vec<u32>, Vec<f32>);

    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn available_memory(&self) -> Option<u64> {
        memory::available()
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }

    fn download(&self, buffer: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buffer.clone())
    }

    fn upload_indices(&self, host: &[u32]) -> Result<Vec<u32>> {
        Ok(host.to_vec())
    }

    fn download_indices(&self, buffer: &Vec<u32>) -> Result<Vec<u32>> {
        Ok(buffer.clone())
    }

    fn read_top_k(&self, top: (Vec<u32>, Vec<f32>)) -> Result<(Vec<u32>, Vec<f32>)> {
        Ok(top)
    }

    fn write_unchecked(&self, host: &[f32], buffer: &mut Vec<f32>) -> Result<()> {
        buffer[..host.len()].copy_from_slice(host);
        Ok(())
    }

    fn fill_unchecked(&self, buffer: &mut Vec<f32>, len: usize, value: f32) -> Result<()> {
        elementwise::fill(&mut buffer[..len], value);
        Ok(())
    }

    fn axpy_unchecked(&self, len: usize, alpha: f32, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        elementwise::axpy(alpha, &x[..len], &mut y[..len]);
        Ok(())
    }

    fn gather_sparse_unchecked(
        &self,
        entries: &ResidentEntries<Self>,
        width: usize,
        offsets: &[u32],
        sources: &[u64],
        denoising: Option<(f32, u64)>,
    ) -> Result<SparseBatch<Self>> {
        let (indices, values) = sparse::gather(
            &entries.indices,
            entries.values.as_deref(),
            offsets,
            sources,
            denoising,
        );
        Ok(SparseBatch {
            rows: offsets.len().saturating_sub(1),
            width,
            nnz: indices.len(),
            offsets: offsets.to_vec(),
            indices,
            values,
        })
    }

    fn gemm_unchecked(
        &self,
        shape: GemmShape,
        alpha: f32,
        a: &Vec<f32>,
        b: &Vec<f32>,
        beta: f32,
        c: &mut Vec<f32>,
    ) -> Result<()> {
        dense::gemm(self.threads, shape, alpha, a, b, beta, c);
        Ok(())
    }

    fn sparse_matmul_unchecked(
        &self,
        x: &SparseBatch<Self>,
        w: &Vec<f32>,
        n: usize,
        beta: f32,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        sparse::matmul(&host_sparse(x), w, n, beta, out);
        Ok(())
    }

    fn sparse_transpose_matmul_unchecked(
        &self,
        x: &SparseBatch<Self>,
        delta: &Vec<f32>,
        n: usize,
        alpha: f32,
        grad: &mut Vec<f32>,
    ) -> Result<()> {
        sparse::transpose_matmul(&host_sparse(x), delta, n, alpha, grad);
        Ok(())
    }

    fn bias_gradient_unchecked(
        &self,
        shape: Shape,
        delta: &Vec<f32>,
        alpha: f32,
        grad: &mut Vec<f32>,
    ) -> Result<()> {
        elementwise::bias_gradient(shape.rows, shape.cols, delta, alpha, grad);
        Ok(())
    }

    fn activation_forward_unchecked(
        &self,
        activation: Activation,
        shape: Shape,
        bias: Option<&Vec<f32>>,
        z: &mut Vec<f32>,
        slope: Option<&Vec<f32>>,
        a: &mut Vec<f32>,
    ) -> Result<()> {
        let (len, cols) = (shape.len(), shape.cols);
        elementwise::activation_forward(
            activation,
            cols,
            bias.map(|b| &b[..cols]),
            &mut z[..len],
            slope.map(|s| &s[..]),
            &mut a[..len],
        );
        Ok(())
    }

    fn activation_backward_unchecked(
        &self,
        activation: Activation,
        shape: Shape,
        z: &Vec<f32>,
        a: &Vec<f32>,
        slope: Option<&Vec<f32>>,
        delta: &mut Vec<f32>,
    ) -> Result<()> {
        let len = shape.len();
        elementwise::activation_backward(
            activation,
            shape.cols,
            &z[..len],
            &a[..len],
            slope.map(|s| &s[..]),
            &mut delta[..len],
        );
        Ok(())
    }

    fn slope_gradient_unchecked(
        &self,
        shape: Shape,
        z: &Vec<f32>,
        delta: &Vec<f32>,
        alpha: f32,
        grad: &mut Vec<f32>,
    ) -> Result<()> {
        elementwise::slope_gradient(shape.rows, shape.cols, z, delta, alpha, grad);
        Ok(())
    }

    fn output_delta_unchecked(
        &self,
        output: OutputLayer<'_, Self>,
        shape: Shape,
        z: &Vec<f32>,
        target: Target<'_, Self>,
        delta: &mut Vec<f32>,
        loss: &mut Vec<f32>,
    ) -> Result<()> {
        let sparse;
        let target = match target {
            Target::Dense(t) => output::RowTarget::Dense(t),
            Target::Sparse {
                entries,
                first_column,
            } => {
                sparse = host_sparse(entries);
                output::RowTarget::Sparse {
                    entries: &sparse,
                    first_column,
                }
            }
        };
        let cols = shape.cols;
        let units = output::OutputUnits {
            activation: output.activation,
            boost: output.boost,
            bias: output.bias.map(|b| &b[..cols]),
            slope: output.slope.map(|s| &s[..cols]),
        };
        loss[0] += output::output_delta(output.error, units, shape.rows, cols, z, target, delta);
        Ok(())
    }

    fn sparseness_penalty_unchecked(
        &self,
        shape: Shape,
        a: &Vec<f32>,
        p: f32,
        beta: f32,
        delta: &mut Vec<f32>,
        loss: &mut Vec<f32>,
    ) -> Result<()> {
        loss[0] += elementwise::sparseness_penalty(shape.rows, shape.cols, a, p, beta, delta);
        Ok(())
    }

    fn dropout_unchecked(
        &self,
        shape: Shape,
        window: ColumnWindow,
        p: f32,
        seed: u64,
        x: &mut Vec<f32>,
    ) -> Result<()> {
        elementwise::dropout(shape.cols, window, p, seed, &mut x[..shape.len()]);
        Ok(())
    }

    fn copy_matrix_unchecked(
        &self,
        shape: Shape,
        src: &Vec<f32>,
        from: Strided,
        dst: &mut Vec<f32>,
        to: Strided,
        accumulate: bool,
    ) -> Result<()> {
        let cols = shape.cols;
        for r in 0..shape.rows {
            let source = &src[from.offset + r * from.stride..][..cols];
            let target = &mut dst[to.offset + r * to.stride..][..cols];
            if accumulate {
                target.iter_mut().zip(source).for_each(|(t, s)| *t += s);
            } else {
                target.copy_from_slice(source);
            }
        }
        Ok(())
    }

    fn optimizer_step_unchecked(
        &self,
        step: &OptimizerStep,
        len: usize,
        params: &mut Vec<f32>,
        grad: &Vec<f32>,
        state: &mut [Vec<f32>],
    ) -> Result<()> {
        optimizer::step(step, &mut params[..len], &grad[..len], state);
        Ok(())
    }

    fn max_norm_unchecked(&self, shape: Shape, max_norm: f32, w: &mut Vec<f32>) -> Result<()> {
        optimizer::max_norm(shape.rows, shape.cols, max_norm, w);
        Ok(())
    }

    fn top_k_unchecked(
        &self,
        shape: Shape,
        scores: &Vec<f32>,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        let exclude = exclude.map(host_sparse);
        Ok(top_k::top_k(
            shape.rows,
            shape.cols,
            scores,
            k,
            exclude.as_ref(),
            first_column,
        ))
    }

    fn top_k_activated_unchecked(
        &self,
        activation: Activation,
        shape: Shape,
        bias: Option<&Vec<f32>>,
        z: &mut Vec<f32>,
        slope: Option<&Vec<f32>>,
        _a: &mut Vec<f32>,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        let exclude = exclude.map(host_sparse);
        Ok(top_k::top_k_activated(
            activation,
            shape.rows,
            shape.cols,
            bias.map(|b| &b[..shape.cols]),
            z,
            slope.map(|s| &s[..]),
            k,
            exclude.as_ref(),
            first_column,
        ))
    }
}

impl SpatialOperations for CpuBackend {
    fn convolution_forward_unchecked(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &Vec<f32>,
        w: &Vec<f32>,
        beta: f32,
        z: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::convolution_forward(sliding, rows, x, w, beta, z);
        Ok(())
    }

    fn convolution_backward_data_unchecked(
        &self,
        sliding: Sliding,
        rows: usize,
        delta: &Vec<f32>,
        w: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::convolution_backward_data(sliding, rows, delta, w, dx);
        Ok(())
    }

    fn convolution_backward_filter_unchecked(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &Vec<f32>,
        delta: &Vec<f32>,
        alpha: f32,
        grad: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::convolution_backward_filter(sliding, rows, x, delta, alpha, grad);
        Ok(())
    }

    fn channel_bias_unchecked(
        &self,
        grid: Grid,
        rows: usize,
        bias: &Vec<f32>,
        z: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::channel_bias(grid, rows, bias, z);
        Ok(())
    }

    fn channel_bias_gradient_unchecked(
        &self,
        grid: Grid,
        rows: usize,
        delta: &Vec<f32>,
        alpha: f32,
        grad: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::channel_bias_gradient(grid, rows, delta, alpha, grad);
        Ok(())
    }

    fn pooling_forward_unchecked(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::pooling_forward(pooling, sliding, rows, x, y);
        Ok(())
    }

    fn pooling_backward_unchecked(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &Vec<f32>,
        y: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::pooling_backward(pooling, sliding, rows, x, y, dy, dx);
        Ok(())
    }

    fn local_response_forward_unchecked(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::local_response_forward(response, grid, rows, x, y);
        Ok(())
    }

    fn local_response_backward_unchecked(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &Vec<f32>,
        y: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::local_response_backward(response, grid, rows, x, y, dy, dx);
        Ok(())
    }

    fn batch_norm_forward_unchecked(
        &self,
        normalization: Normalization,
        rows: usize,
        x: &Vec<f32>,
        scale: &Vec<f32>,
        shift: &Vec<f32>,
        pass: NormalizationPass<'_, Self>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::batch_norm_forward(normalization, rows, x, scale, shift, pass, y);
        Ok(())
    }

    fn batch_norm_backward_unchecked(
        &self,
        normalization: Normalization,
        rows: usize,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        scale: &Vec<f32>,
        saved_mean: &Vec<f32>,
        saved_inverse_deviation: &Vec<f32>,
        alpha: f32,
        scale_gradient: &mut Vec<f32>,
        shift_gradient: &mut Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        spatial::batch_norm_backward(
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
        );
        Ok(())
    }
}
