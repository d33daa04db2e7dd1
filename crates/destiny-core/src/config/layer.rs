//! One layer of a network definition: its keys read, its activation chosen, and the rules of
//! its kind (an input's dataset, a computed layer's sources) checked against the layers
//! defined before it.

use super::json::{Document, Field};
use super::parse::{
    neutral, non_negative, sparseness_penalty, unknown_or_unsupported, unsupported,
    ActivationParameters,
};
use super::spatial;
use super::*;
use crate::error::Result;
use jsonc_parser::ast::Value;

const LAYER_KEYS: &[&str] = &[
    "Name",
    "Kind",
    "Type",
    "N",
    "DataSet",
    "Sparse",
    "Source",
    "Skip",
    "Activation",
    "pDropout",
    "WeightInit",
    "WeightNorm",
    "SparsenessPenalty",
    "SharedWeights",
    "Normalize",
    "RELUSlope",
    "Slope",
    "ELUAlpha",
    "SELULambda",
    "Kernel",
    "KernelStride",
    "Function",
    "BatchNormalization",
];

/// Parses one layer, given the layers defined before it and what the network sets for
/// every layer.
pub(super) fn parse_layer(
    document: &Document,
    value: &Value,
    earlier: &[LayerDefinition],
    defaults: ActivationParameters,
    network_penalty: Option<SparsenessPenalty>,
) -> Result<LayerDefinition> {
    let fields = document.fields(value, "a layer")?;
    let mut layer = layer_identity(document, value, &fields, earlier)?;
    let what = format!("layer '{}'", layer.name);
    let what = what.as_str();
    let read = read_layer_fields(document, &fields, what, defaults, &mut layer)?;
    if let Some(field) = read.activation {
        layer.activation = activation(document, field, what, read.parameters)?;
    }
    let width = read.width.as_ref().map(|(width, _)| *width);
    layer.width = match (width, read.kind) {
        (Some(width), TypeKey::FullyConnected) => width,
        (None, TypeKey::FullyConnected) if layer.kind == LayerKind::Hidden => {
            return Err(document.error(value, &format!("{what} has no N (its number of units)")))
        }
        // DSSTNE sizes input and output layers from their data when N is left out, and
        // convolutional and pooling layers from their sources.
        _ => Width::Auto,
    };
    if let Some((_, dimensions)) = &read.width {
        layer.dimensions = dimensions.clone();
    }
    layer.layer_type = spatial::layer_type(document, value, what, &read, &mut layer)?;
    if layer.normalize && !(layer.kind == LayerKind::Input && layer.sparse) {
        return Err(document.error(
            value,
            &format!("{what}: Normalize applies to sparse input layers only"),
        ));
    }
    match layer.kind {
        LayerKind::Input => check_input_layer(document, value, what, &mut layer)?,
        LayerKind::Hidden | LayerKind::Output => {
            wire_computed_layer(document, value, what, earlier, &mut layer)?;
            let spatial = layer.layer_type != LayerType::FullyConnected;
            if spatial && !layer.shared_weights.is_empty() {
                return Err(document.error(
                    value,
                    &format!("{what}: shared weights are for fully connected layers"),
                ));
            }
            if matches!(layer.layer_type, LayerType::Pooling(..)) && layer.sources.len() != 1 {
                return Err(document.error(
                    value,
                    &format!("{what} is a pooling layer and takes exactly one Source"),
                ));
            }
            if layer.kind == LayerKind::Hidden && layer.sparse {
                layer.sparseness_penalty =
                    read.penalty.or(network_penalty).filter(|p| p.beta > 0.0);
            }
        }
    }
    Ok(layer)
}

