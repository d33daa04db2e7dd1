//! The scalar and row-wise formulas of activations and error functions.
//!
//! These define what every backend computes: the CPU backend calls them directly and the CUDA
//! kernels mirror them line by line.

pub mod activation;
pub mod error_function;
pub mod fast;
