//! Model files opened from their mapping, inference exports, and files that lie.

use super::*;
use crate::backend::cpu::CpuBackend;
use crate::config::{Activation, ErrorFunction, MarginalParameters};
use crate::data::{Dataset, Rows};
use crate::model::{dataset_shapes, OptimizerSettings};
use crate::predict::{predict_top_k, TopK};
use crate::testing::{sparse_rows, three_layers};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const WIDTH: usize = 300;

fn datasets() -> Vec<Dataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = sparse_rows(&mut rng, 40, WIDTH, 0.05, false, true);
    vec![
        Dataset::new("in", Rows::Sparse(x.clone())),
        Dataset::new("out", Rows::Sparse(x)),
    ]
}

/// A network with Adam's state (zeros) and 7 steps, saved to `path`.
fn saved_network(path: &Path, data: &[Dataset]) -> Network<CpuBackend> {
    let definition = three_layers(
        Activation::Sigmoid,
        Activation::Sigmoid,
        ErrorFunction::ScaledMarginalCrossEntropy(MarginalParameters {
            one_target: 1.0,
            zero_target: 0.0,
            one_scale: 1.0,
            zero_scale: 1.0,
        }),
        16,
    );
    let topology = Topology::new(&definition, &dataset_shapes(data)).unwrap();
    let mut network = Network::new(CpuBackend::new(), topology, 9).unwrap();
    let optimizer = OptimizerSettings {
        kind: crate::run::optimizer_kind("adam", 0.9).unwrap(),
        learning_rate: 0.01,
        l1: 0.0,
        l2: 0.0,
    };
    network.set_optimizer(optimizer).unwrap();
    let state = TrainingState {
        epochs_done: 2,
        steps: 7,
        optimizer: Some(optimizer),
        options: None,
        validation: Vec::new(),
    };
    save_model(path, &network, &state).unwrap();
    network
}

/// Every output's score for every sample: the top-K of all columns.
fn all_scores(network: &mut Network<CpuBackend>, data: &[Dataset]) -> TopK {
    predict_top_k(network, &data[..1], None, None, WIDTH, 16).unwrap()
}

#[test]
fn opened_and_exported_models_predict_as_the_saved_one() {
    let folder = tempfile::tempdir().unwrap();
    let data = datasets();
    let path = folder.path().join("model.safetensors");
    let mut saved = saved_network(&path, &data);
    let expected = all_scores(&mut saved, &data);

    let opened = open_model(&path).unwrap();
    assert_eq!(opened.contents, Contents::Training);
    assert_eq!(opened.training.steps, 7);
    assert_eq!(opened.weights_dtype(), Some(Dtype::F32));
    assert!(matches!(opened.parameter(0).unwrap(), Cow::Borrowed(_)));
    assert_eq!(
        all_scores(&mut opened.network(CpuBackend::new()).unwrap(), &data),
        expected
    );

    let export = folder.path().join("model.infer.safetensors");
    export_model(&path, &export, ExportPrecision::F32).unwrap();
    let exported = open_model(&export).unwrap();
    assert_eq!(exported.contents, Contents::Weights);
    assert_eq!(exported.training, opened.training);
    assert_eq!(
        all_scores(&mut exported.network(CpuBackend::new()).unwrap(), &data),
        expected
    );
    // Weights only: a third of an Adam checkpoint.
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    assert!(size(&export) < 0.4 * size(&path));
    let error = load_model(&export).err().unwrap().to_string();
    assert!(
        error.contains("inference export") && error.contains("cannot resume"),
        "{error}"
    );

    // bf16: every weight within bf16's rounding, scores within its precision, and the same
    // ranking wherever the full model's scores are further apart than that.
    let bf16 = folder.path().join("model.bf16.safetensors");
    export_model(&path, &bf16, ExportPrecision::Bf16).unwrap();
    let halved = open_model(&bf16).unwrap();
    assert_eq!(halved.weights_dtype(), Some(Dtype::BF16));
    assert!(size(&bf16) < 0.6 * size(&export));
    for (i, whole) in saved.parameter_values().unwrap().iter().enumerate() {
        for (a, b) in whole.iter().zip(halved.parameter(i).unwrap().iter()) {
            assert!((a - b).abs() <= a.abs() / 256.0, "{a} became {b}");
        }
    }
    let got = all_scores(&mut halved.network(CpuBackend::new()).unwrap(), &data);
    let tolerance = 2e-3;
    for row in 0..expected.len() {
        let full: Vec<(u32, f32)> = expected.row(row).collect();
        let score_of = |column: u32| full.iter().find(|(c, _)| *c == column).unwrap().1;
        for (rank, (column, score)) in got.row(row).take(10).enumerate() {
            let (best, best_score) = full[rank];
            assert!((score - score_of(column)).abs() < tolerance, "row {row}");
            assert!(
                column == best || (score_of(column) - best_score).abs() < 2.0 * tolerance,
                "row {row} rank {rank}: {column} ({score}) instead of {best} ({best_score})"
            );
        }
    }
}

