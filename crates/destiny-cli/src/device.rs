//! Choosing the backend a command runs on (`--device auto|cpu|cuda|cuda:N`).

use destiny_cuda::{DeviceChoice, Precision};

pub use destiny_cuda::BackendTask;

/// Where and how to compute, as train and predict take it on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Where to compute: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Arithmetic of the dense products on a GPU: fp32, tf32 or bf16 (both with fp32
    /// accumulation, faster and less exact). The CPU computes in fp32.
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
}

/// Runs `task` on the chosen device; `auto` takes the first GPU when one can be opened.
pub fn with_backend<T: BackendTask>(args: &DeviceArgs, task: T) -> Result<T::Output, T::Error> {
    destiny_cuda::with_backend(&args.device, args.precision, task)
}
