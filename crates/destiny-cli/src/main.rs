//! `destiny`: the command-line tool over Destiny's libraries.

mod commands;
mod datasets;
mod device;
mod progress;
mod timings;
mod values;

use clap::{Parser, Subcommand};

/// Destiny: a deep-learning engine for sparse data, built for recommendations.
#[derive(Parser)]
#[command(name = "destiny", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn raw interactions into datasets and indices.
    Convert(commands::convert::ConvertArgs),
    /// Train a network.
    Train(commands::train::TrainArgs),
    /// Recommend the top-K items for every user.
    Predict(commands::predict::PredictArgs),
    /// Score recommendations against held-out interactions.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Search networks and settings on validation users; keep the best model.
    Tune(commands::tune::TuneArgs),
    /// Recommend with a baseline (most popular, EASE, ItemKNN, ALS).
    Baseline(commands::baseline::BaselineArgs),
    /// Write a model's weights without the optimizer state (optionally bf16), for inference.
    Export(commands::export::ExportArgs),
    /// Describe a dataset or a model file.
    Info(commands::info::InfoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Convert(args) => commands::convert::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Tune(args) => commands::tune::run(args),
        Command::Baseline(args) => commands::baseline::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Info(args) => commands::info::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("destiny: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
