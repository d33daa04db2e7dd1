//! A network definition resolved against its data: every width known, every connection
//! bound to a parameter, and an order in which the layers can be computed.

use super::spatial::{grid_of, pooling, slide, NormalizationPlan, Operation};
use crate::backend::{Grid, Normalization, Sliding};
use crate::config::{
    Activation, LayerDefinition, LayerKind, LayerType, NetworkDefinition, PoolingFunction,
    WeightInit, Width,
};
use crate::error::{Error, Result};

/// What the engine needs to know about a dataset bound to a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetShape {
    pub width: usize,
    pub sparse: bool,
    /// The extent of each dimension of a sample (an image's `[x, y, channels]`), whose
    /// product is `width`; `[width]` for flat data.
    pub dimensions: Vec<usize>,
}

impl DatasetShape {
    /// A dataset of `width` columns with no further shape.
    pub fn flat(width: usize, sparse: bool) -> Self {
        DatasetShape {
            width,
            sparse,
            dimensions: vec![width],
        }
    }
}

/// The role of a parameter tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterRole {
    /// A connection's weights: `rows` source units by `cols` layer units.
    Weights,
    /// A layer's bias, one per unit.
    Bias,
    /// A `ParametricRectifiedLinear` layer's slope, one per unit.
    Slope,
    /// A convolution's filters: `rows` filters (the layer's channels) of `cols` values, each
    /// laid out `[source channel][z][y][x]`.
    Filters,
    /// Batch normalisation's scale, one per group.
    Scale,
    /// Batch normalisation's shift, one per group.
    Shift,
    /// Batch normalisation's running mean, kept for evaluation (not trained).
    RunningMean,
    /// Batch normalisation's running variance, kept for evaluation (not trained).
    RunningVariance,
}

impl ParameterRole {
    /// True for the values the optimizer trains; running statistics are only kept.
    pub fn is_trained(self) -> bool {
        !matches!(
            self,
            ParameterRole::RunningMean | ParameterRole::RunningVariance
        )
    }

    /// True for what weight decay applies to (weights and filters, as in DSSTNE).
    pub fn decays(self) -> bool {
        matches!(self, ParameterRole::Weights | ParameterRole::Filters)
    }
}

/// One parameter tensor of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterSpec {
    /// Stable name, also its name in model files: `weights.SOURCE.LAYER`, `bias.LAYER`,
    /// `slope.LAYER`.
    pub name: String,
    pub role: ParameterRole,
    pub rows: usize,
    pub cols: usize,
    pub init: WeightInit,
    /// Initial value of slopes.
    pub initial_slope: f32,
    /// How many connections use these weights (more than one when shared).
    pub users: usize,
}

impl ParameterSpec {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// True for an empty tensor.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many state tensors `kind` keeps for this parameter: none for what is not trained.
    pub fn optimizer_states(&self, kind: crate::backend::OptimizerKind) -> usize {
        match self.role.is_trained() {
            true => kind.state_count(),
            false => 0,
        }
    }
}

/// A connection from a source layer into a layer through a weight matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Index of the source layer.
    pub source: usize,
    /// Index of the weight parameter.
    pub weights: usize,
    /// The weights are stored `layer x source` (shared from the opposite connection).
    pub transposed: bool,
    /// A convolution's window from the source's grid to the layer's.
    pub sliding: Option<Sliding>,
}

/// A layer with its width and wiring resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub definition: LayerDefinition,
    pub width: usize,
    /// The extent of each dimension of the layer's units (DSSTNE's `Nx, Ny, Nz, Nw`), whose
    /// product is `width`.
    pub shape: Vec<usize>,
    /// For input layers: whether the bound dataset is sparse.
    pub sparse_data: bool,
    /// What the layer computes from its sources.
    pub operation: Operation,
    /// The layer's batch normalisation, between its sums and its activation.
    pub normalization: Option<NormalizationPlan>,
    pub connections: Vec<Connection>,
    /// Indices of skip source layers.
    pub skips: Vec<usize>,
    pub bias: Option<usize>,
    pub slope: Option<usize>,
}

