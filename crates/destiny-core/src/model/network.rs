//! A network resident on a backend: parameters, optimizer state, and the per-layer buffers
//! of one mini-batch; forward and backward passes and the optimizer step.
//!
//! A network may be one rank of a [`Group`]: split by units across ranks (model parallel,
//! where it holds only its columns of every layer and parameter) or whole on every rank with
//! a share of each batch (data parallel). See [`crate::parallel`].

use super::batch::{BatchData, DeviceBatch, DeviceRows, DeviceRowsMut};
use super::init::initial_values;
use super::topology::{Connection, LayerPlan, ParameterRole, Topology};
use crate::backend::random::derive_seed;
use crate::backend::{
    Backend, ColumnWindow, GemmShape, OptimizerKind, OptimizerStep, OutputActivation, SparseBatch,
    Strided, Target,
};
use crate::config::LayerKind;
use crate::error::{Error, Result};
use crate::math::activation::is_row_wise;
use crate::parallel::{slice_columns, Group, Split};
use std::ops::Range;

/// Optimizer settings of a training run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerSettings {
    pub kind: OptimizerKind,
    pub learning_rate: f32,
    pub l1: f32,
    pub l2: f32,
}

/// A parameter tensor on the device with its gradient and optimizer state (this rank's
/// columns of them when layers are split).
pub struct Parameter<B: Backend> {
    pub value: B::Buffer,
    /// Absent while gradients go straight into the values (plain SGD on a sparse input).
    gradient: Option<B::Buffer>,
    pub state: Vec<B::Buffer>,
}

/// The buffers of one layer for one batch (`capacity x units` each, `units` being the
/// layer's units on this rank).
struct LayerBuffers<B: Backend> {
    /// Pre-activation.
    z: B::Buffer,
    /// `f(z)`.
    activated: B::Buffer,
    /// `f(z)` after dropout, when dropout ran in this pass.
    dropped: Option<B::Buffer>,
    /// `dE/d(output)` while gradients accumulate, then `dE/dz`.
    delta: B::Buffer,
    /// The whole layer's activations (`capacity x width`), gathered from every rank, for
    /// the dense connections it feeds when layers are split.
    whole: Option<B::Buffer>,
}

/// Scratch buffers of the collectives of split layers.
struct Exchange<B: Backend> {
    /// This rank's part of a layer, padded to the longest part.
    part: B::Buffer,
    /// Every rank's part, one after another.
    parts: B::Buffer,
    /// A whole-width partial product of the backward pass.
    partial: B::Buffer,
    /// This rank's columns of a dense target.
    target: B::Buffer,
}

