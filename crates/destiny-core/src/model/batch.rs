//! Mini-batches: the rows of each bound dataset for a set of samples, on the host and then
//! on the device.

use super::topology::{DatasetShape, Topology};
use crate::backend::random;
use crate::backend::{Backend, ResidentEntries, SparseBatch};
use crate::config::LayerKind;
use crate::data::row_chunks::{for_each_row_mut, map_row_chunks};
use crate::data::{find_dataset, Dataset, Rows, SparseRows};
use crate::error::{Error, Result};

/// The datasets of a network bound to its input and output layers.
pub struct Binding<'a> {
    /// `(layer, rows)` for input layers.
    inputs: Vec<(usize, &'a Rows)>,
    /// The input layers whose rows are scaled to unit length (`Normalize`).
    normalized: Vec<usize>,
    /// `(layer, rows)` for output layers (absent at prediction time).
    targets: Vec<(usize, &'a Rows)>,
    samples: usize,
}

/// Which layers a [`Binding`] binds to datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Input and output layers: training and validation, which need targets.
    InputsAndTargets,
    /// Input layers only: prediction, where output layers have no data.
    InputsOnly,
}

/// Asks `datasets` for the shape of a dataset name, for [`Topology::new`].
pub fn dataset_shapes(datasets: &[Dataset]) -> impl Fn(&str) -> Option<DatasetShape> + '_ {
    move |name| {
        datasets.iter().find(|d| d.name == name).map(|d| {
            let mut shape = DatasetShape::flat(d.rows.width(), matches!(d.rows, Rows::Sparse(_)));
            if !d.dimensions.is_empty() {
                shape.dimensions = d.dimensions.clone();
            }
            shape
        })
    }
}

impl<'a> Binding<'a> {
    /// Binds every input layer, and every output layer when `bound` says so, to its
    /// dataset, checking widths and that all datasets have the same number of samples.
    pub fn new(topology: &Topology, datasets: &'a [Dataset], bound: Bound) -> Result<Self> {
        let mut inputs = Vec::new();
        let mut targets = Vec::new();
        let mut samples: Option<(usize, &str)> = None;
        for (l, plan) in topology.layers.iter().enumerate() {
            let list = match plan.kind() {
                LayerKind::Input => &mut inputs,
                LayerKind::Output if bound == Bound::InputsAndTargets => &mut targets,
                _ => continue,
            };
            let name = plan.definition.dataset.as_deref().unwrap_or_default();
            let dataset = find_dataset(datasets, name)?;
            if dataset.rows.width() != plan.width {
                return Err(Error::Dimension(format!(
                    "layer '{}' has {} units but dataset '{name}' is {} wide",
                    plan.name(),
                    plan.width,
                    dataset.rows.width()
                )));
            }
            match samples {
                Some((n, other)) if n != dataset.rows.len() => {
                    return Err(Error::Dimension(format!(
                        "dataset '{name}' has {} samples but '{other}' has {n}",
                        dataset.rows.len()
                    )))
                }
                _ => samples = Some((dataset.rows.len(), &dataset.name)),
            }
            list.push((l, &dataset.rows));
        }
        let samples = samples.map_or(0, |(n, _)| n);
        if samples == 0 {
            return Err(Error::Data("the datasets hold no samples".into()));
        }
        let normalized = inputs
            .iter()
            .map(|&(l, _)| l)
            .filter(|&l| topology.layers[l].definition.normalize)
            .collect();
        Ok(Binding {
            inputs,
            normalized,
            targets,
            samples,
        })
    }