impl LayerPlan {
    /// The layer's kind.
    pub fn kind(&self) -> LayerKind {
        self.definition.kind
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// True for an input layer fed by sparse rows.
    pub fn is_sparse_input(&self) -> bool {
        self.kind() == LayerKind::Input && self.sparse_data
    }
}

/// A resolved network.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// The definition with every `auto` width replaced by the resolved width.
    pub definition: NetworkDefinition,
    pub layers: Vec<LayerPlan>,
    /// Layer indices in an order where every layer follows its sources and skips.
    pub order: Vec<usize>,
    pub parameters: Vec<ParameterSpec>,
}

impl Topology {
    /// Resolves `definition`, asking `dataset` for the shape of each named dataset.
    pub fn new(
        definition: &NetworkDefinition,
        dataset: &dyn Fn(&str) -> Option<DatasetShape>,
    ) -> Result<Topology> {
        let names = LayerNames(definition);
        let mut definition = definition.clone();
        let mut layers = Vec::with_capacity(definition.layers.len());
        for layer in &mut definition.layers {
            let plan = resolve_layer(layer, dataset, &layers, &names)?;
            layers.push(plan);
        }
        let mut parameters: Vec<ParameterSpec> = Vec::new();
        // Owned connections first, so that shared ones can find the weights they reuse.
        for l in 0..layers.len() {
            if layers[l].kind() != LayerKind::Input {
                connect_owned(&mut layers, l, &names, &mut parameters)?;
            }
        }
        for l in 0..layers.len() {
            connect_shared(&mut layers, l, &names, &mut parameters)?;
        }
        let order = compute_order(&layers)?;
        Ok(Topology {
            definition,
            layers,
            order,
            parameters,
        })
    }

    /// Indices of the input layers.
    pub fn inputs(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.layers.len()).filter(|&l| self.layers[l].kind() == LayerKind::Input)
    }

    /// Indices of the output layers.
    pub fn outputs(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.layers.len()).filter(|&l| self.layers[l].kind() == LayerKind::Output)
    }

    /// Total number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.parameters.iter().map(ParameterSpec::len).sum()
    }
}

/// Finds layers by the names a definition refers to them by.
struct LayerNames<'a>(&'a NetworkDefinition);

impl LayerNames<'_> {
    /// The index of layer `name`, referred to by layer `user`.
    fn index_of(&self, name: &str, user: &str) -> Result<usize> {
        self.0
            .layers
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| {
                Error::Config(format!("layer '{user}' refers to unknown layer '{name}'"))
            })
    }

    /// As `index_of`, for a layer that feeds `user`: output layers end the network, since
    /// back-propagation starts from their error alone.
    fn source_of(&self, name: &str, user: &str) -> Result<usize> {
        let source = self.index_of(name, user)?;
        if self.0.layers[source].kind == LayerKind::Output {
            return Err(Error::Config(format!(
                "layer '{user}' takes input from output layer '{name}'; only input and hidden layers feed others"
            )));
        }
        Ok(source)
    }
}

