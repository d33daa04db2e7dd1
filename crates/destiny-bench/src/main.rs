//! `destiny-bench`: times Destiny on DSSTNE's MovieLens autoencoder workload, or on its
//! CIFAR-10 network, and prints a table; `bench/*.sh` runs it beside the PyTorch reference
//! on the same data.

mod cifar;
mod synthetic;

use anyhow::Context;
use clap::Parser;
use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::{Backend, GemmShape, OptimizerKind, OutputLayer, Shape};
use destiny_core::config::{
    parse_network, Activation, DeltaBoost, LayerKind, NetworkDefinition, Width,
};
use destiny_core::data::{Dataset, Rows};
use destiny_core::model::{dataset_shapes, Binding, Bound, Network, OptimizerSettings, Topology};
use destiny_core::predict::predict_top_k;
use destiny_core::run::{CheckpointEvery, FitOptions, NonFinite, TrainingOptions};
use destiny_core::train::{fit, TrainingData};
use destiny_cuda::{CudaBackend, Precision};
use std::path::PathBuf;
use std::time::Instant;

/// Times training epochs and top-K prediction of a sparse autoencoder, or training epochs of
/// DSSTNE's CIFAR-10 network.
#[derive(Parser)]
struct Args {
    /// What to time: autoencoder (DSSTNE's MovieLens autoencoder) or cifar (DSSTNE's
    /// CIFAR-10 network on generated images).
    #[arg(long, default_value = "autoencoder")]
    workload: String,
    /// Images of the cifar workload.
    #[arg(long, default_value_t = 50_000)]
    images: usize,
    /// Users (rows).
    #[arg(long, default_value_t = 138_493)]
    users: usize,
    /// Items (input and output width).
    #[arg(long, default_value_t = 26_744)]
    items: usize,
    /// Interactions in all.
    #[arg(long, default_value_t = 20_000_263)]
    interactions: usize,
    /// Hidden units.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Batch sizes to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    batch: Vec<usize>,
    /// Timed epochs per batch size, and timed prediction passes (each after a warm-up one);
    /// the median is reported.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Recommendations per user to time (0 skips prediction).
    #[arg(long, default_value_t = 100)]
    top_k: usize,
    /// Learning rate of SGD.
    #[arg(long, default_value_t = 0.01)]
    learning_rate: f32,
    /// Seed of the synthetic data and the weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the data here for the PyTorch reference, and exit.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Print results as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Where to run: cpu, or cuda (the first GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also time each backend operation of one training step (GPU only).
    #[arg(long)]
    operations: bool,
    /// Precisions of the dense products to time on the GPU, comma-separated (fp32, tf32,
    /// bf16); each is reported as its own rows.
    #[arg(long, value_delimiter = ',', default_value = "fp32")]
    precision: Vec<Precision>,
}

/// DSSTNE's MovieLens autoencoder, read from `examples/movielens/config.json` (sparse input
/// of every item, sigmoid hidden layer with the sparseness penalty, sparse sigmoid output,
/// ScaledMarginalCrossEntropy, denoising 0.2), with `hidden` units in its hidden layer.
fn movielens_autoencoder(hidden: usize) -> anyhow::Result<NetworkDefinition> {
    let mut definition = parse_network(
        include_str!("../../../examples/movielens/config.json"),
        "examples/movielens/config.json",
    )?;
    let layer = definition
        .layers
        .iter_mut()
        .find(|l| l.kind == LayerKind::Hidden)
        .context("the MovieLens definition has no hidden layer")?;
    layer.width = Width::Fixed(hidden);
    Ok(definition)
}

/// The optimizer of DSSTNE's benchmark: plain SGD.
fn sgd(args: &Args) -> OptimizerSettings {
    OptimizerSettings {
        kind: OptimizerKind::Sgd,
        learning_rate: args.learning_rate,
        l1: 0.0,
        l2: 0.0,
    }
}

