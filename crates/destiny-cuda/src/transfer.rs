//! Uploads through page-locked staging buffers. A copy from ordinary (pageable) host memory
//! makes the driver wait for every kernel queued before it, which would stall the host once
//! per batch; a copy from page-locked memory is queued like a kernel, so the host prepares
//! the next batch while the GPU computes.

use crate::{backend_error, CudaBackend};
use cudarc::driver::{
    result, CudaContext, CudaEvent, CudaSlice, DevicePtrMut, DeviceRepr, PinnedHostSlice,
};
use destiny_core::error::{Error, Result};
use std::sync::Arc;

/// Staging buffers in use at once: a batch uploads about five arrays, so the host can run
/// about three batches ahead before it waits for a buffer to come free.
const SLOTS: usize = 16;
/// Larger uploads (whole datasets) are copied in pieces of this size, each through the next
/// buffer, so that staging never holds more than `SLOTS` pieces.
const CHUNK_BYTES: usize = 4 << 20;

/// A page-locked buffer and the event recorded after the last copy out of it.
struct Slot {
    host: PinnedHostSlice<u8>,
    copied: CudaEvent,
}

/// A ring of page-locked buffers, each reused once its last copy has finished.
pub(crate) struct Staging {
    context: Arc<CudaContext>,
    slots: Vec<Option<Slot>>,
    next: usize,
}

impl Staging {
    pub(crate) fn new(context: Arc<CudaContext>) -> Self {
        Staging {
            context,
            slots: (0..SLOTS).map(|_| None).collect(),
            next: 0,
        }
    }

    /// The next slot, holding at least `bytes`, once its previous copy is done.
    fn slot(&mut self, bytes: usize) -> Result<&mut Slot> {
        let index = self.next;
        self.next = (self.next + 1) % SLOTS;
        let entry = &mut self.slots[index];
        if let Some(slot) = entry.as_ref() {
            slot.copied.synchronize().map_err(backend_error)?;
        }
        if entry.as_ref().is_none_or(|slot| slot.host.len() < bytes) {
            // Grow by half again, so that slowly growing batches reallocate rarely.
            let capacity = bytes.max(1 << 16) + bytes / 2;
            // SAFETY: the buffer is written before any copy reads it.
            let host =
                unsafe { self.context.alloc_pinned::<u8>(capacity) }.map_err(backend_error)?;
            let copied = self.context.new_event(None).map_err(backend_error)?;
            *entry = Some(Slot { host, copied });
        }
        Ok(entry.as_mut().expect("filled above"))
    }
}

impl CudaBackend {
    /// A new device buffer holding `host`, copied in queue order without waiting for the GPU.
    pub(crate) fn upload_slice<T: DeviceRepr + Copy>(&self, host: &[T]) -> Result<CudaSlice<T>> {
        if host.is_empty() {
            return self.stream.null::<T>().map_err(backend_error);
        }
        // Every element is written by the copy below before any kernel reads it.
        let mut buffer = self.allocate::<T>(host.len())?;
        self.copy_to_device(host, &mut buffer)?;
        Ok(buffer)
    }

    /// Copies `host` into the start of `buffer` (which holds at least as many elements).
    pub(crate) fn copy_to_device<T: DeviceRepr + Copy>(
        &self,
        host: &[T],
        buffer: &mut CudaSlice<T>,
    ) -> Result<()> {
        if buffer.len() < host.len() {
            return Err(Error::Dimension(format!(
                "copy of {} values into a buffer of {}",
                host.len(),
                buffer.len()
            )));
        }
        let bytes = std::mem::size_of_val(host);
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: `T` is plain data (`DeviceRepr + Copy`), viewed as its bytes.
        let source = unsafe { std::slice::from_raw_parts(host.as_ptr() as *const u8, bytes) };
        let (destination, _record) = buffer.device_ptr_mut(&self.stream);
        let mut staging = self.staging.lock().expect("a staging user panicked");
        for (piece, chunk) in source.chunks(CHUNK_BYTES).enumerate() {
            let slot = staging.slot(chunk.len())?;
            let pinned = slot.host.as_mut_slice().map_err(backend_error)?;
            pinned[..chunk.len()].copy_from_slice(chunk);
            let address = destination + (piece * CHUNK_BYTES) as u64;
            // SAFETY: the destination holds `bytes`; the staging slot is not written again
            // until the event recorded after this copy has completed.
            unsafe {
                result::memcpy_htod_async(address, &pinned[..chunk.len()], self.stream.cu_stream())
            }
            .map_err(backend_error)?;
            slot.copied.record(&self.stream).map_err(backend_error)?;
        }
        Ok(())
    }
}
