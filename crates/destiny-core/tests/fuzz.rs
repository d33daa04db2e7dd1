//! Arbitrary and damaged input for the readers of outside files in the core: the network
//! definition parser and the model-file loader. Each must return a value or an error, never
//! panic, hang or allocate out of proportion to its input. The number of cases is
//! PROPTEST_CASES (64 when unset, a second or so for CI); docs/faults.md records a longer run.

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::config::parse_network;
use destiny_core::model::{DatasetShape, Network, Topology};
use destiny_core::model_file::{load_model, save_model};
use destiny_core::run::TrainingState;
use proptest::prelude::*;

#[path = "support/fuzz.rs"]
mod support;
use std::path::Path;
use support::{config, damaged};

const DEFINITION: &str = include_str!("../../../examples/movielens/config.json");

/// A small model file of the MovieLens definition, 12 items wide.
fn model_bytes(folder: &Path) -> Vec<u8> {
    let definition = parse_network(DEFINITION, "config.json").unwrap();
    let shape = |_: &str| Some(DatasetShape::flat(12, true));
    let topology = Topology::new(&definition, &shape).unwrap();
    let network = Network::new(CpuBackend::new(), topology, 1).unwrap();
    let path = folder.join("valid.safetensors");
    let state = TrainingState {
        epochs_done: 0,
        steps: 0,
        optimizer: None,
        options: None,
        validation: Vec::new(),
    };
    save_model(&path, &network, &state).unwrap();
    std::fs::read(path).unwrap()
}

fn load_bytes(folder: &Path, bytes: &[u8]) {
    let path = folder.join("fuzzed.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let _ = load_model(&path);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn definitions_from_arbitrary_text(text in "\\PC{0,400}") {
        let _ = parse_network(&text, "fuzzed.json");
    }

    #[test]
    fn damaged_definitions(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        keep in 0.0f64..=1.0,
    ) {
        let bytes = damaged(DEFINITION.as_bytes(), &edits, keep);
        let _ = parse_network(&String::from_utf8_lossy(&bytes), "fuzzed.json");
    }

    #[test]
    fn model_files_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let folder = tempfile::tempdir().unwrap();
        load_bytes(folder.path(), &bytes);
        // A header length of 8 bytes then a header claiming huge tensors.
        let mut claimed = 1_000_000_000_000_000u64.to_le_bytes().to_vec();
        claimed.extend(&bytes);
        load_bytes(folder.path(), &claimed);
    }

    #[test]
    fn damaged_model_files(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        keep in 0.0f64..=1.0,
    ) {
        let folder = tempfile::tempdir().unwrap();
        let bytes = damaged(&model_bytes(folder.path()), &edits, keep);
        load_bytes(folder.path(), &bytes);
    }
}

#[test]
fn a_header_claiming_a_petabyte_is_refused_without_the_allocation() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("huge.safetensors");
    let mut bytes = 1_000_000_000_000_000u64.to_le_bytes().to_vec();
    bytes.extend(b"{}");
    std::fs::write(&path, bytes).unwrap();
    let error = load_model(&path).err().unwrap().to_string();
    assert!(error.contains("huge.safetensors"), "{error}");
}
