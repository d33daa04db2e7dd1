//! The CUDA C kernels, kept as `.cu` files beside this module and compiled by NVRTC when a
//! backend starts (so that the binary needs no CUDA toolkit to build).

use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

/// Helpers prepended to every program.
const COMMON: &str = include_str!("kernels/common.cuh");

/// The programs, each with the kernels it defines. `output.cu` uses the activation
/// derivatives, so it is compiled together with `activation.cu`.
pub const PROGRAMS: &[(&str, &[&str], &[&str])] = &[
    (
        "elementwise",
        &[include_str!("kernels/elementwise.cu")],
        &[
            "fill",
            "axpy",
            "column_sums",
            "dropout",
            "copy_matrix",
            "sparseness_gradient",
            "sparseness_loss",
            "scale_long_columns",
        ],
    ),
    (
        "activation",
        &[
            include_str!("kernels/activation.cu"),
            include_str!("kernels/output.cu"),
        ],
        &[
            "activation_forward",
            "activation_backward",
            "rowwise_forward",
            "rowwise_backward",
            "output_delta",
            "output_softmax_cross_entropy",
        ],
    ),
    (
        "sparse",
        &[include_str!("kernels/sparse.cu")],
        &["sparse_matmul", "sparse_transpose_matmul", "gather_rows"],
    ),
    (
        "optimizer",
        &[include_str!("kernels/optimizer.cu")],
        &["optimizer_step"],
    ),
    (
        "top_k",
        &[include_str!("kernels/top_k.cu")],
        &["top_k", "top_k_cached"],
    ),
];

/// Compiles every program for `arch` (such as `sm_90`); errors carry NVRTC's log.
pub fn compile_all(arch: &str) -> Result<Vec<(&'static str, Ptx)>, String> {
    PROGRAMS
        .iter()
        .map(|(name, parts, _)| {
            let source = std::iter::once(COMMON)
                .chain(parts.iter().copied())
                .collect::<Vec<_>>()
                .join("\n");
            let options = CompileOptions {
                options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
                name: Some(format!("{name}.cu")),
                ..Default::default()
            };
            compile_ptx_with_opts(source, options)
                .map(|ptx| (*name, ptx))
                .map_err(|e| format!("{name}.cu: {e}"))
        })
        .collect()
}

/// True when NVRTC's library can be loaded (it is needed to compile the kernels).
pub fn nvrtc_available() -> bool {
    ["libnvrtc.so.13", "libnvrtc.so"]
        .into_iter()
        .any(|name| unsafe { libloading::Library::new(name) }.is_ok())
}
