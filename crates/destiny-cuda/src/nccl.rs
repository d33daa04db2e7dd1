//! NCCL behind the [`Communicator`] seam: the collectives of ranks that are GPUs, threads of
//! one process or processes of a job.
//!
//! Collectives are queued on the backend's one stream, so they are ordered with the compute
//! and the host queues on without waiting. Communicators are non-blocking, and a
//! [`Watchdog`] thread watches them: an NCCL error (a peer that died, a broken connection), a
//! collective that has not completed within the timeout, or a rank of this process that gave
//! up aborts every communicator of the process, so that each rank's next call fails with the
//! first reason instead of hanging.
//!
//! libnccl is loaded when the first communicator or id is made; NVLink multicast stays off
//! (`NCCL_NVLS_ENABLE=0` unless set): it can take a host's shared GPUs out of service.

use crate::{backend_error, CudaBackend, Precision};
use cudarc::driver::{CudaEvent, CudaSlice, DevicePtr};
use cudarc::nccl::result::{self, NcclError, NcclStatus};
use cudarc::nccl::sys;
use destiny_core::backend::check_len;
use destiny_core::error::{Error, Result};
use destiny_core::parallel::rendezvous::{peer_timeout, share, Launch};
use destiny_core::parallel::Communicator;
use std::collections::VecDeque;
use std::ffi::CStr;
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How often the watchdog looks at the communicators.
const WATCH_PERIOD: Duration = Duration::from_millis(50);

/// NCCL's unique id: the 128 bytes that every rank of one communicator starts from.
#[derive(Clone, Copy)]
pub struct NcclId(sys::ncclUniqueId);

impl NcclId {
    /// A new id (made by one rank and passed to the others).
    pub fn new() -> Result<Self> {
        load_nccl()?;
        result::get_uniqueid()
            .map(NcclId)
            .map_err(|e| nccl_error("making NCCL's unique id", e, None))
    }

    /// The id's bytes, to send to the other ranks.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.internal.iter().map(|&c| c as u8).collect()
    }

    /// The id whose bytes another rank sent.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let internal: [u8; 128] = bytes.try_into().map_err(|_| {
            Error::Parallel(format!("an NCCL id has 128 bytes, not {}", bytes.len()))
        })?;
        Ok(NcclId(sys::ncclUniqueId {
            internal: internal.map(|b| b as std::ffi::c_char),
        }))
    }
}

/// Keeps NVLink multicast off and loads libnccl, with a clear error where it is missing.
fn load_nccl() -> Result<()> {
    static ENVIRONMENT: Once = Once::new();
    // Before NCCL starts, which reads its environment once.
    ENVIRONMENT.call_once(|| {
        if std::env::var_os("NCCL_NVLS_ENABLE").is_none() {
            std::env::set_var("NCCL_NVLS_ENABLE", "0");
        }
    });
    // SAFETY: only opens the library to see whether it is there.
    if !unsafe { sys::is_culib_present() } {
        return Err(backend_error(
            "NCCL (libnccl.so) was not found: several GPUs need it; install NCCL or put its \
             folder on LD_LIBRARY_PATH",
        ));
    }
    Ok(())
}

