//! `destiny info` (being written).

/// Arguments of `destiny info`.
#[derive(clap::Args)]
pub struct InfoArgs {}

/// Runs `destiny info`.
pub fn run(_args: &InfoArgs) -> anyhow::Result<()> {
    anyhow::bail!("destiny info is not written yet")
}
