//! Networks split across ranks (model parallel) or sharing batches (data parallel), as
//! threads of the CPU backend (exchanging through memory or over TCP), against the same network on one rank: the same losses, the
//! same weights, the same recommendations, and model files that any number of ranks reads.

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::OptimizerKind;
use destiny_core::config::{parse_network, NetworkDefinition};
use destiny_core::data::{Dataset, DenseRows, Rows, SparseRows};
use destiny_core::model::{dataset_shapes, Network, OptimizerSettings, Topology};
use destiny_core::model_file::{load_model, save_model};
use destiny_core::parallel::rendezvous::Launch;
use destiny_core::parallel::{Communicator, Group, Parallelism, SocketGroup, ThreadGroup};
use destiny_core::predict::{predict_top_k, TopK};
use destiny_core::run::{NonFinite, TrainingOptions, TrainingState};
use destiny_core::train::{train_epoch, TrainingData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// DSSTNE's MovieLens autoencoder at a small, uneven width, with denoising and the
/// sparseness penalty.
const AUTOENCODER: &str = r#"{
    "Version": 0.8, "Name": "AE", "Kind": "FeedForward",
    "Denoising": { "p": 0.2 },
    "SparsenessPenalty": { "p": 0.5, "beta": 2.0 },
    "ScaledMarginalCrossEntropy": { "oneTarget": 1.0, "zeroTarget": 0.0, "oneScale": 1.0, "zeroScale": 1.0 },
    "ErrorFunction": "ScaledMarginalCrossEntropy",
    "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "items", "Sparse": true },
        { "Name": "Hidden", "Kind": "Hidden", "N": 13, "Activation": "Sigmoid", "Sparse": true },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "items", "Activation": "Sigmoid", "Sparse": true }
    ]
}"#;

/// Dense hidden-to-hidden connections (activations gathered, deltas scattered), dropout on a
/// split layer, a skip, and a dense input and target.
const DEEP: &str = r#"{
    "Version": 0.8, "Name": "Deep", "Kind": "FeedForward",
    "ErrorFunction": "CrossEntropy",
    "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "features" },
        { "Name": "First", "Kind": "Hidden", "N": 11, "Activation": "Tanh", "pDropout": 0.3, "Source": "Input" },
        { "Name": "Second", "Kind": "Hidden", "N": 7, "Activation": "RectifiedLinear", "Source": "First" },
        { "Name": "Third", "Kind": "Hidden", "N": 7, "Activation": "Sigmoid", "Source": "Second", "Skip": "Second" },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "labels", "Activation": "Sigmoid", "Source": ["Third", "First"] }
    ]
}"#;

fn sparse_rows(rng: &mut ChaCha8Rng, samples: usize, width: usize) -> SparseRows {
    let rows: Vec<Vec<(u32, f32)>> = (0..samples)
        .map(|_| {
            let mut row: Vec<(u32, f32)> = (0..width as u32)
                .filter(|_| rng.random_bool(0.2))
                .map(|c| (c, 1.0))
                .collect();
            if row.is_empty() {
                row.push((rng.random_range(0..width as u32), 1.0));
            }
            row
        })
        .collect();
    SparseRows::from_rows(width, &rows).unwrap()
}

fn dense_rows(rng: &mut ChaCha8Rng, samples: usize, width: usize, binary: bool) -> Rows {
    let data = (0..samples * width)
        .map(|_| {
            if binary {
                f32::from(u8::from(rng.random_bool(0.3)))
            } else {
                rng.random_range(-1.0..1.0)
            }
        })
        .collect();
    Rows::Dense(DenseRows::new(width, data).unwrap())
}

