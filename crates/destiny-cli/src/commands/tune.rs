//! `destiny tune`: model search on validation users. Every combination of the definitions,
//! learning rates, hidden widths, denoising probabilities and L2 weights asked for is
//! trained with early stopping on the validation users of a `destiny convert` folder; the
//! table of trials is printed, and the best model and its definition are written. Only
//! `train.arrow` and the `validation_*` datasets are read: the test users play no part.

use crate::device::DeviceArgs;
use anyhow::{bail, Context};
use destiny_core::backend::Backend;
use destiny_core::config::{parse_network, LayerKind, NetworkDefinition, Width};
use destiny_core::model::{dataset_shapes, Network, Topology};
use destiny_core::run::{CheckpointEvery, NonFinite, RunRequest, ValidationFigures};
use destiny_core::train::{fit, TrainingData};
use destiny_cuda::{with_backend, BackendTask};
use destiny_data::bind::{load_bound_datasets, Validation, VALIDATION_FILES};
use destiny_storage::{Input, Output};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `destiny tune`.
#[derive(clap::Args)]
pub struct TuneArgs {
    /// Network definitions to try (DSSTNE's JSON language), one or more.
    #[arg(short = 'c', long = "config", required = true)]
    configs: Vec<PathBuf>,
    /// Folder from `destiny convert --validation-users`: train.arrow and the validation
    /// users' validation_input.arrow and validation_target.arrow.
    #[arg(long)]
    data: PathBuf,
    /// Folder to write the best model (model.safetensors), its definition (config.json),
    /// its settings (best.json) and every trial (trials.json, trials/).
    #[arg(long)]
    out_dir: PathBuf,
    /// Learning rates to try (Adam).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.001")]
    learning_rates: Vec<f32>,
    /// Widths of the hidden layers to try (default: each definition's own).
    #[arg(long, value_delimiter = ',')]
    hidden: Vec<usize>,
    /// Denoising probabilities to try (default: each definition's own).
    #[arg(long, value_delimiter = ',')]
    denoising: Vec<f32>,
    /// L2 weights to try (on weights).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    l2: Vec<f32>,
    /// Most epochs of a trial.
    #[arg(short = 'e', long, default_value_t = 100)]
    epochs: usize,
    /// Epochs without a better NDCG@100 that end a trial.
    #[arg(long, default_value_t = 10)]
    patience: usize,
    /// Samples per mini-batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    batch_size: usize,
    /// Seed of every trial's weights, shuffling and masks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    compute: DeviceArgs,
}

/// One point of the search space.
#[derive(Debug, Clone)]
struct Candidate {
    config: PathBuf,
    /// The definition as written, with this candidate's hidden width and denoising.
    source: Value,
    definition: NetworkDefinition,
    learning_rate: f32,
    l2: f32,
}

/// What a trial reached.
struct Outcome {
    best: ValidationFigures,
    epochs: usize,
    seconds: f64,
}

/// How a trial ended: trained (to its last epoch or its patience), or stopped because its
/// loss or weights stopped being finite (a learning rate too high for the network), which
/// leaves the other trials to choose from.
enum TrialEnd {
    Trained(Outcome),
    Diverged(String),
}

/// `Some(values)` as a list of options, or `[None]` (keep the definition's own).
fn or_own<T: Copy>(values: &[T]) -> Vec<Option<T>> {
    if values.is_empty() {
        vec![None]
    } else {
        values.iter().copied().map(Some).collect()
    }
}

/// The value of `key` in a JSON object, matched without case as DSSTNE's parser does.
fn field<'a>(object: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    object
        .as_object_mut()?
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// `source` with every hidden layer `hidden` wide and the denoising probability `denoising`,
/// where given.
fn vary(mut source: Value, hidden: Option<usize>, denoising: Option<f32>) -> Value {
    if let Some(width) = hidden {
        if let Some(Value::Array(layers)) = field(&mut source, "Layers") {
            for layer in layers {
                let kind = field(layer, "Kind").and_then(|k| k.as_str().map(str::to_owned));
                if kind.is_some_and(|k| k.eq_ignore_ascii_case("Hidden")) {
                    match field(layer, "N") {
                        Some(n) => *n = json!(width),
                        None => {
                            layer
                                .as_object_mut()
                                .map(|l| l.insert("N".into(), json!(width)));
                        }
                    }
                }
            }
        }
    }
    if let Some(p) = denoising {
        let object = source.as_object_mut().expect("a definition is an object");
        object.retain(|k, _| !k.eq_ignore_ascii_case("Denoising"));
        object.insert("Denoising".into(), json!({ "p": p }));
    }
    source
}

