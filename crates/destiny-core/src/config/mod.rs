//! Network definitions: DSSTNE's JSON language parsed into checked [`NetworkDefinition`]s.

mod definition;
mod json;
mod layer;
mod parse;
mod spatial;

pub use definition::*;
pub use parse::{parse_network, parse_network_file};
