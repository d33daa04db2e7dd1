//! Every network definition in DSSTNE's own repository (copied unchanged into
//! `tests/dsstne-definitions/`): each loads and trains on generated data of the shape it asks
//! for.

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::OptimizerKind;
use destiny_core::config::*;
use destiny_core::data::{Dataset, DenseRows, Rows, SparseRows};
use destiny_core::model::{dataset_shapes, Network, OptimizerSettings, Topology};
use destiny_core::run::{NonFinite, TrainingOptions};
use destiny_core::train::{train_epoch, TrainingData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Width given to a layer whose `N` is `auto` (the dataset decides).
const AUTO_WIDTH: usize = 24;

/// The images given to a convolutional network's input: small, so that the test stays quick,
/// and smaller than some of the CIFAR-10 network's windows, which then pad.
const IMAGE: [usize; 3] = [8, 8, 3];

#[test]
fn every_dsstne_definition_loads_and_trains() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dsstne-definitions");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 19, "DSSTNE's repository holds 19 definitions");
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let definition = parse_network_file(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let losses = train_two_epochs(&definition).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(losses.iter().all(|l| l.is_finite()), "{name}: {losses:?}");
    }
}

/// Two epochs on 40 generated samples for each dataset the definition names (ones and
/// zeros, sparse or dense as its layers ask), with SGD; the epochs' losses.
fn train_two_epochs(definition: &NetworkDefinition) -> destiny_core::Result<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut datasets: Vec<Dataset> = Vec::new();
    for layer in definition
        .layers
        .iter()
        .filter(|l| l.kind != LayerKind::Hidden)
    {
        let Some(name) = &layer.dataset else { continue };
        if datasets.iter().any(|d| &d.name == name) {
            continue;
        }
        let spatial = |l: &LayerDefinition| l.layer_type != LayerType::FullyConnected;
        let image = layer.kind == LayerKind::Input && definition.layers.iter().any(spatial);
        let width = match layer.width {
            Width::Fixed(n) => n,
            Width::Auto if image => IMAGE.iter().product(),
            Width::Auto => AUTO_WIDTH,
        };
        let mut dataset = Dataset::new(
            name.as_str(),
            ones_and_zeros(&mut rng, 40, width, layer.sparse),
        );
        if image {
            dataset = dataset.with_dimensions(IMAGE.to_vec())?;
        }
        datasets.push(dataset);
    }
    let topology = Topology::new(definition, &dataset_shapes(&datasets))?;
    let mut network = Network::new(CpuBackend::new(), topology, 3)?;
    let options = TrainingOptions {
        batch_size: 16,
        optimizer: OptimizerSettings {
            kind: OptimizerKind::Sgd,
            learning_rate: 0.01,
            l1: 0.0,
            l2: 0.0,
        },
        seed: 2,
        shuffle: true,
        denoising: definition.denoising,
        on_nonfinite: NonFinite::Stop,
    };
    let data = TrainingData::new(&network, &datasets)?;
    (0..2)
        .map(|epoch| Ok(train_epoch(&mut network, &data, &options, epoch, &mut |_| {})?.loss))
        .collect()
}

/// `samples` rows of `width` columns, each column one with probability 0.3 (at least one per
/// sparse row), sparse or dense.
fn ones_and_zeros(rng: &mut ChaCha8Rng, samples: usize, width: usize, sparse: bool) -> Rows {
    let mut chosen: Vec<Vec<u32>> = (0..samples)
        .map(|_| (0..width as u32).filter(|_| rng.random_bool(0.3)).collect())
        .collect();
    for row in chosen.iter_mut().filter(|row| row.is_empty()) {
        row.push(rng.random_range(0..width as u32));
    }
    if sparse {
        let mut offsets = vec![0];
        offsets.extend(chosen.iter().scan(0, |end, row| {
            *end += row.len();
            Some(*end)
        }));
        let indices = chosen.concat();
        return Rows::Sparse(SparseRows::new(width, offsets, indices, None).expect("valid rows"));
    }
    let mut data = vec![0.0; samples * width];
    for (r, row) in chosen.iter().enumerate() {
        row.iter().for_each(|&c| data[r * width + c as usize] = 1.0);
    }
    Rows::Dense(DenseRows::new(width, data).expect("valid rows"))
}
