//! Gradient checks of whole networks against central finite differences, on the CPU backend.

use super::*;
use crate::backend::cpu::CpuBackend;
use crate::backend::OptimizerKind;
use crate::config::*;
use crate::data::{Dataset, DenseRows, Rows, SparseRows};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) fn layer(
    name: &str,
    kind: LayerKind,
    width: Width,
    activation: Activation,
) -> LayerDefinition {
    LayerDefinition {
        name: name.into(),
        kind,
        width,
        dataset: None,
        sparse: false,
        sources: Vec::new(),
        skips: Vec::new(),
        activation,
        dropout: 0.0,
        weight_init: WeightInit {
            scheme: WeightInitScheme::Gaussian,
            scale: 0.5,
            bias: 0.1,
        },
        weight_norm: 0.0,
        sparseness_penalty: None,
        shared_weights: Vec::new(),
    }
}

/// Input (dataset "in") -> hidden -> output (dataset "out").
pub(crate) fn three_layers(
    hidden: Activation,
    output: Activation,
    error: ErrorFunction,
    width: usize,
) -> NetworkDefinition {
    let mut input = layer("Input", LayerKind::Input, Width::Auto, Activation::Linear);
    input.dataset = Some("in".into());
    let mut hidden = layer("Hidden", LayerKind::Hidden, Width::Fixed(width), hidden);
    hidden.sources = vec!["Input".into()];
    let mut out = layer("Output", LayerKind::Output, Width::Auto, output);
    out.dataset = Some("out".into());
    out.sources = vec!["Hidden".into()];
    NetworkDefinition {
        version: 0.8,
        name: "test".into(),
        kind: NetworkKind::FeedForward,
        error_function: error,
        denoising: None,
        shuffle_indices: false,
        decay: 0.0,
        layers: vec![input, hidden, out],
    }
}

/// Random rows: sparse with values, or dense; `binary` targets hold only 0/1.
pub(crate) fn random_rows(
    rng: &mut ChaCha8Rng,
    samples: usize,
    width: usize,
    sparse: bool,
    binary: bool,
) -> Rows {
    if sparse {
        let rows: Vec<Vec<(u32, f32)>> = (0..samples)
            .map(|_| {
                let mut columns: Vec<u32> =
                    (0..width as u32).filter(|_| rng.random_bool(0.4)).collect();
                if columns.is_empty() {
                    columns.push(rng.random_range(0..width as u32));
                }
                columns
                    .into_iter()
                    .map(|c| {
                        (
                            c,
                            if binary {
                                1.0
                            } else {
                                rng.random_range(0.2..1.5)
                            },
                        )
                    })
                    .collect()
            })
            .collect();
        Rows::Sparse(SparseRows::from_rows(width, &rows).unwrap())
    } else {
        let data = (0..samples * width)
            .map(|_| {
                if binary {
                    rng.random_range(0..2) as f32
                } else {
                    rng.random_range(0.05..0.95)
                }
            })
            .collect();
        Rows::Dense(DenseRows::new(width, data).unwrap())
    }
}

/// Error summed over the batch, with the dropout masks of `dropout_seed` (none without).
fn total_error(
    network: &mut Network<CpuBackend>,
    batch: &BatchData,
    dropout_seed: Option<u64>,
) -> f64 {
    let mut device = network.upload_batch(batch).unwrap();
    let pass = dropout_seed.map_or(Pass::Evaluation, |dropout_seed| Pass::Training {
        dropout_seed,
    });
    network.forward(&mut device, pass).unwrap();
    network
        .backward(&device, dropout_seed.unwrap_or(0))
        .unwrap();
    network.take_loss().unwrap()
}

/// Compares every parameter's gradient with central differences of the error.
pub(crate) fn check_gradients(definition: &NetworkDefinition, datasets: &[Dataset], seed: u64) {
    check_gradients_with_dropout(definition, datasets, seed, None)
}

