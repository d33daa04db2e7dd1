//! The spatial layers' operands and operations: convolution, pooling, local response
//! normalisation and batch normalisation, over units laid out as channels of a grid. Their
//! operations are a trait of their own, which [`Backend`](super::Backend) includes, checked
//! as every operation is (see the [module](super) documentation).

use super::checks::{check_buffer, check_local_response, check_pooling, check_sliding};
use super::Memory;
use crate::error::Result;

/// How one sample's units are laid out: `channels` planes of up to three spatial dimensions
/// (unused ones are 1). Unit `(x, y, z)` of channel `c` is at `x + X * (y + Y * (z + Z * c))`,
/// DSSTNE's layout (cuDNN's NCHW with the channel outermost after the sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Grid {
    /// Extent of each spatial dimension `[X, Y, Z]`.
    pub spatial: [usize; 3],
    pub channels: usize,
}

impl Grid {
    /// A grid of `channels` planes, each `spatial`.
    pub fn new(spatial: [usize; 3], channels: usize) -> Self {
        Grid { spatial, channels }
    }

    /// `units` channels of a single position: a fully connected layer seen as a grid.
    pub fn flat(units: usize) -> Self {
        Grid::new([1, 1, 1], units)
    }

    /// Positions in one channel.
    pub fn positions(&self) -> usize {
        self.spatial.iter().product()
    }

    /// Units of one sample.
    pub fn len(&self) -> usize {
        self.positions() * self.channels
    }

    /// True for a grid without units.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A window sliding over the spatial dimensions: output position `o` of dimension `d` reads
/// input positions `o * stride[d] - padding[d] + i` for `i` in `0..kernel[d]`. Positions
/// outside the input read as zero in a convolution and are left out of a pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    /// Positions before the input's first that the window may start at.
    pub padding: [usize; 3],
}

impl Window {
    /// Positions the window covers.
    pub fn size(&self) -> usize {
        self.kernel.iter().product()
    }
}

/// A window sliding from one grid to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sliding {
    pub input: Grid,
    pub output: Grid,
    pub window: Window,
}

impl Sliding {
    /// Values of a convolution's filter bank: one filter of `input.channels x kernel` per
    /// output channel, stored `[output channel][input channel][z][y][x]`.
    pub fn filter_len(&self) -> usize {
        self.output.channels * self.input.channels * self.window.size()
    }
}

/// What a pooling takes of each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The largest value; where several are equal, the first in the window (z, then y, then
    /// x, outermost first) receives the gradient.
    Max,
    /// The mean of the window's positions inside the input (padding is not counted).
    Average,
}

/// Local response normalisation across channels, cuDNN's and DSSTNE's definition:
/// `y_c = x_c / (k + alpha / n * sum_{c'} x_{c'}^2)^beta`, the sum over channels
/// `c - (n - 1) / 2 ..= c + n / 2` that exist, at the same position.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LocalResponse {
    pub k: f32,
    pub n: usize,
    pub alpha: f32,
    pub beta: f32,
}

impl LocalResponse {
    /// DSSTNE's defaults: `k = 2, n = 5, alpha = 1e-4, beta = 0.75`.
    pub const DSSTNE: LocalResponse = LocalResponse {
        k: 2.0,
        n: 5,
        alpha: 1e-4,
        beta: 0.75,
    };
}

/// Batch normalisation of a layer's units: each unit over the batch (fully connected layers,
/// cuDNN's per-activation mode), or each channel over the batch and all its positions
/// (convolutional layers, spatial mode). `x_hat = (x - mean) / sqrt(variance + epsilon)` with
/// the batch's mean and biased variance, then `y = scale * x_hat + shift`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub grid: Grid,
    pub per_channel: bool,
    pub epsilon: f32,
}

impl Normalization {
    /// cuDNN's `CUDNN_BN_MIN_EPSILON`, the epsilon DSSTNE passes.
    pub const EPSILON: f32 = 1e-5;