/// The batch size the per-operation timings use.
fn largest_batch(args: &Args) -> usize {
    args.batch.iter().copied().max().unwrap_or(1024)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Times the epochs and prediction on the backends `backend` makes; `memory`, on a GPU,
/// measures their peak memory; `suffix` tells rows of other precisions apart.
fn run<B: Backend>(
    backend: impl Fn() -> anyhow::Result<B>,
    memory: Option<&CudaBackend>,
    suffix: &str,
    args: &Args,
    datasets: &[Dataset],
) -> anyhow::Result<()> {
    let (definition, epoch) = match args.workload.as_str() {
        "cifar" => (cifar::definition()?, "cifar-10 epoch"),
        _ => (movielens_autoencoder(args.hidden)?, "epoch"),
    };
    let topology = Topology::new(&definition, &dataset_shapes(datasets))?;
    let device = backend()?.name();
    for &batch_size in &args.batch {
        if let Some(gpu) = memory {
            gpu.reset_peak_memory()?;
        }
        let mut network = Network::new(backend()?, topology.clone(), args.seed)?;
        // A warm-up epoch, then the timed ones.
        let options = FitOptions {
            training: TrainingOptions {
                batch_size,
                optimizer: sgd(args),
                seed: args.seed,
                shuffle: definition.shuffle_indices,
                denoising: definition.denoising,
                on_nonfinite: NonFinite::Stop,
            },
            epochs: args.epochs + 1,
            checkpoint: None,
            checkpoint_every: CheckpointEvery::Epochs(1),
            resume: false,
            overwrite: false,
            patience: None,
        };
        let data = TrainingData::new(&network, datasets)?;
        let run = fit(&mut network, &data, &options, &mut ())?;
        let times = run.epochs[1..].iter().map(|e| e.summary.seconds).collect();
        let loss = run.epochs.last().map(|e| e.summary.loss);
        let peak = memory.map(|gpu| gpu.peak_memory()).transpose()?;
        report(
            args,
            &Row {
                device: &device,
                workload: format!("{epoch}, batch {batch_size}{suffix}"),
                seconds: median(times),
                loss,
                peak_memory_bytes: peak,
            },
        );
        if args.workload == "autoencoder" && args.top_k > 0 && batch_size == args.batch[0] {
            let Rows::Sparse(seen) = &datasets[0].rows else {
                unreachable!()
            };
            // A warm-up pass, then the timed ones, as for the epochs.
            let mut times = Vec::new();
            for pass in 0..=args.epochs {
                let start = Instant::now();
                let top = predict_top_k(
                    &mut network,
                    &datasets[..1],
                    None,
                    Some(seen),
                    args.top_k,
                    1024,
                )?;
                if pass > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
                anyhow::ensure!(top.len() == seen.len(), "prediction lost rows");
            }
            report(
                args,
                &Row {
                    device: &device,
                    workload: format!("top-{} for all users{suffix}", args.top_k),
                    seconds: median(times),
                    loss: None,
                    peak_memory_bytes: None,
                },
            );
        }
    }
    Ok(())
}

/// Measures cuBLAS's fp32 rate on an 8192^3 product, the rate the epoch floor is computed
/// with: three products of users x hidden x items per epoch.
fn report_gemm_rate(args: &Args, gpu: &CudaBackend) -> anyhow::Result<()> {
    let n = 8192;
    let a = gpu.upload(&vec![0.5f32; n * n])?;
    let b = gpu.upload(&vec![0.25f32; n * n])?;
    let mut c = gpu.zeros(n * n)?;
    let shape = GemmShape {
        m: n,
        n,
        k: n,
        transpose_a: false,
        transpose_b: false,
    };
    gpu.gemm(shape, 1.0, &a, &b, 0.0, &mut c)?;
    gpu.synchronize()?;
    let repeats = 10;
    let start = Instant::now();
    for _ in 0..repeats {
        gpu.gemm(shape, 1.0, &a, &b, 0.0, &mut c)?;
    }
    gpu.synchronize()?;
    let rate = 2.0 * (n as f64).powi(3) * repeats as f64 / start.elapsed().as_secs_f64();
    let floor = 3.0 * 2.0 * args.users as f64 * args.hidden as f64 * args.items as f64 / rate;
    report(
        args,
        &Row {
            device: &gpu.name(),
            workload: format!("fp32 floor of an epoch ({:.1} TFLOP/s)", rate / 1e12),
            seconds: floor,
            loss: None,
            peak_memory_bytes: None,
        },
    );
    Ok(())
}

/// Times each operation of a training step at the largest batch size, on the GPU, to show
/// where an epoch's time goes (milliseconds per call, median of 20).
fn time_operations(args: &Args, gpu: &CudaBackend, datasets: &[Dataset]) -> anyhow::Result<()> {
    use destiny_core::backend::Target;
    let Rows::Sparse(rows) = &datasets[0].rows else {
        unreachable!()
    };
    let batch = largest_batch(args);
    let (items, hidden) = (args.items, args.hidden);
    let x = gpu.upload_sparse(&rows.gather(&(0..batch).collect::<Vec<_>>()))?;
    let w_in = gpu.upload(&vec![0.01; items * hidden])?;
    let w_out = gpu.upload(&vec![0.01; hidden * items])?;
    let mut h = gpu.zeros(batch * hidden)?;
    let mut z = gpu.upload(&vec![0.1; batch * items])?;
    let mut a = gpu.zeros(batch * items)?;
    let mut delta = gpu.zeros(batch * items)?;
    let mut grad = gpu.zeros(items * hidden)?;
    let bias = gpu.zeros(items)?;
    let mut bias_grad = gpu.zeros(items)?;
    let mut loss = gpu.zeros(1)?;
    let error = movielens_autoencoder(hidden)?.error_function;
    let time =
        |name: &str, f: &mut dyn FnMut() -> destiny_core::Result<()>| -> anyhow::Result<()> {
            f()?;
            gpu.synchronize()?;
            let mut times = Vec::new();
            for _ in 0..20 {
                let start = Instant::now();
                f()?;
                gpu.synchronize()?;
                times.push(start.elapsed().as_secs_f64());
            }
            report(
                args,
                &Row {
                    device: &gpu.name(),
                    workload: format!("op {name} (ms)"),
                    seconds: median(times) * 1e3,
                    loss: None,
                    peak_memory_bytes: None,
                },
            );
            Ok(())
        };
    time("sparse product", &mut || {
        gpu.sparse_matmul(&x, &w_in, hidden, 0.0, &mut h)
    })?;
    let forward = GemmShape {
        m: batch,
        n: items,
        k: hidden,
        transpose_a: false,
        transpose_b: false,
    };
    time("output product", &mut || {
        gpu.gemm(forward, 1.0, &h, &w_out, 0.0, &mut z)
    })?;
    time("bias and sigmoid", &mut || {
        gpu.activation_forward(
            Activation::Sigmoid,
            Shape::new(batch, items),
            Some(&bias),
            &mut z,
            None,
            &mut a,
        )
    })?;
    time("output delta (bias, sigmoid, error)", &mut || {
        gpu.output_delta(
            OutputLayer {
                error,
                boost: DeltaBoost::default(),
                activation: Activation::Sigmoid,
                bias: Some(&bias),
                slope: None,
            },
            Shape::new(batch, items),
            &z,
            Target::Sparse {
                entries: &x,
                first_column: 0,
            },
            &mut delta,
            &mut loss,
        )
    })?;
    time("bias gradient", &mut || {
        gpu.bias_gradient(Shape::new(batch, items), &delta, 1.0, &mut bias_grad)
    })?;
    let weight_gradient = GemmShape {
        m: hidden,
        n: items,
        k: batch,
        transpose_a: true,
        transpose_b: false,
    };
    time("weight gradient product", &mut || {
        gpu.gemm(weight_gradient, 1.0, &h, &delta, 1.0, &mut grad)
    })?;
    let back = GemmShape {
        m: batch,
        n: hidden,
        k: items,
        transpose_a: false,
        transpose_b: true,
    };
    time("delta product", &mut || {
        gpu.gemm(back, 1.0, &delta, &w_out, 0.0, &mut h)
    })?;
    time("sparse gradient", &mut || {
        gpu.sparse_transpose_matmul(&x, &h, hidden, -0.01, &mut grad)
    })?;
    time("fill", &mut || gpu.fill(&mut delta, batch * items, 0.0))?;
    // Scores as a trained model gives them: distinct, mostly small.
    let scores: Vec<f32> = (0..batch * items)
        .map(|i| 1.0 / (1.0 + (6.0 + (i % 7919) as f32 / 1000.0).exp()))
        .collect();
    let scores = gpu.upload(&scores)?;
    time("top-100", &mut || {
        let top = gpu.top_k(Shape::new(batch, items), &scores, 100, Some(&x), 0)?;
        gpu.read_top_k(top).map(|_| ())
    })?;
    time("upload batch", &mut || {
        gpu.upload_sparse(&rows.gather(&(0..batch).collect::<Vec<_>>()))
            .map(|_| ())
    })?;
    Ok(())
}

/// One result.
struct Row<'a> {
    device: &'a str,
    workload: String,
    seconds: f64,
    loss: Option<f64>,
    peak_memory_bytes: Option<u64>,
}

