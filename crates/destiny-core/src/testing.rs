//! The cases every backend must pass, written once and run on each backend: core's tests run
//! them on the CPU, `destiny-cuda`'s on a GPU, and they are ready for networks over several
//! ranks. Each case takes a factory of backends rather than a backend, because a network
//! owns its backend and a case builds several networks (and, for sharded networks, one
//! backend per rank). Each compares the backend's results with the CPU backend's and, where
//! the result is a gradient, with central finite differences of the backend's own error, so
//! that a case still tests something when the backend is the CPU.
//!
//! [`backend_cases!`](crate::backend_cases) expands into one `#[test]` per case, for a given
//! factory.
//!
//! This module is compiled only for tests: for core's own, and behind the cargo feature
//! `testing`, which other crates turn on in their `[dev-dependencies]`. Candle does the same
//! job with its `test_device!` macro in a `test_utils` module that is always public; it can,
//! because every candle backend lives in the one crate whose tests invoke it. Destiny's CUDA
//! backend is another crate, so the cases must be reachable from outside core; the feature
//! keeps their panicking assertions and random data out of the library that programs and
//! the Python bindings link.

use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, OptimizerKind, Shape};
use crate::config::*;
use crate::data::{Dataset, DenseRows, Rows, SparseRows};
use crate::model::{
    dataset_shapes, BatchData, Binding, Bound, Network, OptimizerSettings, Pass, Topology,
};
use crate::predict::predict_top_k;
use crate::run::{NonFinite, TrainingOptions};
use crate::train::{train_epoch, TrainingData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod faults;
mod shapes;
mod spatial;

pub use faults::{
    a_batch_larger_than_memory_is_refused, a_batch_whose_loss_is_not_finite_is_skipped,
    a_network_larger_than_memory_is_refused, skipping_batches_stops_when_it_cannot_help,
};
pub use shapes::wrong_shapes_are_dimension_errors;
pub use spatial::{batch_normalization_evaluates_with_running_statistics, spatial_layer_gradients};

/// Expands into one `#[test]` per case of [`testing`](crate::testing), each running the case
/// on the backends that `$make` (an expression usable as `&dyn Fn() -> B`) makes; attributes
/// after it (such as `#[ignore = "needs a GPU"]`) go on every test.
#[macro_export]
macro_rules! backend_cases {
    ($make:expr $(, #[$attribute:meta])*) => {
        $crate::backend_cases!(@tests ($make) [$(#[$attribute])*]
            hidden_activation_gradients
            error_function_gradients
            skip_source_tied_and_penalty_gradients
            dropout_gradients
            direct_sparse_sgd
            training_runs
            wrong_shapes_are_dimension_errors
            a_network_larger_than_memory_is_refused
            a_batch_larger_than_memory_is_refused
            a_batch_whose_loss_is_not_finite_is_skipped
            skipping_batches_stops_when_it_cannot_help
            normalized_inputs_train_as_rows_scaled_by_hand
            top_k_of_activations_ranks_what_the_activations_would
            spatial_layer_gradients
            batch_normalization_evaluates_with_running_statistics
        );
    };
    (@tests ($make:expr) $attributes:tt $case:ident $($rest:ident)*) => {
        $crate::backend_cases!(@test ($make) $attributes $case);
        $crate::backend_cases!(@tests ($make) $attributes $($rest)*);
    };
    (@tests ($make:expr) $attributes:tt) => {};
    (@test ($make:expr) [$(#[$attribute:meta])*] $case:ident) => {
        $(#[$attribute])*
        #[test]
        fn $case() {
            $crate::testing::$case(&$make)
        }
    };
}

/// `n` values drawn uniformly from `low..high`.
pub fn random_values(rng: &mut ChaCha8Rng, n: usize, low: f32, high: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(low..high)).collect()
}

/// Sparse rows where each column is present with probability `density`, and one random
/// column of a row that would be empty when `nonempty`; with `values`, each entry has a value
/// in `0.2..1.5`, else none (all ones).
pub fn sparse_rows(
    rng: &mut ChaCha8Rng,
    rows: usize,
    width: usize,
    density: f64,
    values: bool,
    nonempty: bool,
) -> SparseRows {
    let rows: Vec<Vec<(u32, f32)>> = (0..rows)
        .map(|_| {
            let mut columns: Vec<u32> = (0..width as u32)
                .filter(|_| rng.random_bool(density))
                .collect();
            if nonempty && columns.is_empty() {
                columns.push(rng.random_range(0..width as u32));
            }
            columns
                .into_iter()
                .map(|c| (c, rng.random_range(0.2..1.5)))
                .collect()
        })
        .collect();
    let x = SparseRows::from_rows(width, &rows).expect("valid rows");
    if values {
        x
    } else {
        let (width, offsets, indices, _) = x.into_parts();
        SparseRows::new(width, offsets, indices, None).expect("valid rows")
    }
}

/// Random rows: sparse (density 0.4, no row empty) or dense; `binary` rows hold only ones (sparse) or
/// zeros and ones (dense), the others values in `0.2..1.5` (sparse) or `0.05..0.95` (dense).
pub fn random_rows(
    rng: &mut ChaCha8Rng,
    samples: usize,
    width: usize,
    sparse: bool,
    binary: bool,
) -> Rows {
    if sparse {
        return Rows::Sparse(sparse_rows(rng, samples, width, 0.4, !binary, true));
    }
    let data = (0..samples * width)
        .map(|_| {
            if binary {
                rng.random_range(0..2) as f32
            } else {
                rng.random_range(0.05..0.95)
            }
        })
        .collect();
    Rows::Dense(DenseRows::new(width, data).expect("valid rows"))
}

/// Asserts `||got - expected|| / ||expected|| < bound`, and no NaN in `got`.
pub fn close(what: &str, got: &[f32], expected: &[f32], bound: f64) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths");
    assert!(got.iter().all(|v| !v.is_nan()), "{what}: NaN");
    let difference: f64 = got
        .iter()
        .zip(expected)
        .map(|(g, e)| ((g - e) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = expected
        .iter()
        .map(|e| (*e as f64).powi(2))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    assert!(
        difference / norm < bound,
        "{what}: relative error {}",
        difference / norm
    );
}

/// A layer with Gaussian weights (0.5) and biases of 0.1, with no dataset or sources.
pub fn layer(name: &str, kind: LayerKind, width: Width, activation: Activation) -> LayerDefinition {
    LayerDefinition {
        activation,
        weight_init: WeightInit {
            scheme: WeightInitScheme::Gaussian,
            scale: 0.5,
            bias: 0.1,
        },
        ..LayerDefinition::new(name, kind, width)
    }
}

/// Input (dataset "in") -> hidden of `width` units -> output (dataset "out").
pub fn three_layers(
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
        delta_boost: DeltaBoost::default(),
        local_response: LocalResponse::DSSTNE,
        layers: vec![input, hidden, out],
    }
}

/// Every activation function.
pub fn activations() -> Vec<Activation> {
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

/// Marginal parameters other than the defaults, so that every parameter matters.
pub const MARGINAL: MarginalParameters = MarginalParameters {
    one_target: 0.95,
    zero_target: 0.05,
    one_scale: 1.5,
    zero_scale: 0.7,
};

/// Every error function, each with the output activations it is used with, whose error is
/// smooth enough for finite differences.
pub fn output_cases() -> Vec<(ErrorFunction, Activation)> {
    vec![
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
            ErrorFunction::ScaledMarginalCrossEntropy(MARGINAL),
            Activation::Sigmoid,
        ),
        (
            ErrorFunction::ScaledMarginalCrossEntropy(MARGINAL),
            Activation::SoftMax,
        ),
        (
            ErrorFunction::DataScaledMarginalCrossEntropy(MARGINAL),
            Activation::Sigmoid,
        ),
        (ErrorFunction::Hinge, Activation::Tanh),
        (ErrorFunction::L2Hinge, Activation::Linear),
    ]
}

/// The network of `definition` bound to `datasets`, with an optimizer that keeps every
/// gradient (momentum 0).
fn network<B: Backend>(
    backend: B,
    definition: &NetworkDefinition,
    datasets: &[Dataset],
    seed: u64,
) -> Network<B> {
    let topology = Topology::new(definition, &dataset_shapes(datasets)).expect("valid network");
    let mut network = Network::new(backend, topology, seed).expect("network");
    network
        .set_optimizer(OptimizerSettings {
            kind: OptimizerKind::Momentum { momentum: 0.0 },
            learning_rate: 0.1,
            l1: 0.0,
            l2: 0.0,
        })
        .expect("optimizer");
    network
}

/// Error summed over the batch, with the dropout masks of `dropout_seed` (none without),
/// leaving the gradients of that error in the network.
fn total_error<B: Backend>(
    network: &mut Network<B>,
    batch: &BatchData,
    dropout_seed: Option<u64>,
) -> f64 {
    let mut device = network.upload_batch(batch).expect("upload");
    let pass = dropout_seed.map_or(Pass::Evaluation, |dropout_seed| Pass::Training {
        dropout_seed,
    });
    network.forward(&mut device, pass).expect("forward");
    network
        .backward(&device, dropout_seed.unwrap_or(0))
        .expect("backward");
    network.take_loss().expect("loss")
}

/// Compares every parameter's gradient on a backend of `make` with the CPU backend's and
/// with central differences of the error, with the dropout masks of `dropout_seed` (fixed
/// masks keep the error a smooth function of the parameters).
fn check_gradients<B: Backend>(
    make: &dyn Fn() -> B,
    definition: &NetworkDefinition,
    datasets: &[Dataset],
    seed: u64,
    dropout_seed: Option<u64>,
) {
    let name = &definition.name;
    let mut network = network(make(), definition, datasets, seed);
    let mut reference = self::network(CpuBackend::new(), definition, datasets, seed);
    let binding =
        Binding::new(network.topology(), datasets, Bound::InputsAndTargets).expect("binding");
    let samples: Vec<usize> = (0..binding.samples()).collect();
    let batch = binding.gather(&samples, None);
    let error = total_error(&mut network, &batch, dropout_seed);
    let cpu_error = total_error(&mut reference, &batch, dropout_seed);
    close(
        &format!("{name}: error against the CPU"),
        &[error as f32],
        &[cpu_error as f32],
        1e-5,
    );
    let gradients = network.gradient_values().expect("gradients");
    let cpu_gradients = reference.gradient_values().expect("gradients");
    let values = network.parameter_values().expect("values");
    let step = 1e-3f32;
    let parameters = network.topology().parameters.clone();
    for (p, spec) in parameters.iter().enumerate() {
        if !spec.role.is_trained() {
            continue;
        }
        let analytic = gradients[p]
            .as_ref()
            .expect("momentum keeps every gradient");
        close(
            &format!("{name}: gradient of {} against the CPU", spec.name),
            analytic,
            cpu_gradients[p]
                .as_ref()
                .expect("momentum keeps every gradient"),
            1e-4,
        );
        for i in 0..spec.len() {
            let mut perturbed = values[p].clone();
            perturbed[i] = values[p][i] + step;
            network.set_parameter_values(p, &perturbed).expect("write");
            let plus = total_error(&mut network, &batch, dropout_seed);
            perturbed[i] = values[p][i] - step;
            network.set_parameter_values(p, &perturbed).expect("write");
            let minus = total_error(&mut network, &batch, dropout_seed);
            network.set_parameter_values(p, &values[p]).expect("write");
            let numeric = (plus - minus) / (2.0 * step as f64) / samples.len() as f64;
            let analytic = analytic[i] as f64;
            let difference = (numeric - analytic).abs();
            let bound = 2e-2 * numeric.abs().max(analytic.abs()) + 2e-3;
            assert!(
                difference <= bound,
                "{name}: {}[{i}] analytic {analytic} numeric {numeric}",
                spec.name
            );
        }
    }
}

/// An input dataset "in" and a target dataset "out" of 4 samples.
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

/// Gradients through every hidden activation, from sparse and from dense inputs.
pub fn hidden_activation_gradients<B: Backend>(make: &dyn Fn() -> B) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (i, activation) in activations().into_iter().enumerate() {
        for sparse in [true, false] {
            let mut definition =
                three_layers(activation, Activation::Sigmoid, ErrorFunction::L2, 5);
            definition.name = format!("{activation:?} sparse input {sparse}");
            let data = datasets(&mut rng, 7, 6, sparse, false, false);
            check_gradients(make, &definition, &data, i as u64, None);
        }
    }
}

/// Gradients of every error function with its output activations, against sparse and dense
/// targets.
pub fn error_function_gradients<B: Backend>(make: &dyn Fn() -> B) {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (i, (error, activation)) in output_cases().into_iter().enumerate() {
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
            check_gradients(make, &definition, &data, 100 + i as u64, None);
            // DeltaBoost weighs units with a non-zero target and the others apart.
            definition.delta_boost = DeltaBoost {
                one: 3.0,
                zero: 0.5,
            };
            definition.name += ", boosted";
            check_gradients(make, &definition, &data, 100 + i as u64, None);
        }
    }
}

/// Gradients through skip connections, a layer with several sources, the sparseness
/// penalty, and weights shared transposed (a tied autoencoder).
pub fn skip_source_tied_and_penalty_gradients<B: Backend>(make: &dyn Fn() -> B) {
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
    check_gradients(make, &definition, &data, 7, None);

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
    let topology = Topology::new(&tied, &dataset_shapes(&data)).expect("valid network");
    assert_eq!(
        topology
            .parameters
            .iter()
            .filter(|p| p.name.starts_with("weights"))
            .count(),
        1
    );
    check_gradients(make, &tied, &data, 8, None);
}

/// Gradients with dropout on a dense input and a hidden layer (fixed masks), and masks that
/// really drop units.
pub fn dropout_gradients<B: Backend>(make: &dyn Fn() -> B) {
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
    check_gradients(make, &definition, &data, 9, Some(77));

    // The masks really drop units: the training pass's error differs from the error
    // without dropout on the same samples.
    let mut network = network(make(), &definition, &data, 9);
    let binding =
        Binding::new(network.topology(), &data, Bound::InputsAndTargets).expect("binding");
    let samples = binding.gather(&[0, 1, 2, 3], None);
    let trained = total_error(&mut network, &samples, Some(5));
    let mut batch = network.upload_batch(&samples).expect("upload");
    network.evaluate_batch(&mut batch).expect("evaluate");
    let evaluated = network.take_loss().expect("loss");
    assert!(
        (trained - evaluated).abs() > 1e-4 * evaluated.abs(),
        "{trained} {evaluated}"
    );
}

/// Plain SGD on a sparse input's weights, which writes the gradient straight into the
/// weights, gives what the gradient path (momentum 0) gives.
pub fn direct_sparse_sgd<B: Backend>(make: &dyn Fn() -> B) {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let definition = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::CrossEntropy,
        4,
    );
    let data = datasets(&mut rng, 9, 9, true, true, true);
    let run = |kind| {
        let mut network = network(make(), &definition, &data, 3);
        network
            .set_optimizer(OptimizerSettings {
                kind,
                learning_rate: 0.5,
                l1: 0.0,
                l2: 0.0,
            })
            .expect("optimizer");
        let binding =
            Binding::new(network.topology(), &data, Bound::InputsAndTargets).expect("binding");
        let mut batch = network
            .upload_batch(&binding.gather(&[0, 1, 2, 3], None))
            .expect("upload");
        network.train_batch(&mut batch, 1).expect("step");
        network.parameter_values().expect("values")
    };
    let direct = run(OptimizerKind::Sgd);
    let through_gradient = run(OptimizerKind::Momentum { momentum: 0.0 });
    for (a, b) in direct.iter().zip(&through_gradient) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + x.abs()), "{x} vs {y}");
        }
    }
}