/// What a layer hands to the layers it feeds.
enum Output<'a, B: Backend> {
    Sparse(&'a SparseBatch<B>),
    /// Whole-width activations (`rows x width`).
    Dense(&'a B::Buffer),
}

/// A network on a backend.
pub struct Network<B: Backend> {
    backend: B,
    topology: Topology,
    group: Group<B>,
    /// Per layer, the units this rank computes.
    units: Vec<Range<usize>>,
    /// Per parameter, the columns this rank keeps.
    columns: Vec<Range<usize>>,
    parameters: Vec<Parameter<B>>,
    buffers: Vec<Option<LayerBuffers<B>>>,
    exchange: Option<Exchange<B>>,
    capacity: usize,
    loss: B::Buffer,
    optimizer: Option<OptimizerSettings>,
    /// Number of optimizer steps taken (Adam's bias correction counts them).
    steps: u64,
}

impl<B: Backend> Network<B> {
    /// A network with freshly initialised parameters.
    pub fn new(backend: B, topology: Topology, seed: u64) -> Result<Self> {
        Self::new_in_group(backend, topology, seed, Group::single())
    }

    /// One rank of a network with freshly initialised parameters: every rank draws the same
    /// values and keeps its columns, so that the network equals the one [`Network::new`]
    /// makes with the same seed.
    pub fn new_in_group(
        backend: B,
        topology: Topology,
        seed: u64,
        group: Group<B>,
    ) -> Result<Self> {
        Self::build(backend, topology, group, |spec, i| {
            Ok(initial_values(spec, i, seed))
        })
    }

    /// A network with the given parameter values (in `topology.parameters` order).
    pub fn with_parameters(backend: B, topology: Topology, values: Vec<Vec<f32>>) -> Result<Self> {
        Self::with_parameters_in_group(backend, topology, values, Group::single())
    }

    /// One rank of a network with the given whole parameter values (in
    /// `topology.parameters` order), of which it keeps its columns.
    pub fn with_parameters_in_group(
        backend: B,
        topology: Topology,
        values: Vec<Vec<f32>>,
        group: Group<B>,
    ) -> Result<Self> {
        if values.len() != topology.parameters.len() {
            return Err(Error::Dimension(format!(
                "{} parameter tensors given, the network has {}",
                values.len(),
                topology.parameters.len()
            )));
        }
        let mut values = values.into_iter();
        Self::build(backend, topology, group, |spec, _| {
            let value = values.next().expect("counted");
            if value.len() != spec.len() {
                return Err(Error::Dimension(format!(
                    "parameter {} has {} values, {} x {} expected",
                    spec.name,
                    value.len(),
                    spec.rows,
                    spec.cols
                )));
            }
            Ok(value)
        })
    }

    /// Uploads this rank's columns of each parameter, whose whole values `value_of` gives one
    /// parameter at a time (so that only one whole tensor is on the host at once).
    fn build(
        backend: B,
        topology: Topology,
        group: Group<B>,
        mut value_of: impl FnMut(&super::topology::ParameterSpec, usize) -> Result<Vec<f32>>,
    ) -> Result<Self> {
        let units = layer_units(&topology, &group)?;
        let columns = parameter_columns(&topology, &units, &group);
        let mut parameters = Vec::with_capacity(topology.parameters.len());
        for (i, spec) in topology.parameters.iter().enumerate() {
            let whole = value_of(spec, i)?;
            let mine = slice_columns(&whole, spec.cols, columns[i].clone());
            drop(whole);
            parameters.push(Parameter {
                value: backend.upload(&mine)?,
                gradient: None,
                state: Vec::new(),
            });
        }
        let loss = backend.zeros(1)?;
        let buffers = topology.layers.iter().map(|_| None).collect();
        Ok(Network {
            backend,
            topology,
            group,
            units,
            columns,
            parameters,
            buffers,
            exchange: None,
            capacity: 0,
            loss,
            optimizer: None,
            steps: 0,
        })
    }

    /// The resolved topology (of the whole network).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The backend computing this network.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The group this network is a rank of.
    pub fn group(&self) -> &Group<B> {
        &self.group
    }

    /// The units of layer `l` this rank computes.
    pub fn units(&self, l: usize) -> Range<usize> {
        self.units[l].clone()
    }

    /// Number of optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The optimizer set by [`Network::set_optimizer`], if any.
    pub fn optimizer(&self) -> Option<&OptimizerSettings> {
        self.optimizer.as_ref()
    }

    /// Number of values of parameter `p` this rank keeps.
    fn local_len(&self, p: usize) -> usize {
        self.topology.parameters[p].rows * self.columns[p].len()
    }

    /// Chooses the optimizer, allocating its state (zeros) and the gradients it needs.
    /// Keeps existing state when the optimizer kind is unchanged.
    pub fn set_optimizer(&mut self, settings: OptimizerSettings) -> Result<()> {
        let same_kind = self.optimizer.is_some_and(|o| {
            std::mem::discriminant(&o.kind) == std::mem::discriminant(&settings.kind)
        });
        for i in 0..self.parameters.len() {
            let len = self.local_len(i);
            let direct = direct_sgd(&self.topology, &settings, i) && !self.group.splits_batches();
            let parameter = &mut self.parameters[i];
            parameter.gradient = match (direct, parameter.gradient.take()) {
                (true, _) => None,
                (false, Some(g)) => Some(g),
                (false, None) => Some(self.backend.zeros(len)?),
            };
            if !same_kind || parameter.state.len() != settings.kind.state_count() {
                parameter.state = (0..settings.kind.state_count())
                    .map(|_| self.backend.zeros(len))
                    .collect::<Result<_>>()?;
            }
        }
        self.optimizer = Some(settings);
        Ok(())
    }

    /// Restores the optimizer step count and state (whole tensors, from a model file).
    pub fn restore_optimizer_state(&mut self, steps: u64, state: Vec<Vec<Vec<f32>>>) -> Result<()> {
        let kind = self
            .optimizer
            .ok_or_else(|| Error::Config("no optimizer set".into()))?
            .kind;
        for (i, buffers) in state.into_iter().enumerate() {
            let spec = &self.topology.parameters[i];
            if buffers.len() != kind.state_count() {
                return Err(Error::Dimension(format!(
                    "parameter {}: {} optimizer state tensors, {:?} keeps {}",
                    spec.name,
                    buffers.len(),
                    kind,
                    kind.state_count()
                )));
            }
            self.parameters[i].state = buffers
                .iter()
                .map(|b| {
                    let mine = slice_columns(b, spec.cols, self.columns[i].clone());
                    self.backend.upload(&mine)
                })
                .collect::<Result<_>>()?;
        }
        self.steps = steps;
        Ok(())
    }

    /// The whole values of every parameter, in `topology.parameters` order (gathered from
    /// every rank when layers are split).
    pub fn parameter_values(&self) -> Result<Vec<Vec<f32>>> {
        (0..self.parameters.len())
            .map(|p| self.whole(p, &self.parameters[p].value))
            .collect()
    }

    /// Overwrites the values of parameter `index` with whole values.
    pub fn set_parameter_values(&mut self, index: usize, values: &[f32]) -> Result<()> {
        let spec = &self.topology.parameters[index];
        if values.len() != spec.len() {
            return Err(Error::Dimension(format!(
                "parameter {} takes {} values, {} given",
                spec.name,
                spec.len(),
                values.len()
            )));
        }
        let mine = slice_columns(values, spec.cols, self.columns[index].clone());
        self.backend.write(&mine, &mut self.parameters[index].value)
    }

    /// The whole gradient of every parameter from the last backward pass (`None` for
    /// weights that plain SGD updates in place).
    pub fn gradient_values(&self) -> Result<Vec<Option<Vec<f32>>>> {
        self.parameters
            .iter()
            .enumerate()
            .map(|(p, parameter)| {
                parameter
                    .gradient
                    .as_ref()
                    .map(|g| self.whole(p, g))
                    .transpose()
            })
            .collect()
    }

    /// The whole optimizer state of every parameter.
    pub fn optimizer_state(&self) -> Result<Vec<Vec<Vec<f32>>>> {
        self.parameters
            .iter()
            .enumerate()
            .map(|(p, parameter)| parameter.state.iter().map(|s| self.whole(p, s)).collect())
            .collect()
    }

    /// The whole tensor of parameter `p` of which `local` holds this rank's columns: the
    /// ranks' columns are gathered a band of rows at a time, so that no device holds more
    /// than a band of every rank's columns at once.
    fn whole(&self, p: usize, local: &B::Buffer) -> Result<Vec<f32>> {
        let spec = &self.topology.parameters[p];
        let len = spec.len();
        if !self.group.splits_layers() {
            let mut values = self.backend.download(local)?;
            values.truncate(len);
            return Ok(values);
        }
        let split = Split::new(spec.cols, self.group.size());
        let (mine, longest) = (self.columns[p].len(), split.longest());
        let band = ((1usize << 24) / (split.parts() * longest).max(1)).clamp(1, spec.rows.max(1));
        let mut part = self.backend.zeros(band * longest)?;
        let mut parts = self.backend.zeros(split.parts() * band * longest)?;
        let mut values = vec![0.0f32; len];
        for first in (0..spec.rows).step_by(band) {
            let rows = band.min(spec.rows - first);
            let from = Strided {
                offset: first * mine,
                stride: mine,
            };
            let to = Strided {
                offset: 0,
                stride: longest,
            };
            self.backend
                .copy_matrix(rows, mine, local, from, &mut part, to, false)?;
            self.group.communicator().all_gather(
                &self.backend,
                &part,
                rows * longest,
                &mut parts,
            )?;
            let gathered = self.backend.download(&parts)?;
            for (q, range) in split.ranges().enumerate() {
                for r in 0..rows {
                    let source = &gathered[(q * rows + r) * longest..][..range.len()];
                    values[(first + r) * spec.cols + range.start..][..range.len()]
                        .copy_from_slice(source);
                }
            }
        }
        Ok(values)
    }

    /// Makes sure every layer has buffers for `rows` samples.
    fn reserve(&mut self, rows: usize) -> Result<()> {
        if rows <= self.capacity {
            return Ok(());
        }
        let splits = self.group.splits_layers();
        for (l, plan) in self.topology.layers.iter().enumerate() {
            if plan.kind() == LayerKind::Input {
                continue;
            }
            let len = rows * self.units[l].len();
            let feeds_dense = self
                .topology
                .layers
                .iter()
                .any(|p| p.connections.iter().any(|c| c.source == l));
            self.buffers[l] = Some(LayerBuffers {
                z: self.backend.zeros(len)?,
                activated: self.backend.zeros(len)?,
                dropped: None,
                delta: self.backend.zeros(len)?,
                whole: (splits && feeds_dense)
                    .then(|| self.backend.zeros(rows * plan.width))
                    .transpose()?,
            });
        }
        if splits {
            let size = self.group.size();
            let split_widths = self
                .topology
                .layers
                .iter()
                .filter(|p| p.kind() != LayerKind::Input);
            let longest = split_widths
                .map(|p| Split::new(p.width, size).longest())
                .max()
                .unwrap_or(1);
            let widest = self
                .topology
                .layers
                .iter()
                .map(|p| p.width)
                .max()
                .unwrap_or(1);
            self.exchange = Some(Exchange {
                part: self.backend.zeros(rows * longest)?,
                parts: self.backend.zeros(size * rows * longest)?,
                partial: self.backend.zeros(rows * widest)?,
                target: self.backend.zeros(rows * longest)?,
            });
        }
        self.capacity = rows;
        Ok(())
    }

    /// Uploads a host batch.
    pub fn upload_batch(&self, batch: &BatchData) -> Result<DeviceBatch<B>> {
        DeviceBatch::upload(&self.backend, batch)
    }

    /// What layer `l` hands on: its sparse batch, its dense input, or its whole activations.
    fn output<'a>(
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
        Ok(Output::Dense(buffer.whole.as_ref().unwrap_or_else(|| {
            buffer.dropped.as_ref().unwrap_or(&buffer.activated)
        })))
    }

    /// The seed of layer `l`'s dropout masks in a pass seeded `seed`. Ranks that take shares
    /// of a batch draw their own masks; split layers draw the whole layer's.
    fn mask_seed(&self, seed: u64, l: usize) -> u64 {
        if self.group.splits_batches() {
            derive_seed(seed, &[l as u64, self.group.rank() as u64])
        } else {
            derive_seed(seed, &[l as u64])
        }
    }

    /// Where layer `l`'s columns on this rank lie in the whole layer.
    fn window(&self, l: usize) -> ColumnWindow {
        ColumnWindow {
            offset: self.units[l].start,
            total: self.topology.layers[l].width,
        }
    }

    /// Forward pass. Training and evaluation leave output layers at their products, for
    /// [`Backend::output_delta`] to apply the bias and activation in the same pass as the
    /// error; inference computes every layer's activations.
    pub fn forward(&mut self, batch: &mut DeviceBatch<B>, pass: Pass) -> Result<()> {
        let rows = batch.rows();
        self.reserve(rows)?;
        let dropout_seed = match pass {
            Pass::Training { dropout_seed } => Some(dropout_seed),
            Pass::Evaluation | Pass::Inference => None,
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
                        self.backend
                            .dropout(rows, plan.width, whole, dropout, seed, a)?;
                    }
                }
                continue;
            }
            let mut buffer = self.buffers[l].take().expect("reserved");
            self.layer_products(batch, l, &mut buffer.z)?;
            let plan = &self.topology.layers[l];
            if plan.kind() == LayerKind::Output && pass != Pass::Inference {
                self.buffers[l] = Some(buffer);
                continue;
            }
            let units = self.units[l].len();
            self.backend.activation_forward(
                plan.definition.activation,
                rows,
                units,
                plan.bias.map(|b| &self.parameters[b].value),
                &mut buffer.z,
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
                    backend.fill(&mut dropped, rows * units, 0.0)?;
                    backend.axpy(rows * units, 1.0, &buffer.activated, &mut dropped)?;
                    let seed = self.mask_seed(seed, l);
                    backend.dropout(rows, units, self.window(l), dropout, seed, &mut dropped)?;
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
    fn layer_products(&self, batch: &DeviceBatch<B>, l: usize, z: &mut B::Buffer) -> Result<()> {
        let plan = &self.topology.layers[l];
        let rows = batch.rows();
        let units = self.units[l].len();
        for (i, connection) in plan.connections.iter().enumerate() {
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
                    .copy_matrix(rows, units, a, from, z, to, true)?;
            }
        }
        Ok(())
    }

    /// All-gathers this rank's `rows x units` activations `mine` of split layer `l` into the
    /// whole `rows x width` matrix.
    fn gather_layer(
        &mut self,
        l: usize,
        rows: usize,
        mine: &B::Buffer,
        whole: &mut B::Buffer,
    ) -> Result<()> {
        let width = self.topology.layers[l].width;
        let split = Split::new(width, self.group.size());
        let longest = split.longest();
        let exchange = self.exchange.as_mut().expect("reserved for split layers");
        let units = self.units[l].len();
        let padded = Strided {
            offset: 0,
            stride: longest,
        };
        let dense = Strided {
            offset: 0,
            stride: units,
        };
        self.backend
            .copy_matrix(rows, units, mine, dense, &mut exchange.part, padded, false)?;
        self.group.communicator().all_gather(
            &self.backend,
            &exchange.part,
            rows * longest,
            &mut exchange.parts,
        )?;
        for (q, range) in split.ranges().enumerate() {
            let from = Strided {
                offset: q * rows * longest,
                stride: longest,
            };
            let to = Strided {
                offset: range.start,
                stride: width,
            };
            self.backend
                .copy_matrix(rows, range.len(), &exchange.parts, from, whole, to, false)?;
        }
        Ok(())
    }

    /// Reduce-scatters the whole-width partial deltas in `exchange.partial` (every rank's
    /// share of `dE/d(source)`) and adds this rank's columns of their sum to split layer
    /// `l`'s delta.
    fn scatter_delta(&mut self, l: usize, rows: usize) -> Result<()> {
        let width = self.topology.layers[l].width;
        let split = Split::new(width, self.group.size());
        let longest = split.longest();
        let exchange = self.exchange.as_mut().expect("reserved for split layers");
        for (q, range) in split.ranges().enumerate() {
            let from = Strided {
                offset: range.start,
                stride: width,
            };
            let to = Strided {
                offset: q * rows * longest,
                stride: longest,
            };
            self.backend.copy_matrix(
                rows,
                range.len(),
                &exchange.partial,
                from,
                &mut exchange.parts,
                to,
                false,
            )?;
        }
        self.group.communicator().reduce_scatter(
            &self.backend,
            &exchange.parts,
            rows * longest,
            &mut exchange.part,
        )?;
        let units = self.units[l].len();
        let delta = &mut self.buffers[l].as_mut().expect("forward ran").delta;
        let padded = Strided {
            offset: 0,
            stride: longest,
        };
        let dense = Strided {
            offset: 0,
            stride: units,
        };
        self.backend
            .copy_matrix(rows, units, &exchange.part, padded, delta, dense, true)
    }

    /// Backward pass after a training forward pass with the same `dropout_seed`: fills the
    /// gradients (mean over the batch, all ranks' samples when they share batches) and adds
    /// the batch's error to the loss accumulator. Plain SGD on sparse inputs updates those
    /// weights here directly.
    pub fn backward(&mut self, batch: &DeviceBatch<B>, dropout_seed: u64) -> Result<()> {
        let settings = self
            .optimizer
            .ok_or_else(|| Error::Config("no optimizer set".into()))?;
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
            }
            let units = self.units[l].len();
            if let Some(b) = self.topology.layers[l].bias {
                let gradient = self.parameters[b]
                    .gradient
                    .as_mut()
                    .expect("biases have gradients");
                self.backend
                    .bias_gradient(rows, units, &buffer.delta, scale, gradient)?;
            }
            let connections = self.topology.layers[l].connections.clone();
            for connection in &connections {
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
    fn output_delta(
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
                    rows,
                    units.len(),
                    t,
                    from,
                    &mut exchange.target,
                    to,
                    false,
                )?;
                Target::Dense(&exchange.target)
            }
        };
        self.backend.output_delta(
            self.topology.definition.error_function,
            output_activation(plan, &self.parameters),
            rows,
            units.len(),
            z,
            target,
            delta,
            &mut self.loss,
        )
    }

    /// Turns hidden layer `l`'s `dE/da` into `dE/dz`: the sparseness penalty, dropout and the
    /// activation's derivative, with the PReLU slopes' gradient on the way.
    fn hidden_delta(
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
                rows,
                units,
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
            backend.dropout(rows, units, self.window(l), p, seed, &mut buffer.delta)?;
        }
        if let Some(s) = plan.slope {
            let gradient = self.parameters[s]
                .gradient
                .as_mut()
                .expect("slopes have gradients");
            backend.slope_gradient(rows, units, &buffer.z, &buffer.delta, scale, gradient)?;
        }
        let slope = plan.slope.map(|s| &self.parameters[s].value);
        backend.activation_backward(
            plan.definition.activation,
            rows,
            units,
            &buffer.z,
            &buffer.activated,
            slope,
            &mut buffer.delta,
        )
    }

    /// Adds the gradient of `connection` into layer `l` (whose `dE/dz` is `delta`), or for
    /// plain SGD on a sparse input, the step itself.
    fn weight_gradient(
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
    fn propagate_delta(
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

    /// The learning rate of the next step, after the definition's decay.
    fn learning_rate(&self, settings: &OptimizerSettings) -> f32 {
        settings.learning_rate / (1.0 + self.topology.definition.decay * self.steps as f32)
    }

    /// Applies the optimizer to every parameter with a gradient, then the max-norm constraints.
    pub fn step(&mut self) -> Result<()> {
        let settings = self
            .optimizer
            .ok_or_else(|| Error::Config("no optimizer set".into()))?;
        let learning_rate = self.learning_rate(&settings);
        self.steps += 1;
        let step = OptimizerStep {
            kind: settings.kind,
            learning_rate,
            l1: settings.l1,
            l2: settings.l2,
            step: self.steps,
        };
        for p in 0..self.parameters.len() {
            let len = self.local_len(p);
            let parameter = &mut self.parameters[p];
            if let Some(gradient) = &parameter.gradient {
                self.backend.optimizer_step(
                    &step,
                    len,
                    &mut parameter.value,
                    gradient,
                    &mut parameter.state,
                )?;
            }
        }
        // A unit's incoming weights are one column, always on one rank.
        for plan in &self.topology.layers {
            let max_norm = plan.definition.weight_norm;
            if max_norm <= 0.0 {
                continue;
            }
            for connection in plan.connections.iter().filter(|c| !c.transposed) {
                let p = connection.weights;
                let rows = self.topology.parameters[p].rows;
                self.backend.max_norm(
                    rows,
                    self.columns[p].len(),
                    max_norm,
                    &mut self.parameters[p].value,
                )?;
            }
        }
        Ok(())
    }

    /// One training step on a batch: forward, backward, optimizer.
    pub fn train_batch(&mut self, batch: &mut DeviceBatch<B>, dropout_seed: u64) -> Result<()> {
        self.forward(batch, Pass::Training { dropout_seed })?;
        self.backward(batch, dropout_seed)?;
        self.step()
    }

    /// Returns the error summed since the last call (over every rank) and resets the
    /// accumulator.
    pub fn take_loss(&mut self) -> Result<f64> {
        if self.group.size() > 1 {
            self.group
                .communicator()
                .all_reduce(&self.backend, &mut self.loss, 1)?;
        }
        let loss = self.backend.download(&self.loss)?[0] as f64;
        self.backend.fill(&mut self.loss, 1, 0.0)?;
        Ok(loss)
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

    /// This rank's units of layer `l`'s activations after a forward pass, `rows x units` on
    /// the device (only the first `rows * units` values belong to the batch). An output
    /// layer has them after an inference pass only.
    pub fn activations(&self, l: usize) -> Result<&B::Buffer> {
        self.buffers[l]
            .as_ref()
            .map(|b| &b.activated)
            .ok_or_else(|| {
                Error::Config(format!(
                    "layer '{}' has no activations",
                    self.topology.layers[l].name()
                ))
            })
    }

    /// Queues the `k` best units of layer `l` for each of the `rows` samples of the last
    /// inference pass, leaving out the columns of each row in `exclude` (of the whole
    /// layer); [`Network::read_top_k`] reads them.
    pub fn top_k(
        &self,
        l: usize,
        rows: usize,
        k: usize,
        exclude: Option<&SparseBatch<B>>,
    ) -> Result<B::TopK> {
        let units = self.units[l].clone();
        self.backend.top_k(
            rows,
            units.len(),
            self.activations(l)?,
            k,
            exclude,
            units.start,
        )
    }

    /// The columns (of the whole layer) and scores of a [`Network::top_k`], `k` per row; a
    /// split layer's ranks each found the best of their units, merged here.
    pub fn read_top_k(&self, top: B::TopK, k: usize) -> Result<(Vec<u32>, Vec<f32>)> {
        let (columns, scores) = self.backend.read_top_k(top)?;
        if !self.group.splits_layers() {
            return Ok((columns, scores));
        }
        let mut packed = scores;
        packed.extend(columns.iter().map(|&c| f32::from_bits(c)));
        let all = self.group.all_gather_host(&self.backend, &packed)?;
        Ok(merge_top_k(&all, self.group.size(), k))
    }
}

/// Merges every rank's `rows x k` best (each rank's block: scores, then columns as bits)
/// into the `k` best of each row, ordered as [`Backend::top_k`] orders them.
fn merge_top_k(all: &[f32], ranks: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
    let block = all.len() / ranks.max(1);
    let rows = block / (2 * k).max(1);
    let mut columns = Vec::with_capacity(rows * k);
    let mut scores = Vec::with_capacity(rows * k);
    let rank_order = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let mut candidates: Vec<(f32, u32)> = Vec::with_capacity(ranks * k);
    for r in 0..rows {
        candidates.clear();
        for q in 0..ranks {
            let (score, column) = all[q * block..(q + 1) * block].split_at(rows * k);
            candidates.extend((r * k..(r + 1) * k).map(|i| (score[i], column[i].to_bits())));
        }
        candidates.sort_by(|a, b| {
            rank_order(b.0)
                .total_cmp(&rank_order(a.0))
                .then(a.1.cmp(&b.1))
        });
        for &(score, column) in &candidates[..k] {
            columns.push(column);
            scores.push(score);
        }
    }
    (columns, scores)
}

/// What a forward pass is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Training: dropout with the masks of `dropout_seed`; output layers stop at their
    /// products, for [`Network::backward`].
    Training { dropout_seed: u64 },
    /// The error without training: no dropout; output layers stop at their products.
    Evaluation,
    /// Prediction: no dropout; every layer's activations.
    Inference,
}

/// The bias, activation and slopes an output layer applies after its products.
fn output_activation<'a, B: Backend>(
    plan: &LayerPlan,
    parameters: &'a [Parameter<B>],
) -> OutputActivation<'a, B> {
    OutputActivation {
        activation: plan.definition.activation,
        bias: plan.bias.map(|b| &parameters[b].value),
        slope: plan.slope.map(|s| &parameters[s].value),
    }
}

