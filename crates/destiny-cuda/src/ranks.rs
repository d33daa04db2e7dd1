//! Running work on every rank of a group ([`with_ranks`]): one rank on the CPU or one GPU,
//! the GPUs of this host (one thread each, NCCL between them), or this process's rank in a
//! job that a launcher (torchrun, Spark barrier tasks, mpirun) started with one process per
//! GPU (NCCL) or per CPU host ([`SocketGroup`]). Shared by the command line and the Python
//! package.

use crate::select::fp32_on_the_cpu;
use crate::{
    with_backend, BackendTask, CudaBackend, DeviceChoice, NcclCommunicator, Precision, Watchdog,
};
use anyhow::{anyhow, bail, Context};
use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::Backend;
use destiny_core::model::Topology;
use destiny_core::parallel::rendezvous::Launch;
use destiny_core::parallel::{Communicator, Group, Parallelism, SocketGroup};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

/// How several ranks share a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParallelChoice {
    /// Every layer split across the ranks.
    Model,
    /// Every rank the whole network and a share of each batch.
    Data,
    /// Data parallel for small, narrow networks, else model parallel (see [`prefers_data`]).
    Auto,
}

impl FromStr for ParallelChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "model" => Ok(ParallelChoice::Model),
            "data" => Ok(ParallelChoice::Data),
            "auto" => Ok(ParallelChoice::Auto),
            _ => Err(format!("unknown parallelism '{text}': model, data or auto")),
        }
    }
}

/// The size of a network, from which `--parallel auto` chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkSize {
    /// Weights and biases, all layers.
    pub parameters: usize,
    /// Units of the widest layer.
    pub widest: usize,
}

impl NetworkSize {
    /// The size of a resolved network.
    pub fn of(topology: &Topology) -> Self {
        NetworkSize {
            parameters: topology.parameter_count(),
            widest: topology.layers.iter().map(|l| l.width).max().unwrap_or(0),
        }
    }
}

/// Work that runs once on every rank of a group, each in its own thread.
pub trait RankTask: Sync {
    type Output: Send;
    /// The network's size, for `--parallel auto`.
    fn size(&self) -> NetworkSize;
    /// Rank `group.rank()`'s part on its backend. Only rank 0 writes files.
    fn run<B: Backend>(&self, backend: B, group: Group<B>) -> anyhow::Result<Self::Output>;
}

/// The widest layer that `--parallel auto` still runs data parallel.
const DATA_PARALLEL_WIDEST: usize = 16_384;

/// `--parallel auto`'s rule: data parallel when the network's weights, gradients and Adam
/// state (16 bytes a parameter) take at most a quarter of the GPU's memory (`memory`; any
/// size on the CPU) and no layer is wider than 16,384 units. Then the gradients that every
/// step all-reduces are small, and every GPU computes whole layers on its share of the batch.
/// Otherwise model parallel: it splits what does not fit one GPU, and for wide layers it
/// moves a batch's activations, which cost less than the layer's gradients.
pub fn prefers_data(size: NetworkSize, memory: Option<u64>) -> bool {
    let state = size.parameters as u64 * 16;
    size.widest <= DATA_PARALLEL_WIDEST && memory.is_none_or(|bytes| state <= bytes / 4)
}

