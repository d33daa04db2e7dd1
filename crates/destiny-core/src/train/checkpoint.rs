//! Checkpoints written in the background: the parameters and optimizer state are copied to
//! the host when an epoch ends, and a thread writes the file (atomically: a temporary file
//! renamed at the end) while the next epoch trains. One checkpoint is written at a time: the
//! next waits for the previous, so the file on disk only ever moves forward.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::Network;
use crate::model_file::ModelFile;
use crate::run::TrainingState;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Writes checkpoints of one run, one at a time, on a background thread.
#[derive(Default)]
pub struct CheckpointWriter {
    writing: Option<JoinHandle<Result<()>>>,
}

impl CheckpointWriter {
    /// Copies `network` and `training` to the host now and writes them to `path` in the
    /// background, after waiting for the checkpoint before it (whose error, if it failed, is
    /// returned here); `superseded`, a file the new one replaces, is removed once it is on
    /// disk. Every rank of a group calls it; rank 0 alone writes.
    pub fn write<B: Backend>(
        &mut self,
        path: &Path,
        network: &Network<B>,
        training: &TrainingState,
        superseded: Option<PathBuf>,
    ) -> Result<()> {
        let snapshot = ModelFile::of_network(network, training)?;
        self.wait()?;
        if let Some(file) = snapshot {
            let target: PathBuf = path.to_path_buf();
            let thread = std::thread::Builder::new()
                .name("destiny-checkpoint".into())
                .spawn(move || {
                    file.write(&target)?;
                    superseded.map_or(Ok(()), |old| remove_if_there(&old))
                })
                .map_err(|e| Error::io(path, e))?;
            self.writing = Some(thread);
        }
        Ok(())
    }

    /// Waits for the checkpoint being written, returning its error if it failed.
    pub fn wait(&mut self) -> Result<()> {
        match self.writing.take() {
            Some(thread) => thread.join().unwrap_or_else(|panic| {
                std::panic::resume_unwind(panic);
            }),
            None => Ok(()),
        }
    }
}

/// Removes `path`; one that is not there is no error.
pub fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, error)),
        _ => Ok(()),
    }
}

impl Drop for CheckpointWriter {
    /// A run that fails still lets the last checkpoint finish, so that it is whole on disk.
    fn drop(&mut self) {
        if let Some(thread) = self.writing.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::config::{Activation, ErrorFunction};
    use crate::data::{Dataset, Rows};
    use crate::model::{dataset_shapes, OptimizerSettings, Topology};
    use crate::model_file::{load_model, save_model};
    use crate::run::{NonFinite, TrainingOptions};
    use crate::testing::{sparse_rows, three_layers};
    use crate::train::{train_epoch, TrainingData};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_background_checkpoint_equals_a_foreground_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x = sparse_rows(&mut rng, 64, 50, 0.1, false, true);
        let data = vec![
            Dataset::new("in", Rows::Sparse(x.clone())),
            Dataset::new("out", Rows::Sparse(x)),
        ];
        let definition = three_layers(
            Activation::Sigmoid,
            Activation::Sigmoid,
            ErrorFunction::L2,
            8,
        );
        let topology = Topology::new(&definition, &dataset_shapes(&data)).unwrap();
        let mut network = Network::new(CpuBackend::new(), topology, 3).unwrap();
        let options = TrainingOptions {
            batch_size: 16,
            optimizer: OptimizerSettings {
                kind: crate::run::optimizer_kind("adam", 0.9).unwrap(),
                learning_rate: 0.01,
                l1: 0.0,
                l2: 0.0,
            },
            seed: 1,
            shuffle: true,
            denoising: None,
            on_nonfinite: NonFinite::Stop,
        };
        let bound = TrainingData::new(&network, &data).unwrap();
        train_epoch(&mut network, &bound, &options, 0, &mut |_| {}).unwrap();
        let state = TrainingState {
            epochs_done: 1,
            steps: network.steps(),
            optimizer: Some(options.optimizer),
            options: Some(options),
            validation: Vec::new(),
        };
        let folder = tempfile::tempdir().unwrap();
        let (foreground, background) = (
            folder.path().join("foreground.safetensors"),
            folder.path().join("background.safetensors"),
        );
        save_model(&foreground, &network, &state).unwrap();
        let mut writer = CheckpointWriter::default();
        let superseded = folder.path().join("older.safetensors");
        std::fs::write(&superseded, b"older").unwrap();
        writer
            .write(&background, &network, &state, Some(superseded.clone()))
            .unwrap();
        // The next epoch trains while the checkpoint is written: the file holds the state
        // at the call.
        train_epoch(&mut network, &bound, &options, 1, &mut |_| {}).unwrap();
        writer.wait().unwrap();
        let (a, b) = (
            load_model(&foreground).unwrap(),
            load_model(&background).unwrap(),
        );
        assert_eq!(a.training, b.training);
        assert_eq!(a.parameters, b.parameters);
        assert_eq!(a.optimizer_state, b.optimizer_state);
        assert!(!superseded.exists());
        assert_ne!(b.parameters, network.parameter_values().unwrap());
        // A failed write is reported by the next call.
        let missing = folder.path().join("missing/model.safetensors");
        writer.write(&missing, &network, &state, None).unwrap();
        let error = writer
            .write(&background, &network, &state, None)
            .unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
        writer.wait().unwrap();
    }
}
