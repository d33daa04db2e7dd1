//! The shapes of convolutional and pooling layers, derived from their sources as DSSTNE
//! derives them, and the plan of what each computed layer runs.

use crate::backend::{Grid, LocalResponse, Normalization, Pooling, Sliding, Window};
use crate::config::{Kernel, LayerType, PoolingFunction};
use crate::error::{Error, Result};

/// What a computed layer runs to get its sums from its sources.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// A weight matrix from every unit of every source.
    FullyConnected,
    /// Filters sliding over each source (each connection has its [`Sliding`]), one bias per
    /// channel of `grid`, the layer's shape.
    Convolution { grid: Grid },
    /// A pooling of layer `source`.
    Pooling {
        source: usize,
        pooling: Pooling,
        sliding: Sliding,
    },
    /// Local response normalisation of layer `source`.
    LocalResponse {
        source: usize,
        grid: Grid,
        response: LocalResponse,
    },
}

impl Operation {
    /// The layer this operation reads without weights, if any.
    pub fn pooled_source(&self) -> Option<usize> {
        match self {
            Operation::Pooling { source, .. } | Operation::LocalResponse { source, .. } => {
                Some(*source)
            }
            _ => None,
        }
    }
}

/// A layer's batch normalisation and the indices of its parameters: the trained scale and
/// shift, and the running statistics that evaluation and prediction use.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizationPlan {
    pub normalization: Normalization,
    pub scale: usize,
    pub shift: usize,
    pub running_mean: usize,
    pub running_variance: usize,
}

/// The grid a window of `dimensions` spatial dimensions sees in a layer of `shape` (DSSTNE's
/// `Nx, Ny, Nz, Nw`): its first dimensions are positions, the rest channels.
pub fn grid_of(shape: &[usize], dimensions: usize) -> Grid {
    let mut spatial = [1; 3];
    for (d, extent) in shape.iter().take(dimensions).enumerate() {
        spatial[d] = *extent;
    }
    let channels = shape.iter().skip(dimensions).product();
    Grid::new(spatial, channels)
}

/// A spatial layer's shape and its window over a source of `shape`, as DSSTNE derives them:
/// in each windowed dimension of extent `n`, a window of `k` with stride `s` gives one position
/// when `n <= k` (padded by `(k - n + 1) / 2`), `n` positions with stride 1 (padded by `k / 2`),
/// else `(n - k) / s + 1` unpadded. A convolution's channels are its filters; a pooling keeps
/// its source's.
pub fn slide(name: &str, layer_type: &LayerType, shape: &[usize]) -> Result<(Vec<usize>, Sliding)> {
    let (kernel, filters) = match layer_type {
        LayerType::Convolutional { filters, kernel } => (kernel, Some(*filters)),
        LayerType::Pooling(_, kernel) => (kernel, None),
        LayerType::FullyConnected => unreachable!("only spatial layers slide"),
    };
    let Kernel {
        dimensions,
        size,
        stride,
    } = *kernel;
    if shape.len() < dimensions {
        return Err(Error::Config(format!(
            "layer '{name}' has a window of {dimensions} dimensions over a source of {} ({shape:?})",
            shape.len()
        )));
    }
    let input = grid_of(shape, dimensions);
    let mut window = Window {
        kernel: size,
        stride,
        padding: [0; 3],
    };
    let mut positions = input.spatial;
    for d in 0..dimensions {
        let (n, k, s) = (input.spatial[d], size[d], stride[d]);
        (positions[d], window.padding[d]) = if n <= k {
            (1, (k - n).div_ceil(2))
        } else if s == 1 {
            (n, k / 2)
        } else {
            ((n - k) / s + 1, 0)
        };
    }
    let channels = filters.unwrap_or(input.channels);
    let output = Grid::new(positions, channels);
    let mut layer_shape = positions[..dimensions].to_vec();
    match filters {
        Some(filters) => layer_shape.push(filters),
        None => layer_shape.extend_from_slice(&shape[dimensions..]),
    }
    let sliding = Sliding {
        input,
        output,
        window,
    };
    Ok((layer_shape, sliding))
}

/// The pooling of a [`PoolingFunction`] that has a window.
pub fn pooling(function: PoolingFunction) -> Option<Pooling> {
    match function {
        PoolingFunction::Max => Some(Pooling::Max),
        PoolingFunction::Average => Some(Pooling::Average),
        PoolingFunction::LocalResponseNormalization => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(size: &[usize], stride: &[usize]) -> Kernel {
        let mut kernel = Kernel {
            dimensions: size.len(),
            ..Kernel::default()
        };
        kernel.size[..size.len()].copy_from_slice(size);
        kernel.stride[..stride.len()].copy_from_slice(stride);
        kernel
    }

    fn convolution(size: &[usize], stride: &[usize], filters: usize) -> LayerType {
        let kernel = kernel(size, stride);
        LayerType::Convolutional { filters, kernel }
    }

    fn max_pool(size: &[usize], stride: &[usize]) -> LayerType {
        LayerType::Pooling(PoolingFunction::Max, kernel(size, stride))
    }

    #[test]
    fn dsstne_cifar_shapes_follow_from_the_input() {
        // DSSTNE's CIFAR-10 network: 32 x 32 x 3 images, 7x7 same convolutions, 4x4 pools of
        // stride 2.
        let c1 = convolution(&[7, 7], &[1, 1], 128);
        let (shape, sliding) = slide("C1", &c1, &[32, 32, 3]).unwrap();
        assert_eq!(shape, vec![32, 32, 128]);
        assert_eq!(sliding.input, Grid::new([32, 32, 1], 3));
        assert_eq!(sliding.window.padding, [3, 3, 0]);
        let pool = max_pool(&[4, 4], &[2, 2]);
        let (shape, sliding) = slide("P1", &pool, &[32, 32, 128]).unwrap();
        assert_eq!(shape, vec![15, 15, 128]);
        assert_eq!(sliding.output, Grid::new([15, 15, 1], 128));
        assert_eq!(sliding.window.padding, [0, 0, 0]);
        assert_eq!(
            slide("P2", &pool, &[15, 15, 128]).unwrap().0,
            vec![6, 6, 128]
        );
        let small = max_pool(&[2, 2], &[2, 2]);
        assert_eq!(slide("P3", &small, &[6, 6, 96]).unwrap().0, vec![3, 3, 96]);
    }

    #[test]
    fn windows_wider_than_the_source_give_one_padded_position() {
        let (shape, sliding) = slide("c", &convolution(&[5], &[1], 4), &[3, 2]).unwrap();
        assert_eq!(shape, vec![1, 4]);
        assert_eq!(sliding.input, Grid::new([3, 1, 1], 2));
        assert_eq!(sliding.window.padding[0], 1);
        let error = slide("c", &convolution(&[3, 3], &[1, 1], 4), &[9]).unwrap_err();
        assert!(
            error.to_string().contains("window of 2 dimensions"),
            "{error}"
        );
    }
}
