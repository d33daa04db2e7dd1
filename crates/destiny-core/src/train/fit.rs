//! The training loop of a whole run, the one every caller shares (the command line, and the
//! Python bindings, Spark tasks and multi-rank drivers to come): resume from a checkpoint,
//! train the missing epochs, report the validation loss and write a checkpoint every few
//! (in the background, while the next epoch trains), and stop early when the observer asks. With validation users, the epochs are judged by
//! ranking quality: the model file keeps the best epoch (a later, worse epoch is
//! checkpointed beside it, in [`latest_checkpoint`]), the run stops when the patience runs
//! out, and the network ends with the best epoch's weights.

use super::checkpoint::{remove_if_there, CheckpointWriter};
use super::{evaluate_loss, train_epoch, EpochSummary, Progress, TrainingData};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::lock::FileLock;
use crate::model::Network;
use crate::model_file::{load_model, save_model, ModelFile};
use crate::run::{best_of, FitOptions, TrainingState, ValidationFigures};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Where a run starts, told to the observer before the first epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct FitStart {
    /// The first epoch to train (0-based): the epochs a resumed checkpoint had done.
    pub first_epoch: usize,
    /// Epochs in all.
    pub epochs: usize,
    /// The state read from the checkpoint, when the run resumed one.
    pub resumed: Option<TrainingState>,
}

/// The figures of one epoch: its training summary and the validation figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    pub summary: EpochSummary,
    /// Mean error per sample on the validation datasets, when there are some.
    pub validation_loss: Option<f64>,
    /// NDCG@100 and Recall@20 on the validation users, with ranking validation.
    pub validation: Option<ValidationFigures>,
    /// The epoch is the best so far on the validation users (the model file holds it).
    pub best: bool,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSummary {
    /// The first epoch this run trained (0-based).
    pub first_epoch: usize,
    /// The epochs this run trained, in order.
    pub epochs: Vec<EpochReport>,
    /// The observer, or the patience, ended the run before its last epoch.
    pub stopped_early: bool,
    /// With ranking validation: the best epoch, whose weights the network now holds.
    pub best: Option<ValidationFigures>,
}

impl FitSummary {
    /// Epochs completed in all, counting those of a resumed checkpoint.
    pub fn epochs_done(&self) -> usize {
        self.first_epoch + self.epochs.len()
    }
}

/// Watches a [`fit`] run. Every method has a default that does nothing, so an observer
/// implements only what it shows; `()` is the observer that watches nothing.
pub trait FitObserver {
    /// The run starts (after reading the checkpoint when resuming).
    fn started(&mut self, start: &FitStart) {
        let _ = start;
    }

    /// Epoch `epoch` (0-based) starts.
    fn epoch_started(&mut self, epoch: usize) {
        let _ = epoch;
    }

    /// Progress within an epoch, as the loss is read back.
    fn progress(&mut self, progress: &Progress) {
        let _ = progress;
    }

    /// An epoch ended and its checkpoint was written; `Break` ends the run here (early
    /// stopping).
    fn epoch_end(&mut self, report: &EpochReport) -> ControlFlow<()> {
        let _ = report;
        ControlFlow::Continue(())
    }
}

impl FitObserver for () {}

