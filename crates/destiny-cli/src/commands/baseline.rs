//! `destiny baseline` (being written).

/// Arguments of `destiny baseline`.
#[derive(clap::Args)]
pub struct BaselineArgs {}

/// Runs `destiny baseline`.
pub fn run(_args: &BaselineArgs) -> anyhow::Result<()> {
    anyhow::bail!("destiny baseline is not written yet")
}