/// An NCCL failure as a parallel-run error, with NCCL's own explanation.
fn nccl_error(what: &str, error: NcclError, comm: Option<sys::ncclComm_t>) -> Error {
    // SAFETY: NCCL returns static strings; `comm` is a live communicator.
    let text = |p: *const std::ffi::c_char| {
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let name = text(unsafe { sys::ncclGetErrorString(error.0) });
    let detail = comm.and_then(|c| text(unsafe { sys::ncclGetLastError(c) }));
    let mut message = format!("{what}: NCCL error {:?}", error.0);
    for part in [name, detail]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
    {
        message.push_str(": ");
        message.push_str(&part);
    }
    Error::Parallel(message)
}

/// A communicator handle that NCCL lets any one thread at a time use.
struct Handle(sys::ncclComm_t);

// SAFETY: NCCL communicators may move between threads; the mutex around it serialises calls.
unsafe impl Send for Handle {}

/// One communicator as the watchdog sees it.
struct Member {
    rank: usize,
    /// `None` once aborted or finalized: nothing may use the handle after that.
    comm: Mutex<Option<Handle>>,
    /// Events recorded after each queued collective, oldest first, with when it was queued.
    pending: Mutex<VecDeque<(CudaEvent, Instant)>>,
}

impl Member {
    fn comm(&self) -> MutexGuard<'_, Option<Handle>> {
        self.comm.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, VecDeque<(CudaEvent, Instant)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// NCCL's asynchronous state: `Ok(true)` once the last call has finished.
    fn ready(&self) -> std::result::Result<bool, String> {
        let comm = self.comm();
        let Some(handle) = comm.as_ref() else {
            return Ok(true);
        };
        let mut state = sys::ncclResult_t::ncclSuccess;
        // SAFETY: a live communicator, used by this thread alone under the lock.
        let call = unsafe { sys::ncclCommGetAsyncError(handle.0, &mut state) }.result();
        match call.and_then(|_| state.result()) {
            Ok(NcclStatus::InProgress) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => {
                Err(nccl_error(&format!("rank {}", self.rank), e, Some(handle.0)).to_string())
            }
        }
    }

    /// Drops the collectives that have completed; why the communicator must be aborted, if
    /// it must: a failed one, or the oldest still running after `timeout`.
    fn completed(&self, timeout: Duration) -> std::result::Result<(), String> {
        let mut pending = self.pending();
        while let Some((event, queued)) = pending.front() {
            let _ = event.context().bind_to_thread();
            match event.try_is_complete() {
                Ok(true) => {
                    pending.pop_front();
                }
                Ok(false) if queued.elapsed() > timeout => {
                    return Err(format!(
                        "rank {}: a collective has not completed after {:.0} s: another rank \
                         stopped or hangs (DESTINY_COLLECTIVE_TIMEOUT sets the limit)",
                        self.rank,
                        timeout.as_secs_f64()
                    ))
                }
                Ok(false) => return Ok(()),
                Err(e) => {
                    return Err(format!(
                        "rank {}: CUDA error under a collective: {e}",
                        self.rank
                    ))
                }
            }
        }
        Ok(())
    }

    fn abort(&self) {
        if let Some(handle) = self.comm().take() {
            // SAFETY: the handle is live and taken out, so nothing uses it again.
            let _ = unsafe { result::comm_abort(handle.0) };
        }
    }
}

/// The NCCL communicators of one process, which fail together: the first failure on any of
/// them (an NCCL error, a collective over the timeout, [`Watchdog::abort`]) aborts them all,
/// and every later collective on them returns that first reason.
#[derive(Clone)]
pub struct Watchdog(Arc<Watched>);

struct Watched {
    timeout: Duration,
    failure: OnceLock<String>,
    members: Mutex<Vec<Weak<Member>>>,
    thread: Once,
}

impl Watchdog {
    /// A watchdog that gives a collective, or the meeting of the ranks, `timeout` to complete.
    pub fn new(timeout: Duration) -> Self {
        Watchdog(Arc::new(Watched {
            timeout,
            failure: OnceLock::new(),
            members: Mutex::new(Vec::new()),
            thread: Once::new(),
        }))
    }

    /// Aborts every communicator, giving `reason` to the ranks' next calls (the first reason
    /// given stays).
    pub fn abort(&self, reason: impl Into<String>) {
        let _ = self.0.failure.set(reason.into());
        for member in self.members() {
            member.abort();
        }
    }

    /// Why the communicators were aborted, if they were.
    pub fn failure(&self) -> Option<&str> {
        self.0.failure.get().map(String::as_str)
    }

    fn failed(&self) -> Error {
        Error::Parallel(self.failure().unwrap_or("aborted").to_string())
    }

    fn members(&self) -> Vec<Arc<Member>> {
        let mut members = self.0.members.lock().unwrap_or_else(|e| e.into_inner());
        members.retain(|m| m.strong_count() > 0);
        members.iter().filter_map(Weak::upgrade).collect()
    }

    fn watch(&self, member: &Arc<Member>) {
        self.0
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(member));
        let watched = Arc::downgrade(&self.0);
        self.0.thread.call_once(|| {
            // Ends with the last handle on the watchdog, or once everything is aborted.
            std::thread::spawn(move || loop {
                std::thread::sleep(WATCH_PERIOD);
                let Some(watched) = watched.upgrade() else {
                    return;
                };
                let watchdog = Watchdog(watched);
                if watchdog.failure().is_some() {
                    return;
                }
                for member in watchdog.members() {
                    if let Err(reason) = member
                        .ready()
                        .and_then(|_| member.completed(watchdog.0.timeout))
                    {
                        watchdog.abort(reason);
                        break;
                    }
                }
            });
        });
    }

    /// Waits until `member`'s last NCCL call has finished, the watchdog fails, or `deadline`
    /// passes (then fails everything with `late`).
    fn wait_ready(
        &self,
        member: &Member,
        deadline: Instant,
        late: impl Fn() -> String,
    ) -> Result<()> {
        loop {
            if self.failure().is_some() {
                return Err(self.failed());
            }
            match member.ready() {
                Ok(true) => return Ok(()),
                Ok(false) if Instant::now() >= deadline => {
                    self.abort(late());
                    return Err(self.failed());
                }
                Ok(false) => std::thread::sleep(Duration::from_micros(200)),
                Err(reason) => {
                    self.abort(reason);
                    return Err(self.failed());
                }
            }
        }
    }
}