/// Trains `network` on `data` from the first missing epoch to `options.epochs`. With
/// `options.resume`, the network's parameters, optimizer state and step count are first
/// restored from the checkpoint and the epochs it had done are skipped, so that a killed run
/// continues exactly as if it had never stopped. An existing checkpoint is replaced only with
/// `options.overwrite`, and is locked for the run so that a second run on it fails. After
/// every epoch the validation figures are computed (when `data` has validation datasets),
/// the checkpoint is written (when there is one, as `options.checkpoint_every` says, for
/// the best epoch and for the last) and the observer may end the run. Checkpoints are copied
/// to the host at the epoch's end and written atomically in the background while the next
/// epoch trains; all are on disk when `fit` returns.
///
/// With ranking validation ([`TrainingData::with_ranking_validation`](super::TrainingData::with_ranking_validation)) a
/// checkpoint is required: it holds the best epoch by NDCG@100, the run stops after
/// `options.patience` epochs without a better one, and the network is left with the best
/// epoch's weights.
pub fn fit<B: Backend>(
    network: &mut Network<B>,
    data: &TrainingData<'_, B>,
    options: &FitOptions,
    observer: &mut dyn FitObserver,
) -> Result<FitSummary> {
    let training = &options.training;
    options.validate()?;
    let ranked = data.ranking.is_some();
    check_validation_options(options, ranked)?;
    // Rank 0 alone writes checkpoints, so it alone locks (ranks in threads share a process,
    // and a second lock there would conflict with the first).
    let _lock = match &options.checkpoint {
        Some(path) if network.group().rank() == 0 => Some(FileLock::acquire(path)?),
        _ => None,
    };
    let resumed = resume(network, options, ranked)?;
    if let (Some(path), false) = (&options.checkpoint, options.resume) {
        // A fresh run must not resume a stale checkpoint of an earlier one later.
        remove_latest(network, path)?;
    }
    let mut weights_of = resumed.as_ref().map_or(0, |state| state.epochs_done);
    let done_before = resumed
        .as_ref()
        .filter(|state| ranked && finished(&state.validation, options))
        .map(|state| state.validation.clone());
    let first_epoch = done_before.as_ref().map_or(weights_of, Vec::len);
    // A validated run that has finished trains nothing more.
    let end = match done_before {
        Some(_) => first_epoch,
        None => options.epochs,
    };
    let mut history: Vec<ValidationFigures> = match (&done_before, &resumed) {
        (Some(history), _) => history.clone(),
        (None, Some(state)) => state
            .validation
            .iter()
            .filter(|figures| figures.epoch < weights_of)
            .copied()
            .collect(),
        (None, None) => Vec::new(),
    };
    observer.started(&FitStart {
        first_epoch,
        epochs: options.epochs,
        resumed,
    });
    let mut summary = FitSummary {
        first_epoch,
        epochs: Vec::new(),
        stopped_early: false,
        best: None,
    };
    let mut checkpoints = CheckpointWriter::default();
    let mut last_checkpoint = std::time::Instant::now();
    for epoch in first_epoch..end {
        observer.epoch_started(epoch);
        let epoch_summary = train_epoch(network, data, training, epoch, &mut |progress| {
            observer.progress(progress)
        })?;
        weights_of = epoch + 1;
        let validation_loss = data
            .validation
            .as_ref()
            .map(|binding| evaluate_loss(network, binding, training.batch_size))
            .transpose()?;
        let validation = data
            .ranking
            .as_ref()
            .map(|ranking| ranking.evaluate(network, epoch, training.batch_size))
            .transpose()?;
        history.extend(validation);
        let best = validation.is_some() && best_of(&history).map(|b| b.epoch) == Some(epoch);
        let due = best
            || options
                .checkpoint_every
                .due(epoch, last_checkpoint.elapsed())
            || epoch + 1 == end;
        let checkpoint = |checkpoints: &mut CheckpointWriter, network: &Network<B>| {
            let Some(path) = &options.checkpoint else {
                return Ok(());
            };
            let state = state_after(network, options, epoch + 1, &history);
            if ranked && !best {
                checkpoints.write(&latest_checkpoint(path), network, &state, None)
            } else {
                checkpoints.write(path, network, &state, Some(latest_checkpoint(path)))
            }
        };
        if due {
            checkpoint(&mut checkpoints, network)?;
            last_checkpoint = std::time::Instant::now();
        }
        let report = EpochReport {
            summary: epoch_summary,
            validation_loss,
            validation,
            best,
        };
        let flow = observer.epoch_end(&report);
        summary.epochs.push(report);
        if flow.is_break() || out_of_patience(&history, options.patience) {
            // A run that stops keeps its last epoch, due or not.
            if !due {
                checkpoint(&mut checkpoints, network)?;
            }
            summary.stopped_early = epoch + 1 < options.epochs;
            break;
        }
    }
    checkpoints.wait()?;
    if let (Some(path), true) = (&options.checkpoint, ranked) {
        summary.best = keep_best(network, options, path, weights_of, &history)?;
    }
    Ok(summary)
}

/// The checkpoint of a run's latest epoch while the model file holds a better, earlier one:
/// the model file's name with `.latest` added.
pub fn latest_checkpoint(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".latest");
    PathBuf::from(name)
}

