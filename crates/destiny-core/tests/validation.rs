//! Whole runs judged by ranking quality on validation users: the figures `fit` reports are
//! those of the network's own top-K, the model file keeps the best epoch, the patience
//! stops the run, and a killed run resumes exactly.

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::OptimizerKind;
use destiny_core::config::parse_network;
use destiny_core::data::{Dataset, Rows, SparseRows};
use destiny_core::model::{dataset_shapes, Network, OptimizerSettings, Topology};
use destiny_core::model_file::load_model;
use destiny_core::predict::predict_top_k;
use destiny_core::ranking::evaluate;
use destiny_core::run::{CheckpointEvery, FitOptions, NonFinite, TrainingOptions};
use destiny_core::train::{
    fit, latest_checkpoint, EpochReport, FitObserver, FitSummary, TrainingData,
};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

const DEFINITION: &str = r#"{
    "Version": 0.8, "Name": "validated", "Kind": "FeedForward",
    "ErrorFunction": "CrossEntropy", "ShuffleIndices": true,
    "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "in", "Sparse": true },
        { "Name": "Hidden", "Kind": "Hidden", "Type": "FullyConnected", "N": 8, "Activation": "Tanh" },
        { "Name": "Output", "Kind": "Output", "Type": "FullyConnected", "N": "auto", "DataSet": "out", "Activation": "SoftMax", "Sparse": true }
    ]
}"#;

/// Users of three tastes (blocks of 10 of 30 items); user `u` has the items of its block
/// for which `(item * 7 + u) % 5` is below `keep`, split by `target` into two sets.
fn users(
    count: u32,
    offset: u32,
    keep: u32,
    target: impl Fn(u32) -> bool,
) -> (SparseRows, SparseRows) {
    let mut fold_in = Vec::new();
    let mut held_out = Vec::new();
    for u in offset..offset + count {
        let block = (u % 3) * 10;
        let items: Vec<u32> = (0..10).filter(|i| (i * 7 + u) % 5 < keep).collect();
        let pick = |want: bool| -> Vec<(u32, f32)> {
            items
                .iter()
                .filter(|&&i| target(i) == want)
                .map(|&i| (block + i, 1.0))
                .collect()
        };
        fold_in.push(pick(false));
        held_out.push(pick(true));
    }
    (
        SparseRows::from_rows(30, &fold_in).unwrap(),
        SparseRows::from_rows(30, &held_out).unwrap(),
    )
}

fn training_data() -> Vec<Dataset> {
    let (rows, _) = users(90, 0, 4, |_| false);
    vec![
        Dataset::new("in", Rows::Sparse(rows.clone())),
        Dataset::new("out", Rows::Sparse(rows)),
    ]
}

/// Validation users (other users than the training ones): fold-in as "in", held-out items
/// as "out".
fn validation_data() -> Vec<Dataset> {
    let (fold_in, held_out) = users(12, 500, 4, |i| i % 3 == 0);
    vec![
        Dataset::new("in", Rows::Sparse(fold_in)),
        Dataset::new("out", Rows::Sparse(held_out)),
    ]
}

fn new_network(data: &[Dataset], seed: u64) -> Network<CpuBackend> {
    let definition = parse_network(DEFINITION, "test").unwrap();
    let topology = Topology::new(&definition, &dataset_shapes(data)).unwrap();
    Network::new(CpuBackend::new(), topology, seed).unwrap()
}

fn options(epochs: usize, checkpoint: &Path, resume: bool, patience: usize) -> FitOptions {
    FitOptions {
        training: TrainingOptions {
            batch_size: 16,
            optimizer: OptimizerSettings {
                kind: OptimizerKind::Adam {
                    beta1: 0.9,
                    beta2: 0.999,
                    epsilon: 1e-8,
                },
                learning_rate: 0.03,
                l1: 0.0,
                l2: 0.0,
            },
            seed: 3,
            shuffle: true,
            denoising: Some(0.3),
            on_nonfinite: NonFinite::Stop,
        },
        epochs,
        checkpoint_every: CheckpointEvery::Epochs(1),
        checkpoint: Some(checkpoint.to_path_buf()),
        resume,
        // A fresh run replaces what an earlier test run left.
        overwrite: !resume,
        patience: Some(patience),
    }
}

