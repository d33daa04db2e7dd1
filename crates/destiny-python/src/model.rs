//! `destiny.Model`: a trained model loaded once onto a device, predicting the top-K of Arrow
//! batches, as `destiny predict` does for a dataset file.

use crate::{arrow, to_py};
use destiny_core::backend::Backend;
use destiny_core::data::{Dataset, Rows, SparseRows};
use destiny_core::model::Network;
use destiny_core::model_file::{open_model, OpenModel};
use destiny_core::predict::{predict_top_k, single_input_output, TopK};
use destiny_cuda::{with_backend, BackendTask, DeviceChoice, Precision};
use destiny_storage::Input;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::path::PathBuf;
use std::sync::Mutex;

/// A network on whichever backend it was loaded onto.
trait Scorer: Send {
    fn top_k(
        &mut self,
        input: &[Dataset],
        exclude: Option<&SparseRows>,
        k: usize,
        batch_size: usize,
    ) -> destiny_core::Result<TopK>;
    fn backend_name(&self) -> String;
}

impl<B: Backend> Scorer for Network<B> {
    fn top_k(
        &mut self,
        input: &[Dataset],
        exclude: Option<&SparseRows>,
        k: usize,
        batch_size: usize,
    ) -> destiny_core::Result<TopK> {
        predict_top_k(self, input, None, exclude, k, batch_size)
    }

    fn backend_name(&self) -> String {
        self.backend().name()
    }
}

/// Puts a model file's weights onto the chosen backend (the optimizer state is not read).
struct Load(OpenModel);

impl BackendTask for Load {
    type Output = Box<dyn Scorer>;
    type Error = destiny_core::Error;

    fn run<B: Backend + 'static>(self, backend: B) -> destiny_core::Result<Box<dyn Scorer>> {
        Ok(Box::new(self.0.network(backend)?))
    }
}

/// A trained model, loaded once, predicting the top-K items of users given as Arrow rows.
#[pyclass(module = "destiny")]
pub struct Model {
    network: Mutex<Box<dyn Scorer>>,
    path: PathBuf,
    input_dataset: String,
    input_width: usize,
    output_width: usize,
    features: Option<Vec<String>>,
}

