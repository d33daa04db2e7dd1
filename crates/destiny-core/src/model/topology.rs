//! A network definition resolved against its data: every width known, every connection
//! bound to a parameter, and an order in which the layers can be computed.

use crate::config::{Activation, LayerDefinition, LayerKind, NetworkDefinition, WeightInit, Width};
use crate::error::{Error, Result};

/// What the engine needs to know about a dataset bound to a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetShape {
    pub width: usize,
    pub sparse: bool,
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
}

/// A layer with its width and wiring resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub definition: LayerDefinition,
    pub width: usize,
    /// For input layers: whether the bound dataset is sparse.
    pub sparse_data: bool,
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
            layers.push(resolve_layer(layer, dataset)?);
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

/// Resolves one layer's width against its dataset (writing it back into `layer`) and plans
/// the layer without its wiring.
fn resolve_layer(
    layer: &mut LayerDefinition,
    dataset: &dyn Fn(&str) -> Option<DatasetShape>,
) -> Result<LayerPlan> {
    let config = |message: String| Error::Config(message);
    let shape = match (&layer.dataset, layer.kind) {
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
    let width = match (layer.width, shape) {
        (Width::Auto, Some(shape)) => shape.width,
        (Width::Auto, None) => {
            return Err(config(format!(
                "layer '{}': N \"auto\" needs a dataset",
                layer.name
            )))
        }
        (Width::Fixed(n), Some(shape)) if n != shape.width => {
            return Err(Error::Dimension(format!(
                "layer '{}' has N {n} but its dataset '{}' is {} wide",
                layer.name,
                layer.dataset.as_deref().unwrap_or_default(),
                shape.width
            )))
        }
        (Width::Fixed(n), _) => n,
    };
    if width == 0 {
        return Err(config(format!("layer '{}' has no units", layer.name)));
    }
    layer.width = Width::Fixed(width);
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
    Ok(LayerPlan {
        definition: layer.clone(),
        width,
        sparse_data: shape.is_some_and(|s| s.sparse),
        connections: Vec::new(),
        skips: Vec::new(),
        bias: None,
        slope: None,
    })
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
    for source_name in &definition.sources {
        let source = names.source_of(source_name, &definition.name)?;
        if definition
            .shared_weights
            .iter()
            .any(|s| &s.input_layer == source_name)
        {
            continue;
        }
        layers[l].connections.push(Connection {
            source,
            weights: parameters.len(),
            transposed: false,
        });
        parameters.push(ParameterSpec {
            name: format!("weights.{}.{}", source_name, definition.name),
            role: ParameterRole::Weights,
            rows: layers[source].width,
            cols: width,
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
    let unit = |role, name: String| ParameterSpec {
        name,
        role,
        rows: 1,
        cols: width,
        init: definition.weight_init,
        initial_slope: slope.unwrap_or(0.0),
        users: 1,
    };
    layers[l].bias = Some(parameters.len());
    parameters.push(unit(
        ParameterRole::Bias,
        format!("bias.{}", definition.name),
    ));
    if slope.is_some() {
        layers[l].slope = Some(parameters.len());
        parameters.push(unit(
            ParameterRole::Slope,
            format!("slope.{}", definition.name),
        ));
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
