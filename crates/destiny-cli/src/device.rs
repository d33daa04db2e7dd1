//! Choosing the backend a command runs on (`--device auto|cpu|cuda|cuda:N`).

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::Backend;
use destiny_cuda::{CudaBackend, Precision};
use std::str::FromStr;

/// Where to compute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first GPU when there is one, else the CPU.
    Auto,
    Cpu,
    /// A GPU by ordinal.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("unknown device '{text}': use auto, cpu, cuda or cuda:N")),
        }
    }
}

/// Work that runs on whichever backend was chosen.
pub trait BackendTask {
    type Output;
    fn run<B: Backend>(self, backend: B) -> anyhow::Result<Self::Output>;
}

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
pub fn with_backend<T: BackendTask>(args: &DeviceArgs, task: T) -> anyhow::Result<T::Output> {
    let gpu = |ordinal| CudaBackend::new(ordinal).map(|g| g.with_precision(args.precision));
    let reduced = args.precision != Precision::Fp32;
    match args.device {
        DeviceChoice::Cpu if reduced => anyhow::bail!(
            "--precision {} needs a GPU; the CPU computes in fp32",
            args.precision
        ),
        DeviceChoice::Cpu => task.run(CpuBackend::new()),
        DeviceChoice::Cuda(ordinal) => task.run(gpu(ordinal)?),
        DeviceChoice::Auto => match gpu(0) {
            Ok(gpu) => task.run(gpu),
            Err(error) => {
                if reduced {
                    eprintln!("no GPU ({error}): computing on the CPU, in fp32");
                }
                task.run(CpuBackend::new())
            }
        },
    }
}
