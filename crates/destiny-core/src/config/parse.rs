//! DSSTNE's JSON network definition language, read into a checked [`NetworkDefinition`].
//!
//! DSSTNE's config files load unchanged: keys and names match without regard to case and
//! its aliases are accepted. What DSSTNE parses but Destiny does not build (convolution,
//! pooling, local response normalisation, maxout, batch normalisation) is an error that
//! says so, never silently ignored; so is every unknown key.
//!
//! Defaults follow DSSTNE, except the parameters of the leaky and scaled exponential
//! units, which take the usual values (slope 0.01; SELU's alpha 1.6733 and lambda 1.0507)
//! where DSSTNE's made a leaky unit linear.

use super::json::{Document, Field};
use super::*;
use crate::error::{Error, Result};
use jsonc_parser::ast::Value;
use std::path::Path;

/// Parameters of the parametric activations: given at network level, overridden by layers.
#[derive(Clone, Copy)]
struct ActivationParameters {
    slope: f32,
    alpha: Option<f32>,
    lambda: f32,
}

const NETWORK_KEYS: &[&str] = &[
    "Version",
    "Name",
    "Kind",
    "ShuffleIndices",
    "Denoising",
    "SparsenessPenalty",
    "ScaledMarginalCrossEntropy",
    "ErrorFunction",
    "Layers",
    "Decay",
    "RELUSlope",
    "Slope",
    "ELUAlpha",
    "SELULambda",
];

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
    "RELUSlope",
    "Slope",
    "ELUAlpha",
    "SELULambda",
];

/// Keys DSSTNE knows whose features Destiny does not build, with a neutral value when one
/// exists (a file giving exactly that value still loads).
fn unsupported(key: &str) -> Option<&'static str> {
    match key {
        "localresponsenormalization" | "lrn" => Some("local response normalisation"),
        "maxout" => Some("maxout"),
        "deltaboost" => Some("DeltaBoost"),
        "weightsdata" => Some("WeightsData"),
        "kernel" | "kernelstride" => Some("convolution kernels"),
        "function" => Some("pooling functions"),
        "batchnormalization" => Some("batch normalisation"),
        "deltanorm" => Some("DeltaNorm"),
        _ => None,
    }
}

/// True when an unsupported key carries the value that changes nothing.
fn neutral(key: &str, value: &Value) -> bool {
    match (key, value) {
        ("batchnormalization", Value::BooleanLit(b)) => !b.value,
        ("deltanorm", Value::NumberLit(n)) => n.value.parse::<f32>() == Ok(0.0),
        ("deltaboost", Value::Object(o)) => o
            .properties
            .iter()
            .all(|p| matches!(&p.value, Value::NumberLit(n) if n.value.parse::<f32>() == Ok(1.0))),
        _ => false,
    }
}

