//! `destiny baseline`: recommendations from a baseline, written like a model's, so that every
//! evaluation has a yardstick.

use anyhow::bail;
use destiny_core::data::{Rows, SparseRows};
use destiny_data::bind::VALIDATION_FILES;
use destiny_eval::baselines::{choose, Baseline, BaselineKind as Kind};
use destiny_storage::{Input, Output};
use std::path::{Path, PathBuf};

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
    /// EASE's L2 weight (without --validation).
    #[arg(long, default_value_t = 500.0)]
    lambda: f64,
    /// Choose the main setting (EASE's L2 weight, ItemKNN's neighbours, ALS's confidence
    /// and L2 weight) on the validation users of this folder (from `destiny convert
    /// --validation-users`).
    #[arg(long, value_name = "DIR")]
    validation: Option<PathBuf>,
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
    /// Item-item cosine similarity over each item's nearest neighbours.
    ItemKnn,
    /// Implicit alternating least squares (matrix factorisation).
    Als,
}

impl BaselineKind {
    fn kind(self) -> Kind {
        match self {
            BaselineKind::Popularity => Kind::Popularity,
            BaselineKind::Ease => Kind::Ease,
            BaselineKind::ItemKnn => Kind::ItemKnn,
            BaselineKind::Als => Kind::Als,
        }
    }
}

fn sparse(path: &Path) -> anyhow::Result<(SparseRows, Vec<String>)> {
    let file = crate::datasets::read_with_samples(Input::open(path)?.path())?;
    match file.dataset.rows {
        Rows::Sparse(rows) => Ok((rows, file.samples)),
        Rows::Dense(_) => bail!("{} is not sparse", path.display()),
    }
}

/// Runs `destiny baseline`.
pub fn run(args: &BaselineArgs) -> anyhow::Result<()> {
    let (train, _) = sparse(&args.train)?;
    let input_file = Input::open_with_siblings(&args.input, &[destiny_data::FEATURE_INDEX])?;
    let (input, samples) = sparse(input_file.path())?;
    let features_file = Input::open_optional(args.features.as_deref())?;
    let features =
        destiny_data::feature_ids(input_file.path(), features_file.as_ref().map(Input::path))?;
    let kind = args.kind.kind();
    let baseline = match (&args.validation, kind) {
        (Some(folder), _) => {
            let [fold_in, held_out] = VALIDATION_FILES.map(|name| folder.join(name));
            let ((fold_in, _), (held_out, _)) = (sparse(&fold_in)?, sparse(&held_out)?);
            let (best, trials) = choose(kind, &train, &fold_in, &held_out)?;
            for trial in &trials {
                eprintln!(
                    "destiny: {:<40} validation NDCG@100 {:.4}  Recall@20 {:.4}",
                    trial.baseline.to_string(),
                    trial.ndcg_at_100,
                    trial.recall_at_20
                );
            }
            eprintln!("destiny: chose {best} on the validation users");
            best
        }
        (None, Kind::Ease) => Baseline::Ease {
            lambda: args.lambda,
        },
        (None, kind) => kind.default_baseline(),
    };
    let top = baseline.recommend(&train, &input, args.k)?;
    let recommendations = destiny_eval::Recommendations::from_top_k(&samples, &top, &features)?;
    let output = Output::file(&args.output)?;
    destiny_eval::write_recommendations(output.path(), &recommendations)?;
    output.publish()?;
    Ok(())
}
