//! DSSTNE's JSON network definition language, read into a checked [`NetworkDefinition`].
//!
//! DSSTNE's config files load unchanged: keys and names match without regard to case and
//! its aliases are accepted. What DSSTNE parses but Destiny does not build (maxout, the
//! dot-product and cosine pooling functions, external weights) is an error that says so,
//! never silently ignored; so is every unknown key.
//!
//! Defaults follow DSSTNE, except the parameters of the leaky and scaled exponential
//! units, which take the usual values (slope 0.01; SELU's alpha 1.6733 and lambda 1.0507)
//! where DSSTNE's made a leaky unit linear.

use super::json::{Document, Field};
use super::layer::parse_layer;
use super::*;
use crate::error::{Error, Result};
use jsonc_parser::ast::Value;
use std::path::Path;

/// Parameters of the parametric activations: given at network level, overridden by layers.
#[derive(Clone, Copy)]
pub(super) struct ActivationParameters {
    pub(super) slope: f32,
    pub(super) alpha: Option<f32>,
    pub(super) lambda: f32,
}

const NETWORK_KEYS: &[&str] = &[
    "Version",
    "Name",
    "Kind",
    "ShuffleIndices",
    "Denoising",
    "SparsenessPenalty",
    "ScaledMarginalCrossEntropy",
    "DataScaledMarginalCrossEntropy",
    "DeltaBoost",
    "ErrorFunction",
    "Layers",
    "Decay",
    "RELUSlope",
    "Slope",
    "ELUAlpha",
    "SELULambda",
    "LocalResponseNormalization",
];

/// Keys DSSTNE knows whose features Destiny does not build, with a neutral value when one
/// exists (a file giving exactly that value still loads).
pub(super) fn unsupported(key: &str) -> Option<&'static str> {
    match key {
        "maxout" => Some("maxout"),
        "weightsdata" => Some("WeightsData"),
        "deltanorm" => Some("DeltaNorm"),
        _ => None,
    }
}

/// True when an unsupported key carries the value that changes nothing.
pub(super) fn neutral(key: &str, value: &Value) -> bool {
    match (key, value) {
        ("deltanorm", Value::NumberLit(n)) => n.value.parse::<f32>() == Ok(0.0),
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
        delta_boost: DeltaBoost::default(),
        local_response: LocalResponse::DSSTNE,
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
            // DSSTNE reads both keys into the same margins and scales.
            "scaledmarginalcrossentropy" | "datascaledmarginalcrossentropy" => {
                marginal = marginal_parameters(&document, &field)?
            }
            "deltaboost" => definition.delta_boost = delta_boost(&document, &field)?,
            "localresponsenormalization" | "lrn" => {
                definition.local_response = local_response(&document, &field)?
            }
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

pub(super) fn unknown_or_unsupported(
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

pub(super) fn sparseness_penalty(document: &Document, field: &Field) -> Result<SparsenessPenalty> {
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

fn delta_boost(document: &Document, field: &Field) -> Result<DeltaBoost> {
    let what = "DeltaBoost";
    let mut boost = DeltaBoost::default();
    for f in document.fields(field.value, what)? {
        match f.key.as_str() {
            "one" => boost.one = non_negative(document, &f, what)?,
            "zero" => boost.zero = non_negative(document, &f, what)?,
            _ => return Err(document.unknown(&f, what, &["one", "zero"])),
        }
    }
    Ok(boost)
}

fn local_response(document: &Document, field: &Field) -> Result<LocalResponse> {
    let what = "LocalResponseNormalization";
    let mut response = LocalResponse::DSSTNE;
    for f in document.fields(field.value, what)? {
        match f.key.as_str() {
            "k" => response.k = non_negative(document, &f, what)?,
            "n" => {
                response.n = document.count(f.value, &format!("n of {what}"))?;
                if response.n == 0 {
                    return Err(document
                        .field_error(&f, "n of LocalResponseNormalization must be at least 1"));
                }
            }
            "alpha" => response.alpha = non_negative(document, &f, what)?,
            "beta" => response.beta = non_negative(document, &f, what)?,
            _ => return Err(document.unknown(&f, what, &["k", "n", "alpha", "beta"])),
        }
    }
    Ok(response)
}

pub(super) fn non_negative(document: &Document, field: &Field, what: &str) -> Result<f32> {
    let value = document.number(field, what)?;
    if value < 0.0 {
        return Err(document.field_error(
            field,
            &format!("'{}' in {what} must not be negative", field.name),
        ));
    }
    Ok(value)
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
