//! NCCL's collectives against the in-process thread group on the CPU, with counts smaller than
//! the buffers, and the bounded failures. Needs a CUDA GPU and libnccl (two GPUs for the
//! two-rank group): run with `--ignored` (scripts/gpu-test.sh).

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::Backend;
use destiny_core::parallel::{Communicator, ThreadGroup};
use destiny_cuda::{CudaBackend, NcclCommunicator, NcclId, Precision, Watchdog};
use std::time::{Duration, Instant};

/// What one rank ends with: all-gathered, reduce-scattered and all-reduced buffers.
type Outcome = (Vec<f32>, Vec<f32>, Vec<f32>);

const COUNT: usize = 5;

/// Rank `rank`'s collectives on `backend`; every buffer is longer than its count, and the
/// outputs start at -1 so that a write past the count shows.
fn collectives<B: Backend>(
    backend: &B,
    communicator: &dyn Communicator<B>,
) -> destiny_core::error::Result<Outcome> {
    let (rank, size) = (communicator.rank(), communicator.size());
    let r = rank as f32;
    let values =
        |n: usize, scale: f32| -> Vec<f32> { (0..n).map(|i| i as f32 * scale + r).collect() };
    let send = backend.upload(&values(COUNT + 3, 1.0))?;
    let mut gathered = backend.upload(&vec![-1.0; COUNT * size + 2])?;
    communicator.all_gather(backend, &send, COUNT, &mut gathered)?;
    let parts = backend.upload(&values(COUNT * size + 4, r + 1.0))?;
    let mut scattered = backend.upload(&[-1.0; COUNT + 1])?;
    communicator.reduce_scatter(backend, &parts, COUNT, &mut scattered)?;
    let mut reduced = backend.upload(&values(COUNT + 2, 0.5))?;
    communicator.all_reduce(backend, &mut reduced, COUNT)?;
    Ok((
        backend.download(&gathered)?,
        backend.download(&scattered)?,
        backend.download(&reduced)?,
    ))
}

fn on_cpu(size: usize) -> Vec<Outcome> {
    std::thread::scope(|scope| {
        let ranks: Vec<_> = ThreadGroup::new(size)
            .into_iter()
            .map(|group| scope.spawn(move || collectives(&CpuBackend::new(), &group).unwrap()))
            .collect();
        ranks.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

fn on_gpus(ordinals: &[usize]) -> Vec<Outcome> {
    let ranks = NcclCommunicator::local(ordinals, Precision::Fp32).expect("NCCL ranks");
    std::thread::scope(|scope| {
        let threads: Vec<_> = ranks
            .into_iter()
            .map(|(gpu, comm)| scope.spawn(move || collectives(&gpu, &comm).unwrap()))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

#[test]
#[ignore = "needs a CUDA GPU and libnccl"]
fn collectives_match_the_thread_group() {
    let gpus = CudaBackend::count().unwrap();
    for size in [1, 2].into_iter().filter(|&n| n <= gpus) {
        let ordinals: Vec<usize> = (0..size).collect();
        let (expected, got) = (on_cpu(size), on_gpus(&ordinals));
        // Small integers: sums are exact in any order.
        assert_eq!(got, expected, "{size} rank(s)");
        eprintln!("{size} rank(s): NCCL matches the thread group");
    }
    if gpus < 2 {
        eprintln!("one GPU: the two-rank group was not run");
    }
}

#[test]
#[ignore = "needs a CUDA GPU and libnccl"]
fn a_rank_that_never_joins_fails_in_bounded_time() {
    let gpu = CudaBackend::new(0).unwrap();
    let watchdog = Watchdog::new(Duration::from_secs(3));
    let started = Instant::now();
    let message = NcclCommunicator::new(&gpu, 0, 2, NcclId::new().unwrap(), &watchdog)
        .err()
        .expect("rank 1 never comes")
        .to_string();
    let waited = started.elapsed();
    assert!(message.contains("did not all join within 3 s"), "{message}");
    assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    assert_eq!(
        watchdog.failure(),
        Some(message.trim_start_matches("parallel run: "))
    );
}

#[test]
#[ignore = "needs a CUDA GPU and libnccl"]
fn an_aborted_group_fails_its_next_collective() {
    let (gpu, comm) = NcclCommunicator::local(&[0], Precision::Fp32)
        .unwrap()
        .pop()
        .unwrap();
    let mut buffer = gpu.upload(&[1.0, 2.0]).unwrap();
    comm.all_reduce(&gpu, &mut buffer, 2).unwrap();
    comm.watchdog().abort("rank 3 failed: out of memory");
    let message = comm
        .all_reduce(&gpu, &mut buffer, 2)
        .unwrap_err()
        .to_string();
    assert_eq!(message, "parallel run: rank 3 failed: out of memory");
    assert_eq!(gpu.download(&buffer).unwrap(), vec![1.0, 2.0]);
}
