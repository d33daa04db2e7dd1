//! Batch normalisation (`kernels/normalization.cu`): a block per group reduces the group's
//! values through a tree (its statistics forward, its gradients' sums backward), so that the
//! sums are deterministic, then a thread per unit applies them, so that the pass over every
//! unit runs as wide with a few large groups (channels) as with many small ones (units).

use crate::kernels::Kernel;
use crate::{elements, groups_config, CudaBackend};
use cudarc::driver::{CudaSlice, PushKernelArg};
use destiny_core::backend::{Normalization, NormalizationPass};
use destiny_core::error::Result;

/// How the kernels find a normalisation's groups: a sample of `len` units holds them one
/// after another, `inner` units each.
#[derive(Debug, Clone, Copy)]
struct Groups {
    len: u32,
    inner: u32,
    count: usize,
}

impl Groups {
    fn new(normalization: &Normalization) -> Self {
        let grid = normalization.grid;
        Groups {
            len: grid.len() as u32,
            inner: if normalization.per_channel {
                grid.positions() as u32
            } else {
                1
            },
            count: normalization.groups(),
        }
    }

    /// The values of a group in `rows` samples.
    fn values(&self, rows: usize) -> usize {
        rows * self.inner as usize
    }
}

impl CudaBackend {
    /// [`Backend::batch_norm_forward`](destiny_core::backend::Backend::batch_norm_forward)
    /// after its checks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn batch_normalize(
        &self,
        normalization: Normalization,
        rows: usize,
        x: &CudaSlice<f32>,
        scale: &CudaSlice<f32>,
        shift: &CudaSlice<f32>,
        pass: NormalizationPass<'_, Self>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let groups = Groups::new(&normalization);
        let n = rows * normalization.grid.len();
        if n == 0 {
            return Ok(());
        }
        let epsilon = normalization.epsilon;
        let (mean, deviation, from_variance) = match pass {
            NormalizationPass::Training {
                factor,
                running_mean,
                running_variance,
                saved_mean,
                saved_inverse_deviation,
            } => {
                launch!(
                    self,
                    Kernel::BatchNormStatistics,
                    groups_config(groups.count, groups.values(rows)),
                    &(rows as u32),
                    &groups.len,
                    &groups.inner,
                    &epsilon,
                    &factor,
                    x,
                    running_mean,
                    running_variance,
                    &mut *saved_mean,
                    &mut *saved_inverse_deviation
                )?;
                (&*saved_mean, &*saved_inverse_deviation, false)
            }
            NormalizationPass::Inference {
                running_mean,
                running_variance,
            } => (running_mean, running_variance, true),
        };
        launch!(
            self,
            Kernel::BatchNormForward,
            elements(n),
            &(n as u32),
            &groups.len,
            &groups.inner,
            x,
            scale,
            shift,
            mean,
            deviation,
            &(from_variance as i32),
            &epsilon,
            y
        )
    }

    /// [`Backend::batch_norm_backward`](destiny_core::backend::Backend::batch_norm_backward)
    /// after its checks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn batch_norm_deltas(
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
        let groups = Groups::new(&normalization);
        let n = rows * normalization.grid.len();
        if n == 0 {
            return Ok(());
        }
        // Each group's sum(dy) and sum(dy * x_hat), both written before they are read.
        let mut sums = self.allocate::<f32>(2 * groups.count)?;
        launch!(
            self,
            Kernel::BatchNormGradients,
            groups_config(groups.count, groups.values(rows)),
            &(rows as u32),
            &groups.len,
            &groups.inner,
            x,
            dy,
            saved_mean,
            saved_inverse_deviation,
            &alpha,
            scale_gradient,
            shift_gradient,
            &mut sums
        )?;
        launch!(
            self,
            Kernel::BatchNormBackward,
            elements(n),
            &(n as u32),
            &groups.len,
            &groups.inner,
            &(groups.values(rows) as f32),
            x,
            dy,
            scale,
            saved_mean,
            saved_inverse_deviation,
            &sums,
            dx
        )
    }
}
