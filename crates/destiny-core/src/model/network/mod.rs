//! A network resident on a backend: parameters, optimizer state, and the per-layer buffers
//! of one mini-batch; forward and backward passes and the optimizer step.
//!
//! A network may be one rank of a [`Group`]: split by units across ranks (model parallel,
//! where it holds only its columns of every layer and parameter) or whole on every rank with
//! a share of each batch (data parallel). See [`crate::parallel`].

mod backward;
mod exchange;
mod forward;
mod spatial;

use super::batch::{BatchData, DeviceBatch, DeviceRows, DeviceRowsMut};
use super::init::initial_values;
use super::spatial::Operation;
use super::topology::{Connection, LayerPlan, ParameterRole, ParameterSpec, Topology};
use crate::backend::random::derive_seed;
use crate::backend::{
    Backend, ColumnWindow, GemmShape, OptimizerKind, OptimizerStep, OutputLayer, Shape,
    SparseBatch, Strided, Target,
};
use crate::config::{LayerKind, NetworkDefinition};
use crate::error::{Error, Result};
use crate::math::activation::is_row_wise;
use crate::parallel::{slice_columns, Group, Split};
use std::borrow::Cow;
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
    /// A batch-normalised layer's normalised sums and statistics.
    normalization: Option<NormalizationBuffers<B>>,
}

/// A batch-normalised layer's buffers: `z` holds its sums, `normalized` what its activation
/// reads (then scratch for the backward pass), and the batch's statistics wait for the
/// backward pass.
struct NormalizationBuffers<B: Backend> {
    normalized: B::Buffer,
    saved_mean: B::Buffer,
    saved_inverse_deviation: B::Buffer,
}

impl<B: Backend> LayerBuffers<B> {
    /// What the layer hands on (see [`handed_on`]).
    fn handed_on(&self) -> &B::Buffer {
        handed_on(&self.whole, &self.dropped, &self.activated)
    }

    /// What the layer hands on, and its delta to add to.
    fn output_and_delta(&mut self) -> (&B::Buffer, &mut B::Buffer) {
        let LayerBuffers {
            whole,
            dropped,
            activated,
            delta,
            ..
        } = self;
        (handed_on(whole, dropped, activated), delta)
    }
}