    /// How many groups are normalised apart: the length of the scale, shift and statistics.
    pub fn groups(&self) -> usize {
        if self.per_channel {
            self.grid.channels
        } else {
            self.grid.len()
        }
    }
}

/// The statistics a batch normalisation reads or keeps.
pub enum NormalizationPass<'a, B: Memory + ?Sized> {
    /// Training: normalises with the batch's statistics, saves the mean and `1 / sqrt(variance
    /// + epsilon)` for the backward pass, and moves the running statistics towards the
    /// batch's: `running = (1 - factor) * running + factor * batch`, the variance unbiased
    /// (`variance * N / (N - 1)` over the `N` values of a group).
    Training {
        factor: f32,
        running_mean: &'a mut B::Buffer,
        running_variance: &'a mut B::Buffer,
        saved_mean: &'a mut B::Buffer,
        saved_inverse_deviation: &'a mut B::Buffer,
    },
    /// Evaluation and prediction: normalises with the running statistics.
    Inference {
        running_mean: &'a B::Buffer,
        running_variance: &'a B::Buffer,
    },
}

/// The operations of the spatial layers on a device: the provided methods check and are the
/// ones to call; a device implements the `*_unchecked` ones.
pub trait SpatialOperations: Memory {
    /// Convolution of `rows` samples: `z = beta * z + x (*) w`, each output unit the sum
    /// over the input channels and the window of input times filter (see [`Sliding`]).
    #[allow(clippy::too_many_arguments)]
    fn convolution_forward(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &Self::Buffer,
        w: &Self::Buffer,
        beta: f32,
        z: &mut Self::Buffer,
    ) -> Result<()> {
        check_sliding("convolution", &sliding)?;
        check_buffer(self, "convolution input", x, rows * sliding.input.len())?;
        check_buffer(self, "convolution filters", w, sliding.filter_len())?;
        check_buffer(self, "convolution output", z, rows * sliding.output.len())?;
        self.convolution_forward_unchecked(sliding, rows, x, w, beta, z)
    }

    /// The convolution's input deltas: adds `dE/dx` to `dx` from `delta = dE/dz`.
    fn convolution_backward_data(
        &self,
        sliding: Sliding,
        rows: usize,
        delta: &Self::Buffer,
        w: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        check_sliding("convolution", &sliding)?;
        check_buffer(
            self,
            "convolution delta",
            delta,
            rows * sliding.output.len(),
        )?;
        check_buffer(self, "convolution filters", w, sliding.filter_len())?;
        check_buffer(
            self,
            "convolution input delta",
            dx,
            rows * sliding.input.len(),
        )?;
        self.convolution_backward_data_unchecked(sliding, rows, delta, w, dx)
    }

    /// The filters' gradient: `grad += alpha * dE/dw` over the batch, from the input `x` and
    /// `delta = dE/dz`.
    #[allow(clippy::too_many_arguments)]
    fn convolution_backward_filter(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &Self::Buffer,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()> {
        check_sliding("convolution", &sliding)?;
        check_buffer(self, "convolution input", x, rows * sliding.input.len())?;
        check_buffer(
            self,
            "convolution delta",
            delta,
            rows * sliding.output.len(),
        )?;
        check_buffer(
            self,
            "convolution filter gradient",
            grad,
            sliding.filter_len(),
        )?;
        self.convolution_backward_filter_unchecked(sliding, rows, x, delta, alpha, grad)
    }

    /// Adds `bias[c]` to every unit of channel `c` of `rows` samples laid out as `grid`.
    fn channel_bias(
        &self,
        grid: Grid,
        rows: usize,
        bias: &Self::Buffer,
        z: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "channel bias", bias, grid.channels)?;
        check_buffer(self, "channel bias output", z, rows * grid.len())?;
        self.channel_bias_unchecked(grid, rows, bias, z)
    }

