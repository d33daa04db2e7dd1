//! A network resident on a backend: parameters, optimizer state, and the per-layer buffers
//! of one mini-batch; forward and backward passes and the optimizer step.

use super::batch::{BatchData, DeviceBatch};
use super::init::initial_values;
use super::topology::{Connection, LayerPlan, ParameterRole, Topology};
use crate::backend::random::derive_seed;
use crate::backend::{
    Backend, ColumnWindow, GemmShape, OptimizerKind, OptimizerStep, OutputActivation, SparseBatch,
    Target,
};
use crate::config::LayerKind;
use crate::error::{Error, Result};

/// Optimizer settings of a training run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerSettings {
    pub kind: OptimizerKind,
    pub learning_rate: f32,
    pub l1: f32,
    pub l2: f32,
}

/// A parameter tensor on the device with its gradient and optimizer state.
pub struct Parameter<B: Backend> {
    pub value: B::Buffer,
    /// Absent while gradients go straight into the values (plain SGD on a sparse input).
    gradient: Option<B::Buffer>,
    pub state: Vec<B::Buffer>,
}

/// The buffers of one layer for one batch (`capacity x width` each).
struct LayerBuffers<B: Backend> {
    /// Pre-activation.
    z: B::Buffer,
    /// `f(z)`.
    activated: B::Buffer,
    /// `f(z)` after dropout, when dropout ran in this pass.
    dropped: Option<B::Buffer>,
    /// `dE/d(output)` while gradients accumulate, then `dE/dz`.
    delta: B::Buffer,
}

