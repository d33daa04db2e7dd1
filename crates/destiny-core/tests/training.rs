//! Training, saving, resuming and predicting through the public API on the CPU backend, and
//! whole runs through `fit`.

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::OptimizerKind;
use destiny_core::config::*;
use destiny_core::data::{Dataset, Rows, SparseRows};
use destiny_core::model::{dataset_shapes, Network, OptimizerSettings, Topology};
use destiny_core::model_file::{load_model, save_model};
use destiny_core::predict::predict_top_k;
use destiny_core::run::{CheckpointEvery, FitOptions, NonFinite, TrainingOptions, TrainingState};
use destiny_core::train::{
    fit, train_epoch, EpochReport, FitObserver, FitStart, FitSummary, Progress, TrainingData,
};
use std::ops::ControlFlow;
use std::path::Path;

fn layer(
    name: &str,
    kind: LayerKind,
    width: Width,
    activation: Activation,
    dataset: Option<&str>,
    sources: &[&str],
) -> LayerDefinition {
    LayerDefinition {
        dataset: dataset.map(String::from),
        sparse: kind != LayerKind::Hidden,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        activation,
        ..LayerDefinition::new(name, kind, width)
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
        delta_boost: DeltaBoost::default(),
        local_response: LocalResponse::DSSTNE,
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
        on_nonfinite: NonFinite::Stop,
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
        validation: Vec::new(),
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
        validation: Vec::new(),
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

/// Records what a `fit` run tells its observer, and stops the run after `stop_after` epochs.
#[derive(Default)]
struct Recorder {
    starts: Vec<FitStart>,
    epochs_started: Vec<usize>,
    progress: usize,
    reports: Vec<EpochReport>,
    stop_after: Option<usize>,
}

impl FitObserver for Recorder {
    fn started(&mut self, start: &FitStart) {
        self.starts.push(start.clone());
    }

    fn epoch_started(&mut self, epoch: usize) {
        self.epochs_started.push(epoch);
    }

    fn progress(&mut self, _: &Progress) {
        self.progress += 1;
    }

    fn epoch_end(&mut self, report: &EpochReport) -> ControlFlow<()> {
        self.reports.push(*report);
        if Some(self.reports.len()) == self.stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// Runs `fit` with a [`Recorder`] that stops it after `stop_after` epochs.
fn recorded_fit(
    network: &mut Network<CpuBackend>,
    data: &TrainingData<'_, CpuBackend>,
    options: &FitOptions,
    stop_after: Option<usize>,
) -> (FitSummary, Recorder) {
    let mut recorder = Recorder {
        stop_after,
        ..Recorder::default()
    };
    let run = fit(network, data, options, &mut recorder).unwrap();
    (run, recorder)
}

fn fit_options(epochs: usize, checkpoint: &Path, resume: bool) -> FitOptions {
    FitOptions {
        training: options(OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }),
        epochs,
        checkpoint: Some(checkpoint.to_path_buf()),
        checkpoint_every: CheckpointEvery::Epochs(1),
        resume,
        overwrite: false,
        patience: None,
    }
}

#[test]
fn fit_resumes_a_killed_run_exactly() {
    let data = interactions();
    let folder = tempfile::tempdir().unwrap();
    let straight_file = folder.path().join("straight.safetensors");
    let mut straight = new_network(&data);
    let bound = TrainingData::new(&straight, &data).unwrap();
    let (run, recorder) = recorded_fit(
        &mut straight,
        &bound,
        &fit_options(4, &straight_file, false),
        None,
    );
    assert_eq!((run.first_epoch, run.epochs_done()), (0, 4));
    assert!(!run.stopped_early);
    assert_eq!(recorder.epochs_started, [0, 1, 2, 3]);
    assert_eq!(recorder.reports.len(), 4);
    // 64 samples in batches of 16 read the loss back once per epoch.
    assert_eq!(recorder.progress, 4);
    assert_eq!(run.epochs, recorder.reports);
    assert!(run.epochs.iter().all(|e| e.validation_loss.is_none()));

    // Killed after epoch 1: the checkpoint holds one epoch; resuming on a network with
    // other weights trains the three missing epochs to the same numbers.
    let killed = folder.path().join("killed.safetensors");
    let mut first = new_network(&data);
    fit(&mut first, &bound, &fit_options(1, &killed, false), &mut ()).unwrap();
    let topology = Topology::new(&autoencoder(), &dataset_shapes(&data)).unwrap();
    let mut resumed = Network::new(CpuBackend::new(), topology, 99).unwrap();
    let (run, recorder) = recorded_fit(&mut resumed, &bound, &fit_options(4, &killed, true), None);
    assert_eq!((run.first_epoch, run.epochs.len()), (1, 3));
    let start = &recorder.starts[0];
    assert_eq!((start.first_epoch, start.epochs), (1, 4));
    assert_eq!(start.resumed.as_ref().unwrap().epochs_done, 1);
    assert_eq!(recorder.epochs_started, [1, 2, 3]);
    assert_eq!(
        resumed.parameter_values().unwrap(),
        straight.parameter_values().unwrap()
    );
    assert_eq!(
        resumed.optimizer_state().unwrap(),
        straight.optimizer_state().unwrap()
    );
    // Both checkpoints hold the finished run.
    let (a, b) = (
        load_model(&straight_file).unwrap(),
        load_model(&killed).unwrap(),
    );
    assert_eq!(a.training, b.training);
    assert_eq!(a.training.epochs_done, 4);
    assert_eq!(a.training.steps, straight.steps());
    assert_eq!(a.parameters, b.parameters);

    // Resuming a finished run trains nothing.
    let run = fit(
        &mut resumed,
        &bound,
        &fit_options(4, &killed, true),
        &mut (),
    )
    .unwrap();
    assert_eq!((run.first_epoch, run.epochs.len()), (4, 0));
}

#[test]
fn fit_reports_validation_and_stops_when_asked() {
    let data = interactions();
    let validation = interactions();
    let folder = tempfile::tempdir().unwrap();
    let checkpoint = folder.path().join("model.safetensors");
    let mut network = new_network(&data);
    let bound = TrainingData::new(&network, &data)
        .unwrap()
        .with_validation(&network, &validation)
        .unwrap();
    let (run, recorder) = recorded_fit(
        &mut network,
        &bound,
        &fit_options(10, &checkpoint, false),
        Some(3),
    );
    assert!(recorder.starts[0].resumed.is_none());
    assert!(run.stopped_early);
    assert_eq!(run.epochs.len(), 3);
    assert_eq!(load_model(&checkpoint).unwrap().training.epochs_done, 3);
    let losses: Vec<f64> = run
        .epochs
        .iter()
        .map(|e| e.validation_loss.unwrap())
        .collect();
    assert!(losses[2] < losses[0], "{losses:?}");
    // Stopping at the last epoch is not stopping early.
    let (run, _) = recorded_fit(
        &mut network,
        &bound,
        &fit_options(4, &checkpoint, true),
        Some(1),
    );
    assert_eq!((run.first_epoch, run.epochs.len()), (3, 1));
    assert!(!run.stopped_early);
    // Validation datasets that do not fit the network fail before any training.
    let narrow = vec![Dataset::new(
        "in",
        Rows::Sparse(SparseRows::from_rows(5, &[vec![(1, 1.0)]]).unwrap()),
    )];
    let error = TrainingData::new(&network, &data)
        .unwrap()
        .with_validation(&network, &narrow)
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "dimension mismatch: layer 'Input' has 20 units but dataset 'in' is 5 wide"
    );
}

#[test]
fn bad_run_options_are_clear_errors() {
    let data = interactions();
    let folder = tempfile::tempdir().unwrap();
    let checkpoint = folder.path().join("model.safetensors");
    let mut network = new_network(&data);
    let bound = TrainingData::new(&network, &data).unwrap();
    let mut options = fit_options(1, &checkpoint, false);
    options.training.batch_size = 0;
    let error = fit(&mut network, &bound, &options, &mut ()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "options: the batch size must be at least 1"
    );
    options.training.batch_size = 16;
    options.training.denoising = Some(1.0);
    let error = fit(&mut network, &bound, &options, &mut ()).unwrap_err();
    assert!(error.to_string().contains("denoising"), "{error}");
    options.training.denoising = None;
    for (learning_rate, shown) in [(f32::NAN, "NaN"), (-1.0, "-1"), (f32::INFINITY, "inf")] {
        options.training.optimizer.learning_rate = learning_rate;
        let error = fit(&mut network, &bound, &options, &mut ()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("options: the learning rate must be a finite number above 0, not {shown}")
        );
    }
    options.training.optimizer.learning_rate = 0.05;
    options.epochs = 0;
    let error = fit(&mut network, &bound, &options, &mut ()).unwrap_err();
    assert!(error.to_string().contains("epochs"), "{error}");
    options.epochs = 1;
    options.checkpoint = None;
    options.resume = true;
    let error = fit(&mut network, &bound, &options, &mut ()).unwrap_err();
    assert!(error.to_string().contains("checkpoint"), "{error}");
    // Resuming a model file that is not there is an error, not a fresh start.
    let error = fit(
        &mut network,
        &bound,
        &fit_options(1, &checkpoint, true),
        &mut (),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "options: there is no model file {} to resume",
            checkpoint.display()
        )
    );
    assert_eq!(network.steps(), 0, "nothing was trained");
    assert!(!checkpoint.exists());

    fit(
        &mut network,
        &bound,
        &fit_options(2, &checkpoint, false),
        &mut (),
    )
    .unwrap();
    let trained = std::fs::read(&checkpoint).unwrap();
    // A trained model is not replaced without being told to.
    let error = fit(
        &mut network,
        &bound,
        &fit_options(1, &checkpoint, false),
        &mut (),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("already exists") && error.contains("--overwrite"),
        "{error}"
    );
    assert_eq!(std::fs::read(&checkpoint).unwrap(), trained);
    // Resuming to fewer epochs than done says so.
    let error = fit(
        &mut network,
        &bound,
        &fit_options(1, &checkpoint, true),
        &mut (),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("has trained 2 epochs already, more than the 1 asked for"),
        "{error}"
    );
    // A model file in use by another run is not touched.
    let lock = destiny_core::lock::FileLock::acquire(&checkpoint).unwrap();
    let mut overwrite = fit_options(3, &checkpoint, false);
    overwrite.overwrite = true;
    let error = fit(&mut network, &bound, &overwrite, &mut ()).unwrap_err();
    assert!(error.to_string().contains("in use"), "{error}");
    drop(lock);
    assert_eq!(std::fs::read(&checkpoint).unwrap(), trained);
    let run = fit(&mut network, &bound, &overwrite, &mut ()).unwrap();
    assert_eq!((run.first_epoch, run.epochs_done()), (0, 3));

    // A checkpoint of another network is not resumed, and the message says what differs.
    let mut wider = autoencoder();
    wider.layers[1].width = Width::Fixed(9);
    let topology = Topology::new(&wider, &dataset_shapes(&data)).unwrap();
    let mut other = Network::new(CpuBackend::new(), topology, 1).unwrap();
    let error = fit(
        &mut other,
        &bound,
        &fit_options(4, &checkpoint, true),
        &mut (),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("model.safetensors")
            && error.contains("layer 'Hidden' is 8 units wide in the model but 9 now"),
        "{error}"
    );
    // Datasets of another width are named as such.
    let wide_data: Vec<Dataset> = ["in", "out"]
        .into_iter()
        .map(|name| {
            let rows = SparseRows::from_rows(21, &[vec![(1, 1.0)]]).unwrap();
            Dataset::new(name, Rows::Sparse(rows))
        })
        .collect();
    let topology = Topology::new(&autoencoder(), &dataset_shapes(&wide_data)).unwrap();
    let mut other = Network::new(CpuBackend::new(), topology, 1).unwrap();
    let wide_bound = TrainingData::new(&other, &wide_data).unwrap();
    let error = fit(
        &mut other,
        &wide_bound,
        &fit_options(4, &checkpoint, true),
        &mut (),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(
            "layer 'Input' is 20 units wide in the model but 21 now (its dataset 'in' is 21 wide)"
        ),
        "{error}"
    );
}

#[test]
fn a_diverging_run_stops_naming_the_batch_and_tensor_and_keeps_the_last_checkpoint() {
    let data = interactions();
    let folder = tempfile::tempdir().unwrap();
    let checkpoint = folder.path().join("model.safetensors");
    let mut network = new_network(&data);
    let bound = TrainingData::new(&network, &data).unwrap();
    fit(
        &mut network,
        &bound,
        &fit_options(1, &checkpoint, false),
        &mut (),
    )
    .unwrap();
    let good = std::fs::read(&checkpoint).unwrap();
    let mut diverging = fit_options(3, &checkpoint, true);
    diverging.training.optimizer.kind = OptimizerKind::Sgd;
    diverging.training.optimizer.learning_rate = 1e38;
    let error = fit(&mut network, &bound, &diverging, &mut ())
        .unwrap_err()
        .to_string();
    // The weights overflow in epoch 2: either the loss turns NaN (read back after the 4th
    // batch of 16 of 64 samples) or the checkpoint of the epoch refuses them.
    assert!(
        error.contains("in epoch 2, batches 1 to 4 of 4 (samples 1 to 64); tensor '")
            || error.starts_with("numerics: tensor '"),
        "{error}"
    );
    assert!(error.contains("holds NaN or infinite values"), "{error}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), good);
}

/// Records, as each epoch ends, whether the checkpoint file exists yet.
struct CheckpointSeen<'a> {
    path: &'a Path,
    seen: Vec<bool>,
}

impl FitObserver for CheckpointSeen<'_> {
    fn epoch_end(&mut self, _: &EpochReport) -> ControlFlow<()> {
        self.seen.push(self.path.exists());
        ControlFlow::Continue(())
    }
}

