//! How the processes of a multi-process job meet, through what an existing launcher provides:
//! its environment says each process's rank and where rank 0 is, and rank 0 hands every other
//! rank what every rank brought (NCCL's unique id, or the ports of a socket group's ring) over
//! one short TCP exchange. Nothing here needs a GPU.
//!
//! | launcher | rank | ranks | GPU | rank 0's address |
//! | --- | --- | --- | --- | --- |
//! | torchrun, Spark barrier tasks | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` | `MASTER_ADDR`, `MASTER_PORT` |
//! | mpirun (Open MPI) | `OMPI_COMM_WORLD_RANK` | `OMPI_COMM_WORLD_SIZE` | `OMPI_COMM_WORLD_LOCAL_RANK` | `MASTER_ADDR`, `MASTER_PORT` |
//!
//! `MASTER_ADDR` may be left out when every rank runs on one host (`LOCAL_WORLD_SIZE` or
//! `OMPI_COMM_WORLD_LOCAL_SIZE` equals the number of ranks): it is then 127.0.0.1.
//! `MASTER_PORT` defaults to [`DEFAULT_PORT`].

use crate::error::{Error, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Rank 0's port when `MASTER_PORT` is not set (torchrun's default).
pub const DEFAULT_PORT: u16 = 29500;

/// How long to wait for other ranks when `DESTINY_COLLECTIVE_TIMEOUT` is not set: long enough
/// for rank 0 to write a large checkpoint while the others wait in the next collective.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Opens every request, so that rank 0 ignores strangers that reach its port.
const HELLO: &[u8; 8] = b"DSTNYRDV";

/// Longest payload a rank brings, and longest host name.
const MAX_PAYLOAD: usize = 1 << 16;

/// This process's place in a job that a launcher started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank, from 0.
    pub rank: usize,
    /// Number of ranks (processes) in the job.
    pub world_size: usize,
    /// This process's rank among those of its host: the GPU it takes.
    pub local_rank: usize,
    /// Rank 0's host.
    pub master_addr: String,
    /// The port rank 0 listens on.
    pub master_port: u16,
}

