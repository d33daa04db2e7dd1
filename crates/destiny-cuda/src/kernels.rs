//! The CUDA C kernels, kept as `.cu` files beside this module and compiled by NVRTC when a
//! backend starts (so that the binary needs no CUDA toolkit to build), in parallel, and kept
//! on disk for the next start.
//!
//! NVRTC compiles them to machine code for the GPU's architecture (CUBIN), not to PTX: the
//! driver then loads them as they are, where PTX would be compiled again by the driver, one
//! program after another (3 s of a cold start on an H200, against NVRTC's threads).

use crate::{codes, kernel_cache};
use cudarc::nvrtc::{result, sys};
use std::ffi::{CStr, CString};
use std::path::Path;

/// Helpers prepended to every program.
const COMMON: &str = include_str!("kernels/common.cuh");

/// Defines [`Kernel`] with each kernel's name in the `.cu` files, from one list.
macro_rules! kernels {
    ($($(#[$doc:meta])* $kernel:ident = $name:literal,)*) => {
        /// A kernel of [`PROGRAMS`], launched by id so that a misspelt name cannot compile.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kernel {
            $($(#[$doc])* $kernel,)*
        }

        impl Kernel {
            /// Every kernel, in declaration order (`kernel as usize` indexes it).
            pub const ALL: &'static [Kernel] = &[$(Kernel::$kernel,)*];

            /// The kernel's `extern "C"` name in its program.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Kernel::$kernel => $name,)*
                }
            }
        }
    };
}

kernels! {
    /// `elementwise.cu`: `x[i] = value`.
    Fill = "fill",
    /// `elementwise.cu`: `y += alpha * x`.
    Axpy = "axpy",
    /// `elementwise.cu`: column reductions, by `ColumnSumsMode`.
    ColumnSums = "column_sums",
    /// `elementwise.cu`: dropout over a window of columns.
    Dropout = "dropout",
    /// `elementwise.cu`: strided matrix copies.
    CopyMatrix = "copy_matrix",
    /// `elementwise.cu`: the sparseness penalty's gradient.
    SparsenessGradient = "sparseness_gradient",
    /// `elementwise.cu`: the sparseness penalty's loss.
    SparsenessLoss = "sparseness_loss",
    /// `elementwise.cu`: max-norm column scaling.
    ScaleLongColumns = "scale_long_columns",
    /// `activation.cu`: element-wise activations.
    ActivationForward = "activation_forward",
    /// `activation.cu`: element-wise activation derivatives.
    ActivationBackward = "activation_backward",
    /// `activation.cu`: row-wise activations.
    RowwiseForward = "rowwise_forward",
    /// `activation.cu`: row-wise activation derivatives.
    RowwiseBackward = "rowwise_backward",
    /// `output.cu`: the fused output pass.
    OutputDelta = "output_delta",
    /// `output.cu`: SoftMax with cross entropy.
    OutputSoftmaxCrossEntropy = "output_softmax_cross_entropy",
    /// `sparse.cu`: sparse times dense.
    SparseMatmul = "sparse_matmul",
    /// `sparse.cu`: sparse transposed times dense.
    SparseTransposeMatmul = "sparse_transpose_matmul",
    /// `sparse.cu`: gathers a batch's rows from resident entries.
    GatherRows = "gather_rows",
    /// `optimizer.cu`: one step of any optimizer.
    OptimizerStep = "optimizer_step",
    /// `top_k.cu`: top-K of each tile of each row, kept in shared memory.
    TopK = "top_k",
    /// `top_k_wide.cu`: the first round over rows too wide for shared memory.
    TopKWide = "top_k_wide",
    /// `convolution.cu`: a chunk of samples unrolled into columns.
    Im2col = "im2col",
    /// `convolution.cu`: columns rolled back onto the input, added.
    Col2im = "col2im",
    /// `convolution.cu`: samples' channels reordered channel first.
    ChannelMajor = "channel_major",
    /// `convolution.cu`: a bias per channel.
    ChannelBias = "channel_bias",
    /// `convolution.cu`: the channel bias's gradient.
    ChannelBiasGradient = "channel_bias_gradient",
    /// `pooling.cu`: max or average pooling.
    PoolingForward = "pooling_forward",
    /// `pooling.cu`: each window's first largest input, for max pooling's deltas.
    PoolingArgmax = "pooling_argmax",
    /// `pooling.cu`: the pooling's input deltas.
    PoolingBackward = "pooling_backward",
    /// `local_response.cu`: local response normalisation.
    LocalResponseForward = "local_response_forward",
    /// `local_response.cu`: its input deltas.
    LocalResponseBackward = "local_response_backward",
    /// `normalization.cu`: a batch's statistics, saved and run into the running ones.
    BatchNormStatistics = "batch_norm_statistics",
    /// `normalization.cu`: batch normalisation by given statistics.
    BatchNormForward = "batch_norm_forward",
    /// `normalization.cu`: the scale's and shift's gradients and the sums for the deltas.
    BatchNormGradients = "batch_norm_gradients",
    /// `normalization.cu`: the batch normalisation's input deltas.
    BatchNormBackward = "batch_norm_backward",
}

/// A program NVRTC compiles: its sources, joined in order, and the kernels it defines.
#[derive(Debug)]
pub struct Program {
    /// The program's name, for logs (`NAME.cu`).
    pub name: &'static str,
    /// The sources, joined after the generated codes and `common.cuh`.
    pub sources: &'static [&'static str],
    /// The kernels it defines.
    pub kernels: &'static [Kernel],
}

