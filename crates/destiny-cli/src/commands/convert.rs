//! `destiny convert` (being written).

/// Arguments of `destiny convert`.
#[derive(clap::Args)]
pub struct ConvertArgs {}

/// Runs `destiny convert`.
pub fn run(_args: &ConvertArgs) -> anyhow::Result<()> {
    anyhow::bail!("destiny convert is not written yet")
}