/// The network, its datasets and the top-K exclusions (the input, for the autoencoder).
fn case(name: &str) -> (NetworkDefinition, Vec<Dataset>, Option<SparseRows>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    match name {
        "autoencoder" | "plain autoencoder" => {
            let items = sparse_rows(&mut rng, 90, 37);
            let text = match name {
                "autoencoder" => AUTOENCODER.to_string(),
                // Without the masks and the batch statistics of denoising and the penalty.
                _ => AUTOENCODER
                    .replace(r#""Denoising": { "p": 0.2 },"#, "")
                    .replace(r#""SparsenessPenalty": { "p": 0.5, "beta": 2.0 },"#, ""),
            };
            let definition = parse_network(&text, name).unwrap();
            let data = vec![Dataset::new("items", Rows::Sparse(items.clone()))];
            (definition, data, Some(items))
        }
        _ => {
            let definition = parse_network(DEEP, "deep").unwrap();
            let data = vec![
                Dataset::new("features", dense_rows(&mut rng, 90, 9, false)),
                Dataset::new("labels", dense_rows(&mut rng, 90, 10, true)),
            ];
            (definition, data, None)
        }
    }
}

const ADAM: OptimizerSettings = OptimizerSettings {
    kind: OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
    },
    learning_rate: 0.01,
    l1: 0.0,
    l2: 1e-4,
};

/// What a run shows of a network: its loss after every epoch, its whole parameters and
/// optimizer state, and its top 5 for every sample.
#[derive(Debug)]
struct Run {
    losses: Vec<f64>,
    parameters: Vec<Vec<f32>>,
    state: Vec<Vec<Vec<f32>>>,
    top: TopK,
}

fn train(network: &mut Network<CpuBackend>, case: &str, first: usize, epochs: usize) -> Run {
    let (definition, data, exclude) = self::case(case);
    let options = TrainingOptions {
        batch_size: 10,
        optimizer: ADAM,
        seed: 3,
        shuffle: true,
        denoising: definition.denoising,
        on_nonfinite: NonFinite::Stop,
    };
    let training = TrainingData::new(network, &data).unwrap();
    let losses = (first..epochs)
        .map(|epoch| {
            train_epoch(network, &training, &options, epoch, &mut |_| {})
                .unwrap()
                .loss
        })
        .collect();
    let inputs: Vec<Dataset> = data.into_iter().take(1).collect();
    let top = predict_top_k(network, &inputs, None, exclude.as_ref(), 5, 16).unwrap();
    Run {
        losses,
        parameters: network.parameter_values().unwrap(),
        state: network.optimizer_state().unwrap(),
        top,
    }
}

fn topology(case: &str) -> Topology {
    let (definition, data, _) = self::case(case);
    let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
    topology
}

/// Runs `work` on `size` ranks, each a thread with its own CPU backend, exchanging through
/// host memory.
fn on_ranks<T: Send>(
    size: usize,
    parallelism: Parallelism,
    work: impl Fn(Group<CpuBackend>) -> T + Sync,
) -> Vec<T> {
    let communicators = ThreadGroup::new(size).into_iter().map(|group| {
        Box::new(move || Box::new(group) as Box<dyn Communicator<CpuBackend>>) as Joiner
    });
    on_communicators(communicators.collect(), parallelism, work)
}

/// Makes one rank's communicator in that rank's thread.
type Joiner = Box<dyn FnOnce() -> Box<dyn Communicator<CpuBackend>> + Send>;

/// Runs `work` on the ranks that `joiners` connect, each in its own thread.
fn on_communicators<T: Send>(
    joiners: Vec<Joiner>,
    parallelism: Parallelism,
    work: impl Fn(Group<CpuBackend>) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|scope| {
        let work = &work;
        let ranks: Vec<_> = joiners
            .into_iter()
            .map(|join| scope.spawn(move || work(Group::new(join(), parallelism))))
            .collect();
        ranks
            .into_iter()
            .map(|rank| rank.join().expect("a rank panicked"))
            .collect()
    })
}

/// Runs `work` on `size` ranks that meet through the launcher's rendezvous on the loopback
/// and exchange through TCP, as processes of a job do.
fn on_sockets<T: Send>(
    size: usize,
    parallelism: Parallelism,
    work: impl Fn(Group<CpuBackend>) -> T + Sync,
) -> Vec<T> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let joiners = (0..size).map(|rank| {
        let launch = Launch {
            rank,
            world_size: size,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
        };
        Box::new(move || {
            Box::new(SocketGroup::join(&launch).unwrap()) as Box<dyn Communicator<CpuBackend>>
        }) as Joiner
    });
    on_communicators(joiners.collect(), parallelism, work)
}

fn single(case: &str, epochs: usize) -> Run {
    let mut network = Network::new(CpuBackend::new(), topology(case), 5).unwrap();
    network.set_optimizer(ADAM).unwrap();
    train(&mut network, case, 0, epochs)
}

fn assert_close(what: &str, got: &[f32], expected: &[f32], bound: f32) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= bound * (1.0 + e.abs()),
            "{what}[{i}]: {g} against {e}"
        );
    }
}

/// The same losses (relative 1e-5), parameters, optimizer state and top-K.
fn assert_same_run(what: &str, run: &Run, reference: &Run) {
    assert_eq!(run.losses.len(), reference.losses.len());
    for (epoch, (got, expected)) in run.losses.iter().zip(&reference.losses).enumerate() {
        assert!(
            ((got - expected) / expected).abs() < 1e-5,
            "{what}: epoch {epoch} loss {got} against {expected}"
        );
    }
    for (p, (got, expected)) in run.parameters.iter().zip(&reference.parameters).enumerate() {
        assert_close(&format!("{what}: parameter {p}"), got, expected, 1e-4);
    }
    for (p, (got, expected)) in run.state.iter().zip(&reference.state).enumerate() {
        for (k, (got, expected)) in got.iter().zip(expected).enumerate() {
            assert_close(&format!("{what}: state {k} of {p}"), got, expected, 1e-4);
        }
    }
    assert_eq!(run.top.columns, reference.top.columns, "{what}: top-K");
    assert_close(
        &format!("{what}: top-K scores"),
        &run.top.scores,
        &reference.top.scores,
        1e-4,
    );
}

/// 9 batches an epoch for 25 epochs: a little over 200 steps.
const EPOCHS: usize = 25;

