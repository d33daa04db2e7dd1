//! DSSTNE's MovieLens autoencoder on real data (MovieLens-100K): the definition loads, the
//! loss falls over epochs, and the recommendations beat the most-popular baseline.
//!
//! The data comes from the `recbole` wheel; `scripts/test.sh` fetches it to
//! `work-data/movielens/ml-100k.inter` (or set `DESTINY_ML100K`) and sets
//! `DESTINY_REQUIRE_DATA=1`, under which a missing file fails the test.

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::OptimizerKind;
use destiny_core::config::parse_network_file;
use destiny_core::data::{Dataset, Rows};
use destiny_core::model::{dataset_shapes, Network, OptimizerSettings, Topology};
use destiny_core::predict::predict_top_k;
use destiny_core::run::{NonFinite, TrainingOptions};
use destiny_core::train::{train_epoch, TrainingData};
use destiny_data::clean::CleanOptions;
use destiny_data::convert::{convert, ConvertOptions};
use destiny_data::read::ReadOptions;
use destiny_data::split::Split;
use destiny_eval::baselines::most_popular;
use std::path::PathBuf;

fn data_file() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = std::env::var_os("DESTINY_ML100K")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("work-data/movielens/ml-100k.inter"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("DESTINY_REQUIRE_DATA").is_none(),
        "MovieLens-100K is required but {} does not exist",
        path.display()
    );
    eprintln!(
        "skipping: {} does not exist (run scripts/test.sh)",
        path.display()
    );
    None
}

#[test]
fn the_autoencoder_learns_movielens() {
    let Some(path) = data_file() else { return };
    let options = ConvertOptions {
        read: ReadOptions::default(),
        clean: CleanOptions {
            min_rating: Some(4.0),
            min_user_interactions: 5,
            ..CleanOptions::default()
        },
        split: Split::HeldOutUsers {
            test_users: 150,
            validation_users: 0,
            holdout_fraction: 0.2,
        },
        seed: 7,
        features: None,
        drop_unknown_items: false,
    };
    let conversion = convert(&path, &options).unwrap();
    let rows = |name: &str| {
        conversion
            .sparse_rows(conversion.sets.iter().find(|s| s.name == name).unwrap())
            .unwrap()
    };
    let (train, test_input, test_target) = (rows("train"), rows("test_input"), rows("test_target"));
    assert!(
        train.len() > 700 && train.width() > 1000,
        "{} x {}",
        train.len(),
        train.width()
    );

    let config =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/movielens/config.json");
    let definition = parse_network_file(&config).unwrap();
    let datasets = vec![
        Dataset::new("gl_input", Rows::Sparse(train.clone())),
        Dataset::new("gl_output", Rows::Sparse(train.clone())),
    ];
    let topology = Topology::new(&definition, &dataset_shapes(&datasets)).unwrap();
    let mut network = Network::new(CpuBackend::new(), topology, 7).unwrap();
    let training = TrainingOptions {
        batch_size: 256,
        optimizer: OptimizerSettings {
            kind: OptimizerKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
            },
            learning_rate: 0.01,
            l1: 0.0,
            l2: 0.0,
        },
        seed: 7,
        shuffle: true,
        denoising: definition.denoising,
        on_nonfinite: NonFinite::Stop,
    };
    let data = TrainingData::new(&network, &datasets).unwrap();
    let losses: Vec<f64> = (0..30)
        .map(|epoch| {
            train_epoch(&mut network, &data, &training, epoch, &mut |_| {})
                .unwrap()
                .loss
        })
        .collect();
    assert!(
        losses[29] < 0.5 * losses[0],
        "the loss did not fall: {losses:?}"
    );
    assert!(losses[29] < losses[10], "{losses:?}");

    // Recall@20 on the held-out users, against the most popular items.
    let recall = |top: &destiny_core::predict::TopK| {
        let ranked: Vec<Vec<u32>> = (0..test_input.len())
            .map(|u| top.row(u).map(|(c, _)| c).collect())
            .collect();
        let relevant: Vec<Vec<u32>> = (0..test_target.len())
            .map(|u| test_target.row_indices(u).to_vec())
            .collect();
        destiny_eval::evaluate(&ranked, &relevant, &[20])[0].recall
    };
    let inputs = vec![Dataset::new("gl_input", Rows::Sparse(test_input.clone()))];
    let model = predict_top_k(&mut network, &inputs, None, Some(&test_input), 20, 256).unwrap();
    let popular = most_popular(&train, &test_input, 20).unwrap();
    let (model, popular) = (recall(&model), recall(&popular));
    assert!(
        model > popular * 1.5,
        "autoencoder recall@20 {model} against most-popular {popular}"
    );
}

/// DSSTNE's own MovieLens sample, its steps and flags unchanged (`examples/dsstne-sample`):
/// every user gets ten recommendations, none of them an item the user rated.
#[test]
fn dsstne_s_movielens_sample_runs_unchanged() {
    let Some(path) = data_file() else { return };
    let folder = tempfile::tempdir().unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/dsstne-sample/run.sh");
    let output = std::process::Command::new("bash")
        .arg(script)
        .arg(&path)
        .arg(folder.path())
        .env("DESTINY", env!("CARGO_BIN_EXE_destiny"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ratings = std::fs::read_to_string(folder.path().join("ratings")).unwrap();
    let recs = std::fs::read_to_string(folder.path().join("recs")).unwrap();
    let seen: std::collections::HashMap<&str, Vec<&str>> = ratings
        .lines()
        .map(|line| {
            let (user, items) = line.split_once('\t').unwrap();
            (
                user,
                items
                    .split(':')
                    .map(|i| i.split(',').next().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 943, "MovieLens-100K has 943 users");
    assert_eq!(recs.lines().count(), seen.len());
    for line in recs.lines() {
        let (user, list) = line.split_once('\t').unwrap();
        let items: Vec<&str> = list
            .split(':')
            .map(|i| i.split(',').next().unwrap())
            .collect();
        assert_eq!(items.len(), 10, "{line}");
        assert!(
            items.iter().all(|i| !seen[user].contains(i)),
            "a rated item recommended: {line}"
        );
    }
}
