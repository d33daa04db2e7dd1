//! Destiny's core: network definitions in DSSTNE's JSON language, sparse datasets, models,
//! training, prediction, and the [`Backend`](backend::Backend) boundary with its CPU
//! implementation.

pub mod atomic;
pub mod backend;
pub mod config;
pub mod data;
pub mod error;
pub mod lock;
pub mod math;
pub mod model;
pub mod model_file;
pub mod parallel;
pub mod pipeline;
pub mod predict;
pub mod ranking;
pub mod run;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod train;

pub use error::{Error, Result};