    /// Number of samples.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Every input layer with its rows.
    pub fn inputs(&self) -> impl Iterator<Item = (usize, &'a Rows)> + '_ {
        self.inputs.iter().copied()
    }

    /// The rows of input layer `layer`.
    pub fn input(&self, layer: usize) -> Option<&'a Rows> {
        self.inputs
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, r)| *r)
    }

    /// Whether input layer `layer`'s rows are scaled to unit length.
    fn normalizes(&self, layer: usize) -> bool {
        self.normalized.contains(&layer)
    }

    /// Gathers the given samples. The rows of a `Normalize` input are scaled to unit length;
    /// then, with `denoising = Some((p, seed))`, each entry of a sparse input is dropped with
    /// probability `p` and the kept ones scaled by `1 / (1 - p)`.
    pub fn gather(&self, samples: &[usize], denoising: Option<(f32, u64)>) -> BatchData {
        let inputs = self
            .inputs
            .iter()
            .map(|&(l, rows)| {
                let gathered = match rows.gather(samples) {
                    Rows::Sparse(x) if self.normalizes(l) => Rows::Sparse(unit_rows(&x)),
                    rows => rows,
                };
                let rows = match (gathered, denoising) {
                    (Rows::Sparse(x), Some((p, seed))) if p > 0.0 => {
                        Rows::Sparse(denoise(&x, p, random::derive_seed(seed, &[l as u64])))
                    }
                    (rows, _) => rows,
                };
                (l, rows)
            })
            .collect();
        let targets = self
            .targets
            .iter()
            .map(|&(l, rows)| (l, rows.gather(samples)))
            .collect();
        BatchData {
            rows: samples.len(),
            inputs,
            targets,
        }
    }
}

/// A binding whose sparse datasets are copied to the backend once, so that each batch is
/// gathered there from its sample numbers: the host only works out where each row lies.
/// Dense datasets are gathered on the host and uploaded, as by [`Binding`].
pub struct ResidentBinding<'a, B: Backend> {
    binding: Binding<'a>,
    /// One device copy per distinct sparse dataset: an autoencoder's input and target are
    /// usually the same rows, kept once.
    copies: Vec<ResidentEntries<B>>,
    /// Which copy holds each input's rows, `None` for dense ones (in `binding.inputs` order).
    inputs: Vec<Option<usize>>,
    /// The same for the targets.
    targets: Vec<Option<usize>>,
}

impl<'a, B: Backend> ResidentBinding<'a, B> {
    /// Copies the sparse datasets of `binding` to `backend`, each distinct one once.
    pub fn new(backend: &B, binding: Binding<'a>) -> Result<Self> {
        let mut copies = Vec::new();
        // The rows of each copy, and whether they were scaled to unit length first.
        let mut uploaded: Vec<(&SparseRows, bool)> = Vec::new();
        let mut place = |list: &[(usize, &'a Rows)], inputs: bool| -> Result<Vec<Option<usize>>> {
            list.iter()
                .map(|&(l, rows)| {
                    let Rows::Sparse(x) = rows else {
                        return Ok(None);
                    };
                    let unit = inputs && binding.normalizes(l);
                    if let Some(i) = uploaded
                        .iter()
                        .position(|(y, u)| y.same_as(x) && *u == unit)
                    {
                        return Ok(Some(i));
                    }
                    copies.push(match unit {
                        true => backend.upload_entries(&unit_rows(x))?,
                        false => backend.upload_entries(x)?,
                    });
                    uploaded.push((x, unit));
                    Ok(Some(copies.len() - 1))
                })
                .collect()
        };
        let inputs = place(&binding.inputs, true)?;
        let targets = place(&binding.targets, false)?;
        Ok(ResidentBinding {
            binding,
            copies,
            inputs,
            targets,
        })
    }

    /// The binding of the datasets.
    pub fn binding(&self) -> &Binding<'a> {
        &self.binding
    }

    /// The batch of the given samples, gathered on the backend; normalised and denoised as
    /// by [`Binding::gather`] (with the same masks).
    pub fn gather(
        &self,
        backend: &B,
        samples: &[usize],
        denoising: Option<(f32, u64)>,
    ) -> Result<DeviceBatch<B>> {
        let gather_all = |list: &[(usize, &Rows)],
                          resident: &[Option<usize>],
                          denoising: Option<(f32, u64)>|
         -> Result<Vec<(usize, Resident<B>)>> {
            list.iter()
                .zip(resident)
                .map(|(&(l, rows), copy)| {
                    let batch = match (rows, copy.map(|i| &self.copies[i])) {
                        (Rows::Sparse(x), Some(entries)) => {
                            let denoising = denoising
                                .filter(|&(p, _)| p > 0.0)
                                .map(|(p, seed)| (p, random::derive_seed(seed, &[l as u64])));
                            Resident::Sparse(gather_resident(
                                backend, entries, x, samples, denoising,
                            )?)
                        }
                        (rows, _) => upload_rows(backend, &rows.gather(samples))?,
                    };
                    Ok((l, batch))
                })
                .collect()
        };
        Ok(DeviceBatch {
            rows: samples.len(),
            total_rows: samples.len(),
            inputs: gather_all(&self.binding.inputs, &self.inputs, denoising)?,
            targets: gather_all(&self.binding.targets, &self.targets, None)?,
        })
    }
}