/// What a layer hands on: the whole layer when it is split, else its activations after
/// dropout when dropout ran, else its activations.
fn handed_on<'a, T>(whole: &'a Option<T>, dropped: &'a Option<T>, activated: &'a T) -> &'a T {
    whole
        .as_ref()
        .unwrap_or_else(|| dropped.as_ref().unwrap_or(activated))
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
    /// Every weight waits for [`Network::step`], even those plain SGD would update during
    /// the backward pass, so that a batch can still be dropped after its loss is read.
    updates_wait_for_step: bool,
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
            Ok(Cow::Owned(initial_values(spec, i, seed)))
        })
    }

    /// One rank of a network with the given whole parameter values (in
    /// `topology.parameters` order), of which it uploads its columns (`Group::single()` for
    /// a network on one device).
    pub fn with_parameters_in_group(
        backend: B,
        topology: Topology,
        values: &[Vec<f32>],
        group: Group<B>,
    ) -> Result<Self> {
        if values.len() != topology.parameters.len() {
            return Err(Error::Dimension(format!(
                "{} parameter tensors given, the network has {}",
                values.len(),
                topology.parameters.len()
            )));
        }
        Self::with_parameters_from(backend, topology, group, |_, i| {
            Ok(Cow::Borrowed(&values[i]))
        })
    }

    /// One rank of a network whose whole parameter values `value_of` gives one parameter at
    /// a time (in `topology.parameters` order), borrowed where it can (from a mapped model
    /// file), so that at most one whole tensor is copied on the host at once.
    pub fn with_parameters_from<'v>(
        backend: B,
        topology: Topology,
        group: Group<B>,
        mut value_of: impl FnMut(&ParameterSpec, usize) -> Result<Cow<'v, [f32]>>,
    ) -> Result<Self> {
        Self::build(backend, topology, group, |spec, i| {
            let value = value_of(spec, i)?;
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
    /// parameter at a time.
    fn build<'v>(
        backend: B,
        topology: Topology,
        group: Group<B>,
        mut value_of: impl FnMut(&ParameterSpec, usize) -> Result<Cow<'v, [f32]>>,
    ) -> Result<Self> {
        let units = layer_units(&topology, &group)?;
        let columns = parameter_columns(&topology, &units, &group);
        let values = topology.parameters.iter().zip(&columns);
        let values = values.map(|(spec, c)| spec.rows * c.len()).sum();
        check_fits(&backend, values, "the network's weights")?;
        let mut parameters = Vec::with_capacity(topology.parameters.len());
        for (i, spec) in topology.parameters.iter().enumerate() {
            let whole = value_of(spec, i)?;
            let mine = slice_columns(&whole, spec.cols, columns[i].clone());
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
            updates_wait_for_step: false,
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

    /// The optimizer, which training needs set.
    fn required_optimizer(&self) -> Result<OptimizerSettings> {
        self.optimizer.ok_or_else(|| {
            Error::Options("no optimizer set: call set_optimizer before training".into())
        })
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
        let trained = |i: usize| self.topology.parameters[i].role.is_trained();
        if self.optimizer.is_none() {
            let values = (0..self.parameters.len()).filter(|&i| trained(i));
            let values: usize = values.map(|i| self.local_len(i)).sum();
            let what = format!("gradients and {:?} state for the weights", settings.kind);
            let copies = 1 + settings.kind.state_count();
            check_fits(&self.backend, values * copies, &what)?;
        }
        for i in 0..self.parameters.len() {
            // Running statistics have neither gradients nor optimizer state.
            if !self.topology.parameters[i].role.is_trained() {
                continue;
            }
            let len = self.local_len(i);
            let direct = direct_sgd(&self.topology, &settings, i)
                && !self.group.splits_batches()
                && !self.updates_wait_for_step;
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
        let kind = self.required_optimizer()?.kind;
        for (i, buffers) in state.into_iter().enumerate() {
            let spec = &self.topology.parameters[i];
            let count = spec.optimizer_states(kind);
            if buffers.len() != count {
                return Err(Error::Dimension(format!(
                    "parameter {}: {} optimizer state tensors, {:?} keeps {count}",
                    spec.name,
                    buffers.len(),
                    kind,
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
    /// weights that plain SGD updates in place), for the cases of [`crate::testing`].
    #[cfg(any(test, feature = "testing"))]
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

    /// Makes sure every layer has buffers for `rows` samples.
    fn reserve(&mut self, rows: usize) -> Result<()> {
        if rows <= self.capacity {
            return Ok(());
        }
        let splits = self.group.splits_layers();
        let feeds_dense = |l: usize| {
            self.topology
                .layers
                .iter()
                .any(|p| p.connections.iter().any(|c| c.source == l))
        };
        let values: usize = (self.topology.layers.iter().enumerate())
            .filter(|(_, plan)| plan.kind() != LayerKind::Input)
            .map(|(l, plan)| {
                let whole = if splits && feeds_dense(l) {
                    plan.width
                } else {
                    0
                };
                let normalized = plan.normalization.as_ref().map_or(0, |_| 1);
                rows * ((3 + normalized) * self.units[l].len() + whole)
            })
            .sum();
        // A batch too large for the device is refused with the figures before any of it is
        // allocated (an allocation the system cannot serve would abort the process).
        check_fits(
            &self.backend,
            values,
            &format!("the layers' values for a batch of {rows} samples (see --batch-size)"),
        )?;
        for (l, plan) in self.topology.layers.iter().enumerate() {
            if plan.kind() == LayerKind::Input {
                continue;
            }
            let len = rows * self.units[l].len();
            let feeds_dense = feeds_dense(l);
            self.buffers[l] = Some(LayerBuffers {
                z: self.backend.zeros(len)?,
                activated: self.backend.zeros(len)?,
                dropped: None,
                delta: self.backend.zeros(len)?,
                whole: (splits && feeds_dense)
                    .then(|| self.backend.zeros(rows * plan.width))
                    .transpose()?,
                normalization: match &plan.normalization {
                    Some(n) => Some(NormalizationBuffers {
                        normalized: self.backend.zeros(len)?,
                        saved_mean: self.backend.zeros(n.normalization.groups())?,
                        saved_inverse_deviation: self.backend.zeros(n.normalization.groups())?,
                    }),
                    None => None,
                },
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

    /// The learning rate of the next step, after the definition's decay.
    fn learning_rate(&self, settings: &OptimizerSettings) -> f32 {
        settings.learning_rate / (1.0 + self.topology.definition.decay * self.steps as f32)
    }

    /// Applies the optimizer to every parameter with a gradient, then the max-norm constraints.
    pub fn step(&mut self) -> Result<()> {
        let settings = self.required_optimizer()?;
        let learning_rate = self.learning_rate(&settings);
        self.steps += 1;
        let step = OptimizerStep {
            kind: settings.kind,
            learning_rate,
            l1: settings.l1,
            l2: settings.l2,
            step: self.steps,
        };
        // Weight decay applies to weights only, as in DSSTNE: biases and slopes are free.
        let undecayed = OptimizerStep {
            l1: 0.0,
            l2: 0.0,
            ..step
        };
        for p in 0..self.parameters.len() {
            let len = self.local_len(p);
            let step = match self.topology.parameters[p].role.decays() {
                true => &step,
                false => &undecayed,
            };
            let parameter = &mut self.parameters[p];
            if let Some(gradient) = &parameter.gradient {
                self.backend.optimizer_step(
                    step,
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
                    Shape::new(rows, self.columns[p].len()),
                    max_norm,
                    &mut self.parameters[p].value,
                )?;
            }
        }
        Ok(())
    }

    /// One training step on a batch: forward, backward, optimizer.
    pub fn train_batch(&mut self, batch: &mut DeviceBatch<B>, dropout_seed: u64) -> Result<()> {
        self.compute_gradients(batch, dropout_seed)?;
        self.step()
    }

    /// The forward and backward passes of a training step, without the optimizer: the
    /// batch's error is in the loss accumulator and, when [`Network::wait_for_step`] is on,
    /// no weight has changed yet.
    pub fn compute_gradients(
        &mut self,
        batch: &mut DeviceBatch<B>,
        dropout_seed: u64,
    ) -> Result<()> {
        self.forward(batch, Pass::Training { dropout_seed })?;
        self.backward(batch, dropout_seed)
    }

    /// With `on`, no weight changes before [`Network::step`] (plain SGD on sparse inputs then
    /// keeps a gradient instead of updating the weights during the backward pass), so that a
    /// batch can be dropped after [`Network::compute_gradients`].
    pub fn wait_for_step(&mut self, on: bool) -> Result<()> {
        if self.updates_wait_for_step == on {
            return Ok(());
        }
        self.updates_wait_for_step = on;
        match self.optimizer {
            Some(settings) => self.set_optimizer(settings),
            None => Ok(()),
        }
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
}

/// What a forward pass is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Training: dropout with the masks of `dropout_seed`; output layers stop at their
    /// products, for [`Network::backward`].
    Training { dropout_seed: u64 },
    /// The error without training, or prediction: no dropout; output layers stop at their
    /// products, for [`Network::evaluate_batch`] or [`Network::top_k`].
    Evaluation,
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
            if plan.operation != Operation::FullyConnected || plan.normalization.is_some() {
                return Err(Error::Parallel(format!(
                    "layer '{}' is convolutional, pooling or batch normalised, which is computed \
                     whole on every rank: it cannot be split across ranks (use data parallelism)",
                    plan.name()
                )));
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

/// Refuses `values` more `f32`s for `what` where the backend says they cannot fit, with the
/// figures, before any of them is allocated.
fn check_fits<B: Backend>(backend: &B, values: usize, what: &str) -> Result<()> {
    let Some(available) = backend.available_memory() else {
        return Ok(());
    };
    let bytes = values as u64 * std::mem::size_of::<f32>() as u64;
    if bytes <= available {
        return Ok(());
    }
    let gigabytes = |b: u64| b as f64 / 1e9;
    Err(Error::Backend {
        backend: backend.name(),
        message: format!(
            "{what} need {:.1} GB ({values} values) but {:.1} GB is available",
            gigabytes(bytes),
            gigabytes(available)
        ),
    })
}
