//! Every network definition in DSSTNE's own repository (copied unchanged into
//! `tests/dsstne-definitions/`): each loads and trains on generated data of the shape it asks
//! for, or is refused with an error that names what Destiny does not support yet.

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

/// The definitions that ask for what Destiny lacks, and the word their error names.
const NOT_YET: [(&str, &str); 2] = [
    (
        "python__images__config.json",
        "'LocalResponseNormalization'",
    ),
    (
        "samples__cifar-10__config.json",
        "'LocalResponseNormalization'",
    ),
];

/// Width given to a layer whose `N` is `auto` (the dataset decides).
const AUTO_WIDTH: usize = 24;

#[test]
fn every_dsstne_definition_loads_and_trains_or_names_what_is_missing() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dsstne-definitions");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 19, "DSSTNE's repository holds 19 definitions");
    let mut trained = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = parse_network_file(file);
        match NOT_YET.iter().find(|(n, _)| *n == name) {
            Some((_, missing)) => {
                let error = parsed.expect_err(&name).to_string();
                assert!(error.contains(missing), "{name}: {error}");
            }
            None => {
                let definition = parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
                let losses =
                    train_two_epochs(&definition).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(losses.iter().all(|l| l.is_finite()), "{name}: {losses:?}");
                trained.push(name);
            }
        }
    }
    assert_eq!(trained.len(), 17, "{trained:?}");
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
        let width = match layer.width {
            Width::Fixed(n) => n,
            Width::Auto => AUTO_WIDTH,
        };
        let rows = ones_and_zeros(&mut rng, 40, width, layer.sparse);
        datasets.push(Dataset::new(name.as_str(), rows));
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
