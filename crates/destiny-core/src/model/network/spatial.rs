//! The passes of the spatial layers: convolutions, poolings and local response
//! normalisation between a layer's sources and its sums, and batch normalisation between
//! its sums and its activation.

use super::*;
use crate::backend::NormalizationPass;

impl<B: Backend> Network<B> {
    /// The dense output of layer `source` (a spatial layer's sources are never sparse: the
    /// topology refuses them).
    fn dense_output<'a>(
        topology: &Topology,
        buffers: &'a [Option<LayerBuffers<B>>],
        batch: &'a DeviceBatch<B>,
        source: usize,
    ) -> Result<&'a B::Buffer> {
        match Self::output(topology, buffers, batch, source)? {
            Output::Dense(a) => Ok(a),
            Output::Sparse(_) => Err(Error::Config(format!(
                "layer '{}' is sparse and feeds a convolution or pooling",
                topology.layers[source].name()
            ))),
        }
    }

    /// `z` of a convolutional, pooling or local response layer `l` from its sources, with
    /// the convolution's per-channel bias.
    pub(super) fn spatial_products(
        &self,
        batch: &DeviceBatch<B>,
        l: usize,
        z: &mut B::Buffer,
    ) -> Result<()> {
        let plan = &self.topology.layers[l];
        let rows = batch.rows();
        let backend = &self.backend;
        match &plan.operation {
            Operation::Convolution { grid } => {
                for (i, connection) in plan.connections.iter().enumerate() {
                    let x = Self::dense_output(
                        &self.topology,
                        &self.buffers,
                        batch,
                        connection.source,
                    )?;
                    let w = &self.parameters[connection.weights].value;
                    let sliding = connection.sliding.expect("convolutions slide");
                    let beta = if i == 0 { 0.0 } else { 1.0 };
                    backend.convolution_forward(sliding, rows, x, w, beta, z)?;
                }
                if let Some(b) = plan.bias {
                    backend.channel_bias(*grid, rows, &self.parameters[b].value, z)?;
                }
            }
            Operation::Pooling {
                source,
                pooling,
                sliding,
            } => {
                let x = Self::dense_output(&self.topology, &self.buffers, batch, *source)?;
                backend.pooling_forward(*pooling, *sliding, rows, x, z)?;
            }
            Operation::LocalResponse {
                source,
                grid,
                response,
            } => {
                let x = Self::dense_output(&self.topology, &self.buffers, batch, *source)?;
                backend.local_response_forward(*response, *grid, rows, x, z)?;
            }
            Operation::FullyConnected => unreachable!("fully connected layers are not spatial"),
        }
        Ok(())
    }

    /// Batch normalisation of hidden layer `l`'s sums `buffer.z` (it has no bias) into
    /// `buffer.normalized`: with the batch's statistics in training,
    /// moving the running ones towards them as DSSTNE does (a cumulative mean: the batch of
    /// step `s` weighs `1 / (s + 1)`), else with the running ones.
    pub(super) fn normalize(
        &mut self,
        rows: usize,
        l: usize,
        buffer: &mut LayerBuffers<B>,
        training: bool,
    ) -> Result<()> {
        let plan = &self.topology.layers[l];
        let Some(normalization) = &plan.normalization else {
            return Ok(());
        };
        let buffers = buffer.normalization.as_mut().expect("reserved");
        // The statistics follow the scale and shift among the parameters (see the topology).
        debug_assert!(normalization.shift < normalization.running_mean);
        debug_assert_eq!(
            normalization.running_variance,
            normalization.running_mean + 1
        );
        let (trained, running) = self.parameters.split_at_mut(normalization.running_mean);
        let (mean, variance) = running.split_at_mut(1);
        let pass = if training {
            NormalizationPass::Training {
                factor: 1.0 / (self.steps + 1) as f32,
                running_mean: &mut mean[0].value,
                running_variance: &mut variance[0].value,
                saved_mean: &mut buffers.saved_mean,
                saved_inverse_deviation: &mut buffers.saved_inverse_deviation,
            }
        } else {
            NormalizationPass::Inference {
                running_mean: &mean[0].value,
                running_variance: &variance[0].value,
            }
        };
        self.backend.batch_norm_forward(
            normalization.normalization,
            rows,
            &buffer.z,
            &trained[normalization.scale].value,
            &trained[normalization.shift].value,
            pass,
            &mut buffers.normalized,
        )
    }

    /// Turns `buffer.delta` from `dE/d(normalised sums)` into `dE/dz` for a batch-normalised
    /// layer `l`, adding the scale's and shift's gradients (mean over the batch: `scale`).
    pub(super) fn normalize_backward(
        &mut self,
        rows: usize,
        l: usize,
        buffer: &mut LayerBuffers<B>,
        scale: f32,
    ) -> Result<()> {
        let Some(normalization) = &self.topology.layers[l].normalization else {
            return Ok(());
        };
        let buffers = buffer.normalization.as_mut().expect("reserved");
        let (front, back) = self.parameters.split_at_mut(normalization.shift);
        let scale_parameter = &mut front[normalization.scale];
        let shift_parameter = &mut back[0];
        let (Some(scale_gradient), Some(shift_gradient)) = (
            scale_parameter.gradient.as_mut(),
            shift_parameter.gradient.as_mut(),
        ) else {
            unreachable!("trained parameters have gradients");
        };
        self.backend.batch_norm_backward(
            normalization.normalization,
            rows,
            &buffer.z,
            &buffer.delta,
            &scale_parameter.value,
            &buffers.saved_mean,
            &buffers.saved_inverse_deviation,
            scale,
            scale_gradient,
            shift_gradient,
            &mut buffers.normalized,
        )?;
        std::mem::swap(&mut buffer.delta, &mut buffers.normalized);
        Ok(())
    }

    /// The backward pass through spatial layer `l`'s operation, from `delta = dE/dz`: the
    /// filters' and the channel bias's gradients, and each hidden source's `dE/da`.
    pub(super) fn spatial_backward(
        &mut self,
        batch: &DeviceBatch<B>,
        l: usize,
        buffer: &LayerBuffers<B>,
        scale: f32,
    ) -> Result<()> {
        let rows = batch.rows();
        let plan = &self.topology.layers[l];
        let (operation, connections) = (plan.operation.clone(), plan.connections.clone());
        if let (Operation::Convolution { grid }, Some(b)) = (&operation, plan.bias) {
            let gradient = self.parameters[b]
                .gradient
                .as_mut()
                .expect("biases have gradients");
            self.backend
                .channel_bias_gradient(*grid, rows, &buffer.delta, scale, gradient)?;
        }
        let sources = connections
            .iter()
            .map(|c| c.source)
            .chain(operation.pooled_source());
        for (i, source) in sources.enumerate() {
            // A hidden source's output and delta both live in its buffers: they are taken
            // out of the network for the call.
            let mut taken = match self.topology.layers[source].kind() {
                LayerKind::Input => None,
                _ => self.buffers[source].take(),
            };
            let (x, dx) = match taken.as_mut() {
                Some(source_buffers) => {
                    let (x, dx) = source_buffers.output_and_delta();
                    (x, Some(dx))
                }
                None => (
                    Self::dense_output(&self.topology, &self.buffers, batch, source)?,
                    None,
                ),
            };
            let backend = &self.backend;
            let result = match &operation {
                Operation::Convolution { .. } => {
                    let connection = &connections[i];
                    let sliding = connection.sliding.expect("convolutions slide");
                    let filters = &mut self.parameters[connection.weights];
                    let gradient = filters.gradient.as_mut().expect("filters have gradients");
                    backend
                        .convolution_backward_filter(
                            sliding,
                            rows,
                            x,
                            &buffer.delta,
                            scale,
                            gradient,
                        )
                        .and_then(|()| match dx {
                            Some(dx) => backend.convolution_backward_data(
                                sliding,
                                rows,
                                &buffer.delta,
                                &filters.value,
                                dx,
                            ),
                            None => Ok(()),
                        })
                }
                Operation::Pooling {
                    pooling, sliding, ..
                } => match dx {
                    Some(dx) => backend.pooling_backward(
                        *pooling,
                        *sliding,
                        rows,
                        x,
                        &buffer.z,
                        &buffer.delta,
                        dx,
                    ),
                    None => Ok(()),
                },
                Operation::LocalResponse { grid, response, .. } => match dx {
                    Some(dx) => backend.local_response_backward(
                        *response,
                        *grid,
                        rows,
                        x,
                        &buffer.z,
                        &buffer.delta,
                        dx,
                    ),
                    None => Ok(()),
                },
                Operation::FullyConnected => unreachable!("fully connected layers are not spatial"),
            };
            if taken.is_some() {
                self.buffers[source] = taken;
            }
            result?;
        }
        Ok(())
    }
}