/// The programs. `output.cu` uses the activation derivatives, so it is compiled together
/// with `activation.cu`; the convolutions and poolings share `sliding.cuh`'s geometry.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "elementwise",
        sources: &[include_str!("kernels/elementwise.cu")],
        kernels: &[
            Kernel::Fill,
            Kernel::Axpy,
            Kernel::ColumnSums,
            Kernel::Dropout,
            Kernel::CopyMatrix,
            Kernel::SparsenessGradient,
            Kernel::SparsenessLoss,
            Kernel::ScaleLongColumns,
        ],
    },
    Program {
        name: "activation",
        sources: &[
            include_str!("kernels/activation.cuh"),
            include_str!("kernels/activation.cu"),
            include_str!("kernels/output.cu"),
        ],
        kernels: &[
            Kernel::ActivationForward,
            Kernel::ActivationBackward,
            Kernel::RowwiseForward,
            Kernel::RowwiseBackward,
            Kernel::OutputDelta,
            Kernel::OutputSoftmaxCrossEntropy,
        ],
    },
    Program {
        name: "sparse",
        sources: &[include_str!("kernels/sparse.cu")],
        kernels: &[
            Kernel::SparseMatmul,
            Kernel::SparseTransposeMatmul,
            Kernel::GatherRows,
        ],
    },
    Program {
        name: "optimizer",
        sources: &[include_str!("kernels/optimizer.cu")],
        kernels: &[Kernel::OptimizerStep],
    },
    Program {
        name: "top_k",
        sources: &[
            include_str!("kernels/activation.cuh"),
            include_str!("kernels/top_k.cu"),
            include_str!("kernels/top_k_wide.cu"),
        ],
        kernels: &[Kernel::TopK, Kernel::TopKWide],
    },
    Program {
        name: "convolution",
        sources: &[
            include_str!("kernels/sliding.cuh"),
            include_str!("kernels/convolution.cu"),
        ],
        kernels: &[
            Kernel::Im2col,
            Kernel::Col2im,
            Kernel::ChannelMajor,
            Kernel::ChannelBias,
            Kernel::ChannelBiasGradient,
        ],
    },
    Program {
        name: "pooling",
        sources: &[
            include_str!("kernels/sliding.cuh"),
            include_str!("kernels/pooling.cu"),
        ],
        kernels: &[
            Kernel::PoolingForward,
            Kernel::PoolingArgmax,
            Kernel::PoolingBackward,
        ],
    },
    Program {
        name: "local_response",
        sources: &[include_str!("kernels/local_response.cu")],
        kernels: &[Kernel::LocalResponseForward, Kernel::LocalResponseBackward],
    },
    Program {
        name: "normalization",
        sources: &[include_str!("kernels/normalization.cu")],
        kernels: &[
            Kernel::BatchNormStatistics,
            Kernel::BatchNormForward,
            Kernel::BatchNormGradients,
            Kernel::BatchNormBackward,
        ],
    },
];

/// A program compiled for one GPU architecture.
pub struct Compiled {
    pub program: &'static Program,
    /// The machine code (an ELF image), loaded by the driver as it is.
    pub cubin: Vec<u8>,
}

impl Compiled {
    /// True when the machine code defines the kernel `name` (its symbol is in the image).
    pub fn defines(&self, name: &str) -> bool {
        defines(&self.cubin, name)
    }
}

