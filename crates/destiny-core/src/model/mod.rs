//! Models: a network definition resolved against data ([`Topology`]), its parameters and
//! buffers on a backend ([`Network`]), and the mini-batches that feed it.

pub mod batch;
mod difference;
mod init;
mod network;
pub mod spatial;
pub mod topology;

pub use batch::{dataset_shapes, BatchData, Binding, Bound, DeviceBatch};
pub use difference::describe_difference;
pub use network::{Network, OptimizerSettings, Pass};
pub use topology::{DatasetShape, Topology};

#[cfg(test)]
mod tests;