#[pymethods]
impl Model {
    /// Loads a model file written by `destiny train` onto `device` (auto, cpu, cuda or
    /// cuda:N). `features` is the output layer's feature index (default: `features.idx`
    /// beside the model, when there is one); without one, items are column numbers. Paths
    /// may be objects (`s3://bucket/key`).
    #[staticmethod]
    #[pyo3(signature = (path, *, features = None, device = "auto", precision = "fp32"))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        features: Option<PathBuf>,
        device: &str,
        precision: &str,
    ) -> PyResult<Model> {
        let device: DeviceChoice = device.parse().map_err(to_py)?;
        let precision: Precision = precision.parse().map_err(to_py)?;
        py.detach(|| {
            // The weights are on the device once loaded: the local copies can go.
            let model_file = Input::open_with_siblings(&path, &[destiny_data::FEATURE_INDEX])?;
            let features = Input::open_optional(features.as_deref())?;
            let file = open_model(model_file.path())?;
            let topology = &file.topology;
            let (input, output) = single_input_output(topology)?;
            let input_dataset = topology.layers[input]
                .definition
                .dataset
                .clone()
                .unwrap_or_default();
            let (input_width, output_width) =
                (topology.layers[input].width, topology.layers[output].width);
            let beside = model_file.path().with_file_name(destiny_data::FEATURE_INDEX);
            let features = match features {
                Some(index) => Some(destiny_data::read_index(index.path())?.ids().to_vec()),
                None if beside.exists() => Some(destiny_data::read_index(&beside)?.ids().to_vec()),
                None => None,
            };
            if let Some(ids) = &features {
                if ids.len() != output_width {
                    return Err(destiny_core::Error::Data(format!(
                        "the output feature index has {} items but the model's output layer has {output_width} units",
                        ids.len()
                    )));
                }
            }
            let network = with_backend(&device, precision, Load(file))?;
            Ok(Model {
                network: Mutex::new(network),
                path: path.clone(),
                input_dataset,
                input_width,
                output_width,
                features,
            })
        })
        .map_err(to_py)
    }

    /// The `k` best items for every row of `batch` (a pyarrow `RecordBatch`, `Table` or
    /// anything exporting Arrow data) with columns `indices` (list of column numbers),
    /// optionally `values`, and `user` or `sample` (ids). With `exclude_seen`, a user's own
    /// items are left out (when input and output share columns, as in an autoencoder).
    ///
    /// `output="arrow"` gives a `RecordBatch` in long form: `user`, `item`, `score`,
    /// `rank` (from 1). `output="numpy"` gives `(items, scores)`: arrays of shape
    /// `(rows, k)`, column numbers (`-1` where a row has fewer than `k` candidates) and
    /// scores (`-inf` there).
    #[pyo3(signature = (batch, k = 10, exclude_seen = true, *, batch_size = 1024, output = "arrow"))]
    fn predict(
        &self,
        py: Python<'_>,
        batch: &Bound<'_, PyAny>,
        k: usize,
        exclude_seen: bool,
        batch_size: usize,
        output: &str,
    ) -> PyResult<Py<PyAny>> {
        if !matches!(output, "arrow" | "numpy") {
            return Err(to_py(format!(
                "output must be 'arrow' or 'numpy', not '{output}'"
            )));
        }
        let batches = arrow::batches(batch)?;
        let ids = batches.first().and_then(|b| {
            ["user", "sample"]
                .into_iter()
                .find(|name| b.column_by_name(name).is_some())
        });
        let (top, samples) = py
            .detach(|| {
                let (rows, samples) =
                    destiny_data::rows_from_batches(&batches, self.input_width, ids)?;
                let exclude =
                    (exclude_seen && rows.width() == self.output_width).then(|| rows.clone());
                let input = [Dataset::new(self.input_dataset.clone(), Rows::Sparse(rows))];
                let mut network = self.network.lock().unwrap_or_else(|e| e.into_inner());
                let top = network.top_k(&input, exclude.as_ref(), k, batch_size)?;
                Ok::<_, destiny_core::Error>((top, samples))
            })
            .map_err(to_py)?;
        if output == "numpy" {
            return numpy(py, &top);
        }
        let rows = top.len();
        let samples = if ids.is_some() {
            samples
        } else {
            (0..rows).map(|r| r.to_string()).collect()
        };
        // Without a feature index, items are named by their column numbers.
        let numbers: Vec<String>;
        let items = match &self.features {
            Some(features) => features,
            None => {
                numbers = (0..self.output_width).map(|c| c.to_string()).collect();
                &numbers
            }
        };
        let result = py
            .detach(|| destiny_eval::long_form(&samples, &top, items))
            .map_err(to_py)?;
        arrow::to_python(py, result)
    }

    /// The model file.
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::path_to_python(py, &self.path)
    }

    /// Width of the input layer (columns of the input rows).
    #[getter]
    fn input_width(&self) -> usize {
        self.input_width
    }

    /// Width of the output layer (items that can be recommended).
    #[getter]
    fn output_width(&self) -> usize {
        self.output_width
    }

    /// The output feature index (item ids by column), when known.
    #[getter]
    fn features(&self) -> Option<Vec<String>> {
        self.features.clone()
    }

    /// The backend the model computes on.
    #[getter]
    fn device(&self) -> String {
        let network = self.network.lock().unwrap_or_else(|e| e.into_inner());
        network.backend_name()
    }

    fn __repr__(&self) -> String {
        format!(
            "destiny.Model('{}', {} -> {}, on {})",
            self.path.display(),
            self.input_width,
            self.output_width,
            self.device()
        )
    }
}

/// Top-K as two NumPy arrays of shape (rows, k), handed over by pyarrow without copies.
fn numpy(py: Python<'_>, top: &TopK) -> PyResult<Py<PyAny>> {
    let columns = arrow_array::Int64Array::from_iter_values(top.columns.iter().map(|&c| {
        if c == u32::MAX {
            -1
        } else {
            c as i64
        }
    }));
    let scores = arrow_array::Float32Array::from(top.scores.clone());
    let shape = (top.len(), top.k);
    let matrix = |array: &dyn arrow_array::Array| -> PyResult<Py<PyAny>> {
        let array = arrow_pyarrow::PyArrowType(array.to_data()).into_pyobject(py)?;
        Ok(array
            .call_method0("to_numpy")?
            .call_method1("reshape", shape)?
            .unbind())
    };
    Ok(PyTuple::new(py, [matrix(&columns)?, matrix(&scores)?])?
        .into_any()
        .unbind())
}