/// Runs `task` on every rank of the chosen devices and returns this process's ranks' outputs
/// in rank order: one rank on the CPU or one GPU (as [`with_backend`]); one rank per GPU,
/// in threads of this process, for several GPUs; this process's one rank when a launcher
/// started a job of several processes (on its GPU, or on the CPU with `--device cpu` or
/// where it sees none). A rank that fails makes the others fail at their next collective,
/// and the error returned is the first failing rank's, with its number.
pub fn with_ranks<T: RankTask>(
    device: &DeviceChoice,
    parallel: ParallelChoice,
    precision: Precision,
    task: &T,
) -> anyhow::Result<Vec<T::Output>> {
    if let Some(launch) = Launch::from_env()? {
        let rank = format!("rank {} of {}", launch.rank, launch.world_size);
        let gpus = CudaBackend::count();
        if launched_on_cpu(device, &gpus) {
            fp32_on_the_cpu(precision)?;
            let communicator = SocketGroup::join(&launch).with_context(|| rank)?;
            let ranks = vec![Rank {
                backend: CpuBackend::new(),
                communicator: Arc::new(communicator) as Arc<dyn Communicator<CpuBackend>>,
                memory: None,
            }];
            return run_ranks(ranks, launch.world_size, parallel, None, task);
        }
        let ordinal = launcher_gpu(device, &launch, gpus?)?;
        let backend = CudaBackend::new(ordinal)
            .map(|g| g.with_precision(precision))
            .with_context(|| rank.clone())?;
        let communicator = NcclCommunicator::join(&backend, &launch).with_context(|| rank)?;
        let watchdog = communicator.watchdog().clone();
        let ranks = vec![local_rank(backend, communicator)];
        return run_ranks(ranks, launch.world_size, parallel, Some(&watchdog), task);
    }
    let ordinals = match device {
        DeviceChoice::Gpus(ordinals) if ordinals.len() > 1 => ordinals.clone(),
        DeviceChoice::CudaAll => match CudaBackend::count()? {
            0 => bail!("--device cuda:all: the driver sees no GPU"),
            1 => vec![0],
            count => (0..count).collect(),
        },
        _ => return with_backend(device, precision, Alone(task)),
    };
    if ordinals.len() == 1 {
        return with_backend(&DeviceChoice::Cuda, precision, Alone(task));
    }
    let ranks = NcclCommunicator::local(&ordinals, precision)?;
    let watchdog = ranks[0].1.watchdog().clone();
    let ranks: Vec<_> = ranks
        .into_iter()
        .map(|(backend, communicator)| local_rank(backend, communicator))
        .collect();
    run_ranks(ranks, ordinals.len(), parallel, Some(&watchdog), task)
}

/// Whether a process of a launched job computes on the CPU: when asked to, or, for `auto`,
/// when it sees no GPU (`gpus`, the driver's count).
fn launched_on_cpu(device: &DeviceChoice, gpus: &destiny_core::Result<usize>) -> bool {
    match device {
        DeviceChoice::Cpu => true,
        DeviceChoice::Auto => gpus.as_ref().map_or(true, |&count| count == 0),
        _ => false,
    }
}

/// A task of one rank, run as a [`BackendTask`].
struct Alone<'a, T>(&'a T);

impl<T: RankTask> BackendTask for Alone<'_, T> {
    type Output = Vec<T::Output>;
    type Error = anyhow::Error;

    fn run<B: Backend + 'static>(self, backend: B) -> anyhow::Result<Self::Output> {
        Ok(vec![self.0.run(backend, Group::single())?])
    }
}

/// The GPU a process of a launched job takes: its local rank's among those `--device` names
/// (all GPUs it sees unless it lists some); the only one it sees, where the launcher gave
/// each process one GPU (`CUDA_VISIBLE_DEVICES`).
fn launcher_gpu(device: &DeviceChoice, launch: &Launch, count: usize) -> anyhow::Result<usize> {
    let local = launch.local_rank;
    match device {
        DeviceChoice::Gpus(ordinals) => ordinals.get(local).copied().ok_or_else(|| {
            anyhow!(
                "local rank {local} has no GPU in --device {device}, which lists {}",
                ordinals.len()
            )
        }),
        _ if local < count => Ok(local),
        _ if count == 1 => Ok(0),
        _ => bail!("local rank {local} has no GPU of its own: this process sees {count} GPU(s)"),
    }
}

/// One rank before it starts: its backend, its communicator, its device's memory.
struct Rank<B: Backend> {
    backend: B,
    communicator: Arc<dyn Communicator<B>>,
    memory: Option<u64>,
}

fn local_rank(backend: CudaBackend, communicator: NcclCommunicator) -> Rank<CudaBackend> {
    Rank {
        memory: backend.total_memory().ok(),
        backend,
        communicator: Arc::new(communicator),
    }
}

