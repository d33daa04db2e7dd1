//! The backward pass: output deltas, hidden deltas, gradients, and the deltas handed back
//! to each source.

use super::*;

impl<B: Backend> Network<B> {
    /// Backward pass after a training forward pass with the same `dropout_seed`: fills the
    /// gradients (mean over the batch, all ranks' samples when they share batches) and adds
    /// the batch's error to the loss accumulator. Plain SGD on sparse inputs updates those
    /// weights here directly.
    pub fn backward(&mut self, batch: &DeviceBatch<B>, dropout_seed: u64) -> Result<()> {
        let settings = self.required_optimizer()?;
        let learning_rate = self.learning_rate(&settings);
        let rows = batch.rows();
        let scale = 1.0 / batch.total_rows().max(1) as f32;
        for p in 0..self.parameters.len() {
            let len = self.local_len(p);
            if let Some(gradient) = self.parameters[p].gradient.as_mut() {
                self.backend.fill(gradient, len, 0.0)?;
            }
        }
        for (l, plan) in self.topology.layers.iter().enumerate() {
            if plan.kind() == LayerKind::Hidden {
                let buffer = self.buffers[l].as_mut().expect("forward ran");
                self.backend
                    .fill(&mut buffer.delta, rows * self.units[l].len(), 0.0)?;
            }
        }
        for position in (0..self.topology.order.len()).rev() {
            let l = self.topology.order[position];
            let plan = &self.topology.layers[l];
            if plan.kind() == LayerKind::Input {
                continue;
            }
            let mut buffer = self.buffers[l].take().expect("forward ran");
            if plan.kind() == LayerKind::Output {
                self.output_delta(batch, l, &buffer.z, &mut buffer.delta)?;
            } else {
                self.hidden_delta(rows, l, &mut buffer, dropout_seed, scale)?;
                self.normalize_backward(rows, l, &mut buffer, scale)?;
            }
            let units = self.units[l].len();
            if self.topology.layers[l].operation != Operation::FullyConnected {
                self.spatial_backward(batch, l, &buffer, scale)?;
            } else if let Some(b) = self.topology.layers[l].bias {
                let gradient = self.parameters[b]
                    .gradient
                    .as_mut()
                    .expect("biases have gradients");
                self.backend.bias_gradient(
                    Shape::new(rows, units),
                    &buffer.delta,
                    scale,
                    gradient,
                )?;
            }
            let connections = self.topology.layers[l].connections.clone();
            for connection in connections.iter().filter(|c| c.sliding.is_none()) {
                self.weight_gradient(batch, l, connection, &buffer.delta, scale, learning_rate)?;
                self.propagate_delta(l, connection, rows, &buffer.delta)?;
            }
            for &skip in &self.topology.layers[l].skips {
                if let Some(source) = self.buffers[skip].as_mut() {
                    self.backend
                        .axpy(rows * units, 1.0, &buffer.delta, &mut source.delta)?;
                }
            }
            self.buffers[l] = Some(buffer);
        }
        if self.group.splits_batches() {
            for p in 0..self.parameters.len() {
                let len = self.local_len(p);
                if let Some(gradient) = self.parameters[p].gradient.as_mut() {
                    self.group
                        .communicator()
                        .all_reduce(&self.backend, gradient, len)?;
                }
            }
        }
        Ok(())
    }

    /// `delta = dE/dz` of output layer `l` from its products `z`, its error added to the loss.
    pub(super) fn output_delta(
        &mut self,
        batch: &DeviceBatch<B>,
        l: usize,
        z: &B::Buffer,
        delta: &mut B::Buffer,
    ) -> Result<()> {
        let plan = &self.topology.layers[l];
        let rows = batch.rows();
        let units = self.units[l].clone();
        let target = match batch.target(l)? {
            DeviceRows::Sparse(entries) => Target::Sparse {
                entries,
                first_column: units.start,
            },
            DeviceRows::Dense(t) if units.len() == plan.width => Target::Dense(t),
            DeviceRows::Dense(t) => {
                let exchange = self.exchange.as_mut().expect("reserved for split layers");
                let from = Strided {
                    offset: units.start,
                    stride: plan.width,
                };
                let to = Strided {
                    offset: 0,
                    stride: units.len(),
                };
                self.backend.copy_matrix(
                    Shape::new(rows, units.len()),
                    t,
                    from,
                    &mut exchange.target,
                    to,
                    false,
                )?;
                Target::Dense(&exchange.target)
            }
        };
        let output = output_layer(&self.topology.definition, plan, &self.parameters);
        self.backend.output_delta(
            output,
            Shape::new(rows, units.len()),
            z,
            target,
            delta,
            &mut self.loss,
        )
    }

