//! `destiny baseline`: recommendations from a baseline, written like a model's, so that every
//! evaluation has a yardstick.

use anyhow::bail;
use destiny_core::data::{Rows, SparseRows};
use destiny_eval::baselines::{most_popular, Ease};
use std::path::PathBuf;

/// Arguments of `destiny baseline`.
#[derive(clap::Args)]
pub struct BaselineArgs {
    /// Which baseline.
    #[arg(long, value_enum)]
    kind: BaselineKind,
    /// Training rows (all training users).
    #[arg(long)]
    train: PathBuf,
    /// Rows of the users to recommend for (their items are left out).
    #[arg(short = 'i', long)]
    input: PathBuf,
    /// Feature index (default: features.idx beside the input).
    #[arg(long)]
    features: Option<PathBuf>,
    /// Recommendations per user.
    #[arg(short = 'k', long, default_value_t = 100)]
    k: usize,
    /// EASE's L2 weight.
    #[arg(long, default_value_t = 500.0)]
    lambda: f64,
    /// File to write (DSSTNE's recs format).
    #[arg(short = 's', long = "output")]
    output: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BaselineKind {
    /// The most popular items of the training rows.
    Popularity,
    /// EASE, the closed-form item-item model.
    Ease,
}

fn sparse(path: &PathBuf) -> anyhow::Result<(SparseRows, Vec<String>)> {
    let file = crate::datasets::read_with_samples(path)?;
    match file.dataset.rows {
        Rows::Sparse(rows) => Ok((rows, file.samples)),
        Rows::Dense(_) => bail!("{} is not sparse", path.display()),
    }
}

/// Runs `destiny baseline`.
pub fn run(args: &BaselineArgs) -> anyhow::Result<()> {
    let (train, _) = sparse(&args.train)?;
    let (input, samples) = sparse(&args.input)?;
    let features = destiny_data::feature_ids(&args.input, args.features.as_deref())?;
    let top = match args.kind {
        BaselineKind::Popularity => most_popular(&train, &input, args.k)?,
        BaselineKind::Ease => Ease::fit(&train, args.lambda)?.recommend(&input, args.k)?,
    };
    let recommendations = destiny_eval::Recommendations::from_top_k(&samples, &top, &features)?;
    destiny_eval::write_recommendations(&args.output, &recommendations)?;
    Ok(())
}
