//! Convolutions through cuDNN where it is installed (`cudnn.rs`), else as cuBLAS products,
//! the same values either way. A chunk of samples at a time is unrolled into columns
//! (`im2col` in `kernels/convolution.cu`): a row for each input channel and window offset, a
//! column for each sample and output position, so that the convolution of each sample is the
//! filters times its columns, and the filters' gradient over the chunk is one product of
//! the deltas and all the columns. A chunk holds as many samples as fit the backend's scratch
//! bound ([`CudaBackend::with_convolution_scratch`]); the scratch is asked of the
//! stream-ordered pool at each call, and the pool keeps freed memory (see `device.rs`), so
//! that the next call gets it back without the driver.

use crate::cudnn::Pass;
use crate::dense::{Batch, Matrix};
use crate::kernels::Kernel;
use crate::sliding::Geometry;
use crate::{elements, groups_config, CudaBackend};
use cudarc::driver::{CudaSlice, PushKernelArg};
use destiny_core::backend::{GemmShape, Grid, Sliding};
use destiny_core::error::Result;

/// The matrices of a convolution: the filters are `filters x k`, each sample's columns
/// `k x positions` and its output `filters x positions`.
#[derive(Debug, Clone, Copy)]
struct Unrolled {
    /// Rows of the columns: input channels times window offsets.
    k: usize,
    /// Output positions.
    positions: usize,
    /// Output channels.
    filters: usize,
}

impl Unrolled {
    fn new(sliding: &Sliding) -> Self {
        Unrolled {
            k: sliding.input.channels * sliding.window.size(),
            positions: sliding.output.positions(),
            filters: sliding.output.channels,
        }
    }
}

/// A product of row-major matrices, none transposed unless said.
fn shape(m: usize, n: usize, k: usize) -> GemmShape {
    GemmShape {
        m,
        n,
        k,
        transpose_a: false,
        transpose_b: false,
    }
}

impl CudaBackend {
    /// [`Backend::convolution_forward`](destiny_core::backend::Backend::convolution_forward)
    /// after its checks: each sample's output is the filters times its columns.
    pub(crate) fn convolve(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        beta: f32,
        z: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let pass = Pass::Forward {
            x,
            w,
            beta,
            z: &mut *z,
        };
        if self.cudnn_convolution(sliding, rows, pass)? {
            return Ok(());
        }
        let Unrolled {
            k,
            positions: p,
            filters,
        } = Unrolled::new(&sliding);
        if rows == 0 || filters == 0 {
            return Ok(());
        }
        let chunk = self.chunk(rows, k * p);
        let mut columns = self.allocate::<f32>((chunk * k * p).max(1))?;
        for first in (0..rows).step_by(chunk) {
            let samples = chunk.min(rows - first);
            self.unroll(sliding, first, samples, x, &mut columns)?;
            let batch = Batch {
                count: samples,
                a: Matrix {
                    offset: 0,
                    ld: k,
                    stride: 0,
                },
                b: Matrix {
                    offset: 0,
                    ld: samples * p,
                    stride: p,
                },
                c: Matrix {
                    offset: first * filters * p,
                    ld: p,
                    stride: filters * p,
                },
            };
            self.batched_product(shape(filters, p, k), batch, 1.0, w, &columns, beta, z)?;
        }
        Ok(())
    }

    /// [`Backend::convolution_backward_data`](destiny_core::backend::Backend::convolution_backward_data)
    /// after its checks: each sample's columns of deltas are the transposed filters times its
    /// output deltas, rolled back onto the input deltas.
    pub(crate) fn convolution_input_deltas(
        &self,
        sliding: Sliding,
        rows: usize,
        delta: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let pass = Pass::Data {
            delta,
            w,
            dx: &mut *dx,
        };
        if self.cudnn_convolution(sliding, rows, pass)? {
            return Ok(());
        }
        let Unrolled {
            k,
            positions: p,
            filters,
        } = Unrolled::new(&sliding);
        if rows == 0 || k == 0 {
            return Ok(());
        }
        let chunk = self.chunk(rows, k * p);
        let mut columns = self.allocate::<f32>(chunk * k * p)?;
        for first in (0..rows).step_by(chunk) {
            let samples = chunk.min(rows - first);
            let batch = Batch {
                count: samples,
                a: Matrix {
                    offset: 0,
                    ld: k,
                    stride: 0,
                },
                b: Matrix {
                    offset: first * filters * p,
                    ld: p,
                    stride: filters * p,
                },
                c: Matrix {
                    offset: 0,
                    ld: samples * p,
                    stride: p,
                },
            };
            let transposed = GemmShape {
                transpose_a: true,
                ..shape(k, p, filters)
            };
            // Every column is written (beta 0 reads none), then every one is read.
            self.batched_product(transposed, batch, 1.0, w, delta, 0.0, &mut columns)?;
            launch!(
                self,
                Kernel::Col2im,
                elements(samples * sliding.input.len()),
                &Geometry::from(sliding),
                &(first as u64),
                &(samples as u32),
                &columns,
                &mut *dx
            )?;
        }
        Ok(())
    }

