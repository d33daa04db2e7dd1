//! `destiny evaluate`: recommendations against held-out interactions, as a table, JSON and a
//! plot of the metrics against K.

use anyhow::{bail, Context};
use destiny_core::data::Rows;
use destiny_eval::plot::plot_metrics;
use destiny_eval::{evaluate, read_recommendations, Metrics};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

/// Held-out items per user id.
fn read_truth(
    path: &Path,
    features: Option<&Path>,
) -> anyhow::Result<HashMap<String, Vec<String>>> {
    if crate::datasets::is_dataset_file(path)? {
        let file = crate::datasets::read_with_samples(path)?;
        let ids = destiny_data::feature_ids(path, features)?;
        let Rows::Sparse(rows) = file.dataset.rows else {
            bail!("{} is not sparse", path.display())
        };
        if rows.width() != ids.len() {
            bail!(
                "{} is {} wide but its feature index has {} items",
                path.display(),
                rows.width(),
                ids.len()
            );
        }
        Ok(file
            .samples
            .into_iter()
            .enumerate()
            .map(|(r, user)| {
                (
                    user,
                    rows.row_indices(r)
                        .iter()
                        .map(|&c| ids[c as usize].clone())
                        .collect(),
                )
            })
            .collect())
    } else {
        let table = destiny_data::read::read_interactions(
            path,
            &destiny_data::read::ReadOptions {
                format: destiny_data::read::Format::Dsstne,
                ..Default::default()
            },
        )?;
        let mut truth: HashMap<String, Vec<String>> = HashMap::new();
        for (&u, &i) in table.user.iter().zip(&table.item) {
            truth
                .entry(table.users.id(u).to_string())
                .or_default()
                .push(table.items.id(i).to_string());
        }
        Ok(truth)
    }
}

/// Runs `destiny evaluate`.
pub fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    if args.k.iter().any(|&k| k == 0) {
        bail!("every K must be at least 1");
    }
    let truth = read_truth(&args.truth, args.features.as_deref())
        .with_context(|| format!("reading {}", args.truth.display()))?;
    let mut users: Vec<&String> = truth.keys().collect();
    users.sort();
    let relevant: Vec<Vec<String>> = users.iter().map(|u| truth[*u].clone()).collect();
    let mut systems: Vec<(String, Vec<Metrics>)> = Vec::new();
    for (n, path) in args.recs.iter().enumerate() {
        let recs = read_recommendations(path)?;
        let lists: HashMap<&String, Vec<String>> = recs
            .users
            .iter()
            .zip(&recs.lists)
            .map(|(u, l)| (u, l.iter().map(|(i, _)| i.clone()).collect()))
            .collect();
        let ranked: Vec<Vec<String>> = users
            .iter()
            .map(|u| lists.get(*u).cloned().unwrap_or_default())
            .collect();
        let label = args.labels.get(n).cloned().unwrap_or_else(|| {
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        });
        systems.push((label, evaluate(&ranked, &relevant, &args.k)));
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
        plot_metrics(plot, &systems, 1200, 900)?;
        eprintln!("destiny: wrote {}", plot.display());
    }
    Ok(())
}
