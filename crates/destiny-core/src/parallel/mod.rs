//! Several ranks (GPUs, processes or threads) computing one network.
//!
//! Two ways to share the work, as DSSTNE did:
//!
//! - **Model parallel**: every layer's units, and so its weights, bias and optimizer state,
//!   are split into one slice of columns per rank. Each rank computes its slice of every
//!   layer for the whole batch; sparse inputs are read whole by every rank, so the wide
//!   sparse input layer needs no exchange. Only activations and deltas move, never weights:
//!   before a dense connection the source layer's activations are all-gathered, and after
//!   its backward product the partial deltas of the source are reduce-scattered.
//! - **Data parallel**: every rank holds the whole network and takes a share of every
//!   batch; gradients are all-reduced before the optimizer step.
//!
//! The network talks to the other ranks only through a [`Communicator`]: NCCL for GPUs,
//! [`ThreadGroup`] for ranks that are threads of one process, [`SingleRank`] alone.

mod communicator;
mod split;
mod threads;

pub use communicator::{Communicator, SingleRank};
pub use split::{slice_columns, Split};
pub use threads::ThreadGroup;

use crate::backend::Backend;
use std::ops::Range;

/// How ranks share a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Parallelism {
    /// Every layer split by units across ranks.
    Model,
    /// Every rank the whole network and a share of each batch.
    Data,
}

impl std::fmt::Display for Parallelism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Parallelism::Model => "model parallel",
            Parallelism::Data => "data parallel",
        })
    }
}

/// One rank's place in a group of ranks, and how the group shares the network.
pub struct Group<B: Backend> {
    communicator: Box<dyn Communicator<B>>,
    parallelism: Parallelism,
}

impl<B: Backend> Group<B> {
    /// A rank of the group `communicator` connects, sharing the network as `parallelism` says.
    pub fn new(communicator: Box<dyn Communicator<B>>, parallelism: Parallelism) -> Self {
        Group {
            communicator,
            parallelism,
        }
    }

    /// A group of one rank.
    pub fn single() -> Self {
        Group::new(Box::new(SingleRank), Parallelism::Model)
    }

    /// The collectives.
    pub fn communicator(&self) -> &dyn Communicator<B> {
        self.communicator.as_ref()
    }

    /// This rank's number.
    pub fn rank(&self) -> usize {
        self.communicator.rank()
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.communicator.size()
    }

    /// How the network is shared (with one rank, nothing is shared).
    pub fn parallelism(&self) -> Parallelism {
        self.parallelism
    }

    /// True when layers are split across several ranks.
    pub fn splits_layers(&self) -> bool {
        self.size() > 1 && self.parallelism == Parallelism::Model
    }

    /// True when several ranks each take a share of every batch.
    pub fn splits_batches(&self) -> bool {
        self.size() > 1 && self.parallelism == Parallelism::Data
    }

    /// Every rank's `data` (the same length on every rank), one after another in rank order:
    /// for small results such as top-K lists.
    pub fn all_gather_host(&self, backend: &B, data: &[f32]) -> crate::Result<Vec<f32>> {
        let send = backend.upload(data)?;
        let mut recv = backend.zeros(self.size() * data.len())?;
        self.communicator
            .all_gather(backend, &send, data.len(), &mut recv)?;
        let mut all = backend.download(&recv)?;
        all.truncate(self.size() * data.len());
        Ok(all)
    }

    /// The part of `count` samples this rank takes: all of them unless batches are split.
    pub fn share(&self, count: usize) -> Range<usize> {
        if self.splits_batches() {
            Split::new(count, self.size()).range(self.rank())
        } else {
            0..count
        }
    }
}
