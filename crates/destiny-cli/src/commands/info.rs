//! `destiny info`: what a model file, dataset file or network definition holds.

use anyhow::Context;
use destiny_core::backend::Sliding;
use destiny_core::config::{parse_network_file, DeltaBoost, Kernel, LayerType, PoolingFunction};
use destiny_core::data::Rows;
use destiny_core::model::spatial::Operation;
use destiny_core::model::topology::LayerPlan;
use destiny_core::model_file::{open_model, Contents};
use std::path::PathBuf;

/// Arguments of `destiny info`.
#[derive(clap::Args)]
pub struct InfoArgs {
    /// A model (.safetensors), dataset (.arrow) or network definition (.json).
    path: PathBuf,
}

/// Runs `destiny info`.
pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    // An object is read from a local copy.
    let file = destiny_storage::Input::open(&args.path)?;
    let path = file.path();
    if crate::datasets::is_dataset_file(path)? {
        let file = crate::datasets::read_with_samples(path)?;
        let rows = &file.dataset.rows;
        println!("dataset      {}", file.dataset.name);
        println!("samples      {}", rows.len());
        println!("width        {}", rows.width());
        if !file.dataset.dimensions.is_empty() {
            println!(
                "dimensions   {:?} (an image dataset, read as dense rows)",
                file.dataset.dimensions
            );
        }
        if let Rows::Sparse(x) = rows {
            let lengths: Vec<usize> = (0..x.len()).map(|r| x.row_indices(r).len()).collect();
            println!(
                "entries      {} ({:.2}% dense)",
                x.nnz(),
                100.0 * x.nnz() as f64 / (x.len() * x.width()).max(1) as f64
            );
            println!(
                "per sample   min {} mean {:.1} max {}",
                lengths.iter().min().unwrap_or(&0),
                x.nnz() as f64 / x.len().max(1) as f64,
                lengths.iter().max().unwrap_or(&0)
            );
            println!(
                "values       {}",
                if x.values().is_some() {
                    "stored"
                } else {
                    "all ones"
                }
            );
        }
        return Ok(());
    }
    if path.extension().is_some_and(|e| e == "json") {
        let definition = parse_network_file(path)?;
        println!(
            "network      {} ({:?}, error {:?})",
            definition.name, definition.kind, definition.error_function
        );
        for layer in &definition.layers {
            let window = |k: &Kernel| {
                let join = |v: &[usize; 3]| {
                    let text: Vec<String> =
                        v[..k.dimensions].iter().map(usize::to_string).collect();
                    text.join("x")
                };
                format!("{} stride {}", join(&k.size), join(&k.stride))
            };
            let kind = match &layer.layer_type {
                LayerType::FullyConnected => String::new(),
                LayerType::Convolutional { filters, kernel } => {
                    format!(" convolution of {filters} filters {}", window(kernel))
                }
                LayerType::Pooling(PoolingFunction::LocalResponseNormalization, _) => {
                    " local response normalisation".into()
                }
                LayerType::Pooling(function, kernel) => {
                    format!(" {function:?} pooling {}", window(kernel))
                }
            };
            let normalised = match layer.batch_normalization {
                true => " batch normalised",
                false => "",
            };
            println!(
                "  {:<12} {:?} {:?}{kind} {:?}{normalised} sources {:?}",
                layer.name, layer.kind, layer.width, layer.activation, layer.sources
            );
        }
        return Ok(());
    }
    // The header only: a model file is mapped, and its tensors are not read.
    let model = open_model(path).with_context(|| format!("reading {}", args.path.display()))?;
    let topology = &model.topology;
    println!("network      {}", topology.definition.name);
    println!("parameters   {}", topology.parameter_count());
    let dtype = model
        .weights_dtype()
        .map_or("-".to_string(), |d| format!("{d:?}").to_lowercase());
    let contents = match model.contents {
        Contents::Training => "weights and optimizer state (a checkpoint)",
        Contents::Weights => "weights only (an inference export)",
    };
    println!(
        "contents     {contents}, {dtype}, {} bytes",
        model.file_size()
    );
    let definition = &topology.definition;
    let boost = &definition.delta_boost;
    let boosted = match *boost == DeltaBoost::default() {
        true => String::new(),
        false => format!(", DeltaBoost one {} zero {}", boost.one, boost.zero),
    };
    println!("error        {:?}{boosted}", definition.error_function);
    for layer in &topology.layers {
        let shape = match layer.shape.len() {
            1 => String::new(),
            _ => format!(" {:?}", layer.shape),
        };
        println!(
            "  {:<12} {:?} {} units{shape}{}, {:?}{}{}",
            layer.name(),
            layer.kind(),
            layer.width,
            operation(layer),
            layer.definition.activation,
            if layer.definition.normalize {
                ", rows normalised"
            } else {
                ""
            },
            if layer.normalization.is_some() {
                ", batch normalised"
            } else {
                ""
            }
        );
    }
    for spec in &topology.parameters {
        println!("  tensor {:<28} {} x {}", spec.name, spec.rows, spec.cols);
    }
    let training = &model.training;
    println!(
        "trained      {} epochs, {} steps",
        training.epochs_done, training.steps
    );
    if let (Some(best), Some(last)) = (training.best_validation(), training.validation.last()) {
        println!(
            "validation   epoch {} of {} validated: NDCG@100 {:.4}, Recall@20 {:.4} (the weights here)",
            best.epoch + 1,
            last.epoch + 1,
            best.ndcg_at_100,
            best.recall_at_20
        );
    }
    if let Some(optimizer) = &training.optimizer {
        println!(
            "optimizer    {:?}, learning rate {}",
            optimizer.kind, optimizer.learning_rate
        );
    }
    Ok(())
}

/// What a spatial layer computes, for the layer's line: its window, or its normalisation's
/// parameters; nothing for a fully connected layer.
fn operation(layer: &LayerPlan) -> String {
    let window = |s: &Sliding| {
        let dimensions = layer.shape.len() - 1;
        let join = |v: &[usize; 3]| {
            let text: Vec<String> = v[..dimensions].iter().map(usize::to_string).collect();
            text.join("x")
        };
        format!(
            "{} stride {} padding {}",
            join(&s.window.kernel),
            join(&s.window.stride),
            join(&s.window.padding)
        )
    };
    match &layer.operation {
        Operation::FullyConnected => String::new(),
        Operation::Convolution { .. } => match layer.connections.first().and_then(|c| c.sliding) {
            Some(sliding) => format!(", convolution {}", window(&sliding)),
            None => ", convolution".into(),
        },
        Operation::Pooling {
            pooling, sliding, ..
        } => format!(", {pooling:?} pooling {}", window(sliding)),
        Operation::LocalResponse { response, .. } => format!(
            ", local response normalisation (k {}, n {}, alpha {}, beta {})",
            response.k, response.n, response.alpha, response.beta
        ),
    }
}