/// As [`check_gradients`], with fixed dropout masks: the error is then a smooth function of
/// the parameters too.
fn check_gradients_with_dropout(
    definition: &NetworkDefinition,
    datasets: &[Dataset],
    seed: u64,
    dropout_seed: Option<u64>,
) {
    let topology = Topology::new(definition, &dataset_shapes(datasets)).unwrap();
    let mut network = Network::new(CpuBackend::new(), topology, seed).unwrap();
    network
        .set_optimizer(OptimizerSettings {
            kind: OptimizerKind::Momentum { momentum: 0.0 },
            learning_rate: 0.1,
            l1: 0.0,
            l2: 0.0,
        })
        .unwrap();
    let binding = Binding::new(network.topology(), datasets, true).unwrap();
    let samples: Vec<usize> = (0..binding.samples()).collect();
    let batch = binding.gather(&samples, None);
    total_error(&mut network, &batch, dropout_seed);
    let gradients = network.gradient_values().unwrap();
    let values = network.parameter_values().unwrap();
    let step = 1e-3f32;
    let mut worst = 0.0f64;
    for (p, spec) in network.topology().parameters.clone().iter().enumerate() {
        let analytic = gradients[p]
            .as_ref()
            .expect("momentum keeps every gradient");
        for i in 0..spec.len() {
            let mut perturbed = values[p].clone();
            perturbed[i] = values[p][i] + step;
            network.set_parameter_values(p, &perturbed).unwrap();
            let plus = total_error(&mut network, &batch, dropout_seed);
            perturbed[i] = values[p][i] - step;
            network.set_parameter_values(p, &perturbed).unwrap();
            let minus = total_error(&mut network, &batch, dropout_seed);
            network.set_parameter_values(p, &values[p]).unwrap();
            let numeric = (plus - minus) / (2.0 * step as f64) / samples.len() as f64;
            let analytic = analytic[i] as f64;
            let difference = (numeric - analytic).abs();
            let bound = 2e-2 * numeric.abs().max(analytic.abs()) + 2e-3;
            assert!(
                difference <= bound,
                "{}: {}[{i}] analytic {analytic} numeric {numeric}",
                definition.name,
                spec.name
            );
            worst = worst.max(difference);
        }
    }
    assert!(worst.is_finite());
}

fn datasets(
    rng: &mut ChaCha8Rng,
    inputs: usize,
    outputs: usize,
    sparse_input: bool,
    sparse_target: bool,
    binary_target: bool,
) -> Vec<Dataset> {
    let samples = 4;
    vec![
        Dataset::new("in", random_rows(rng, samples, inputs, sparse_input, false)),
        Dataset::new(
            "out",
            random_rows(rng, samples, outputs, sparse_target, binary_target),
        ),
    ]
}

fn hidden_activations() -> Vec<Activation> {
    vec![
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::RectifiedLinear,
        Activation::LeakyRectifiedLinear { slope: 0.1 },
        Activation::ParametricRectifiedLinear { slope: 0.2 },
        Activation::ExponentialLinear { alpha: 1.0 },
        Activation::ScaledExponentialLinear {
            alpha: 1.673_263_2,
            lambda: 1.050_701,
        },
        Activation::SoftPlus,
        Activation::SoftSign,
        Activation::SoftMax,
        Activation::ReluMax,
        Activation::LinearMax,
        Activation::Linear,
    ]
}

#[test]
fn every_hidden_activation_with_sparse_and_dense_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (i, activation) in hidden_activations().into_iter().enumerate() {
        for sparse in [true, false] {
            let mut definition =
                three_layers(activation, Activation::Sigmoid, ErrorFunction::L2, 5);
            definition.name = format!("{activation:?} sparse input {sparse}");
            let data = datasets(&mut rng, 7, 6, sparse, false, false);
            check_gradients(&definition, &data, i as u64);
        }
    }
}

