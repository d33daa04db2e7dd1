//! The collectives that ranks of a group exchange activations, deltas and gradients with.

use crate::backend::{check_len, Backend, Shape, Strided};
use crate::error::Result;

/// Collective operations among the ranks of a group, on buffers of backend `B`. Every rank
/// calls the same operations in the same order with the same counts, as with NCCL or MPI;
/// each call returns once this rank's result is in place (or queued in order on the device).
pub trait Communicator<B: Backend>: Send + Sync {
    /// This rank's number, from 0.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// `recv[q * count..(q + 1) * count]` becomes rank `q`'s `send[..count]`.
    fn all_gather(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()>;
    /// `recv[..count]` becomes the sum over ranks of their
    /// `send[rank * count..(rank + 1) * count]`, `rank` being this rank's number.
    fn reduce_scatter(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()>;
    /// `buffer[..len]` becomes the sum over ranks of their `buffer[..len]`.
    fn all_reduce(&self, backend: &B, buffer: &mut B::Buffer, len: usize) -> Result<()>;
}

/// A shared communicator is one: a launcher keeps a rank's communicator alive (to abort it
/// when another rank fails) while the rank's network holds it too.
impl<B: Backend, C: Communicator<B> + ?Sized> Communicator<B> for std::sync::Arc<C> {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn size(&self) -> usize {
        (**self).size()
    }

    fn all_gather(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()> {
        (**self).all_gather(backend, send, count, recv)
    }

    fn reduce_scatter(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()> {
        (**self).reduce_scatter(backend, send, count, recv)
    }

    fn all_reduce(&self, backend: &B, buffer: &mut B::Buffer, len: usize) -> Result<()> {
        (**self).all_reduce(backend, buffer, len)
    }
}

/// The group of one rank: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleRank;

impl<B: Backend> Communicator<B> for SingleRank {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_gather(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()> {
        let whole = Strided {
            offset: 0,
            stride: count,
        };
        backend.copy_matrix(Shape::new(1, count), send, whole, recv, whole, false)
    }

    fn reduce_scatter(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()> {
        self.all_gather(backend, send, count, recv)
    }

    fn all_reduce(&self, _: &B, _: &mut B::Buffer, _: usize) -> Result<()> {
        Ok(())
    }
}

/// The first `len` values of `buffer` on the host: a rank's part of a collective that
/// exchanges through host memory (threads, sockets).
pub(super) fn host_prefix<B: Backend>(
    backend: &B,
    buffer: &B::Buffer,
    len: usize,
) -> Result<Vec<f32>> {
    let mut values = backend.download(buffer)?;
    check_len("collective buffer", values.len(), len)?;
    values.truncate(len);
    Ok(values)
}
