//! Ranks as processes, on one host or several, exchanging through TCP: the group that trains
//! on CPUs across machines (a Spark job's executors, an mpirun job without GPUs), as gloo
//! does for PyTorch. Collectives run as rings, each rank sending to the next and receiving
//! from the previous, so a rank moves about twice its buffer per all-reduce, whatever the
//! number of ranks.

use super::communicator::{host_prefix, Communicator};
use super::rendezvous::{gather, peer_timeout, Launch};
use super::split::Split;
use crate::backend::Backend;
use crate::error::{Error, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Opens a ring connection, so that a rank's listener ignores strangers.
const RING_HELLO: &[u8; 8] = b"DSTNYRNG";

/// One rank's connections to its neighbours in the ring of a job's ranks. After a failed
/// collective every later one fails at once with the first failure: a ring that lost bytes
/// midway cannot be resumed.
pub struct SocketGroup {
    rank: usize,
    size: usize,
    ring: Mutex<Ring>,
}

struct Ring {
    /// To rank `rank + 1`.
    next: TcpStream,
    /// From rank `rank - 1`.
    previous: TcpStream,
    broken: Option<String>,
}

impl SocketGroup {
    /// This process's rank of a job that a launcher started: listens on a free port of every
    /// interface, learns every rank's port through the launcher's rendezvous, and connects to
    /// its neighbours. Waits `DESTINY_COLLECTIVE_TIMEOUT` for the others, in this and in every
    /// collective.
    pub fn join(launch: &Launch) -> Result<SocketGroup> {
        let timeout = peer_timeout()?;
        let deadline = Instant::now() + timeout;
        let (rank, size) = (launch.rank, launch.world_size);
        let v6 = (launch.master_addr.as_str(), 0)
            .to_socket_addrs()
            .is_ok_and(|mut found| matches!(found.next(), Some(SocketAddr::V6(_))));
        let any = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let listener = TcpListener::bind((any, 0))
            .map_err(|e| Error::Parallel(format!("rank {rank} cannot listen for its ring: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Parallel(format!("rank {rank}'s ring listener: {e}")))?
            .port();
        // Rank 0's token names the job, so that a rank never joins another job's ring.
        let token: u64 = if rank == 0 { rand::random() } else { 0 };
        let mut mine = port.to_le_bytes().to_vec();
        mine.extend(token.to_le_bytes());
        let arrivals = gather(launch, mine, timeout)?;
        let port_of = |r: usize| -> Result<u16> {
            let payload = &arrivals[r].payload;
            payload
                .get(..2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or_else(|| Error::Parallel(format!("rank {r} brought no ring port")))
        };
        let token = arrivals[0]
            .payload
            .get(2..10)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| Error::Parallel("rank 0 brought no job token".into()))?;
        let next_rank = (rank + 1) % size;
        let next_address = address(&arrivals[next_rank].host, port_of(next_rank)?);
        let (next, previous) = std::thread::scope(|scope| {
            let next = scope.spawn(|| connect(&next_address, rank, next_rank, token, deadline));
            let previous = accept(&listener, rank, (rank + size - 1) % size, token, deadline);
            (next.join().expect("connecting does not panic"), previous)
        });
        let (next, previous) = (next?, previous?);
        for stream in [&next, &previous] {
            stream
                .set_read_timeout(Some(timeout))
                .and_then(|()| stream.set_write_timeout(Some(timeout)))
                .and_then(|()| stream.set_nodelay(true))
                .map_err(|e| Error::Parallel(format!("rank {rank}'s ring: {e}")))?;
        }
        Ok(SocketGroup {
            rank,
            size,
            ring: Mutex::new(Ring {
                next,
                previous,
                broken: None,
            }),
        })
    }

    /// Runs `collective` on the ring, unless an earlier one failed; a failure breaks it.
    fn on_ring(&self, collective: impl FnOnce(&Ring) -> Result<()>) -> Result<()> {
        let mut ring = self.ring.lock().expect("a collective panicked");
        if let Some(reason) = &ring.broken {
            return Err(Error::Parallel(format!(
                "an earlier collective failed: {reason}"
            )));
        }
        let result = collective(&ring);
        if let Err(error) = &result {
            ring.broken = Some(error.to_string());
        }
        result
    }

    /// Sends `out` to the next rank while `into` is filled from the previous one.
    fn step(&self, ring: &Ring, out: &[f32], into: &mut [f32]) -> Result<()> {
        let (received, sent) = std::thread::scope(|scope| {
            let sender = scope.spawn(|| (&ring.next).write_all(bytes(out)));
            let received = (&ring.previous).read_exact(bytes_mut(into));
            (received, sender.join().expect("sending does not panic"))
        });
        let previous = (self.rank + self.size - 1) % self.size;
        received.map_err(|e| self.lost(previous, "receiving from", e))?;
        sent.map_err(|e| self.lost((self.rank + 1) % self.size, "sending to", e))
    }

    fn lost(&self, peer: usize, doing: &str, error: std::io::Error) -> Error {
        let what = match error.kind() {
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
                format!("rank {peer} closed its connection (it stopped or failed)")
            }
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                format!("rank {peer} did not answer in time (DESTINY_COLLECTIVE_TIMEOUT)")
            }
            _ => error.to_string(),
        };
        Error::Parallel(format!("rank {} {doing} rank {peer}: {what}", self.rank))
    }

    /// Ring reduce-scatter: afterwards `data[ranges[rank]]` holds the sum over ranks of theirs.
    fn reduce_scatter_ring(
        &self,
        ring: &Ring,
        data: &mut [f32],
        ranges: &[Range<usize>],
    ) -> Result<()> {
        let (n, r) = (self.size, self.rank);
        let mut incoming = vec![0.0; ranges.iter().map(|c| c.len()).max().unwrap_or(0)];
        for step in 0..n - 1 {
            let send = ranges[(2 * n + r - step - 1) % n].clone();
            let take = ranges[(2 * n + r - step - 2) % n].clone();
            let into = &mut incoming[..take.len()];
            self.step(ring, &data[send], into)?;
            data[take]
                .iter_mut()
                .zip(into.iter())
                .for_each(|(d, i)| *d += i);
        }
        Ok(())
    }

    /// Ring all-gather: afterwards every `data[ranges[q]]` holds rank `q`'s.
    fn all_gather_ring(
        &self,
        ring: &Ring,
        data: &mut [f32],
        ranges: &[Range<usize>],
    ) -> Result<()> {
        let (n, r) = (self.size, self.rank);
        let mut outgoing = Vec::new();
        for step in 0..n - 1 {
            let send = ranges[(n + r - step) % n].clone();
            let take = ranges[(2 * n + r - step - 1) % n].clone();
            outgoing.clear();
            outgoing.extend_from_slice(&data[send]);
            self.step(ring, &outgoing, &mut data[take])?;
        }
        Ok(())
    }
}

/// `count` values for each of `size` ranks, back to back.
fn equal_parts(size: usize, count: usize) -> Vec<Range<usize>> {
    (0..size).map(|q| q * count..(q + 1) * count).collect()
}

impl<B: Backend> Communicator<B> for SocketGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_gather(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()> {
        let mine = host_prefix(backend, send, count)?;
        let mut all = vec![0.0; self.size * count];
        all[self.rank * count..(self.rank + 1) * count].copy_from_slice(&mine);
        let parts = equal_parts(self.size, count);
        self.on_ring(|ring| self.all_gather_ring(ring, &mut all, &parts))?;
        backend.write(&all, recv)
    }

    fn reduce_scatter(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()> {
        let mut all = host_prefix(backend, send, self.size * count)?;
        let parts = equal_parts(self.size, count);
        self.on_ring(|ring| self.reduce_scatter_ring(ring, &mut all, &parts))?;
        backend.write(&all[parts[self.rank].clone()], recv)
    }

    fn all_reduce(&self, backend: &B, buffer: &mut B::Buffer, len: usize) -> Result<()> {
        let mut all = host_prefix(backend, buffer, len)?;
        let parts: Vec<_> = Split::new(len, self.size).ranges().collect();
        self.on_ring(|ring| {
            self.reduce_scatter_ring(ring, &mut all, &parts)?;
            self.all_gather_ring(ring, &mut all, &parts)
        })?;
        backend.write(&all, buffer)
    }
}

fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A ring connection's first bytes: the hello, the job's token and the sender's rank.
fn greeting(token: u64, rank: usize) -> Vec<u8> {
    let mut bytes = RING_HELLO.to_vec();
    bytes.extend(token.to_le_bytes());
    bytes.extend((rank as u32).to_le_bytes());
    bytes
}

/// Connects to the next rank at `address` (it may not listen yet), and greets it.
fn connect(
    address: &str,
    rank: usize,
    next: usize,
    token: u64,
    deadline: Instant,
) -> Result<TcpStream> {
    let mut last = String::from("no attempt");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::Parallel(format!(
                "rank {rank} could not reach rank {next} at {address}: {last}"
            )));
        }
        let attempt = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "cannot resolve it"))
            .and_then(|socket| TcpStream::connect_timeout(&socket, remaining))
            .and_then(|mut stream| {
                stream.write_all(&greeting(token, rank))?;
                Ok(stream)
            });
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50).min(remaining));
    }
}

