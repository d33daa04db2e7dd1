//! `destiny._destiny`: the native half of the `destiny` Python package. Every function calls
//! the same library functions as the `destiny` command, with the same options and defaults;
//! Arrow data crosses through the Arrow C data interface, without copies.

mod arrow;
mod model;
mod prepare;
mod train;

use destiny_data::clean::CleanOptions;
use destiny_data::convert::{convert as convert_file, write_conversion, ConvertOptions};
use destiny_data::read::{Columns, Format, ReadOptions};
use destiny_data::split::Split;
use destiny_storage::{Input, Output};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::{Path, PathBuf};

pyo3::create_exception!(
    _destiny,
    DestinyError,
    pyo3::exceptions::PyException,
    "A failure inside Destiny, with the message the `destiny` command prints."
);

/// A Python exception carrying `error`'s message (and the messages of its causes, as the
/// command prints them).
pub(crate) fn to_py(error: impl std::fmt::Display) -> PyErr {
    DestinyError::new_err(format!("{error:#}"))
}

/// A path for Python: a `pathlib.Path`, or for an object its `s3://` URL as a string (a
/// `Path` would fold the URL's `//`).
pub(crate) fn path_to_python<'py>(py: Python<'py>, path: &Path) -> PyResult<Bound<'py, PyAny>> {
    if destiny_storage::is_object(path) {
        Ok(path.to_string_lossy().into_pyobject(py)?.into_any())
    } else {
        Ok(path.into_pyobject(py)?.into_any())
    }
}

/// Raw interactions to datasets and indices in `out_dir`, as `destiny convert --out-dir`.
/// Returns one dict per dataset written: file, samples, features, interactions.
#[pyfunction]
#[pyo3(signature = (
    input, out_dir, *, format = "auto", delimiter = None, header = None, user_column = None,
    item_column = None, rating_column = None, timestamp_column = None, dsstne_values = false,
    min_rating = None, min_user_interactions = 1, min_item_interactions = 1,
    keep_ratings = false, split = "none", test_users = 0, validation_users = 0,
    holdout_fraction = 0.2, seed = 1
))]
#[allow(clippy::too_many_arguments)]
fn convert<'py>(
    py: Python<'py>,
    input: PathBuf,
    out_dir: PathBuf,
    format: &str,
    delimiter: Option<String>,
    header: Option<bool>,
    user_column: Option<String>,
    item_column: Option<String>,
    rating_column: Option<String>,
    timestamp_column: Option<String>,
    dsstne_values: bool,
    min_rating: Option<f32>,
    min_user_interactions: usize,
    min_item_interactions: usize,
    keep_ratings: bool,
    split: &str,
    test_users: usize,
    validation_users: usize,
    holdout_fraction: f64,
    seed: u64,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let (format, delimiter) = Format::choose(format, delimiter.as_deref()).map_err(to_py)?;
    let options = ConvertOptions {
        read: ReadOptions {
            format,
            delimiter,
            header,
            columns: Columns {
                user: user_column,
                item: item_column,
                rating: rating_column,
                timestamp: timestamp_column,
            },
            dsstne_values,
        },
        clean: CleanOptions {
            min_rating,
            min_user_interactions,
            min_item_interactions,
            keep_ratings,
        },
        split: Split::choose(split, test_users, validation_users, holdout_fraction)
            .map_err(to_py)?,
        seed,
        features: None,
        drop_unknown_items: false,
    };
    let sets = py
        .detach(|| {
            let conversion = Input::open(&input)
                .and_then(|file| convert_file(file.path(), &options))
                .map_err(|e| format!("converting {}: {e}", input.display()))?;
            let folder = Output::folder(&out_dir).map_err(|e| e.to_string())?;
            let sets = write_conversion(folder.path(), &conversion)
                .and_then(|sets| folder.publish().map(|()| sets))
                .map_err(|e| format!("writing into {}: {e}", out_dir.display()))?;
            Ok::<_, String>(sets)
        })
        .map_err(to_py)?;
    written(py, sets)
}

/// The datasets a conversion wrote, as dicts: file, samples, features, interactions.
fn written(
    py: Python<'_>,
    sets: Vec<destiny_data::convert::WrittenDataset>,
) -> PyResult<Vec<Bound<'_, PyDict>>> {
    sets.into_iter()
        .map(|set| {
            let dict = PyDict::new(py);
            dict.set_item("file", set.file)?;
            dict.set_item("samples", set.samples)?;
            dict.set_item("features", set.features)?;
            dict.set_item("interactions", set.interactions)?;
            Ok(dict)
        })
        .collect()
}

/// Scores recommendations against held-out interactions, as `destiny evaluate`: one dict
/// per system and K (system, k, precision, recall, ndcg, map, users), and a PNG plot of the
/// metrics against K when `plot` names one. `recs` are recommendation files (DSSTNE's recs
/// format) or Arrow tables in long form (user, item, and rank or score).
#[pyfunction]
#[pyo3(signature = (truth, recs, *, labels = None, features = None, k = vec![10, 20, 50, 100], plot = None))]
fn evaluate<'py>(
    py: Python<'py>,
    truth: PathBuf,
    recs: Vec<Bound<'py, PyAny>>,
    labels: Option<Vec<String>>,
    features: Option<PathBuf>,
    k: Vec<usize>,
    plot: Option<PathBuf>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let truth_path = truth;
    let truth = py
        .detach(|| -> destiny_core::Result<_> {
            let truth = Input::open_with_siblings(&truth_path, &[destiny_data::FEATURE_INDEX])?;
            let features = Input::open_optional(features.as_deref())?;
            destiny_eval::read_truth(truth.path(), features.as_ref().map(Input::path))
        })
        .map_err(|e| to_py(format!("reading {}: {e}", truth_path.display())))?;
    if let Some(labels) = labels.as_ref().filter(|l| l.len() != recs.len()) {
        return Err(to_py(format!(
            "{} labels for {} recommendation sets: give one label per set, in order",
            labels.len(),
            recs.len()
        )));
    }
    let mut systems = Vec::with_capacity(recs.len());
    for (n, system) in recs.iter().enumerate() {
        let (recommendations, name) = arrow::recommendations(system)?;
        let label = labels
            .as_ref()
            .and_then(|l| l.get(n).cloned())
            .unwrap_or(name);
        let metrics =
            destiny_eval::evaluate_recommendations(&truth, &recommendations, &k).map_err(to_py)?;
        systems.push((label, metrics));
    }
    if let Some(plot) = &plot {
        py.detach(|| -> anyhow::Result<()> {
            let file = Output::file(plot)?;
            destiny_eval::plot::plot_metrics(file.path(), &systems, 1200, 900)?;
            Ok(file.publish()?)
        })
        .map_err(to_py)?;
    }
    let mut rows = Vec::new();
    for (label, metrics) in &systems {
        for m in metrics {
            let dict = PyDict::new(py);
            dict.set_item("system", label)?;
            dict.set_item("k", m.k)?;
            dict.set_item("precision", m.precision)?;
            dict.set_item("recall", m.recall)?;
            dict.set_item("ndcg", m.ndcg)?;
            dict.set_item("map", m.map)?;
            dict.set_item("users", m.users)?;
            dict.set_item("short_lists", m.short_lists)?;
            rows.push(dict);
        }
    }
    Ok(rows)
}

/// The native module.
#[pymodule]
fn _destiny(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DestinyError", m.py().get_type::<DestinyError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_class::<model::Model>()?;
    train::register(m)?;
    prepare::register(m)?;
    Ok(())
}