/// A `Normalize` input trains, and predicts, exactly as its rows scaled to unit length by
/// hand would (before denoising, which draws the same masks), with the targets untouched.
pub fn normalized_inputs_train_as_rows_scaled_by_hand<B: Backend>(make: &dyn Fn() -> B) {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut definition = three_layers(
        Activation::Tanh,
        Activation::Sigmoid,
        ErrorFunction::CrossEntropy,
        6,
    );
    definition.layers[0].sparse = true;
    let raw = sparse_rows(&mut rng, 40, 30, 0.2, true, true);
    let target = Dataset::new("out", Rows::Sparse(raw.clone()));
    let (width, offsets, indices, values) = raw.clone().into_parts();
    let mut scaled = values.expect("values");
    for row in offsets.windows(2) {
        let row = &mut scaled[row[0]..row[1]];
        let norm = row
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        row.iter_mut()
            .for_each(|v| *v = (f64::from(*v) / norm) as f32);
    }
    let by_hand = SparseRows::new(width, offsets, indices, Some(scaled)).unwrap();
    let raw_data = vec![Dataset::new("in", Rows::Sparse(raw)), target.clone()];
    let scaled_data = vec![Dataset::new("in", Rows::Sparse(by_hand)), target];
    let options = TrainingOptions {
        batch_size: 16,
        optimizer: OptimizerSettings {
            kind: OptimizerKind::Sgd,
            learning_rate: 0.1,
            l1: 0.0,
            l2: 0.0,
        },
        seed: 4,
        shuffle: true,
        denoising: Some(0.3),
        on_nonfinite: NonFinite::Stop,
    };
    let run = |normalize: bool, data: &[Dataset]| {
        let mut definition = definition.clone();
        definition.layers[0].normalize = normalize;
        let topology = Topology::new(&definition, &dataset_shapes(data)).unwrap();
        let mut network = Network::new(make(), topology, 3).unwrap();
        let bound = TrainingData::new(&network, data).unwrap();
        for epoch in 0..2 {
            train_epoch(&mut network, &bound, &options, epoch, &mut |_| {}).unwrap();
        }
        let top = predict_top_k(&mut network, data, None, None, 5, 16).unwrap();
        (network.parameter_values().unwrap(), top)
    };
    let (normalized, top) = run(true, &raw_data);
    let (expected, expected_top) = run(false, &scaled_data);
    for (got, expected) in normalized.iter().zip(&expected) {
        close("parameters", got, expected, 1e-6);
    }
    assert_eq!(top.columns, expected_top.columns);
    let (unscaled, _) = run(false, &raw_data);
    assert_ne!(unscaled, normalized, "normalising changed nothing");
}

