//! `destiny.train`: waits for `destiny_core::train::fit`, the one training loop.

use pyo3::prelude::*;

/// Adds the training functions to the module.
pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