/// Records the reports, and copies the run's files away after epoch `copy_after` (as a
/// run killed then would leave them).
#[derive(Default)]
struct Watcher {
    reports: Vec<EpochReport>,
    copy_after: Option<(usize, PathBuf, PathBuf)>,
}

impl FitObserver for Watcher {
    fn epoch_end(&mut self, report: &EpochReport) -> ControlFlow<()> {
        self.reports.push(*report);
        if let Some((epoch, model, copy)) = &self.copy_after {
            if *epoch == report.summary.epoch {
                for (from, to) in [
                    (model.clone(), copy.clone()),
                    (latest_checkpoint(model), latest_checkpoint(copy)),
                ] {
                    if from.exists() {
                        std::fs::copy(from, to).unwrap();
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

fn validated_fit(
    network: &mut Network<CpuBackend>,
    validation: &[Dataset],
    data: &[Dataset],
    options: &FitOptions,
    watcher: &mut Watcher,
) -> FitSummary {
    let bound = TrainingData::new(network, data)
        .unwrap()
        .with_ranking_validation(network, validation)
        .unwrap();
    fit(network, &bound, options, watcher).unwrap()
}

#[test]
fn the_best_epoch_is_kept_and_the_patience_stops_the_run() {
    let (data, validation) = (training_data(), validation_data());
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("model.safetensors");
    let mut network = new_network(&data, 7);
    let mut watcher = Watcher::default();
    let run = validated_fit(
        &mut network,
        &validation,
        &data,
        &options(60, &path, false, 3),
        &mut watcher,
    );
    let figures: Vec<_> = run.epochs.iter().map(|e| e.validation.unwrap()).collect();
    let best = run.best.unwrap();
    // The patience ran out: the last 3 epochs were no better than the best, all before were.
    assert!(run.stopped_early, "{figures:?}");
    assert_eq!(figures.last().unwrap().epoch, best.epoch + 3);
    assert!(figures.iter().all(|f| f.ndcg_at_100 <= best.ndcg_at_100));
    assert!(figures[..best.epoch]
        .iter()
        .all(|f| f.ndcg_at_100 < best.ndcg_at_100));
    let marked: Vec<usize> = run
        .epochs
        .iter()
        .filter(|e| e.best)
        .map(|e| e.summary.epoch)
        .collect();
    assert_eq!(marked.last(), Some(&best.epoch));
    // The network learned the tastes: far better than the first epoch.
    assert!(
        best.ndcg_at_100 > figures[0].ndcg_at_100 + 0.1,
        "{figures:?}"
    );

    // The figures are the ranking metrics of the network's own top 100, fold-in left out;
    // the network and the model file hold the best epoch, with every epoch's figures.
    let Rows::Sparse(fold_in) = &validation[0].rows else {
        unreachable!()
    };
    let Rows::Sparse(held_out) = &validation[1].rows else {
        unreachable!()
    };
    let top = predict_top_k(&mut network, &validation, None, Some(fold_in), 100, 5).unwrap();
    let ranked: Vec<Vec<u32>> = (0..top.len())
        .map(|r| top.row(r).map(|(c, _)| c).collect())
        .collect();
    let relevant: Vec<Vec<u32>> = (0..held_out.len())
        .map(|r| held_out.row_indices(r).to_vec())
        .collect();
    let metrics = evaluate(&ranked, &relevant, &[20, 100]);
    assert_eq!(
        (metrics[0].recall, metrics[1].ndcg),
        (best.recall_at_20, best.ndcg_at_100)
    );
    let file = load_model(&path).unwrap();
    assert_eq!(file.parameters, network.parameter_values().unwrap());
    assert_eq!(file.training.epochs_done, best.epoch + 1);
    assert_eq!(file.training.validation, figures);
    assert_eq!(file.training.best_validation(), Some(&best));
    assert!(!latest_checkpoint(&path).exists());

    // Resuming the finished run trains nothing and keeps the best.
    let mut again = new_network(&data, 99);
    let rerun = validated_fit(
        &mut again,
        &validation,
        &data,
        &options(60, &path, true, 3),
        &mut Watcher::default(),
    );
    assert!(rerun.epochs.is_empty());
    assert_eq!(rerun.best, Some(best));
    assert_eq!(
        again.parameter_values().unwrap(),
        network.parameter_values().unwrap()
    );
}

#[test]
fn a_killed_validated_run_resumes_exactly() {
    let (data, validation) = (training_data(), validation_data());
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("model.safetensors");
    let killed = folder.path().join("killed.safetensors");
    let mut straight = new_network(&data, 7);
    let mut watcher = Watcher::default();
    let run = validated_fit(
        &mut straight,
        &validation,
        &data,
        &options(60, &path, false, 3),
        &mut watcher,
    );
    // Killed after an epoch that was not the best: the model file holds an earlier epoch,
    // the latest checkpoint this one.
    let kill = run
        .epochs
        .iter()
        .find(|e| !e.best)
        .expect("an epoch that did not improve")
        .summary
        .epoch;
    let mut watcher = Watcher {
        copy_after: Some((kill, path.clone(), killed.clone())),
        ..Watcher::default()
    };
    validated_fit(
        &mut new_network(&data, 7),
        &validation,
        &data,
        &options(60, &path, false, 3),
        &mut watcher,
    );
    // Checkpoints are written in the background: what a kill leaves is the epoch's or an
    // earlier one's, and the run resumes from the newest of them.
    assert!(load_model(&killed).unwrap().training.epochs_done < kill + 1);
    let resumed_from = [killed.clone(), latest_checkpoint(&killed)]
        .iter()
        .filter(|file| file.exists())
        .map(|file| load_model(file).unwrap().training.epochs_done)
        .max()
        .unwrap();
    assert!((1..=kill + 1).contains(&resumed_from));

    let mut resumed = new_network(&data, 99);
    let mut watcher = Watcher::default();
    let rerun = validated_fit(
        &mut resumed,
        &validation,
        &data,
        &options(60, &killed, true, 3),
        &mut watcher,
    );
    assert_eq!(rerun.first_epoch, resumed_from);
    assert_eq!(rerun.best, run.best);
    let figures = |reports: &[EpochReport]| -> Vec<_> {
        reports
            .iter()
            .map(|e| (e.summary.loss, e.validation, e.best))
            .collect()
    };
    assert_eq!(figures(&rerun.epochs), figures(&run.epochs[resumed_from..]));
    assert_eq!(
        resumed.parameter_values().unwrap(),
        straight.parameter_values().unwrap()
    );
    let (a, b) = (load_model(&path).unwrap(), load_model(&killed).unwrap());
    assert_eq!(a.training, b.training);
    assert_eq!(a.parameters, b.parameters);
    assert_eq!(a.optimizer_state, b.optimizer_state);
}

#[test]
fn validation_options_that_cannot_work_are_clear_errors() {
    let (data, validation) = (training_data(), validation_data());
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("model.safetensors");
    let mut network = new_network(&data, 7);
    let plain = TrainingData::new(&network, &data).unwrap();
    let error = fit(&mut network, &plain, &options(2, &path, false, 2), &mut ()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "options: a patience needs validation users to judge the epochs by"
    );
    let bound = TrainingData::new(&network, &data)
        .unwrap()
        .with_ranking_validation(&network, &validation)
        .unwrap();
    let error = fit(&mut network, &bound, &options(2, &path, false, 0), &mut ()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "options: the patience must be at least 1 epoch"
    );
    let mut no_file = options(2, &path, false, 2);
    no_file.checkpoint = None;
    let error = fit(&mut network, &bound, &no_file, &mut ()).unwrap_err();
    assert!(error.to_string().contains("needs a model file"), "{error}");
    assert_eq!(network.steps(), 0, "nothing was trained");
    // Validation users without held-out items for the output layer.
    let error = TrainingData::new(&network, &data)
        .unwrap()
        .with_ranking_validation(&network, &validation[..1])
        .err()
        .unwrap();
    assert!(error.to_string().contains("'out'"), "{error}");
}