    /// `grad[c] += alpha * sum` of `delta` over channel `c`'s units of every sample.
    fn channel_bias_gradient(
        &self,
        grid: Grid,
        rows: usize,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()> {
        check_buffer(self, "channel bias delta", delta, rows * grid.len())?;
        check_buffer(self, "channel bias gradient", grad, grid.channels)?;
        self.channel_bias_gradient_unchecked(grid, rows, delta, alpha, grad)
    }

    /// Pooling of `rows` samples: `y` (overwritten) holds each window's maximum or mean,
    /// channel by channel.
    fn pooling_forward(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()> {
        check_pooling(&sliding)?;
        check_buffer(self, "pooling input", x, rows * sliding.input.len())?;
        check_buffer(self, "pooling output", y, rows * sliding.output.len())?;
        self.pooling_forward_unchecked(pooling, sliding, rows, x, y)
    }

    /// The pooling's input deltas: adds `dE/dx` to `dx`, given its input `x`, its output `y`
    /// and `dy = dE/dy`.
    #[allow(clippy::too_many_arguments)]
    fn pooling_backward(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        check_pooling(&sliding)?;
        check_buffer(self, "pooling input", x, rows * sliding.input.len())?;
        check_buffer(self, "pooling output", y, rows * sliding.output.len())?;
        check_buffer(self, "pooling delta", dy, rows * sliding.output.len())?;
        check_buffer(self, "pooling input delta", dx, rows * sliding.input.len())?;
        self.pooling_backward_unchecked(pooling, sliding, rows, x, y, dy, dx)
    }

    /// Local response normalisation across the channels of `rows` samples laid out as
    /// `grid`: `y` (overwritten) from `x`.
    fn local_response_forward(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()> {
        check_local_response(&response)?;
        check_buffer(self, "local response input", x, rows * grid.len())?;
        check_buffer(self, "local response output", y, rows * grid.len())?;
        self.local_response_forward_unchecked(response, grid, rows, x, y)
    }

    /// The local response normalisation's input deltas: adds `dE/dx` to `dx`, given `x`,
    /// `y` and `dy = dE/dy`.
    #[allow(clippy::too_many_arguments)]
    fn local_response_backward(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        check_local_response(&response)?;
        for (what, buffer) in [("input", x), ("output", y), ("delta", dy)] {
            check_buffer(
                self,
                &format!("local response {what}"),
                buffer,
                rows * grid.len(),
            )?;
        }
        check_buffer(self, "local response input delta", dx, rows * grid.len())?;
        self.local_response_backward_unchecked(response, grid, rows, x, y, dy, dx)
    }

    /// Batch normalisation of `rows` samples: `y = scale * x_hat + shift` (overwritten), with
    /// `x_hat` normalised by the batch's statistics or the running ones as `pass` says.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_forward(
        &self,
        normalization: Normalization,
        rows: usize,
        x: &Self::Buffer,
        scale: &Self::Buffer,
        shift: &Self::Buffer,
        pass: NormalizationPass<'_, Self>,
        y: &mut Self::Buffer,
    ) -> Result<()> {
        let groups = normalization.groups();
        check_buffer(self, "batch norm input", x, rows * normalization.grid.len())?;
        check_buffer(
            self,
            "batch norm output",
            y,
            rows * normalization.grid.len(),
        )?;
        check_buffer(self, "batch norm scale", scale, groups)?;
        check_buffer(self, "batch norm shift", shift, groups)?;
        match &pass {
            NormalizationPass::Training {
                running_mean,
                running_variance,
                saved_mean,
                saved_inverse_deviation,
                ..
            } => {
                if rows == 0 {
                    return Err(crate::error::Error::Dimension(
                        "batch norm: a training batch needs samples".into(),
                    ));
                }
                check_buffer(self, "batch norm running mean", running_mean, groups)?;
                check_buffer(
                    self,
                    "batch norm running variance",
                    running_variance,
                    groups,
                )?;
                check_buffer(self, "batch norm saved mean", saved_mean, groups)?;
                check_buffer(
                    self,
                    "batch norm saved deviation",
                    saved_inverse_deviation,
                    groups,
                )?;
            }
            NormalizationPass::Inference {
                running_mean,
                running_variance,
            } => {
                check_buffer(self, "batch norm running mean", running_mean, groups)?;
                check_buffer(
                    self,
                    "batch norm running variance",
                    running_variance,
                    groups,
                )?;
            }
        }
        self.batch_norm_forward_unchecked(normalization, rows, x, scale, shift, pass, y)
    }

    /// The batch normalisation's backward pass after a training forward pass on `x`:
    /// writes `dx = dE/dx` from `dy = dE/dy` and the saved statistics, and adds `alpha`
    /// times the scale's and the shift's gradients to `scale_gradient` and `shift_gradient`.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        normalization: Normalization,
        rows: usize,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        scale: &Self::Buffer,
        saved_mean: &Self::Buffer,
        saved_inverse_deviation: &Self::Buffer,
        alpha: f32,
        scale_gradient: &mut Self::Buffer,
        shift_gradient: &mut Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        let groups = normalization.groups();
        let len = rows * normalization.grid.len();
        check_buffer(self, "batch norm input", x, len)?;
        check_buffer(self, "batch norm delta", dy, len)?;
        check_buffer(self, "batch norm input delta", dx, len)?;
        for (what, buffer) in [
            ("scale", scale),
            ("saved mean", saved_mean),
            ("saved deviation", saved_inverse_deviation),
            ("scale gradient", &*scale_gradient),
            ("shift gradient", &*shift_gradient),
        ] {
            check_buffer(self, &format!("batch norm {what}"), buffer, groups)?;
        }
        self.batch_norm_backward_unchecked(
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

    // What a device implements: each operation above without its checks, which have passed.

    /// [`SpatialOperations::convolution_forward`], checked.
    fn convolution_forward_unchecked(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &Self::Buffer,
        w: &Self::Buffer,
        beta: f32,
        z: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::convolution_backward_data`], checked.
    fn convolution_backward_data_unchecked(
        &self,
        sliding: Sliding,
        rows: usize,
        delta: &Self::Buffer,
        w: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::convolution_backward_filter`], checked.
    fn convolution_backward_filter_unchecked(
        &self,
        sliding: Sliding,
        rows: usize,
        x: &Self::Buffer,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::channel_bias`], checked.
    fn channel_bias_unchecked(
        &self,
        grid: Grid,
        rows: usize,
        bias: &Self::Buffer,
        z: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::channel_bias_gradient`], checked.
    fn channel_bias_gradient_unchecked(
        &self,
        grid: Grid,
        rows: usize,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::pooling_forward`], checked.
    fn pooling_forward_unchecked(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::pooling_backward`], checked.
    #[allow(clippy::too_many_arguments)]
    fn pooling_backward_unchecked(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::local_response_forward`], checked.
    fn local_response_forward_unchecked(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::local_response_backward`], checked.
    #[allow(clippy::too_many_arguments)]
    fn local_response_backward_unchecked(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::batch_norm_forward`], checked.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_forward_unchecked(
        &self,
        normalization: Normalization,
        rows: usize,
        x: &Self::Buffer,
        scale: &Self::Buffer,
        shift: &Self::Buffer,
        pass: NormalizationPass<'_, Self>,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`SpatialOperations::batch_norm_backward`], checked.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward_unchecked(
        &self,
        normalization: Normalization,
        rows: usize,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        scale: &Self::Buffer,
        saved_mean: &Self::Buffer,
        saved_inverse_deviation: &Self::Buffer,
        alpha: f32,
        scale_gradient: &mut Self::Buffer,
        shift_gradient: &mut Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
}