/// `x` with every row scaled to unit length (L2), in parallel over chunks of rows; an empty
/// row stays empty.
fn unit_rows(x: &SparseRows) -> SparseRows {
    let (width, offsets, indices, values) = x.clone().into_parts();
    let mut values = values.unwrap_or_else(|| vec![1.0; indices.len()]);
    for_each_row_mut(
        &mut values,
        x.len(),
        |r| offsets[r],
        |_, row| {
            let norm = row
                .iter()
                .map(|v| f64::from(*v).powi(2))
                .sum::<f64>()
                .sqrt();
            if norm > 0.0 {
                row.iter_mut()
                    .for_each(|v| *v = (f64::from(*v) / norm) as f32);
            }
        },
    );
    SparseRows::new(width, offsets, indices, Some(values)).expect("the same layout, finite values")
}

/// The batch of rows `samples` of `x`, gathered on the backend from `entries` (the entries of
/// `x` resident there); denoising as [`Backend::gather_sparse`] says.
pub fn gather_resident<B: Backend>(
    backend: &B,
    entries: &ResidentEntries<B>,
    x: &SparseRows,
    samples: &[usize],
    denoising: Option<(f32, u64)>,
) -> Result<SparseBatch<B>> {
    let (offsets, sources) = batch_layout(x, samples)?;
    backend.gather_sparse(entries, x.width(), &offsets, &sources, denoising)
}

/// The offsets of a batch of `samples` of `x`, and where each of its rows starts in `x`.
fn batch_layout(x: &SparseRows, samples: &[usize]) -> Result<(Vec<u32>, Vec<u64>)> {
    let mut offsets = Vec::with_capacity(samples.len() + 1);
    let mut sources = Vec::with_capacity(samples.len());
    let mut total = 0usize;
    offsets.push(0);
    for &s in samples {
        let (start, end) = (x.offsets()[s], x.offsets()[s + 1]);
        total += end - start;
        offsets.push(u32::try_from(total).map_err(|_| {
            Error::Data(format!(
                "a batch holds more than {} entries; use smaller batches",
                u32::MAX
            ))
        })?);
        sources.push(start as u64);
    }
    Ok((offsets, sources))
}

/// `x` with each entry dropped with probability `p` and the kept ones scaled by
/// `1 / (1 - p)`: entry `e` of `x` is dropped when `random::uniform(seed, e) < p`, so the
/// mask is a function of the seed and the entries' positions, and chunks of rows draw theirs
/// in parallel.
fn denoise(x: &SparseRows, p: f32, seed: u64) -> SparseRows {
    let scale = 1.0 / (1.0 - p);
    // Each chunk's kept entries and the number of them in each of its rows.
    let chunks = map_row_chunks(
        x.len(),
        |r| x.offsets()[r],
        |rows| {
            let mut lengths = Vec::with_capacity(rows.len());
            let mut indices = Vec::new();
            let mut values = Vec::new();
            for r in rows {
                let start = x.offsets()[r];
                let kept = indices.len();
                for (k, &c) in x.row_indices(r).iter().enumerate() {
                    if random::uniform(seed, (start + k) as u64) >= p {
                        indices.push(c);
                        values.push(scale * x.row_values(r).map_or(1.0, |v| v[k]));
                    }
                }
                lengths.push(indices.len() - kept);
            }
            (lengths, indices, values)
        },
    );
    let mut offsets = Vec::with_capacity(x.len() + 1);
    offsets.push(0);
    let kept = chunks.iter().map(|(_, indices, _)| indices.len()).sum();
    let mut indices = Vec::with_capacity(kept);
    let mut values = Vec::with_capacity(kept);
    for (lengths, chunk_indices, chunk_values) in &chunks {
        for length in lengths {
            offsets.push(offsets.last().unwrap() + length);
        }
        indices.extend_from_slice(chunk_indices);
        values.extend_from_slice(chunk_values);
    }
    SparseRows::new(x.width(), offsets, indices, Some(values)).expect("a subset of valid rows")
}