impl Launch {
    /// The job this process belongs to, read from the launcher's environment; `None` when no
    /// launcher started it, or started it alone (one rank).
    pub fn from_env() -> Result<Option<Launch>> {
        Launch::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Launch::from_env`], reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        let number = |name: &str| -> Result<Option<usize>> {
            var(name)
                .map(|text| {
                    text.trim().parse().map_err(|_| {
                        Error::Parallel(format!(
                            "launcher variable {name}='{text}' is not a number"
                        ))
                    })
                })
                .transpose()
        };
        // (rank, world size, local rank, ranks on this host) variables of each convention.
        let conventions = [
            ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
            (
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
                "OMPI_COMM_WORLD_LOCAL_SIZE",
            ),
        ];
        let mut found = None;
        for names in conventions {
            if let Some(world) = number(names.1)? {
                found = Some((names, world));
                break;
            }
        }
        let Some(((rank_var, world_var, local_var, local_size_var), world_size)) = found else {
            return Ok(None);
        };
        if world_size == 0 {
            return Err(Error::Parallel(format!(
                "launcher variable {world_var} is 0"
            )));
        }
        if world_size == 1 {
            return Ok(None);
        }
        let rank = number(rank_var)?
            .ok_or_else(|| Error::Parallel(format!("{world_var} is set but {rank_var} is not")))?;
        if rank >= world_size {
            return Err(Error::Parallel(format!(
                "{rank_var}={rank} is not below {world_var}={world_size}"
            )));
        }
        let master_addr = match var("MASTER_ADDR") {
            Some(address) => address,
            None if number(local_size_var)? == Some(world_size) => "127.0.0.1".into(),
            None => {
                return Err(Error::Parallel(format!(
                    "the launcher started {world_size} ranks ({world_var}) but MASTER_ADDR is not \
                     set: set MASTER_ADDR to rank 0's host (and MASTER_PORT) for every rank"
                )))
            }
        };
        let master_port = match var("MASTER_PORT") {
            Some(text) => text.trim().parse().map_err(|_| {
                Error::Parallel(format!("MASTER_PORT='{text}' is not a port number"))
            })?,
            None => DEFAULT_PORT,
        };
        Ok(Some(Launch {
            rank,
            world_size,
            local_rank: number(local_var)?.unwrap_or(0),
            master_addr,
            master_port,
        }))
    }

    /// Rank 0's address as the other ranks dial it.
    pub fn master(&self) -> String {
        if self.master_addr.contains(':') {
            format!("[{}]:{}", self.master_addr, self.master_port)
        } else {
            format!("{}:{}", self.master_addr, self.master_port)
        }
    }
}

/// How long a rank waits for the others (to meet, and in a collective) before it fails:
/// `DESTINY_COLLECTIVE_TIMEOUT` seconds, 300 when unset.
pub fn peer_timeout() -> Result<Duration> {
    match std::env::var("DESTINY_COLLECTIVE_TIMEOUT") {
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                Error::Parallel(format!(
                    "DESTINY_COLLECTIVE_TIMEOUT='{text}' is not a positive number of seconds"
                ))
            }),
        Err(_) => Ok(DEFAULT_TIMEOUT),
    }
}

/// What one rank brought to the rendezvous, and where the other ranks find its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// The rank's host as the others reach it: `MASTER_ADDR` for rank 0, for the others the
    /// address rank 0 saw their connection come from.
    pub host: String,
    /// The bytes it brought.
    pub payload: Vec<u8>,
}

/// Gives every rank of `launch`'s job what every rank brought (`mine`), in rank order: rank 0
/// listens on `MASTER_PORT` until every other rank has brought its bytes, then answers each
/// with all of them. Fails, naming the address and the missing ranks, when the ranks do not
/// all meet within `timeout`.
pub fn gather(launch: &Launch, mine: Vec<u8>, timeout: Duration) -> Result<Vec<Arrival>> {
    let deadline = Instant::now() + timeout;
    if mine.len() > MAX_PAYLOAD {
        return Err(Error::Parallel(format!(
            "rank {} brings {} bytes to the rendezvous, more than {MAX_PAYLOAD}",
            launch.rank,
            mine.len()
        )));
    }
    if launch.rank != 0 {
        return fetch(launch, &mine, deadline);
    }
    // Every interface, as torchrun's store does: MASTER_ADDR names this host as the others
    // reach it, which need not be an address this host can bind.
    let any = match resolve(&launch.master()) {
        Some(SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let listener = TcpListener::bind((any, launch.master_port)).map_err(|e| {
        Error::Parallel(format!(
            "rank 0 cannot listen on port {} (MASTER_PORT): {e}",
            launch.master_port
        ))
    })?;
    collect(&listener, launch, mine, deadline)
}

/// Gives every rank of `launch`'s job the same bytes, which rank 0 makes with `make`.
pub fn share(
    launch: &Launch,
    make: impl FnOnce() -> Result<Vec<u8>>,
    timeout: Duration,
) -> Result<Vec<u8>> {
    let mine = if launch.rank == 0 {
        make()?
    } else {
        Vec::new()
    };
    Ok(gather(launch, mine, timeout)?.swap_remove(0).payload)
}

fn resolve(address: &str) -> Option<SocketAddr> {
    address.to_socket_addrs().ok()?.next()
}

/// Rank 0's side: waits for one request of each other rank, then answers them all.
fn collect(
    listener: &TcpListener,
    launch: &Launch,
    mine: Vec<u8>,
    deadline: Instant,
) -> Result<Vec<Arrival>> {
    let world_size = launch.world_size;
    let port = launch.master_port;
    let failed = |e: std::io::Error| Error::Parallel(format!("rank 0 on port {port}: {e}"));
    listener.set_nonblocking(true).map_err(failed)?;
    let mut waiting: Vec<Option<(TcpStream, Arrival)>> = (0..world_size).map(|_| None).collect();
    let mut missing = world_size - 1;
    while missing > 0 {
        let (mut stream, peer) = match listener.accept() {
            Ok(connection) => connection,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    let missing: Vec<String> = (1..world_size)
                        .filter(|&r| waiting[r].is_none())
                        .map(|r| r.to_string())
                        .collect();
                    return Err(Error::Parallel(format!(
                        "rank 0 waited on port {port} and rank(s) {} of {world_size} never came",
                        missing.join(", ")
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(failed(e)),
        };
        // A stranger, or a rank of a job of another size, is skipped.
        let Ok(Some((rank, payload))) = read_request(&mut stream, world_size, deadline) else {
            continue;
        };
        match waiting.get_mut(rank) {
            Some(slot @ None) if rank > 0 => {
                let host = peer.ip().to_string();
                *slot = Some((stream, Arrival { host, payload }));
                missing -= 1;
            }
            _ => {
                return Err(Error::Parallel(format!(
                    "rank 0 on port {port}: {peer} claims rank {rank}, which is taken or not \
                     below {world_size}: are two jobs using one MASTER_PORT?"
                )))
            }
        }
    }
    let own = Arrival {
        host: launch.master_addr.clone(),
        payload: mine,
    };
    let arrivals: Vec<Arrival> = std::iter::once(own)
        .chain(waiting.iter().flatten().map(|(_, arrival)| arrival.clone()))
        .collect();
    let answer = encode(&arrivals);
    for (rank, (stream, _)) in waiting
        .iter_mut()
        .enumerate()
        .filter_map(|(r, w)| Some((r, w.as_mut()?)))
    {
        stream
            .write_all(&answer)
            .map_err(|e| Error::Parallel(format!("rank 0 could not answer rank {rank}: {e}")))?;
    }
    Ok(arrivals)
}

/// Reads one request: the rank it came from and what it brought, or `None` for a stranger or
/// a rank of a job of another size (closing without an answer tells that rank).
fn read_request(
    stream: &mut TcpStream,
    world_size: usize,
    deadline: Instant,
) -> std::io::Result<Option<(usize, Vec<u8>)>> {
    stream.set_nonblocking(false)?;
    // A rank sends its request at once: a connection that stays silent is not one.
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(wait))?;
    let mut request = [0u8; 20];
    stream.read_exact(&mut request)?;
    if &request[..8] != HELLO {
        return Ok(None);
    }
    let field = |at: usize| u32::from_le_bytes(request[at..at + 4].try_into().unwrap()) as usize;
    let (rank, their_world, length) = (field(8), field(12), field(16));
    if their_world != world_size || length > MAX_PAYLOAD {
        return Ok(None);
    }
    let mut payload = vec![0; length];
    stream.read_exact(&mut payload)?;
    Ok(Some((rank, payload)))
}

/// The answer's bytes: the number of ranks, then each rank's host and payload, each after its
/// length.
fn encode(arrivals: &[Arrival]) -> Vec<u8> {
    let mut bytes = (arrivals.len() as u32).to_le_bytes().to_vec();
    for arrival in arrivals {
        for field in [arrival.host.as_bytes(), &arrival.payload] {
            bytes.extend((field.len() as u32).to_le_bytes());
            bytes.extend(field);
        }
    }
    bytes
}

/// Another rank's side: asks rank 0 until it answers or `deadline` passes.
fn fetch(launch: &Launch, mine: &[u8], deadline: Instant) -> Result<Vec<Arrival>> {
    let (rank, world_size, address) = (launch.rank, launch.world_size, launch.master());
    let mut last = String::from("no attempt");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::Parallel(format!(
                "rank {rank} could not reach rank 0 at {address} (MASTER_ADDR:MASTER_PORT) in \
                 time: {last}"
            )));
        }
        match resolve(&address) {
            None => last = format!("cannot resolve {address}"),
            Some(socket) => match TcpStream::connect_timeout(&socket, remaining) {
                Ok(mut stream) => {
                    return request(&mut stream, rank, world_size, mine, remaining).map_err(|e| {
                        Error::Parallel(format!(
                            "rank {rank}: rank 0 at {address} did not answer ({e}); does it run \
                             the same job, with {world_size} ranks?"
                        ))
                    })
                }
                Err(e) => last = e.to_string(),
            },
        }
        std::thread::sleep(Duration::from_millis(100).min(remaining));
    }
}

/// Sends this rank's request and reads rank 0's answer, which comes once every rank is there.
fn request(
    stream: &mut TcpStream,
    rank: usize,
    world_size: usize,
    mine: &[u8],
    wait: Duration,
) -> std::io::Result<Vec<Arrival>> {
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(wait))?;
    let mut hello = HELLO.to_vec();
    for field in [rank, world_size, mine.len()] {
        hello.extend((field as u32).to_le_bytes());
    }
    hello.extend(mine);
    stream.write_all(&hello)?;
    fn read_length(stream: &mut TcpStream, limit: usize) -> std::io::Result<usize> {
        let mut length = [0u8; 4];
        stream.read_exact(&mut length)?;
        let length = u32::from_le_bytes(length) as usize;
        if length > limit {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("a field of {length} bytes"),
            ));
        }
        Ok(length)
    }
    if read_length(stream, world_size)? != world_size {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "an answer for another number of ranks",
        ));
    }
    let mut arrivals = Vec::with_capacity(world_size);
    for _ in 0..world_size {
        let mut fields = [Vec::new(), Vec::new()];
        for field in &mut fields {
            let length = read_length(stream, MAX_PAYLOAD)?;
            field.resize(length, 0);
            stream.read_exact(field)?;
        }
        let [host, payload] = fields;
        let host = String::from_utf8(host)
            .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "a host that is not text"))?;
        arrivals.push(Arrival { host, payload });
    }
    Ok(arrivals)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn launch(pairs: &[(&str, &str)]) -> Result<Option<Launch>> {
        Launch::from_vars(vars(pairs))
    }

    #[test]
    fn torchrun_and_mpirun_environments() {
        let torchrun = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "1234"),
        ]);
        assert_eq!(
            torchrun.unwrap(),
            Some(Launch {
                rank: 3,
                world_size: 4,
                local_rank: 1,
                master_addr: "node0".into(),
                master_port: 1234,
            })
        );
        // mpirun on one host: rank 0 on the loopback at the default port.
        let mpirun = launch(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((mpirun.rank, mpirun.local_rank), (1, 1));
        assert_eq!(mpirun.master(), format!("127.0.0.1:{DEFAULT_PORT}"));
        assert_eq!(launch(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        assert_eq!(launch(&[]).unwrap(), None);
        let v6 = launch(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "::1")]);
        assert_eq!(
            v6.unwrap().unwrap().master(),
            format!("[::1]:{DEFAULT_PORT}")
        );
    }

    #[test]
    fn launcher_mistakes_are_named() {
        let error = |pairs: &[(&str, &str)]| launch(pairs).unwrap_err().to_string();
        assert!(error(&[("WORLD_SIZE", "two")]).contains("WORLD_SIZE='two'"));
        assert!(error(&[("WORLD_SIZE", "2")]).contains("RANK is not"));
        let message = error(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "a")]);
        assert!(
            message.contains("RANK=2 is not below WORLD_SIZE=2"),
            "{message}"
        );
        // Across hosts, 127.0.0.1 would be wrong: MASTER_ADDR is required.
        let message = error(&[
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ]);
        assert!(message.contains("MASTER_ADDR is not set"), "{message}");
        let message = error(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "a"),
            ("MASTER_PORT", "99999"),
        ]);
        assert!(message.contains("MASTER_PORT='99999'"), "{message}");
    }

    /// A port free on the loopback now.
    pub(crate) fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Rank `rank` of a job of `world_size` ranks on the loopback, rank 0 at `port`.
    pub(crate) fn job(rank: usize, world_size: usize, port: u16) -> Launch {
        Launch {
            rank,
            world_size,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
        }
    }

    #[test]
    fn every_rank_gets_rank_zeros_bytes_whoever_starts_first() {
        let port = free_port();
        let id: Vec<u8> = (0..128).map(|i| (i * 7 % 256) as u8).collect();
        let wait = Duration::from_secs(20);
        let results: Vec<Result<Vec<u8>>> = std::thread::scope(|scope| {
            // The other ranks start before rank 0 listens, as they may under a launcher.
            let others: Vec<_> = (1..4)
                .map(|rank| {
                    scope.spawn(move || share(&job(rank, 4, port), || unreachable!(), wait))
                })
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            // A stranger on the port is ignored.
            scope.spawn(move || {
                let mut stranger = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stranger.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            });
            let first = share(&job(0, 4, port), || Ok(id.clone()), wait);
            std::iter::once(first)
                .chain(others.into_iter().map(|h| h.join().unwrap()))
                .collect()
        });
        for (rank, result) in results.into_iter().enumerate() {
            assert_eq!(result.unwrap(), id, "rank {rank}");
        }
    }

    #[test]
    fn every_rank_gets_what_every_rank_brought() {
        let port = free_port();
        let wait = Duration::from_secs(20);
        let results: Vec<Result<Vec<Arrival>>> = std::thread::scope(|scope| {
            let ranks: Vec<_> = (0..3)
                .map(|rank| {
                    scope.spawn(move || gather(&job(rank, 3, port), vec![rank as u8; rank], wait))
                })
                .collect();
            ranks.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let expected: Vec<Arrival> = (0..3)
            .map(|rank| Arrival {
                host: "127.0.0.1".into(),
                payload: vec![rank as u8; rank],
            })
            .collect();
        for result in results {
            assert_eq!(result.unwrap(), expected);
        }
    }

    #[test]
    fn a_missing_rank_zero_or_rank_is_a_timely_error() {
        let port = free_port();
        let started = Instant::now();
        let message = share(
            &job(1, 2, port),
            || unreachable!(),
            Duration::from_millis(500),
        )
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            message.contains(&format!(
                "rank 1 could not reach rank 0 at 127.0.0.1:{port}"
            )),
            "{message}"
        );
        let message = share(&job(0, 3, port), || Ok(vec![1]), Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("rank(s) 1, 2 of 3 never came"),
            "{message}"
        );
    }

    #[test]
    fn a_rank_of_another_job_size_is_turned_away() {
        let port = free_port();
        let wait = Duration::from_secs(2);
        std::thread::scope(|scope| {
            let server = scope.spawn(move || share(&job(0, 2, port), || Ok(vec![9; 128]), wait));
            let message = share(&job(1, 3, port), || unreachable!(), wait)
                .unwrap_err()
                .to_string();
            assert!(message.contains("with 3 ranks"), "{message}");
            // Rank 0 still serves its own rank 1.
            assert_eq!(
                share(&job(1, 2, port), || unreachable!(), wait).unwrap(),
                vec![9; 128]
            );
            assert_eq!(server.join().unwrap().unwrap(), vec![9; 128]);
        });
    }
}
