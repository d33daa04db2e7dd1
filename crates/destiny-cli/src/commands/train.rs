//! `destiny train`: trains a network defined in DSSTNE's language on datasets made by
//! `destiny convert`, writing the model (and a checkpoint of it after every epoch).

use crate::device::{with_backend, BackendTask, DeviceArgs};
use crate::progress::EpochProgress;
use anyhow::{bail, Context};
use destiny_core::backend::{Backend, OptimizerKind};
use destiny_core::config::{parse_network_file, LayerKind, NetworkDefinition};
use destiny_core::data::Dataset;
use destiny_core::model::{dataset_shapes, Network, OptimizerSettings, Topology};
use destiny_core::model_file::{load_model, save_model, TrainingState};
use destiny_core::train::{evaluate_loss, train_epoch, TrainingData, TrainingOptions};
use std::path::PathBuf;

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
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    batch_size: usize,
    /// Epochs to train in all (a resumed run trains the ones still missing).
    #[arg(short = 'e', long, default_value_t = 60)]
    epochs: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = Optimizer::Adam)]
    optimizer: Optimizer,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01)]
    learning_rate: f32,
    /// Momentum (Momentum, Nesterov), or the decay rate of RMSProp and AdaDelta.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    l2: f32,
    /// L1 weight decay.
    #[arg(long, default_value_t = 0.0)]
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
    #[arg(long)]
    denoising: Option<f32>,
    /// Continue an interrupted run from the model file's last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Dataset to report the loss on after every epoch (same layer names).
    #[arg(long)]
    validation: Option<PathBuf>,
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
    fn optimizer(&self) -> OptimizerSettings {
        let momentum = self.momentum;
        let kind = match self.optimizer {
            Optimizer::Sgd => OptimizerKind::Sgd,
            Optimizer::Momentum => OptimizerKind::Momentum { momentum },
            Optimizer::Nesterov => OptimizerKind::Nesterov { momentum },
            Optimizer::Adagrad => OptimizerKind::AdaGrad { epsilon: 1e-8 },
            Optimizer::Rmsprop => OptimizerKind::RmsProp {
                rho: momentum,
                epsilon: 1e-8,
            },
            Optimizer::Adadelta => OptimizerKind::AdaDelta {
                rho: momentum,
                epsilon: 1e-6,
            },
            Optimizer::Adam => OptimizerKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
            },
        };
        OptimizerSettings {
            kind,
            learning_rate: self.learning_rate,
            l1: self.l1,
            l2: self.l2,
        }
    }
}

/// Loads the datasets the definition's input and output layers name, from `-i`/`-o` (for a
/// network with one input and one output layer) or `--data NAME=FILE`.
pub fn load_bound_datasets(
    definition: &NetworkDefinition,
    input: Option<&PathBuf>,
    output: Option<&PathBuf>,
    named: &[String],
    with_targets: bool,
) -> anyhow::Result<Vec<Dataset>> {
    let names_of = |kind: LayerKind| -> Vec<String> {
        definition
            .layers
            .iter()
            .filter(|l| l.kind == kind)
            .filter_map(|l| l.dataset.clone())
            .collect()
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in named {
        let (name, file) = entry
            .split_once('=')
            .with_context(|| format!("--data '{entry}' is not NAME=FILE"))?;
        files.push((name.to_string(), PathBuf::from(file)));
    }
    let mut bind = |flag: &str, path: Option<&PathBuf>, names: Vec<String>| -> anyhow::Result<()> {
        let Some(path) = path else { return Ok(()) };
        match names.as_slice() {
            [name] => files.push((name.clone(), path.clone())),
            [] => bail!("{flag} was given but the network has no such layer with a DataSet"),
            _ => bail!(
                "the network has several layers of that kind ({}): use --data NAME=FILE",
                names.join(", ")
            ),
        }
        Ok(())
    };
    bind("-i", input, names_of(LayerKind::Input))?;
    if with_targets {
        bind("-o", output.or(input), names_of(LayerKind::Output))?;
    }
    let mut datasets = Vec::new();
    for (name, path) in files {
        if datasets.iter().any(|d: &Dataset| d.name == name) {
            continue;
        }
        let mut dataset = crate::datasets::read(&path)?;
        dataset.name = name;
        datasets.push(dataset);
    }
    Ok(datasets)
}

struct Training<'a> {
    args: &'a TrainArgs,
    definition: NetworkDefinition,
    datasets: Vec<Dataset>,
    validation: Option<Vec<Dataset>>,
}

impl BackendTask for Training<'_> {
    type Output = ();
    type Error = anyhow::Error;

    fn run<B: Backend + 'static>(self, backend: B) -> anyhow::Result<()> {
        let args = self.args;
        let optimizer = args.optimizer();
        let shuffle = if args.shuffle {
            true
        } else if args.no_shuffle {
            false
        } else {
            self.definition.shuffle_indices
        };
        let options = TrainingOptions {
            batch_size: args.batch_size,
            optimizer,
            seed: args.seed,
            shuffle,
            denoising: args.denoising.or(self.definition.denoising),
        };
        let topology = Topology::new(&self.definition, &dataset_shapes(&self.datasets))?;
        let (mut network, first_epoch) = if args.resume && args.model.exists() {
            let file = load_model(&args.model)?;
            if file.topology.definition != topology.definition {
                bail!(
                    "{} was trained with another network definition than {}",
                    args.model.display(),
                    args.config.display()
                );
            }
            let done = file.training.epochs_done;
            if let Some(saved) = file.training.options {
                if saved != options {
                    eprintln!("destiny: note: resuming with options that differ from the interrupted run's");
                }
            }
            eprintln!(
                "destiny: resuming {} after epoch {done}",
                args.model.display()
            );
            (file.into_network(backend)?, done)
        } else {
            (Network::new(backend, topology, args.seed)?, 0)
        };
        eprintln!(
            "destiny: training '{}' ({} parameters) on {}, {} samples, batch {}",
            self.definition.name,
            network.topology().parameter_count(),
            network.backend().name(),
            self.datasets[0].rows.len(),
            args.batch_size
        );
        let data = TrainingData::new(&network, &self.datasets)?;
        if let Some(reason) = data.host_reason() {
            eprintln!("destiny: {reason}: batches are gathered on the host");
        }
        for epoch in first_epoch..args.epochs {
            let mut progress = EpochProgress::new(epoch, args.epochs);
            let summary = train_epoch(&mut network, &data, &options, epoch, &mut |p| {
                progress.update(p)
            })?;
            let validation = match &self.validation {
                Some(datasets) => Some(evaluate_loss(&mut network, datasets, args.batch_size)?),
                None => None,
            };
            progress.finish(&summary, validation);
            let state = TrainingState {
                epochs_done: epoch + 1,
                steps: network.steps(),
                optimizer: Some(optimizer),
                options: Some(options),
            };
            save_model(&args.model, &network, &state)?;
        }
        Ok(())
    }
}

/// Runs `destiny train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let definition = parse_network_file(&args.config)?;
    let datasets = load_bound_datasets(
        &definition,
        args.input.as_ref(),
        args.output.as_ref(),
        &args.data,
        true,
    )?;
    let validation = args
        .validation
        .as_ref()
        .map(|path| load_bound_datasets(&definition, Some(path), None, &[], true))
        .transpose()?;
    with_backend(
        &args.compute,
        Training {
            args,
            definition,
            datasets,
            validation,
        },
    )
}