/// The host rows of one mini-batch.
pub struct BatchData {
    pub rows: usize,
    pub inputs: Vec<(usize, Rows)>,
    pub targets: Vec<(usize, Rows)>,
}

/// Rows resident on a backend.
pub enum Resident<B: Backend> {
    Sparse(SparseBatch<B>),
    Dense(B::Buffer),
}

/// A borrowed view of resident rows.
pub enum DeviceRows<'a, B: Backend> {
    Sparse(&'a SparseBatch<B>),
    Dense(&'a B::Buffer),
}

/// A mutable view of resident rows.
pub enum DeviceRowsMut<'a, B: Backend> {
    Sparse(&'a mut SparseBatch<B>),
    Dense(&'a mut B::Buffer),
}

/// One mini-batch on a backend.
pub struct DeviceBatch<B: Backend> {
    rows: usize,
    /// Samples of the whole batch, of which ranks that share batches hold a part.
    total_rows: usize,
    inputs: Vec<(usize, Resident<B>)>,
    targets: Vec<(usize, Resident<B>)>,
}

fn upload_rows<B: Backend>(backend: &B, rows: &Rows) -> Result<Resident<B>> {
    Ok(match rows {
        Rows::Sparse(x) => Resident::Sparse(backend.upload_sparse(x)?),
        Rows::Dense(x) => Resident::Dense(backend.upload(x.data())?),
    })
}

fn view<'a, B: Backend>(
    list: &'a [(usize, Resident<B>)],
    layer: usize,
    what: &str,
) -> Result<DeviceRows<'a, B>> {
    list.iter()
        .find(|(l, _)| *l == layer)
        .map(|(_, r)| match r {
            Resident::Sparse(x) => DeviceRows::Sparse(x),
            Resident::Dense(x) => DeviceRows::Dense(x),
        })
        .ok_or_else(|| Error::Data(format!("the batch has no {what} for layer {layer}")))
}

impl<B: Backend> DeviceBatch<B> {
    /// Uploads a host batch for `topology`.
    pub fn upload(backend: &B, batch: &BatchData) -> Result<Self> {
        let upload_all = |list: &[(usize, Rows)]| -> Result<Vec<(usize, Resident<B>)>> {
            list.iter()
                .map(|(l, rows)| Ok((*l, upload_rows(backend, rows)?)))
                .collect()
        };
        Ok(DeviceBatch {
            rows: batch.rows,
            total_rows: batch.rows,
            inputs: upload_all(&batch.inputs)?,
            targets: upload_all(&batch.targets)?,
        })
    }

    /// Number of samples.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Samples of the whole batch: more than [`DeviceBatch::rows`] on a rank that holds a
    /// share of it, so that gradients are means over the whole batch.
    pub fn total_rows(&self) -> usize {
        self.total_rows
    }

    /// Marks this batch as one rank's share of a batch of `total` samples.
    pub fn set_total_rows(&mut self, total: usize) {
        self.total_rows = total;
    }

