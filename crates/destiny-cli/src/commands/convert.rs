//! `destiny convert`: raw interactions to datasets, as DSSTNE's `generateNetCDF` did.
//!
//! With `--out-dir`, writes the split datasets there:
//! - `--split none`: `data.arrow`;
//! - `--split heldout-users`: `train.arrow` (training users, all items), `test_input.arrow`
//!   and `test_target.arrow` (the fold-in and held-out items of the test users), and the
//!   same for `validation_*` when validation users are asked for;
//! - `--split random` or `time`: `input.arrow` and `target.arrow` (every user);
//!
//! and `features.idx` (item id <-> column) with one `NAME.samples.idx` (user id <-> row)
//! per group of rows. DSSTNE's flags (`-d NAME -i INPUT -o OUTPUT -f FEATURES -s SAMPLES
//! [-c]`) write one dataset to OUTPUT (Destiny's Arrow format, whatever its extension);
//! `-c` creates the feature index, otherwise it is read and items it lacks are dropped; an
//! existing sample index is reused and extended, so that input and output datasets share
//! their rows.

use crate::values;
use anyhow::{bail, Context};
use destiny_data::clean::CleanOptions;
use destiny_data::convert::{align_samples, convert, write_conversion, ConvertOptions};
use destiny_data::interactions::IdMap;
use destiny_data::read::{Columns, Format, ReadOptions};
use destiny_data::split::Split;
use destiny_data::{read_index, write_dataset, write_index};
use destiny_storage::{Input, Output};
use std::path::PathBuf;

