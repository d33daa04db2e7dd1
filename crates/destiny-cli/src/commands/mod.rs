//! One module per subcommand: its arguments and what it runs.

pub mod baseline;
pub mod convert;
pub mod evaluate;
pub mod export;
pub mod info;
pub mod predict;
pub mod train;
