//! What a training run is: its options and how far it has come. Training reads these, and
//! model files save them beside the weights so that a killed run resumes exactly; both
//! depend on this module, neither on the other.

use crate::error::{Error, Result};
use crate::model::OptimizerSettings;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How to train one epoch: what [`train_epoch`](crate::train::train_epoch) takes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainingOptions {
    pub batch_size: usize,
    pub optimizer: OptimizerSettings,
    /// Seeds shuffling, dropout and denoising (weights are seeded when the network is made).
    pub seed: u64,
    pub shuffle: bool,
    /// Probability of dropping each sparse input entry.
    pub denoising: Option<f32>,
}

impl TrainingOptions {
    /// Checks the options that no network definition could make right.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Options("the batch size must be at least 1".into()));
        }
        if let Some(p) = self.denoising {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::Options(format!(
                    "the denoising probability must be in [0, 1), not {p}"
                )));
            }
        }
        Ok(())
    }
}

/// How to run [`fit`](crate::train::fit): the epochs, the checkpoint and resuming.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    pub training: TrainingOptions,
    /// Epochs in all, counting those a resumed checkpoint has already done.
    pub epochs: usize,
    /// Model file written (atomically) after every epoch.
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint when it exists (start afresh when it does not).
    pub resume: bool,
}

/// Where training stands, saved with the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub steps: u64,
    /// The optimizer whose state is saved (absent for a model never trained).
    pub optimizer: Option<OptimizerSettings>,
    /// The run's options, so that a resumed run continues the same way.
    pub options: Option<TrainingOptions>,
}