/// Runs `task` on each of `ranks` (of a group of `world` ranks) in its own thread. A rank's
/// error or panic aborts the others through `watchdog` (a thread group fails the others
/// when its handle is dropped); the first failing rank's error is returned.
fn run_ranks<B: Backend + 'static, T: RankTask>(
    ranks: Vec<Rank<B>>,
    world: usize,
    choice: ParallelChoice,
    watchdog: Option<&Watchdog>,
    task: &T,
) -> anyhow::Result<Vec<T::Output>> {
    let size = task.size();
    let first_failure = OnceLock::new();
    let mut results: Vec<(usize, anyhow::Result<T::Output>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = ranks
            .into_iter()
            .map(|rank| {
                let first_failure = &first_failure;
                scope.spawn(move || {
                    let number = rank.communicator.rank();
                    // Kept until the failure is recorded: the others learn of it only then.
                    let kept = rank.communicator.clone();
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        let parallelism = agree(&rank, choice, size)?;
                        let group = Group::new(Box::new(rank.communicator), parallelism);
                        task.run(rank.backend, group)
                    }))
                    .unwrap_or_else(|panic| {
                        Err(anyhow!("panicked: {}", panic_text(panic.as_ref())))
                    });
                    if let Err(error) = &result {
                        let _ = first_failure.set(number);
                        if let Some(watchdog) = watchdog {
                            watchdog.abort(format!("rank {number} failed: {error:#}"));
                        }
                    }
                    drop(kept);
                    (number, result)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("panics are caught in the thread"))
            .collect()
    });
    results.sort_by_key(|(rank, _)| *rank);
    let failed = first_failure.get().copied().or_else(|| {
        results
            .iter()
            .find(|(_, r)| r.is_err())
            .map(|(rank, _)| *rank)
    });
    if let Some(failed) = failed {
        let error = results
            .into_iter()
            .find_map(|(rank, result)| result.err().filter(|_| rank == failed))
            .expect("the failed rank's error");
        return Err(error.context(format!("rank {failed} of {world}")));
    }
    if let Some(reason) = watchdog.and_then(Watchdog::failure) {
        bail!("{reason}");
    }
    Ok(results
        .into_iter()
        .map(|(_, r)| r.expect("checked"))
        .collect())
}

