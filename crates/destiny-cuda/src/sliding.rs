//! A sliding window as the convolution and pooling kernels read it.

use cudarc::driver::DeviceRepr;
use destiny_core::backend::Sliding;

/// [`Sliding`] passed by value, laid out as `struct Geometry` in `kernels/sliding.cuh`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    input: [u32; 3],
    output: [u32; 3],
    kernel: [u32; 3],
    stride: [u32; 3],
    padding: [u32; 3],
    input_channels: u32,
    output_channels: u32,
}

// SAFETY: plain `repr(C)` data of `u32`s, as the kernels declare it.
unsafe impl DeviceRepr for Geometry {}

impl From<Sliding> for Geometry {
    fn from(sliding: Sliding) -> Self {
        let narrow = |extent: [usize; 3]| extent.map(|e| e as u32);
        Geometry {
            input: narrow(sliding.input.spatial),
            output: narrow(sliding.output.spatial),
            kernel: narrow(sliding.window.kernel),
            stride: narrow(sliding.window.stride),
            padding: narrow(sliding.window.padding),
            input_channels: sliding.input.channels as u32,
            output_channels: sliding.output.channels as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_laid_out_as_the_kernels_read_it() {
        // struct Geometry { unsigned int input[3], output[3], kernel[3], stride[3],
        //                   padding[3]; unsigned int input_channels, output_channels; }
        assert_eq!(std::mem::size_of::<Geometry>(), 17 * 4);
        assert_eq!(std::mem::align_of::<Geometry>(), 4);
    }
}