/// Resolves one layer's width and shape, against its dataset or its sources (`earlier`,
/// the layers before it), writing them back into `layer`, and plans the layer without its
/// wiring.
fn resolve_layer(
    layer: &mut LayerDefinition,
    dataset: &dyn Fn(&str) -> Option<DatasetShape>,
    earlier: &[LayerPlan],
    names: &LayerNames,
) -> Result<LayerPlan> {
    let config = |message: String| Error::Config(message);
    let data = match (&layer.dataset, layer.kind) {
        (Some(name), LayerKind::Input | LayerKind::Output) => {
            Some(dataset(name).ok_or_else(|| {
                Error::Data(format!(
                    "layer '{}' needs dataset '{name}', which was not given",
                    layer.name
                ))
            })?)
        }
        (None, LayerKind::Input | LayerKind::Output) => {
            return Err(config(format!("layer '{}' has no DataSet", layer.name)))
        }
        _ => None,
    };
    let (shape, operation) = match layer.layer_type {
        LayerType::FullyConnected => (
            fully_connected_shape(layer, data.as_ref())?,
            Operation::FullyConnected,
        ),
        _ => spatial_shape(layer, earlier, names)?,
    };
    let width: usize = shape.iter().product();
    if width == 0 {
        return Err(config(format!("layer '{}' has no units", layer.name)));
    }
    layer.width = Width::Fixed(width);
    if layer.kind == LayerKind::Input && shape.len() > 1 {
        layer.dimensions = shape.clone();
    }
    if layer.kind == LayerKind::Output
        && matches!(
            layer.activation,
            Activation::ParametricRectifiedLinear { .. }
        )
    {
        return Err(config(format!(
            "output layer '{}': ParametricRectifiedLinear is supported on hidden layers only",
            layer.name
        )));
    }
    let mut plan = LayerPlan {
        definition: layer.clone(),
        width,
        shape,
        sparse_data: data.is_some_and(|s| s.sparse),
        operation,
        normalization: None,
        connections: Vec::new(),
        skips: Vec::new(),
        bias: None,
        slope: None,
    };
    if plan.definition.batch_normalization {
        // Filled in with the parameters' indices when the layer is wired.
        let per_channel = matches!(plan.operation, Operation::Convolution { .. });
        let grid = match plan.operation {
            Operation::Convolution { grid } => grid,
            _ => Grid::flat(width),
        };
        plan.normalization = Some(NormalizationPlan {
            normalization: Normalization {
                grid,
                per_channel,
                epsilon: Normalization::EPSILON,
            },
            scale: 0,
            shift: 0,
            running_mean: 0,
            running_variance: 0,
        });
    }
    Ok(plan)
}

/// A fully connected layer's shape: the dimensions its `N` lists, else its dataset's, else
/// flat; its width checked against its dataset's.
fn fully_connected_shape(
    layer: &LayerDefinition,
    data: Option<&DatasetShape>,
) -> Result<Vec<usize>> {
    let width = match (layer.width, data) {
        (Width::Auto, Some(data)) => data.width,
        (Width::Auto, None) => {
            return Err(Error::Config(format!(
                "layer '{}': N \"auto\" needs a dataset",
                layer.name
            )))
        }
        (Width::Fixed(n), Some(data)) if n != data.width => {
            return Err(Error::Dimension(format!(
                "layer '{}' has N {n} but its dataset '{}' is {} wide",
                layer.name,
                layer.dataset.as_deref().unwrap_or_default(),
                data.width
            )))
        }
        (Width::Fixed(n), _) => n,
    };
    if !layer.dimensions.is_empty() {
        return Ok(layer.dimensions.clone());
    }
    Ok(match data {
        Some(data) if data.dimensions.iter().product::<usize>() == width => data.dimensions.clone(),
        _ => vec![width],
    })
}