/// The units of every layer this rank computes: inputs are whole on every rank; computed
/// layers are split when the group splits layers. Refuses what a split cannot compute yet.
fn layer_units<B: Backend>(topology: &Topology, group: &Group<B>) -> Result<Vec<Range<usize>>> {
    topology
        .layers
        .iter()
        .map(|plan| {
            if plan.kind() == LayerKind::Input || !group.splits_layers() {
                return Ok(0..plan.width);
            }
            if is_row_wise(plan.definition.activation) {
                return Err(Error::Parallel(format!(
                    "layer '{}' uses {:?}, which needs each whole row: it cannot be split across \
                     ranks (use data parallelism)",
                    plan.name(),
                    plan.definition.activation
                )));
            }
            if let Some(c) = plan.connections.iter().find(|c| c.transposed) {
                return Err(Error::Parallel(format!(
                    "layer '{}' reuses the weights of layer '{}' transposed, which cannot be \
                     split across ranks yet (use data parallelism)",
                    plan.name(),
                    topology.layers[c.source].name()
                )));
            }
            Ok(Split::new(plan.width, group.size()).range(group.rank()))
        })
        .collect()
}

/// The columns of every parameter this rank keeps: those of the units of the layer it feeds.
fn parameter_columns<B: Backend>(
    topology: &Topology,
    units: &[Range<usize>],
    group: &Group<B>,
) -> Vec<Range<usize>> {
    let mut columns: Vec<Range<usize>> = topology.parameters.iter().map(|p| 0..p.cols).collect();
    if !group.splits_layers() {
        return columns;
    }
    for (l, plan) in topology.layers.iter().enumerate() {
        let owned = plan.connections.iter().map(|c| c.weights);
        for p in owned.chain(plan.bias).chain(plan.slope) {
            columns[p] = units[l].clone();
        }
    }
    columns
}

/// Plain SGD without decay on weights used by one sparse-input connection alone: the
/// gradient goes straight into the weights, touching only the rows a batch uses.
fn direct_sgd(topology: &Topology, settings: &OptimizerSettings, parameter: usize) -> bool {
    let spec = &topology.parameters[parameter];
    if settings.kind != OptimizerKind::Sgd
        || settings.l1 != 0.0
        || settings.l2 != 0.0
        || spec.role != ParameterRole::Weights
        || spec.users != 1
    {
        return false;
    }
    topology.layers.iter().any(|plan| {
        plan.connections
            .iter()
            .any(|c| c.weights == parameter && topology.layers[c.source].is_sparse_input())
    })
}
