//! The keys of DSSTNE's convolutional and pooling layers (`Type`, `Kernel`, `KernelStride`,
//! `Function`) and of batch normalisation, checked against the layer's kind.

use super::json::{Document, Field};
use super::layer::{LayerFields, TypeKey};
use super::*;
use crate::error::Result;
use jsonc_parser::ast::Value;

/// A `Kernel` or `KernelStride`: one number, or a list of 1 to 3.
pub(super) fn extents(document: &Document, field: &Field, what: &str) -> Result<Vec<usize>> {
    let what = format!("'{}' of {what}", field.name);
    let values: Vec<&Value> = match field.value {
        Value::Array(array) => array.elements.iter().collect(),
        other => vec![other],
    };
    if values.is_empty() || values.len() > 3 {
        return Err(document.field_error(field, &format!("{what} must have 1 to 3 dimensions")));
    }
    values
        .into_iter()
        .map(|value| document.count(value, &what))
        .collect()
}

/// A pooling layer's `Function`; the ones DSSTNE has and Destiny does not build are errors
/// that say so.
pub(super) fn pooling_function(
    document: &Document,
    field: &Field,
    what: &str,
) -> Result<PoolingFunction> {
    let name = document.string(field, what)?;
    for unsupported in ["Maxout", "DotProduct", "Cosine"] {
        if name.eq_ignore_ascii_case(unsupported) {
            return Err(document.field_error(
                field,
                &format!("the pooling function '{name}' of {what} is not supported by Destiny"),
            ));
        }
    }
    let choices = [
        ("Max", PoolingFunction::Max),
        ("Average", PoolingFunction::Average),
        ("LRN", PoolingFunction::LocalResponseNormalization),
        (
            "LocalResponseNormalization",
            PoolingFunction::LocalResponseNormalization,
        ),
    ];
    document.choice(field, what, &choices)
}

/// The layer's type from the keys read: image inputs may call themselves convolutional (their
/// grid comes from `N` or their data), output layers are fully connected, and each key of
/// the spatial layers belongs to its kind of layer only.
pub(super) fn layer_type(
    document: &Document,
    value: &Value,
    what: &str,
    read: &LayerFields,
    layer: &mut LayerDefinition,
) -> Result<LayerType> {
    let misplaced = |field: Option<&Field>, rule: &str| match field {
        Some(field) => {
            Err(document.field_error(field, &format!("'{}' in {what}: {rule}", field.name)))
        }
        None => Ok(()),
    };
    let kernel_field = read.kernel.as_ref().map(|(f, _)| *f);
    let stride_field = read.stride.as_ref().map(|(f, _)| *f);
    let function_field = read.function.as_ref().map(|(f, _)| *f);
    if layer.kind != LayerKind::Hidden || read.kind == TypeKey::Pooling {
        let rule = "batch normalisation applies to hidden fully connected and convolutional layers";
        misplaced(
            read.batch_normalization
                .filter(|_| layer.batch_normalization),
            rule,
        )?;
    }
    let kind = match (layer.kind, read.kind) {
        (_, TypeKey::FullyConnected) | (LayerKind::Input, TypeKey::Convolutional) => {
            let rule = "only convolutional and pooling layers have windows";
            misplaced(kernel_field.or(stride_field), rule)?;
            misplaced(function_field, "only pooling layers have a function")?;
            return Ok(LayerType::FullyConnected);
        }
        (LayerKind::Input, TypeKey::Pooling) => "an input layer cannot be a pooling layer",
        (LayerKind::Output, _) => "Destiny's output layers are fully connected",
        (LayerKind::Hidden, kind) => {
            return hidden_spatial(document, value, what, read, kind, layer)
        }
    };
    Err(document.error(value, &format!("{what}: {kind}")))
}

/// A hidden convolutional or pooling layer.
fn hidden_spatial(
    document: &Document,
    value: &Value,
    what: &str,
    read: &LayerFields,
    kind: TypeKey,
    layer: &mut LayerDefinition,
) -> Result<LayerType> {
    let kernel = kernel(document, what, read)?;
    if kind == TypeKey::Convolutional {
        if let Some((field, _)) = &read.function {
            return Err(document.field_error(
                field,
                &format!(
                    "'{}' in {what}: only pooling layers have a function",
                    field.name
                ),
            ));
        }
        return match &read.width {
            Some((Width::Fixed(filters), dimensions)) if dimensions.is_empty() => {
                Ok(LayerType::Convolutional {
                    filters: *filters,
                    kernel,
                })
            }
            _ => Err(document.error(
                value,
                &format!("{what} is convolutional and needs N, its number of filters (one number)"),
            )),
        };
    }
    if read.width.is_some() {
        return Err(document.error(
            value,
            &format!(
                "{what} is a pooling layer: its units follow from its source, so it takes no N"
            ),
        ));
    }
    let Some((_, function)) = read.function else {
        return Err(document.error(
            value,
            &format!("{what} is a pooling layer and needs a Function (Max, Average or LRN)"),
        ));
    };
    // DSSTNE computes no activation in pooling layers.
    if let Some(field) = read
        .activation
        .filter(|_| layer.activation != Activation::Linear)
    {
        return Err(document.field_error(
            field,
            &format!("{what} is a pooling layer, which has no activation"),
        ));
    }
    layer.activation = Activation::Linear;
    Ok(LayerType::Pooling(function, kernel))
}

/// The window of `Kernel` and `KernelStride`: DSSTNE's default is one position with stride 1,
/// and a stride has no more dimensions than its kernel.
fn kernel(document: &Document, what: &str, read: &LayerFields) -> Result<Kernel> {
    let mut kernel = Kernel::default();
    if let Some((_, size)) = &read.kernel {
        kernel.dimensions = size.len();
        kernel.size[..size.len()].copy_from_slice(size);
    }
    if let Some((field, stride)) = &read.stride {
        if stride.len() > kernel.dimensions {
            return Err(document.field_error(
                field,
                &format!(
                    "KernelStride of {what} has {} dimensions, its Kernel {}",
                    stride.len(),
                    kernel.dimensions
                ),
            ));
        }
        kernel.stride[..stride.len()].copy_from_slice(stride);
    }
    Ok(kernel)
}
