//! What a training run is: its options and how far it has come. Training reads these, and
//! model files save them beside the weights so that a killed run resumes exactly; both
//! depend on this module, neither on the other.

use crate::backend::OptimizerKind;
use crate::config::NetworkDefinition;
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
    /// Model file written (atomically, in the background) every `checkpoint_every` epochs
    /// and after the last.
    pub checkpoint: Option<PathBuf>,
    /// Epochs between checkpoints (at least 1).
    pub checkpoint_every: usize,
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

/// A run as people ask for it, on the command line or from Python: the optimizer by name,
/// and shuffling and denoising left to the network definition unless given.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub batch_size: usize,
    pub epochs: usize,
    /// `sgd`, `momentum`, `nesterov`, `adagrad`, `rmsprop`, `adadelta` or `adam`.
    pub optimizer: String,
    pub learning_rate: f32,
    /// Momentum (Momentum, Nesterov), or the decay rate of RMSProp and AdaDelta.
    pub momentum: f32,
    pub l1: f32,
    pub l2: f32,
    pub seed: u64,
    /// Shuffle every epoch; `None` follows the definition's ShuffleIndices.
    pub shuffle: Option<bool>,
    /// Denoising probability; `None` follows the definition's Denoising.
    pub denoising: Option<f32>,
    pub checkpoint: Option<PathBuf>,
    /// Epochs between checkpoints (at least 1).
    pub checkpoint_every: usize,
    pub resume: bool,
}

impl RunRequest {
    /// The run asked for, with `definition`'s settings where the request leaves them open:
    /// the one place where requests become options.
    pub fn fit_options(&self, definition: &NetworkDefinition) -> Result<FitOptions> {
        Ok(FitOptions {
            training: TrainingOptions {
                batch_size: self.batch_size,
                optimizer: OptimizerSettings {
                    kind: optimizer_kind(&self.optimizer, self.momentum)?,
                    learning_rate: self.learning_rate,
                    l1: self.l1,
                    l2: self.l2,
                },
                seed: self.seed,
                shuffle: self.shuffle.unwrap_or(definition.shuffle_indices),
                denoising: self.denoising.or(definition.denoising),
            },
            epochs: self.epochs,
            checkpoint: self.checkpoint.clone(),
            checkpoint_every: self.checkpoint_every,
            resume: self.resume,
        })
    }
}

/// An optimizer by name, with `momentum` where it takes one (the decay rate of RMSProp and
/// AdaDelta) and the usual epsilons.
pub fn optimizer_kind(name: &str, momentum: f32) -> Result<OptimizerKind> {
    Ok(match name {
        "sgd" => OptimizerKind::Sgd,
        "momentum" => OptimizerKind::Momentum { momentum },
        "nesterov" => OptimizerKind::Nesterov { momentum },
        "adagrad" => OptimizerKind::AdaGrad { epsilon: 1e-8 },
        "rmsprop" => OptimizerKind::RmsProp {
            rho: momentum,
            epsilon: 1e-8,
        },
        "adadelta" => OptimizerKind::AdaDelta {
            rho: momentum,
            epsilon: 1e-6,
        },
        "adam" => OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        },
        _ => {
            return Err(Error::Options(format!(
                "unknown optimizer '{name}': sgd, momentum, nesterov, adagrad, rmsprop, adadelta or adam"
            )))
        }
    })
}
