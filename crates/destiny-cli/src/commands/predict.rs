//! `destiny predict`: the top-K items for every user of a dataset, leaving out what the user
//! already has, in DSSTNE's recs format with the original ids.
//!
//! DSSTNE's flags work too: `predict -b 256 -d gl -i features_input -o features_output
//! -k 10 -n MODEL -f FILTER -s recs -r INPUT`, where INPUT may be raw DSSTNE text (turned
//! into rows with the input feature index) or a dataset file, and FILTER lists, in DSSTNE's
//! text format, items to leave out per user.

use crate::device::{with_ranks, DeviceArgs, NetworkSize, RankTask};
use crate::timings::Timings;
use anyhow::{bail, Context};
use destiny_core::backend::Backend;
use destiny_core::config::LayerKind;
use destiny_core::data::{Dataset, Rows, SparseRows};
use destiny_core::model_file::{open_model, OpenModel};
use destiny_core::parallel::Group;
use destiny_core::predict::{predict_top_k, single_input_output, TopK};
use destiny_data::clean::CleanOptions;
use destiny_data::convert::{align_samples, convert, ConvertOptions};
use destiny_data::interactions::IdMap;
use destiny_data::read::ReadOptions;
use destiny_data::split::Split;
use destiny_storage::{Input, Output};
use std::path::{Path, PathBuf};

/// Arguments of `destiny predict`.
#[derive(clap::Args)]
pub struct PredictArgs {
    /// Model file written by `destiny train`.
    #[arg(short = 'n', long)]
    model: PathBuf,
    /// Users to recommend for: a dataset file, or raw DSSTNE text (needs the input feature index).
    #[arg(short = 'r', long = "input")]
    input: PathBuf,
    /// DSSTNE: the dataset name of the input layer (checked against the model).
    #[arg(short = 'd', long = "dataset")]
    dataset: Option<String>,
    /// Feature index of the input layer (for raw text input).
    #[arg(short = 'i', long = "input-features")]
    input_features: Option<PathBuf>,
    /// Feature index of the output layer (default: features.idx beside a dataset input).
    #[arg(short = 'o', long = "output-features")]
    output_features: Option<PathBuf>,
    /// Recommendations per user.
    #[arg(short = 'k', long, default_value_t = 10)]
    k: usize,
    /// File to write: DSSTNE's recs format, or Parquet when the name ends in `.parquet` (one
    /// row per recommendation: user, item, score, rank from 1).
    #[arg(short = 's', long = "output")]
    output: PathBuf,
    /// Items to leave out per user, in DSSTNE's text format (`user<TAB>item:item...`).
    #[arg(short = 'f', long)]
    filter: Option<PathBuf>,
    /// Keep the items a user already has among the candidates.
    #[arg(long)]
    include_seen: bool,
    /// Samples per batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 1024)]
    batch_size: usize,
    /// Print the wall time of each phase (reading, starting the device, uploading the
    /// weights, scoring, writing) to standard error at the end.
    #[arg(long)]
    timings: bool,
    #[command(flatten)]
    compute: DeviceArgs,
}

struct Prediction<'a> {
    args: &'a PredictArgs,
    model: OpenModel,
    datasets: Vec<Dataset>,
    exclude: Option<SparseRows>,
    timings: &'a Timings,
}

impl RankTask for Prediction<'_> {
    /// Rank 0's recommendations (every rank ends with all of them; one writes them).
    type Output = Option<TopK>;

    fn size(&self) -> NetworkSize {
        NetworkSize::of(&self.model.topology)
    }

    fn run<B: Backend>(&self, backend: B, group: Group<B>) -> anyhow::Result<Option<TopK>> {
        let first = group.rank() == 0;
        let lap = |name| {
            if first {
                self.timings.lap(name)
            }
        };
        lap("start the device");
        // Each rank uploads its share of the weights from the mapped file; the optimizer
        // state is never read.
        let mut network = self.model.network_in_group(backend, group)?;
        lap("upload the weights");
        let top = predict_top_k(
            &mut network,
            &self.datasets,
            None,
            self.exclude.as_ref(),
            self.args.k,
            self.args.batch_size,
        )?;
        lap("score and select the top-K");
        Ok(first.then_some(top))
    }
}

/// Reads raw DSSTNE text into rows numbered by `features`, in the order of `samples`.
fn rows_from_text(
    path: &Path,
    features: IdMap,
    samples: Option<&mut IdMap>,
) -> anyhow::Result<(SparseRows, Vec<String>)> {
    let options = ConvertOptions {
        read: ReadOptions::default(),
        clean: CleanOptions::default(),
        split: Split::None,
        seed: 0,
        features: Some(features),
        drop_unknown_items: true,
    };
    let mut conversion =
        convert(path, &options).with_context(|| format!("reading {}", path.display()))?;
    let mut set = conversion.sets.remove(0);
    if let Some(samples) = samples {
        align_samples(&mut set, samples);
    }
    Ok((conversion.sparse_rows(&set)?, set.samples))
}