/// Parses a network definition; `source` names where the text came from, for errors.
pub fn parse_network(text: &str, source: &str) -> Result<NetworkDefinition> {
    let document = Document::new(text, source);
    let root = document.parse()?;
    let what = "the network";
    let mut definition = NetworkDefinition {
        version: 0.0,
        name: String::new(),
        kind: NetworkKind::FeedForward,
        error_function: ErrorFunction::CrossEntropy,
        denoising: None,
        shuffle_indices: true,
        decay: 0.0,
        layers: Vec::new(),
    };
    let mut marginal = MarginalParameters::default();
    let mut error_function = None;
    let mut penalty = None;
    let mut defaults = ActivationParameters {
        slope: 0.01,
        alpha: None,
        lambda: 1.050_701,
    };
    let mut layers = None;
    for field in document.fields(&root, what)? {
        match field.key.as_str() {
            "version" => definition.version = document.number(&field, what)?,
            "name" => definition.name = document.string(&field, what)?,
            "kind" => {
                definition.kind = document.choice(
                    &field,
                    what,
                    &[
                        ("FeedForward", NetworkKind::FeedForward),
                        ("AutoEncoder", NetworkKind::AutoEncoder),
                    ],
                )?
            }
            "shuffleindices" => definition.shuffle_indices = document.boolean(&field, what)?,
            "denoising" => {
                let p = read_object(&document, &field, "Denoising", &["p"], |f| {
                    document.probability(f, "Denoising")
                })?;
                definition.denoising = p.first().copied().filter(|&p| p > 0.0);
            }
            "sparsenesspenalty" => penalty = Some(sparseness_penalty(&document, &field)?),
            "scaledmarginalcrossentropy" => marginal = marginal_parameters(&document, &field)?,
            "errorfunction" => error_function = Some(field),
            "decay" => {
                definition.decay = document.number(&field, what)?;
                if definition.decay < 0.0 {
                    return Err(document.field_error(&field, "Decay must not be negative"));
                }
            }
            "reluslope" | "slope" => defaults.slope = document.number(&field, what)?,
            "elualpha" => defaults.alpha = Some(document.number(&field, what)?),
            "selulambda" => defaults.lambda = document.number(&field, what)?,
            "layers" => layers = Some(field),
            key if unsupported(key).is_some() && neutral(key, field.value) => {}
            key => {
                return Err(unknown_or_unsupported(
                    &document,
                    &field,
                    key,
                    what,
                    NETWORK_KEYS,
                ))
            }
        }
    }
    if let Some(field) = &error_function {
        let choices = [
            ("L1", ErrorFunction::L1),
            ("L2", ErrorFunction::L2),
            ("CrossEntropy", ErrorFunction::CrossEntropy),
            ("Cross Entropy", ErrorFunction::CrossEntropy),
            (
                "ScaledMarginalCrossEntropy",
                ErrorFunction::ScaledMarginalCrossEntropy(marginal),
            ),
            (
                "DataScaledMarginalCrossEntropy",
                ErrorFunction::DataScaledMarginalCrossEntropy(marginal),
            ),
            ("Hinge", ErrorFunction::Hinge),
            ("L2Hinge", ErrorFunction::L2Hinge),
        ];
        definition.error_function = document.choice(field, what, &choices)?;
    }
    let layers =
        layers.ok_or_else(|| Error::Config(format!("{source}: the network has no Layers")))?;
    let Value::Array(array) = layers.value else {
        return Err(document.field_error(&layers, "Layers must be a list of layer objects"));
    };
    for value in &array.elements {
        let layer = parse_layer(&document, value, &definition.layers, defaults, penalty)?;
        definition.layers.push(layer);
    }
    check_network(&document, &definition, array.elements.as_slice())?;
    Ok(definition)
}

/// Reads and parses a network definition file.
pub fn parse_network_file(path: &Path) -> Result<NetworkDefinition> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_network(&text, &path.display().to_string())
}

fn unknown_or_unsupported(
    document: &Document,
    field: &Field,
    key: &str,
    what: &str,
    known: &[&str],
) -> Error {
    match unsupported(key) {
        Some(feature) => document.field_error(
            field,
            &format!(
                "'{}' in {what}: {feature} is not supported by Destiny",
                field.name
            ),
        ),
        None => document.unknown(field, what, known),
    }
}

/// Reads an object whose keys are all in `keys`, each through `read`, in the order of `keys`
/// (absent keys are skipped).
fn read_object<T>(
    document: &Document,
    field: &Field,
    what: &str,
    keys: &[&str],
    mut read: impl FnMut(&Field) -> Result<T>,
) -> Result<Vec<T>> {
    let fields = document.fields(field.value, what)?;
    if let Some(f) = fields
        .iter()
        .find(|f| !keys.iter().any(|k| k.to_lowercase() == f.key))
    {
        return Err(document.unknown(f, what, keys));
    }
    let mut values = Vec::new();
    for key in keys {
        if let Some(f) = fields.iter().find(|f| f.key == key.to_lowercase()) {
            values.push(read(f)?);
        }
    }
    Ok(values)
}

fn sparseness_penalty(document: &Document, field: &Field) -> Result<SparsenessPenalty> {
    let what = "SparsenessPenalty";
    let mut penalty = SparsenessPenalty { p: 0.0, beta: 0.0 };
    for f in document.fields(field.value, what)? {
        match f.key.as_str() {
            "p" => penalty.p = document.probability(&f, what)?,
            "beta" => penalty.beta = non_negative(document, &f, what)?,
            _ => return Err(document.unknown(&f, what, &["p", "beta"])),
        }
    }
    Ok(penalty)
}

fn marginal_parameters(document: &Document, field: &Field) -> Result<MarginalParameters> {
    let what = "ScaledMarginalCrossEntropy";
    let mut m = MarginalParameters::default();
    for f in document.fields(field.value, what)? {
        match f.key.as_str() {
            "onetarget" => m.one_target = document.number(&f, what)?,
            "zerotarget" => m.zero_target = document.number(&f, what)?,
            "onescale" => m.one_scale = non_negative(document, &f, what)?,
            "zeroscale" => m.zero_scale = non_negative(document, &f, what)?,
            _ => {
                return Err(document.unknown(
                    &f,
                    what,
                    &["oneTarget", "zeroTarget", "oneScale", "zeroScale"],
                ))
            }
        }
    }
    Ok(m)
}

