//! `destiny.train`: `destiny train` from Python, through the one training loop
//! (`destiny_core::train::fit`), with progress reported to a Python callback.

use crate::to_py;
use destiny_core::backend::Backend;
use destiny_core::config::parse_network_file;
use destiny_core::data::Dataset;
use destiny_core::model::{dataset_shapes, Network, Topology};
use destiny_core::parallel::rendezvous::Launch;
use destiny_core::parallel::Group;
use destiny_core::run::{CheckpointEvery, FitOptions, NonFinite, RunRequest};
use destiny_core::train::{
    fit, EpochReport, FitObserver, FitStart, FitSummary, Progress, TrainingData,
};
use destiny_cuda::ranks::{with_ranks, NetworkSize, ParallelChoice, RankTask};
use destiny_cuda::{DeviceChoice, Precision};
use destiny_data::bind::{load_bound_datasets, Validation};
use destiny_storage::{Input, Output};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Mutex;

/// Reports a run to a Python callable: dicts with `event` "start", "progress" or "epoch".
/// A callback that returns `False` for an "epoch" event ends the run there; one that
/// raises ends it too, and its exception is raised by `train`.
struct Callback {
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
    device: String,
}

impl Callback {
    /// Calls the callback with `fields`, unless it already failed; returns what it returned.
    fn call(&mut self, fields: &[(&str, Option<f64>)], event: &str) -> Option<bool> {
        let callback = self.callback.as_ref()?;
        if self.error.is_some() {
            return None;
        }
        Python::attach(|py| {
            let result = (|| {
                let dict = PyDict::new(py);
                dict.set_item("event", event)?;
                for (key, value) in fields {
                    dict.set_item(*key, *value)?;
                }
                dict.set_item("device", &self.device)?;
                let returned = callback.call1(py, (dict,))?;
                Ok::<_, PyErr>(!returned.bind(py).is(&*pyo3::types::PyBool::new(py, false)))
            })();
            match result {
                Ok(go_on) => Some(go_on),
                Err(error) => {
                    self.error = Some(error);
                    None
                }
            }
        })
    }
}

impl FitObserver for Callback {
    fn started(&mut self, start: &FitStart) {
        let resumed = start.resumed.as_ref().map(|s| s.epochs_done as f64);
        self.call(
            &[
                ("first_epoch", Some(start.first_epoch as f64)),
                ("epochs", Some(start.epochs as f64)),
                ("resumed_after", resumed),
            ],
            "start",
        );
    }

    fn progress(&mut self, progress: &Progress) {
        self.call(
            &[
                ("epoch", Some(progress.epoch as f64)),
                ("samples_done", Some(progress.samples_done as f64)),
                ("samples", Some(progress.samples as f64)),
                ("loss", Some(progress.loss)),
                ("samples_per_second", Some(progress.samples_per_second)),
            ],
            "progress",
        );
    }

