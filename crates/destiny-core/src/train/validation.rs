//! Validation by ranking quality: after an epoch, the network's top 100 for the validation
//! users' fold-in items, scored against their held-out items. The top-K is the backend's own
//! (on a GPU only the 100 best of each user come back), so validating costs about one
//! prediction pass.

use crate::backend::Backend;
use crate::data::{find_dataset, Dataset, Rows, SparseRows};
use crate::error::{Error, Result};
use crate::model::{Network, Topology};
use crate::predict::{predict_top_k, single_input_output};
use crate::ranking::evaluate;
use crate::run::ValidationFigures;

/// The longest list scored: NDCG is taken at 100.
const TOP: usize = 100;
/// Recall is taken at 20.
const RECALL_AT: usize = 20;

/// Validation users: their fold-in items (the input layer's dataset) and held-out items
/// (the output layer's), bound to a network with one sparse input and one output layer.
pub struct RankingValidation<'a> {
    datasets: &'a [Dataset],
    fold_in: &'a SparseRows,
    held_out: Vec<Vec<u32>>,
}

impl<'a> RankingValidation<'a> {
    /// Binds `datasets` (by the layers' `DataSet` names) to `topology`'s input and output
    /// layers; both must be sparse, with one row per validation user.
    pub fn new(topology: &Topology, datasets: &'a [Dataset]) -> Result<Self> {
        let (input, output) = single_input_output(topology)?;
        let sparse = |layer: usize, what: &str| -> Result<&'a SparseRows> {
            let name = topology.layers[layer].definition.dataset.as_deref();
            let name = name.ok_or_else(|| {
                Error::Config(format!(
                    "validation by ranking needs a DataSet on the {what} layer '{}'",
                    topology.layers[layer].name()
                ))
            })?;
            match &find_dataset(datasets, name)?.rows {
                Rows::Sparse(rows) => Ok(rows),
                Rows::Dense(_) => Err(Error::Data(format!(
                    "validation by ranking needs sparse rows, but the {what} dataset '{name}' is dense"
                ))),
            }
        };
        let fold_in = sparse(input, "input")?;
        let targets = sparse(output, "output")?;
        if fold_in.len() != targets.len() {
            return Err(Error::Dimension(format!(
                "the validation users' fold-in has {} rows but their held-out items {}",
                fold_in.len(),
                targets.len()
            )));
        }
        let held_out = (0..targets.len())
            .map(|r| targets.row_indices(r).to_vec())
            .collect();
        Ok(RankingValidation {
            datasets,
            fold_in,
            held_out,
        })
    }

    /// NDCG@100 and Recall@20 of `network` after `epoch`, leaving each user's fold-in items
    /// out of its list.
    pub fn evaluate<B: Backend>(
        &self,
        network: &mut Network<B>,
        epoch: usize,
        batch_size: usize,
    ) -> Result<ValidationFigures> {
        let top = predict_top_k(
            network,
            self.datasets,
            None,
            Some(self.fold_in),
            TOP,
            batch_size,
        )?;
        let ranked: Vec<Vec<u32>> = (0..top.len())
            .map(|r| top.row(r).map(|(column, _)| column).collect())
            .collect();
        let metrics = evaluate(&ranked, &self.held_out, &[RECALL_AT, TOP]);
        Ok(ValidationFigures {
            epoch,
            recall_at_20: metrics[0].recall,
            ndcg_at_100: metrics[1].ndcg,
        })
    }
}