#[test]
fn every_error_function_with_sparse_and_dense_targets() {
    let marginal = MarginalParameters {
        one_target: 0.95,
        zero_target: 0.05,
        one_scale: 1.5,
        zero_scale: 0.7,
    };
    let cases = [
        (ErrorFunction::L1, Activation::Sigmoid),
        (ErrorFunction::L2, Activation::Sigmoid),
        (ErrorFunction::L2, Activation::Linear),
        (ErrorFunction::L2, Activation::Tanh),
        (ErrorFunction::CrossEntropy, Activation::Sigmoid),
        (ErrorFunction::CrossEntropy, Activation::SoftMax),
        (ErrorFunction::L2, Activation::SoftMax),
        (ErrorFunction::L2, Activation::ReluMax),
        (ErrorFunction::L2, Activation::LinearMax),
        (
            ErrorFunction::ScaledMarginalCrossEntropy(marginal),
            Activation::Sigmoid,
        ),
        (
            ErrorFunction::ScaledMarginalCrossEntropy(marginal),
            Activation::SoftMax,
        ),
        (
            ErrorFunction::DataScaledMarginalCrossEntropy(marginal),
            Activation::Sigmoid,
        ),
        (ErrorFunction::Hinge, Activation::Tanh),
        (ErrorFunction::L2Hinge, Activation::Linear),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (i, (error, activation)) in cases.into_iter().enumerate() {
        for sparse_target in [true, false] {
            let mut definition = three_layers(Activation::Tanh, activation, error, 4);
            definition.name =
                format!("{error:?} with {activation:?}, sparse target {sparse_target}");
            let binary = !matches!(
                error,
                ErrorFunction::DataScaledMarginalCrossEntropy(_)
                    | ErrorFunction::L1
                    | ErrorFunction::L2
            );
            let data = datasets(&mut rng, 6, 5, true, sparse_target, binary);
            check_gradients(&definition, &data, 100 + i as u64);
        }
    }
}

#[test]
fn skips_several_sources_tied_weights_and_sparseness_penalty() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    // Input -> Hidden (sparseness penalty) -> Second (skip from Hidden) -> Output, which is
    // fed by both Second and Hidden.
    let mut definition = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::CrossEntropy,
        4,
    );
    let mut second = layer(
        "Second",
        LayerKind::Hidden,
        Width::Fixed(4),
        Activation::Tanh,
    );
    second.sources = vec!["Hidden".into()];
    second.skips = vec!["Hidden".into()];
    definition.layers[1].sparse = true;
    definition.layers[1].sparseness_penalty = Some(SparsenessPenalty { p: 0.3, beta: 0.5 });
    definition.layers.insert(2, second);
    definition.layers[3].sources = vec!["Second".into(), "Hidden".into()];
    definition.name = "skips, sources, penalty".into();
    let data = datasets(&mut rng, 6, 5, false, true, true);
    check_gradients(&definition, &data, 7);

    // A tied autoencoder on dense data: the output reuses the input weights transposed.
    let mut tied = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::L2,
        3,
    );
    tied.layers[2].dataset = Some("in".into());
    tied.layers[2].shared_weights = vec![SharedWeight {
        input_layer: "Hidden".into(),
        source_input_layer: "Input".into(),
        source_output_layer: "Hidden".into(),
        transposed: true,
    }];
    tied.name = "tied".into();
    let data = vec![Dataset::new(
        "in",
        random_rows(&mut rng, 4, 5, false, false),
    )];
    let topology = Topology::new(&tied, &dataset_shapes(&data)).unwrap();
    assert_eq!(
        topology
            .parameters
            .iter()
            .filter(|p| p.name.starts_with("weights"))
            .count(),
        1
    );
    check_gradients(&tied, &data, 8);
}

