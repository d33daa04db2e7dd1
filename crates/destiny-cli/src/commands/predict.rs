//! `destiny predict` (being written).

/// Arguments of `destiny predict`.
#[derive(clap::Args)]
pub struct PredictArgs {}

/// Runs `destiny predict`.
pub fn run(_args: &PredictArgs) -> anyhow::Result<()> {
    anyhow::bail!("destiny predict is not written yet")
}
