//! `destiny train` (being written).

/// Arguments of `destiny train`.
#[derive(clap::Args)]
pub struct TrainArgs {}

/// Runs `destiny train`.
pub fn run(_args: &TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("destiny train is not written yet")
}
