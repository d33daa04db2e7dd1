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
//! [`SocketGroup`] for processes on the CPUs of one host or several, [`ThreadGroup`] for
//! ranks that are threads of one process, [`SingleRank`] alone. Processes started by a
//! launcher meet through [`rendezvous`].

mod communicator;
pub mod rendezvous;
mod sockets;
mod split;
mod threads;

pub use communicator::{Communicator, SingleRank};
pub use sockets::SocketGroup;
pub use split::{slice_columns, Split};
pub use threads::ThreadGroup;

use crate::backend::random::derive_seed;
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

    /// Every rank's top-K `columns` and `scores` (at most `len` of each on every rank), in
    /// rank order, each list padded to `len` with column `u32::MAX` and score `-inf` as
    /// [`Backend::top_k`] pads rows.
    pub fn all_gather_top_k(
        &self,
        backend: &B,
        columns: &[u32],
        scores: &[f32],
        len: usize,
    ) -> crate::Result<Vec<(Vec<u32>, Vec<f32>)>> {
        // One buffer of floats: the scores, then the columns' bits.
        let mut packed = scores.to_vec();
        packed.resize(len, f32::NEG_INFINITY);
        packed.extend(columns.iter().map(|&c| f32::from_bits(c)));
        packed.resize(2 * len, f32::from_bits(u32::MAX));
        let send = backend.upload(&packed)?;
        let mut recv = backend.zeros(self.size() * 2 * len)?;
        self.communicator
            .all_gather(backend, &send, 2 * len, &mut recv)?;
        let all = backend.download(&recv)?;
        Ok(all
            .chunks_exact(2 * len.max(1))
            .take(self.size())
            .map(|block| {
                let (scores, columns) = block.split_at(len);
                (
                    columns.iter().map(|c| c.to_bits()).collect(),
                    scores.to_vec(),
                )
            })
            .collect())
    }

    /// The seed of this rank's own random masks from a pass's `seed`: ranks that share
    /// batches draw their own (rank 0 keeps `seed`, so that it draws what one rank would);
    /// split layers draw the same masks on every rank.
    pub fn own_seed(&self, seed: u64) -> u64 {
        if self.splits_batches() && self.rank() > 0 {
            derive_seed(seed, &[self.rank() as u64])
        } else {
            seed
        }
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
