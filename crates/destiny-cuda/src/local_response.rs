//! Local response normalisation across channels, a thread per unit (`kernels/local_response.cu`).

use crate::kernels::Kernel;
use crate::{elements, CudaBackend};
use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};
use destiny_core::backend::{Grid, LocalResponse};
use destiny_core::error::Result;

/// [`LocalResponse`] passed by value, laid out as `struct Response` in the kernels.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Response {
    k: f32,
    alpha: f32,
    beta: f32,
    n: u32,
}

// SAFETY: plain `repr(C)` data of four 4-byte fields, as the kernels declare it.
unsafe impl DeviceRepr for Response {}

impl From<LocalResponse> for Response {
    fn from(r: LocalResponse) -> Self {
        Response {
            k: r.k,
            alpha: r.alpha,
            beta: r.beta,
            n: r.n as u32,
        }
    }
}

impl CudaBackend {
    /// [`Backend::local_response_forward`](destiny_core::backend::Backend::local_response_forward)
    /// after its checks.
    pub(crate) fn normalize_responses(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = rows * grid.len();
        if n == 0 {
            return Ok(());
        }
        launch!(
            self,
            Kernel::LocalResponseForward,
            elements(n),
            &Response::from(response),
            &(n as u32),
            &(grid.channels as u32),
            &(grid.positions() as u32),
            x,
            y
        )
    }

    /// [`Backend::local_response_backward`](destiny_core::backend::Backend::local_response_backward)
    /// after its checks. Each unit computes again the sums of the channels whose windows
    /// hold it, `n` squares each, rather than keeping them from the forward pass.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn local_response_deltas(
        &self,
        response: LocalResponse,
        grid: Grid,
        rows: usize,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = rows * grid.len();
        if n == 0 {
            return Ok(());
        }
        launch!(
            self,
            Kernel::LocalResponseBackward,
            elements(n),
            &Response::from(response),
            &(n as u32),
            &(grid.channels as u32),
            &(grid.positions() as u32),
            x,
            y,
            dy,
            dx
        )
    }
}
