//! The training loop of a whole run, the one every caller shares (the command line, and the
//! Python bindings, Spark tasks and multi-rank drivers to come): resume from a checkpoint,
//! train the missing epochs, report the validation loss and write a checkpoint after each,
//! and stop early when the observer asks.

use super::{evaluate_loss, train_epoch, EpochSummary, Progress, TrainingData};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::lock::FileLock;
use crate::model::Network;
use crate::model_file::{load_model, save_model};
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
/// continues exactly as if it had never stopped. An existing checkpoint is replaced only
/// with `options.overwrite`, and is locked for the run so that a second run on it fails. After every epoch the validation
/// loss is computed (when `data` has validation datasets), the checkpoint is written
/// atomically (when there is one), and the observer may end the run.
pub fn fit<B: Backend>(
    network: &mut Network<B>,
    data: &TrainingData<'_, B>,
    options: &FitOptions,
    observer: &mut dyn FitObserver,
) -> Result<FitSummary> {
    let training = &options.training;
    options.validate()?;
    // Rank 0 alone writes checkpoints, so it alone locks (ranks in threads share a process,
    // and a second lock there would conflict with the first).
    let _lock = match &options.checkpoint {
        Some(path) if network.group().rank() == 0 => Some(FileLock::acquire(path)?),
        _ => None,
    };
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
        if let Some(path) = &options.checkpoint {
            let state = TrainingState {
                epochs_done: epoch + 1,
                steps: network.steps(),
                optimizer: Some(training.optimizer),
                options: Some(*training),
            };
            save_model(path, network, &state)?;
        }
        let report = EpochReport {
            summary: epoch_summary,
            validation_loss,
        };
        let flow = observer.epoch_end(&report);
        summary.epochs.push(report);
        if flow.is_break() {
            summary.stopped_early = epoch + 1 < options.epochs;
            break;
        }
    }
    Ok(summary)
}

/// Restores `network` from the checkpoint when resuming; returns the state it held. Refuses
/// to start over an existing checkpoint unless told to overwrite it.
fn resume<B: Backend>(
    network: &mut Network<B>,
    options: &FitOptions,
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
    let state = load_model(path)?.restore_into(path, network)?;
    if state.epochs_done > options.epochs {
        return Err(Error::Options(format!(
            "{} has trained {} epochs already, more than the {} asked for",
            path.display(),
            state.epochs_done,
            options.epochs
        )));
    }
    Ok(Some(state))
}
