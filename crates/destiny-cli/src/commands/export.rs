//! `destiny export`: an inference export of a model file: its weights without the optimizer
//! state, optionally in bf16, which `predict`, `info` and Python's `Model.load` read like the
//! full model.

use destiny_core::model_file::{export_model, ExportPrecision};
use destiny_storage::{Input, Output};
use std::path::PathBuf;

/// Arguments of `destiny export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Model file written by `destiny train`.
    #[arg(short = 'n', long)]
    model: PathBuf,
    /// The export to write (safetensors).
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Store the weights in bf16 (half the size; converted back to f32 when loaded).
    #[arg(long)]
    bf16: bool,
}

/// Runs `destiny export`.
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let precision = if args.bf16 {
        ExportPrecision::Bf16
    } else {
        ExportPrecision::F32
    };
    let model = Input::open(&args.model)?;
    let output = Output::file(&args.output)?;
    export_model(model.path(), output.path(), precision)?;
    output.publish()?;
    eprintln!(
        "destiny: wrote the weights of {} to {} ({})",
        args.model.display(),
        args.output.display(),
        if args.bf16 { "bf16" } else { "f32" }
    );
    Ok(())
}
