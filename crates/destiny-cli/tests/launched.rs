//! `destiny train` and `destiny predict` as jobs of several processes on the CPU, started as
//! a launcher starts them (torchrun's and Spark's RANK, WORLD_SIZE, MASTER_ADDR and
//! MASTER_PORT): they meet, exchange over TCP and give what one process gives.

use destiny_core::model_file::load_model;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The MovieLens autoencoder's shape without denoising (whose masks every data-parallel rank
/// draws for itself), small.
const CONFIG: &str = r#"{
    "Version": 0.8, "Name": "AE", "Kind": "FeedForward",
    "ScaledMarginalCrossEntropy": { "oneTarget": 1.0, "zeroTarget": 0.0, "oneScale": 1.0, "zeroScale": 1.0 },
    "ErrorFunction": "ScaledMarginalCrossEntropy",
    "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "gl_input", "Sparse": true },
        { "Name": "Hidden", "Kind": "Hidden", "N": 9, "Activation": "Sigmoid", "Sparse": true },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "gl_output", "Activation": "Sigmoid", "Sparse": true }
    ]
}"#;

fn destiny() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_destiny"));
    // Several processes share this machine's cores.
    command.env("RAYON_NUM_THREADS", "1");
    command
}

fn checked(output: Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `args` as `ranks` processes of one job; the output of each, in rank order.
fn launched(ranks: usize, args: &[&str], timeout: &str) -> Vec<Output> {
    let port = free_port().to_string();
    let children: Vec<_> = (0..ranks)
        .map(|rank| {
            destiny()
                .args(args)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", ranks.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("DESTINY_COLLECTIVE_TIMEOUT", timeout)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect()
}

struct Job {
    _folder: tempfile::TempDir,
    dir: PathBuf,
}

impl Job {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn new() -> Job {
        let folder = tempfile::tempdir().unwrap();
        let dir = folder.path().to_path_buf();
        let mut text = String::from("user,item\n");
        for u in 0..70 {
            for i in 0..12 {
                if (u * 7 + i * 3) % 5 < 2 {
                    text += &format!("u{u},i{}\n", if u % 3 == 0 { i } else { 12 + i });
                }
            }
        }
        std::fs::write(dir.join("ratings.csv"), text).unwrap();
        std::fs::write(dir.join("config.json"), CONFIG).unwrap();
        let job = Job {
            _folder: folder,
            dir,
        };
        checked(
            destiny()
                .args(["convert", "-i", &job.path("ratings.csv")])
                .args(["--split", "heldout-users", "--test-users", "10"])
                .args(["--out-dir", &job.path("data")])
                .output()
                .unwrap(),
        );
        job
    }

    /// `destiny train` of 4 epochs on the CPU into `model`, the ranks sharing it by
    /// `parallel`.
    fn train_args<'a>(&'a self, model: &'a str, parallel: &'a str) -> Vec<String> {
        self.train_epochs(model, parallel, 4)
    }

    fn train_epochs(&self, model: &str, parallel: &str, epochs: usize) -> Vec<String> {
        let epochs = epochs.to_string();
        [
            "train",
            "-c",
            &self.path("config.json"),
            "-i",
            &self.path("data/train.arrow"),
            "-n",
            model,
            "-e",
            &epochs,
            "-b",
            "8",
            "--device",
            "cpu",
            "--parallel",
            parallel,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

fn parameters(model: &Path) -> Vec<Vec<f32>> {
    let file = load_model(model).unwrap();
    let network = file
        .into_network(destiny_core::backend::cpu::CpuBackend::new())
        .unwrap();
    network.parameter_values().unwrap()
}

fn assert_close(what: &str, got: &[Vec<f32>], expected: &[Vec<f32>]) {
    assert_eq!(got.len(), expected.len(), "{what}");
    for (tensor, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g.len(), e.len(), "{what}: tensor {tensor}");
        for (i, (g, e)) in g.iter().zip(e).enumerate() {
            assert!(
                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{what}: tensor {tensor}[{i}]: {g} against {e}"
            );
        }
    }
}

#[test]
fn processes_of_a_cpu_job_train_and_predict_as_one_process() {
    let job = Job::new();
    let alone = job.path("alone.safetensors");
    checked(
        destiny()
            .args(job.train_args(&alone, "data"))
            .output()
            .unwrap(),
    );
    let reference = parameters(Path::new(&alone));
    for (ranks, parallel) in [(2, "data"), (3, "model")] {
        let model = job.path(&format!("{parallel}.safetensors"));
        let args = job.train_args(&model, parallel);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let outputs = launched(ranks, &args, "60");
        let texts: Vec<String> = outputs.into_iter().map(checked).collect();
        assert!(
            texts[0].contains(&format!(
                "and {} other rank(s), {parallel} parallel",
                ranks - 1
            )),
            "{}",
            texts[0]
        );
        assert_close(
            &format!("{ranks} ranks, {parallel} parallel"),
            &parameters(Path::new(&model)),
            &reference,
        );
    }
    // Prediction shares the users; rank 0 writes every user's list.
    let predict = |recs: &str| {
        vec![
            "predict".to_string(),
            "-n".into(),
            alone.clone(),
            "-r".into(),
            job.path("data/test_input.arrow"),
            "-k".into(),
            "5".into(),
            "-s".into(),
            job.path(recs),
            "--device".into(),
            "cpu".into(),
        ]
    };
    checked(destiny().args(predict("alone.txt")).output().unwrap());
    let args = predict("launched.txt");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    launched(2, &args, "60").into_iter().for_each(|o| {
        checked(o);
    });
    let read = |name: &str| std::fs::read_to_string(job.path(name)).unwrap();
    assert_eq!(read("launched.txt"), read("alone.txt"));
    assert_eq!(read("alone.txt").lines().count(), 10);
}

#[test]
fn a_rank_that_never_comes_is_a_timely_error() {
    let job = Job::new();
    let model = job.path("model.safetensors");
    let port = free_port().to_string();
    let started = std::time::Instant::now();
    let output = destiny()
        .args(job.train_args(&model, "data"))
        .env("RANK", "0")
        .env("WORLD_SIZE", "2")
        .env("MASTER_PORT", &port)
        .env("MASTER_ADDR", "127.0.0.1")
        .env("DESTINY_COLLECTIVE_TIMEOUT", "1")
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("rank(s) 1 of 2 never came"), "{message}");
    assert!(!Path::new(&model).exists());
}

#[test]
fn a_rank_killed_during_training_stops_the_others_and_leaves_the_model_file_complete() {
    let job = Job::new();
    let model = job.path("model.safetensors");
    let port = free_port().to_string();
    let mut ranks: Vec<_> = (0..2)
        .map(|rank| {
            destiny()
                .args(job.train_epochs(&model, "data", 100_000))
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("DESTINY_COLLECTIVE_TIMEOUT", "20")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = std::time::Instant::now();
    while !Path::new(&model).exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "no checkpoint was written"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    ranks[1].kill().unwrap();
    ranks[1].wait().unwrap();
    let killed = std::time::Instant::now();
    let survivor = ranks.remove(0).wait_with_output().unwrap();
    // The dead peer's socket closes with it: rank 0 fails at its next exchange, long before
    // the collective timeout.
    assert!(killed.elapsed() < std::time::Duration::from_secs(15));
    assert!(!survivor.status.success());
    let message = String::from_utf8_lossy(&survivor.stderr);
    assert!(
        message.contains("rank 1 closed its connection"),
        "{message}"
    );
    let done = load_model(Path::new(&model))
        .expect("the model file is complete")
        .training
        .epochs_done;
    assert!(done >= 1);
}