/// One rank's NCCL communicator, on one GPU.
pub struct NcclCommunicator {
    member: Arc<Member>,
    watchdog: Watchdog,
    size: usize,
    ordinal: usize,
}

/// A non-blocking communicator's configuration (NCCL_CONFIG_INITIALIZER with blocking off),
/// so that no NCCL call can block the host beyond the watchdog's reach.
fn non_blocking() -> sys::ncclConfig_t {
    const UNSET: std::ffi::c_int = std::ffi::c_int::MIN;
    sys::ncclConfig_t {
        size: std::mem::size_of::<sys::ncclConfig_t>(),
        magic: 0xcafebeef,
        // NCCL_VERSION(2, 28, 0): the layout of cudarc's `nccl-02028` bindings.
        version: 22800,
        blocking: 0,
        cgaClusterSize: UNSET,
        minCTAs: UNSET,
        maxCTAs: UNSET,
        netName: std::ptr::null(),
        splitShare: UNSET,
        trafficClass: UNSET,
        commName: std::ptr::null(),
        collnetEnable: UNSET,
        CTAPolicy: UNSET,
        shrinkShare: UNSET,
        nvlsCTAs: UNSET,
        nChannelsPerNetPeer: UNSET,
        nvlinkCentricSched: UNSET,
    }
}

impl NcclCommunicator {
    /// Joins communicator `id` as `rank` of `size` on `backend`'s GPU. Every rank calls this
    /// at the same time (from its own thread or process) with the same id; a rank that does
    /// not come within the watchdog's timeout fails them all.
    pub fn new(
        backend: &CudaBackend,
        rank: usize,
        size: usize,
        id: NcclId,
        watchdog: &Watchdog,
    ) -> Result<Self> {
        load_nccl()?;
        let context = backend.stream.context();
        let ordinal = context.ordinal();
        if rank >= size {
            return Err(Error::Parallel(format!("rank {rank} of a group of {size}")));
        }
        let (ranks, me) = (size as std::ffi::c_int, rank as std::ffi::c_int);
        // NCCL joins on the thread's current device.
        context.bind_to_thread().map_err(backend_error)?;
        let mut comm = std::ptr::null_mut();
        let mut config = non_blocking();
        // SAFETY: `comm` and `config` outlive the call; the id came from ncclGetUniqueId.
        let started =
            unsafe { result::comm_init_rank_config(&mut comm, ranks, id.0, me, &mut config) };
        let what = format!("rank {rank} of {size} joining on cuda:{ordinal}");
        if let Err(e) = started {
            let error = nccl_error(&what, e, (!comm.is_null()).then_some(comm));
            if !comm.is_null() {
                // SAFETY: a handle NCCL returned, used no more.
                let _ = unsafe { result::comm_abort(comm) };
            }
            watchdog.abort(error.to_string());
            return Err(error);
        }
        let member = Arc::new(Member {
            rank,
            comm: Mutex::new(Some(Handle(comm))),
            pending: Mutex::new(VecDeque::new()),
        });
        watchdog.watch(&member);
        let deadline = Instant::now() + watchdog.0.timeout;
        watchdog.wait_ready(&member, deadline, || {
            format!(
                "{what}: the other ranks did not all join within {:.0} s",
                watchdog.0.timeout.as_secs_f64()
            )
        })?;
        Ok(NcclCommunicator {
            member,
            watchdog: watchdog.clone(),
            size,
            ordinal,
        })
    }

