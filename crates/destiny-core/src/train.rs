//! Training: epochs of shuffled mini-batches, with batches gathered on a second thread while
//! the backend computes, and the loss read back only every few batches; [`fit`] runs the
//! epochs of a whole run.

mod checkpoint;
mod fit;
mod validation;

pub use checkpoint::CheckpointWriter;
pub use fit::{fit, latest_checkpoint, EpochReport, FitObserver, FitStart, FitSummary};
pub use validation::RankingValidation;

use crate::backend::random::derive_seed;
use crate::backend::Backend;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::batch::ResidentBinding;
use crate::model::{Binding, Bound, DeviceBatch, Network};
use crate::pipeline::pipelined;
use crate::run::{NonFinite, TrainingOptions};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::ops::Range;
use std::time::Instant;

/// Progress within an epoch, reported as batches finish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub epoch: usize,
    pub samples_done: usize,
    pub samples: usize,
    /// Mean error per sample over the batches read back so far.
    pub loss: f64,
    pub samples_per_second: f64,
}

/// The result of one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochSummary {
    pub epoch: usize,
    /// Mean error per sample (error summed over output units, plus penalties).
    pub loss: f64,
    pub samples: usize,
    /// Batches left out because their loss was not finite ([`NonFinite::SkipBatch`]).
    pub skipped_batches: usize,
    pub seconds: f64,
}

/// Batches between loss read-backs (each read waits for the device): a loss that turns NaN
/// is found within this many batches.
const LOSS_INTERVAL: usize = 8;

/// The datasets of a training run bound to a network's layers, made once for all epochs.
/// On a backend that prefers resident data the sparse datasets are copied there now, and
/// every batch is gathered there; otherwise batches are gathered on a second thread and
/// uploaded.
pub struct TrainingData<'a, B: Backend> {
    source: BatchSource<'a, B>,
    /// Why the datasets stay on the host although the backend prefers them resident.
    host_reason: Option<String>,
    /// The datasets whose loss [`fit`] reports after every epoch.
    validation: Option<Binding<'a>>,
    /// The validation users whose ranking quality [`fit`] reports and selects by.
    ranking: Option<RankingValidation<'a>>,
}

enum BatchSource<'a, B: Backend> {
    Host(Binding<'a>),
    Resident(ResidentBinding<'a, B>),
}

impl<'a, B: Backend> TrainingData<'a, B> {
    /// Binds `datasets` (inputs and targets) to the layers of `network`. When the datasets
    /// cannot be kept on a backend that prefers them there (they do not fit in its memory),
    /// batches are gathered on the host instead, and [`TrainingData::host_reason`] says why.
    pub fn new(network: &Network<B>, datasets: &'a [Dataset]) -> Result<Self> {
        let binding = Binding::new(network.topology(), datasets, Bound::InputsAndTargets)?;
        let backend = network.backend();
        if !backend.prefers_resident_data() {
            return Ok(TrainingData {
                source: BatchSource::Host(binding),
                host_reason: None,
                validation: None,
                ranking: None,
            });
        }
        match ResidentBinding::new(backend, binding) {
            Ok(resident) => Ok(TrainingData {
                source: BatchSource::Resident(resident),
                host_reason: None,
                validation: None,
                ranking: None,
            }),
            Err(error) => Ok(TrainingData {
                source: BatchSource::Host(Binding::new(
                    network.topology(),
                    datasets,
                    Bound::InputsAndTargets,
                )?),
                host_reason: Some(format!(
                    "the datasets could not be kept on {} ({error})",
                    backend.name()
                )),
                validation: None,
                ranking: None,
            }),
        }
    }

    /// Adds validation datasets (inputs and targets, by the same layer names), whose loss
    /// [`fit`] reports after every epoch. They are checked against the network now, so that
    /// a mismatch fails before training rather than after the first epoch.
    pub fn with_validation(
        mut self,
        network: &Network<B>,
        datasets: &'a [Dataset],
    ) -> Result<Self> {
        self.validation = Some(Binding::new(
            network.topology(),
            datasets,
            Bound::InputsAndTargets,
        )?);
        Ok(self)
    }

    /// Adds validation users: `datasets` bind their fold-in items to the input layer and
    /// their held-out items to the output layer. [`fit`] then reports the loss on the
    /// held-out items and NDCG@100 and Recall@20 after every epoch, keeps the best epoch and
    /// stops early by them.
    pub fn with_ranking_validation(
        self,
        network: &Network<B>,
        datasets: &'a [Dataset],
    ) -> Result<Self> {
        let ranking = RankingValidation::new(network.topology(), datasets)?;
        let mut data = self.with_validation(network, datasets)?;
        data.ranking = Some(ranking);
        Ok(data)
    }

    /// Why batches are gathered on the host although the backend would keep the datasets,
    /// if they are.
    pub fn host_reason(&self) -> Option<&str> {
        self.host_reason.as_deref()
    }

    fn binding(&self) -> &Binding<'a> {
        match &self.source {
            BatchSource::Host(binding) => binding,
            BatchSource::Resident(resident) => resident.binding(),
        }
    }

    /// Number of samples.
    pub fn samples(&self) -> usize {
        self.binding().samples()
    }
}

