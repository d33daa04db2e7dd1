//! The forward pass: each layer's products, activations and dropout, in an order where
//! every layer follows its sources.

use super::*;

impl<B: Backend> Network<B> {
    /// What layer `l` hands on: its sparse batch, its dense input, or its whole activations.
    pub(super) fn output<'a>(
        topology: &Topology,
        buffers: &'a [Option<LayerBuffers<B>>],
        batch: &'a DeviceBatch<B>,
        l: usize,
    ) -> Result<Output<'a, B>> {
        if topology.layers[l].kind() == LayerKind::Input {
            return batch.input(l).map(|input| match input {
                DeviceRows::Sparse(x) => Output::Sparse(x),
                DeviceRows::Dense(a) => Output::Dense(a),
            });
        }
        let buffer = buffers[l]
            .as_ref()
            .expect("layer computed before it is used");
        Ok(Output::Dense(buffer.handed_on()))
    }

    /// The seed of layer `l`'s dropout masks in a pass seeded `seed`. Ranks that take shares
    /// of a batch draw their own masks; split layers draw the whole layer's.
    pub(super) fn mask_seed(&self, seed: u64, l: usize) -> u64 {
        self.group.own_seed(derive_seed(seed, &[l as u64]))
    }

    /// Where layer `l`'s columns on this rank lie in the whole layer.
    pub(super) fn window(&self, l: usize) -> ColumnWindow {
        ColumnWindow {
            offset: self.units[l].start,
            total: self.topology.layers[l].width,
        }
    }

    /// Forward pass. Output layers are left at their products: for
    /// [`Backend::output_delta`] to apply the bias and activation in the same pass as the
    /// error, or for [`Network::top_k`] to apply them as it selects.
    pub fn forward(&mut self, batch: &mut DeviceBatch<B>, pass: Pass) -> Result<()> {
        let rows = batch.rows();
        self.reserve(rows)?;
        let dropout_seed = match pass {
            Pass::Training { dropout_seed } => Some(dropout_seed),
            Pass::Evaluation => None,
        };
        for position in 0..self.topology.order.len() {
            let l = self.topology.order[position];
            let plan = &self.topology.layers[l];
            let dropout = plan.definition.dropout;
            if plan.kind() == LayerKind::Input {
                if let (Some(seed), true) = (dropout_seed, dropout > 0.0) {
                    let seed = self.mask_seed(seed, l);
                    if let Some(DeviceRowsMut::Dense(a)) = batch.input_mut(l) {
                        let whole = ColumnWindow::whole(plan.width);
                        self.backend.dropout(
                            Shape::new(rows, plan.width),
                            whole,
                            dropout,
                            seed,
                            a,
                        )?;
                    }
                }
                continue;
            }
            let mut buffer = self.buffers[l].take().expect("reserved");
            self.layer_products(batch, l, &mut buffer.z)?;
            let plan = &self.topology.layers[l];
            if plan.kind() == LayerKind::Output {
                self.buffers[l] = Some(buffer);
                continue;
            }
            self.normalize(rows, l, &mut buffer, dropout_seed.is_some())?;
            let plan = &self.topology.layers[l];
            let units = self.units[l].len();
            // A convolution's bias was added to its sums already.
            let bias = match plan.operation {
                Operation::FullyConnected => plan.bias.map(|b| &self.parameters[b].value),
                _ => None,
            };
            let z = match buffer.normalization.as_mut() {
                Some(n) => &mut n.normalized,
                None => &mut buffer.z,
            };
            self.backend.activation_forward(
                plan.definition.activation,
                Shape::new(rows, units),
                bias,
                z,
                plan.slope.map(|s| &self.parameters[s].value),
                &mut buffer.activated,
            )?;
            buffer.dropped = match (
                dropout_seed,
                plan.kind() == LayerKind::Hidden && dropout > 0.0,
            ) {
                (Some(seed), true) => {
                    let backend = &self.backend;
                    let mut dropped = buffer
                        .dropped
                        .take()
                        .map_or_else(|| backend.zeros(self.capacity * units), Ok)?;
                    let dense = Strided {
                        offset: 0,
                        stride: units,
                    };
                    let activated = &buffer.activated;
                    backend.copy_matrix(
                        Shape::new(rows, units),
                        activated,
                        dense,
                        &mut dropped,
                        dense,
                        false,
                    )?;
                    let seed = self.mask_seed(seed, l);
                    backend.dropout(
                        Shape::new(rows, units),
                        self.window(l),
                        dropout,
                        seed,
                        &mut dropped,
                    )?;
                    Some(dropped)
                }
                _ => None,
            };
            if let Some(mut whole) = buffer.whole.take() {
                let mine = buffer.dropped.as_ref().unwrap_or(&buffer.activated);
                self.gather_layer(l, rows, mine, &mut whole)?;
                buffer.whole = Some(whole);
            }
            self.buffers[l] = Some(buffer);
        }
        Ok(())
    }

    /// `z = sum over connections of source * weights`, plus the skips, for this rank's units
    /// of layer `l`.
    pub(super) fn layer_products(
        &self,
        batch: &DeviceBatch<B>,
        l: usize,
        z: &mut B::Buffer,
    ) -> Result<()> {
        let plan = &self.topology.layers[l];
        let rows = batch.rows();
        let units = self.units[l].len();
        if plan.operation != Operation::FullyConnected {
            self.spatial_products(batch, l, z)?;
        }
        for (i, connection) in plan.connections.iter().enumerate() {
            if connection.sliding.is_some() {
                continue;
            }
            let beta = if i == 0 { 0.0 } else { 1.0 };
            let w = &self.parameters[connection.weights].value;
            match Self::output(&self.topology, &self.buffers, batch, connection.source)? {
                Output::Sparse(x) => self.backend.sparse_matmul(x, w, units, beta, z)?,
                Output::Dense(a) => {
                    let shape = GemmShape {
                        m: rows,
                        n: units,
                        k: self.topology.layers[connection.source].width,
                        transpose_a: false,
                        transpose_b: connection.transposed,
                    };
                    self.backend.gemm(shape, 1.0, a, w, beta, z)?
                }
            }
        }
        // A skip's source has the layer's width, so it is split as the layer is; only an
        // input, whole on every rank, is read from this rank's first unit on.
        for &skip in &plan.skips {
            if let Some(buffer) = &self.buffers[skip] {
                let a = buffer.dropped.as_ref().unwrap_or(&buffer.activated);
                self.backend.axpy(rows * units, 1.0, a, z)?;
            } else if let DeviceRows::Dense(a) = batch.input(skip)? {
                let from = Strided {
                    offset: self.units[l].start,
                    stride: plan.width,
                };
                let to = Strided {
                    offset: 0,
                    stride: units,
                };
                self.backend
                    .copy_matrix(Shape::new(rows, units), a, from, z, to, true)?;
            }
        }
        Ok(())
    }

    /// Adds the error of a batch to the loss accumulator without training (validation).
    pub fn evaluate_batch(&mut self, batch: &mut DeviceBatch<B>) -> Result<()> {
        self.forward(batch, Pass::Evaluation)?;
        for l in self.topology.outputs().collect::<Vec<_>>() {
            let mut buffer = self.buffers[l].take().expect("forward ran");
            let result = self.output_delta(batch, l, &buffer.z, &mut buffer.delta);
            self.buffers[l] = Some(buffer);
            result?;
        }
        Ok(())
    }
}