/// Checks the options that only make sense with (or need) ranking validation.
fn check_validation_options(options: &FitOptions, ranked: bool) -> Result<()> {
    match options.patience {
        Some(0) => Err(Error::Options(
            "the patience must be at least 1 epoch".into(),
        )),
        Some(_) if !ranked => Err(Error::Options(
            "a patience needs validation users to judge the epochs by".into(),
        )),
        _ if ranked && options.checkpoint.is_none() => Err(Error::Options(
            "keeping the best epoch on the validation users needs a model file".into(),
        )),
        _ => Ok(()),
    }
}

/// Where training stands after `epochs_done` epochs, with the validation figures so far.
fn state_after<B: Backend>(
    network: &Network<B>,
    options: &FitOptions,
    epochs_done: usize,
    history: &[ValidationFigures],
) -> TrainingState {
    TrainingState {
        epochs_done,
        steps: network.steps(),
        optimizer: Some(options.training.optimizer),
        options: Some(options.training),
        validation: history.to_vec(),
    }
}

/// The patience ran out: the last `patience` epochs were no better than an earlier one.
fn out_of_patience(history: &[ValidationFigures], patience: Option<usize>) -> bool {
    match (patience, best_of(history), history.last()) {
        (Some(patience), Some(best), Some(last)) => last.epoch - best.epoch >= patience,
        _ => false,
    }
}

/// A validated run whose figures say it has nothing left to train.
fn finished(history: &[ValidationFigures], options: &FitOptions) -> bool {
    history.len() >= options.epochs || out_of_patience(history, options.patience)
}

/// Leaves the best epoch's weights in `network` and in the model file, whose state then
/// records every epoch's figures; the latest checkpoint goes. `weights_of` is the number
/// of epochs behind the network's current weights.
fn keep_best<B: Backend>(
    network: &mut Network<B>,
    options: &FitOptions,
    path: &Path,
    weights_of: usize,
    history: &[ValidationFigures],
) -> Result<Option<ValidationFigures>> {
    let Some(best) = best_of(history).copied() else {
        return Ok(None);
    };
    if weights_of != best.epoch + 1 {
        load_model(path)?.restore_into(path, network)?;
        save_model(
            path,
            network,
            &state_after(network, options, best.epoch + 1, history),
        )?;
    }
    remove_latest(network, path)?;
    Ok(Some(best))
}

/// Removes the latest checkpoint beside `model`, if there is one (rank 0, which writes the
/// files).
fn remove_latest<B: Backend>(network: &Network<B>, model: &Path) -> Result<()> {
    if network.group().rank() != 0 {
        return Ok(());
    }
    remove_if_there(&latest_checkpoint(model))
}

/// Restores `network` from the checkpoint when resuming (with ranking validation, the newer
/// of the model file and the latest checkpoint beside it); returns the state it held.
/// Refuses to start over an existing checkpoint unless told to overwrite it.
fn resume<B: Backend>(
    network: &mut Network<B>,
    options: &FitOptions,
    ranked: bool,
) -> Result<Option<TrainingState>> {
    let Some(path) = options.checkpoint.as_deref() else {
        if options.resume {
            return Err(Error::Options(
                "resuming needs the checkpoint file to resume from".into(),
            ));
        }
        return Ok(None);
    };
    let exists = std::fs::metadata(path).is_ok();
    if !options.resume {
        if exists && !options.overwrite {
            return Err(Error::Options(format!(
                "{} already exists: resume it (--resume) or replace it (--overwrite)",
                path.display()
            )));
        }
        return Ok(None);
    }
    if !exists {
        return Err(Error::Options(format!(
            "there is no model file {} to resume",
            path.display()
        )));
    }
    let latest = latest_checkpoint(path);
    let mut newest = None;
    for file in [path, latest.as_path()] {
        if !file.exists() || (file != path && !ranked) {
            continue;
        }
        let model = load_model(file)?;
        let newer =
            |(_, kept): &(&Path, ModelFile)| kept.training.epochs_done < model.training.epochs_done;
        if newest.as_ref().is_none_or(newer) {
            newest = Some((file, model));
        }
    }
    let state = newest
        .map(|(file, model)| model.restore_into(file, network))
        .transpose()?;
    if let Some(state) = &state {
        if state.epochs_done > options.epochs {
            return Err(Error::Options(format!(
                "{} has trained {} epochs already, more than the {} asked for",
                path.display(),
                state.epochs_done,
                options.epochs
            )));
        }
    }
    Ok(state)
}