/// Every candidate of the space, in a fixed order.
fn candidates(args: &TuneArgs) -> anyhow::Result<Vec<Candidate>> {
    let mut all = Vec::new();
    for config in &args.configs {
        let text = std::fs::read_to_string(Input::open(config)?.path())
            .with_context(|| format!("reading {}", config.display()))?;
        let source: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: tune varies plain JSON definitions", config.display()))?;
        for hidden in or_own(&args.hidden) {
            for denoising in or_own(&args.denoising) {
                let source = vary(source.clone(), hidden, denoising);
                let definition = parse_network(&source.to_string(), &config.display().to_string())?;
                if hidden.is_some()
                    && !definition
                        .layers
                        .iter()
                        .any(|l| l.kind == LayerKind::Hidden)
                {
                    bail!("{}: no hidden layer to make wider", config.display());
                }
                for &learning_rate in &args.learning_rates {
                    for &l2 in &args.l2 {
                        all.push(Candidate {
                            config: config.clone(),
                            source: source.clone(),
                            definition: definition.clone(),
                            learning_rate,
                            l2,
                        });
                    }
                }
            }
        }
    }
    Ok(all)
}

/// One trial on the chosen backend.
struct Trial<'a> {
    args: &'a TuneArgs,
    candidate: &'a Candidate,
    /// The folder of `--data` (a local copy of the files tune reads, for a prefix in a
    /// bucket).
    data: &'a Path,
    model: PathBuf,
}

impl BackendTask for Trial<'_> {
    type Output = TrialEnd;
    type Error = anyhow::Error;

    fn run<B: Backend + 'static>(self, backend: B) -> anyhow::Result<TrialEnd> {
        let (args, candidate) = (self.args, self.candidate);
        let definition = &candidate.definition;
        let train = self.data.join("train.arrow");
        let datasets = load_bound_datasets(definition, Some(&train), None, &[])?;
        let validation = Validation::load(definition, self.data)?;
        if !matches!(validation, Validation::Users(_)) {
            bail!("{}: not a folder of validation users", args.data.display());
        }
        let topology = Topology::new(definition, &dataset_shapes(&datasets))?;
        let mut network = Network::new(backend, topology, args.seed)?;
        let data = TrainingData::new(&network, &datasets)?;
        let data = validation.bind_to(data, &network)?;
        let request = RunRequest {
            batch_size: args.batch_size,
            epochs: args.epochs,
            optimizer: "adam".into(),
            learning_rate: candidate.learning_rate,
            momentum: 0.9,
            l1: 0.0,
            l2: candidate.l2,
            seed: args.seed,
            shuffle: None,
            denoising: None,
            checkpoint: Some(self.model),
            checkpoint_every: CheckpointEvery::Epochs(1),
            resume: false,
            // The trial's own file in tune's folder, from an earlier search at most.
            overwrite: true,
            patience: Some(args.patience),
            on_nonfinite: NonFinite::Stop,
        };
        let start = Instant::now();
        let summary = match fit(
            &mut network,
            &data,
            &request.fit_options(definition)?,
            &mut (),
        ) {
            Ok(summary) => summary,
            Err(destiny_core::Error::Numerics(why)) => return Ok(TrialEnd::Diverged(why)),
            Err(error) => return Err(error.into()),
        };
        Ok(TrialEnd::Trained(Outcome {
            best: summary.best.context("a trial trained no epoch")?,
            epochs: summary.epochs_done(),
            seconds: start.elapsed().as_secs_f64(),
        }))
    }
}

/// The hidden widths of a definition, for the table.
fn hidden_widths(definition: &NetworkDefinition) -> String {
    let widths: Vec<String> = definition
        .layers
        .iter()
        .filter(|l| l.kind == LayerKind::Hidden)
        .map(|l| match l.width {
            Width::Fixed(n) => n.to_string(),
            Width::Auto => "auto".into(),
        })
        .collect();
    widths.join("/")
}

