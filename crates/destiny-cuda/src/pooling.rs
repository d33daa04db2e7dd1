//! Max and average pooling, a thread per output unit forward and a gather per input unit
//! backward (`kernels/pooling.cu`), so that the deltas need no atomics and add up in a
//! fixed order.

use crate::codes::pooling_code;
use crate::kernels::Kernel;
use crate::sliding::Geometry;
use crate::{address, elements, CudaBackend};
use cudarc::driver::{CudaSlice, PushKernelArg};
use destiny_core::backend::{Pooling, Sliding};
use destiny_core::error::Result;

impl CudaBackend {
    /// [`Backend::pooling_forward`](destiny_core::backend::Backend::pooling_forward) after
    /// its checks.
    pub(crate) fn pool(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = rows * sliding.output.len();
        if n == 0 {
            return Ok(());
        }
        launch!(
            self,
            Kernel::PoolingForward,
            elements(n),
            &Geometry::from(sliding),
            &pooling_code(pooling),
            &(n as u32),
            x,
            y
        )
    }

    /// [`Backend::pooling_backward`](destiny_core::backend::Backend::pooling_backward) after
    /// its checks. Max pooling finds each window's first largest input again in `x`, once a
    /// window before the gather, so it needs neither the output nor indices kept by the
    /// forward pass.
    pub(crate) fn pooling_deltas(
        &self,
        pooling: Pooling,
        sliding: Sliding,
        rows: usize,
        x: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = rows * sliding.input.len();
        if n == 0 {
            return Ok(());
        }
        let geometry = Geometry::from(sliding);
        let best = match pooling {
            Pooling::Max => {
                let windows = rows * sliding.output.len();
                // Every window's position is written before the gather reads it.
                let mut best = self.allocate::<u32>(windows)?;
                launch!(
                    self,
                    Kernel::PoolingArgmax,
                    elements(windows),
                    &geometry,
                    &(windows as u32),
                    x,
                    &mut best
                )?;
                Some(best)
            }
            Pooling::Average => None,
        };
        launch!(
            self,
            Kernel::PoolingBackward,
            elements(n),
            &geometry,
            &pooling_code(pooling),
            &(n as u32),
            &address(best.as_ref()),
            dy,
            dx
        )
    }
}