#[test]
fn direct_sparse_sgd_matches_the_gradient_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let definition = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::CrossEntropy,
        4,
    );
    let data = datasets(&mut rng, 9, 9, true, true, true);
    let run = |kind| {
        let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
        let mut network = Network::new(CpuBackend::new(), topology, 3).unwrap();
        network
            .set_optimizer(OptimizerSettings {
                kind,
                learning_rate: 0.5,
                l1: 0.0,
                l2: 0.0,
            })
            .unwrap();
        let binding = Binding::new(network.topology(), &data, true).unwrap();
        let mut batch = network
            .upload_batch(&binding.gather(&[0, 1, 2, 3], None))
            .unwrap();
        network.train_batch(&mut batch, 1).unwrap();
        network.parameter_values().unwrap()
    };
    let direct = run(OptimizerKind::Sgd);
    let through_gradient = run(OptimizerKind::Momentum { momentum: 0.0 });
    for (a, b) in direct.iter().zip(&through_gradient) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + x.abs()), "{x} vs {y}");
        }
    }
}

#[test]
fn bad_bindings_are_clear_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let mut definition = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::L2,
        4,
    );
    definition.layers[0].width = Width::Fixed(5);
    let data = datasets(&mut rng, 6, 5, true, true, true);
    let error = Topology::new(&definition, &dataset_shapes(&data))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("'Input' has N 5") && error.contains("6 wide"),
        "{error}"
    );
    definition.layers[0].width = Width::Auto;
    let missing = Topology::new(&definition, &dataset_shapes(&data[..1]))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("dataset 'out'"), "{missing}");
    let mut uneven = datasets(&mut rng, 6, 5, true, true, true);
    uneven[1].rows = random_rows(&mut rng, 3, 5, true, true);
    let topology = Topology::new(&definition, &dataset_shapes(&uneven)).unwrap();
    let error = Binding::new(&topology, &uneven, true)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("3 samples") && error.contains("has 4"),
        "{error}"
    );
    let mut cycle = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::L2,
        4,
    );
    cycle.layers[1].sources = vec!["Hidden".into()];
    let error = Topology::new(&cycle, &dataset_shapes(&data))
        .unwrap_err()
        .to_string();
    assert!(error.contains("cycle"), "{error}");
    cycle.layers[1].sources = vec!["Output".into()];
    let error = Topology::new(&cycle, &dataset_shapes(&data))
        .unwrap_err()
        .to_string();
    assert!(error.contains("from output layer 'Output'"), "{error}");
}

#[test]
fn dropout_on_dense_inputs_and_hidden_layers() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let mut definition = three_layers(
        Activation::Tanh,
        Activation::Sigmoid,
        ErrorFunction::CrossEntropy,
        6,
    );
    definition.layers[0].dropout = 0.2;
    definition.layers[1].dropout = 0.3;
    definition.name = "dropout".into();
    let data = datasets(&mut rng, 5, 4, false, true, true);
    check_gradients_with_dropout(&definition, &data, 9, Some(77));

    // The masks really drop units: the training pass's error differs from the error
    // without dropout on the same samples.
    let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
    let mut network = Network::new(CpuBackend::new(), topology, 9).unwrap();
    network
        .set_optimizer(OptimizerSettings {
            kind: OptimizerKind::Sgd,
            learning_rate: 0.1,
            l1: 0.0,
            l2: 0.0,
        })
        .unwrap();
    let binding = Binding::new(network.topology(), &data, true).unwrap();
    let samples = binding.gather(&[0, 1, 2, 3], None);
    let mut batch = network.upload_batch(&samples).unwrap();
    network
        .forward(&mut batch, Pass::Training { dropout_seed: 5 })
        .unwrap();
    network.backward(&batch, 5).unwrap();
    let trained = network.take_loss().unwrap();
    let mut batch = network.upload_batch(&samples).unwrap();
    network.evaluate_batch(&mut batch).unwrap();
    let evaluated = network.take_loss().unwrap();
    assert!(
        (trained - evaluated).abs() > 1e-4 * evaluated.abs(),
        "{trained} {evaluated}"
    );
}

