//! The cases every backend must pass (`crate::testing`), on the CPU backend, and the checks
//! of bindings and batches on the host.

use super::*;
use crate::backend::cpu::CpuBackend;
use crate::config::*;
use crate::data::{Dataset, Rows, SparseRows};
use crate::testing::{random_rows, three_layers};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

crate::backend_cases!(CpuBackend::new);

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
    let data = vec![
        Dataset::new("in", random_rows(&mut rng, 4, 6, true, false)),
        Dataset::new("out", random_rows(&mut rng, 4, 5, true, true)),
    ];
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
    let mut uneven = data.clone();
    uneven[1].rows = random_rows(&mut rng, 3, 5, true, true);
    let topology = Topology::new(&definition, &dataset_shapes(&uneven)).unwrap();
    let error = Binding::new(&topology, &uneven, Bound::InputsAndTargets)
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
    let binding = Binding::new(&topology, &data, Bound::InputsAndTargets).unwrap();
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
    let binding = Binding::new(&topology, &data, Bound::InputsAndTargets).unwrap();
    let resident = ResidentBinding::new(
        &backend,
        Binding::new(&topology, &data, Bound::InputsAndTargets).unwrap(),
    )
    .unwrap();
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

#[test]
fn weight_decay_leaves_biases_alone() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let definition = three_layers(Activation::Tanh, Activation::Sigmoid, ErrorFunction::L2, 5);
    let data = vec![
        Dataset::new("in", random_rows(&mut rng, 6, 7, true, true)),
        Dataset::new("out", random_rows(&mut rng, 6, 4, true, true)),
    ];
    let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
    let binding = Binding::new(&topology, &data, Bound::InputsAndTargets).unwrap();
    let (learning_rate, l2) = (0.1, 0.5);
    // One SGD step with and without decay: the gradients are the same, so weights differ
    // by exactly the decay and biases not at all.
    let stepped = |l2: f32| {
        let mut network = Network::new(CpuBackend::new(), topology.clone(), 9).unwrap();
        network
            .set_optimizer(OptimizerSettings {
                kind: crate::backend::OptimizerKind::Sgd,
                learning_rate,
                l1: 0.0,
                l2,
            })
            .unwrap();
        let before = network.parameter_values().unwrap();
        let mut batch = network
            .upload_batch(&binding.gather(&[0, 1, 2, 3, 4, 5], None))
            .unwrap();
        network.train_batch(&mut batch, 1).unwrap();
        (before, network.parameter_values().unwrap())
    };
    let ((before, plain), (_, decayed)) = (stepped(0.0), stepped(l2));
    for (p, spec) in topology.parameters.iter().enumerate() {
        for ((w, a), b) in before[p].iter().zip(&plain[p]).zip(&decayed[p]) {
            let expected = match spec.role.decays() {
                true => a - learning_rate * l2 * w,
                false => *a,
            };
            assert!(
                (b - expected).abs() < 1e-6,
                "{}: {b} vs {expected}",
                spec.name
            );
        }
    }
}
