//! The training loop of a whole run, the one every caller shares (the command line, and the
//! Python bindings, Spark tasks and multi-rank drivers to come): resume from a checkpoint,
//! train the missing epochs, report the validation loss and write a checkpoint every few
//! (in the background, while the next epoch trains), and stop early when the observer asks.

use super::checkpoint::CheckpointWriter;
use super::{evaluate_loss, train_epoch, EpochSummary, Progress, TrainingData};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::Network;
use crate::model_file::load_model;
use crate::run::{FitOptions, TrainingState};
use std::ops::ControlFlow;

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

/// The figures of one epoch: its training summary and the validation loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    pub summary: EpochSummary,
    /// Mean error per sample on the validation datasets, when there are some.
    pub validation_loss: Option<f64>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSummary {
    /// The first epoch this run trained (0-based).
    pub first_epoch: usize,
    /// The epochs this run trained, in order.
    pub epochs: Vec<EpochReport>,
    /// The observer ended the run before its last epoch.
    pub stopped_early: bool,
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

    /// An epoch ended (and its checkpoint, when one is due, is being written); `Break` ends
    /// the run here (early stopping).
    fn epoch_end(&mut self, report: &EpochReport) -> ControlFlow<()> {
        let _ = report;
        ControlFlow::Continue(())
    }
}

impl FitObserver for () {}

/// Trains `network` on `data` from the first missing epoch to `options.epochs`. With
/// `options.resume` and an existing checkpoint, the network's parameters, optimizer state and
/// step count are first restored from it and the epochs it had done are skipped, so that a
/// killed run continues exactly as if it had never stopped. After every epoch the validation
/// loss is computed (when `data` has validation datasets), the checkpoint is written (when
/// there is one, every `options.checkpoint_every` epochs and after the last) and the observer
/// may end the run. Checkpoints are copied to the host at the epoch's end and written
/// atomically in the background while the next epoch trains; all are on disk when `fit`
/// returns.
pub fn fit<B: Backend>(
    network: &mut Network<B>,
    data: &TrainingData<'_, B>,
    options: &FitOptions,
    observer: &mut dyn FitObserver,
) -> Result<FitSummary> {
    let training = &options.training;
    training.validate()?;
    if options.checkpoint_every == 0 {
        return Err(Error::Options(
            "checkpoints every 0 epochs: give at least 1".into(),
        ));
    }
    let resumed = resume(network, options)?;
    let first_epoch = resumed.as_ref().map_or(0, |state| state.epochs_done);
    observer.started(&FitStart {
        first_epoch,
        epochs: options.epochs,
        resumed,
    });
    let mut summary = FitSummary {
        first_epoch,
        epochs: Vec::new(),
        stopped_early: false,
    };
    let mut checkpoints = CheckpointWriter::default();
    for epoch in first_epoch..options.epochs {
        observer.epoch_started(epoch);
        let epoch_summary = train_epoch(network, data, training, epoch, &mut |progress| {
            observer.progress(progress)
        })?;
        let validation_loss = data
            .validation
            .as_ref()
            .map(|binding| evaluate_loss(network, binding, training.batch_size))
            .transpose()?;
        let state = TrainingState {
            epochs_done: epoch + 1,
            steps: network.steps(),
            optimizer: Some(training.optimizer),
            options: Some(*training),
        };
        let due = (epoch + 1) % options.checkpoint_every == 0 || epoch + 1 == options.epochs;
        if let (true, Some(path)) = (due, &options.checkpoint) {
            checkpoints.write(path, network, &state)?;
        }
        let report = EpochReport {
            summary: epoch_summary,
            validation_loss,
        };
        let flow = observer.epoch_end(&report);
        summary.epochs.push(report);
        if flow.is_break() {
            // A run stopped early keeps its last epoch, due or not.
            if let (false, Some(path)) = (due, &options.checkpoint) {
                checkpoints.write(path, network, &state)?;
            }
            summary.stopped_early = epoch + 1 < options.epochs;
            break;
        }
    }
    checkpoints.wait()?;
    Ok(summary)
}

/// Restores `network` from the checkpoint when resuming and it exists; returns the state it
/// held.
fn resume<B: Backend>(
    network: &mut Network<B>,
    options: &FitOptions,
) -> Result<Option<TrainingState>> {
    if !options.resume {
        return Ok(None);
    }
    let path = options.checkpoint.as_deref().ok_or_else(|| {
        Error::Options("resuming needs the checkpoint file to resume from".into())
    })?;
    if !path.exists() {
        return Ok(None);
    }
    load_model(path)?.restore_into(path, network).map(Some)
}