    fn epoch_end(&mut self, report: &EpochReport) -> ControlFlow<()> {
        let summary = &report.summary;
        let go_on = self.call(
            &[
                ("epoch", Some(summary.epoch as f64)),
                ("loss", Some(summary.loss)),
                ("validation_loss", report.validation_loss),
                ("ndcg_at_100", report.validation.map(|v| v.ndcg_at_100)),
                ("recall_at_20", report.validation.map(|v| v.recall_at_20)),
                (
                    "best",
                    report.validation.map(|_| f64::from(u8::from(report.best))),
                ),
                ("samples", Some(summary.samples as f64)),
                ("skipped_batches", Some(summary.skipped_batches as f64)),
                ("seconds", Some(summary.seconds)),
            ],
            "epoch",
        );
        if go_on == Some(false) || self.error.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// A run on every rank of the chosen devices; this process's first rank reports to the
/// callback.
struct Training {
    /// The definition resolved against the datasets, once for every rank.
    topology: Topology,
    datasets: Vec<Dataset>,
    validation: Option<Validation>,
    options: FitOptions,
    /// Where rank 0 writes the checkpoints; uploaded when training ends, if an object.
    model: Output,
    callback: Mutex<Callback>,
    /// The rank that reports: rank 0, or this process's one rank of a launched job.
    reporter: usize,
}

impl RankTask for Training {
    type Output = FitSummary;

    fn size(&self) -> NetworkSize {
        NetworkSize::of(&self.topology)
    }

    fn run<B: Backend>(&self, backend: B, group: Group<B>) -> anyhow::Result<FitSummary> {
        let seed = self.options.training.seed;
        let rank = group.rank();
        let topology = self.topology.clone();
        let mut network = Network::new_in_group(backend, topology, seed, group)?;
        let mut data = TrainingData::new(&network, &self.datasets)?;
        if let Some(validation) = &self.validation {
            data = validation.bind_to(data, &network)?;
        }
        let summary = if rank != self.reporter {
            fit(&mut network, &data, &self.options, &mut ())?
        } else {
            let mut callback = self.callback.lock().expect("the callback's rank panicked");
            callback.device = network.backend().name();
            fit(&mut network, &data, &self.options, &mut *callback)?
        };
        if rank == 0 {
            self.model.publish()?;
        }
        Ok(summary)
    }
}

/// Trains a network, as `destiny train`: see `destiny.train`.
#[pyfunction]
#[pyo3(signature = (
    config, data = None, *, model, output = None, datasets = None, batch_size = 256,
    epochs = 60, optimizer = "adam", learning_rate = 0.01, momentum = 0.9, l2 = 0.0, l1 = 0.0,
    seed = 1, shuffle = None, denoising = None, resume = false, overwrite = false,
    checkpoint_every = "1", validation = None, patience = None, on_nonfinite = "stop",
    device = "auto", parallel = "auto", precision = "fp32", progress = None
))]
#[allow(clippy::too_many_arguments)]
fn train<'py>(
    py: Python<'py>,
    config: PathBuf,
    data: Option<PathBuf>,
    model: PathBuf,
    output: Option<PathBuf>,
    datasets: Option<Vec<(String, PathBuf)>>,
    batch_size: usize,
    epochs: usize,
    optimizer: &str,
    learning_rate: f32,
    momentum: f32,
    l2: f32,
    l1: f32,
    seed: u64,
    shuffle: Option<bool>,
    denoising: Option<f32>,
    resume: bool,
    overwrite: bool,
    checkpoint_every: &str,
    validation: Option<PathBuf>,
    patience: Option<usize>,
    on_nonfinite: &str,
    device: &str,
    parallel: &str,
    precision: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let device: DeviceChoice = device.parse().map_err(to_py)?;
    let parallel: ParallelChoice = parallel.parse().map_err(to_py)?;
    let precision: Precision = precision.parse().map_err(to_py)?;
    let on_nonfinite: NonFinite = on_nonfinite.parse().map_err(to_py)?;
    let checkpoint_every: CheckpointEvery = checkpoint_every.parse().map_err(to_py)?;
    let named = datasets.unwrap_or_default();
    let callback = Callback {
        callback: progress,
        error: None,
        device: String::new(),
    };
    let (summary, callback) = py
        .detach(|| -> anyhow::Result<_> {
            let definition = parse_network_file(Input::open(&config)?.path())?;
            // An object is trained into a local copy and uploaded when training ends.
            let model_file = Output::model(&model, resume, overwrite)?;
            let request = RunRequest {
                batch_size,
                epochs,
                optimizer: optimizer.to_string(),
                learning_rate,
                momentum,
                l1,
                l2,
                seed,
                shuffle,
                denoising,
                checkpoint: Some(model_file.path().to_path_buf()),
                checkpoint_every,
                resume,
                overwrite,
                patience,
                on_nonfinite,
            };
            let options = request.fit_options(&definition)?;
            let datasets =
                load_bound_datasets(&definition, data.as_deref(), output.as_deref(), &named)?;
            let validation = validation
                .as_deref()
                .map(|path| Validation::load(&definition, path))
                .transpose()?;
            let topology = Topology::new(&definition, &dataset_shapes(&datasets))?;
            let training = Training {
                topology,
                datasets,
                validation,
                options,
                model: model_file,
                callback: Mutex::new(callback),
                reporter: Launch::from_env()?.map_or(0, |launch| launch.rank),
            };
            let mut summaries = with_ranks(&device, parallel, precision, &training)?;
            let callback = training
                .callback
                .into_inner()
                .expect("the callback's rank panicked");
            Ok((summaries.swap_remove(0), callback))
        })
        .map_err(to_py)?;
    if let Some(error) = callback.error {
        return Err(error);
    }
    let result = PyDict::new(py);
    result.set_item("model", crate::path_to_python(py, &model)?)?;
    result.set_item("device", callback.device)?;
    result.set_item("first_epoch", summary.first_epoch)?;
    result.set_item("epochs_done", summary.epochs_done())?;
    result.set_item("stopped_early", summary.stopped_early)?;
    if let Some(best) = summary.best {
        let figures = PyDict::new(py);
        figures.set_item("epoch", best.epoch)?;
        figures.set_item("ndcg_at_100", best.ndcg_at_100)?;
        figures.set_item("recall_at_20", best.recall_at_20)?;
        result.set_item("best", figures)?;
    }
    let reports = summary
        .epochs
        .iter()
        .map(|report| {
            let epoch = PyDict::new(py);
            epoch.set_item("epoch", report.summary.epoch)?;
            epoch.set_item("loss", report.summary.loss)?;
            epoch.set_item("validation_loss", report.validation_loss)?;
            if let Some(figures) = report.validation {
                epoch.set_item("ndcg_at_100", figures.ndcg_at_100)?;
                epoch.set_item("recall_at_20", figures.recall_at_20)?;
                epoch.set_item("best", report.best)?;
            }
            epoch.set_item("samples", report.summary.samples)?;
            epoch.set_item("skipped_batches", report.summary.skipped_batches)?;
            epoch.set_item("seconds", report.summary.seconds)?;
            Ok(epoch)
        })
        .collect::<PyResult<Vec<_>>>()?;
    result.set_item("epochs", reports)?;
    Ok(result)
}

/// Adds the training function to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train, m)?)
}