    /// Turns hidden layer `l`'s `dE/da` into `dE/dz`: the sparseness penalty, dropout and the
    /// activation's derivative, with the PReLU slopes' gradient on the way.
    pub(super) fn hidden_delta(
        &mut self,
        rows: usize,
        l: usize,
        buffer: &mut LayerBuffers<B>,
        dropout_seed: u64,
        scale: f32,
    ) -> Result<()> {
        let plan = &self.topology.layers[l];
        let units = self.units[l].len();
        let backend = &self.backend;
        if let Some(penalty) = plan
            .definition
            .sparseness_penalty
            .filter(|_| plan.definition.sparse)
        {
            let a = buffer.dropped.as_ref().unwrap_or(&buffer.activated);
            backend.sparseness_penalty(
                Shape::new(rows, units),
                a,
                penalty.p,
                penalty.beta,
                &mut buffer.delta,
                &mut self.loss,
            )?;
        }
        if buffer.dropped.is_some() {
            let seed = self.mask_seed(dropout_seed, l);
            let p = plan.definition.dropout;
            backend.dropout(
                Shape::new(rows, units),
                self.window(l),
                p,
                seed,
                &mut buffer.delta,
            )?;
        }
        if let Some(s) = plan.slope {
            let gradient = self.parameters[s]
                .gradient
                .as_mut()
                .expect("slopes have gradients");
            backend.slope_gradient(
                Shape::new(rows, units),
                activation_input(&buffer.z, &buffer.normalization),
                &buffer.delta,
                scale,
                gradient,
            )?;
        }
        let slope = plan.slope.map(|s| &self.parameters[s].value);
        backend.activation_backward(
            plan.definition.activation,
            Shape::new(rows, units),
            activation_input(&buffer.z, &buffer.normalization),
            &buffer.activated,
            slope,
            &mut buffer.delta,
        )
    }

    /// Adds the gradient of `connection` into layer `l` (whose `dE/dz` is `delta`), or for
    /// plain SGD on a sparse input, the step itself.
    pub(super) fn weight_gradient(
        &mut self,
        batch: &DeviceBatch<B>,
        l: usize,
        connection: &Connection,
        delta: &B::Buffer,
        scale: f32,
        learning_rate: f32,
    ) -> Result<()> {
        let rows = batch.rows();
        let units = self.units[l].len();
        let source_width = self.topology.layers[connection.source].width;
        let parameter = &mut self.parameters[connection.weights];
        match Self::output(&self.topology, &self.buffers, batch, connection.source)? {
            Output::Sparse(x) => match parameter.gradient.as_mut() {
                Some(gradient) => self
                    .backend
                    .sparse_transpose_matmul(x, delta, units, scale, gradient),
                None => self.backend.sparse_transpose_matmul(
                    x,
                    delta,
                    units,
                    -learning_rate * scale,
                    &mut parameter.value,
                ),
            },
            Output::Dense(a) => {
                let gradient = parameter
                    .gradient
                    .as_mut()
                    .expect("dense weights have gradients");
                // dW = a^T delta, or delta^T a for weights stored transposed.
                let (m, n, left, right) = if connection.transposed {
                    (units, source_width, delta, a)
                } else {
                    (source_width, units, a, delta)
                };
                let shape = GemmShape {
                    m,
                    n,
                    k: rows,
                    transpose_a: true,
                    transpose_b: false,
                };
                self.backend.gemm(shape, scale, left, right, 1.0, gradient)
            }
        }
    }

    /// Adds `delta * weights^T`, layer `l`'s contribution to `dE/da` of the connection's
    /// source, to the source's delta (through a reduce-scatter when layers are split).
    pub(super) fn propagate_delta(
        &mut self,
        l: usize,
        connection: &Connection,
        rows: usize,
        delta: &B::Buffer,
    ) -> Result<()> {
        let source = connection.source;
        if self.topology.layers[source].kind() == LayerKind::Input {
            return Ok(());
        }
        let shape = GemmShape {
            m: rows,
            n: self.topology.layers[source].width,
            k: self.units[l].len(),
            transpose_a: false,
            transpose_b: !connection.transposed,
        };
        let weights = &self.parameters[connection.weights].value;
        if !self.group.splits_layers() {
            let target = &mut self.buffers[source].as_mut().expect("forward ran").delta;
            return self.backend.gemm(shape, 1.0, delta, weights, 1.0, target);
        }
        let exchange = self.exchange.as_mut().expect("reserved for split layers");
        self.backend
            .gemm(shape, 1.0, delta, weights, 0.0, &mut exchange.partial)?;
        self.scatter_delta(source, rows)
    }
}

/// What a layer's activation read: its normalised sums, or its sums `z`.
fn activation_input<'a, B: Backend>(
    z: &'a B::Buffer,
    normalization: &'a Option<NormalizationBuffers<B>>,
) -> &'a B::Buffer {
    normalization.as_ref().map_or(z, |n| &n.normalized)
}

/// The bias, activation and slopes an output layer applies after its products, and its
/// error function.
fn output_layer<'a, B: Backend>(
    definition: &NetworkDefinition,
    plan: &LayerPlan,
    parameters: &'a [Parameter<B>],
) -> OutputLayer<'a, B> {
    OutputLayer {
        error: definition.error_function,
        boost: definition.delta_boost,
        activation: plan.definition.activation,
        bias: plan.bias.map(|b| &parameters[b].value),
        slope: plan.slope.map(|s| &parameters[s].value),
    }
}
