//! `destiny evaluate` (being written).

/// Arguments of `destiny evaluate`.
#[derive(clap::Args)]
pub struct EvaluateArgs {}

/// Runs `destiny evaluate`.
pub fn run(_args: &EvaluateArgs) -> anyhow::Result<()> {
    anyhow::bail!("destiny evaluate is not written yet")
}
