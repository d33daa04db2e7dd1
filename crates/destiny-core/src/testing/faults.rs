//! The cases of faults every backend must meet the same way: networks and batches larger
//! than its memory, refused with the figures before anything is allocated, and batches whose
//! loss overflows, skipped without touching the weights.

use super::{close, random_rows, three_layers};
use crate::backend::{Backend, OptimizerKind};
use crate::config::{Activation, ErrorFunction};
use crate::data::{Dataset, Rows, SparseRows};
use crate::model::{dataset_shapes, Network, OptimizerSettings, Topology};
use crate::run::{NonFinite, TrainingOptions};
use crate::train::{train_epoch, TrainingData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A network far larger than any device (a hundred billion hidden units, 4.8 TB of weights)
/// is refused before anything is allocated, with the figures.
pub fn a_network_larger_than_memory_is_refused<B: Backend>(make: &dyn Fn() -> B) {
    let definition = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::L2,
        100_000_000_000,
    );
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let data = vec![
        Dataset::new("in", random_rows(&mut rng, 3, 7, true, false)),
        Dataset::new("out", random_rows(&mut rng, 3, 4, true, false)),
    ];
    let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
    let error = Network::new(make(), topology, 1).err().unwrap().to_string();
    assert!(
        error.contains("the network's weights need 4800.0 GB (1200000000004 values) but")
            && error.contains("GB is available"),
        "{error}"
    );
}

/// A network that fits, trained in batches that do not (100,000 samples of a million hidden
/// units: 1.2 TB of activations and deltas), is refused at the first batch with the figures
/// and the option to change, before any of it is allocated.
pub fn a_batch_larger_than_memory_is_refused<B: Backend>(make: &dyn Fn() -> B) {
    let definition = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::L2,
        1_000_000,
    );
    let rows: Vec<Vec<(u32, f32)>> = (0..100_000u32).map(|u| vec![(u % 4, 1.0)]).collect();
    let rows = SparseRows::from_rows(4, &rows).unwrap();
    let data = vec![
        Dataset::new("in", Rows::Sparse(rows.clone())),
        Dataset::new("out", Rows::Sparse(rows)),
    ];
    let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
    let mut network = Network::new(make(), topology, 1).unwrap();
    let bound = TrainingData::new(&network, &data).unwrap();
    let options = TrainingOptions {
        batch_size: 100_000,
        ..linear_options(OptimizerKind::Sgd)
    };
    let error = train_epoch(&mut network, &bound, &options, 0, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "the layers' values for a batch of 100000 samples (see --batch-size) need 1200.0 GB \
             (300001200000 values) but"
        ) && error.contains("GB is available"),
        "{error}"
    );
}

/// Options without shuffling, denoising or weight decay, so that runs on different samples
/// differ only by those samples.
fn linear_options(kind: OptimizerKind) -> TrainingOptions {
    TrainingOptions {
        batch_size: 16,
        optimizer: OptimizerSettings {
            kind,
            learning_rate: 0.01,
            l1: 0.0,
            l2: 0.0,
        },
        seed: 5,
        shuffle: false,
        denoising: None,
        on_nonfinite: NonFinite::Stop,
    }
}

/// The given samples, two items of 20 each of value 1, but those of `outliers` have `value`
/// in their first item.
fn samples_with_outliers(
    samples: impl Iterator<Item = u32>,
    outliers: impl Fn(u32) -> bool,
    value: f32,
) -> Vec<Dataset> {
    let rows: Vec<Vec<(u32, f32)>> = samples
        .map(|u| {
            let value = if outliers(u) { value } else { 1.0 };
            vec![(u % 20, value), ((u * 7 + 3) % 20, 1.0)]
        })
        .collect();
    let rows = SparseRows::from_rows(20, &rows).unwrap();
    vec![
        Dataset::new("in", Rows::Sparse(rows.clone())),
        Dataset::new("out", Rows::Sparse(rows)),
    ]
}