/// Trains `network` on `data` for one epoch (numbered from 0 for seeding).
pub fn train_epoch<B: Backend>(
    network: &mut Network<B>,
    data: &TrainingData<'_, B>,
    options: &TrainingOptions,
    epoch: usize,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<EpochSummary> {
    options.validate()?;
    if network.optimizer() != Some(&options.optimizer) {
        network.set_optimizer(options.optimizer)?;
    }
    let samples = data.samples();
    let mut order: Vec<usize> = (0..samples).collect();
    if options.shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
            options.seed,
            &[0x5EED, epoch as u64],
        )));
    }
    let start = Instant::now();
    let mut loss_sum = 0.0f64;
    let mut loss_samples = 0usize;
    // The error and samples of the batches since the last read-back (those trained on).
    let mut pending_loss = 0.0f64;
    let mut pending_samples = 0usize;
    let mut skipped = 0usize;
    let skip_batches = options.on_nonfinite == NonFinite::SkipBatch;
    network.wait_for_step(skip_batches)?;
    let batches: Vec<&[usize]> = order.chunks(options.batch_size).collect();
    let batch_seed =
        |b: usize, purpose: u64| derive_seed(options.seed, &[epoch as u64, b as u64, purpose]);
    // Ranks that share batches each take a part of every batch, with their own masks.
    let group = network.group();
    // Each batch's samples on this rank, and its denoising (probability, seed).
    type Share = (Range<usize>, Option<(f32, u64)>);
    let shares: Vec<Share> = batches
        .iter()
        .enumerate()
        .map(|(b, samples)| {
            let seed = group.own_seed(batch_seed(b, 0xE));
            (
                group.share(samples.len()),
                options.denoising.map(|p| (p, seed)),
            )
        })
        .collect();
    let mine = |b: usize| &batches[b][shares[b].0.clone()];
    let mut step = |network: &mut Network<B>, b: usize, batch: &mut DeviceBatch<B>| {
        batch.set_total_rows(batches[b].len());
        if skip_batches {
            // The loss of every batch is read before its update: the ranks all read the
            // same sum, so they skip the same batches.
            network.compute_gradients(batch, batch_seed(b, 0xD))?;
            let loss = network.take_loss()?;
            if loss.is_finite() {
                network.step()?;
                pending_loss += loss;
                pending_samples += batch.total_rows();
            } else {
                skipped += 1;
                let broken = describe_non_finite(network)?;
                if !broken.is_empty() {
                    return Err(Error::Numerics(format!(
                        "the loss became {loss} in epoch {}, batch {} of {}{broken}: skipping \
                         batches cannot mend the weights",
                        epoch + 1,
                        b + 1,
                        batches.len()
                    )));
                }
            }
        } else {
            network.train_batch(batch, batch_seed(b, 0xD))?;
            pending_samples += batch.total_rows();
        }
        if (b + 1).is_multiple_of(LOSS_INTERVAL) || b + 1 == batches.len() {
            if !skip_batches {
                pending_loss = network.take_loss()?;
            }
            if !pending_loss.is_finite() {
                let first = b + 1 - (b % LOSS_INTERVAL + 1);
                return Err(Error::Numerics(format!(
                    "the loss became {pending_loss} in epoch {}, batches {} to {} of {} (samples {} to {}){}",
                    epoch + 1,
                    first + 1,
                    b + 1,
                    batches.len(),
                    loss_samples + 1,
                    loss_samples + pending_samples,
                    describe_non_finite(network)?
                )));
            }
            loss_sum += pending_loss;
            loss_samples += pending_samples;
            pending_loss = 0.0;
            pending_samples = 0;
            if loss_samples > 0 {
                on_progress(&Progress {
                    epoch,
                    samples_done: loss_samples,
                    samples,
                    loss: loss_sum / loss_samples as f64,
                    samples_per_second: loss_samples as f64 / start.elapsed().as_secs_f64(),
                });
            }
        }
        Ok(())
    };
    match &data.source {
        BatchSource::Host(binding) => pipelined(
            batches.len(),
            |b| binding.gather(mine(b), shares[b].1),
            |b, host| {
                let mut batch = network.upload_batch(&host)?;
                step(network, b, &mut batch)
            },
        )?,
        BatchSource::Resident(resident) => {
            for (b, share) in shares.iter().enumerate() {
                let mut batch = resident.gather(network.backend(), mine(b), share.1)?;
                step(network, b, &mut batch)?;
            }
        }
    }
    if skipped > 0 && skipped == batches.len() {
        return Err(Error::Numerics(format!(
            "the loss of every batch of epoch {} was NaN or infinite, with finite weights: \
             the data or the settings make it so",
            epoch + 1
        )));
    }
    Ok(EpochSummary {
        epoch,
        loss: loss_sum / loss_samples.max(1) as f64,
        samples,
        skipped_batches: skipped,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Where the parameters of `network` stopped being finite: `; tensor 'NAME' holds NaN or
/// infinite values`, or nothing when they are all finite (the loss alone overflowed).
fn describe_non_finite<B: Backend>(network: &Network<B>) -> Result<String> {
    let values = network.parameter_values()?;
    let bad = network
        .topology()
        .parameters
        .iter()
        .zip(&values)
        .find(|(_, values)| values.iter().any(|v| !v.is_finite()));
    Ok(bad.map_or(String::new(), |(spec, _)| {
        format!("; tensor '{}' holds NaN or infinite values", spec.name)
    }))
}

/// The mean error per sample of `network` on the samples of `binding`, without training.
fn evaluate_loss<B: Backend>(
    network: &mut Network<B>,
    binding: &Binding<'_>,
    batch_size: usize,
) -> Result<f64> {
    // Ranks that share batches each evaluate a part of the samples; the loss sums them.
    let order: Vec<usize> = network.group().share(binding.samples()).collect();
    network.take_loss()?;
    for indices in order.chunks(batch_size) {
        let mut batch = network.upload_batch(&binding.gather(indices, None))?;
        network.evaluate_batch(&mut batch)?;
    }
    Ok(network.take_loss()? / binding.samples() as f64)
}