/// A setting for the table: as written (0.01), or in exponent form when very large or small
/// (1e38, 1e-5).
fn shown(value: f32) -> String {
    if value != 0.0 && !(1e-3..1e4).contains(&value.abs()) {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

/// An `f32` setting as the decimal it was written as (0.01, not 0.009999999776).
fn decimal(value: f32) -> f64 {
    value.to_string().parse().expect("a float's display parses")
}

/// A trial as a JSON record: its settings, and its figures or why it diverged.
fn record(number: usize, candidate: &Candidate, end: &TrialEnd) -> Value {
    let mut record = json!({
        "trial": number,
        "config": candidate.config,
        "network": candidate.definition.name,
        "hidden": hidden_widths(&candidate.definition),
        "denoising": candidate.definition.denoising,
        "learning_rate": decimal(candidate.learning_rate),
        "l2": decimal(candidate.l2),
    });
    let figures = match end {
        TrialEnd::Trained(outcome) => json!({
            "best_epoch": outcome.best.epoch + 1,
            "epochs": outcome.epochs,
            "ndcg_at_100": outcome.best.ndcg_at_100,
            "recall_at_20": outcome.best.recall_at_20,
            "seconds": outcome.seconds,
        }),
        TrialEnd::Diverged(why) => json!({ "diverged": why }),
    };
    let (Value::Object(record_fields), Value::Object(more)) = (&mut record, figures) else {
        unreachable!("both are objects")
    };
    record_fields.extend(more);
    record
}

fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    destiny_core::atomic::write_file(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// Runs `destiny tune`.
pub fn run(args: &TuneArgs) -> anyhow::Result<()> {
    let space = candidates(args)?;
    // What tune reads of the data folder, and nothing else (never the test users' files).
    let [fold_in, held_out] = VALIDATION_FILES;
    let data = Input::open_file_or_folder(&args.data, &["train.arrow", fold_in, held_out])?;
    let out_dir = Output::folder(&args.out_dir)?;
    let trials_dir = out_dir.path().join("trials");
    std::fs::create_dir_all(&trials_dir)
        .with_context(|| format!("creating {}", trials_dir.display()))?;
    println!(
        "{:>3}  {:<22} {:>7} {:>9} {:>8} {:>7} {:>6} {:>9} {:>9} {:>7}",
        "#", "network", "hidden", "denoising", "lr", "l2", "epoch", "NDCG@100", "Recall@20", "s"
    );
    let mut records = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    for (number, candidate) in space.iter().enumerate() {
        let model = trials_dir.join(format!("{number}.safetensors"));
        let trial = Trial {
            args,
            candidate,
            data: data.path(),
            model,
        };
        let end = with_backend(&args.compute.device, args.compute.precision, trial)?;
        let settings = format!(
            "{number:>3}  {:<22} {:>7} {:>9} {:>8} {:>7}",
            candidate.definition.name,
            hidden_widths(&candidate.definition),
            candidate
                .definition
                .denoising
                .map_or("-".into(), |p| p.to_string()),
            shown(candidate.learning_rate),
            shown(candidate.l2),
        );
        match &end {
            TrialEnd::Trained(outcome) => {
                println!(
                    "{settings} {:>6} {:>9.4} {:>9.4} {:>7.1}",
                    outcome.best.epoch + 1,
                    outcome.best.ndcg_at_100,
                    outcome.best.recall_at_20,
                    outcome.seconds
                );
                if best.is_none_or(|(_, ndcg)| outcome.best.ndcg_at_100 > ndcg) {
                    best = Some((number, outcome.best.ndcg_at_100));
                }
            }
            TrialEnd::Diverged(why) => println!("{settings}  diverged: {why}"),
        }
        records.push(record(number, candidate, &end));
    }
    let (number, _) = best.context(if space.is_empty() {
        "the search space is empty"
    } else {
        "every trial diverged: try lower learning rates"
    })?;
    let chosen = &space[number];
    let model = out_dir.path().join("model.safetensors");
    let trial_model = trials_dir.join(format!("{number}.safetensors"));
    destiny_core::atomic::write_path(&model, |temporary| {
        std::fs::copy(&trial_model, temporary)
            .map(|_| ())
            .map_err(|e| destiny_core::Error::io(&trial_model, e))
    })?;
    write_json(&out_dir.path().join("config.json"), &chosen.source)?;
    write_json(&out_dir.path().join("best.json"), &records[number])?;
    write_json(&out_dir.path().join("trials.json"), &Value::Array(records))?;
    out_dir.publish()?;
    println!(
        "chose trial {number} ({}): {} and {}",
        chosen.definition.name,
        args.out_dir.join("model.safetensors").display(),
        args.out_dir.join("config.json").display()
    );
    Ok(())
}