/// A linear network with the squared error, where a sample of value 1e30 (in the second
/// batch of three) makes the loss and the gradients of its batch infinite: with
/// [`NonFinite::SkipBatch`] the run trains as if that batch were not there (for plain SGD,
/// whose sparse-input weights then wait for the step, and for Adam), and with the default
/// it stops at the first read-back naming the batches and the tensor.
pub fn a_batch_whose_loss_is_not_finite_is_skipped<B: Backend>(make: &dyn Fn() -> B) {
    let definition = three_layers(Activation::Linear, Activation::Linear, ErrorFunction::L2, 8);
    let outlier = |u| u == 20;
    let data = samples_with_outliers(0..48, outlier, 1e30);
    let without = samples_with_outliers((0..16).chain(32..48), outlier, 1e30);
    let network = |data: &[Dataset]| {
        let topology = Topology::new(&definition, &dataset_shapes(data)).unwrap();
        Network::new(make(), topology, 42).unwrap()
    };
    let adam = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
    };
    for kind in [OptimizerKind::Sgd, adam] {
        let options = linear_options(kind);
        let skip = TrainingOptions {
            on_nonfinite: NonFinite::SkipBatch,
            ..options
        };
        let mut skipping = network(&data);
        let mut clean = network(&without);
        let bound = TrainingData::new(&skipping, &data).unwrap();
        let bound_clean = TrainingData::new(&clean, &without).unwrap();
        for epoch in 0..3 {
            let skipped = train_epoch(&mut skipping, &bound, &skip, epoch, &mut |_| {}).unwrap();
            let reference =
                train_epoch(&mut clean, &bound_clean, &options, epoch, &mut |_| {}).unwrap();
            assert_eq!((skipped.skipped_batches, reference.skipped_batches), (1, 0));
            assert!(
                (skipped.loss - reference.loss).abs() <= 1e-5 * reference.loss.abs(),
                "{kind:?} epoch {epoch}: loss {} skipping, {} without the batch",
                skipped.loss,
                reference.loss
            );
        }
        let (got, expected) = (
            skipping.parameter_values().unwrap(),
            clean.parameter_values().unwrap(),
        );
        for (g, e) in got.iter().zip(&expected) {
            close(&format!("{kind:?} parameters"), g, e, 1e-5);
        }
        let mut stopping = network(&data);
        let error = train_epoch(&mut stopping, &bound, &options, 0, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("in epoch 1, batches 1 to 3 of 3 (samples 1 to 48); tensor '"),
            "{error}"
        );
    }
}

/// Skipping batches cannot help when every batch overflows (the data is at fault), nor once
/// a finite loss's gradients have overflowed the weights (every later batch would be
/// skipped): the run stops with that said.
pub fn skipping_batches_stops_when_it_cannot_help<B: Backend>(make: &dyn Fn() -> B) {
    let definition = three_layers(Activation::Linear, Activation::Linear, ErrorFunction::L2, 8);
    let run = |data: &[Dataset], learning_rate: f32| {
        let topology = Topology::new(&definition, &dataset_shapes(data)).unwrap();
        let mut network = Network::new(make(), topology, 42).unwrap();
        let bound = TrainingData::new(&network, data).unwrap();
        let mut options = TrainingOptions {
            on_nonfinite: NonFinite::SkipBatch,
            ..linear_options(OptimizerKind::Sgd)
        };
        options.optimizer.learning_rate = learning_rate;
        (0..3)
            .map(|epoch| train_epoch(&mut network, &bound, &options, epoch, &mut |_| {}))
            .find_map(Result::err)
            .expect("training stops")
            .to_string()
    };
    let error = run(&samples_with_outliers(0..48, |_| true, 1e30), 0.01);
    assert!(
        error.contains("the loss of every batch of epoch 1 was NaN or infinite"),
        "{error}"
    );
    // The squared error of a value of 1e18 in the first batch is finite, but its gradients,
    // times the learning rate, overflow the weights: the next batch cannot be trained on.
    let error = run(&samples_with_outliers(0..48, |u| u == 5, 1e18), 1e5);
    assert!(
        error.contains("in epoch 1, batch 2 of 3; tensor '")
            && error.contains("skipping batches cannot mend the weights"),
        "{error}"
    );
}
