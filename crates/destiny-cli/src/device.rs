//! Choosing where a command computes (`--device auto|cpu|cuda|cuda:N|cuda:0,1|cuda:all`) and
//! how several GPUs share a network (`--parallel model|data|auto`), as flags; the work runs
//! through destiny-cuda's [`destiny_cuda::ranks`].

pub use destiny_cuda::ranks::{NetworkSize, ParallelChoice, RankTask};
pub use destiny_cuda::DeviceChoice;
use destiny_cuda::Precision;

/// Where and how to compute, as train and predict take it on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Where to compute: auto, cpu, cuda, cuda:N, several GPUs (cuda:0,1) or every GPU
    /// (cuda:all). Under a launcher (torchrun's or Spark's RANK/WORLD_SIZE, or mpirun) each
    /// process takes the GPU of its LOCAL_RANK, or with cpu (or no GPU) trains on its CPU,
    /// the processes exchanging over TCP.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// How several GPUs (or launched processes) share the network: model (every layer split across them), data (each
    /// takes a share of every batch) or auto (data for small, narrow networks).
    #[arg(long, default_value = "auto")]
    pub parallel: ParallelChoice,
    /// Arithmetic of the dense products on a GPU: fp32, tf32 or bf16 (both with fp32
    /// accumulation, faster and less exact). The CPU computes in fp32.
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
}

/// Runs `task` on every rank of the chosen devices: see [`destiny_cuda::ranks::with_ranks`].
pub fn with_ranks<T: RankTask>(args: &DeviceArgs, task: &T) -> anyhow::Result<Vec<T::Output>> {
    destiny_cuda::ranks::with_ranks(&args.device, args.parallel, args.precision, task)
}