/// A convolutional or pooling layer's shape and operation, from its sources' shapes.
fn spatial_shape(
    layer: &LayerDefinition,
    earlier: &[LayerPlan],
    names: &LayerNames,
) -> Result<(Vec<usize>, Operation)> {
    let mut sources = Vec::new();
    for name in &layer.sources {
        let source = names.source_of(name, &layer.name)?;
        let plan = &earlier[source];
        if plan.is_sparse_input() {
            return Err(Error::Config(format!(
                "layer '{}' slides a window over the sparse input '{name}'; a convolution or pooling needs dense (image) data",
                layer.name
            )));
        }
        sources.push((source, &plan.shape));
    }
    let (first, first_shape) = sources[0];
    if let LayerType::Pooling(PoolingFunction::LocalResponseNormalization, _) = layer.layer_type {
        let grid = grid_of(first_shape, first_shape.len() - 1);
        let operation = Operation::LocalResponse {
            source: first,
            grid,
            response: names.0.local_response,
        };
        return Ok((first_shape.clone(), operation));
    }
    let (shape, sliding) = slide(&layer.name, &layer.layer_type, first_shape)?;
    for (_, source_shape) in &sources[1..] {
        let (other, _) = slide(&layer.name, &layer.layer_type, source_shape)?;
        if other != shape {
            return Err(Error::Dimension(format!(
                "layer '{}': its sources give shapes {shape:?} and {other:?}",
                layer.name
            )));
        }
    }
    let operation = match layer.layer_type {
        LayerType::Pooling(function, _) => Operation::Pooling {
            source: first,
            pooling: pooling(function).expect("a pooling with a window"),
            sliding,
        },
        _ => Operation::Convolution {
            grid: sliding.output,
        },
    };
    Ok((shape, operation))
}

/// Wires layer `l`'s own weights (every source not shared from elsewhere), its skips, its
/// bias and its slope, adding their parameters.
fn connect_owned(
    layers: &mut [LayerPlan],
    l: usize,
    names: &LayerNames,
    parameters: &mut Vec<ParameterSpec>,
) -> Result<()> {
    let width = layers[l].width;
    let definition = layers[l].definition.clone();
    let operation = layers[l].operation.clone();
    let pooled = operation.pooled_source().is_some();
    for source_name in definition.sources.iter().filter(|_| !pooled) {
        let source = names.source_of(source_name, &definition.name)?;
        if definition
            .shared_weights
            .iter()
            .any(|s| &s.input_layer == source_name)
        {
            continue;
        }
        let (role, rows, cols, sliding) = match operation {
            Operation::Convolution { .. } => {
                let (_, sliding) = slide(
                    &definition.name,
                    &definition.layer_type,
                    &layers[source].shape,
                )?;
                let per_filter = sliding.filter_len() / sliding.output.channels;
                (
                    ParameterRole::Filters,
                    sliding.output.channels,
                    per_filter,
                    Some(sliding),
                )
            }
            _ => (ParameterRole::Weights, layers[source].width, width, None),
        };
        layers[l].connections.push(Connection {
            source,
            weights: parameters.len(),
            transposed: false,
            sliding,
        });
        parameters.push(ParameterSpec {
            name: format!("weights.{}.{}", source_name, definition.name),
            role,
            rows,
            cols,
            init: definition.weight_init,
            initial_slope: 0.0,
            users: 1,
        });
    }
    for skip in &definition.skips {
        let s = names.source_of(skip, &definition.name)?;
        if layers[s].width != width {
            return Err(Error::Dimension(format!(
                "layer '{}' ({width} units) skips from '{skip}' ({} units)",
                definition.name, layers[s].width
            )));
        }
        if layers[s].is_sparse_input() {
            return Err(Error::Config(format!(
                "layer '{}': a skip from the sparse input '{skip}' is not supported",
                definition.name
            )));
        }
        layers[l].skips.push(s);
    }
    let slope = match definition.activation {
        Activation::ParametricRectifiedLinear { slope } => Some(slope),
        _ => None,
    };
    let vector = |role, name: &str, cols| ParameterSpec {
        name: format!("{name}.{}", definition.name),
        role,
        rows: 1,
        cols,
        init: definition.weight_init,
        initial_slope: slope.unwrap_or(0.0),
        users: 1,
    };
    // A convolution has one bias per channel; a pooling none; nor has a batch-normalised
    // layer, whose normalisation would remove it (its shift takes its place).
    let biases = match operation {
        _ if layers[l].normalization.is_some() => None,
        Operation::FullyConnected => Some(width),
        Operation::Convolution { grid } => Some(grid.channels),
        Operation::Pooling { .. } | Operation::LocalResponse { .. } => None,
    };
    if let Some(biases) = biases {
        layers[l].bias = Some(parameters.len());
        parameters.push(vector(ParameterRole::Bias, "bias", biases));
    }
    if slope.is_some() {
        layers[l].slope = Some(parameters.len());
        parameters.push(vector(ParameterRole::Slope, "slope", width));
    }
    if let Some(plan) = layers[l].normalization.as_mut() {
        let groups = plan.normalization.groups();
        let mut add = |role, name| {
            parameters.push(vector(role, name, groups));
            parameters.len() - 1
        };
        plan.scale = add(ParameterRole::Scale, "normalization_scale");
        plan.shift = add(ParameterRole::Shift, "normalization_shift");
        plan.running_mean = add(ParameterRole::RunningMean, "running_mean");
        plan.running_variance = add(ParameterRole::RunningVariance, "running_variance");
    }
    Ok(())
}