/// Splits one epoch at the largest batch size into its host and device parts, batch after
/// batch without overlap (milliseconds per batch): gathering and denoising on the host,
/// uploading, queueing the step's kernels, and waiting for the GPU to finish them.
fn time_epoch_phases(args: &Args, datasets: &[Dataset]) -> anyhow::Result<()> {
    let definition = movielens_autoencoder(args.hidden)?;
    let topology = Topology::new(&definition, &dataset_shapes(datasets))?;
    let gpu = CudaBackend::new(0)?;
    let device = gpu.name();
    let mut network = Network::new(gpu, topology, args.seed)?;
    network.set_optimizer(sgd(args))?;
    let binding = Binding::new(network.topology(), datasets, Bound::InputsAndTargets)?;
    let batch = largest_batch(args);
    let order: Vec<usize> = (0..binding.samples()).collect();
    let mut phases = [0.0f64; 4];
    let batches = order.chunks(batch).count();
    for (b, samples) in order.chunks(batch).enumerate() {
        let start = Instant::now();
        let data = binding.gather(samples, definition.denoising.map(|p| (p, b as u64)));
        let gathered = Instant::now();
        let mut device_batch = network.upload_batch(&data)?;
        let uploaded = Instant::now();
        network.train_batch(&mut device_batch, b as u64)?;
        let queued = Instant::now();
        network.backend().synchronize()?;
        let done = Instant::now();
        for (phase, (from, to)) in phases.iter_mut().zip([
            (start, gathered),
            (gathered, uploaded),
            (uploaded, queued),
            (queued, done),
        ]) {
            *phase += (to - from).as_secs_f64();
        }
    }
    for (name, seconds) in [
        "gather and denoise",
        "upload",
        "queue kernels",
        "wait for the GPU",
    ]
    .iter()
    .zip(phases)
    {
        report(
            args,
            &Row {
                device: &device,
                workload: format!("op epoch phase: {name} (ms)"),
                seconds: seconds * 1e3 / batches as f64,
                loss: None,
                peak_memory_bytes: None,
            },
        );
    }
    Ok(())
}

