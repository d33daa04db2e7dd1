//! The operands of the spatial layers: convolution, pooling, local response normalisation
//! and batch normalisation, over units laid out as channels of a grid.

use super::Backend;

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
pub enum NormalizationPass<'a, B: Backend + ?Sized> {
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