/// Runs `destiny predict`.
pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    let timings = Timings::new(args.timings);
    // Objects are read from local copies, and the recommendations uploaded once written.
    let model_file = Input::open(&args.model)?;
    let input_file = Input::open_with_siblings(&args.input, &[destiny_data::FEATURE_INDEX])?;
    let input_features = Input::open_optional(args.input_features.as_deref())?;
    let output_features_file = Input::open_optional(args.output_features.as_deref())?;
    let filter = Input::open_optional(args.filter.as_deref())?;
    let recs_file = Output::file(&args.output)?;
    let model = open_model(model_file.path())?;
    let topology = &model.topology;
    let (input, output) = single_input_output(topology)?;
    let input_name = topology.layers[input]
        .definition
        .dataset
        .clone()
        .unwrap_or_default();
    if let Some(name) = &args.dataset {
        let known: Vec<&str> = topology
            .layers
            .iter()
            .filter(|l| l.kind() != LayerKind::Hidden)
            .filter_map(|l| l.definition.dataset.as_deref())
            .collect();
        // DSSTNE's predict takes the prefix (`-d gl` for `gl_input`); a full name works too.
        let prefixed = format!("{name}_input");
        if !known.contains(&name.as_str()) && prefixed != input_name {
            bail!(
                "-d {name}: the model's datasets are {} (-d also takes the input's prefix, as DSSTNE's predict does)",
                known.join(", ")
            );
        }
    }
    let is_dataset = crate::datasets::is_dataset_file(input_file.path())?;
    // A dataset file keeps its rows as they are: sparse, or dense images with their shape.
    let (input_dataset, samples) = if is_dataset {
        let file = crate::datasets::read_with_samples(input_file.path())?;
        (file.dataset, file.samples)
    } else {
        let features = input_features
            .as_ref()
            .context("raw text input needs the input feature index (-i)")?;
        let (rows, samples) = rows_from_text(
            input_file.path(),
            destiny_data::read_index(features.path())?,
            None,
        )?;
        (Dataset::new("", Rows::Sparse(rows)), samples)
    };
    let output_features = match (&output_features_file, is_dataset) {
        (Some(file), _) => destiny_data::read_index(file.path())?.ids().to_vec(),
        (None, true) => destiny_data::feature_ids(input_file.path(), None)?,
        (None, false) => bail!("name the output feature index (-o)"),
    };
    let output_width = topology.layers[output].width;
    if output_features.len() != output_width {
        bail!("the output feature index has {} items but the model's output layer has {output_width} units", output_features.len());
    }
    let same_space = input_dataset.rows.width() == output_width;
    let exclude = match &filter {
        Some(filter) => {
            let mut sample_index = IdMap::default();
            samples.iter().for_each(|s| {
                sample_index.intern(s);
            });
            let mut features = IdMap::default();
            output_features.iter().for_each(|f| {
                features.intern(f);
            });
            let (filter_rows, _) =
                rows_from_text(filter.path(), features, Some(&mut sample_index))?;
            if filter_rows.len() != samples.len() {
                bail!("the filter names users that are not in the input");
            }
            Some(filter_rows)
        }
        None if !args.include_seen && same_space => match &input_dataset.rows {
            Rows::Sparse(rows) => Some(rows.clone()),
            Rows::Dense(_) => None,
        },
        None => None,
    };
    let datasets = vec![Dataset {
        name: input_name,
        ..input_dataset
    }];
    timings.lap("read the model and the input");
    let task = Prediction {
        args,
        model,
        datasets,
        exclude,
        timings: &timings,
    };
    // In a job of several processes, the one holding rank 0 writes.
    let Some(top) = with_ranks(&args.compute, &task)?
        .into_iter()
        .flatten()
        .next()
    else {
        return Ok(());
    };
    if args.output.extension().is_some_and(|e| e == "parquet") {
        destiny_eval::write_top_k_parquet(recs_file.path(), &samples, &top, &output_features)?;
    } else {
        // Straight from the top-K, formatted on every core.
        destiny_eval::write_top_k(recs_file.path(), &samples, &top, &output_features)?;
    }
    recs_file.publish()?;
    timings.lap("write the recommendations");
    let shown = if destiny_core::atomic::is_standard_stream(&args.output) {
        "standard output".into()
    } else {
        args.output.display().to_string()
    };
    eprintln!(
        "destiny: wrote top-{} recommendations for {} users to {shown}",
        args.k,
        samples.len(),
    );
    timings.report();
    Ok(())
}