/// True when the ELF image `cubin` has the symbol `name`.
pub(crate) fn defines(cubin: &[u8], name: &str) -> bool {
    let symbol = format!("\0{name}\0");
    cubin.starts_with(b"\x7fELF")
        && cubin
            .windows(symbol.len())
            .any(|window| window == symbol.as_bytes())
}

/// Compiles every program for `arch` (such as `sm_90`), each on its own thread; errors carry
/// NVRTC's log. With a `cache` folder, a program compiled there by an earlier run is read
/// instead (see `kernel_cache.rs`).
pub fn compile_all(arch: &str, cache: Option<&Path>) -> Result<Vec<Compiled>, String> {
    // The codes shared with `codes.rs` come first, so that every source can name them.
    let header = codes::header();
    let compile = |program: &'static Program| {
        let source = [header.as_str(), COMMON]
            .into_iter()
            .chain(program.sources.iter().copied())
            .collect::<Vec<_>>()
            .join("\n");
        let name = program.name;
        // -default-device: the operator of a generic lambda (as `with_activation` takes in
        // activation.cuh) has no annotation of its own, and only device code is compiled.
        let options = vec![
            format!("--gpu-architecture={arch}"),
            "--std=c++17".into(),
            "-default-device".into(),
        ];
        let cached = cache.map(|folder| kernel_cache::file(folder, program, &source, &options));
        if let Some(cubin) = cached.as_ref().and_then(|f| kernel_cache::read(f, program)) {
            return Ok(Compiled { program, cubin });
        }
        let cubin = compile_cubin(&source, &format!("{name}.cu"), &options)
            .map_err(|e| format!("{name}.cu: {e}"))?;
        if let Some(file) = &cached {
            kernel_cache::write(file, &cubin);
        }
        Ok(Compiled { program, cubin })
    };
    std::thread::scope(|scope| {
        let compiling: Vec<_> = PROGRAMS
            .iter()
            .map(|program| scope.spawn(move || compile(program)))
            .collect();
        compiling
            .into_iter()
            .map(|thread| thread.join().expect("an NVRTC compile panicked"))
            .collect()
    })
}

/// NVRTC's machine code for `source`, compiled with `options` (which name a real
/// architecture, `--gpu-architecture=sm_XY`); the error holds NVRTC's log.
fn compile_cubin(source: &str, name: &str, options: &[String]) -> Result<Vec<u8>, String> {
    let source = CString::new(source).map_err(|_| "the source holds a NUL byte".to_string())?;
    let name = CString::new(name).map_err(|_| "the name holds a NUL byte".to_string())?;
    let program = result::create_program(&source, Some(&name)).map_err(|e| e.to_string())?;
    // SAFETY: `program` is live until destroyed below; the buffers hold the sizes NVRTC gave.
    let compiled = unsafe {
        match result::compile_program(program, options) {
            Err(e) => {
                let log = result::get_program_log(program)
                    .map(|log| CStr::from_ptr(log.as_ptr()).to_string_lossy().into_owned())
                    .unwrap_or_default();
                Err(format!("{e}\n{log}"))
            }
            Ok(()) => {
                let mut size = 0usize;
                sys::nvrtcGetCUBINSize(program, &mut size)
                    .result()
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        let mut cubin = vec![0u8; size];
                        sys::nvrtcGetCUBIN(program, cubin.as_mut_ptr().cast())
                            .result()
                            .map(|()| cubin)
                            .map_err(|e| e.to_string())
                    })
            }
        }
    };
    // SAFETY: created above and not used after.
    unsafe { result::destroy_program(program) }.map_err(|e| e.to_string())?;
    compiled
}

/// True when NVRTC's library can be loaded (it is needed to compile the kernels).
pub fn nvrtc_available() -> bool {
    ["libnvrtc.so.13", "libnvrtc.so"]
        .into_iter()
        .any(|name| unsafe { libloading::Library::new(name) }.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_is_in_one_program_under_a_distinct_name() {
        for (i, kernel) in Kernel::ALL.iter().enumerate() {
            assert_eq!(*kernel as usize, i);
            let homes = PROGRAMS
                .iter()
                .filter(|p| p.kernels.contains(kernel))
                .count();
            assert_eq!(homes, 1, "{kernel:?} is in {homes} programs");
            assert!(Kernel::ALL[..i].iter().all(|k| k.name() != kernel.name()));
        }
    }
}
