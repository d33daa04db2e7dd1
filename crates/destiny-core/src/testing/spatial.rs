//! Cases of the spatial layers: whole networks of convolutions, poolings, local response
//! normalisation and batch normalisation, written in DSSTNE's language, their gradients
//! against finite differences and the CPU backend's.

use super::{check_gradients, close, network, random_rows};
use crate::backend::Backend;
use crate::config::parse_network;
use crate::data::Dataset;
use crate::model::{Binding, Bound};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Dense image inputs "in" of `dimensions` and targets "out" of `outputs`, 4 samples.
fn images(rng: &mut ChaCha8Rng, dimensions: &[usize], outputs: usize) -> Vec<Dataset> {
    let width = dimensions.iter().product();
    let input = Dataset::new("in", random_rows(rng, 4, width, false, false));
    vec![
        input.with_dimensions(dimensions.to_vec()).expect("shape"),
        Dataset::new("out", random_rows(rng, 4, outputs, false, false)),
    ]
}

/// A network of `layers` (DSSTNE's JSON) between an input layer and an output layer.
fn spatial_network(
    name: &str,
    network_keys: &str,
    layers: &str,
) -> crate::config::NetworkDefinition {
    let text = format!(
        r#"{{ "Name": "{name}", "Kind": "FeedForward", "ErrorFunction": "L2", {network_keys}
            "Layers": [
                {{ "Name": "Input", "Kind": "Input", "Type": "Convolutional", "N": "auto", "DataSet": "in" }},
                {layers},
                {{ "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "out", "Activation": "Sigmoid",
                   "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.3 }} }}
            ] }}"#
    );
    parse_network(&text, name).expect("valid definition")
}

const GAUSSIAN: &str = r#""WeightInit": { "Scheme": "Gaussian", "Scale": 0.3, "Bias": 0.05 }"#;

/// Gradients through 2D convolutions (same and strided), max and average pooling (with
/// padding), local response normalisation, batch normalisation per unit and per channel, a 1D
/// convolution, and two convolutions feeding one layer.
pub fn spatial_layer_gradients<B: Backend>(make: &dyn Fn() -> B) {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    let cases = [
        (
            "same convolution, max pooling, batch-normalised fully connected",
            vec![5, 4, 2],
            "",
            format!(
                r#"{{ "Name": "C", "Kind": "Hidden", "Type": "Convolutional", "N": 3, "Kernel": [3, 3],
                      "KernelStride": [1, 1], "Activation": "Tanh", {GAUSSIAN} }},
                   {{ "Name": "P", "Kind": "Hidden", "Type": "Pooling", "Function": "Max", "Kernel": [2, 2],
                      "KernelStride": [2, 2] }},
                   {{ "Name": "F", "Kind": "Hidden", "N": 4, "BatchNormalization": true,
                      "Activation": "Sigmoid", {GAUSSIAN} }}"#
            ),
        ),
        (
            "strided convolution, average pooling, LRN, batch-normalised convolution",
            vec![6, 5, 3],
            r#""LocalResponseNormalization": { "k": 1.5, "n": 3, "alpha": 0.4, "beta": 0.75 },"#,
            format!(
                r#"{{ "Name": "C", "Kind": "Hidden", "Type": "Convolutional", "N": 4, "Kernel": [3, 2],
                      "KernelStride": [2, 2], "Activation": "Tanh", {GAUSSIAN} }},
                   {{ "Name": "P", "Kind": "Hidden", "Type": "Pooling", "Function": "Average", "Kernel": [3, 3],
                      "KernelStride": [1, 1] }},
                   {{ "Name": "L", "Kind": "Hidden", "Type": "Pooling", "Function": "LRN" }},
                   {{ "Name": "C2", "Kind": "Hidden", "Type": "Convolutional", "N": 2, "Kernel": [2, 2],
                      "BatchNormalization": true, "Activation": "Sigmoid", {GAUSSIAN} }}"#
            ),
        ),
        (
            "1D convolutions from two sources",
            vec![7, 2],
            "",
            format!(
                r#"{{ "Name": "A", "Kind": "Hidden", "Type": "Convolutional", "N": 2, "Kernel": 3,
                      "Activation": "Tanh", {GAUSSIAN} }},
                   {{ "Name": "B", "Kind": "Hidden", "Type": "Convolutional", "N": 3, "Kernel": [5],
                      "Source": ["Input", "A"], "Activation": "Sigmoid", {GAUSSIAN} }}"#
            ),
        ),
    ];
    for (i, (name, dimensions, network_keys, layers)) in cases.iter().enumerate() {
        let definition = spatial_network(name, network_keys, layers);
        let data = images(&mut rng, dimensions, 3);
        // A training pass, so that batch normalisation uses the batch's statistics.
        check_gradients(make, &definition, &data, 200 + i as u64, Some(7));
    }
}

/// Batch normalisation in evaluation uses the running statistics, which training moved to
/// the mean of the batches' statistics: after one training pass on a batch, evaluation of
/// that batch equals its training pass.
pub fn batch_normalization_evaluates_with_running_statistics<B: Backend>(make: &dyn Fn() -> B) {
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    let definition = spatial_network(
        "normalised",
        "",
        &format!(
            r#"{{ "Name": "F", "Kind": "Hidden", "N": 5, "BatchNormalization": true,
                  "Activation": "Tanh", {GAUSSIAN} }}"#
        ),
    );
    let data = images(&mut rng, &[3, 2], 3);
    let mut network = network(make(), &definition, &data, 5);
    let binding =
        Binding::new(network.topology(), &data, Bound::InputsAndTargets).expect("binding");
    let samples: Vec<usize> = (0..binding.samples()).collect();
    let batch = binding.gather(&samples, None);
    let mut device = network.upload_batch(&batch).expect("upload");
    network
        .compute_gradients(&mut device, 0)
        .expect("training pass");
    let training = network.take_loss().expect("loss");
    let mut evaluate = |network: &mut crate::model::Network<B>| {
        network.evaluate_batch(&mut device).expect("evaluation");
        network.take_loss().expect("loss")
    };
    let evaluation = evaluate(&mut network);
    let spec = |name: &str| {
        let parameters = &network.topology().parameters;
        parameters.iter().position(|p| p.name == name).expect(name)
    };
    let (mean, variance) = (spec("running_mean.F"), spec("running_variance.F"));
    let running = network.parameter_values().expect("values");
    assert!(
        running[mean].iter().all(|m| *m != 0.0),
        "the running mean moved"
    );
    // The running variance is the unbiased one (4 / 3 of the batch's over 4 samples), so
    // evaluation differs from training until the variance is the batch's again.
    assert!((evaluation - training).abs() > 1e-6 * training.abs());
    let biased: Vec<f32> = running[variance].iter().map(|v| v * 0.75).collect();
    network
        .set_parameter_values(variance, &biased)
        .expect("write");
    close(
        "evaluation with the batch's statistics against training",
        &[evaluate(&mut network) as f32],
        &[training as f32],
        1e-5,
    );
}
