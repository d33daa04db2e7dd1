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
    /// What a batch whose loss is not finite does to the run.
    #[serde(default)]
    pub on_nonfinite: NonFinite,
}

/// What training does when a batch's loss is NaN or infinite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NonFinite {
    /// Stop with an error naming the epoch, the batches and the first tensor that is not
    /// finite; the model file keeps the last good checkpoint.
    #[default]
    Stop,
    /// Leave the weights and the optimizer as they were before the batch and go on (the
    /// loss is read after every batch, before its update). Training still stops when the
    /// weights themselves are no longer finite, or when every batch of an epoch is skipped.
    SkipBatch,
}

impl std::str::FromStr for NonFinite {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "stop" => Ok(NonFinite::Stop),
            "skip-batch" => Ok(NonFinite::SkipBatch),
            _ => Err(Error::Options(format!(
                "on a non-finite loss: 'stop' or 'skip-batch', not '{name}'"
            ))),
        }
    }
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NonFinite::Stop => "stop",
            NonFinite::SkipBatch => "skip-batch",
        })
    }
}

impl TrainingOptions {
    /// Checks the options that no network definition could make right, naming the option
    /// and the value.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Options("the batch size must be at least 1".into()));
        }
        let optimizer = &self.optimizer;
        if !(optimizer.learning_rate.is_finite() && optimizer.learning_rate > 0.0) {
            return Err(Error::Options(format!(
                "the learning rate must be a finite number above 0, not {}",
                optimizer.learning_rate
            )));
        }
        for (name, value) in [("L1", optimizer.l1), ("L2", optimizer.l2)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::Options(format!(
                    "the {name} weight decay must be a finite number of at least 0, not {value}"
                )));
            }
        }
        let momentum = match optimizer.kind {
            OptimizerKind::Momentum { momentum } | OptimizerKind::Nesterov { momentum } => {
                Some(("momentum", momentum))
            }
            OptimizerKind::RmsProp { rho, .. } | OptimizerKind::AdaDelta { rho, .. } => {
                Some(("decay rate (momentum)", rho))
            }
            _ => None,
        };
        if let Some((name, value)) = momentum {
            check_probability(name, value)?;
        }
        if let Some(p) = self.denoising {
            check_probability("denoising probability", p)?;
        }
        Ok(())
    }

    /// The options that differ from `saved`, each as `name value (was value)`.
    pub fn differences(&self, saved: &TrainingOptions) -> Vec<String> {
        let mut differences = Vec::new();
        let mut compare = |name: &str, now: String, was: String| {
            if now != was {
                differences.push(format!("{name} {now} (was {was})"));
            }
        };
        compare(
            "batch size",
            self.batch_size.to_string(),
            saved.batch_size.to_string(),
        );
        let (now, was) = (&self.optimizer, &saved.optimizer);
        compare(
            "optimizer",
            format!("{:?}", now.kind),
            format!("{:?}", was.kind),
        );
        compare(
            "learning rate",
            now.learning_rate.to_string(),
            was.learning_rate.to_string(),
        );
        compare("L1", now.l1.to_string(), was.l1.to_string());
        compare("L2", now.l2.to_string(), was.l2.to_string());
        compare("seed", self.seed.to_string(), saved.seed.to_string());
        compare(
            "shuffle",
            self.shuffle.to_string(),
            saved.shuffle.to_string(),
        );
        compare(
            "denoising",
            format!("{:?}", self.denoising),
            format!("{:?}", saved.denoising),
        );
        compare(
            "on non-finite loss",
            self.on_nonfinite.to_string(),
            saved.on_nonfinite.to_string(),
        );
        differences
    }
}

/// A probability in [0, 1), named in the error.
fn check_probability(name: &str, value: f32) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::Options(format!(
            "the {name} must be in [0, 1), not {value}"
        )))
    }
}

/// How to run [`fit`](crate::train::fit): the epochs, the checkpoint and resuming.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    pub training: TrainingOptions,
    /// Epochs in all, counting those a resumed checkpoint has already done.
    pub epochs: usize,
    /// Model file written (atomically, in the background) as `checkpoint_every` says and
    /// after the last epoch.
    pub checkpoint: Option<PathBuf>,
    /// How often checkpoints are written.
    pub checkpoint_every: CheckpointEvery,
    /// Continue from the checkpoint, which must exist.
    pub resume: bool,
    /// Replace an existing checkpoint file instead of refusing to (and not resuming it).
    pub overwrite: bool,
    /// With ranking validation: stop after this many epochs without a better NDCG@100.
    pub patience: Option<usize>,
}

impl FitOptions {
    /// Checks the options (the training options too) before any work.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::Options(
                "the number of epochs must be at least 1".into(),
            ));
        }
        self.checkpoint_every.validate()?;
        if self.resume && self.overwrite {
            return Err(Error::Options(
                "resume or overwrite the model file, not both".into(),
            ));
        }
        self.training.validate()
    }
}