/// Wires layer `l`'s connections that reuse another connection's weights, checking that
/// the shapes fit.
fn connect_shared(
    layers: &mut [LayerPlan],
    l: usize,
    names: &LayerNames,
    parameters: &mut [ParameterSpec],
) -> Result<()> {
    for shared in layers[l].definition.shared_weights.clone() {
        let name = layers[l].name().to_string();
        let source = names.index_of(&shared.input_layer, &name)?;
        let from = names.index_of(&shared.source_input_layer, &name)?;
        let to = names.index_of(&shared.source_output_layer, &name)?;
        let owner = layers[to]
            .connections
            .iter()
            .find(|c| c.source == from && !c.transposed)
            .cloned()
            .ok_or_else(|| {
                Error::Config(format!(
                    "layer '{name}' shares the weights from '{}' to '{}', which do not exist",
                    shared.source_input_layer, shared.source_output_layer
                ))
            })?;
        let (rows, cols) = (layers[from].width, layers[to].width);
        let fits = if shared.transposed {
            layers[source].width == cols && layers[l].width == rows
        } else {
            layers[source].width == rows && layers[l].width == cols
        };
        if !fits {
            return Err(Error::Dimension(format!(
                "layer '{name}' cannot share the {rows} x {cols} weights from '{}' to '{}'{} for its {} x {} connection from '{}'",
                shared.source_input_layer,
                shared.source_output_layer,
                if shared.transposed { " transposed" } else { "" },
                layers[source].width,
                layers[l].width,
                shared.input_layer
            )));
        }
        if shared.transposed && layers[source].is_sparse_input() {
            return Err(Error::Config(format!(
                "layer '{name}': transposed shared weights on the sparse input '{}' are not supported",
                shared.input_layer
            )));
        }
        parameters[owner.weights].users += 1;
        layers[l].connections.push(Connection {
            source,
            weights: owner.weights,
            transposed: shared.transposed,
            sliding: None,
        });
    }
    Ok(())
}

/// Kahn's algorithm, taking ready layers in definition order.
fn compute_order(layers: &[LayerPlan]) -> Result<Vec<usize>> {
    let dependencies: Vec<Vec<usize>> = layers
        .iter()
        .map(|l| {
            l.connections
                .iter()
                .map(|c| c.source)
                .chain(l.skips.iter().copied())
                .chain(l.operation.pooled_source())
                .collect()
        })
        .collect();
    let mut done = vec![false; layers.len()];
    let mut order = Vec::with_capacity(layers.len());
    while order.len() < layers.len() {
        let next = (0..layers.len())
            .find(|&l| !done[l] && dependencies[l].iter().all(|&d| done[d]))
            .ok_or_else(|| {
                let stuck: Vec<&str> = (0..layers.len())
                    .filter(|&l| !done[l])
                    .map(|l| layers[l].name())
                    .collect();
                Error::Config(format!("layers {} form a cycle", stuck.join(", ")))
            })?;
        done[next] = true;
        order.push(next);
    }
    Ok(order)
}