    /// [`Backend::convolution_backward_filter`](destiny_core::backend::Backend::convolution_backward_filter)
    /// after its checks: the gradient plus `alpha` times the chunk's deltas, channel first,
    /// times its columns transposed, chunk after chunk.
    pub(crate) fn convolution_filter_gradient(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &CudaSlice<f32>,
        delta: &CudaSlice<f32>,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let pass = Pass::Filter {
            x,
            delta,
            alpha,
            grad: &mut *grad,
        };
        if self.cudnn_convolution(sliding, rows, pass)? {
            return Ok(());
        }
        let Unrolled {
            k,
            positions: p,
            filters,
        } = Unrolled::new(&sliding);
        if rows == 0 || k == 0 || filters == 0 {
            return Ok(());
        }
        let chunk = self.chunk(rows, (k + filters) * p);
        let mut columns = self.allocate::<f32>(chunk * k * p)?;
        // A chunk of one sample, or deltas of one channel, are channel first already.
        let reorder = chunk > 1 && filters > 1;
        let mut reordered = reorder
            .then(|| self.allocate::<f32>(chunk * filters * p))
            .transpose()?;
        for first in (0..rows).step_by(chunk) {
            let samples = chunk.min(rows - first);
            self.unroll(sliding, first, samples, x, &mut columns)?;
            let (deltas, offset) = match reordered.as_mut() {
                Some(reordered) => {
                    launch!(
                        self,
                        Kernel::ChannelMajor,
                        elements(samples * filters * p),
                        &(first as u64),
                        &(samples as u32),
                        &(filters as u32),
                        &(p as u32),
                        delta,
                        &mut *reordered
                    )?;
                    (&*reordered, 0)
                }
                None => (delta, first * filters * p),
            };
            let batch = Batch {
                count: 1,
                a: Matrix {
                    offset,
                    ld: samples * p,
                    stride: 0,
                },
                b: Matrix {
                    offset: 0,
                    ld: samples * p,
                    stride: 0,
                },
                c: Matrix {
                    offset: 0,
                    ld: k,
                    stride: 0,
                },
            };
            let transposed = GemmShape {
                transpose_b: true,
                ..shape(filters, k, samples * p)
            };
            self.batched_product(transposed, batch, alpha, deltas, &columns, 1.0, grad)?;
        }
        Ok(())
    }

    /// [`Backend::channel_bias`](destiny_core::backend::Backend::channel_bias) after its
    /// checks.
    pub(crate) fn add_channel_bias(
        &self,
        grid: Grid,
        rows: usize,
        bias: &CudaSlice<f32>,
        z: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = rows * grid.len();
        if n == 0 {
            return Ok(());
        }
        launch!(
            self,
            Kernel::ChannelBias,
            elements(n),
            &(n as u32),
            &(grid.channels as u32),
            &(grid.positions() as u32),
            bias,
            z
        )
    }

    /// [`Backend::channel_bias_gradient`](destiny_core::backend::Backend::channel_bias_gradient)
    /// after its checks.
    pub(crate) fn channel_bias_sums(
        &self,
        grid: Grid,
        rows: usize,
        delta: &CudaSlice<f32>,
        alpha: f32,
        grad: &mut CudaSlice<f32>,
    ) -> Result<()> {
        if rows * grid.len() == 0 {
            return Ok(());
        }
        launch!(
            self,
            Kernel::ChannelBiasGradient,
            groups_config(grid.channels, rows * grid.positions()),
            &(rows as u32),
            &(grid.channels as u32),
            &(grid.positions() as u32),
            delta,
            &alpha,
            grad
        )
    }

    /// Samples of a chunk whose scratch, `per_sample` values each, fits the bound: at least
    /// one, at most the batch.
    fn chunk(&self, rows: usize, per_sample: usize) -> usize {
        let fit = self.convolution_scratch / size_of::<f32>() / per_sample.max(1);
        fit.clamp(1, rows.max(1))
    }

    /// Unrolls `samples` samples of `x` from `first` on into `columns`.
    fn unroll(
        &self,
        sliding: Sliding,
        first: usize,
        samples: usize,
        x: &CudaSlice<f32>,
        columns: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let len = sliding.input.channels * sliding.window.size() * samples;
        launch!(
            self,
            Kernel::Im2col,
            elements(len * sliding.output.positions()),
            &Geometry::from(sliding),
            &(first as u64),
            &(samples as u32),
            x,
            columns
        )
    }
}