/// `bytes` with its header replaced by `edit` applied to the header's JSON.
fn with_header(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    out
}

#[test]
fn files_that_lie_fail_cleanly_with_their_name() {
    let folder = tempfile::tempdir().unwrap();
    let data = datasets();
    let path = folder.path().join("model.safetensors");
    saved_network(&path, &data);
    let good = std::fs::read(&path).unwrap();
    let weights = "weights.Hidden.Output";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "not a complete safetensors file"),
        (
            "truncated",
            good[..good.len() - 4].to_vec(),
            "not a complete",
        ),
        (
            "huge-header",
            [u64::MAX.to_le_bytes().as_slice(), &good[8..]].concat(),
            "not a complete",
        ),
        (
            "past-the-end",
            [(good.len() as u64).to_le_bytes().as_slice(), &good[8..]].concat(),
            "not a complete",
        ),
        (
            "offsets",
            with_header(&good, |h| h[weights]["data_offsets"][1] = 1u64.into()),
            "not a complete",
        ),
        (
            "shape",
            with_header(&good, |h| {
                let [a, b] = [
                    h[weights]["shape"][0].clone(),
                    h[weights]["shape"][1].clone(),
                ];
                h[weights]["shape"] = serde_json::json!([b, a]);
            }),
            "[16, 300] expected",
        ),
        (
            "dtype",
            with_header(&good, |h| h[weights]["dtype"] = "I32".into()),
            "I32",
        ),
        (
            "missing",
            with_header(&good, |h| {
                let entry = h.as_object_mut().unwrap().remove(weights).unwrap();
                h["renamed"] = entry;
            }),
            "tensor 'weights.Hidden.Output' is missing",
        ),
        (
            "contents",
            with_header(&good, |h| {
                h["__metadata__"]["contents"] = "gradients".into()
            }),
            "metadata 'contents' is 'gradients'",
        ),
        (
            "foreign",
            with_header(&good, |h| h["__metadata__"]["format"] = "other".into()),
            "not a Destiny model",
        ),
    ];
    for (name, bytes, expected) in cases {
        let file = folder.path().join(format!("{name}.safetensors"));
        std::fs::write(&file, bytes).unwrap();
        let error = open_model(&file).err().unwrap().to_string();
        assert!(
            error.contains(&format!("{name}.safetensors")) && error.contains(expected),
            "{name}: {error}"
        );
    }
    // A weight that is not finite is found when the weights are read.
    let mut bad = good.clone();
    let info = open_model(&path).unwrap();
    let (start, _) = info.header.info("bias.Hidden").unwrap().data_offsets;
    let at = info.data_start + start;
    bad[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let file = folder.path().join("nan.safetensors");
    std::fs::write(&file, bad).unwrap();
    let error = open_model(&file)
        .unwrap()
        .network(CpuBackend::new())
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("'bias.Hidden' holds NaN"), "{error}");
}
