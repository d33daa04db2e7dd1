//! `destiny train`: trains a network defined in DSSTNE's language on datasets made by
//! `destiny convert`, writing the model (and a checkpoint of it after every epoch).

use crate::device::{with_ranks, DeviceArgs, NetworkSize, RankTask};
use crate::progress::EpochProgress;
use crate::timings::Timings;
use crate::values;
use anyhow::Context;
use clap::ValueEnum;
use destiny_core::backend::Backend;
use destiny_core::config::{parse_network_file, NetworkDefinition};
use destiny_core::data::Dataset;
use destiny_core::model::{dataset_shapes, Network, Topology};
use destiny_core::parallel::Group;
use destiny_core::run::{CheckpointEvery, FitOptions, NonFinite, RunRequest};
use destiny_core::train::{fit, EpochReport, FitObserver, FitStart, Progress, TrainingData};
use destiny_data::bind::Validation;
use destiny_storage::{Input, Output};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Arguments of `destiny train` (DSSTNE's short flags: -c -i -o -n -b -e).
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Network definition (DSSTNE's JSON language).
    #[arg(short = 'c', long)]
    config: PathBuf,
    /// Dataset of the input layer.
    #[arg(short = 'i', long)]
    input: Option<PathBuf>,
    /// Dataset of the output layer (defaults to the input: an autoencoder).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Datasets by the names the definition's layers use, as NAME=FILE (several networks
    /// inputs or outputs).
    #[arg(long = "data", value_name = "NAME=FILE")]
    data: Vec<String>,
    /// Model file to write (safetensors).
    #[arg(short = 'n', long = "model")]
    model: PathBuf,
    /// Samples per mini-batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 256,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch_size: usize,
    /// Epochs to train in all (a resumed run trains the ones still missing).
    #[arg(short = 'e', long, default_value_t = 60,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    epochs: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = Optimizer::Adam)]
    optimizer: Optimizer,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01, value_parser = values::positive)]
    learning_rate: f32,
    /// Momentum (Momentum, Nesterov), or the decay rate of RMSProp and AdaDelta.
    #[arg(long, default_value_t = 0.9, value_parser = values::probability)]
    momentum: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0, value_parser = values::non_negative)]
    l2: f32,
    /// L1 weight decay.
    #[arg(long, default_value_t = 0.0, value_parser = values::non_negative)]
    l1: f32,
    /// Seed of the weights, shuffling, dropout and denoising.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shuffle samples every epoch (the default follows the definition's ShuffleIndices).
    #[arg(long, overrides_with = "no_shuffle")]
    shuffle: bool,
    /// Keep the samples in order.
    #[arg(long)]
    no_shuffle: bool,
    /// Denoising probability for sparse inputs (overrides the definition's Denoising).
    #[arg(long, value_parser = values::probability)]
    denoising: Option<f32>,
    /// Write the checkpoint every N epochs, or at the first epoch's end N minutes after the
    /// last one (`10m`), and after the last epoch; in the background.
    #[arg(long, value_name = "N|Nm", default_value = "1")]
    checkpoint_every: CheckpointEvery,
    /// Continue an interrupted run from the model file's last checkpoint (the file must
    /// exist).
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace an existing model file (without this, train refuses to).
    #[arg(long)]
    overwrite: bool,
    /// Validation after every epoch: a folder from `destiny convert --validation-users`
    /// (NDCG@100 and Recall@20 on those users; the model file keeps the best epoch), or a
    /// dataset to report the loss on.
    #[arg(long)]
    validation: Option<PathBuf>,
    /// Stop after this many epochs without a better NDCG@100 on the validation users.
    #[arg(long)]
    patience: Option<usize>,
    /// A batch whose loss is NaN or infinite: `stop` the run (the model file keeps the last
    /// good checkpoint), or `skip-batch` (leave the weights as before it and go on; the loss
    /// is then read after every batch).
    #[arg(long, value_name = "stop|skip-batch", default_value = "stop")]
    on_nonfinite: NonFinite,
    /// Print the wall time of each phase (reading the data, starting the device, setting up
    /// the network, training, publishing the model) to standard error at the end.
    #[arg(long)]
    timings: bool,
    #[command(flatten)]
    compute: DeviceArgs,
}

/// Optimizers selectable on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Optimizer {
    Sgd,
    Momentum,
    Nesterov,
    Adagrad,
    Rmsprop,
    Adadelta,
    Adam,
}

impl TrainArgs {
    /// The run the flags ask for, with the definition's settings where a flag leaves them
    /// open.
    fn fit_options(
        &self,
        definition: &NetworkDefinition,
        model: &Path,
    ) -> anyhow::Result<FitOptions> {
        let optimizer = self
            .optimizer
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        let shuffle = if self.shuffle {
            Some(true)
        } else if self.no_shuffle {
            Some(false)
        } else {
            None
        };
        let request = RunRequest {
            batch_size: self.batch_size,
            epochs: self.epochs,
            optimizer,
            learning_rate: self.learning_rate,
            momentum: self.momentum,
            l1: self.l1,
            l2: self.l2,
            seed: self.seed,
            shuffle,
            denoising: self.denoising,
            checkpoint: Some(model.to_path_buf()),
            checkpoint_every: self.checkpoint_every,
            resume: self.resume,
            overwrite: self.overwrite,
            patience: self.patience,
            on_nonfinite: self.on_nonfinite,
        };
        Ok(request.fit_options(definition)?)
    }
}