fn report(args: &Args, row: &Row) {
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "system": "destiny",
                "device": row.device,
                "workload": row.workload,
                "seconds": row.seconds,
                "loss": row.loss,
                "peak_memory_bytes": row.peak_memory_bytes,
            })
        );
    } else {
        println!(
            "destiny  {:<24} {:<36} {:>9.3} s  loss {}  peak {}",
            row.device,
            row.workload,
            row.seconds,
            row.loss.map_or("-".into(), |l| format!("{l:.4}")),
            row.peak_memory_bytes
                .map_or("-".into(), |b| format!("{:.0} MB", b as f64 / 1e6)),
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.epochs >= 1, "--epochs must be at least 1");
    let datasets = match args.workload.as_str() {
        "autoencoder" => {
            let rows = synthetic::power_law_interactions(
                args.users,
                args.items,
                args.interactions,
                args.seed,
            );
            if let Some(folder) = &args.export {
                synthetic::export(&rows, folder)
                    .with_context(|| format!("writing {}", folder.display()))?;
                return Ok(());
            }
            vec![
                Dataset::new("gl_input", Rows::Sparse(rows.clone())),
                Dataset::new("gl_output", Rows::Sparse(rows)),
            ]
        }
        "cifar" => {
            anyhow::ensure!(
                args.export.is_none(),
                "--export is for the autoencoder's data"
            );
            cifar::datasets(args.images, args.seed)?
        }
        other => anyhow::bail!("unknown workload '{other}': autoencoder or cifar"),
    };
    match args.device.as_str() {
        "cpu" => run(|| Ok(CpuBackend::new()), None, "", &args, &datasets),
        "cuda" => {
            let gpu = CudaBackend::new(0)?;
            if args.workload == "autoencoder" {
                report_gemm_rate(&args, &gpu)?;
            }
            if args.operations && args.workload == "autoencoder" {
                time_operations(&args, &gpu, &datasets)?;
                time_epoch_phases(&args, &datasets)?;
            }
            for &precision in &args.precision {
                let suffix = match precision {
                    Precision::Fp32 => String::new(),
                    other => format!(", {other}"),
                };
                run(
                    || Ok(CudaBackend::new(0)?.with_precision(precision)),
                    Some(&gpu),
                    &suffix,
                    &args,
                    &datasets,
                )?;
            }
            Ok(())
        }
        other => anyhow::bail!("unknown device '{other}': cpu or cuda"),
    }
}
