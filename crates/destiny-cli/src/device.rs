//! Choosing the backend a command runs on (`--device auto|cpu|cuda|cuda:N`).

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::Backend;
use destiny_cuda::CudaBackend;
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

/// Runs `task` on the chosen device; `auto` takes the first GPU when one can be opened.
pub fn with_backend<T: BackendTask>(choice: &DeviceChoice, task: T) -> anyhow::Result<T::Output> {
    match choice {
        DeviceChoice::Cpu => task.run(CpuBackend::new()),
        DeviceChoice::Cuda(ordinal) => task.run(CudaBackend::new(*ordinal)?),
        DeviceChoice::Auto => match CudaBackend::new(0) {
            Ok(gpu) => task.run(gpu),
            Err(_) => task.run(CpuBackend::new()),
        },
    }
}