    /// One backend and one communicator for each GPU of `ordinals`, rank `i` on
    /// `ordinals[i]`: each GPU opened and joined from its own thread, at the same time.
    /// Waits for the others as long as `DESTINY_COLLECTIVE_TIMEOUT` says.
    pub fn local(ordinals: &[usize], precision: Precision) -> Result<Vec<(CudaBackend, Self)>> {
        let id = NcclId::new()?;
        let watchdog = Watchdog::new(peer_timeout()?);
        let size = ordinals.len();
        std::thread::scope(|scope| {
            let threads: Vec<_> = ordinals
                .iter()
                .enumerate()
                .map(|(rank, &ordinal)| {
                    let watchdog = &watchdog;
                    scope.spawn(move || {
                        let joined = CudaBackend::new(ordinal).and_then(|backend| {
                            let backend = backend.with_precision(precision);
                            let comm = NcclCommunicator::new(&backend, rank, size, id, watchdog)?;
                            Ok((backend, comm))
                        });
                        // The others are waiting to join: let them fail now.
                        if let Err(error) = &joined {
                            watchdog.abort(format!("rank {rank} on cuda:{ordinal}: {error}"));
                        }
                        joined
                    })
                })
                .collect();
            let joined: Vec<Result<_>> = threads
                .into_iter()
                .map(|t| t.join().expect("a rank panicked while joining"))
                .collect();
            match watchdog.failure() {
                Some(reason) => Err(Error::Parallel(reason.to_string())),
                None => joined.into_iter().collect(),
            }
        })
    }

    /// This process's rank of a multi-process job that a launcher started: meets the other
    /// ranks through the launcher's rendezvous (rank 0 makes NCCL's id and hands it out) and
    /// joins on `backend`'s GPU.
    pub fn join(backend: &CudaBackend, launch: &Launch) -> Result<Self> {
        let timeout = peer_timeout()?;
        let id = share(launch, || NcclId::new().map(|id| id.to_bytes()), timeout)?;
        let watchdog = Watchdog::new(timeout);
        NcclCommunicator::new(
            backend,
            launch.rank,
            launch.world_size,
            NcclId::from_bytes(&id)?,
            &watchdog,
        )
    }

    /// The watchdog of this process's communicators: [`Watchdog::abort`] makes every rank
    /// fail at its next collective.
    pub fn watchdog(&self) -> &Watchdog {
        &self.watchdog
    }

    /// Queues one collective of `count` values on `backend`'s stream with `call(comm, stream)`.
    fn collective(
        &self,
        backend: &CudaBackend,
        what: &str,
        count: usize,
        call: impl FnOnce(
            sys::ncclComm_t,
            sys::cudaStream_t,
        ) -> std::result::Result<NcclStatus, NcclError>,
    ) -> Result<()> {
        let context = backend.stream.context();
        if context.ordinal() != self.ordinal {
            return Err(Error::Parallel(format!(
                "rank {}'s communicator is on cuda:{}, its {what} was given a buffer on cuda:{}",
                self.member.rank,
                self.ordinal,
                context.ordinal()
            )));
        }
        // Every rank has the same count, so all skip an empty collective alike.
        if count == 0 {
            return Ok(());
        }
        context.bind_to_thread().map_err(backend_error)?;
        let status = {
            let comm = self.member.comm();
            let Some(handle) = comm.as_ref() else {
                return Err(self.watchdog.failed());
            };
            call(handle.0, backend.stream.cu_stream() as sys::cudaStream_t).map_err(|e| {
                nccl_error(
                    &format!("rank {} {what}", self.member.rank),
                    e,
                    Some(handle.0),
                )
            })
        };
        match status {
            Err(error) => {
                self.watchdog.abort(error.to_string());
                return Err(error);
            }
            Ok(NcclStatus::InProgress) => {
                let deadline = Instant::now() + self.watchdog.0.timeout;
                self.watchdog.wait_ready(&self.member, deadline, || {
                    format!(
                        "rank {}: NCCL did not queue an {what} in time",
                        self.member.rank
                    )
                })?;
            }
            Ok(_) => {}
        }
        let done = backend.stream.record_event(None).map_err(backend_error)?;
        self.member.pending().push_back((done, Instant::now()));
        Ok(())
    }
}

fn address(buffer: &CudaSlice<f32>, backend: &CudaBackend) -> *mut std::ffi::c_void {
    buffer.device_ptr(&backend.stream).0 as *mut std::ffi::c_void
}