#[test]
fn denoising_drops_the_asked_share_and_rescales() {
    let rows: Vec<Vec<(u32, f32)>> = (0..200)
        .map(|r| (0..50).map(|c| (c, 1.0 + (r % 3) as f32)).collect())
        .collect();
    let data = vec![Dataset::new(
        "in",
        Rows::Sparse(SparseRows::from_rows(50, &rows).unwrap()),
    )];
    let mut definition = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::L2,
        3,
    );
    definition.layers[2].dataset = Some("in".into());
    let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
    let binding = Binding::new(&topology, &data, true).unwrap();
    let samples: Vec<usize> = (0..200).collect();
    let batch = binding.gather(&samples, Some((0.25, 3)));
    let Rows::Sparse(noisy) = &batch.inputs[0].1 else {
        panic!("sparse input expected")
    };
    let kept = noisy.nnz() as f64 / 10_000.0;
    assert!((kept - 0.75).abs() < 0.02, "{kept}");
    for r in 0..200 {
        let expected = (1.0 + (r % 3) as f32) / 0.75;
        assert!(noisy
            .row_values(r)
            .unwrap()
            .iter()
            .all(|&v| (v - expected).abs() < 1e-6));
    }
    // Targets are never noised, and another seed drops other entries.
    let Rows::Sparse(target) = &batch.targets[0].1 else {
        panic!()
    };
    assert_eq!(target.nnz(), 10_000);
    let other = binding.gather(&samples, Some((0.25, 4)));
    assert_ne!(other.inputs[0].1, batch.inputs[0].1);
}

#[test]
fn resident_batches_match_host_batches() {
    use crate::backend::Backend;
    use crate::model::batch::{DeviceRows, ResidentBinding};
    // Denoised resident batches keep dropped entries as zeros where host batches leave them
    // out: the products, and so training, must not tell them apart.
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let data = vec![
        Dataset::new("in", random_rows(&mut rng, 30, 40, true, false)),
        Dataset::new("out", random_rows(&mut rng, 30, 9, true, true)),
    ];
    let definition = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::CrossEntropy,
        6,
    );
    let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
    let backend = CpuBackend::new();
    let binding = Binding::new(&topology, &data, true).unwrap();
    let resident =
        ResidentBinding::new(&backend, Binding::new(&topology, &data, true).unwrap()).unwrap();
    let samples = [29, 3, 3, 17, 0, 8];
    let w: Vec<f32> = (0..40 * 5).map(|_| rng.random_range(-1.0..1.0)).collect();
    for denoising in [None, Some((0.4, 77))] {
        let host = DeviceBatch::upload(&backend, &binding.gather(&samples, denoising)).unwrap();
        let gathered = resident.gather(&backend, &samples, denoising).unwrap();
        let (DeviceRows::Sparse(x), DeviceRows::Sparse(y)) =
            (host.input(0).unwrap(), gathered.input(0).unwrap())
        else {
            panic!("sparse inputs expected")
        };
        let (mut expected, mut got) = (vec![0.0; 6 * 5], vec![0.0; 6 * 5]);
        backend.sparse_matmul(x, &w, 5, 0.0, &mut expected).unwrap();
        backend.sparse_matmul(y, &w, 5, 0.0, &mut got).unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert!(
                (g - e).abs() < 1e-5,
                "{denoising:?}: {got:?} vs {expected:?}"
            );
        }
        if denoising.is_some() {
            assert!(y.nnz > x.nnz, "dropped entries stay as zeros");
        }
        let (DeviceRows::Sparse(t), DeviceRows::Sparse(u)) =
            (host.target(2).unwrap(), gathered.target(2).unwrap())
        else {
            panic!("sparse targets expected")
        };
        assert_eq!((&t.offsets, &t.indices), (&u.offsets, &u.indices));
    }
}
