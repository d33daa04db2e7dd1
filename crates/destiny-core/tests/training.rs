//! Training, saving, resuming and predicting through the public API on the CPU backend.

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::OptimizerKind;
use destiny_core::config::*;
use destiny_core::data::{Dataset, Rows, SparseRows};
use destiny_core::model::{dataset_shapes, Network, OptimizerSettings, Topology};
use destiny_core::model_file::{load_model, save_model, TrainingState};
use destiny_core::predict::predict_top_k;
use destiny_core::train::{train_epoch, TrainingData, TrainingOptions};

fn layer(
    name: &str,
    kind: LayerKind,
    width: Width,
    activation: Activation,
    dataset: Option<&str>,
    sources: &[&str],
) -> LayerDefinition {
    LayerDefinition {
        name: name.into(),
        kind,
        width,
        dataset: dataset.map(String::from),
        sparse: kind != LayerKind::Hidden,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        skips: Vec::new(),
        activation,
        dropout: 0.0,
        weight_init: WeightInit::default(),
        weight_norm: 0.0,
        sparseness_penalty: None,
        shared_weights: Vec::new(),
    }
}

/// A sparse autoencoder like DSSTNE's MovieLens example, with dropout on the hidden layer.
fn autoencoder() -> NetworkDefinition {
    let mut hidden = layer(
        "Hidden",
        LayerKind::Hidden,
        Width::Fixed(8),
        Activation::Sigmoid,
        None,
        &["Input"],
    );
    hidden.dropout = 0.1;
    NetworkDefinition {
        version: 0.8,
        name: "AE".into(),
        kind: NetworkKind::AutoEncoder,
        error_function: ErrorFunction::ScaledMarginalCrossEntropy(MarginalParameters {
            one_target: 1.0,
            zero_target: 0.0,
            one_scale: 1.0,
            zero_scale: 1.0,
        }),
        denoising: Some(0.2),
        shuffle_indices: true,
        decay: 0.0,
        layers: vec![
            layer(
                "Input",
                LayerKind::Input,
                Width::Auto,
                Activation::Linear,
                Some("in"),
                &[],
            ),
            hidden,
            layer(
                "Output",
                LayerKind::Output,
                Width::Auto,
                Activation::Sigmoid,
                Some("out"),
                &["Hidden"],
            ),
        ],
    }
}

/// Users in two groups that like two disjoint blocks of items.
fn interactions() -> Vec<Dataset> {
    let rows: Vec<Vec<(u32, f32)>> = (0..64u32)
        .map(|u| {
            let block = if u % 2 == 0 { 0 } else { 10 };
            (0..10u32)
                .filter(|i| (i + u) % 3 != 0)
                .map(|i| (block + i, 1.0))
                .collect()
        })
        .collect();
    let rows = SparseRows::from_rows(20, &rows).unwrap();
    vec![
        Dataset::new("in", Rows::Sparse(rows.clone())),
        Dataset::new("out", Rows::Sparse(rows)),
    ]
}

fn options(kind: OptimizerKind) -> TrainingOptions {
    TrainingOptions {
        batch_size: 16,
        optimizer: OptimizerSettings {
            kind,
            learning_rate: 0.05,
            l1: 0.0,
            l2: 1e-4,
        },
        seed: 5,
        shuffle: true,
        denoising: Some(0.2),
    }
}

fn new_network(data: &[Dataset]) -> Network<CpuBackend> {
    let topology = Topology::new(&autoencoder(), &dataset_shapes(data)).unwrap();
    Network::new(CpuBackend::new(), topology, 42).unwrap()
}

#[test]
fn loss_falls_and_recommendations_follow_the_groups() {
    let data = interactions();
    let mut network = new_network(&data);
    let options = options(OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
    });
    let mut losses = Vec::new();
    let bound = TrainingData::new(&network, &data).unwrap();
    for epoch in 0..40 {
        losses.push(
            train_epoch(&mut network, &bound, &options, epoch, &mut |_| {})
                .unwrap()
                .loss,
        );
    }
    assert!(losses[39] < 0.5 * losses[0], "{losses:?}");
    let Rows::Sparse(seen) = &data[0].rows else {
        unreachable!()
    };
    let top = predict_top_k(&mut network, &data[..1], None, Some(seen), 3, 7).unwrap();
    assert_eq!(top.len(), 64);
    for user in 0..64 {
        let block = if user % 2 == 0 { 0..10 } else { 10..20 };
        for (item, _) in top.row(user) {
            assert!(block.contains(&item), "user {user} got item {item}");
            assert!(
                !seen.row_indices(user).contains(&item),
                "user {user} got a seen item {item}"
            );
        }
    }
}

#[test]
fn save_load_and_resume_give_the_same_numbers() {
    let data = interactions();
    let options = options(OptimizerKind::Momentum { momentum: 0.9 });
    let mut straight = new_network(&data);
    let bound = TrainingData::new(&straight, &data).unwrap();
    for epoch in 0..3 {
        train_epoch(&mut straight, &bound, &options, epoch, &mut |_| {}).unwrap();
    }

    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("model.safetensors");
    let mut first = new_network(&data);
    train_epoch(&mut first, &bound, &options, 0, &mut |_| {}).unwrap();
    let state = TrainingState {
        epochs_done: 1,
        steps: first.steps(),
        optimizer: Some(options.optimizer),
        options: Some(options),
    };
    save_model(&path, &first, &state).unwrap();
    drop(first);
    let file = load_model(&path).unwrap();
    assert_eq!(file.training, state);
    let mut resumed = file.into_network(CpuBackend::new()).unwrap();
    for epoch in 1..3 {
        train_epoch(&mut resumed, &bound, &options, epoch, &mut |_| {}).unwrap();
    }
    assert_eq!(
        resumed.parameter_values().unwrap(),
        straight.parameter_values().unwrap()
    );
    assert_eq!(
        resumed.optimizer_state().unwrap(),
        straight.optimizer_state().unwrap()
    );
}

#[test]
fn truncated_and_foreign_model_files_are_errors() {
    let data = interactions();
    let network = new_network(&data);
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("model.safetensors");
    let state = TrainingState {
        epochs_done: 0,
        steps: 0,
        optimizer: None,
        options: None,
    };
    save_model(&path, &network, &state).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let truncated = folder.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let error = load_model(&truncated).err().unwrap().to_string();
    assert!(
        error.contains("truncated.safetensors") && error.contains("not a complete"),
        "{error}"
    );
    let foreign = folder.path().join("foreign.safetensors");
    std::fs::write(&foreign, b"hello").unwrap();
    assert!(load_model(&foreign).is_err());
    // A failed save leaves the good file alone.
    let good = std::fs::read(&path).unwrap();
    assert!(save_model(
        &folder.path().join("missing/model.safetensors"),
        &network,
        &state
    )
    .is_err());
    assert_eq!(std::fs::read(&path).unwrap(), good);
}
