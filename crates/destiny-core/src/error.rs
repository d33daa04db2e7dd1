//! One error type for the whole engine, so that every failure names what and where.

use std::path::PathBuf;

/// Everything that can go wrong in Destiny's core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A network definition that cannot be used; the message names the key and the line.
    #[error("network definition: {0}")]
    Config(String),
    /// Options of a run or calls that cannot be used (a batch size of 0, a resume without a
    /// checkpoint to resume from, an output layer that is not there, training without an
    /// optimizer).
    #[error("options: {0}")]
    Options(String),
    /// Data that does not fit the model or is malformed.
    #[error("data: {0}")]
    Data(String),
    /// Shapes that cannot match (model width against dataset width, buffer sizes).
    #[error("dimension mismatch: {0}")]
    Dimension(String),
    /// A model file that is truncated, corrupt or of another network.
    #[error("model file {path}: {message}")]
    ModelFile { path: PathBuf, message: String },
    /// A backend (device) failure: out of memory, a failed kernel launch, no such device.
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
    /// Numbers that went wrong during training (NaN or infinite loss).
    #[error("numerics: {0}")]
    Numerics(String),
    /// A failure among the ranks of a parallel run (a rank that stopped, a failed collective).
    #[error("parallel run: {0}")]
    Parallel(String),
    /// An I/O failure with the path it happened on. The OS error is part of the message and
    /// not a separate source, so that a printed chain of causes shows it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

/// Result with Destiny's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