/// Arguments of `destiny convert`.
#[derive(clap::Args)]
pub struct ConvertArgs {
    /// Raw interactions: DSSTNE text, CSV/TSV, or Parquet.
    #[arg(short = 'i', long)]
    input: PathBuf,
    /// Input format.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    format: InputFormat,
    /// Field delimiter of delimited text (detected when absent): '\t', ',', ';' or '::'.
    #[arg(long)]
    delimiter: Option<String>,
    /// The text has a header line (detected when neither flag is given).
    #[arg(long, overrides_with = "no_header")]
    header: bool,
    /// The text has no header line.
    #[arg(long)]
    no_header: bool,
    /// User column: a header name or a 1-based position.
    #[arg(long)]
    user_column: Option<String>,
    /// Item column: a header name or a 1-based position.
    #[arg(long)]
    item_column: Option<String>,
    /// Rating column: a header name or a 1-based position.
    #[arg(long)]
    rating_column: Option<String>,
    /// Timestamp column: a header name or a 1-based position.
    #[arg(long)]
    timestamp_column: Option<String>,
    /// DSSTNE text: the number after an item is a value, not a timestamp (DSSTNE's analog data).
    #[arg(long)]
    dsstne_values: bool,
    /// Keep only interactions rated at least this.
    #[arg(long, value_parser = values::number)]
    min_rating: Option<f32>,
    /// Drop users with fewer interactions.
    #[arg(long, default_value_t = 1)]
    min_user_interactions: usize,
    /// Drop items with fewer interactions.
    #[arg(long, default_value_t = 1)]
    min_item_interactions: usize,
    /// Store ratings as values instead of 1.
    #[arg(long)]
    keep_ratings: bool,
    /// How to split.
    #[arg(long, value_enum, default_value_t = SplitKind::None)]
    split: SplitKind,
    /// Held-out test users (heldout-users split).
    #[arg(long, default_value_t = 0)]
    test_users: usize,
    /// Held-out validation users (heldout-users split).
    #[arg(long, default_value_t = 0)]
    validation_users: usize,
    /// Share of a user's items held out as target.
    #[arg(long, default_value_t = 0.2, value_parser = values::fraction)]
    holdout_fraction: f64,
    /// Seed of the split.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Folder for the datasets and indices.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// DSSTNE: dataset name, written into the file.
    #[arg(short = 'd', long)]
    name: Option<String>,
    /// DSSTNE: the dataset file to write.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// DSSTNE: the feature index (created with -c, read otherwise).
    #[arg(short = 'f', long)]
    features: Option<PathBuf>,
    /// DSSTNE: the sample index (reused and extended when it exists).
    #[arg(short = 's', long)]
    samples: Option<PathBuf>,
    /// DSSTNE: create the feature index.
    #[arg(short = 'c', long)]
    create_features: bool,
    /// With an existing feature index: drop items it lacks instead of failing.
    #[arg(long)]
    drop_unknown_items: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum InputFormat {
    Auto,
    Dsstne,
    Csv,
    Tsv,
    Parquet,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SplitKind {
    None,
    HeldoutUsers,
    Random,
    Time,
}

/// The name a choice has on the command line, which the libraries take too.
fn name(value: &impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// Runs `destiny convert`.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    if destiny_data::is_netcdf_file(&args.input) {
        return netcdf_input(args);
    }
    let (format, delimiter) = Format::choose(&name(&args.format), args.delimiter.as_deref())?;
    let read = ReadOptions {
        format,
        delimiter,
        header: if args.header {
            Some(true)
        } else if args.no_header {
            Some(false)
        } else {
            None
        },
        columns: Columns {
            user: args.user_column.clone(),
            item: args.item_column.clone(),
            rating: args.rating_column.clone(),
            timestamp: args.timestamp_column.clone(),
        },
        dsstne_values: args.dsstne_values,
    };
    let split = Split::choose(
        &name(&args.split),
        args.test_users,
        args.validation_users,
        args.holdout_fraction,
    )?;
    let dsstne_mode = args.output.is_some();
    if dsstne_mode == args.out_dir.is_some() {
        bail!("give either --out-dir (Destiny's split datasets) or -o (DSSTNE's single dataset)");
    }
    if dsstne_mode && split != Split::None {
        bail!("-o writes one dataset: use --out-dir for a split");
    }
    let feature_index = match (&args.features, args.create_features || !dsstne_mode) {
        (Some(path), false) => Some(
            read_index(Input::open(path)?.path())
                .with_context(|| format!("reading the feature index {}", path.display()))?,
        ),
        (None, false) => bail!("without -c, -f must name an existing feature index"),
        _ => None,
    };
    let options = ConvertOptions {
        read,
        clean: CleanOptions {
            min_rating: args.min_rating,
            min_user_interactions: args.min_user_interactions,
            min_item_interactions: args.min_item_interactions,
            keep_ratings: args.keep_ratings,
        },
        split,
        seed: args.seed,
        drop_unknown_items: args.drop_unknown_items || (dsstne_mode && feature_index.is_some()),
        features: feature_index,
    };
    let input = Input::open(&args.input)?;
    let mut conversion = convert(input.path(), &options)
        .with_context(|| format!("converting {}", args.input.display()))?;
    if conversion.dropped_items > 0 {
        eprintln!(
            "destiny: dropped {} items missing from the feature index",
            conversion.dropped_items
        );
    }
    if dsstne_mode {
        let output = args.output.as_ref().expect("checked above");
        let name = args.name.clone().unwrap_or_else(|| {
            output
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        });
        let mut set = conversion.sets.remove(0);
        let sample_index = match &args.samples {
            Some(samples_path) => {
                // Reused and extended: an object's copy starts as the object.
                let file = Output::replacing(samples_path)?;
                let mut index = if file.path().exists() {
                    read_index(file.path())?
                } else {
                    IdMap::default()
                };
                align_samples(&mut set, &mut index);
                Some((file, index))
            }
            None => None,
        };
        let rows = conversion.sparse_rows(&set)?;
        // The dataset first: when it cannot be written, neither index is touched.
        let dataset = Output::file(output)?;
        write_dataset(dataset.path(), &name, &rows, &set.samples, &[])?;
        dataset.publish()?;
        if let Some((file, index)) = &sample_index {
            write_index(file.path(), index.ids())?;
            file.publish()?;
        }
        if let (Some(features_path), true) = (&args.features, args.create_features) {
            let file = Output::file(features_path)?;
            write_index(file.path(), &conversion.features)?;
            file.publish()?;
        }
        eprintln!(
            "destiny: wrote {} ({} samples, {} features, {} interactions)",
            output.display(),
            rows.len(),
            rows.width(),
            rows.nnz()
        );
        return Ok(());
    }
    let folder = args.out_dir.as_ref().expect("checked above");
    let out_dir = Output::folder(folder)?;
    let written = write_conversion(out_dir.path(), &conversion)
        .with_context(|| format!("writing into {}", folder.display()))?;
    out_dir.publish()?;
    println!(
        "{:<22} {:>9} {:>9} {:>13}",
        "dataset", "samples", "features", "interactions"
    );
    for set in &written {
        println!(
            "{:<22} {:>9} {:>9} {:>13}",
            set.file, set.samples, set.features, set.interactions
        );
    }
    Ok(())
}

/// `destiny convert -i DSSTNE.nc --out-dir DIR [-f FEATURES] [-s SAMPLES]`: every dataset of a
/// DSSTNE NetCDF file into `DIR/NAME.arrow`, as it is (no cleaning or split: the file holds
/// finished datasets). Sample ids come from DSSTNE's sample index (`-s`) and feature ids from
/// its feature index (`-f`, copied as `features.idx`), else their positions. A dense
/// dataset is written as the sparse rows of its non-zero values.
#[cfg(feature = "netcdf")]
fn netcdf_input(args: &ConvertArgs) -> anyhow::Result<()> {
    use destiny_core::data::{Rows, SparseRows};
    let Some(folder) = &args.out_dir else {
        bail!(
            "a NetCDF input is written with --out-dir FOLDER (one Arrow dataset per dataset in it)"
        );
    };
    if name(&args.split) != "none" {
        bail!("a NetCDF file holds finished datasets: convert writes them as they are, without --split");
    }
    let input = Input::open(&args.input)?;
    let datasets = destiny_data::netcdf::read_netcdf(input.path())?;
    let ids = |index: &Option<PathBuf>, count: usize, what: &str| -> anyhow::Result<Vec<String>> {
        let Some(path) = index else {
            return Ok((0..count).map(|n| n.to_string()).collect());
        };
        let ids = read_index(Input::open(path)?.path())?.ids().to_vec();
        if ids.len() < count {
            bail!(
                "{}: {} {what} ids for {count} {what}s",
                path.display(),
                ids.len()
            );
        }
        Ok(ids[..count].to_vec())
    };
    let out_dir = Output::folder(folder)?;
    std::fs::create_dir_all(out_dir.path())
        .with_context(|| format!("creating {}", folder.display()))?;
    println!(
        "{:<22} {:>9} {:>9} {:>13}",
        "dataset", "samples", "features", "interactions"
    );
    for dataset in &datasets {
        let rows = match &dataset.rows {
            Rows::Sparse(rows) => rows.clone(),
            Rows::Dense(dense) => SparseRows::from_dense(dense),
        };
        let file = format!("{}.arrow", dataset.name);
        let samples = ids(&args.samples, rows.len(), "sample")?;
        write_dataset(
            &out_dir.path().join(&file),
            &dataset.name,
            &rows,
            &samples,
            &dataset.dimensions,
        )?;
        println!(
            "{file:<22} {:>9} {:>9} {:>13}",
            rows.len(),
            rows.width(),
            rows.nnz()
        );
    }
    // One feature index serves the folder when its datasets share a width.
    let widths: std::collections::BTreeSet<usize> =
        datasets.iter().map(|d| d.rows.width()).collect();
    match widths.len() {
        0 | 1 => {
            let width = widths.first().copied().unwrap_or(0);
            let features = ids(&args.features, width, "feature")?;
            write_index(&out_dir.path().join(destiny_data::FEATURE_INDEX), &features)?;
        }
        _ if args.features.is_some() => {
            bail!("-f names one feature index, but the datasets are {widths:?} wide")
        }
        _ => eprintln!(
            "destiny: the datasets are {widths:?} wide, so no {} is written",
            destiny_data::FEATURE_INDEX
        ),
    }
    out_dir.publish()?;
    Ok(())
}

/// Without the `netcdf` feature, a NetCDF input is refused with how to get it.
#[cfg(not(feature = "netcdf"))]
fn netcdf_input(args: &ConvertArgs) -> anyhow::Result<()> {
    Err(destiny_data::netcdf_unsupported(&args.input).into())
}