/// A layer's kind and name, read first so that every other error names the layer; the
/// layer holds the defaults for everything else.
fn layer_identity(
    document: &Document,
    value: &Value,
    fields: &[Field],
    earlier: &[LayerDefinition],
) -> Result<LayerDefinition> {
    let mut kind = LayerKind::Hidden;
    if let Some(f) = fields.iter().find(|f| f.key == "kind") {
        kind = document.choice(
            f,
            "a layer",
            &[
                ("Input", LayerKind::Input),
                ("Hidden", LayerKind::Hidden),
                ("Output", LayerKind::Output),
            ],
        )?;
    }
    let name = match fields.iter().find(|f| f.key == "name") {
        Some(f) => document.string(f, "a layer")?,
        None => format!("{kind:?}{}", earlier.len()),
    };
    if earlier.iter().any(|l| l.name == name) {
        return Err(document.error(value, &format!("two layers are named '{name}'")));
    }
    Ok(LayerDefinition::new(name, kind, Width::Fixed(1)))
}

/// What a layer's keys give besides the fields stored directly in the layer.
pub(super) struct LayerFields<'a> {
    /// `N`, with its dimensions when it lists them.
    pub(super) width: Option<(Width, Vec<usize>)>,
    pub(super) activation: Option<&'a Field<'a>>,
    penalty: Option<SparsenessPenalty>,
    parameters: ActivationParameters,
    /// The `Type` key's value, and the keys of the spatial layers as given.
    pub(super) kind: TypeKey,
    pub(super) kernel: Option<(&'a Field<'a>, Vec<usize>)>,
    pub(super) stride: Option<(&'a Field<'a>, Vec<usize>)>,
    pub(super) function: Option<(&'a Field<'a>, PoolingFunction)>,
    pub(super) batch_normalization: Option<&'a Field<'a>>,
}

/// DSSTNE's layer types, as read from `Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TypeKey {
    FullyConnected,
    Convolutional,
    Pooling,
}

/// Reads every key of a layer, storing what needs no other key into `layer`.
fn read_layer_fields<'a>(
    document: &Document,
    fields: &'a [Field<'a>],
    what: &str,
    defaults: ActivationParameters,
    layer: &mut LayerDefinition,
) -> Result<LayerFields<'a>> {
    let mut read = LayerFields {
        width: None,
        activation: None,
        penalty: None,
        parameters: defaults,
        kind: TypeKey::FullyConnected,
        kernel: None,
        stride: None,
        function: None,
        batch_normalization: None,
    };
    for field in fields {
        match field.key.as_str() {
            "kind" | "name" => {}
            "type" => {
                let choices = [
                    ("FullyConnected", TypeKey::FullyConnected),
                    ("Convolutional", TypeKey::Convolutional),
                    ("Pooling", TypeKey::Pooling),
                ];
                read.kind = document.choice(field, what, &choices)?;
            }
            "kernel" => read.kernel = Some((field, spatial::extents(document, field, what)?)),
            "kernelstride" => read.stride = Some((field, spatial::extents(document, field, what)?)),
            "function" => {
                read.function = Some((field, spatial::pooling_function(document, field, what)?))
            }
            "batchnormalization" => {
                layer.batch_normalization = document.boolean(field, what)?;
                read.batch_normalization = Some(field);
            }
            "n" => read.width = Some(parse_width(document, field, what, layer.kind)?),
            "dataset" => layer.dataset = Some(document.string(field, what)?),
            "sparse" => layer.sparse = document.boolean(field, what)?,
            "source" | "sources" => layer.sources = document.strings(field, what)?,
            "skip" | "skips" => layer.skips = document.strings(field, what)?,
            "activation" => read.activation = Some(field),
            "pdropout" => layer.dropout = document.probability(field, what)?,
            "weightinit" => layer.weight_init = weight_init(document, field, what)?,
            "weightnorm" => layer.weight_norm = non_negative(document, field, what)?,
            "sparsenesspenalty" => read.penalty = Some(sparseness_penalty(document, field)?),
            "sharedweights" => layer.shared_weights = shared_weights(document, field, what)?,
            "normalize" => layer.normalize = document.boolean(field, what)?,
            "reluslope" | "slope" => read.parameters.slope = document.number(field, what)?,
            "elualpha" => read.parameters.alpha = Some(document.number(field, what)?),
            "selulambda" => read.parameters.lambda = document.number(field, what)?,
            key if unsupported(key).is_some() && neutral(key, field.value) => {}
            key => {
                return Err(unknown_or_unsupported(
                    document, field, key, what, LAYER_KEYS,
                ))
            }
        }
    }
    Ok(read)
}