/// Loads the datasets the definition's input and output layers name, from `-i`/`-o` (for a
/// network with one input and one output layer) or `--data NAME=FILE`.
fn load_bound_datasets(
    definition: &NetworkDefinition,
    input: Option<&PathBuf>,
    output: Option<&PathBuf>,
    named: &[String],
) -> anyhow::Result<Vec<Dataset>> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in named {
        let (name, file) = entry
            .split_once('=')
            .with_context(|| format!("--data '{entry}' is not NAME=FILE"))?;
        files.push((name.to_string(), PathBuf::from(file)));
    }
    Ok(destiny_data::bind::load_bound_datasets(
        definition,
        input.map(PathBuf::as_path),
        output.map(PathBuf::as_path),
        &files,
    )?)
}

struct Training<'a> {
    args: &'a TrainArgs,
    definition: NetworkDefinition,
    /// The run's options, checked before the datasets are read.
    options: FitOptions,
    /// The definition resolved against the datasets, once for every rank.
    topology: Topology,
    datasets: Vec<Dataset>,
    validation: Option<Validation>,
    /// Where the checkpoints go; uploaded once training has ended, if it is an object.
    model: Output,
    timings: &'a Timings,
}

impl RankTask for Training<'_> {
    type Output = ();

    fn size(&self) -> NetworkSize {
        NetworkSize::of(&self.topology)
    }

    fn run<B: Backend>(&self, backend: B, group: Group<B>) -> anyhow::Result<()> {
        let args = self.args;
        let options = &self.options;
        let ranks = describe_ranks(&group);
        let first = group.rank() == 0;
        if first {
            self.timings.lap("start the device");
        }
        let topology = self.topology.clone();
        let mut network = Network::new_in_group(backend, topology, args.seed, group)?;
        let mut data = TrainingData::new(&network, &self.datasets)?;
        if let Some(validation) = &self.validation {
            data = validation.bind_to(data, &network)?;
        }
        // Every rank trains; rank 0 reports (and writes the checkpoints).
        if !first {
            fit(&mut network, &data, options, &mut ())?;
            return Ok(());
        }
        self.timings.lap("set up the network and its data");
        let header = format!(
            "destiny: training '{}' ({} parameters) on {}{ranks}, {} samples, batch {}",
            self.definition.name,
            network.topology().parameter_count(),
            network.backend().name(),
            data.samples(),
            args.batch_size
        );
        let mut console = Console {
            model: &args.model,
            options,
            header,
            host_reason: data.host_reason().map(String::from),
            epoch: None,
        };
        let summary = fit(&mut network, &data, options, &mut console)?;
        self.timings.lap("train (checkpoints included)");
        self.model.publish()?;
        self.timings.lap("publish the model");
        if let Some(best) = summary.best {
            eprintln!(
                "destiny: {} holds epoch {}, the best on the validation users (NDCG@100 {:.4}, Recall@20 {:.4})",
                args.model.display(),
                best.epoch + 1,
                best.ndcg_at_100,
                best.recall_at_20
            );
        }
        Ok(())
    }
}

/// " and 1 other rank(s), model parallel" for a group of several ranks, else nothing.
fn describe_ranks<B: Backend>(group: &Group<B>) -> String {
    if group.size() == 1 {
        return String::new();
    }
    format!(
        " and {} other rank(s), {}",
        group.size() - 1,
        group.parallelism()
    )
}

/// Shows a run on stderr: whether it resumes, what it trains, then every epoch.
struct Console<'a> {
    model: &'a Path,
    options: &'a FitOptions,
    header: String,
    host_reason: Option<String>,
    epoch: Option<EpochProgress>,
}

impl FitObserver for Console<'_> {
    fn started(&mut self, start: &FitStart) {
        if let Some(state) = &start.resumed {
            if let Some(saved) = &state.options {
                let differences = self.options.training.differences(saved);
                if !differences.is_empty() {
                    eprintln!(
                        "destiny: note: resuming with options that differ from the interrupted run's: {}",
                        differences.join(", ")
                    );
                }
            }
            if state.epochs_done == start.epochs {
                eprintln!(
                    "destiny: {} has trained all {} epochs already: nothing to do",
                    self.model.display(),
                    start.epochs
                );
                return;
            }
            eprintln!(
                "destiny: resuming {} after epoch {}",
                self.model.display(),
                state.epochs_done
            );
        }
        eprintln!("{}", self.header);
        if let Some(reason) = &self.host_reason {
            eprintln!("destiny: {reason}: batches are gathered on the host");
        }
    }

    fn epoch_started(&mut self, epoch: usize) {
        self.epoch = Some(EpochProgress::new(epoch, self.options.epochs));
    }

    fn progress(&mut self, progress: &Progress) {
        if let Some(epoch) = &mut self.epoch {
            epoch.update(progress);
        }
    }

    fn epoch_end(&mut self, report: &EpochReport) -> ControlFlow<()> {
        if let Some(epoch) = self.epoch.take() {
            epoch.finish(report);
        }
        ControlFlow::Continue(())
    }
}

/// Runs `destiny train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let timings = Timings::new(args.timings);
    let definition = parse_network_file(Input::open(&args.config)?.path())?;
    // An object is trained into a local copy and uploaded when training ends.
    let model = Output::model(&args.model, args.resume, args.overwrite)?;
    let options = args.fit_options(&definition, model.path())?;
    let datasets = load_bound_datasets(
        &definition,
        args.input.as_ref(),
        args.output.as_ref(),
        &args.data,
    )?;
    let validation = args
        .validation
        .as_ref()
        .map(|path| Validation::load(&definition, path))
        .transpose()?;
    let topology = Topology::new(&definition, &dataset_shapes(&datasets))?;
    timings.lap("read the definition and the data");
    let task = Training {
        args,
        definition,
        options,
        topology,
        datasets,
        validation,
        model,
        timings: &timings,
    };
    with_ranks(&args.compute, &task)?;
    timings.report();
    Ok(())
}