impl Communicator<CudaBackend> for NcclCommunicator {
    fn rank(&self) -> usize {
        self.member.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_gather(
        &self,
        backend: &CudaBackend,
        send: &CudaSlice<f32>,
        count: usize,
        recv: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_len("all-gather input", send.len(), count)?;
        check_len("all-gather output", recv.len(), count * self.size)?;
        // NCCL takes addresses and counts: buffers longer than `count` need no views.
        let (from, to) = (address(send, backend), address(recv, backend));
        self.collective(backend, "all-gather", count, |comm, stream| unsafe {
            // SAFETY: both buffers live on this GPU and hold the counts checked above.
            result::all_gather(
                from,
                to,
                count,
                sys::ncclDataType_t::ncclFloat32,
                comm,
                stream,
            )
        })
    }

    fn reduce_scatter(
        &self,
        backend: &CudaBackend,
        send: &CudaSlice<f32>,
        count: usize,
        recv: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_len("reduce-scatter input", send.len(), count * self.size)?;
        check_len("reduce-scatter output", recv.len(), count)?;
        let (from, to) = (address(send, backend), address(recv, backend));
        self.collective(backend, "reduce-scatter", count, |comm, stream| unsafe {
            // SAFETY: as in all_gather.
            result::reduce_scatter(
                from,
                to,
                count,
                sys::ncclDataType_t::ncclFloat32,
                sys::ncclRedOp_t::ncclSum,
                comm,
                stream,
            )
        })
    }

    fn all_reduce(
        &self,
        backend: &CudaBackend,
        buffer: &mut CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        check_len("all-reduce buffer", buffer.len(), len)?;
        let at = address(buffer, backend);
        self.collective(backend, "all-reduce", len, |comm, stream| unsafe {
            // SAFETY: as in all_gather; NCCL reduces in place when both addresses agree.
            result::all_reduce(
                at,
                at,
                len,
                sys::ncclDataType_t::ncclFloat32,
                sys::ncclRedOp_t::ncclSum,
                comm,
                stream,
            )
        })
    }
}

impl Drop for NcclCommunicator {
    /// Lets the queued collectives finish (the watchdog bounds the wait), then finalizes the
    /// communicator, or aborts it after a failure.
    fn drop(&mut self) {
        while self.watchdog.failure().is_none() && !self.member.pending().is_empty() {
            if let Err(reason) = self.member.completed(self.watchdog.0.timeout) {
                self.watchdog.abort(reason);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if self.watchdog.failure().is_some() {
            return self.member.abort();
        }
        let finalized = self.member.comm().as_ref().map(|handle| {
            // SAFETY: a live communicator; non-blocking, so completion is polled below.
            unsafe { result::comm_finalize(handle.0) }
        });
        let deadline = Instant::now() + self.watchdog.0.timeout;
        let flushed = match finalized {
            None => return,
            Some(Err(_)) => false,
            Some(Ok(_)) => self
                .watchdog
                .wait_ready(&self.member, deadline, || {
                    format!("rank {}: NCCL did not finalize in time", self.member.rank)
                })
                .is_ok(),
        };
        match self.member.comm().take() {
            // SAFETY: the handle is taken out, so nothing uses it again.
            Some(handle) if flushed => {
                let _ = unsafe { result::comm_destroy(handle.0) };
            }
            Some(handle) => {
                let _ = unsafe { result::comm_abort(handle.0) };
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_travel_as_128_bytes() {
        let bytes: Vec<u8> = (0..128).map(|i| (255 - i) as u8).collect();
        assert_eq!(NcclId::from_bytes(&bytes).unwrap().to_bytes(), bytes);
        let message = NcclId::from_bytes(&bytes[..7]).err().unwrap().to_string();
        assert!(message.contains("128 bytes, not 7"), "{message}");
    }

    #[test]
    fn no_libnccl_is_a_clear_error_and_multicast_stays_off() {
        // SAFETY: only looks for the library.
        if unsafe { sys::is_culib_present() } {
            return;
        }
        let message = NcclId::new().err().unwrap().to_string();
        assert!(
            message.contains("NCCL (libnccl.so) was not found"),
            "{message}"
        );
        assert!(std::env::var_os("NCCL_NVLS_ENABLE").is_some());
    }
}