/// The activation a layer's `Activation` key names, with the layer's parameters.
fn activation(
    document: &Document,
    field: &Field,
    what: &str,
    parameters: ActivationParameters,
) -> Result<Activation> {
    let ActivationParameters {
        slope,
        alpha,
        lambda,
    } = parameters;
    let elu = Activation::ExponentialLinear {
        alpha: alpha.unwrap_or(1.0),
    };
    let selu = Activation::ScaledExponentialLinear {
        alpha: alpha.unwrap_or(1.673_263_2),
        lambda,
    };
    let choices = [
        ("Sigmoid", Activation::Sigmoid),
        ("Tanh", Activation::Tanh),
        ("Linear", Activation::Linear),
        ("RectifiedLinear", Activation::RectifiedLinear),
        ("Relu", Activation::RectifiedLinear),
        (
            "LeakyRectifiedLinear",
            Activation::LeakyRectifiedLinear { slope },
        ),
        ("LRelu", Activation::LeakyRectifiedLinear { slope }),
        (
            "ParametricRectifiedLinear",
            Activation::ParametricRectifiedLinear { slope },
        ),
        ("PRelu", Activation::ParametricRectifiedLinear { slope }),
        ("ExponentialLinear", elu),
        ("Elu", elu),
        ("ScaledExponentialLinear", selu),
        ("Selu", selu),
        ("SoftPlus", Activation::SoftPlus),
        ("SoftSign", Activation::SoftSign),
        ("SoftMax", Activation::SoftMax),
        ("ReluMax", Activation::ReluMax),
        ("LinearMax", Activation::LinearMax),
    ];
    document.choice(field, what, &choices)
}

/// An input layer has a dataset and nothing feeding it, and passes its data on unchanged.
fn check_input_layer(
    document: &Document,
    value: &Value,
    what: &str,
    layer: &mut LayerDefinition,
) -> Result<()> {
    if !layer.sources.is_empty() || !layer.skips.is_empty() || !layer.shared_weights.is_empty() {
        return Err(document.error(
            value,
            &format!("{what} is an input layer and cannot have sources, skips or shared weights"),
        ));
    }
    if layer.dataset.is_none() {
        return Err(document.error(
            value,
            &format!("{what} is an input layer and needs a DataSet"),
        ));
    }
    layer.activation = Activation::Linear;
    Ok(())
}

/// A hidden or output layer: its dataset rule, its default source (the previous layer), and
/// references only to layers defined before it.
fn wire_computed_layer(
    document: &Document,
    value: &Value,
    what: &str,
    earlier: &[LayerDefinition],
    layer: &mut LayerDefinition,
) -> Result<()> {
    if layer.kind == LayerKind::Output && layer.dataset.is_none() {
        return Err(document.error(
            value,
            &format!("{what} is an output layer and needs a DataSet"),
        ));
    }
    if layer.kind == LayerKind::Hidden && layer.dataset.is_some() {
        return Err(document.error(
            value,
            &format!("{what} is a hidden layer and cannot have a DataSet"),
        ));
    }
    if layer.sources.is_empty() {
        let previous = earlier.last().ok_or_else(|| {
            document.error(
                value,
                &format!("{what} is the first layer but not an input layer"),
            )
        })?;
        layer.sources.push(previous.name.clone());
    }
    for reference in layer.sources.iter().chain(&layer.skips) {
        if !earlier.iter().any(|l| &l.name == reference) {
            return Err(document.error(
                value,
                &format!("{what} refers to '{reference}', which is not a layer defined before it"),
            ));
        }
    }
    Ok(())
}