/// The parallelism every rank runs: as chosen, or for `auto`, data parallel only where every
/// rank's device would choose it (one all-reduce of the ranks' votes).
fn agree<B: Backend>(
    rank: &Rank<B>,
    choice: ParallelChoice,
    size: NetworkSize,
) -> anyhow::Result<Parallelism> {
    Ok(match choice {
        ParallelChoice::Model => Parallelism::Model,
        ParallelChoice::Data => Parallelism::Data,
        ParallelChoice::Auto => {
            let vote = f32::from(u8::from(prefers_data(size, rank.memory)));
            let mut votes = rank.backend.upload(&[vote])?;
            rank.communicator.all_reduce(&rank.backend, &mut votes, 1)?;
            let votes = rank.backend.download(&votes)?[0];
            if votes as usize == rank.communicator.size() {
                Parallelism::Data
            } else {
                Parallelism::Model
            }
        }
    })
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use destiny_core::backend::cpu::CpuBackend;
    use destiny_core::parallel::ThreadGroup;

    #[test]
    fn device_and_parallel_choices() {
        let parse = |text: &str| text.parse::<DeviceChoice>();
        assert_eq!(parse("cuda:0,1"), Ok(DeviceChoice::Gpus(vec![0, 1])));
        assert_eq!(parse("cuda:3"), Ok(DeviceChoice::Gpus(vec![3])));
        assert_eq!(parse("cuda:all"), Ok(DeviceChoice::CudaAll));
        assert_eq!(parse("cuda"), Ok(DeviceChoice::Cuda));
        assert_eq!(parse("cpu"), Ok(DeviceChoice::Cpu));
        assert_eq!(parse("cuda:2,0").unwrap().to_string(), "cuda:2,0");
        let error = |text: &str| parse(text).unwrap_err();
        assert!(error("cuda:x").contains("'x' is not a GPU number"));
        assert!(error("cuda:0,0").contains("cuda:0 is listed twice"));
        assert!(error("cuda:").contains("'' is not a GPU number"));
        assert!(error("cuda:1,,2").contains("'' is not a GPU number"));
        assert!(error("gpu").contains("unknown device 'gpu'"));
        assert_eq!("data".parse(), Ok(ParallelChoice::Data));
        assert!("both".parse::<ParallelChoice>().is_err());
    }

    #[test]
    fn auto_parallelism_rule() {
        let gib = 1u64 << 30;
        let size = |parameters, widest| NetworkSize { parameters, widest };
        // The MovieLens-20M autoencoder's hidden layer is narrow, its items are not.
        assert!(prefers_data(size(7_000_000, 1024), Some(80 * gib)));
        assert!(!prefers_data(size(7_000_000, 26_744), Some(80 * gib)));
        // 2 G parameters take 32 GB with gradients and Adam: over a quarter of 80 GB.
        assert!(!prefers_data(size(2_000_000_000, 512), Some(80 * gib)));
        assert!(prefers_data(size(2_000_000_000, 512), None));
    }

    fn launch(local_rank: usize) -> Launch {
        Launch {
            rank: local_rank + 2,
            world_size: 4,
            local_rank,
            master_addr: "node0".into(),
            master_port: 29500,
        }
    }

    #[test]
    fn a_launched_process_takes_its_local_ranks_gpu() {
        assert_eq!(launcher_gpu(&DeviceChoice::Auto, &launch(1), 2).unwrap(), 1);
        assert_eq!(
            launcher_gpu(&DeviceChoice::CudaAll, &launch(1), 1).unwrap(),
            0
        );
        let listed = DeviceChoice::Gpus(vec![4, 5]);
        assert_eq!(launcher_gpu(&listed, &launch(1), 8).unwrap(), 5);
        let error = |device, local, count| {
            launcher_gpu(&device, &launch(local), count)
                .unwrap_err()
                .to_string()
        };
        assert!(
            error(listed.clone(), 2, 8).contains("local rank 2 has no GPU in --device cuda:4,5")
        );
        assert!(error(DeviceChoice::Cuda, 3, 2).contains("this process sees 2 GPU(s)"));
    }

    /// Sums the ranks' numbers twice; the rank `fail` fails (or panics) between the two.
    struct Sum {
        fail: Option<(usize, bool)>,
        size: NetworkSize,
    }

    impl RankTask for Sum {
        type Output = (usize, Parallelism, f32);

        fn size(&self) -> NetworkSize {
            self.size
        }

        fn run<B: Backend>(&self, backend: B, group: Group<B>) -> anyhow::Result<Self::Output> {
            let mut total = 0.0;
            for _ in 0..2 {
                let mut buffer = backend.upload(&[group.rank() as f32])?;
                group.communicator().all_reduce(&backend, &mut buffer, 1)?;
                total += backend.download(&buffer)?[0];
                match self.fail {
                    Some((rank, false)) if rank == group.rank() => bail!("out of memory"),
                    Some((rank, true)) if rank == group.rank() => panic!("a bug"),
                    _ => {}
                }
            }
            Ok((group.rank(), group.parallelism(), total))
        }
    }

    fn on_threads(ranks: usize, task: &Sum) -> anyhow::Result<Vec<(usize, Parallelism, f32)>> {
        let ranks: Vec<Rank<CpuBackend>> = ThreadGroup::new(ranks)
            .into_iter()
            .map(|group| Rank {
                backend: CpuBackend::new(),
                communicator: Arc::new(group),
                memory: None,
            })
            .collect();
        let world = ranks.len();
        run_ranks(ranks, world, ParallelChoice::Auto, None, task)
    }

    #[test]
    fn every_rank_runs_and_agrees_on_the_parallelism() {
        let narrow = NetworkSize {
            parameters: 1000,
            widest: 100,
        };
        let outputs = on_threads(
            3,
            &Sum {
                fail: None,
                size: narrow,
            },
        )
        .unwrap();
        let expected: Vec<_> = (0..3).map(|r| (r, Parallelism::Data, 6.0)).collect();
        assert_eq!(outputs, expected);
        let wide = NetworkSize {
            widest: 100_000,
            ..narrow
        };
        let outputs = on_threads(
            2,
            &Sum {
                fail: None,
                size: wide,
            },
        )
        .unwrap();
        assert!(outputs.iter().all(|(_, p, _)| *p == Parallelism::Model));
    }

    #[test]
    fn a_failing_rank_is_named_and_the_others_do_not_hang() {
        let size = NetworkSize {
            parameters: 1,
            widest: 1,
        };
        for panics in [false, true] {
            let task = Sum {
                fail: Some((1, panics)),
                size,
            };
            let message = format!("{:#}", on_threads(3, &task).unwrap_err());
            let cause = if panics {
                "panicked: a bug"
            } else {
                "out of memory"
            };
            assert_eq!(message, format!("rank 1 of 3: {cause}"));
        }
    }
}