/// Three epochs of DSSTNE's MovieLens autoencoder with SGD and with Adam, with shuffling
/// and denoising: the loss falls, and the losses, trained parameters and top-10
/// recommendations match the CPU backend's.
pub fn training_runs<B: Backend>(make: &dyn Fn() -> B) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = sparse_rows(&mut rng, 300, 400, 0.05, false, false);
    let datasets = vec![
        Dataset::new("gl_input", Rows::Sparse(x.clone())),
        Dataset::new("gl_output", Rows::Sparse(x.clone())),
    ];
    let definition = parse_network(
        include_str!("../../../examples/movielens/config.json"),
        "config.json",
    )
    .expect("the MovieLens definition");
    let topology = Topology::new(&definition, &dataset_shapes(&datasets)).expect("topology");
    for kind in [
        OptimizerKind::Sgd,
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        },
    ] {
        let options = TrainingOptions {
            batch_size: 64,
            optimizer: OptimizerSettings {
                kind,
                learning_rate: 0.05,
                l1: 0.0,
                l2: 0.0,
            },
            seed: 3,
            shuffle: true,
            denoising: Some(0.2),
            on_nonfinite: NonFinite::Stop,
        };
        let mut on_cpu = Network::new(CpuBackend::new(), topology.clone(), 11).expect("network");
        let mut tested = Network::new(make(), topology.clone(), 11).expect("network");
        let cpu_data = TrainingData::new(&on_cpu, &datasets).expect("data");
        let data = TrainingData::new(&tested, &datasets).expect("data");
        let mut losses = Vec::new();
        for epoch in 0..3 {
            let c =
                train_epoch(&mut on_cpu, &cpu_data, &options, epoch, &mut |_| {}).expect("epoch");
            let t = train_epoch(&mut tested, &data, &options, epoch, &mut |_| {}).expect("epoch");
            assert!(
                (c.loss - t.loss).abs() < 1e-3 * c.loss,
                "{kind:?} epoch {epoch}: loss {} on the CPU, {} on {}",
                c.loss,
                t.loss,
                tested.backend().name()
            );
            losses.push(t.loss);
        }
        assert!(
            losses[2] < losses[0],
            "{kind:?}: the loss did not fall: {losses:?}"
        );
        for (c, t) in on_cpu
            .parameter_values()
            .expect("values")
            .iter()
            .zip(tested.parameter_values().expect("values"))
        {
            close(&format!("{kind:?} trained parameters"), &t, c, 1e-3);
        }
        let inputs = &datasets[..1];
        let top_cpu = predict_top_k(&mut on_cpu, inputs, None, Some(&x), 10, 128).expect("top");
        let top = predict_top_k(&mut tested, inputs, None, Some(&x), 10, 128).expect("top");
        let agree = top_cpu
            .columns
            .iter()
            .zip(&top.columns)
            .filter(|(a, b)| a == b)
            .count();
        assert!(
            agree as f64 >= 0.95 * top_cpu.columns.len() as f64,
            "{kind:?}: {agree} of {} recommendations agree",
            top_cpu.columns.len()
        );
    }
}