fn parse_width(
    document: &Document,
    field: &Field,
    what: &str,
    kind: LayerKind,
) -> Result<(Width, Vec<usize>)> {
    match field.value {
        Value::StringLit(s) if s.value.eq_ignore_ascii_case("auto") => {
            if kind == LayerKind::Hidden {
                return Err(document.field_error(
                    field,
                    &format!("N of {what}: \"auto\" is only for input and output layers"),
                ));
            }
            Ok((Width::Auto, Vec::new()))
        }
        Value::Array(array) if !array.elements.is_empty() && array.elements.len() <= 4 => {
            let mut dimensions = Vec::new();
            for element in &array.elements {
                dimensions
                    .push(document.count(element, &format!("each dimension in N of {what}"))?);
            }
            Ok((Width::Fixed(dimensions.iter().product()), dimensions))
        }
        Value::Array(_) => {
            Err(document.field_error(field, &format!("N of {what} must have 1 to 4 dimensions")))
        }
        other => Ok((
            Width::Fixed(document.count(other, &format!("N of {what}"))?),
            Vec::new(),
        )),
    }
}

fn weight_init(document: &Document, field: &Field, layer: &str) -> Result<WeightInit> {
    let what = format!("WeightInit of {layer}");
    let mut init = WeightInit::default();
    for f in document.fields(field.value, &what)? {
        match f.key.as_str() {
            "scheme" => {
                let choices = [
                    ("Xavier", WeightInitScheme::Xavier),
                    ("CaffeXavier", WeightInitScheme::CaffeXavier),
                    ("Gaussian", WeightInitScheme::Gaussian),
                    ("Uniform", WeightInitScheme::Uniform),
                    ("UnitBall", WeightInitScheme::UnitBall),
                    ("SELU", WeightInitScheme::Selu),
                    ("Constant", WeightInitScheme::Constant),
                ];
                init.scheme = document.choice(&f, &what, &choices)?;
            }
            "scale" => init.scale = document.number(&f, &what)?,
            "bias" => init.bias = document.number(&f, &what)?,
            _ => return Err(document.unknown(&f, &what, &["Scheme", "Scale", "Bias"])),
        }
    }
    Ok(init)
}

fn shared_weights(document: &Document, field: &Field, layer: &str) -> Result<Vec<SharedWeight>> {
    let what = format!("SharedWeights of {layer}");
    let entries: Vec<&Value> = match field.value {
        Value::Array(array) => array.elements.iter().collect(),
        other => vec![other],
    };
    let mut shared = Vec::new();
    for entry in entries {
        let mut weight = SharedWeight {
            input_layer: String::new(),
            source_input_layer: String::new(),
            source_output_layer: String::new(),
            transposed: false,
        };
        for f in document.fields(entry, &what)? {
            match f.key.as_str() {
                "sourceinputlayer" => weight.source_input_layer = document.string(&f, &what)?,
                "sourceoutputlayer" => weight.source_output_layer = document.string(&f, &what)?,
                "inputlayer" => weight.input_layer = document.string(&f, &what)?,
                "transposed" => weight.transposed = document.boolean(&f, &what)?,
                _ => {
                    return Err(document.unknown(
                        &f,
                        &what,
                        &[
                            "SourceInputLayer",
                            "SourceOutputLayer",
                            "InputLayer",
                            "Transposed",
                        ],
                    ))
                }
            }
        }
        for (name, value) in [
            ("SourceInputLayer", &weight.source_input_layer),
            ("SourceOutputLayer", &weight.source_output_layer),
            ("InputLayer", &weight.input_layer),
        ] {
            if value.is_empty() {
                return Err(document.error(entry, &format!("{what} needs {name}")));
            }
        }
        shared.push(weight);
    }
    Ok(shared)
}