fn non_negative(document: &Document, field: &Field, what: &str) -> Result<f32> {
    let value = document.number(field, what)?;
    if value < 0.0 {
        return Err(document.field_error(
            field,
            &format!("'{}' in {what} must not be negative", field.name),
        ));
    }
    Ok(value)
}

fn parse_layer(
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
    layer.width = match read.width {
        Some(width) => width,
        None if layer.kind == LayerKind::Hidden => {
            return Err(document.error(value, &format!("{what} has no N (its number of units)")))
        }
        // DSSTNE sizes input and output layers from their data when N is left out.
        None => Width::Auto,
    };
    match layer.kind {
        LayerKind::Input => check_input_layer(document, value, what, &mut layer)?,
        LayerKind::Hidden | LayerKind::Output => {
            wire_computed_layer(document, value, what, earlier, &mut layer)?;
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
struct LayerFields<'a> {
    width: Option<Width>,
    activation: Option<&'a Field<'a>>,
    penalty: Option<SparsenessPenalty>,
    parameters: ActivationParameters,
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
    };
    for field in fields {
        match field.key.as_str() {
            "kind" | "name" => {}
            "type" => {
                let kind = document.string(field, what)?;
                if !kind.eq_ignore_ascii_case("FullyConnected") {
                    let message = format!(
                        "Type '{kind}' of {what} is not supported by Destiny (only FullyConnected)"
                    );
                    return Err(document.field_error(field, &message));
                }
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

fn parse_width(document: &Document, field: &Field, what: &str, kind: LayerKind) -> Result<Width> {
    match field.value {
        Value::StringLit(s) if s.value.eq_ignore_ascii_case("auto") => {
            if kind == LayerKind::Hidden {
                return Err(document.field_error(
                    field,
                    &format!("N of {what}: \"auto\" is only for input and output layers"),
                ));
            }
            Ok(Width::Auto)
        }
        Value::Array(array) if !array.elements.is_empty() && array.elements.len() <= 4 => {
            let mut product = 1usize;
            for element in &array.elements {
                product *= document.count(element, &format!("each dimension in N of {what}"))?;
            }
            Ok(Width::Fixed(product))
        }
        Value::Array(_) => {
            Err(document.field_error(field, &format!("N of {what} must have 1 to 4 dimensions")))
        }
        other => Ok(Width::Fixed(
            document.count(other, &format!("N of {what}"))?,
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

/// Checks across layers: references of shared weights, skips of fixed widths, and that there
/// are input and output layers.
fn check_network(
    document: &Document,
    definition: &NetworkDefinition,
    values: &[Value],
) -> Result<()> {
    let find = |name: &str| definition.layers.iter().find(|l| l.name == name);
    for (layer, value) in definition.layers.iter().zip(values) {
        for shared in &layer.shared_weights {
            for name in [
                &shared.input_layer,
                &shared.source_input_layer,
                &shared.source_output_layer,
            ] {
                if find(name).is_none() {
                    return Err(document.error(
                        value,
                        &format!(
                            "SharedWeights of layer '{}' refers to unknown layer '{name}'",
                            layer.name
                        ),
                    ));
                }
            }
            if !layer.sources.contains(&shared.input_layer) {
                return Err(document.error(
                    value,
                    &format!(
                        "SharedWeights of layer '{}': '{}' is not one of its sources",
                        layer.name, shared.input_layer
                    ),
                ));
            }
        }
        for skip in &layer.skips {
            if let (Width::Fixed(a), Some(Width::Fixed(b))) =
                (layer.width, find(skip).map(|l| l.width))
            {
                if a != b {
                    return Err(document.error(
                        value,
                        &format!(
                            "layer '{}' has {a} units but skips from '{skip}', which has {b}",
                            layer.name
                        ),
                    ));
                }
            }
        }
    }
    // Networks without an output layer are legal (DSSTNE uses them to compute embeddings);
    // training one is an error there.
    if !definition.layers.iter().any(|l| l.kind == LayerKind::Input) {
        return Err(Error::Config("the network has no input layer".into()));
    }
    Ok(())
}