    /// The rows of input layer `layer`.
    pub fn input(&self, layer: usize) -> Result<DeviceRows<'_, B>> {
        view(&self.inputs, layer, "input")
    }

    /// The rows of input layer `layer`, mutable (for input dropout).
    pub fn input_mut(&mut self, layer: usize) -> Option<DeviceRowsMut<'_, B>> {
        self.inputs
            .iter_mut()
            .find(|(l, _)| *l == layer)
            .map(|(_, r)| match r {
                Resident::Sparse(x) => DeviceRowsMut::Sparse(x),
                Resident::Dense(x) => DeviceRowsMut::Dense(x),
            })
    }

    /// The targets of output layer `layer`.
    pub fn target(&self, layer: usize) -> Result<DeviceRows<'_, B>> {
        view(&self.targets, layer, "target")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::config::{
        DeltaBoost, ErrorFunction, LayerDefinition, NetworkDefinition, NetworkKind, Width,
    };
    use crate::model::dataset_shapes;

    fn layer(
        name: &str,
        kind: LayerKind,
        dataset: Option<&str>,
        sources: &[&str],
    ) -> LayerDefinition {
        let width = if dataset.is_some() {
            Width::Auto
        } else {
            Width::Fixed(3)
        };
        LayerDefinition {
            dataset: dataset.map(String::from),
            sparse: true,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            ..LayerDefinition::new(name, kind, width)
        }
    }

    /// The serial gather, normalisation and denoising that the parallel ones must equal bit
    /// for bit: rows copied one after another, and the mask of each entry drawn from its
    /// position in the batch.
    mod serial {
        use super::*;

        pub fn gather(x: &SparseRows, samples: &[usize]) -> SparseRows {
            let rows: Vec<Vec<(u32, f32)>> = samples
                .iter()
                .map(|&s| {
                    let values = x.row_values(s);
                    (x.row_indices(s).iter().enumerate())
                        .map(|(k, &c)| (c, values.map_or(1.0, |v| v[k])))
                        .collect()
                })
                .collect();
            let rows = SparseRows::from_rows(x.width(), &rows).unwrap();
            match x.values() {
                Some(_) => rows,
                None => {
                    let (width, offsets, indices, _) = rows.into_parts();
                    SparseRows::new(width, offsets, indices, None).unwrap()
                }
            }
        }

        pub fn unit_rows(x: &SparseRows) -> SparseRows {
            let rows: Vec<Vec<(u32, f32)>> = (0..x.len())
                .map(|r| {
                    let values: Vec<f32> = x
                        .row_values(r)
                        .map_or_else(|| vec![1.0; x.row_indices(r).len()], <[f32]>::to_vec);
                    let norm = values
                        .iter()
                        .map(|v| f64::from(*v).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    (x.row_indices(r).iter().zip(values))
                        .map(|(&c, v)| (c, (f64::from(v) / norm) as f32))
                        .collect()
                })
                .collect();
            SparseRows::from_rows(x.width(), &rows).unwrap()
        }

        pub fn denoise(x: &SparseRows, p: f32, seed: u64) -> SparseRows {
            let mut e = 0;
            let rows: Vec<Vec<(u32, f32)>> = (0..x.len())
                .map(|r| {
                    let values = x.row_values(r);
                    let mut row = Vec::new();
                    for (k, &c) in x.row_indices(r).iter().enumerate() {
                        if random::uniform(seed, e) >= p {
                            row.push((c, 1.0 / (1.0 - p) * values.map_or(1.0, |v| v[k])));
                        }
                        e += 1;
                    }
                    row
                })
                .collect();
            SparseRows::from_rows(x.width(), &rows).unwrap()
        }
    }

    /// The rows' parts with values as bits, so that equality is bit for bit.
    fn bits(rows: &Rows) -> (Vec<usize>, Vec<u32>, Option<Vec<u32>>) {
        let Rows::Sparse(x) = rows else {
            panic!("sparse rows expected")
        };
        let values = x.values().map(|v| v.iter().map(|v| v.to_bits()).collect());
        (x.offsets().to_vec(), x.indices().to_vec(), values)
    }

    fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(f)
    }

    #[test]
    fn parallel_batches_equal_serial_ones_whatever_the_threads() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        // Enough entries for many chunks of rows: about 30 a row, 1,500 rows a batch.
        let inputs = crate::testing::sparse_rows(&mut rng, 2000, 100, 0.3, true, false);
        let targets = crate::testing::sparse_rows(&mut rng, 2000, 100, 0.2, false, false);
        let definition = NetworkDefinition {
            version: 0.7,
            name: "AE".into(),
            kind: NetworkKind::FeedForward,
            error_function: ErrorFunction::CrossEntropy,
            denoising: None,
            shuffle_indices: false,
            decay: 0.0,
            delta_boost: DeltaBoost::default(),
            local_response: crate::config::LocalResponse::DSSTNE,
            layers: vec![
                LayerDefinition {
                    normalize: true,
                    ..layer("Input", LayerKind::Input, Some("in"), &[])
                },
                layer("Hidden", LayerKind::Hidden, None, &["Input"]),
                layer("Output", LayerKind::Output, Some("out"), &["Hidden"]),
            ],
        };
        let data = vec![
            Dataset::new("in", Rows::Sparse(inputs.clone())),
            Dataset::new("out", Rows::Sparse(targets.clone())),
        ];
        let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
        let binding = || Binding::new(&topology, &data, Bound::InputsAndTargets).unwrap();
        let samples: Vec<usize> = (0..1500).map(|_| rng.random_range(0..2000)).collect();
        let (p, seed) = (0.3, 9);
        let layer_seed = random::derive_seed(seed, &[0]);

        // On the host: normalised, then denoised; targets only gathered.
        let unit = serial::unit_rows(&serial::gather(&inputs, &samples));
        let expected_input = bits(&Rows::Sparse(serial::denoise(&unit, p, layer_seed)));
        let expected_target = bits(&Rows::Sparse(serial::gather(&targets, &samples)));
        assert!(unit.nnz() > 10 * 4096, "a batch of many chunks of rows");
        for threads in [1, 3] {
            let batch = in_pool(threads, || binding().gather(&samples, Some((p, seed))));
            assert_eq!(
                bits(&batch.inputs[0].1),
                expected_input,
                "{threads} threads"
            );
            assert_eq!(
                bits(&batch.targets[0].1),
                expected_target,
                "{threads} threads"
            );
        }

        // Resident: the normalised rows gathered with dropped entries kept as zeros.
        let backend = CpuBackend::new();
        let resident = ResidentBinding::new(&backend, binding()).unwrap();
        let mut e = 0;
        let expected_values: Vec<u32> = (0..unit.len())
            .flat_map(|r| unit.row_values(r).unwrap().to_vec())
            .map(|v| {
                let dropped = random::uniform(layer_seed, e) < p;
                e += 1;
                if dropped { 0.0 } else { 1.0 / (1.0 - p) * v }.to_bits()
            })
            .collect();
        for threads in [1, 3] {
            let batch = in_pool(threads, || {
                resident
                    .gather(&backend, &samples, Some((p, seed)))
                    .unwrap()
            });
            let Ok(DeviceRows::Sparse(x)) = batch.input(0) else {
                panic!("sparse input expected")
            };
            let offsets: Vec<usize> = x.offsets.iter().map(|&o| o as usize).collect();
            assert_eq!(offsets, unit.offsets(), "{threads} threads");
            assert_eq!(x.indices, unit.indices(), "{threads} threads");
            let values: Vec<u32> = x
                .values
                .as_ref()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(values, expected_values, "{threads} threads");
            let Ok(DeviceRows::Sparse(t)) = batch.target(2) else {
                panic!("sparse target expected")
            };
            assert_eq!(t.indices, expected_target.1, "{threads} threads");
            assert!(t.values.is_none(), "values stay absent");
        }
    }

    #[test]
    fn identical_datasets_are_kept_once() {
        let rows = SparseRows::from_rows(5, &[vec![(1, 1.0), (4, 1.0)], vec![(0, 1.0)]]).unwrap();
        let other = SparseRows::from_rows(5, &[vec![(2, 1.0)], vec![(3, 1.0)]]).unwrap();
        let definition = NetworkDefinition {
            version: 0.7,
            name: "AE".into(),
            kind: NetworkKind::FeedForward,
            error_function: ErrorFunction::CrossEntropy,
            denoising: None,
            shuffle_indices: false,
            decay: 0.0,
            delta_boost: DeltaBoost::default(),
            local_response: crate::config::LocalResponse::DSSTNE,
            layers: vec![
                layer("Input", LayerKind::Input, Some("in"), &[]),
                layer("Hidden", LayerKind::Hidden, None, &["Input"]),
                layer("Output", LayerKind::Output, Some("out"), &["Hidden"]),
            ],
        };
        for (target, copies) in [(rows.clone(), 1), (other, 2)] {
            let data = vec![
                Dataset::new("in", Rows::Sparse(rows.clone())),
                Dataset::new("out", Rows::Sparse(target)),
            ];
            let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
            let binding = Binding::new(&topology, &data, Bound::InputsAndTargets).unwrap();
            let resident = ResidentBinding::new(&CpuBackend::new(), binding).unwrap();
            assert_eq!(resident.copies.len(), copies);
        }
    }
}
