//! Prediction: the top-K outputs of every sample, excluding what the sample already has.

use crate::backend::{Backend, SparseBatch};
use crate::config::LayerKind;
use crate::data::{Dataset, Rows, SparseRows};
use crate::error::{Error, Result};
use crate::model::batch::{gather_resident, DeviceRows, ResidentBinding};
use crate::model::{Binding, Bound, Topology};
use crate::model::{DeviceBatch, Network, Pass};
use crate::parallel::Split;
use crate::pipeline::pipelined;

/// The `k` best output columns of each sample, best first: `columns[r * k + i]` with its
/// score. Rows with fewer than `k` candidates are padded with `u32::MAX` and `-inf`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    pub k: usize,
    pub columns: Vec<u32>,
    pub scores: Vec<f32>,
}

impl TopK {
    /// The recommendations of sample `row`, padding left out.
    pub fn row(&self, row: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let range = row * self.k..(row + 1) * self.k;
        self.columns[range.clone()]
            .iter()
            .copied()
            .zip(self.scores[range].iter().copied())
            .filter(|(c, _)| *c != u32::MAX)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.columns.len() / self.k.max(1)
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// The input and the output layer of a network that predicts from one input layer to one
/// output layer, as recommendation does.
pub fn single_input_output(topology: &Topology) -> Result<(usize, usize)> {
    let inputs: Vec<usize> = topology.inputs().collect();
    let outputs: Vec<usize> = topology.outputs().collect();
    match (inputs.as_slice(), outputs.as_slice()) {
        ([input], [output]) => Ok((*input, *output)),
        _ => Err(Error::Config(
            "predict needs a network with one input and one output layer".into(),
        )),
    }
}

/// Scores every sample of `datasets` (bound to the input layers) with the output layer named
/// `output` (the only output layer when `None`) and keeps the `k` best columns of each,
/// leaving out the columns of that sample's row in `exclude`.
pub fn predict_top_k<B: Backend>(
    network: &mut Network<B>,
    datasets: &[Dataset],
    output: Option<&str>,
    exclude: Option<&SparseRows>,
    k: usize,
    batch_size: usize,
) -> Result<TopK> {
    let topology = network.topology();
    let outputs: Vec<usize> = topology.outputs().collect();
    let layer = match output {
        Some(name) => topology
            .layers
            .iter()
            .position(|l| l.name() == name && l.kind() == LayerKind::Output)
            .ok_or_else(|| Error::Options(format!("no output layer named '{name}'")))?,
        None if outputs.len() == 1 => outputs[0],
        None => {
            return Err(Error::Options(
                "the network has several output layers: name one".into(),
            ))
        }
    };
    let width = topology.layers[layer].width;
    let binding = Binding::new(topology, datasets, Bound::InputsOnly)?;
    let samples = binding.samples();
    if let Some(exclude) = exclude {
        if exclude.len() != samples || exclude.width() != width {
            return Err(Error::Dimension(format!(
                "the exclusion rows are {} x {}, the predictions {samples} x {width}",
                exclude.len(),
                exclude.width()
            )));
        }
    }
    let batch_size = batch_size.max(1);
    // Ranks that share batches each score a part of the samples.
    let share = network.group().share(samples);
    let batches = share.len().div_ceil(batch_size);
    let rows_of = |b: usize| -> Vec<usize> {
        (share.start + b * batch_size..(share.start + (b + 1) * batch_size).min(share.end))
            .collect()
    };
    let mut result = TopK {
        k,
        columns: Vec::with_capacity(samples * k),
        scores: Vec::with_capacity(samples * k),
    };
    // Usually the items to leave out are the input itself: then the input batch serves.
    let exclude_layer = exclude.and_then(|x| {
        binding.inputs().find_map(|(l, rows)| match rows {
            Rows::Sparse(input) if input.same_as(x) => Some(l),
            _ => None,
        })
    });
    let separate_exclude = exclude.filter(|_| exclude_layer.is_none());
    // The best of batch b are read back after batch b + 1 is queued, so that the device
    // computes while the host copies.
    let mut pending: Option<B::TopK> = None;
    let mut score = |network: &mut Network<B>,
                     mut batch: DeviceBatch<B>,
                     excluded: Option<SparseBatch<B>>|
     -> Result<()> {
        network.forward(&mut batch, Pass::Evaluation)?;
        let exclusions = match (&excluded, exclude_layer) {
            (Some(x), _) => Some(x),
            (None, Some(l)) => match batch.input(l)? {
                DeviceRows::Sparse(x) => Some(x),
                DeviceRows::Dense(_) => None,
            },
            (None, None) => None,
        };
        let top = network.top_k(layer, batch.rows(), k, exclusions)?;
        if let Some(previous) = pending.replace(top) {
            append(&mut result, network, previous)?;
        }
        Ok(())
    };
    // On a backend that prefers them, the inputs (and exclusions) are kept there; when they
    // do not fit, batches come from the host as on any other backend.
    let resident = network
        .backend()
        .prefers_resident_data()
        .then(|| {
            let backend = network.backend();
            let resident = ResidentBinding::new(
                backend,
                Binding::new(network.topology(), datasets, Bound::InputsOnly)?,
            )?;
            let exclude_entries = separate_exclude
                .map(|x| Ok::<_, Error>((x, backend.upload_entries(x)?)))
                .transpose()?;
            Ok::<_, Error>((resident, exclude_entries))
        })
        .and_then(Result::ok);
    if let Some((resident, exclude_entries)) = resident {
        for b in 0..batches {
            let rows = rows_of(b);
            let batch = resident.gather(network.backend(), &rows, None)?;
            let excluded = exclude_entries
                .as_ref()
                .map(|(x, entries)| gather_resident(network.backend(), entries, x, &rows, None))
                .transpose()?;
            score(network, batch, excluded)?;
        }
    } else {
        let produce = |b: usize| {
            let rows = rows_of(b);
            let excluded = separate_exclude.map(|x| x.gather(&rows));
            (binding.gather(&rows, None), excluded)
        };
        pipelined(batches, produce, |_, (data, excluded)| {
            let batch = network.upload_batch(&data)?;
            let excluded = excluded
                .map(|x| network.backend().upload_sparse(&x))
                .transpose()?;
            score(network, batch, excluded)
        })?;
    }
    if let Some(last) = pending.take() {
        append(&mut result, network, last)?;
    }
    if network.group().splits_batches() {
        result = gather_shares(network, result, samples)?;
    }
    Ok(result)
}

/// Every rank's results of its share of `samples`, in sample order.
fn gather_shares<B: Backend>(network: &Network<B>, mine: TopK, samples: usize) -> Result<TopK> {
    let group = network.group();
    let split = Split::new(samples, group.size());
    let k = mine.k;
    let all = group.all_gather_top_k(
        network.backend(),
        &mine.columns,
        &mine.scores,
        split.longest() * k,
    )?;
    let mut result = TopK {
        k,
        columns: Vec::with_capacity(samples * k),
        scores: Vec::with_capacity(samples * k),
    };
    for ((columns, scores), range) in all.iter().zip(split.ranges()) {
        let len = range.len() * k;
        result.columns.extend_from_slice(&columns[..len]);
        result.scores.extend_from_slice(&scores[..len]);
    }
    Ok(result)
}

/// Reads a batch's best columns and scores onto the end of `result`.
fn append<B: Backend>(result: &mut TopK, network: &Network<B>, top: B::TopK) -> Result<()> {
    network.append_top_k(top, result.k, &mut result.columns, &mut result.scores)
}
