//! The output layer's fused pass: bias, activation, error, loss and `dE/dz`.

use crate::codes::{activation_code, OutputInputs, OutputUnit};
use crate::{address, backend_error, check, rows_config, CudaBackend, THREADS};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use destiny_core::backend::{Backend, OutputActivation, Target};
use destiny_core::config::ErrorFunction;
use destiny_core::error::{Error, Result};
use destiny_core::math::activation::is_row_wise;
use destiny_core::math::error_function::{output_delta_form, OutputDeltaForm};

/// Rows per block of `output_delta`, as `kernels/output.cu` defines it.
const OUTPUT_ROWS: usize = 16;

impl CudaBackend {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn output_pass(
        &self,
        error: ErrorFunction,
        output: OutputActivation<'_, Self>,
        rows: usize,
        cols: usize,
        z: &CudaSlice<f32>,
        target: Target<'_, Self>,
        delta: &mut CudaSlice<f32>,
        loss: &mut CudaSlice<f32>,
        bias_gradient: Option<(&mut CudaSlice<f32>, f32)>,
    ) -> Result<()> {
        let len = rows * cols;
        if let Some((gradient, _)) = &bias_gradient {
            check("output bias gradient", gradient, cols)?;
        }
        check("output sums", z, len)?;
        check("output delta", delta, len)?;
        if let Some(bias) = output.bias {
            check("output bias", bias, cols)?;
        }
        let (dense, sparse) = match target {
            Target::Dense(t) => {
                check("dense target", t, len)?;
                (Some(t), None)
            }
            Target::Sparse(x) => {
                if x.rows != rows || x.width != cols {
                    return Err(Error::Dimension(format!(
                        "sparse target of {} x {} for an output of {rows} x {cols}",
                        x.rows, x.width
                    )));
                }
                (None, Some(x))
            }
        };
        if rows == 0 {
            return Ok(());
        }
        let dense = address(dense);
        let offsets = address(sparse.map(|x| &x.offsets));
        let indices = address(sparse.map(|x| &x.indices));
        let values = address(sparse.and_then(|x| x.values.as_ref()));
        let form = output_delta_form(output.activation, error);
        if form == OutputDeltaForm::SoftMaxCrossEntropy {
            launch!(
                self,
                "output_softmax_cross_entropy",
                rows_config(rows),
                &(cols as u32),
                z,
                &address(output.bias),
                &dense,
                &offsets,
                &indices,
                &values,
                &mut *delta,
                loss
            )?;
            return match bias_gradient {
                Some((gradient, alpha)) => self.bias_gradient(rows, cols, delta, alpha, gradient),
                None => Ok(()),
            };
        }
        let fused_sigmoid = form == OutputDeltaForm::FusedSigmoid;
        let sparse = sparse.map(|_| (offsets, indices, values));
        if !is_row_wise(output.activation) {
            let inputs = OutputInputs {
                z: address(Some(z)),
                bias: address(output.bias),
                slope: address(output.slope),
                activations: 0,
            };
            let unit = OutputUnit::new(error, output.activation, fused_sigmoid, true);
            return self.output_units(
                unit,
                inputs,
                rows,
                cols,
                dense,
                sparse,
                delta,
                loss,
                bias_gradient,
            );
        }
        // A row-wise activation couples the row: activations first, into scratch buffers,
        // and its derivative after the error's gradient; the bias gradient last.
        let mut biased = unsafe { self.stream.alloc::<f32>(len) }.map_err(backend_error)?;
        self.stream
            .memcpy_dtod(&z.slice(0..len), &mut biased)
            .map_err(backend_error)?;
        let mut activations = unsafe { self.stream.alloc::<f32>(len) }.map_err(backend_error)?;
        self.activation_forward(
            output.activation,
            rows,
            cols,
            output.bias,
            &mut biased,
            output.slope,
            &mut activations,
        )?;
        let inputs = OutputInputs {
            z: address(Some(&biased)),
            bias: 0,
            slope: 0,
            activations: address(Some(&activations)),
        };
        let unit = OutputUnit::new(error, output.activation, fused_sigmoid, false);
        self.output_units(unit, inputs, rows, cols, dense, sparse, delta, loss, None)?;
        let (kind, _, _) = activation_code(output.activation);
        launch!(
            self,
            "rowwise_backward",
            rows_config(rows),
            &(cols as u32),
            &kind,
            &biased,
            &activations,
            &mut *delta
        )?;
        match bias_gradient {
            Some((gradient, alpha)) => self.bias_gradient(rows, cols, delta, alpha, gradient),
            None => Ok(()),
        }
    }

    /// The element-wise pass (`output_delta`) and the correction of a sparse target's
    /// entries (`output_entries`); `sparse` holds the target's offsets, indices and values.
    #[allow(clippy::too_many_arguments)]
    fn output_units(
        &self,
        unit: OutputUnit,
        inputs: OutputInputs,
        rows: usize,
        cols: usize,
        dense: u64,
        sparse: Option<(u64, u64, u64)>,
        delta: &mut CudaSlice<f32>,
        loss: &mut CudaSlice<f32>,
        bias_gradient: Option<(&mut CudaSlice<f32>, f32)>,
    ) -> Result<()> {
        let (gradient, alpha) =
            bias_gradient.map_or((0, 0.0), |(g, alpha)| (address(Some(&*g)), alpha));
        let threads = if cols % 4 == 0 { cols / 4 } else { cols };
        let config = LaunchConfig {
            grid_dim: (
                threads.div_ceil(THREADS as usize) as u32,
                rows.div_ceil(OUTPUT_ROWS) as u32,
                1,
            ),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            "output_delta",
            config,
            &(rows as u32),
            &(cols as u32),
            &unit,
            &inputs,
            &dense,
            &mut *delta,
            &mut *loss,
            &gradient,
            &alpha
        )?;
        let Some((offsets, indices, values)) = sparse else {
            return Ok(());
        };
        launch!(
            self,
            "output_entries",
            rows_config(rows),
            &(cols as u32),
            &unit,
            &inputs,
            &offsets,
            &indices,
            &values,
            delta,
            loss,
            &gradient,
            &alpha
        )
    }
}
