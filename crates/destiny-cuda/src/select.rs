//! Choosing the backend a piece of work runs on: `auto` (the first GPU when one opens, else
//! the CPU), `cpu`, `cuda` or `cuda:N`. Shared by the command line and the Python package.

use crate::{CudaBackend, Precision};
use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::Backend;
use destiny_core::error::Error;
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
    type Error: From<Error>;
    fn run<B: Backend + 'static>(self, backend: B) -> Result<Self::Output, Self::Error>;
}

/// Runs `task` on `device` with dense products in `precision`; `auto` takes the first GPU
/// when one can be opened. A reduced precision on the CPU is an error.
pub fn with_backend<T: BackendTask>(
    device: &DeviceChoice,
    precision: Precision,
    task: T,
) -> Result<T::Output, T::Error> {
    let gpu = |ordinal| CudaBackend::new(ordinal).map(|g| g.with_precision(precision));
    let reduced = precision != Precision::Fp32;
    match device {
        DeviceChoice::Cpu if reduced => Err(Error::Config(format!(
            "precision {precision} needs a GPU; the CPU computes in fp32"
        ))
        .into()),
        DeviceChoice::Cpu => task.run(CpuBackend::new()),
        DeviceChoice::Cuda(ordinal) => task.run(gpu(*ordinal)?),
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
