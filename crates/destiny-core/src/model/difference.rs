//! What differs between two resolved networks, in words: a model file resumed with another
//! definition or on datasets of another width is told which layer or setting differs.

use super::Topology;
use crate::config::{LayerDefinition, NetworkDefinition};

/// What differs between `saved` (the network of a model file) and `now` (the one asked for),
/// or `None` when they are the same network.
pub fn describe_difference(saved: &Topology, now: &Topology) -> Option<String> {
    if saved.definition == now.definition && saved.layers == now.layers {
        return None;
    }
    let names = |d: &NetworkDefinition| -> Vec<String> {
        d.layers.iter().map(|l| l.name.clone()).collect()
    };
    let (saved_names, now_names) = (names(&saved.definition), names(&now.definition));
    if saved_names != now_names {
        return Some(format!(
            "the model's layers are {} but the definition's are {}",
            saved_names.join(", "),
            now_names.join(", ")
        ));
    }
    for ((a, b), (plan_a, plan_b)) in saved
        .definition
        .layers
        .iter()
        .zip(&now.definition.layers)
        .zip(saved.layers.iter().zip(&now.layers))
    {
        if plan_a.width != plan_b.width {
            let cause = match &b.dataset {
                Some(dataset) => format!(" (its dataset '{dataset}' is {} wide)", plan_b.width),
                None => String::new(),
            };
            return Some(format!(
                "layer '{}' is {} units wide in the model but {} now{cause}",
                b.name, plan_a.width, plan_b.width
            ));
        }
        if plan_a.sparse_data != plan_b.sparse_data {
            let kind = |sparse: bool| if sparse { "sparse" } else { "dense" };
            return Some(format!(
                "layer '{}' was trained on {} data but is given {} data now",
                b.name,
                kind(plan_a.sparse_data),
                kind(plan_b.sparse_data)
            ));
        }
        let fields = layer_fields_that_differ(a, b);
        if !fields.is_empty() {
            return Some(format!(
                "layer '{}' differs in the definition: {}",
                b.name,
                fields.join(", ")
            ));
        }
    }
    let (a, b) = (&saved.definition, &now.definition);
    let fields: Vec<&str> = [
        ("name", a.name != b.name),
        ("kind", a.kind != b.kind),
        ("error function", a.error_function != b.error_function),
        ("denoising", a.denoising != b.denoising),
        ("ShuffleIndices", a.shuffle_indices != b.shuffle_indices),
        ("decay", a.decay != b.decay),
        ("version", a.version != b.version),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect();
    Some(if fields.is_empty() {
        "the network definition differs".into()
    } else {
        format!("the network definition differs in {}", fields.join(", "))
    })
}

/// The settings of a layer that differ between `a` and `b`, by name.
fn layer_fields_that_differ(a: &LayerDefinition, b: &LayerDefinition) -> Vec<&'static str> {
    [
        ("kind", a.kind != b.kind),
        ("dataset", a.dataset != b.dataset),
        ("sparse", a.sparse != b.sparse),
        ("sources", a.sources != b.sources),
        ("skips", a.skips != b.skips),
        ("activation", a.activation != b.activation),
        ("dropout", a.dropout != b.dropout),
        ("weight initialisation", a.weight_init != b.weight_init),
        ("weight norm", a.weight_norm != b.weight_norm),
        (
            "sparseness penalty",
            a.sparseness_penalty != b.sparseness_penalty,
        ),
        ("shared weights", a.shared_weights != b.shared_weights),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}