/// How often a run writes its checkpoint (besides after its last epoch and, with validation
/// users, after its best): every `Epochs(n)` epochs, or at the end of the first epoch that
/// ends `Minutes(m)` minutes or more after the last checkpoint (or the start). Checkpoints
/// are written at epoch ends only, where a resumed run continues exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CheckpointEvery {
    Epochs(usize),
    Minutes(f64),
}

impl CheckpointEvery {
    /// Whether the end of epoch `epoch` (0-based), `since` after the last checkpoint, is due.
    pub fn due(self, epoch: usize, since: std::time::Duration) -> bool {
        match self {
            CheckpointEvery::Epochs(n) => (epoch + 1).is_multiple_of(n.max(1)),
            CheckpointEvery::Minutes(m) => since.as_secs_f64() >= m * 60.0,
        }
    }

    fn validate(self) -> Result<()> {
        match self {
            CheckpointEvery::Epochs(0) => Err(Error::Options(
                "checkpoints every 0 epochs: give at least 1".into(),
            )),
            CheckpointEvery::Minutes(m) if !(m.is_finite() && m > 0.0) => Err(Error::Options(
                format!("checkpoints every {m} minutes: give a number of minutes above 0"),
            )),
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for CheckpointEvery {
    type Err = Error;

    /// `N` epochs, or `Nm` / `Nmin` minutes (`N` may have decimals).
    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::Options(format!(
                "checkpoint interval '{text}': give epochs (3) or minutes (10m, 2.5min)"
            ))
        };
        let every = match text.strip_suffix("min").or_else(|| text.strip_suffix('m')) {
            Some(minutes) => CheckpointEvery::Minutes(minutes.parse().map_err(|_| bad())?),
            None => CheckpointEvery::Epochs(text.parse().map_err(|_| bad())?),
        };
        every.validate().map(|()| every)
    }
}

impl std::fmt::Display for CheckpointEvery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointEvery::Epochs(n) => write!(f, "{n}"),
            CheckpointEvery::Minutes(m) => write!(f, "{m}m"),
        }
    }
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
    /// The ranking figures on the validation users of every epoch trained, in order (empty
    /// without ranking validation). The file holds the weights of the best of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<ValidationFigures>,
}

impl TrainingState {
    /// The epoch with the best NDCG@100 on the validation users (the first of equals).
    pub fn best_validation(&self) -> Option<&ValidationFigures> {
        best_of(&self.validation)
    }
}

/// The best of `figures` by NDCG@100, the earliest among equals.
pub fn best_of(figures: &[ValidationFigures]) -> Option<&ValidationFigures> {
    figures
        .iter()
        .fold(None, |best: Option<&ValidationFigures>, f| match best {
            Some(b) if b.ndcg_at_100 >= f.ndcg_at_100 => Some(b),
            _ => Some(f),
        })
}

/// Ranking quality on the validation users after one epoch: their held-out items against
/// the network's top 100 for their fold-in items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationFigures {
    /// The epoch (0-based).
    pub epoch: usize,
    pub ndcg_at_100: f64,
    pub recall_at_20: f64,
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
    /// How often checkpoints are written.
    pub checkpoint_every: CheckpointEvery,
    pub resume: bool,
    pub overwrite: bool,
    /// With ranking validation: epochs without improvement before stopping.
    pub patience: Option<usize>,
    /// What a batch whose loss is not finite does.
    pub on_nonfinite: NonFinite,
}

impl RunRequest {
    /// The run asked for, with `definition`'s settings where the request leaves them open:
    /// the one place where requests become options.
    /// The options are checked here, before any work.
    pub fn fit_options(&self, definition: &NetworkDefinition) -> Result<FitOptions> {
        let options = FitOptions {
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
                on_nonfinite: self.on_nonfinite,
            },
            epochs: self.epochs,
            checkpoint: self.checkpoint.clone(),
            checkpoint_every: self.checkpoint_every,
            resume: self.resume,
            overwrite: self.overwrite,
            patience: self.patience,
        };
        options.validate()?;
        Ok(options)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_option() {
        let saved = TrainingOptions {
            batch_size: 16,
            optimizer: OptimizerSettings {
                kind: OptimizerKind::Sgd,
                learning_rate: 0.01,
                l1: 0.0,
                l2: 0.0,
            },
            seed: 1,
            shuffle: true,
            denoising: None,
            on_nonfinite: NonFinite::Stop,
        };
        assert!(saved.differences(&saved).is_empty());
        let mut now = saved;
        now.batch_size = 32;
        now.optimizer.learning_rate = 0.02;
        now.denoising = Some(0.2);
        assert_eq!(
            now.differences(&saved),
            [
                "batch size 32 (was 16)",
                "learning rate 0.02 (was 0.01)",
                "denoising Some(0.2) (was None)"
            ]
        );
    }
}
