//! `destiny evaluate`: recommendations against held-out interactions, as a table, JSON and a
//! plot of the metrics against K.

use anyhow::{bail, Context};
use destiny_eval::plot::plot_metrics;
use destiny_eval::{evaluate_recommendations, read_recommendations, read_truth, Metrics};
use destiny_storage::{Input, Output};
use std::path::PathBuf;

/// Arguments of `destiny evaluate`.
#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// Recommendation files (DSSTNE's recs format); several compare systems.
    #[arg(long = "recs", required = true)]
    recs: Vec<PathBuf>,
    /// A name for each recommendation file, in order (default: the file name).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Held-out interactions: a dataset file (with features.idx beside it or --features) or
    /// DSSTNE text (`user<TAB>item,...:item,...`).
    #[arg(long)]
    truth: PathBuf,
    /// Feature index of a dataset truth file.
    #[arg(long)]
    features: Option<PathBuf>,
    /// Cut-offs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,50,100")]
    k: Vec<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Draw the metrics against K into this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Runs `destiny evaluate`.
pub fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    let truth_file = Input::open_with_siblings(&args.truth, &[destiny_data::FEATURE_INDEX])?;
    let features = Input::open_optional(args.features.as_deref())?;
    let truth = read_truth(truth_file.path(), features.as_ref().map(Input::path))
        .with_context(|| format!("reading {}", args.truth.display()))?;
    if !args.labels.is_empty() && args.labels.len() != args.recs.len() {
        bail!(
            "{} --label for {} --recs: give one label per recommendation file, in order",
            args.labels.len(),
            args.recs.len()
        );
    }
    let mut systems: Vec<(String, Vec<Metrics>)> = Vec::new();
    for (n, path) in args.recs.iter().enumerate() {
        let recs = read_recommendations(Input::open(path)?.path())
            .with_context(|| format!("reading {}", path.display()))?;
        let label = args.labels.get(n).cloned().unwrap_or_else(|| {
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        });
        let metrics = evaluate_recommendations(&truth, &recs, &args.k)
            .with_context(|| format!("scoring {}", path.display()))?;
        for m in metrics.iter().filter(|m| m.short_lists > 0) {
            eprintln!(
                "destiny: warning: {}: {} of {} users have fewer than {} recommendations (ranks past a list's end count as misses)",
                path.display(),
                m.short_lists,
                m.users,
                m.k
            );
        }
        systems.push((label, metrics));
    }
    if args.json {
        let json: Vec<_> = systems
            .iter()
            .map(|(name, m)| serde_json::json!({ "system": name, "metrics": m }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "{:<16} {:>5} {:>10} {:>10} {:>10} {:>10} {:>6}",
            "system", "K", "precision", "recall", "NDCG", "MAP", "users"
        );
        for (name, metrics) in &systems {
            for m in metrics {
                println!(
                    "{name:<16} {:>5} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>6}",
                    m.k, m.precision, m.recall, m.ndcg, m.map, m.users
                );
            }
        }
    }
    if let Some(plot) = &args.plot {
        let file = Output::file(plot)?;
        plot_metrics(file.path(), &systems, 1200, 900)?;
        file.publish()?;
        eprintln!("destiny: wrote {}", plot.display());
    }
    Ok(())
}
