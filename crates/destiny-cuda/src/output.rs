//! The output layer's fused pass: bias, activation, error, loss and `dE/dz`.

use crate::codes::{activation_code, OutputUnit};
use crate::kernels::Kernel;
use crate::{address, backend_error, rows_config, CudaBackend};
use cudarc::driver::{CudaSlice, PushKernelArg};
use destiny_core::backend::{Backend, OutputLayer, Shape, Target};
use destiny_core::error::Result;
use destiny_core::math::activation::is_row_wise;
use destiny_core::math::error_function::{output_delta_form, OutputDeltaForm};

impl CudaBackend {
    /// [`Backend::output_delta`] on this GPU, after its checks.
    pub(crate) fn output_pass(
        &self,
        output: OutputLayer<'_, Self>,
        shape: Shape,
        z: &CudaSlice<f32>,
        target: Target<'_, Self>,
        delta: &mut CudaSlice<f32>,
        loss: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (Shape { rows, cols }, len) = (shape, shape.len());
        let (dense, sparse, first_column) = match target {
            Target::Dense(t) => (Some(t), None, 0),
            Target::Sparse {
                entries,
                first_column,
            } => (None, Some(entries), first_column as u32),
        };
        if rows == 0 {
            return Ok(());
        }
        let dense = address(dense);
        let offsets = address(sparse.map(|x| &x.offsets));
        let indices = address(sparse.map(|x| &x.indices));
        let values = address(sparse.and_then(|x| x.values.as_ref()));
        let form = output_delta_form(output.activation, output.error);
        if form == OutputDeltaForm::SoftMaxCrossEntropy {
            return launch!(
                self,
                Kernel::OutputSoftmaxCrossEntropy,
                rows_config(rows),
                &(cols as u32),
                z,
                &address(output.bias),
                &dense,
                &offsets,
                &indices,
                &values,
                &first_column,
                &output.boost.one,
                delta,
                loss
            );
        }
        let fused_sigmoid = form == OutputDeltaForm::FusedSigmoid;
        // A row-wise activation couples the row: its activations first, into scratch
        // buffers, and its derivative after the error's gradient. Element-wise ones are
        // applied in the pass.
        let row_wise = is_row_wise(output.activation);
        let scratch = if row_wise {
            let mut biased = self.allocate::<f32>(len)?;
            self.stream
                .memcpy_dtod(&z.slice(0..len), &mut biased)
                .map_err(backend_error)?;
            let mut activations = self.allocate::<f32>(len)?;
            self.activation_forward(
                output.activation,
                Shape::new(rows, cols),
                output.bias,
                &mut biased,
                output.slope,
                &mut activations,
            )?;
            Some((biased, activations))
        } else {
            None
        };
        let (sums, bias, slope, activations) = match &scratch {
            Some((biased, activations)) => (biased, 0, 0, address(Some(activations))),
            None => (z, address(output.bias), address(output.slope), 0),
        };
        let unit = OutputUnit::new(
            output.error,
            output.boost,
            output.activation,
            fused_sigmoid,
            !row_wise,
        );
        launch!(
            self,
            Kernel::OutputDelta,
            rows_config(rows),
            &(cols as u32),
            &unit,
            sums,
            &bias,
            &slope,
            &activations,
            &dense,
            &offsets,
            &indices,
            &values,
            &first_column,
            &mut *delta,
            loss
        )?;
        let Some((biased, activations)) = scratch else {
            return Ok(());
        };
        let (kind, _, _) = activation_code(output.activation);
        launch!(
            self,
            Kernel::RowwiseBackward,
            rows_config(rows),
            &(cols as u32),
            &kind,
            &biased,
            &activations,
            delta
        )
    }
}