/// [`Backend::top_k_activated`] of an output layer's products gives exactly the top-K of the
/// activations [`Backend::activation_forward`] writes, for every activation, with biases and
/// slopes, exclusions, and rows narrow, unaligned and a million wide (which a GPU cuts into
/// tiles).
pub fn top_k_of_activations_ranks_what_the_activations_would<B: Backend>(make: &dyn Fn() -> B) {
    let b = make();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (rows, cols, k) in [(5, 300, 10), (3, 70_001, 100), (2, 1_000_000, 100)] {
        let shape = Shape::new(rows, cols);
        let products = random_values(&mut rng, rows * cols, -4.0, 4.0);
        let bias = b.upload(&random_values(&mut rng, cols, -1.0, 1.0)).unwrap();
        let slope = b.upload(&random_values(&mut rng, cols, 0.05, 0.5)).unwrap();
        let exclude = b
            .upload_sparse(&sparse_rows(&mut rng, rows, cols, 0.01, false, false))
            .unwrap();
        for activation in activations() {
            let slope = matches!(activation, Activation::ParametricRectifiedLinear { .. })
                .then_some(&slope);
            let mut z = b.upload(&products).unwrap();
            let mut a = b.zeros(rows * cols).unwrap();
            b.activation_forward(activation, shape, Some(&bias), &mut z, slope, &mut a)
                .unwrap();
            let expected = b
                .top_k(shape, &a, k, Some(&exclude), 0)
                .and_then(|top| b.read_top_k(top))
                .unwrap();
            let mut z = b.upload(&products).unwrap();
            let got = b
                .top_k_activated(
                    activation,
                    shape,
                    Some(&bias),
                    &mut z,
                    slope,
                    &mut a,
                    k,
                    Some(&exclude),
                    0,
                )
                .and_then(|top| b.read_top_k(top))
                .unwrap();
            assert_eq!(
                got.0, expected.0,
                "{activation:?}: columns of {rows} x {cols}"
            );
            assert_eq!(
                got.1, expected.1,
                "{activation:?}: scores of {rows} x {cols}"
            );
        }
    }
}
