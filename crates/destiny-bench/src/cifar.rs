//! DSSTNE's CIFAR-10 network (`samples/cifar-10/config.json`, unchanged) on generated images
//! of CIFAR-10's shape: 32 x 32 pixels of 3 channels and one of 10 classes each.

use destiny_core::config::{parse_network, NetworkDefinition};
use destiny_core::data::{Dataset, DenseRows, Rows, SparseRows};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// CIFAR-10's image shape, x first as DSSTNE lays it out.
pub const IMAGE: [usize; 3] = [32, 32, 3];

/// Classes of CIFAR-10.
pub const CLASSES: usize = 10;

/// DSSTNE's CIFAR-10 definition, as its repository has it.
pub fn definition() -> anyhow::Result<NetworkDefinition> {
    Ok(parse_network(
        include_str!("../../destiny-core/tests/dsstne-definitions/samples__cifar-10__config.json"),
        "samples/cifar-10/config.json",
    )?)
}

/// `images` images of uniform pixels in `0..1` ("input") and a random class each, one-hot
/// ("output").
pub fn datasets(images: usize, seed: u64) -> anyhow::Result<Vec<Dataset>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let width: usize = IMAGE.iter().product();
    let pixels = (0..images * width).map(|_| rng.random::<f32>()).collect();
    let input = Dataset::new("input", Rows::Dense(DenseRows::new(width, pixels)?))
        .with_dimensions(IMAGE.to_vec())?;
    let classes = (0..images)
        .map(|_| rng.random_range(0..CLASSES as u32))
        .collect();
    let offsets = (0..=images).collect();
    let labels = SparseRows::new(CLASSES, offsets, classes, None)?;
    Ok(vec![input, Dataset::new("output", Rows::Sparse(labels))])
}
