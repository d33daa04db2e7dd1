//! The CPU backend: multi-threaded with rayon, dense products through the `gemm` crate, and
//! sparse kernels that touch only the weight rows a batch uses.

mod dense;
mod elementwise;
mod optimizer;
mod output;
pub(crate) mod simd;
mod sparse;
mod top_k;

use super::{
    check_sparse_target, Backend, ColumnWindow, GemmShape, OptimizerStep, OutputActivation,
    ResidentEntries, SparseBatch, Strided, Target,
};
use crate::config::{Activation, ErrorFunction};
use crate::error::{Error, Result};
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

fn check_len(what: &str, buffer: &[f32], needed: usize) -> Result<()> {
    if buffer.len() < needed {
        return Err(Error::Dimension(format!(
            "{what}: buffer holds {} values, {needed} needed",
            buffer.len()
        )));
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Buffer = Vec<f32>;
    type Indices = Vec<u32>;
    type TopK = (Vec<u32>, Vec<f32>);

    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }

    fn write(&self, host: &[f32], buffer: &mut Vec<f32>) -> Result<()> {
        check_len("write", buffer, host.len())?;
        buffer[..host.len()].copy_from_slice(host);
        Ok(())
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

    fn gather_sparse(
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
        )?;
        Ok(SparseBatch {
            rows: offsets.len().saturating_sub(1),
            width,
            nnz: indices.len(),
            offsets: offsets.to_vec(),
            indices,
            values,
        })
    }

    fn fill(&self, buffer: &mut Vec<f32>, len: usize, value: f32) -> Result<()> {
        check_len("fill", buffer, len)?;
        buffer[..len].fill(value);
        Ok(())
    }

    fn axpy(&self, len: usize, alpha: f32, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        check_len("axpy", x, len)?;
        check_len("axpy", y, len)?;
        y[..len]
            .iter_mut()
            .zip(&x[..len])
            .for_each(|(y, x)| *y += alpha * x);
        Ok(())
    }

    fn gemm(
        &self,
        shape: GemmShape,
        alpha: f32,
        a: &Vec<f32>,
        b: &Vec<f32>,
        beta: f32,
        c: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("gemm A", a, shape.m * shape.k)?;
        check_len("gemm B", b, shape.k * shape.n)?;
        check_len("gemm C", c, shape.m * shape.n)?;
        dense::gemm(self.threads, shape, alpha, a, b, beta, c);
        Ok(())
    }

    fn sparse_matmul(
        &self,
        x: &SparseBatch<Self>,
        w: &Vec<f32>,
        n: usize,
        beta: f32,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("sparse product weights", w, x.width * n)?;
        check_len("sparse product output", out, x.rows * n)?;
        sparse::matmul(&host_sparse(x), w, n, beta, out);
        Ok(())
    }

    fn sparse_transpose_matmul(
        &self,
        x: &SparseBatch<Self>,
        delta: &Vec<f32>,
        n: usize,
        alpha: f32,
        grad: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("sparse gradient delta", delta, x.rows * n)?;
        check_len("sparse gradient", grad, x.width * n)?;
        sparse::transpose_matmul(&host_sparse(x), delta, n, alpha, grad);
        Ok(())
    }

    fn bias_gradient(
        &self,
        rows: usize,
        cols: usize,
        delta: &Vec<f32>,
        alpha: f32,
        grad: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("bias gradient delta", delta, rows * cols)?;
        check_len("bias gradient", grad, cols)?;
        elementwise::bias_gradient(rows, cols, delta, alpha, grad);
        Ok(())
    }

    fn activation_forward(
        &self,
        activation: Activation,
        rows: usize,
        cols: usize,
        bias: Option<&Vec<f32>>,
        z: &mut Vec<f32>,
        slope: Option<&Vec<f32>>,
        a: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("activation input", z, rows * cols)?;
        check_len("activation output", a, rows * cols)?;
        if let Some(bias) = bias {
            check_len("bias", bias, cols)?;
        }
        let len = rows * cols;
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

    fn activation_backward(
        &self,
        activation: Activation,
        rows: usize,
        cols: usize,
        z: &Vec<f32>,
        a: &Vec<f32>,
        slope: Option<&Vec<f32>>,
        delta: &mut Vec<f32>,
    ) -> Result<()> {
        let len = rows * cols;
        check_len("activation delta", delta, len)?;
        elementwise::activation_backward(
            activation,
            cols,
            &z[..len],
            &a[..len],
            slope.map(|s| &s[..]),
            &mut delta[..len],
        );
        Ok(())
    }

    fn slope_gradient(
        &self,
        rows: usize,
        cols: usize,
        z: &Vec<f32>,
        delta: &Vec<f32>,
        alpha: f32,
        grad: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("slope gradient", grad, cols)?;
        elementwise::slope_gradient(rows, cols, z, delta, alpha, grad);
        Ok(())
    }

    fn output_delta(
        &self,
        error: ErrorFunction,
        output: OutputActivation<'_, Self>,
        rows: usize,
        cols: usize,
        z: &Vec<f32>,
        target: Target<'_, Self>,
        delta: &mut Vec<f32>,
        loss: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("output sums", z, rows * cols)?;
        check_len("output delta", delta, rows * cols)?;
        if let Some(bias) = output.bias {
            check_len("bias", bias, cols)?;
        }
        let sparse;
        let target = match target {
            Target::Dense(t) => {
                check_len("dense target", t, rows * cols)?;
                output::RowTarget::Dense(t)
            }
            Target::Sparse {
                entries: x,
                first_column,
            } => {
                check_sparse_target(x, rows, cols, first_column)?;
                sparse = host_sparse(x);
                output::RowTarget::Sparse {
                    entries: &sparse,
                    first_column,
                }
            }
        };
        let units = output::OutputUnits {
            activation: output.activation,
            bias: output.bias.map(|b| &b[..cols]),
            slope: output.slope.map(|s| &s[..cols]),
        };
        loss[0] += output::output_delta(error, units, rows, cols, z, target, delta);
        Ok(())
    }

    fn sparseness_penalty(
        &self,
        rows: usize,
        cols: usize,
        a: &Vec<f32>,
        p: f32,
        beta: f32,
        delta: &mut Vec<f32>,
        loss: &mut Vec<f32>,
    ) -> Result<()> {
        loss[0] += elementwise::sparseness_penalty(rows, cols, a, p, beta, delta);
        Ok(())
    }

    fn dropout(
        &self,
        rows: usize,
        cols: usize,
        window: ColumnWindow,
        p: f32,
        seed: u64,
        x: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("dropout", x, rows * cols)?;
        elementwise::dropout(cols, window, p, seed, &mut x[..rows * cols]);
        Ok(())
    }

    fn copy_matrix(
        &self,
        rows: usize,
        cols: usize,
        src: &Vec<f32>,
        from: Strided,
        dst: &mut Vec<f32>,
        to: Strided,
        accumulate: bool,
    ) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        check_len(
            "copy source",
            src,
            from.offset + (rows - 1) * from.stride + cols,
        )?;
        check_len(
            "copy target",
            dst,
            to.offset + (rows - 1) * to.stride + cols,
        )?;
        for r in 0..rows {
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

    fn optimizer_step(
        &self,
        step: &OptimizerStep,
        len: usize,
        params: &mut Vec<f32>,
        grad: &Vec<f32>,
        state: &mut [Vec<f32>],
    ) -> Result<()> {
        check_len("optimizer gradient", grad, len)?;
        if state.len() != step.kind.state_count() || state.iter().any(|s| s.len() < len) {
            return Err(Error::Dimension(format!(
                "optimizer {:?} needs {} state buffers of {len} values",
                step.kind,
                step.kind.state_count()
            )));
        }
        optimizer::step(step, &mut params[..len], &grad[..len], state);
        Ok(())
    }

    fn max_norm(&self, rows: usize, cols: usize, max_norm: f32, w: &mut Vec<f32>) -> Result<()> {
        check_len("max norm", w, rows * cols)?;
        optimizer::max_norm(rows, cols, max_norm, w);
        Ok(())
    }

    fn top_k(
        &self,
        rows: usize,
        cols: usize,
        scores: &Vec<f32>,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        check_len("top-k scores", scores, rows * cols)?;
        let exclude = exclude.map(host_sparse);
        Ok(top_k::top_k(
            rows,
            cols,
            scores,
            k,
            exclude.as_ref(),
            first_column,
        ))
    }

    fn read_top_k(&self, top: (Vec<u32>, Vec<f32>)) -> Result<(Vec<u32>, Vec<f32>)> {
        Ok(top)
    }
}