#[test]
fn split_layers_train_as_one_network() {
    for case in ["autoencoder", "deep"] {
        let reference = single(case, EPOCHS);
        for ranks in [2, 3, 4] {
            let runs = on_ranks(ranks, Parallelism::Model, |group| {
                let mut network =
                    Network::new_in_group(CpuBackend::new(), topology(case), 5, group).unwrap();
                network.set_optimizer(ADAM).unwrap();
                train(&mut network, case, 0, EPOCHS)
            });
            for (rank, run) in runs.iter().enumerate() {
                assert_same_run(
                    &format!("{case} on rank {rank} of {ranks}"),
                    run,
                    &reference,
                );
            }
        }
    }
}

#[test]
fn shared_batches_train_as_one_network() {
    // Data parallel draws each rank's own dropout and denoising masks, and takes the
    // sparseness penalty over each rank's share: without them, the ranks' mean gradient is
    // the whole batch's.
    let case = "plain autoencoder";
    let reference = single(case, EPOCHS);
    for ranks in [2, 3] {
        let runs = on_ranks(ranks, Parallelism::Data, |group| {
            let mut network =
                Network::new_in_group(CpuBackend::new(), topology(case), 5, group).unwrap();
            network.set_optimizer(ADAM).unwrap();
            train(&mut network, case, 0, EPOCHS)
        });
        for (rank, run) in runs.iter().enumerate() {
            assert_same_run(
                &format!("data parallel rank {rank} of {ranks}"),
                run,
                &reference,
            );
        }
    }
}

#[test]
fn ranks_that_exchange_over_sockets_train_as_one_network() {
    let fresh = |case: &'static str| {
        move |group| {
            let mut network =
                Network::new_in_group(CpuBackend::new(), topology(case), 5, group).unwrap();
            network.set_optimizer(ADAM).unwrap();
            train(&mut network, case, 0, EPOCHS)
        }
    };
    let reference = single("autoencoder", EPOCHS);
    for (rank, run) in on_sockets(3, Parallelism::Model, fresh("autoencoder"))
        .iter()
        .enumerate()
    {
        assert_same_run(
            &format!("model parallel socket rank {rank}"),
            run,
            &reference,
        );
    }
    let reference = single("plain autoencoder", EPOCHS);
    for (rank, run) in on_sockets(2, Parallelism::Data, fresh("plain autoencoder"))
        .iter()
        .enumerate()
    {
        assert_same_run(
            &format!("data parallel socket rank {rank}"),
            run,
            &reference,
        );
    }
}

#[test]
fn model_files_do_not_depend_on_the_number_of_ranks() {
    let case = "deep";
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("model.safetensors");
    let state = |network: &Network<CpuBackend>| TrainingState {
        epochs_done: 4,
        steps: network.steps(),
        optimizer: Some(ADAM),
        options: None,
        validation: Vec::new(),
    };
    // Four epochs on one rank, four more on three ranks, against eight on two.
    let mut first = Network::new(CpuBackend::new(), topology(case), 5).unwrap();
    first.set_optimizer(ADAM).unwrap();
    train(&mut first, case, 0, 4);
    save_model(&path, &first, &state(&first)).unwrap();
    let resumed = on_ranks(3, Parallelism::Model, |group| {
        let file = load_model(&path).unwrap();
        let mut network = file
            .into_network_in_group(CpuBackend::new(), group)
            .unwrap();
        train(&mut network, case, 4, 8)
    });
    let straight = on_ranks(2, Parallelism::Model, |group| {
        let mut network =
            Network::new_in_group(CpuBackend::new(), topology(case), 5, group).unwrap();
        network.set_optimizer(ADAM).unwrap();
        let run = train(&mut network, case, 0, 8);
        // Saved by split ranks (rank 0 writes), read by one.
        save_model(&path, &network, &state(&network)).unwrap();
        run
    });
    let mut whole = load_model(&path)
        .unwrap()
        .into_network(CpuBackend::new())
        .unwrap();
    assert_eq!(whole.parameter_values().unwrap(), straight[0].parameters);
    assert_eq!(whole.optimizer_state().unwrap(), straight[0].state);
    let (_, data, _) = self::case(case);
    let inputs: Vec<Dataset> = data.into_iter().take(1).collect();
    let top = predict_top_k(&mut whole, &inputs, None, None, 5, 16).unwrap();
    assert_eq!(top.columns, straight[0].top.columns);
    let mut straight = straight.into_iter().next().unwrap();
    straight.losses.drain(..4);
    assert_same_run("resumed on three ranks", &resumed[0], &straight);
}

#[test]
fn what_a_split_cannot_compute_is_a_clear_error() {
    let softmax = DEEP.replace(
        r#""DataSet": "labels", "Activation": "Sigmoid""#,
        r#""DataSet": "labels", "Activation": "SoftMax""#,
    );
    let definition = parse_network(&softmax, "softmax").unwrap();
    let (_, data, _) = case("deep");
    let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
    let errors = on_ranks(2, Parallelism::Model, |group| {
        Network::new_in_group(CpuBackend::new(), topology.clone(), 1, group)
            .err()
            .map(|e| e.to_string())
    });
    for message in errors {
        let message = message.expect("SoftMax cannot be split");
        assert!(message.contains("'Output' uses SoftMax"), "{message}");
    }
}