#[test]
fn checkpoints_are_written_every_few_epochs_and_after_the_last() {
    let data = interactions();
    let folder = tempfile::tempdir().unwrap();
    let checkpoint = folder.path().join("model.safetensors");
    let mut network = new_network(&data);
    let bound = TrainingData::new(&network, &data).unwrap();
    let options = FitOptions {
        checkpoint_every: CheckpointEvery::Epochs(3),
        ..fit_options(4, &checkpoint, false)
    };
    let mut observer = CheckpointSeen {
        path: &checkpoint,
        seen: Vec::new(),
    };
    fit(&mut network, &bound, &options, &mut observer).unwrap();
    // Nothing is written before the third epoch; the last epoch's is on disk at the end.
    assert_eq!(observer.seen[..2], [false, false]);
    let file = load_model(&checkpoint).unwrap();
    assert_eq!(file.training.epochs_done, 4);
    assert_eq!(file.parameters, network.parameter_values().unwrap());
    let never = FitOptions {
        checkpoint_every: CheckpointEvery::Epochs(0),
        ..options
    };
    let error = fit(&mut network, &bound, &never, &mut ()).unwrap_err();
    assert!(error.to_string().contains("every 0 epochs"), "{error}");
}

#[test]
fn checkpoints_can_be_due_by_the_minutes() {
    let data = interactions();
    let folder = tempfile::tempdir().unwrap();
    // Every epoch ends more than a microsecond after the last checkpoint; none ends a day
    // after it, so only the last epoch's is written.
    for (minutes, expected) in [(1e-8, [true; 2]), (1440.0, [false; 2])] {
        let checkpoint = folder.path().join(format!("{minutes}.safetensors"));
        let mut network = new_network(&data);
        let bound = TrainingData::new(&network, &data).unwrap();
        let options = FitOptions {
            checkpoint_every: CheckpointEvery::Minutes(minutes),
            ..fit_options(4, &checkpoint, false)
        };
        let mut observer = CheckpointSeen {
            path: &checkpoint,
            seen: Vec::new(),
        };
        fit(&mut network, &bound, &options, &mut observer).unwrap();
        // A checkpoint is on disk at the end of the epoch after the one that queued it (the
        // next waits for it), and the last epoch's once the run ends.
        assert_eq!(observer.seen[1..3], expected, "{minutes} minutes");
        assert_eq!(load_model(&checkpoint).unwrap().training.epochs_done, 4);
    }
    assert_eq!(
        "10m".parse::<CheckpointEvery>().unwrap(),
        CheckpointEvery::Minutes(10.0)
    );
    assert_eq!(
        "2.5min".parse::<CheckpointEvery>().unwrap(),
        CheckpointEvery::Minutes(2.5)
    );
    assert_eq!(
        "3".parse::<CheckpointEvery>().unwrap(),
        CheckpointEvery::Epochs(3)
    );
    for bad in ["0m", "-1m", "NaNm", "x", "0", "1h"] {
        assert!(bad.parse::<CheckpointEvery>().is_err(), "{bad}");
    }
}