/// Accepts the previous rank's connection on `listener`, skipping strangers.
fn accept(
    listener: &TcpListener,
    rank: usize,
    previous: usize,
    token: u64,
    deadline: Instant,
) -> Result<TcpStream> {
    let failed = |e: std::io::Error| Error::Parallel(format!("rank {rank}'s ring listener: {e}"));
    listener.set_nonblocking(true).map_err(failed)?;
    let expected = greeting(token, previous);
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let greeted = stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(5))))
                    .and_then(|()| {
                        let mut hello = vec![0; expected.len()];
                        stream.read_exact(&mut hello).map(|()| hello)
                    });
                if greeted.is_ok_and(|hello| hello == expected) {
                    return Ok(stream);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    return Err(Error::Parallel(format!(
                        "rank {rank} waited for rank {previous} to connect, and it never did"
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(failed(e)),
        }
    }
}

// Values cross the wire in the host's byte order: every host that runs Destiny is
// little-endian (x86-64, aarch64).
fn bytes(values: &[f32]) -> &[u8] {
    bytemuck::cast_slice(values)
}

fn bytes_mut(values: &mut [f32]) -> &mut [u8] {
    bytemuck::cast_slice_mut(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::parallel::rendezvous::tests::{free_port, job};
    use crate::parallel::ThreadGroup;

    /// The three collectives of `communicator` on rank-dependent data of uneven lengths.
    fn collectives(
        communicator: &dyn Communicator<CpuBackend>,
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let cpu = CpuBackend::new();
        let (r, n) = (communicator.rank() as f32, communicator.size());
        let send: Vec<f32> = (0..5).map(|i| r * 10.0 + i as f32).collect();
        let mut gathered = vec![0.0; n * 5 + 1];
        communicator.all_gather(&cpu, &send, 5, &mut gathered)?;
        let parts: Vec<f32> = (0..n * 3).map(|i| (i as f32 + 0.25) * (r + 1.0)).collect();
        let mut scattered = vec![0.0; 3];
        communicator.reduce_scatter(&cpu, &parts, 3, &mut scattered)?;
        let mut reduced: Vec<f32> = (0..11).map(|i| i as f32 * 0.5 + r).collect();
        communicator.all_reduce(&cpu, &mut reduced, 7)?;
        Ok((gathered, scattered, reduced))
    }

    /// What each rank's collectives gave: all-reduce, all-gather and reduce-scatter.
    type Collected = (Vec<f32>, Vec<f32>, Vec<f32>);

    fn run_all<C: Communicator<CpuBackend>>(
        ranks: Vec<Box<dyn FnOnce() -> Result<C> + Send>>,
    ) -> Vec<Result<Collected>> {
        std::thread::scope(|scope| {
            let threads: Vec<_> = ranks
                .into_iter()
                .map(|make| scope.spawn(move || collectives(&make()?)))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        })
    }

    #[test]
    fn collectives_over_sockets_equal_those_of_threads() {
        for size in [2, 3, 4] {
            let port = free_port();
            let sockets = run_all(
                (0..size)
                    .map(|rank| {
                        Box::new(move || SocketGroup::join(&job(rank, size, port)))
                            as Box<dyn FnOnce() -> Result<SocketGroup> + Send>
                    })
                    .collect(),
            );
            let threads = run_all(
                ThreadGroup::new(size)
                    .into_iter()
                    .map(|group| {
                        Box::new(move || Ok(group))
                            as Box<dyn FnOnce() -> Result<ThreadGroup> + Send>
                    })
                    .collect(),
            );
            for (rank, (socket, thread)) in sockets.into_iter().zip(threads).enumerate() {
                // The values are small integers and quarters: every order of the sums is exact.
                assert_eq!(
                    socket.unwrap(),
                    thread.unwrap(),
                    "{size} ranks, rank {rank}"
                );
            }
        }
    }

    #[test]
    fn a_rank_that_stops_fails_its_neighbours_instead_of_hanging() {
        let port = free_port();
        let started = Instant::now();
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..3)
                .map(|rank| {
                    scope.spawn(move || {
                        let group = SocketGroup::join(&job(rank, 3, port))?;
                        if rank == 2 {
                            return Ok(());
                        }
                        let cpu = CpuBackend::new();
                        let mut buffer = vec![1.0; 1000];
                        group.all_reduce(&cpu, &mut buffer, 1000)?;
                        group.all_reduce(&cpu, &mut buffer, 1000)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(results[2].is_ok());
        for result in &results[..2] {
            let message = result.as_ref().unwrap_err().to_string();
            assert!(message.contains("closed its connection"), "{message}");
        }
    }
}