/// What a layer hands to the layers it feeds.
enum Output<'a, B: Backend> {
    Sparse(&'a SparseBatch<B>),
    Dense(&'a B::Buffer),
}

/// A network on a backend.
pub struct Network<B: Backend> {
    backend: B,
    topology: Topology,
    parameters: Vec<Parameter<B>>,
    buffers: Vec<Option<LayerBuffers<B>>>,
    capacity: usize,
    loss: B::Buffer,
    optimizer: Option<OptimizerSettings>,
    /// Number of optimizer steps taken (Adam's bias correction counts them).
    steps: u64,
}

impl<B: Backend> Network<B> {
    /// A network with freshly initialised parameters.
    pub fn new(backend: B, topology: Topology, seed: u64) -> Result<Self> {
        let values: Vec<Vec<f32>> = topology
            .parameters
            .iter()
            .enumerate()
            .map(|(i, spec)| initial_values(spec, i, seed))
            .collect();
        Self::with_parameters(backend, topology, values)
    }

    /// A network with the given parameter values (in `topology.parameters` order).
    pub fn with_parameters(backend: B, topology: Topology, values: Vec<Vec<f32>>) -> Result<Self> {
        if values.len() != topology.parameters.len() {
            return Err(Error::Dimension(format!(
                "{} parameter tensors given, the network has {}",
                values.len(),
                topology.parameters.len()
            )));
        }
        let mut parameters = Vec::with_capacity(values.len());
        for (spec, value) in topology.parameters.iter().zip(values) {
            if value.len() != spec.len() {
                return Err(Error::Dimension(format!(
                    "parameter {} has {} values, {} x {} expected",
                    spec.name,
                    value.len(),
                    spec.rows,
                    spec.cols
                )));
            }
            parameters.push(Parameter {
                value: backend.upload(&value)?,
                gradient: None,
                state: Vec::new(),
            });
        }
        let loss = backend.zeros(1)?;
        let buffers = topology.layers.iter().map(|_| None).collect();
        Ok(Network {
            backend,
            topology,
            parameters,
            buffers,
            capacity: 0,
            loss,
            optimizer: None,
            steps: 0,
        })
    }

    /// The resolved topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The backend computing this network.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Number of optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The optimizer set by [`Network::set_optimizer`], if any.
    pub fn optimizer(&self) -> Option<&OptimizerSettings> {
        self.optimizer.as_ref()
    }

    /// Chooses the optimizer, allocating its state (zeros) and the gradients it needs.
    /// Keeps existing state when the optimizer kind is unchanged.
    pub fn set_optimizer(&mut self, settings: OptimizerSettings) -> Result<()> {
        let same_kind = self.optimizer.is_some_and(|o| {
            std::mem::discriminant(&o.kind) == std::mem::discriminant(&settings.kind)
        });
        for (i, spec) in self.topology.parameters.iter().enumerate() {
            let direct = direct_sgd(&self.topology, &settings, i);
            let parameter = &mut self.parameters[i];
            parameter.gradient = match (direct, parameter.gradient.take()) {
                (true, _) => None,
                (false, Some(g)) => Some(g),
                (false, None) => Some(self.backend.zeros(spec.len())?),
            };
            if !same_kind || parameter.state.len() != settings.kind.state_count() {
                parameter.state = (0..settings.kind.state_count())
                    .map(|_| self.backend.zeros(spec.len()))
                    .collect::<Result<_>>()?;
            }
        }
        self.optimizer = Some(settings);
        Ok(())
    }

    /// Restores the optimizer step count and state (from a model file).
    pub fn restore_optimizer_state(&mut self, steps: u64, state: Vec<Vec<Vec<f32>>>) -> Result<()> {
        let kind = self
            .optimizer
            .ok_or_else(|| Error::Config("no optimizer set".into()))?
            .kind;
        for (i, buffers) in state.into_iter().enumerate() {
            if buffers.len() != kind.state_count() {
                return Err(Error::Dimension(format!(
                    "parameter {}: {} optimizer state tensors, {:?} keeps {}",
                    self.topology.parameters[i].name,
                    buffers.len(),
                    kind,
                    kind.state_count()
                )));
            }
            self.parameters[i].state = buffers
                .iter()
                .map(|b| self.backend.upload(b))
                .collect::<Result<_>>()?;
        }
        self.steps = steps;
        Ok(())
    }

    /// Downloads every parameter's values, in `topology.parameters` order.
    pub fn parameter_values(&self) -> Result<Vec<Vec<f32>>> {
        self.parameters
            .iter()
            .map(|p| self.backend.download(&p.value))
            .collect()
    }

    /// Overwrites the values of parameter `index`.
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
        self.backend
            .write(values, &mut self.parameters[index].value)
    }

    /// Downloads the gradient of every parameter from the last backward pass (`None` for
    /// weights that plain SGD updates in place).
    pub fn gradient_values(&self) -> Result<Vec<Option<Vec<f32>>>> {
        self.parameters
            .iter()
            .map(|p| {
                p.gradient
                    .as_ref()
                    .map(|g| self.backend.download(g))
                    .transpose()
            })
            .collect()
    }

    /// Downloads the optimizer state of every parameter.
    pub fn optimizer_state(&self) -> Result<Vec<Vec<Vec<f32>>>> {
        self.parameters
            .iter()
            .map(|p| p.state.iter().map(|s| self.backend.download(s)).collect())
            .collect()
    }

    /// Makes sure every layer has buffers for `rows` samples.
    fn reserve(&mut self, rows: usize) -> Result<()> {
        if rows <= self.capacity {
            return Ok(());
        }
        for (l, plan) in self.topology.layers.iter().enumerate() {
            if plan.kind() == LayerKind::Input {
                continue;
            }
            let len = rows * plan.width;
            self.buffers[l] = Some(LayerBuffers {
                z: self.backend.zeros(len)?,
                activated: self.backend.zeros(len)?,
                dropped: None,
                delta: self.backend.zeros(len)?,
            });
        }
        self.capacity = rows;
        Ok(())
    }

    /// Uploads a host batch.
    pub fn upload_batch(&self, batch: &BatchData) -> Result<DeviceBatch<B>> {
        DeviceBatch::upload(&self.backend, batch)
    }

    /// What layer `l` hands on: its sparse batch, its dense input, or its activations.
    fn output<'a>(
        topology: &Topology,
        buffers: &'a [Option<LayerBuffers<B>>],
        batch: &'a DeviceBatch<B>,
        l: usize,
    ) -> Result<Output<'a, B>> {
        if topology.layers[l].kind() == LayerKind::Input {
            return batch.input(l).map(|input| match input {
                super::batch::DeviceRows::Sparse(x) => Output::Sparse(x),
                super::batch::DeviceRows::Dense(a) => Output::Dense(a),
            });
        }
        let buffer = buffers[l]
            .as_ref()
            .expect("layer computed before it is used");
        Ok(Output::Dense(
            buffer.dropped.as_ref().unwrap_or(&buffer.activated),
        ))
    }

    /// Forward pass. Training and evaluation leave output layers at their products, for
    /// [`Backend::output_delta`] to apply the bias and activation in the same pass as the
    /// error; inference computes every layer's activations.
    pub fn forward(&mut self, batch: &mut DeviceBatch<B>, pass: Pass) -> Result<()> {
        let rows = batch.rows();
        self.reserve(rows)?;
        let backend = &self.backend;
        let dropout_seed = match pass {
            Pass::Training { dropout_seed } => Some(dropout_seed),
            Pass::Evaluation | Pass::Inference => None,
        };
        for &l in &self.topology.order {
            let plan = &self.topology.layers[l];
            let dropout = plan.definition.dropout;
            if plan.kind() == LayerKind::Input {
                if let (Some(seed), true) = (dropout_seed, dropout > 0.0) {
                    if let Some(super::batch::DeviceRowsMut::Dense(a)) = batch.input_mut(l) {
                        backend.dropout(
                            rows,
                            plan.width,
                            ColumnWindow::whole(plan.width),
                            dropout,
                            derive_seed(seed, &[l as u64]),
                            a,
                        )?;
                    }
                }
                continue;
            }
            let mut buffer = self.buffers[l].take().expect("reserved");
            let width = plan.width;
            for (i, connection) in plan.connections.iter().enumerate() {
                let beta = if i == 0 { 0.0 } else { 1.0 };
                let w = &self.parameters[connection.weights].value;
                match Self::output(&self.topology, &self.buffers, batch, connection.source)? {
                    Output::Sparse(x) => backend.sparse_matmul(x, w, width, beta, &mut buffer.z)?,
                    Output::Dense(a) => {
                        let shape = GemmShape {
                            m: rows,
                            n: width,
                            k: self.topology.layers[connection.source].width,
                            transpose_a: false,
                            transpose_b: connection.transposed,
                        };
                        backend.gemm(shape, 1.0, a, w, beta, &mut buffer.z)?
                    }
                }
            }
            for &skip in &plan.skips {
                if let Output::Dense(a) = Self::output(&self.topology, &self.buffers, batch, skip)?
                {
                    backend.axpy(rows * width, 1.0, a, &mut buffer.z)?;
                }
            }
            if plan.kind() == LayerKind::Output && pass != Pass::Inference {
                self.buffers[l] = Some(buffer);
                continue;
            }
            backend.activation_forward(
                plan.definition.activation,
                rows,
                width,
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
                    let mut dropped = buffer
                        .dropped
                        .take()
                        .map_or_else(|| backend.zeros(self.capacity * width), Ok)?;
                    backend.fill(&mut dropped, rows * width, 0.0)?;
                    backend.axpy(rows * width, 1.0, &buffer.activated, &mut dropped)?;
                    backend.dropout(
                        rows,
                        width,
                        ColumnWindow::whole(width),
                        dropout,
                        derive_seed(seed, &[l as u64]),
                        &mut dropped,
                    )?;
                    Some(dropped)
                }
                _ => None,
            };
            self.buffers[l] = Some(buffer);
        }
        Ok(())
    }

    /// Backward pass after a training forward pass with the same `dropout_seed`: fills the
    /// gradients (mean over the batch) and adds the batch's error to the loss accumulator.
    /// Plain SGD on sparse inputs updates those weights here directly.
    pub fn backward(&mut self, batch: &DeviceBatch<B>, dropout_seed: u64) -> Result<()> {
        let settings = self
            .optimizer
            .ok_or_else(|| Error::Config("no optimizer set".into()))?;
        let learning_rate = self.learning_rate(&settings);
        let rows = batch.rows();
        let scale = 1.0 / rows as f32;
        let backend = &self.backend;
        for (spec, parameter) in self.topology.parameters.iter().zip(&mut self.parameters) {
            if let Some(gradient) = parameter.gradient.as_mut() {
                backend.fill(gradient, spec.len(), 0.0)?;
            }
        }
        for (l, plan) in self.topology.layers.iter().enumerate() {
            if plan.kind() == LayerKind::Hidden {
                let buffer = self.buffers[l].as_mut().expect("forward ran");
                backend.fill(&mut buffer.delta, rows * plan.width, 0.0)?;
            }
        }
        for &l in self.topology.order.iter().rev() {
            let plan = &self.topology.layers[l];
            if plan.kind() == LayerKind::Input {
                continue;
            }
            let width = plan.width;
            let mut buffer = self.buffers[l].take().expect("forward ran");
            if plan.kind() == LayerKind::Output {
                let target = match batch.target(l)? {
                    super::batch::DeviceRows::Sparse(x) => Target::Sparse {
                        entries: x,
                        first_column: 0,
                    },
                    super::batch::DeviceRows::Dense(t) => Target::Dense(t),
                };
                backend.output_delta(
                    self.topology.definition.error_function,
                    output_activation(plan, &self.parameters),
                    rows,
                    width,
                    &buffer.z,
                    target,
                    &mut buffer.delta,
                    &mut self.loss,
                )?;
            } else {
                if let Some(penalty) = plan
                    .definition
                    .sparseness_penalty
                    .filter(|_| plan.definition.sparse)
                {
                    let a = buffer.dropped.as_ref().unwrap_or(&buffer.activated);
                    backend.sparseness_penalty(
                        rows,
                        width,
                        a,
                        penalty.p,
                        penalty.beta,
                        &mut buffer.delta,
                        &mut self.loss,
                    )?;
                }
                if buffer.dropped.is_some() {
                    let seed = derive_seed(dropout_seed, &[l as u64]);
                    backend.dropout(
                        rows,
                        width,
                        ColumnWindow::whole(width),
                        plan.definition.dropout,
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
                        rows,
                        width,
                        &buffer.z,
                        &buffer.delta,
                        scale,
                        gradient,
                    )?;
                }
                let slope = plan.slope.map(|s| &self.parameters[s].value);
                backend.activation_backward(
                    plan.definition.activation,
                    rows,
                    width,
                    &buffer.z,
                    &buffer.activated,
                    slope,
                    &mut buffer.delta,
                )?;
            }
            if let Some(b) = plan.bias {
                let gradient = self.parameters[b]
                    .gradient
                    .as_mut()
                    .expect("biases have gradients");
                backend.bias_gradient(rows, width, &buffer.delta, scale, gradient)?;
            }
            for connection in &plan.connections {
                let Connection {
                    source,
                    weights,
                    transposed,
                } = *connection;
                let source_width = self.topology.layers[source].width;
                match Self::output(&self.topology, &self.buffers, batch, source)? {
                    Output::Sparse(x) => {
                        let parameter = &mut self.parameters[weights];
                        match parameter.gradient.as_mut() {
                            Some(gradient) => backend.sparse_transpose_matmul(
                                x,
                                &buffer.delta,
                                width,
                                scale,
                                gradient,
                            )?,
                            None => backend.sparse_transpose_matmul(
                                x,
                                &buffer.delta,
                                width,
                                -learning_rate * scale,
                                &mut parameter.value,
                            )?,
                        }
                    }
                    Output::Dense(a) => {
                        let gradient = self.parameters[weights]
                            .gradient
                            .as_mut()
                            .expect("dense weights have gradients");
                        // dW = a^T delta, or delta^T a for weights stored transposed.
                        let (shape, left, right) = if transposed {
                            (
                                GemmShape {
                                    m: width,
                                    n: source_width,
                                    k: rows,
                                    transpose_a: true,
                                    transpose_b: false,
                                },
                                &buffer.delta,
                                a,
                            )
                        } else {
                            (
                                GemmShape {
                                    m: source_width,
                                    n: width,
                                    k: rows,
                                    transpose_a: true,
                                    transpose_b: false,
                                },
                                a,
                                &buffer.delta,
                            )
                        };
                        backend.gemm(shape, scale, left, right, 1.0, gradient)?;
                    }
                }
                if self.topology.layers[source].kind() != LayerKind::Input {
                    let source_buffer = self.buffers[source].as_mut().expect("forward ran");
                    let shape = GemmShape {
                        m: rows,
                        n: source_width,
                        k: width,
                        transpose_a: false,
                        transpose_b: !transposed,
                    };
                    backend.gemm(
                        shape,
                        1.0,
                        &buffer.delta,
                        &self.parameters[weights].value,
                        1.0,
                        &mut source_buffer.delta,
                    )?;
                }
            }
            for &skip in &plan.skips {
                if self.topology.layers[skip].kind() != LayerKind::Input {
                    let source_buffer = self.buffers[skip].as_mut().expect("forward ran");
                    backend.axpy(rows * width, 1.0, &buffer.delta, &mut source_buffer.delta)?;
                }
            }
            self.buffers[l] = Some(buffer);
        }
        Ok(())
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
        for (spec, parameter) in self.topology.parameters.iter().zip(&mut self.parameters) {
            if let Some(gradient) = &parameter.gradient {
                self.backend.optimizer_step(
                    &step,
                    spec.len(),
                    &mut parameter.value,
                    gradient,
                    &mut parameter.state,
                )?;
            }
        }
        for plan in &self.topology.layers {
            let max_norm = plan.definition.weight_norm;
            if max_norm <= 0.0 {
                continue;
            }
            for connection in plan.connections.iter().filter(|c| !c.transposed) {
                let spec = &self.topology.parameters[connection.weights];
                self.backend.max_norm(
                    spec.rows,
                    spec.cols,
                    max_norm,
                    &mut self.parameters[connection.weights].value,
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

    /// Returns the error summed since the last call and resets the accumulator.
    pub fn take_loss(&mut self) -> Result<f64> {
        let loss = self.backend.download(&self.loss)?[0] as f64;
        self.backend.fill(&mut self.loss, 1, 0.0)?;
        Ok(loss)
    }

    /// Adds the error of a batch to the loss accumulator without training (validation).
    pub fn evaluate_batch(&mut self, batch: &mut DeviceBatch<B>) -> Result<()> {
        self.forward(batch, Pass::Evaluation)?;
        let rows = batch.rows();
        for l in self.topology.outputs().collect::<Vec<_>>() {
            let plan = &self.topology.layers[l];
            let buffer = self.buffers[l].as_mut().expect("forward ran");
            let target = match batch.target(l)? {
                super::batch::DeviceRows::Sparse(x) => Target::Sparse {
                    entries: x,
                    first_column: 0,
                },
                super::batch::DeviceRows::Dense(t) => Target::Dense(t),
            };
            self.backend.output_delta(
                self.topology.definition.error_function,
                output_activation(plan, &self.parameters),
                rows,
                plan.width,
                &buffer.z,
                target,
                &mut buffer.delta,
                &mut self.loss,
            )?;
        }
        Ok(())
    }

    /// The activations of layer `l` after a forward pass, `rows x width` on the device (only
    /// the first `rows * width` values belong to the batch). An output layer has them after
    /// an inference pass only.
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
