//! Choosing the backend a piece of work runs on: `auto` (the first GPU when one opens, else
//! the CPU), `cpu`, `cuda`, `cuda:N`, several GPUs (`cuda:0,1`) or all (`cuda:all`). Shared
//! by the command line and the Python package.

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
    /// The first GPU.
    Cuda,
    /// GPUs by ordinal, one rank each, in rank order.
    Gpus(Vec<usize>),
    /// Every GPU the driver sees.
    CudaAll,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "use auto, cpu, cuda, cuda:N, cuda:N,M,... or cuda:all";
        match text {
            "auto" => return Ok(DeviceChoice::Auto),
            "cpu" => return Ok(DeviceChoice::Cpu),
            "cuda" => return Ok(DeviceChoice::Cuda),
            "cuda:all" => return Ok(DeviceChoice::CudaAll),
            _ => {}
        }
        let list = text
            .strip_prefix("cuda:")
            .ok_or_else(|| format!("unknown device '{text}': {usage}"))?;
        let mut ordinals = Vec::new();
        for part in list.split(',') {
            let ordinal: usize = part
                .trim()
                .parse()
                .map_err(|_| format!("device '{text}': '{part}' is not a GPU number; {usage}"))?;
            if ordinals.contains(&ordinal) {
                return Err(format!("device '{text}': cuda:{ordinal} is listed twice"));
            }
            ordinals.push(ordinal);
        }
        Ok(DeviceChoice::Gpus(ordinals))
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda => f.write_str("cuda"),
            DeviceChoice::CudaAll => f.write_str("cuda:all"),
            DeviceChoice::Gpus(ordinals) => {
                let list: Vec<String> = ordinals.iter().map(usize::to_string).collect();
                write!(f, "cuda:{}", list.join(","))
            }
        }
    }
}

/// Work that runs on whichever backend was chosen.
pub trait BackendTask {
    type Output;
    type Error: From<Error>;
    fn run<B: Backend + 'static>(self, backend: B) -> Result<Self::Output, Self::Error>;
}

/// Refuses a reduced `precision` for work that was asked to run on the CPU.
pub(crate) fn fp32_on_the_cpu(precision: Precision) -> Result<(), Error> {
    if precision == Precision::Fp32 {
        return Ok(());
    }
    Err(Error::Options(format!(
        "precision {precision} needs a GPU; the CPU computes in fp32"
    )))
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
        DeviceChoice::Cpu => {
            fp32_on_the_cpu(precision)?;
            task.run(CpuBackend::new())
        }
        DeviceChoice::Cuda => task.run(gpu(0)?),
        DeviceChoice::Gpus(ordinals) if ordinals.len() == 1 => task.run(gpu(ordinals[0])?),
        DeviceChoice::Gpus(_) | DeviceChoice::CudaAll => {
            Err(Error::Options(format!("device {device}: this computes on one device")).into())
        }
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
